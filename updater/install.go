package updater

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/updater/fsys"
)

// ChunkSource serves chunk bytes by ID. store.Source, an HTTP origin, a
// bundle and the swarm all satisfy it; the installer checks every chunk it
// gets against its ID, so a source need not be trusted. Get returns a
// buffer the caller owns.
type ChunkSource interface {
	Get(ctx context.Context, id cid.Cid) ([]byte, error)
}

// BulkSource is a ChunkSource that delivers many chunks in the order it
// chooses: the swarm, whose scheduler decides which chunk comes from which
// peer when. The installer hands it every chunk it lacks at once.
//
// FetchAll calls deliver for wanted chunks as they arrive, from one
// goroutine at a time, and returns when each has been delivered once with
// deliver returning nil, when deliver returns an error it cannot recover
// from, or when ctx ends. deliver checks the bytes against the ID; an
// error wrapping ErrBadChunk means those bytes were refused (the source
// should penalise whoever sent them and deliver the chunk again, from
// elsewhere); the buffer is the installer's after the call.
type BulkSource interface {
	ChunkSource
	FetchAll(ctx context.Context, want []cid.Cid, deliver func(id cid.Cid, data []byte) error) error
}

// Sentinel errors callers branch on.
var (
	ErrSlotTooSmall = errors.New("updater: release does not fit in the slot")
	ErrBadChunk     = errors.New("updater: source sent a chunk that does not match its ID")
	ErrVerifyFailed = errors.New("updater: slot does not verify against the release")
)

// LocalCopy is an installed artifact whose chunks can be copied instead of
// downloaded: typically the active slot and the index it was installed
// from. The installer still verifies the result, so a damaged local copy
// costs a download, never a bad install.
type LocalCopy struct {
	File  io.ReaderAt
	Index *chunker.Index
}

// InstallPlan says what to write where.
type InstallPlan struct {
	Target     fsys.File      // the inactive slot, opened read-write
	TargetSize int64          // the slot's capacity in bytes
	Index      *chunker.Index // the release's verified index
	Local      []LocalCopy
	Source     ChunkSource
	// Resume makes the installer first hash what the target slot already
	// holds and keep the chunks that are in place (after an interrupted
	// install of the same index).
	Resume bool
	// Fetchers is the number of concurrent source requests (default 4).
	Fetchers int
	// Retries is how often a chunk that fails verification is fetched
	// again before giving up (default 3).
	Retries int
	// Progress, if set, is called with bytes placed so far and the total.
	Progress func(done, total int64)
	// SourceName names the source in errors.
	SourceName string
	// Placed, if set, is told the chunk positions that hold verified
	// bytes: those found in place, then each copied or fetched one as it
	// is written. A node serves them to its peers while the install runs.
	// Called from one goroutine at a time.
	Placed func(positions []int)
	// Deltas, if set, builds the new chunks its delta index lists from
	// delta objects against the base it names instead of fetching them
	// whole from Source; a delta that fails is refused and its chunk
	// fetched whole.
	Deltas *DeltaPlan
	// Log, if set, hears what a person may want to know (a refused delta).
	Log func(format string, args ...any)
}

// InstallStats says where the bytes of an install came from.
type InstallStats struct {
	Chunks        int   `json:"chunks"`
	InPlaceBytes  int64 `json:"in_place_bytes"` // already in the target slot (resume)
	LocalBytes    int64 `json:"local_bytes"`    // copied from a local artifact
	FetchedBytes  int64 `json:"fetched_bytes"`  // downloaded from the source
	FetchedChunks int   `json:"fetched_chunks"`
	Refetched     int   `json:"refetched"` // chunks fetched again after failing verification

	// Deltas (docs/deltas.md). DeltaBase is the release the deltas were
	// made against (0: no delta index was used; DeltaNote says why).
	DeltaBase       uint64   `json:"delta_base,omitempty"`
	DeltaIndexBytes int64    `json:"delta_index_bytes"` // the delta index fetched
	DeltaChunks     int      `json:"delta_chunks"`      // chunks built from deltas
	DeltaBytes      int64    `json:"delta_bytes"`       // delta objects fetched, refused ones included
	DeltaRawBytes   int64    `json:"delta_raw_bytes"`   // bytes of the chunks they built
	DeltaRefBytes   int64    `json:"delta_ref_bytes"`   // reference bytes read from the active slot
	DeltaFailed     int      `json:"delta_failed"`      // deltas refused or unavailable; their chunks were fetched whole
	DeltaRefusals   []string `json:"delta_refusals,omitempty"`
	DeltaNote       string   `json:"delta_note,omitempty"` // why no delta index was used
}

