package chunker

import (
	"bytes"
	"context"
	"testing"
)

// FuzzDecodeIndex: the decoder never panics, and whatever it accepts
// re-encodes to the same bytes (the encoding is canonical) and is
// internally consistent.
func FuzzDecodeIndex(f *testing.F) {
	f.Add((&Index{Params: DefaultParams, Hash: SHA256}).Encode())
	f.Add(splitBytes(f, imageLike(1, 1<<20), Options{Params: Params{Min: 4096, Avg: 16384, Max: 65536}}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := DecodeIndex(b)
		if err != nil {
			return
		}
		if !bytes.Equal(ix.Encode(), b) {
			t.Fatal("accepted a non-canonical encoding")
		}
		off := ix.Offsets()
		if off[len(ix.Chunks)] != ix.Size {
			t.Fatal("sizes do not add up")
		}
		ix.Root()
	})
}

// FuzzSplit: chunks always concatenate to the input, respect min/max, and
// the pipeline agrees with the one-byte-per-step reference cutter.
func FuzzSplit(f *testing.F) {
	f.Add([]byte("hello"), uint16(0))
	f.Add(imageLike(3, 20000), uint16(7))
	p := Params{Min: 64, Avg: 256, Max: 1024}
	c := newCutter(p)
	f.Fuzz(func(t *testing.T, data []byte, rep uint16) {
		// Repeat the input to get multi-chunk streams from short inputs.
		data = bytes.Repeat(data, 1+int(rep%64))
		ix, err := Split(context.Background(), bytes.NewReader(data), Options{Params: p, Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		if ix.Size != int64(len(data)) {
			t.Fatalf("size %d, input %d", ix.Size, len(data))
		}
		pos := 0
		for i, e := range ix.Chunks {
			if int(e.Size) > p.Max || (int(e.Size) < p.Min && i != len(ix.Chunks)-1) {
				t.Fatalf("chunk %d size %d", i, e.Size)
			}
			if want := c.cutRef(data[pos:]); want != int(e.Size) {
				t.Fatalf("chunk %d: %d, reference %d", i, e.Size, want)
			}
			if SHA256.Sum(data[pos:pos+int(e.Size)]) != e.Digest {
				t.Fatalf("chunk %d digest", i)
			}
			pos += int(e.Size)
		}
		if err := Verify(context.Background(), bytes.NewReader(data), ix); err != nil {
			t.Fatal(err)
		}
	})
}
