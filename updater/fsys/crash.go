package fsys

import (
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Crash is an in-memory filesystem that simulates a power cut. It counts
// mutating operations (create, write, truncate, sync, rename, remove, mkdir,
// directory sync); the operation numbered CrashAt does not complete, and it
// and every later call fail with ErrCrashed. AfterCrash then returns the
// filesystem as it would be found at the next power-on:
//
//   - the namespace is the durable one: creates, renames and removes count
//     only if their directory was synced afterwards;
//   - each file holds the content of its last Sync;
//   - in TearLastWrite mode, a sector-aligned prefix of the interrupted
//     write (or of the last write not yet synced) also reaches the disk,
//     as happens when a drive's cache flushes part of a write.
//
// Safe for concurrent use.
type Crash struct {
	mu      sync.Mutex
	cur     map[string]*inode // current namespace
	durable map[string]*inode // namespace as of the last directory syncs
	dirs    map[string]bool   // current directories
	ddirs   map[string]bool   // durable directories

	ops     int // mutating operations so far
	crashAt int // 0 means never
	crashed bool
	tear    bool
	rng     *rand.Rand
	pending *write // last unsynced write, a candidate for tearing
	nextID  int
	locks   map[string]string // held locks and their holders; a power cut drops them
}

type inode struct {
	id      int
	data    []byte // what reads see
	durable []byte // as of the last Sync
	mtime   time.Time
}

type write struct {
	node *inode
	off  int64
	data []byte
	keep int // bytes of data that reach the disk; -1 until AfterCrash draws it
}

// CrashOptions configure a Crash filesystem.
type CrashOptions struct {
	CrashAt       int  // operation number that fails (1-based); 0 = never
	TearLastWrite bool // persist a prefix of the last unsynced write
	Seed          uint64
}

// NewCrash returns an empty crash-simulating filesystem with "/" existing.
func NewCrash(o CrashOptions) *Crash {
	c := &Crash{
		cur: map[string]*inode{}, durable: map[string]*inode{},
		dirs: map[string]bool{"/": true}, ddirs: map[string]bool{"/": true},
	}
	c.Reset(o)
	return c
}

// Reset arms a new crash point without changing content.
func (c *Crash) Reset(o CrashOptions) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops, c.crashAt, c.crashed, c.tear = 0, o.CrashAt, false, o.TearLastWrite
	c.rng = rand.New(rand.NewPCG(o.Seed, 0x5ca1ab1e))
}

// Ops returns how many mutating operations have run; after a run without a
// crash point it is the number of crash points a sweep has to cover.
func (c *Crash) Ops() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

// Crashed reports whether the crash point was reached.
func (c *Crash) Crashed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.crashed
}

// step accounts for one mutating operation. It returns ErrCrashed when the
// operation must not happen. Caller holds c.mu.
func (c *Crash) step() error {
	if c.crashed {
		return ErrCrashed
	}
	c.ops++
	if c.crashAt > 0 && c.ops >= c.crashAt {
		c.crashed = true
		return ErrCrashed
	}
	return nil
}

func (c *Crash) alive() error {
	if c.crashed {
		return ErrCrashed
	}
	return nil
}

// AfterCrash returns the filesystem found at the next power-on, with no
// crash point armed. It may be called whether or not the crash happened
// (then it shows what a crash right now would leave).
func (c *Crash) AfterCrash() *Crash {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := NewCrash(CrashOptions{})
	reachable := func(p string) bool {
		for d := filepath.Dir(p); ; d = filepath.Dir(d) {
			if !c.ddirs[d] {
				return false
			}
			if d == "/" {
				return true
			}
		}
	}
	copied := map[*inode]*inode{}
	for p, ino := range c.durable {
		if !reachable(p) {
			continue
		}
		m, ok := copied[ino]
		if !ok {
			m = &inode{id: ino.id, data: append([]byte(nil), ino.durable...), mtime: ino.mtime}
			m.durable = append([]byte(nil), ino.durable...)
			copied[ino] = m
		}
		n.cur[p], n.durable[p] = m, m
	}
	// The tear goes into the copy only: the crashed filesystem keeps its
	// own durable bytes, and the prefix is drawn once per write, so calling
	// AfterCrash again shows the same power-on state.
	if w := c.pending; c.tear && w != nil {
		if w.keep < 0 {
			// A prefix in whole 512-byte sectors, possibly empty, possibly all.
			sectors := (len(w.data) + 511) / 512
			w.keep = min(c.rng.IntN(sectors+1)*512, len(w.data))
		}
		if m, ok := copied[w.node]; ok && w.keep > 0 {
			m.durable = writeAt(m.durable, w.off, w.data[:w.keep])
			m.data = append(m.data[:0:0], m.durable...)
		}
	}
	for d := range c.ddirs {
		if d == "/" || reachable(d) {
			n.dirs[d], n.ddirs[d] = true, true
		}
	}
	n.nextID = c.nextID
	return n
}

