package delta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
)

// ErrImageMismatch is wrapped when an image's bytes do not match its index:
// a chunk that does not hash to its ID, or an image that ends early. It
// wraps chunker.ErrMismatch, which callers already treat as "the bytes are
// not what the index says".
var ErrImageMismatch = fmt.Errorf("delta: image does not match its index: %w", chunker.ErrMismatch)

// Image is one release artifact: its index and its bytes.
type Image struct {
	Index *chunker.Index
	Data  io.ReaderAt // at least Index.Size bytes; read-only, concurrently
}

// Options tune the planner. The zero value is usable: [Options.fill]
// supplies the defaults.
type Options struct {
	// MaxRef caps the reference bytes of one delta (1..RefCeil; default
	// DefaultMaxRef). A device reads this much of its slot per delta.
	MaxRef int
	// Level is the zstd level of the deltas (default SpeedBestCompression:
	// on the Debian pairs it sends 7% less than SpeedBetterCompression for
	// three times the publisher's time; docs/deltas.md has the figures).
	Level zstd.EncoderLevel
	// Workers compress in parallel (default: GOMAXPROCS, at most 2).
	Workers int
	// MinSaving is the fraction of the whole object's size a delta must
	// save to be kept (default 1/10): a delta costs a device a read of its
	// reference and a fallback path, so a marginal one is not worth it.
	MinSaving float64
	// Objects, when set, receives every kept delta object (in target
	// order, after planning). The slice is the planner's; copy it to keep.
	Objects func(e Entry, obj []byte) error
}

func (o *Options) fill() error {
	if o.MaxRef == 0 {
		o.MaxRef = DefaultMaxRef
	}
	if o.MaxRef < 0 || o.MaxRef > RefCeil {
		return fmt.Errorf("delta: reference cap %d outside 1..%d", o.MaxRef, RefCeil)
	}
	if o.Level == 0 {
		o.Level = zstd.SpeedBestCompression
	}
	if o.Workers <= 0 {
		o.Workers = min(runtime.GOMAXPROCS(0), 2)
	}
	if o.MinSaving == 0 {
		o.MinSaving = 0.1
	}
	if o.MinSaving < 0 || o.MinSaving >= 1 {
		return fmt.Errorf("delta: minimum saving %v outside [0,1)", o.MinSaving)
	}
	return nil
}

// Stats is what a plan costs and saves.
type Stats struct {
	NewChunks   int   // distinct chunks of the target the base lacks
	NewBytes    int64 // their bytes, raw
	WholeBytes  int64 // their stored objects (chunker/object), what a device fetches without deltas
	Deltas      int   // new chunks with a delta
	KeptWhole   int   // new chunks without one (no delta clearly smaller)
	DeltaBytes  int64 // what a device fetches with deltas: delta objects plus the whole objects of the rest
	ObjectBytes int64 // the delta objects alone
	RefBytes    int64 // reference bytes the deltas name: what a device reads from its slot
	References  int   // distinct references (zstd dictionaries) the planner built
}

