package chunker

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// Chunk is one chunk as the pipeline reports it.
type Chunk struct {
	Index  int   // position in the stream
	Offset int64 // byte offset in the stream
	Size   uint32
	Digest Digest
}

// Options configure [Split].
type Options struct {
	Params Params // zero value means DefaultParams
	Hash   Hash   // zero value means SHA256

	// Workers is the number of hashing goroutines; 0 means GOMAXPROCS.
	Workers int

	// Work, if set, runs for every chunk on a worker goroutine after the
	// chunk is hashed, in no particular order and concurrently with other
	// calls. data is valid only during the call and must not be modified.
	// Use it for per-chunk work that should use every core, such as
	// compressing and storing the chunk. After Work fails on a chunk, it is
	// still called for earlier chunks but may be skipped for later ones.
	Work func(c Chunk, data []byte) error

	// Emit, if set, runs for every chunk in stream order on the goroutine
	// that called Split, after Work for that chunk returned.
	Emit func(c Chunk) error

	// Progress, if set, is called in stream order with the number of bytes
	// finished so far.
	Progress func(done int64)
}

func (o *Options) fill() error {
	if o.Params == (Params{}) {
		o.Params = DefaultParams
	}
	if err := o.Params.Validate(); err != nil {
		return err
	}
	if o.Hash == 0 {
		o.Hash = SHA256
	}
	if !o.Hash.Valid() {
		return fmt.Errorf("%w: %v", ErrUnknownHash, o.Hash)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return nil
}

// Split reads r to the end, cuts it into content-defined chunks, hashes
// them in parallel and returns the index. Memory use is bounded by a few
// read buffers (see bufferSize) regardless of the input's size.
//
// When several things fail (Work on one chunk, Emit on another, the reader
// at some offset), the error returned is the earliest in stream order, so
// the same input and the same failures give the same error every time.
func Split(ctx context.Context, r io.Reader, o Options) (*Index, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	ix := &Index{Params: o.Params, Hash: o.Hash}
	c := newCutter(o.Params)
	err := run(ctx, r, o, o.Params.Max, func(data []byte, eof bool) (int, error) {
		return c.cut(data), nil
	}, func(ch Chunk) error {
		ix.Chunks = append(ix.Chunks, Entry{Size: ch.Size, Digest: ch.Digest})
		ix.Size += int64(ch.Size)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ix, nil
}

// bufferSize returns the size of one read buffer: large enough that copying
// the unfinished tail of a buffer into the next costs little.
func bufferSize(maxChunk int) int { return max(256<<10, 8*maxChunk) }

// batch is one read buffer and the chunks cut from it.
// The cutter appends to chunks while workers fill in earlier entries, so
// entries are pointers: a worker's *job stays valid when the slice grows.
type batch struct {
	buf    []byte
	chunks []*job
	// err is why the stream stopped after chunks (a read error, or a cut
	// error such as Verify's "stream too short"). The cutter sets it before
	// its wg.Done, and the collector returns it only after collecting every
	// chunk before it, so an earlier bad chunk is still the one reported.
	err error
	wg  sync.WaitGroup // one per chunk still being hashed, plus one for the cutter
}

type job struct {
	Chunk
	data []byte
	b    *batch
	err  error // from o.Work; read by the collector after b.wg.Wait
}

// failure records the lowest chunk index at which the stream is known to
// fail (a Work error on that chunk, or a read or cut error just before it).
// Chunks after it need no work: the collector stops at the failure. Chunks
// before it are still hashed and worked, so the error finally reported is
// the earliest in stream order, not the first to happen.
type failure struct{ at atomic.Int64 }

func newFailure() *failure {
	f := &failure{}
	f.at.Store(math.MaxInt64)
	return f
}

func (f *failure) set(index int) {
	for {
		cur := f.at.Load()
		if int64(index) >= cur || f.at.CompareAndSwap(cur, int64(index)) {
			return
		}
	}
}

// after reports whether chunk index lies past a known failure.
func (f *failure) after(index int) bool { return int64(index) > f.at.Load() }

func (f *failure) any() bool { return f.at.Load() != math.MaxInt64 }

// run drives the pipeline: one goroutine reads and cuts, Workers goroutines
// hash and call o.Work, and the calling goroutine collects in order. cut
// returns the length of the chunk at the start of data; it is given at
// least need bytes unless the stream ended (eof). collect sees each chunk
// in order before o.Emit.
//
// Errors are reported in stream order: a Work error on chunk k, or a read
// or cut error after chunk k, is returned only once every chunk before it
// has been collected without error. Only cancellation of ctx (or an error
// from collect or Emit, which already come in order) stops the pipeline
// outright.
func run(ctx context.Context, r io.Reader, o Options, need int, cut func(data []byte, eof bool) (int, error), collect func(Chunk) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	bufSize := bufferSize(need)
	nbuf := o.Workers + 2
	free := make(chan []byte, nbuf)
	for range nbuf {
		free <- nil // allocated lazily, so small inputs stay small
	}
	ordered := make(chan *batch, nbuf)
	jobs := make(chan *job, 256)
	fail := newFailure()

	var wg sync.WaitGroup
	// Workers.
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				// A skipped chunk keeps a zero digest; the collector never
				// looks at it, because it stops at the failure before it or
				// at the cancellation.
				if ctx.Err() == nil && !fail.after(j.Index) {
					j.Digest = o.Hash.Sum(j.data)
					if o.Work != nil {
						if err := o.Work(j.Chunk, j.data); err != nil {
							j.err = err
							fail.set(j.Index)
						}
					}
				}
				j.b.wg.Done()
			}
		}()
	}

	// Reader and cutter.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ordered)
		defer close(jobs)
		if err := produce(ctx, r, need, bufSize, free, ordered, jobs, cut, fail); err != nil {
			cancel(err)
		}
	}()

	// Collector, in order.
	var done int64
	var err error
	for b := range ordered {
		b.wg.Wait()
		if err == nil && ctx.Err() != nil {
			// Canceled by the caller (workers may have skipped chunks).
			err = context.Cause(ctx)
		}
		for _, j := range b.chunks {
			if err != nil {
				break
			}
			if err = j.err; err != nil {
				break
			}
			c := j.Chunk
			if err = collect(c); err == nil && o.Emit != nil {
				err = o.Emit(c)
			}
			done += int64(c.Size)
		}
		if err == nil {
			err = b.err
		}
		if err != nil {
			cancel(err)
		} else if o.Progress != nil && len(b.chunks) > 0 {
			o.Progress(done)
		}
		free <- b.buf
	}
	wg.Wait()
	if err == nil {
		err = context.Cause(ctx)
	}
	return err
}

