// Package fsys is the small filesystem interface that all updater I/O goes
// through, with two implementations: the real one (OS) and a crash
// simulator (Crash) that records every operation and, at a chosen point,
// loses whatever was not yet durable, the way a power cut does.
//
// Durability follows POSIX as careful programs assume it: file data is
// durable after File.Sync; a create, rename or remove is durable only after
// SyncDir on the containing directory. Everything else may be lost.
package fsys

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// File is an open file. Implementations need not be safe for concurrent
// use except for ReadAt and WriteAt at disjoint ranges.
type File interface {
	io.Reader
	io.Writer
	io.ReaderAt
	io.WriterAt
	io.Closer
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
	Name() string
}

// FS is what the updater needs from a filesystem.
type FS interface {
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	ReadFile(name string) ([]byte, error)
	Stat(name string) (fs.FileInfo, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	MkdirAll(dir string, perm fs.FileMode) error
	// ReadDir lists the entries directly in dir (files and directories),
	// sorted by name, as os.ReadDir does. A missing dir is an error
	// wrapping fs.ErrNotExist.
	ReadDir(dir string) ([]fs.DirEntry, error)
	// SyncDir makes creates, renames and removes in dir durable.
	SyncDir(dir string) error
	// TryLock takes the exclusive lock name (a file path) without
	// waiting; holder describes the caller for the error a second caller
	// gets, which wraps ErrLocked. The lock ends with unlock or with the
	// holder's process: a crash never leaves it held.
	TryLock(name, holder string) (unlock func() error, err error)
}

// ErrLocked is wrapped by TryLock when someone else holds the lock.
var ErrLocked = errors.New("fsys: locked")

// ErrCrashed is returned by every operation of a Crash filesystem after
// its crash point.
var ErrCrashed = errors.New("fsys: simulated power cut")

// WriteFileAtomic replaces name with data so that after a crash the file
// holds either the old or the new content: write a temporary file in the
// same directory, fsync it, rename it over name, fsync the directory.
func WriteFileAtomic(fsys FS, name string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(name)
	tmp := filepath.Join(dir, "."+filepath.Base(name)+".tmp")
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		fsys.Remove(tmp)
		return fmt.Errorf("sync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("close %s: %w", name, err)
	}
	if err := fsys.Rename(tmp, name); err != nil {
		fsys.Remove(tmp)
		return fmt.Errorf("replace %s: %w", name, err)
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("sync directory of %s: %w", name, err)
	}
	return nil
}

// AppendSync appends data to name (creating it) and fsyncs it; a new file's
// directory entry is made durable too.
func AppendSync(fsys FS, name string, data []byte, perm fs.FileMode) error {
	_, statErr := fsys.Stat(name)
	f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, perm)
	if err != nil {
		return fmt.Errorf("append %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("append %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		return fsys.SyncDir(filepath.Dir(name))
	}
	return nil
}

// OS is the real filesystem.
type OS struct{}

var _ FS = OS{}

func (OS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f, nil
}
func (OS) ReadFile(name string) ([]byte, error)        { return os.ReadFile(name) }
func (OS) Stat(name string) (fs.FileInfo, error)       { return os.Stat(name) }
func (OS) Rename(oldpath, newpath string) error        { return os.Rename(oldpath, newpath) }
func (OS) Remove(name string) error                    { return os.Remove(name) }
func (OS) MkdirAll(dir string, perm fs.FileMode) error { return os.MkdirAll(dir, perm) }
func (OS) ReadDir(dir string) ([]fs.DirEntry, error)   { return os.ReadDir(dir) }

func (OS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// TryLock takes an flock on name (created if missing) and writes holder
// into it for the error message of a second caller. The file stays after
// unlock: removing it would race with a process about to lock it.
func (OS) TryLock(name, holder string) (func() error, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is held by %s: %w", name, lockHolder(name), ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	// Best effort: the lock is the flock, not these bytes.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(holder+"\n"), 0)
	}
	return func() error {
		_ = f.Truncate(0)
		return f.Close() // closing drops the flock
	}, nil
}

// lockHolder reads who holds a lock from its file.
func lockHolder(name string) string {
	f, err := os.Open(name)
	if err != nil {
		return "another process"
	}
	defer f.Close()
	b := make([]byte, 256)
	n, _ := f.Read(b)
	s := strings.TrimSpace(strings.ToValidUTF8(string(b[:n]), "?"))
	if s == "" {
		return "another process"
	}
	return s
}

// MkdirAllDurable creates dir and any missing parents, and syncs each
// parent whose entries changed, so the directories survive a power cut.
func MkdirAllDurable(fsys FS, dir string, perm fs.FileMode) error {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := fsys.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fsys.MkdirAll(dir, perm); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := fsys.SyncDir(filepath.Dir(missing[i])); err != nil {
			return fmt.Errorf("sync directory %s: %w", filepath.Dir(missing[i]), err)
		}
	}
	return nil
}