// Install writes the release described by p.Index into p.Target, fsyncs
// it, re-reads it and checks every chunk against the index. On success
// the first Index.Size bytes of the slot hold exactly the release. On
// failure the slot holds an unusable mix and must not be booted; the
// caller marks it bad. Install never touches anything but p.Target.
func Install(ctx context.Context, p InstallPlan) (InstallStats, error) {
	var st InstallStats
	ix := p.Index
	if ix.Size > p.TargetSize {
		return st, fmt.Errorf("%w: release is %d bytes, slot holds %d", ErrSlotTooSmall, ix.Size, p.TargetSize)
	}
	if p.Fetchers <= 0 {
		p.Fetchers = 4
	}
	if p.Retries <= 0 {
		p.Retries = 3
	}
	if p.SourceName == "" {
		p.SourceName = "source"
	}
	st.Chunks = len(ix.Chunks)
	off := ix.Offsets()
	have := make([]bool, len(ix.Chunks))
	if p.Resume {
		n, err := scanInPlace(ctx, p.Target, ix, off, have)
		if err != nil {
			return st, err
		}
		st.InPlaceBytes = n
		var in []int
		for i, h := range have {
			if h {
				in = append(in, i)
			}
		}
		p.placed(in)
	}
	var done int64 = st.InPlaceBytes
	report := func(n int64) {
		done += n
		if p.Progress != nil {
			p.Progress(done, ix.Size)
		}
	}

	// Where each digest can be copied from locally.
	type loc struct {
		f   io.ReaderAt
		off int64
	}
	local := map[chunker.Digest]loc{}
	for _, l := range p.Local {
		if l.Index == nil || l.Index.Hash != ix.Hash {
			continue
		}
		lo := l.Index.Offsets()
		for i, e := range l.Index.Chunks {
			if _, ok := local[e.Digest]; !ok {
				local[e.Digest] = loc{l.File, lo[i]}
			}
		}
	}

	// Sort the positions: copied from a local release, or fetched
	// (positions holding the same chunk grouped, so it is fetched once).
	type copyJob struct {
		i int
		l loc
	}
	var copies []copyJob
	var remote [][]int
	pending := map[chunker.Digest]int{} // digest -> position in remote
	addRemote := func(groups *[][]int, i int) {
		d := ix.Chunks[i].Digest
		if k, ok := pending[d]; ok {
			(*groups)[k] = append((*groups)[k], i)
			return
		}
		pending[d] = len(*groups)
		*groups = append(*groups, []int{i})
	}
	for i, e := range ix.Chunks {
		if have[i] {
			continue
		}
		if l, ok := local[e.Digest]; ok {
			copies = append(copies, copyJob{i, l})
		} else {
			addRemote(&remote, i)
		}
	}
	// Chunks with a delta are built from it instead of fetched.
	remote, deltaJobs := splitDeltas(&p, remote, &st)

	// The local copies run beside the download: a small change to a large
	// release would otherwise wait for the whole copy before its first
	// request. Progress and Placed hear both, one call at a time.
	var mu sync.Mutex
	if pl := p.Placed; pl != nil {
		p.Placed = func(g []int) { mu.Lock(); defer mu.Unlock(); pl(g) }
	}
	sreport := func(n int64) { mu.Lock(); defer mu.Unlock(); report(n) }
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var unreadable []int // local copies that could not be read: fetched after
	copied := make(chan error, 1)
	go func() {
		copied <- func() error {
			buf := make([]byte, ix.Params.Max)
			for _, c := range copies {
				if fctx.Err() != nil {
					return context.Cause(fctx)
				}
				e := ix.Chunks[c.i]
				b := buf[:e.Size]
				if _, err := c.l.f.ReadAt(b, c.l.off); err != nil {
					unreadable = append(unreadable, c.i)
					continue
				}
				if _, err := p.Target.WriteAt(b, off[c.i]); err != nil {
					err = fmt.Errorf("write chunk %d at offset %d of %s: %w", c.i, off[c.i], p.Target.Name(), err)
					cancel(err)
					return err
				}
				st.LocalBytes += int64(e.Size)
				sreport(int64(e.Size))
				p.placed([]int{c.i})
			}
			return nil
		}()
	}()
	// Deltas are expanded beside both: they cost the origin little and
	// the device CPU and slot reads, which the whole-chunk download does
	// not compete for much.
	var refused [][]int
	expanded := make(chan error, 1)
	go func() {
		var err error
		refused, err = expandDeltas(fctx, p, deltaJobs, off, &st, sreport)
		if err != nil {
			cancel(err)
		}
		expanded <- err
	}()
	ferr := fetchInto(fctx, p, remote, off, &st, sreport)
	if ferr != nil {
		cancel(ferr)
	}
	derr := <-expanded
	if err := <-copied; err != nil {
		return st, err
	}
	if ferr != nil {
		return st, ferr
	}
	if derr != nil {
		return st, derr
	}
	if len(unreadable) > 0 || len(refused) > 0 {
		// Refused deltas' chunks and unreadable local copies are fetched
		// whole now. The two never share a chunk: a chunk with a local
		// copy is not given to a delta.
		again := refused
		pending = map[chunker.Digest]int{}
		for _, i := range unreadable {
			addRemote(&again, i)
		}
		if err := fetchInto(ctx, p, again, off, &st, sreport); err != nil {
			return st, err
		}
	}
	if err := p.Target.Sync(); err != nil {
		return st, fmt.Errorf("fsync %s: %w", p.Target.Name(), err)
	}

	// Re-read and verify. Chunks that fail (a damaged local copy, a torn
	// write) are fetched once more from the source and checked again.
	for attempt := 0; ; attempt++ {
		bad, err := badChunks(ctx, p.Target, ix, off)
		if err != nil {
			return st, err
		}
		if len(bad) == 0 {
			return st, nil
		}
		if attempt == 1 {
			return st, fmt.Errorf("%w: chunk %d at offset %d still differs after refetching %d chunks", ErrVerifyFailed, bad[0], off[bad[0]], st.Refetched)
		}
		st.Refetched += len(bad)
		groups := make([][]int, len(bad))
		for k, i := range bad {
			groups[k] = []int{i}
		}
		if err := fetchInto(ctx, p, groups, off, &st, func(int64) {}); err != nil {
			return st, err
		}
		if err := p.Target.Sync(); err != nil {
			return st, fmt.Errorf("fsync %s: %w", p.Target.Name(), err)
		}
	}
}