// Plan computes a delta for every chunk of target that base lacks, against
// reference ranges of base chosen from the chunks the two share
// (docs/deltas.md), and returns the delta index of the pair with its
// statistics. Every target chunk it reads and every base chunk a reference
// touches is checked against its index (ErrImageMismatch otherwise).
// Memory: per worker one reference and one zstd encoder, plus the kept
// delta objects when opts.Objects is set; the images are read, never held.
func Plan(ctx context.Context, base, target Image, opts Options) (*Index, Stats, error) {
	var st Stats
	if err := opts.fill(); err != nil {
		return nil, st, err
	}
	if base.Index.Hash != target.Index.Hash {
		return nil, st, fmt.Errorf("delta: indexes use different hash functions (%v and %v)", base.Index.Hash, target.Index.Hash)
	}
	p := newPlanner(base, target, opts)
	jobs := p.jobs()
	groups := groupByReference(jobs)
	st.NewChunks = len(jobs)
	st.References = len(groups)

	results := make([]result, len(jobs))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		errAt    = int64(len(groups)) // group index of the error kept, so the earliest wins
		errMu    sync.Mutex
	)
	fail := func(g int, err error) {
		errMu.Lock()
		if int64(g) < errAt {
			errAt, firstErr = int64(g), err
		}
		errMu.Unlock()
		errOnce.Do(cancel)
	}
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := p.newWorker()
			if err != nil {
				fail(-1, err)
				return
			}
			defer w.close()
			for {
				g := int(next.Add(1) - 1)
				if g >= len(groups) || ctx.Err() != nil {
					return
				}
				if err := w.group(jobs, groups[g], results); err != nil {
					fail(g, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, st, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, st, err
	}

	ix := &Index{
		Hash:     target.Index.Hash,
		Base:     base.Index.Hash.Sum(base.Index.Encode()),
		Target:   target.Index.Hash.Sum(target.Index.Encode()),
		BaseSize: base.Index.Size,
		MaxChunk: target.Index.Params.Max,
		MaxRef:   opts.MaxRef,
	}
	for i, j := range jobs {
		r := &results[i]
		st.NewBytes += int64(j.size)
		st.WholeBytes += int64(r.whole)
		if r.obj == nil {
			st.KeptWhole++
			st.DeltaBytes += int64(r.whole)
			continue
		}
		e := Entry{Pos: j.pos, Digest: ix.Hash.Sum(r.obj), Size: len(r.obj), Ranges: j.ranges}
		ix.Entries = append(ix.Entries, e)
		st.Deltas++
		st.DeltaBytes += int64(len(r.obj))
		st.ObjectBytes += int64(len(r.obj))
		st.RefBytes += RefLen(j.ranges)
		if opts.Objects != nil {
			if err := opts.Objects(e, r.obj); err != nil {
				return nil, st, err
			}
		}
	}
	return ix, st, nil
}

// job is one new chunk of the target.
type job struct {
	pos    int64 // position in the target index
	off    int64 // offset in the target image
	size   int
	ranges []Range
}

// result is what a worker made of a job.
type result struct {
	whole int    // size of the chunk's whole stored object
	obj   []byte // the delta object, nil when not kept
}

type planner struct {
	base, target Image
	opts         Options
	baseOff      []int64
	baseOK       []atomic.Bool // base chunks verified against their ID
	refs         refChooser
}

func newPlanner(base, target Image, opts Options) *planner {
	p := &planner{base: base, target: target, opts: opts, baseOff: base.Index.Offsets()}
	p.baseOK = make([]atomic.Bool, len(base.Index.Chunks))
	p.refs = newRefChooser(base.Index, target.Index, p.baseOff, opts.MaxRef)
	return p
}

// jobs lists the distinct new chunks of the target in target order, each
// with its reference.
func (p *planner) jobs() []job {
	var jobs []job
	seen := make(map[chunker.Digest]struct{})
	toff := p.refs.targetOff
	for i, e := range p.target.Index.Chunks {
		if p.refs.inBase[i] >= 0 {
			continue
		}
		if _, ok := seen[e.Digest]; ok {
			continue
		}
		seen[e.Digest] = struct{}{}
		jobs = append(jobs, job{pos: int64(i), off: toff[i], size: int(e.Size), ranges: p.refs.choose(i)})
	}
	return jobs
}

// groupByReference splits jobs into runs that share one reference, so a
// worker indexes each reference once. Jobs stay in target order.
func groupByReference(jobs []job) [][2]int {
	var groups [][2]int
	for i := 0; i < len(jobs); {
		j := i + 1
		for j < len(jobs) && sameRanges(jobs[j].ranges, jobs[i].ranges) {
			j++
		}
		groups = append(groups, [2]int{i, j})
		i = j
	}
	return groups
}

func sameRanges(a, b []Range) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type worker struct {
	p       *planner
	enc     *Encoder
	ref     []byte // the current reference
	span    []byte // base chunks read to verify a reference
	chunk   []byte
	whole   []byte
	deltaSc []byte
}

func (p *planner) newWorker() (*worker, error) {
	enc, err := NewEncoder(p.opts.Level, p.target.Index.Params.Max, p.opts.MaxRef)
	if err != nil {
		return nil, err
	}
	return &worker{p: p, enc: enc, chunk: make([]byte, p.target.Index.Params.Max)}, nil
}

func (w *worker) close() { w.enc.Close() }

// group encodes the jobs of one reference.
func (w *worker) group(jobs []job, g [2]int, results []result) error {
	ranges := jobs[g[0]].ranges
	if len(ranges) > 0 { // an empty base offers no reference
		ref, err := w.readReference(ranges)
		if err != nil {
			return err
		}
		// The encoder keeps ref until the next SetReference, which this
		// worker makes only after this group: the buffer may be reused then.
		if err := w.enc.SetReference(ref, ranges); err != nil {
			return err
		}
	}
	for k := g[0]; k < g[1]; k++ {
		j := jobs[k]
		data := w.chunk[:j.size]
		if err := readFull(w.p.target.Data, data, j.off); err != nil {
			return fmt.Errorf("target image: chunk %d at offset %d: %w", j.pos, j.off, err)
		}
		id := w.p.target.Index.ID(int(j.pos))
		if got, ok, err := chunker.SumID(id, data); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("target image: chunk %d at offset %d: %w: bytes hash to %s, the index says %s", j.pos, j.off, ErrImageMismatch, got, id)
		}
		w.whole = object.Encode(w.whole[:0], data)
		r := &results[k]
		r.whole = len(w.whole)
		if len(ranges) == 0 {
			continue
		}
		w.deltaSc = w.enc.Encode(w.deltaSc[:0], data)
		if float64(len(w.deltaSc)) <= float64(len(w.whole))*(1-w.p.opts.MinSaving) {
			r.obj = append([]byte(nil), w.deltaSc...)
		}
	}
	return nil
}

