package chunker

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// memWriterAt is an in-memory io.WriterAt.
type memWriterAt struct{ b []byte }

func (m *memWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	copy(m.b[off:], p)
	return len(p), nil
}

func TestSplitToMatchesSplit(t *testing.T) {
	for _, n := range []int{0, 100, 5 << 20} {
		data := imageLike(uint64(n)+3, n)
		want := splitBytes(t, data, Options{})
		var w memWriterAt
		s, err := SplitTo(context.Background(), bytes.NewReader(data), Options{}, NewIndexWriter(&w, DefaultParams, SHA256))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w.b, want.Encode()) {
			t.Fatalf("n=%d: streamed index differs from Encode", n)
		}
		if s.Root != want.Root() || s.Size != want.Size || s.Chunks != len(want.Chunks) {
			t.Fatalf("n=%d: summary %+v", n, s)
		}
	}
}

func TestSplitToWriteError(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "x"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close() // writes now fail
	_, err = SplitTo(context.Background(), bytes.NewReader(seeded(1, 8<<20)), Options{}, NewIndexWriter(f, DefaultParams, SHA256))
	if !errors.Is(err, os.ErrClosed) {
		t.Fatalf("got %v", err)
	}
	if _, err := SplitTo(context.Background(), bytes.NewReader(nil), Options{Hash: BLAKE3}, NewIndexWriter(f, DefaultParams, SHA256)); err == nil {
		t.Fatal("mismatched options accepted")
	}
}