func (p *InstallPlan) placed(positions []int) {
	if p.Placed != nil && len(positions) > 0 {
		p.Placed(positions)
	}
}

// fetchInto downloads one chunk per group from the source with
// p.Fetchers workers, verifies it against its ID and writes it at the
// offset of every position in the group (positions holding the same chunk).
func fetchInto(ctx context.Context, p InstallPlan, groups [][]int, off []int64, st *InstallStats, report func(int64)) error {
	if len(groups) == 0 {
		return nil
	}
	if p.Source == nil {
		return fmt.Errorf("updater: %d chunks must be downloaded but no source is configured", len(groups))
	}
	if b, ok := p.Source.(BulkSource); ok {
		return fetchBulk(ctx, p, b, groups, off, st, report)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan []int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range min(p.Fetchers, len(groups)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range work {
				n, err := fetchOne(ctx, p, g, off)
				if err != nil {
					cancel(err)
					continue
				}
				mu.Lock()
				st.FetchedBytes += n
				st.FetchedChunks++
				report(n * int64(len(g)))
				p.placed(g)
				mu.Unlock()
			}
		}()
	}
	for _, g := range groups {
		select {
		case work <- g:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	return context.Cause(ctx)
}

// fetchBulk hands a BulkSource every chunk of groups and writes each at
// all its positions as it arrives, after checking it against its ID.
//
// The writes run on a goroutine of their own, behind a short queue: the
// source calls deliver from its scheduling loop, which would otherwise
// stop requesting while the kernel copies each chunk into the slot (on a
// fast link the write is the largest cost of a chunk). A chunk counts as
// placed (p.Placed, progress) once it is written.
func fetchBulk(ctx context.Context, p InstallPlan, src BulkSource, groups [][]int, off []int64, st *InstallStats, report func(int64)) error {
	ix := p.Index
	pending := make(map[cid.Cid][]int, len(groups))
	want := make([]cid.Cid, 0, len(groups))
	for _, g := range groups {
		id := ix.ID(g[0])
		if _, dup := pending[id]; !dup {
			want = append(want, id)
		}
		pending[id] = append(pending[id], g...)
	}

	type write struct {
		b []byte
		g []int
	}
	writes := make(chan write, writeQueue)
	var werr atomic.Pointer[error]
	done := make(chan struct{})
	go func() {
		defer close(done)
		for w := range writes {
			if werr.Load() != nil {
				continue // drain
			}
			for _, j := range w.g {
				if _, err := p.Target.WriteAt(w.b, off[j]); err != nil {
					err = fmt.Errorf("write chunk %d at offset %d of %s: %w", j, off[j], p.Target.Name(), err)
					werr.Store(&err)
					break
				}
			}
			if werr.Load() == nil {
				report(int64(len(w.b)) * int64(len(w.g)))
				p.placed(w.g)
			}
		}
	}()

	deliver := func(id cid.Cid, b []byte) error {
		if err := werr.Load(); err != nil {
			return *err
		}
		g, ok := pending[id]
		if !ok {
			return nil // not wanted, or delivered already: ignore
		}
		e := ix.Chunks[g[0]]
		if len(b) != int(e.Size) || ix.Hash.Sum(b) != e.Digest {
			return fmt.Errorf("%w: chunk %d: %s delivered %d bytes that do not hash to %s", ErrBadChunk, g[0], p.SourceName, len(b), id)
		}
		delete(pending, id)
		st.FetchedBytes += int64(len(b))
		st.FetchedChunks++
		select {
		case writes <- write{b, g}:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	err := src.FetchAll(ctx, want, deliver)
	close(writes)
	<-done
	if err != nil {
		return fmt.Errorf("%s: %w", p.SourceName, err)
	}
	if err := werr.Load(); err != nil {
		return *err
	}
	if len(pending) > 0 {
		return fmt.Errorf("updater: %s finished with %d of %d chunks not delivered", p.SourceName, len(pending), len(want))
	}
	return nil
}

// writeQueue is how many verified chunks may wait for their write into the
// slot while the source goes on (at most 64 maximum chunks of memory).
const writeQueue = 64

func fetchOne(ctx context.Context, p InstallPlan, group []int, offs []int64) (int64, error) {
	ix := p.Index
	i := group[0]
	id := ix.ID(i)
	want := ix.Chunks[i]
	var lastErr error
	for try := 0; try <= p.Retries; try++ {
		if err := ctx.Err(); err != nil {
			return 0, context.Cause(ctx)
		}
		b, err := p.Source.Get(ctx, id)
		if err != nil {
			lastErr = fmt.Errorf("chunk %d (%s) from %s: %w", i, id, p.SourceName, err)
			if ctx.Err() != nil {
				return 0, lastErr
			}
			continue
		}
		if len(b) != int(want.Size) || ix.Hash.Sum(b) != want.Digest {
			got := ix.Hash.ID(ix.Hash.Sum(b))
			lastErr = fmt.Errorf("%w: chunk %d: %s sent %d bytes hashing to %s, want %s (%d bytes)",
				ErrBadChunk, i, p.SourceName, len(b), got, id, want.Size)
			continue
		}
		for _, j := range group {
			if _, err := p.Target.WriteAt(b, offs[j]); err != nil {
				return 0, fmt.Errorf("write chunk %d at offset %d of %s: %w", j, offs[j], p.Target.Name(), err)
			}
		}
		return int64(len(b)), nil
	}
	return 0, lastErr
}

// scanInPlace marks chunks the target already holds and returns their bytes.
func scanInPlace(ctx context.Context, f io.ReaderAt, ix *chunker.Index, off []int64, have []bool) (int64, error) {
	bad, err := badChunks(ctx, f, ix, off)
	if err != nil {
		return 0, err
	}
	for i := range have {
		have[i] = true
	}
	for _, i := range bad {
		have[i] = false
	}
	var n int64
	for i, h := range have {
		if h {
			n += int64(ix.Chunks[i].Size)
		}
	}
	return n, nil
}

// badChunks hashes every chunk range of f on all cores and returns the
// chunks whose bytes differ from the index, in order.
func badChunks(ctx context.Context, f io.ReaderAt, ix *chunker.Index, off []int64) ([]int, error) {
	var bad []int
	err := chunker.Verify(ctx, io.NewSectionReader(f, 0, ix.Size), ix)
	if err == nil {
		return nil, nil
	}
	var ce *chunker.ChunkError
	if !errors.As(err, &ce) {
		return nil, fmt.Errorf("read back slot: %w", err)
	}
	// At least one chunk is bad: list them all (rare path, so a simple
	// sequential pass is fine).
	buf := make([]byte, ix.Params.Max)
	for i, e := range ix.Chunks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := buf[:e.Size]
		if _, err := f.ReadAt(b, off[i]); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read back chunk %d at offset %d: %w", i, off[i], err)
		} else if err != nil || ix.Hash.Sum(b) != e.Digest {
			bad = append(bad, i)
		}
	}
	return bad, nil
}