// WriteFile seeds a durable file (test setup; not counted as an operation).
func (c *Crash) WriteFile(name string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name = clean(name)
	for d := filepath.Dir(name); ; d = filepath.Dir(d) {
		c.dirs[d], c.ddirs[d] = true, true
		if d == "/" {
			break
		}
	}
	c.nextID++
	ino := &inode{id: c.nextID, data: append([]byte(nil), data...), durable: append([]byte(nil), data...)}
	c.cur[name], c.durable[name] = ino, ino
}

// Files lists the current regular files, sorted (for tests and messages).
func (c *Crash) Files() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for p := range c.cur {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func clean(name string) string {
	if !filepath.IsAbs(name) {
		name = "/" + name
	}
	return filepath.Clean(name)
}

func writeAt(b []byte, off int64, p []byte) []byte {
	end := int(off) + len(p)
	if end > len(b) {
		if end <= cap(b) {
			b = b[:end]
		} else {
			nb := make([]byte, end, max(end, 2*cap(b)))
			copy(nb, b)
			b = nb
		}
	}
	copy(b[off:], p)
	return b
}

var _ FS = (*Crash)(nil)

func (c *Crash) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name = clean(name)
	if err := c.alive(); err != nil {
		return nil, err
	}
	pe := func(err error) error { return &fs.PathError{Op: "open", Path: name, Err: err} }
	if c.dirs[name] {
		return nil, pe(fmt.Errorf("is a directory"))
	}
	ino, ok := c.cur[name]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, pe(fs.ErrExist)
	case !ok && flag&os.O_CREATE == 0:
		return nil, pe(fs.ErrNotExist)
	case !ok:
		if !c.dirs[filepath.Dir(name)] {
			return nil, pe(fs.ErrNotExist)
		}
		if err := c.step(); err != nil {
			return nil, err
		}
		c.nextID++
		ino = &inode{id: c.nextID, mtime: time.Unix(int64(c.ops), 0)}
		c.cur[name] = ino
	}
	if flag&os.O_TRUNC != 0 && len(ino.data) > 0 {
		if err := c.step(); err != nil {
			return nil, err
		}
		ino.data = ino.data[:0:0]
	}
	return &crashFile{fs: c, ino: ino, name: name, append: flag&os.O_APPEND != 0,
		writable: flag&(os.O_WRONLY|os.O_RDWR) != 0}, nil
}

func (c *Crash) ReadFile(name string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.alive(); err != nil {
		return nil, err
	}
	ino, ok := c.cur[clean(name)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return append([]byte(nil), ino.data...), nil
}

func (c *Crash) Stat(name string) (fs.FileInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.alive(); err != nil {
		return nil, err
	}
	name = clean(name)
	if c.dirs[name] {
		return fileInfo{name: filepath.Base(name), dir: true}, nil
	}
	ino, ok := c.cur[name]
	if !ok {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return fileInfo{name: filepath.Base(name), size: int64(len(ino.data)), mtime: ino.mtime}, nil
}

func (c *Crash) Rename(oldpath, newpath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	oldpath, newpath = clean(oldpath), clean(newpath)
	if err := c.alive(); err != nil {
		return err
	}
	ino, ok := c.cur[oldpath]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrNotExist}
	}
	if !c.dirs[filepath.Dir(newpath)] {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrNotExist}
	}
	if err := c.step(); err != nil {
		return err
	}
	delete(c.cur, oldpath)
	c.cur[newpath] = ino
	return nil
}

func (c *Crash) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	name = clean(name)
	if err := c.alive(); err != nil {
		return err
	}
	if _, ok := c.cur[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if err := c.step(); err != nil {
		return err
	}
	delete(c.cur, name)
	return nil
}

