package wire_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/swarm/wire"
)

const benchChunk = 64 << 10

// benchData is a 64 KiB chunk: random bytes (sent raw), or text-like
// bytes, words from a vocabulary of 512 random ones (sent as zstd).
func benchData(kind string) []byte {
	if kind == "raw" {
		return randBytes(99, benchChunk)
	}
	rnd := randBytes(98, 1<<16)
	var words [][]byte
	for i := 0; len(words) < 512; i += 12 {
		w := rnd[i : i+3+int(rnd[i])%9]
		for j := range w {
			w[j] = 'a' + w[j]%26
		}
		words = append(words, w)
	}
	b := make([]byte, 0, benchChunk+16)
	for i := 0; len(b) < benchChunk; i++ {
		b = append(append(b, words[int(rnd[i%len(rnd)])*2%512+i%2]...), ' ')
	}
	return b[:benchChunk]
}

// repeatReader yields the same bytes forever without allocating.
type repeatReader struct {
	b   []byte
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

// BenchmarkEncodeBlock64K writes a Block frame of a 64 KiB chunk through
// a Writer: framing only ("stored": the object is already encoded, as when
// serving from the cache) and with the object encoded from the chunk's
// bytes ("slot": serving from a slot).
func BenchmarkEncodeBlock64K(b *testing.B) {
	for _, kind := range []string{"raw", "zstd"} {
		data := benchData(kind)
		id := idOf(chunker.SHA256, data)
		obj := object.Encode(nil, data)
		b.Run("stored/"+kind, func(b *testing.B) {
			w := wire.NewWriter(io.Discard, 0)
			blk := &wire.Block{CID: id, Object: obj}
			b.SetBytes(benchChunk)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				blk.Req = wire.RequestID(i)
				if err := w.Write(blk); err != nil {
					b.Fatal(err)
				}
			}
			w.Flush()
		})
		b.Run("slot/"+kind, func(b *testing.B) {
			w := wire.NewWriter(io.Discard, 0)
			buf := make([]byte, 0, object.MaxSize(benchChunk))
			b.SetBytes(benchChunk)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				buf = object.Encode(buf[:0], data)
				if err := w.Write(&wire.Block{Req: wire.RequestID(i), CID: id, Object: buf}); err != nil {
					b.Fatal(err)
				}
			}
			w.Flush()
		})
	}
}

// BenchmarkDecodeBlock64K reads Block frames of a 64 KiB chunk from a
// stream: the frame alone ("read") and the frame then DecodeBlock, which
// decompresses and hashes ("verify"), as a receiver does.
func BenchmarkDecodeBlock64K(b *testing.B) {
	for _, kind := range []string{"raw", "zstd"} {
		data := benchData(kind)
		id := idOf(chunker.SHA256, data)
		f, err := wire.AppendFrame(nil, &wire.Block{Req: 1, CID: id, Object: object.Encode(nil, data)})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("read/"+kind, func(b *testing.B) {
			r := wire.NewReader(&repeatReader{b: f}, 0)
			b.SetBytes(benchChunk)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Read(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("verify/"+kind, func(b *testing.B) {
			r := wire.NewReader(&repeatReader{b: f}, 0)
			dst := make([]byte, benchChunk)
			b.SetBytes(benchChunk)
			b.ReportAllocs()
			for b.Loop() {
				m, err := r.Read()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := wire.DecodeBlock(dst, m.(*wire.Block), id, benchChunk); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWant measures the small-message path: a Want with its index
// context, written and read back.
func BenchmarkWant(b *testing.B) {
	var buf bytes.Buffer
	w := wire.NewWriter(&buf, 0)
	r := wire.NewReader(&buf, 0)
	want := &wire.Want{CID: chunkID, Index: indexID, Position: 1234}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		want.Req = wire.RequestID(i)
		if err := w.Write(want); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 {
			w.Flush()
			for range 64 {
				if _, err := r.Read(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}