// produce reads r into buffers from free, cuts them and hands the chunks to
// the workers, announcing each buffer on ordered first. It stops at the end
// of the stream, at the first read or cut error (which it attaches to the
// batch it happened in), or once fail says a chunk already cut has failed.
func produce(ctx context.Context, r io.Reader, need, bufSize int, free chan []byte, ordered chan<- *batch, jobs chan<- *job, cut func([]byte, bool) (int, error), fail *failure) error {
	var (
		carry  []byte // unfinished tail of the previous buffer
		offset int64  // stream offset of buf[0]
		index  int
		eof    bool
	)
	for !eof {
		if fail.any() {
			return nil // every chunk from here on comes after the failure
		}
		var buf []byte
		select {
		case buf = <-free:
		case <-ctx.Done():
			return nil
		}
		if buf == nil {
			buf = make([]byte, bufSize)
		}
		n := copy(buf, carry)
		var readErr error
		for n < len(buf) && !eof {
			m, err := r.Read(buf[n:])
			n += m
			if err == io.EOF {
				eof = true
			} else if err != nil {
				readErr = fmt.Errorf("chunker: read at offset %d: %w", offset+int64(n), err)
				break
			}
		}
		b := &batch{buf: buf}
		b.wg.Add(1)
		select {
		case ordered <- b:
		case <-ctx.Done():
			free <- buf
			return nil
		}
		// After a read error, still cut the chunks that are complete (at
		// least need bytes follow them), so the collector sees every chunk
		// before the failure.
		pos := 0
		for pos < n && (n-pos >= need || eof) && !fail.any() {
			l, err := cut(buf[pos:n], eof)
			if err != nil {
				b.err = err
				break
			}
			if l <= 0 || l > n-pos {
				b.err = fmt.Errorf("chunker: internal error: cut returned %d with %d bytes left", l, n-pos)
				break
			}
			j := &job{Chunk: Chunk{Index: index, Offset: offset, Size: uint32(l)}, data: buf[pos : pos+l], b: b}
			b.chunks = append(b.chunks, j)
			b.wg.Add(1)
			select {
			case jobs <- j:
			case <-ctx.Done():
				b.wg.Done()
				b.wg.Done()
				return nil
			}
			index++
			offset += int64(l)
			pos += l
		}
		if b.err == nil {
			b.err = readErr
		}
		if b.err != nil {
			fail.set(index)
		}
		// The tail must be copied out before the batch is released.
		carry = append(carry[:0], buf[pos:n]...)
		b.wg.Done()
		if fail.any() {
			return nil // the collector stops at or before this batch
		}
	}
	if len(carry) > 0 {
		return fmt.Errorf("chunker: internal error: %d bytes left uncut at end of stream", len(carry))
	}
	return nil
}