func (c *Crash) MkdirAll(dir string, perm fs.FileMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	dir = clean(dir)
	if err := c.alive(); err != nil {
		return err
	}
	var missing []string
	for d := dir; !c.dirs[d]; d = filepath.Dir(d) {
		if _, isFile := c.cur[d]; isFile {
			return &fs.PathError{Op: "mkdir", Path: d, Err: fmt.Errorf("not a directory")}
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := c.step(); err != nil {
			return err
		}
		c.dirs[missing[i]] = true
	}
	return nil
}

// ReadDir lists the current entries directly in dir, sorted by name: what
// a program sees before any crash, durable or not.
func (c *Crash) ReadDir(dir string) ([]fs.DirEntry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dir = clean(dir)
	if err := c.alive(); err != nil {
		return nil, err
	}
	if !c.dirs[dir] {
		if _, isFile := c.cur[dir]; isFile {
			return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fmt.Errorf("not a directory")}
		}
		return nil, &fs.PathError{Op: "open", Path: dir, Err: fs.ErrNotExist}
	}
	in := func(p string) bool { return p != dir && filepath.Dir(p) == dir }
	var out []fs.DirEntry
	for p, ino := range c.cur {
		if in(p) {
			out = append(out, fs.FileInfoToDirEntry(fileInfo{name: filepath.Base(p), size: int64(len(ino.data)), mtime: ino.mtime}))
		}
	}
	for d := range c.dirs {
		if in(d) {
			out = append(out, fs.FileInfoToDirEntry(fileInfo{name: filepath.Base(d), dir: true}))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// SyncDir makes the entries directly inside dir durable, including the
// existence of its subdirectories.
func (c *Crash) SyncDir(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	dir = clean(dir)
	if err := c.alive(); err != nil {
		return err
	}
	if !c.dirs[dir] {
		return &fs.PathError{Op: "sync", Path: dir, Err: fs.ErrNotExist}
	}
	if err := c.step(); err != nil {
		return err
	}
	in := func(p string) bool { return filepath.Dir(p) == dir && p != dir }
	for p := range c.durable {
		if in(p) {
			delete(c.durable, p)
		}
	}
	for p, ino := range c.cur {
		if in(p) {
			c.durable[p] = ino
		}
	}
	for d := range c.dirs {
		if in(d) {
			c.ddirs[d] = true
		}
	}
	// A directory whose own entry is not durable leaves its content
	// unreachable after a crash: AfterCrash drops such paths.
	return nil
}

// TryLock implements FS. Locks live in memory only: the filesystem after
// a crash (AfterCrash) has none, as a rebooted machine has no flocks.
func (c *Crash) TryLock(name, holder string) (func() error, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.alive(); err != nil {
		return nil, err
	}
	name = clean(name)
	if h, ok := c.locks[name]; ok {
		return nil, fmt.Errorf("%s is held by %s: %w", name, h, ErrLocked)
	}
	if c.locks == nil {
		c.locks = map[string]string{}
	}
	c.locks[name] = holder
	return func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.locks, name)
		return nil
	}, nil
}

// Dump describes the current state, for failure messages.
func (c *Crash) Dump() string {
	var b strings.Builder
	for _, p := range c.Files() {
		c.mu.Lock()
		ino := c.cur[p]
		fmt.Fprintf(&b, "%s: %d bytes (%d durable)\n", p, len(ino.data), len(ino.durable))
		c.mu.Unlock()
	}
	return b.String()
}

type crashFile struct {
	fs       *Crash
	ino      *inode
	name     string
	off      int64
	append   bool
	writable bool
	closed   bool
}

func (f *crashFile) Name() string { return f.name }

func (f *crashFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.alive(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("negative offset")
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *crashFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if !f.writable {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: fs.ErrPermission}
	}
	wasCrashed := f.fs.crashed
	if err := f.fs.step(); err != nil {
		if !wasCrashed && f.fs.tear {
			// This write is the one the power cut interrupted, so it may be
			// torn. Writes issued after the cut (by other goroutines) never
			// reach the disk and must not replace it as the candidate.
			f.fs.pending = &write{node: f.ino, off: off, data: append([]byte(nil), p...), keep: -1}
		}
		return 0, err
	}
	f.ino.data = writeAt(f.ino.data, off, p)
	f.ino.mtime = time.Unix(int64(f.fs.ops), 0)
	f.fs.pending = &write{node: f.ino, off: off, data: append([]byte(nil), p...), keep: -1}
	return len(p), nil
}

func (f *crashFile) Write(p []byte) (int, error) {
	if f.append {
		f.fs.mu.Lock()
		f.off = int64(len(f.ino.data))
		f.fs.mu.Unlock()
	}
	n, err := f.WriteAt(p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *crashFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.step(); err != nil {
		return err
	}
	f.ino.durable = append(f.ino.durable[:0:0], f.ino.data...)
	if f.fs.pending != nil && f.fs.pending.node == f.ino {
		f.fs.pending = nil
	}
	return nil
}

func (f *crashFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.step(); err != nil {
		return err
	}
	if size <= int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:size]
	} else {
		f.ino.data = writeAt(f.ino.data, size-1, []byte{0})
	}
	return nil
}

func (f *crashFile) Stat() (fs.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.alive(); err != nil {
		return nil, err
	}
	return fileInfo{name: filepath.Base(f.name), size: int64(len(f.ino.data)), mtime: f.ino.mtime}, nil
}

func (f *crashFile) Close() error {
	if f.closed {
		return fs.ErrClosed
	}
	f.closed = true
	return nil
}

type fileInfo struct {
	name  string
	size  int64
	dir   bool
	mtime time.Time
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) ModTime() time.Time { return i.mtime }
func (i fileInfo) IsDir() bool        { return i.dir }
func (i fileInfo) Sys() any           { return nil }
func (i fileInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
