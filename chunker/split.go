package chunker

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
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
	// compressing and storing the chunk.
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
	wg     sync.WaitGroup // one per chunk still being hashed, plus one for the cutter
}

type job struct {
	Chunk
	data []byte
	b    *batch
}

// run drives the pipeline: one goroutine reads and cuts, Workers goroutines
// hash and call o.Work, and the calling goroutine collects in order. cut
// returns the length of the chunk at the start of data; it is given at
// least need bytes unless the stream ended (eof). collect sees each chunk
// in order before o.Emit.
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

	var wg sync.WaitGroup
	// Workers.
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ctx.Err() == nil {
					j.Digest = o.Hash.Sum(j.data)
					if o.Work != nil {
						if err := o.Work(j.Chunk, j.data); err != nil {
							cancel(err)
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
		if err := produce(ctx, r, need, bufSize, free, ordered, jobs, cut); err != nil {
			cancel(err)
		}
	}()

	// Collector, in order.
	var done int64
	var err error
	for b := range ordered {
		b.wg.Wait()
		if err == nil {
			err = context.Cause(ctx)
		}
		for i := range b.chunks {
			if err != nil {
				break
			}
			c := b.chunks[i].Chunk
			if err = collect(c); err == nil && o.Emit != nil {
				err = o.Emit(c)
			}
			done += int64(c.Size)
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

func produce(ctx context.Context, r io.Reader, need, bufSize int, free chan []byte, ordered chan<- *batch, jobs chan<- *job, cut func([]byte, bool) (int, error)) error {
	var (
		carry  []byte // unfinished tail of the previous buffer
		offset int64
		index  int
		eof    bool
	)
	for !eof {
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
		for n < len(buf) && !eof {
			m, err := r.Read(buf[n:])
			n += m
			if err == io.EOF {
				eof = true
			} else if err != nil {
				free <- buf
				return fmt.Errorf("read at offset %d: %w", offset+int64(n-len(carry)), err)
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
		pos := 0
		var cutErr error
		for pos < n && (n-pos >= need || eof) {
			l, err := cut(buf[pos:n], eof)
			if err != nil {
				cutErr = err
				break
			}
			if l <= 0 || l > n-pos {
				cutErr = fmt.Errorf("chunker: internal error: cut returned %d with %d bytes left", l, n-pos)
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
		// The tail must be copied out before the batch is released.
		carry = append(carry[:0], buf[pos:n]...)
		b.wg.Done()
		if cutErr != nil {
			return cutErr
		}
	}
	if len(carry) > 0 {
		return fmt.Errorf("chunker: internal error: %d bytes left uncut at end of stream", len(carry))
	}
	return nil
}
