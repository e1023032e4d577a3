package chunker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// endReader closes ended once the underlying reader has returned an error
// (io.EOF included), so a test can hold a worker until the reader has run
// to the end of the stream.
type endReader struct {
	r     io.Reader
	once  sync.Once
	ended chan struct{}
}

func newEndReader(r io.Reader) *endReader { return &endReader{r: r, ended: make(chan struct{})} }

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.ended) })
	}
	return n, err
}

// wait blocks until ch is closed. The timeout only keeps a broken pipeline
// from hanging the test binary; it is not what the tests assert.
func wait(ch <-chan struct{}) {
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
	}
}

// Every error Verify can meet (a cut error from a stream that is too short
// or too long, a read error, an error from Work) must lose to a bad chunk
// earlier in the stream. Half of the runs hold chunk 2's Work until the
// reader has reached the later failure, which makes the race the pipeline
// used to lose certain; the other half run free.
func TestVerifyFirstBadChunkWinsOverLaterErrors(t *testing.T) {
	// 512 KiB buffers, so the stream spans several, yet the whole of it
	// fits in the ring of Workers+2 buffers while a gated worker holds the
	// first one.
	p := Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}
	data := seeded(11, 3<<19)
	ix := splitBytes(t, data, Options{Params: p})
	off := ix.Offsets()
	if len(ix.Chunks) < 60 {
		t.Fatalf("only %d chunks", len(ix.Chunks))
	}
	bad := bytes.Clone(data)
	bad[off[3]+100] ^= 0x80
	boom := errors.New("boom")
	workErr := errors.New("work failed")

	cases := map[string]struct {
		reader func() io.Reader
		work   func(c Chunk) error
	}{
		"truncated": {reader: func() io.Reader { return bytes.NewReader(bad[:off[40]+10]) }},
		"short at boundary": {
			reader: func() io.Reader { return bytes.NewReader(bad[:off[40]]) }},
		"overlong": {reader: func() io.Reader { return bytes.NewReader(append(bytes.Clone(bad), 1, 2, 3)) }},
		"read error": {reader: func() io.Reader {
			return io.MultiReader(bytes.NewReader(bad[:off[40]+10]), iotest.ErrReader(boom))
		}},
		"work error": {
			reader: func() io.Reader { return bytes.NewReader(bad) },
			work: func(c Chunk) error {
				if c.Index == 10 {
					return workErr
				}
				return nil
			}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for i := range 50 {
				er := newEndReader(tc.reader())
				failed := make(chan struct{})
				var failOnce sync.Once
				gate := i%2 == 0
				o := Options{Workers: 2 + i%3, Work: func(c Chunk, _ []byte) error {
					if gate && c.Index == 2 {
						if tc.work != nil {
							wait(failed)
						} else {
							wait(er.ended)
						}
					}
					if tc.work != nil {
						if err := tc.work(c); err != nil {
							failOnce.Do(func() { close(failed) })
							return err
						}
					}
					return nil
				}}
				err := VerifyWith(context.Background(), er, ix, o)
				var ce *ChunkError
				if !errors.As(err, &ce) || ce.Index != 3 || ce.Offset != off[3] || ce.Got == (Digest{}) {
					t.Fatalf("run %d (workers %d, gate %v): got %v, want chunk 3's mismatch", i, o.Workers, gate, err)
				}
			}
		})
	}
}

// A Work error on chunk 10 and a read error further on: Split reports the
// Work error, the earlier of the two in the stream, every time.
func TestSplitWorkErrorWinsOverLaterReadError(t *testing.T) {
	data := seeded(6, 3<<20) // chunk 10 is in the first 2 MiB buffer, the failure in the second
	boom := errors.New("boom")
	workErr := errors.New("work failed")
	for i := range 50 {
		er := newEndReader(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)))
		gate := i%2 == 0
		var emitted int
		_, err := Split(context.Background(), er, Options{Workers: 2 + i%3,
			Work: func(c Chunk, _ []byte) error {
				if c.Index == 10 {
					if gate {
						wait(er.ended)
					}
					return workErr
				}
				return nil
			},
			Emit: func(c Chunk) error {
				if c.Index != emitted {
					return fmt.Errorf("emitted %d, want %d", c.Index, emitted)
				}
				emitted++
				return nil
			}})
		if !errors.Is(err, workErr) {
			t.Fatalf("run %d (gate %v): got %v, want the work error", i, gate, err)
		}
		if emitted != 10 {
			t.Fatalf("run %d: emitted %d chunks before the failing one, want 10", i, emitted)
		}
	}
}

// A read error is reported only after every chunk before it was emitted,
// and an Emit error on an earlier chunk wins over it.
func TestSplitReadErrorAfterEarlierChunks(t *testing.T) {
	data := seeded(8, 5<<20)
	ref := splitBytes(t, data, Options{})
	boom := errors.New("boom")
	emitErr := errors.New("emit failed")
	for i := range 10 {
		r := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom))
		var emitted int64
		_, err := Split(context.Background(), r, Options{Workers: 2 + i%3, Emit: func(c Chunk) error {
			emitted = c.Offset + int64(c.Size)
			return nil
		}})
		if !errors.Is(err, boom) {
			t.Fatalf("run %d: got %v", i, err)
		}
		// Every chunk that ends at least one maximum chunk before the
		// failure is final, so it must have been emitted.
		if emitted < int64(len(data)-DefaultParams.Max) {
			t.Fatalf("run %d: emitted up to %d of %d bytes before reporting the read error", i, emitted, len(data))
		}
		r = io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom))
		_, err = Split(context.Background(), r, Options{Workers: 2 + i%3, Emit: func(c Chunk) error {
			if c.Index == len(ref.Chunks)/2 {
				return emitErr
			}
			return nil
		}})
		if !errors.Is(err, emitErr) {
			t.Fatalf("run %d: got %v, want the emit error", i, err)
		}
	}
}

func TestSplitReadErrorOffset(t *testing.T) {
	boom := errors.New("boom")
	for _, n := range []int{0, 1000, 5 << 20, 5<<20 + 17} {
		r := io.MultiReader(bytes.NewReader(seeded(1, n)), iotest.ErrReader(boom))
		_, err := Split(context.Background(), r, Options{})
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), fmt.Sprintf("at offset %d:", n)) {
			t.Fatalf("reader failing at byte %d: got %v", n, err)
		}
	}
}
