package object_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
)

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		kind byte
	}{
		{"compressible", bytes.Repeat([]byte("shoal chunk "), 5000), object.KindZstd},
		{"random", randBytes(1, 64<<10), object.KindRaw},
		{"empty", nil, object.KindRaw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, h := range []chunker.Hash{chunker.SHA256, chunker.BLAKE3} {
				id := h.ID(h.Sum(tc.data))
				obj := object.Encode([]byte("prefix"), tc.data)
				if string(obj[:6]) != "prefix" {
					t.Fatal("Encode did not append")
				}
				obj = obj[6:]
				if obj[0] != tc.kind {
					t.Fatalf("kind %d, want %d", obj[0], tc.kind)
				}
				if int64(len(obj)) > object.MaxSize(len(tc.data)) {
					t.Fatalf("object of %d bytes above MaxSize %d", len(obj), object.MaxSize(len(tc.data)))
				}
				got, err := object.Decode(nil, id, obj, 256<<10)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tc.data) {
					t.Fatal("round trip changed the bytes")
				}
			}
		})
	}
}

func TestDecodeReusesDst(t *testing.T) {
	data := bytes.Repeat([]byte("reuse "), 10000)
	id := chunker.SHA256.ID(chunker.SHA256.Sum(data))
	obj := object.Encode(nil, data)
	dst := make([]byte, 256<<10)
	got, err := object.Decode(dst, id, obj, 256<<10)
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] != &dst[0] {
		t.Error("zstd object not decoded into dst")
	}
	raw := append([]byte{object.KindRaw}, data...)
	got, err = object.Decode(dst, id, raw, 256<<10)
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] != &raw[1] {
		t.Error("raw object copied")
	}
}

func TestDecodeRefuses(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 1000)
	id := chunker.SHA256.ID(chunker.SHA256.Sum(data))
	zobj := object.Encode(nil, data)
	flipped := append([]byte(nil), data...)
	flipped[10] ^= 1
	for _, tc := range []struct {
		name     string
		obj      []byte
		maxChunk int
		is       error
	}{
		{"empty", nil, 4096, object.ErrCorrupt},
		{"unknown kind", append([]byte{3}, data...), 4096, object.ErrCorrupt},
		{"kind zero", append([]byte{0}, data...), 4096, object.ErrCorrupt},
		{"raw wrong bytes", append([]byte{object.KindRaw}, flipped...), 4096, object.ErrCorrupt},
		{"zstd wrong bytes", object.Encode(nil, flipped), 4096, object.ErrCorrupt},
		{"zstd cut", zobj[:len(zobj)-3], 4096, object.ErrCorrupt},
		{"zstd not a frame", []byte{object.KindZstd, 1, 2, 3, 4, 5, 6}, 4096, object.ErrCorrupt},
		{"raw above max", append([]byte{object.KindRaw}, data...), 999, object.ErrCorrupt},
		{"zstd declares above max", zobj, 999, object.ErrCorrupt},
		{"object above MaxSize", make([]byte, object.MaxSize(100)+1), 100, object.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := object.Decode(nil, id, tc.obj, tc.maxChunk)
			if !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
		})
	}
	if _, err := object.Decode(nil, id, zobj, chunker.MaxChunkCeil+1); err == nil {
		t.Error("accepted a maximum chunk size above chunker.MaxChunkCeil")
	}
}

// A zstd frame that does not declare its size and expands far beyond the
// maximum chunk is refused without allocating its expansion.
func TestDecodeUndeclaredBomb(t *testing.T) {
	var buf bytes.Buffer
	e, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for range 16 {
		e.Write(zero)
	}
	e.Close()
	var h zstd.Header
	if err := h.Decode(buf.Bytes()); err != nil || h.HasFCS {
		t.Fatalf("test frame declares its size (%v)", err)
	}
	obj := append([]byte{object.KindZstd}, buf.Bytes()...)
	id := chunker.SHA256.ID(chunker.SHA256.Sum(nil))
	object.Decode(nil, id, obj, 64<<10) // warm the decoder pool
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = object.Decode(nil, id, obj, 64<<10)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, object.ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("allocated %d bytes refusing a 16 MiB expansion with a 64 KiB limit", n)
	}
}

func FuzzDecode(f *testing.F) {
	data := bytes.Repeat([]byte("chunk "), 2000)
	id := chunker.SHA256.ID(chunker.SHA256.Sum(data))
	f.Add(object.Encode(nil, data))
	f.Add(append([]byte{object.KindRaw}, data...))
	f.Add([]byte{object.KindZstd, 0x28, 0xb5, 0x2f, 0xfd})
	f.Fuzz(func(t *testing.T, obj []byte) {
		out, err := object.Decode(nil, id, obj, 64<<10)
		if err != nil {
			if !errors.Is(err, object.ErrCorrupt) && !errors.Is(err, object.ErrTooLarge) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if !bytes.Equal(out, data) {
			t.Fatal("accepted bytes that are not the chunk")
		}
	})
}
