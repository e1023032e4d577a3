package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"golang.org/x/sys/unix"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/internal/atomicfile"
)

// ArtifactInput is one image to publish.
type ArtifactInput struct {
	Name string // artifact name, e.g. "rootfs"
	Slot string // install slot; empty means Name
	Path string // the image file
}

// TargetsLog receives every targets metadata version publish signs,
// after the version-numbered files are written and before timestamp.json
// makes them current. The transparency log (manifest/tlog) implements it;
// an error aborts the publish, so nothing unlogged becomes visible.
type TargetsLog interface {
	Append(ctx context.Context, repo string, version int64, targets []byte) error
}

// loggedVersions is implemented by a TargetsLog that can tell the newest
// targets version it holds ([RepoLog] does). Publish numbers the new
// targets above it, so a publish that died after logging but before
// timestamp.json never reuses a logged version for other bytes.
type loggedVersions interface {
	LastLogged(ctx context.Context, repo string) (int64, error)
}

// PublishOptions configure [Publish].
type PublishOptions struct {
	Repo      string   // repository directory; created if missing
	Keys      *Keyring // must hold the targets, snapshot and timestamp keys
	Channel   string
	Version   uint64 // release version; must exceed the channel's last
	Artifacts []ArtifactInput

	Hardware     []string
	Arch         []string
	MinInstalled uint64
	Rollout      json.RawMessage // opaque policy, see Release.Rollout
	SBOM         string          // "sha256:<hex>" or empty
	Provenance   string          // "sha256:<hex>" or empty

	Expires time.Duration // lifetime of targets, snapshot and timestamp; 0: 720h
	Params  chunker.Params
	Hash    chunker.Hash
	Workers int // 0: GOMAXPROCS
	// Keep is how many releases per channel stay listed in targets
	// (older ones drop out; their files stay). 0: 16.
	Keep int

	Now      func() time.Time
	Progress func(done, total int64) // bytes of all images read so far
	Log      TargetsLog              // nil: no transparency log

	// DeltaFrom lists releases of the same channel, listed in the
	// repository's current targets, to compute delta objects against
	// (docs/deltas.md). Each delta index becomes a TUF target
	// (DeltaTargetPath). Empty: no deltas.
	DeltaFrom []DeltaBase
	// DeltaOptions tune the delta planner (its Objects field is
	// publish's own). The zero value uses the planner's defaults.
	DeltaOptions delta.Options
}

// PublishedArtifact reports one artifact of a publish.
type PublishedArtifact struct {
	Name      string
	Index     string // index CID
	Size      int64
	Root      string
	Chunks    int
	NewChunks int
	NewBytes  int64 // stored (compressed) bytes written for it
}

// PublishResult reports what a publish wrote.
type PublishResult struct {
	Channel          string
	Version          uint64
	RootVersion      int64
	TargetsVersion   int64
	SnapshotVersion  int64
	TimestampVersion int64
	Artifacts        []PublishedArtifact
	Bytes            int64 // image bytes read
	Chunks           int
	NewChunks        int   // chunk objects written (not already present)
	NewBytes         int64 // bytes of those objects on disk
	NewRawBytes      int64 // uncompressed bytes of those chunks
	// Deltas reports each (artifact, base) pair of DeltaFrom whose base
	// has the artifact, sorted by base version then artifact.
	Deltas []PublishedDelta
}