// readReference reads the bytes of ranges from the base image, checking
// every base chunk they touch against its ID the first time it is read.
func (w *worker) readReference(ranges []Range) ([]byte, error) {
	p := w.p
	n := RefLen(ranges)
	if int64(cap(w.ref)) < n {
		w.ref = make([]byte, n)
	}
	ref := w.ref[:n]
	dst := ref
	for _, r := range ranges {
		// Chunks a..b (inclusive) cover the range.
		a := chunkAt(p.baseOff, r.Off)
		b := chunkAt(p.baseOff, r.End()-1)
		start, end := p.baseOff[a], p.baseOff[b+1]
		if int64(cap(w.span)) < end-start {
			w.span = make([]byte, end-start)
		}
		span := w.span[:end-start]
		if err := readFull(p.base.Data, span, start); err != nil {
			return nil, fmt.Errorf("base image: bytes [%d,%d): %w", start, end, err)
		}
		for c := a; c <= b; c++ {
			if p.baseOK[c].Load() {
				continue
			}
			data := span[p.baseOff[c]-start : p.baseOff[c+1]-start]
			if p.base.Index.Hash.Sum(data) != p.base.Index.Chunks[c].Digest {
				return nil, fmt.Errorf("base image: chunk %d at offset %d: %w: its bytes do not hash to %s", c, p.baseOff[c], ErrImageMismatch, p.base.Index.ID(c))
			}
			p.baseOK[c].Store(true)
		}
		copy(dst, span[r.Off-start:r.End()-start])
		dst = dst[r.Len:]
	}
	return ref, nil
}

// chunkAt returns the chunk of offsets (as Index.Offsets returns them)
// that holds byte off.
func chunkAt(offsets []int64, off int64) int {
	lo, hi := 0, len(offsets)-1 // offsets[lo] <= off < offsets[hi]
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if offsets[m] <= off {
			lo = m
		} else {
			hi = m
		}
	}
	return lo
}

// readFull reads len(b) bytes at off; an image that ends early does not
// match its index.
func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: image ends %d bytes early", ErrImageMismatch, len(b)-n)
	}
	return err
}