func (o *PublishOptions) fill() error {
	if o.Keys == nil {
		return fmt.Errorf("%w: no key directory", ErrKeys)
	}
	for _, role := range []string{metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if _, err := o.Keys.signers(&o.Keys.root.Signed, role); err != nil {
			return err
		}
	}
	if o.Repo == "" {
		return errors.New("publish: no repository directory")
	}
	if len(o.Artifacts) == 0 {
		return errors.New("publish: no artifacts")
	}
	if o.Expires <= 0 {
		o.Expires = 720 * time.Hour
	}
	if o.Params == (chunker.Params{}) {
		o.Params = chunker.DefaultParams
	}
	if err := o.Params.Validate(); err != nil {
		return err
	}
	if o.Hash == 0 {
		o.Hash = chunker.SHA256
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Keep <= 0 {
		o.Keep = 16
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.Rollout) > 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, o.Rollout); err != nil {
			return fmt.Errorf("publish: rollout: %w", err)
		}
		o.Rollout = buf.Bytes()
	}
	for i := range o.Artifacts {
		if o.Artifacts[i].Slot == "" {
			o.Artifacts[i].Slot = o.Artifacts[i].Name
		}
	}
	if err := o.checkDeltaFrom(); err != nil {
		return err
	}
	// Validate every field before reading any image.
	r := o.release()
	for i := range r.Artifacts {
		r.Artifacts[i].Params, r.Artifacts[i].Hash = o.Params, o.Hash
	}
	if err := r.validate(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

func (o *PublishOptions) release() *Release {
	r := &Release{Channel: o.Channel, Version: o.Version, Hardware: o.Hardware, Arch: o.Arch,
		MinInstalled: o.MinInstalled, Rollout: o.Rollout, SBOM: o.SBOM, Provenance: o.Provenance}
	for _, a := range o.Artifacts {
		r.Artifacts = append(r.Artifacts, Artifact{Name: a.Name, Slot: a.Slot})
	}
	sort.Slice(r.Artifacts, func(i, j int) bool { return r.Artifacts[i].Name < r.Artifacts[j].Name })
	return r
}

// Publish chunks each image, stores the chunks that the repository does not
// have yet (zstd, on every core), writes each index, and signs a new
// targets, snapshot and timestamp that add the release while keeping the
// other channels' releases. A reader of the repository sees the previous
// release until timestamp.json is replaced, as the last step, and every
// file it references is on disk (fsynced) by then.
func Publish(ctx context.Context, o PublishOptions) (*PublishResult, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	for _, d := range []string{o.Repo, filepath.Join(o.Repo, metaDir), filepath.Join(o.Repo, "index"), filepath.Join(o.Repo, "chunks"), filepath.Join(o.Repo, targetsDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	// Make the top-level directories themselves durable (a first publish
	// creates them), so a power cut cannot keep metadata/ and lose chunks/.
	if err := syncDirs([]string{filepath.Dir(filepath.Clean(o.Repo)), o.Repo}); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	unlock, err := lockRepo(o.Repo)
	if err != nil {
		return nil, err
	}
	defer unlock()

	prev, err := readRepoState(ctx, o.Repo, o.Keys)
	if err != nil {
		return nil, fmt.Errorf("publish: current repository metadata: %w", err)
	}
	kept := map[string]*metadata.TargetFiles{}
	var bases []*Release
	if len(o.DeltaFrom) > 0 && prev == nil {
		return nil, fmt.Errorf("publish: %w: the repository has no release yet", ErrNoBase)
	}
	if prev != nil {
		byChannel, err := releasesIn(&prev.targets.Signed)
		if err != nil {
			return nil, fmt.Errorf("publish: current targets: %w", err)
		}
		if bases, err = o.deltaBases(byChannel); err != nil {
			return nil, err
		}
		if rs := byChannel[o.Channel]; len(rs) > 0 && rs[0].Version >= o.Version {
			return nil, fmt.Errorf("publish %s version %d: %w: channel %s is at version %d",
				o.Channel, o.Version, ErrStaleVersion, o.Channel, rs[0].Version)
		}
		for ch, rs := range byChannel {
			keep := o.Keep
			if ch == o.Channel {
				keep-- // room for the new one
			}
			for i, r := range rs {
				if i >= keep {
					break
				}
				for _, a := range r.Artifacts {
					p := TargetPath(r.Channel, r.Version, a.Name)
					kept[p] = prev.targets.Signed.Targets[p]
				}
			}
		}
		// A kept release keeps its delta indexes.
		for p, tf := range prev.targets.Signed.Targets {
			if !isDeltaTargetPath(p) {
				continue
			}
			dt, err := parseDeltaTarget(p, tf)
			if err != nil {
				return nil, fmt.Errorf("publish: current targets: %w", err)
			}
			if _, ok := kept[TargetPath(dt.Channel, dt.Version, dt.Artifact)]; ok {
				kept[p] = tf
			}
		}
	}
	if err := removeStaleTemps(filepath.Join(o.Repo, "chunks")); err != nil {
		return nil, err
	}
	if err := removeTargetTemps(filepath.Join(o.Repo, targetsDir)); err != nil {
		return nil, err
	}

	res := &PublishResult{Channel: o.Channel, Version: o.Version, RootVersion: o.Keys.RootVersion()}
	rel := o.release()
	w := newChunkWriter(filepath.Join(o.Repo, "chunks"))
	var total int64
	for _, a := range o.Artifacts {
		if st, err := os.Stat(a.Path); err == nil {
			total += st.Size()
		}
	}
	type indexFile struct {
		path string
		data []byte
	}
	var indexes []indexFile
	newIndexes := map[string]*chunker.Index{}
	var done int64
	for _, in := range o.Artifacts {
		ix, pa, err := w.writeImage(ctx, in, o, func(n int64) {
			if o.Progress != nil {
				o.Progress(done+n, total)
			}
		})
		if err != nil {
			w.abort()
			return nil, err
		}
		done += ix.Size
		enc := ix.Encode()
		sum := sha256.Sum256(enc)
		for i := range rel.Artifacts {
			if rel.Artifacts[i].Name == in.Name {
				a := &rel.Artifacts[i]
				a.Size, a.Root, a.Hash, a.Params, a.Chunks = ix.Size, ix.Root(), ix.Hash, ix.Params, len(ix.Chunks)
				a.Index, a.IndexLength, a.indexSHA256 = ix.CID(), int64(len(enc)), sum[:]
			}
		}
		indexes = append(indexes, indexFile{filepath.Join(o.Repo, IndexPath(ix.CID())), enc})
		newIndexes[in.Name] = ix
		res.Artifacts = append(res.Artifacts, *pa)
		res.Bytes += ix.Size
		res.Chunks += pa.Chunks
	}
	// Make every new chunk durable under its final name before any index
	// or metadata refers to it.
	if err := w.commit(); err != nil {
		return nil, err
	}
	res.NewChunks, res.NewBytes, res.NewRawBytes = int(w.newChunks.Load()), w.newBytes.Load(), w.newRaw.Load()
	for _, ix := range indexes {
		if _, err := os.Lstat(ix.path); err == nil {
			continue // content-addressed: same name, same bytes
		}
		if err := atomicfile.WriteFile(ix.path, ix.data, 0o644); err != nil {
			return nil, err
		}
	}

	targets, err := rel.targetFiles()
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	for p, tf := range kept {
		targets[p] = tf
	}
	if len(bases) > 0 {
		paths := map[string]string{}
		for _, in := range o.Artifacts {
			paths[in.Name] = in.Path
		}
		dts, pds, err := publishDeltas(ctx, deltaJob{repo: o.Repo, o: &o, prev: &prev.targets.Signed,
			bases: bases, rel: rel, indexes: newIndexes, paths: paths})
		if err != nil {
			return nil, err
		}
		for p, tf := range dts {
			targets[p] = tf
		}
		res.Deltas = pds
	}
	// Every target, new or kept, gets its file under targets/ (for stock
	// TUF clients) before any metadata lists it.
	if err := writeTargetFiles(o.Repo, targets); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	var logged int64
	if l, ok := o.Log.(loggedVersions); ok {
		if logged, err = l.LastLogged(ctx, o.Repo); err != nil {
			return nil, fmt.Errorf("publish: transparency log: %w", err)
		}
	}
	set, err := buildSet(o.Keys, prev, targets, expiry(o.Now(), o.Expires), logged)
	if err != nil {
		return nil, err
	}
	if err := writeRoots(o.Repo, o.Keys); err != nil {
		return nil, err
	}
	md := filepath.Join(o.Repo, metaDir)
	if err := atomicfile.WriteFile(filepath.Join(md, versionedName(set.targetsV, metadata.TARGETS)), set.targets, 0o644); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(md, versionedName(set.snapshotV, metadata.SNAPSHOT)), set.snapshot, 0o644); err != nil {
		return nil, err
	}
	if o.Log != nil {
		if err := o.Log.Append(ctx, o.Repo, set.targetsV, set.targets); err != nil {
			return nil, fmt.Errorf("publish: transparency log: %w", err)
		}
	}
	if err := atomicfile.WriteFile(filepath.Join(md, timestampName), set.timestamp, 0o644); err != nil {
		return nil, err
	}
	res.TargetsVersion, res.SnapshotVersion, res.TimestampVersion = set.targetsV, set.snapshotV, set.timestampV
	sort.Slice(res.Artifacts, func(i, j int) bool { return res.Artifacts[i].Name < res.Artifacts[j].Name })
	return res, nil
}

// writeRoots copies every root version of the key directory into
// metadata/N.root.json (clients walk N+1, N+2, ...) and the newest to
// metadata/root.json. An existing version with other bytes means the
// repository belongs to another key directory.
func writeRoots(repo string, k *Keyring) error {
	hist, err := k.RootHistory()
	if err != nil {
		return err
	}
	md := filepath.Join(repo, metaDir)
	for i, b := range hist {
		p := filepath.Join(md, versionedName(int64(i+1), metadata.ROOT))
		old, err := readBounded(p, maxRootFile)
		switch {
		case err == nil && bytes.Equal(old, b):
			continue
		case err == nil:
			return fmt.Errorf("%w: %s differs from %s: the repository was published with another key directory",
				ErrKeys, p, filepath.Join(k.Dir(), rootsDir, versionedName(int64(i+1), metadata.ROOT)))
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		if err := atomicfile.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	return atomicfile.WriteFile(filepath.Join(md, "root.json"), k.RootJSON(), 0o644)
}

// lockRepo takes an exclusive lock on the repository, so two publishes
// cannot interleave their versions.
func lockRepo(repo string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(repo, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("repository %s is locked by another publish: %w", repo, err)
	}
	return func() { f.Close() }, nil
}

// Temporary chunk files are named ".CID.tmp" inside their shard; a
// publish that died leaves some behind, and the next one removes them.
const tmpSuffix = ".tmp"

func removeStaleTemps(chunks string) error {
	shards, err := os.ReadDir(chunks)
	if err != nil {
		return err
	}
	for _, s := range shards {
		if !s.IsDir() {
			continue
		}
		dir := filepath.Join(chunks, s.Name())
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), tmpSuffix) {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
		}
	}
	return nil
}

// chunkWriter stores chunk objects. Workers compress each new chunk and
// hand it to a few writer goroutines, which write it to a temporary name
// without fsync; every flushEvery bytes a background flush (syncfs)
// pushes what is written to disk. commit then flushes the filesystem once
// more, renames every object into place and fsyncs the shard directories
// it touched. A filesystem flush covers thousands of files at the cost of
// writing them, where an fsync per file would wait on the journal each
// time.
type chunkWriter struct {
	dir       string
	claimed   sync.Map // chunker.Digest -> struct{}: written (or found) in this publish
	mu        sync.Mutex
	pending   []string // final paths whose temporaries await rename
	shards    sync.Map // shard name -> bool: directory exists; true if this publish created it
	touched   map[string]bool
	newChunks atomic.Int64
	newBytes  atomic.Int64
	newRaw    atomic.Int64
	bufs      sync.Pool
	startOnce sync.Once
	reqs      chan writeReq
	writers   sync.WaitGroup
	err       error // first failed write; guarded by mu
	flushedAt atomic.Int64
	flushReq  chan struct{}
	flushDone chan struct{}
	flushOnce sync.Once
}

// flushEvery is how many stored bytes go by between background flushes.
// The page cache would otherwise hold the whole publish until commit (on
// a machine with much memory the kernel starts writing back only at
// gigabytes); flushing as we go lets the disk work while the chunker
// does, and leaves commit's final flush little to do. Measured on a
// fresh ext4 with a 256 MiB image: 0.75 s, against 0.85-0.95 s with one
// flush at the end or with a sync_file_range per file.
const flushEvery = 32 << 20

func newChunkWriter(dir string) *chunkWriter {
	w := &chunkWriter{dir: dir, touched: map[string]bool{}, flushReq: make(chan struct{}, 1), flushDone: make(chan struct{})}
	go func() {
		defer close(w.flushDone)
		for range w.flushReq {
			// Errors here are not final: commit's own flush reports them.
			_ = syncFS(dir)
		}
	}()
	return w
}

// stopFlusher ends the background flushes and waits for a running one.
func (w *chunkWriter) stopFlusher() {
	w.flushOnce.Do(func() {
		close(w.flushReq)
		<-w.flushDone
	})
}

func tmpName(final string) string {
	d, f := filepath.Split(final)
	return filepath.Join(d, "."+f+tmpSuffix)
}

// claim decides whether the object named id (digest d) must be written:
// not when this publish claimed it already or the repository has it.
// It returns the object's final path and shard when it must.
func (w *chunkWriter) claim(id cid.Cid, d chunker.Digest) (final, sh string, write bool, err error) {
	if _, dup := w.claimed.LoadOrStore(d, struct{}{}); dup {
		return "", "", false, nil
	}
	s := id.String()
	sh = shard(s)
	final = filepath.Join(w.dir, sh, s)
	fresh, known := w.shards.Load(sh)
	if !known {
		// First object of this shard in this publish: a new directory
		// cannot hold the object, an old one may.
		err := os.Mkdir(filepath.Join(w.dir, sh), 0o755)
		switch {
		case err == nil:
			fresh, _ = w.shards.LoadOrStore(sh, true)
		case errors.Is(err, fs.ErrExist):
			fresh, _ = w.shards.LoadOrStore(sh, false)
		default:
			return "", "", false, err
		}
	}
	if !fresh.(bool) {
		if _, err := os.Lstat(final); err == nil {
			return "", "", false, nil
		}
	}
	return final, sh, true, nil
}

// queue hands obj to the writers under final's temporary name.
func (w *chunkWriter) queue(final, sh string, obj []byte) error {
	if err := w.write(tmpName(final), obj); err != nil {
		return fmt.Errorf("store object %s: %w", filepath.Base(final), err)
	}
	w.mu.Lock()
	w.pending = append(w.pending, final)
	w.touched[sh] = true
	w.mu.Unlock()
	return nil
}

// putObject stores an already encoded object (a delta object) named id
// unless the repository has it, and reports whether it wrote it. obj
// becomes the writer's.
func (w *chunkWriter) putObject(id cid.Cid, d chunker.Digest, obj []byte) (bool, error) {
	final, sh, ok, err := w.claim(id, d)
	if err != nil || !ok {
		return false, err
	}
	if err := w.queue(final, sh, obj); err != nil {
		return false, err
	}
	w.newChunks.Add(1)
	w.newBytes.Add(int64(len(obj)))
	return true, nil
}

// put stores one chunk unless the repository already has it.
func (w *chunkWriter) put(h chunker.Hash, c chunker.Chunk, data []byte, pa *artifactCounters) error {
	final, sh, ok, err := w.claim(h.ID(c.Digest), c.Digest)
	if err != nil || !ok {
		return err
	}
	var buf []byte
	if b, ok := w.bufs.Get().(*[]byte); ok {
		buf = (*b)[:0]
	}
	obj := EncodeChunk(buf, data)
	n := int64(len(obj))
	if err := w.queue(final, sh, obj); err != nil {
		return err
	}
	w.newChunks.Add(1)
	if total := w.newBytes.Add(n); total-w.flushedAt.Load() > flushEvery {
		w.flushedAt.Store(total)
		select {
		case w.flushReq <- struct{}{}:
		default: // a flush is running; it will be followed by another
		}
	}
	w.newRaw.Add(int64(len(data)))
	pa.newChunks.Add(1)
	pa.newBytes.Add(n)
	return nil
}

// Creating a file costs far more kernel time than writing 64 KiB into
// it, and much of it is spent waiting on the filesystem journal; handing
// the writes to a few more goroutines than there are cores overlaps those
// waits while the chunker's workers go on compressing.
const fileWriters = 8

type writeReq struct {
	path string
	obj  []byte
}

// write queues obj for writing to path. Errors surface from the next call
// or from commit.
func (w *chunkWriter) write(path string, obj []byte) error {
	w.startOnce.Do(func() {
		w.reqs = make(chan writeReq, 2*fileWriters)
		for range fileWriters {
			w.writers.Add(1)
			go func() {
				defer w.writers.Done()
				for r := range w.reqs {
					err := writeFile(r.path, r.obj)
					o := r.obj
					w.bufs.Put(&o)
					if err != nil {
						w.setErr(err)
					}
				}
			}()
		}
	})
	if err := w.firstErr(); err != nil {
		return err
	}
	w.reqs <- writeReq{path, obj}
	return nil
}

func (w *chunkWriter) setErr(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *chunkWriter) firstErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// writeFile creates path with data. Plain system calls: os.File would
// register each short-lived descriptor with the poller and switch its
// mode back and forth, which costs more than the write itself here.
// Nothing is fsynced; commit flushes the filesystem once.
func writeFile(path string, data []byte) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	for len(data) > 0 && err == nil {
		var n int
		n, err = unix.Write(fd, data)
		if err == unix.EINTR {
			err = nil
		}
		data = data[n:]
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

// drain waits for queued writes to finish.
func (w *chunkWriter) drain() error {
	if w.reqs != nil {
		close(w.reqs)
		w.writers.Wait()
		w.reqs = nil
		w.startOnce = sync.Once{}
	}
	return w.firstErr()
}

type artifactCounters struct {
	newChunks, newBytes atomic.Int64
}

// writeImage chunks one image and stores its new chunks.
func (w *chunkWriter) writeImage(ctx context.Context, in ArtifactInput, o PublishOptions, progress func(int64)) (*chunker.Index, *PublishedArtifact, error) {
	f, err := os.Open(in.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("artifact %s: %w", in.Name, err)
	}
	defer f.Close()
	var pc artifactCounters
	ix, err := chunker.Split(ctx, f, chunker.Options{
		Params: o.Params, Hash: o.Hash, Workers: o.Workers,
		Work: func(c chunker.Chunk, data []byte) error {
			return w.put(o.Hash, c, data, &pc)
		},
		Progress: progress,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("artifact %s (%s): %w", in.Name, in.Path, err)
	}
	return ix, &PublishedArtifact{
		Name: in.Name, Index: ix.CID().String(), Size: ix.Size, Root: ix.Root().String(),
		Chunks: len(ix.Chunks), NewChunks: int(pc.newChunks.Load()), NewBytes: pc.newBytes.Load(),
	}, nil
}

// commit makes pending objects durable and visible under their names.
func (w *chunkWriter) commit() error {
	err := w.drain()
	w.stopFlusher()
	if err != nil {
		return fmt.Errorf("store chunk: %w", err)
	}
	if len(w.pending) == 0 {
		return nil
	}
	if err := syncFS(w.dir); err != nil {
		return err
	}
	for _, final := range w.pending {
		if err := os.Rename(tmpName(final), final); err != nil {
			return fmt.Errorf("store chunk: %w", err)
		}
	}
	dirs := []string{w.dir}
	for sh := range w.touched {
		dirs = append(dirs, filepath.Join(w.dir, sh))
	}
	return syncDirs(dirs)
}

// abort removes the temporaries of a failed publish.
func (w *chunkWriter) abort() {
	w.drain()
	w.stopFlusher()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, final := range w.pending {
		os.Remove(tmpName(final))
	}
	w.pending = nil
}

// syncFS flushes the whole filesystem holding dir.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}

// syncDirs fsyncs directories, a few at a time.
func syncDirs(dirs []string) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 8)
	)
	for _, d := range dirs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f, err := os.Open(d)
			if err == nil {
				err = f.Sync()
				f.Close()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("fsync %s: %w", d, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
