package wire_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/klauspost/compress/zstd"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/swarm/wire"
)

func TestDecodeBlock(t *testing.T) {
	zobj := object.Encode(nil, chunkData)
	if zobj[0] != object.KindZstd {
		t.Fatal("test chunk does not compress")
	}
	flipped := append([]byte(nil), chunkData...)
	flipped[100] ^= 0x20
	other := idOf(chunker.SHA256, []byte("another chunk"))
	for _, tc := range []struct {
		name string
		b    wire.Block
		max  int
	}{
		{"zstd", wire.Block{Req: 1, CID: chunkID, Object: zobj}, 64 << 10},
		{"raw", wire.Block{Req: 1, CID: chunkID, Object: append([]byte{object.KindRaw}, chunkData...)}, 64 << 10},
		{"blake3", wire.Block{Req: 1, CID: idOf(chunker.BLAKE3, chunkData), Object: zobj}, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := wire.DecodeBlock(nil, &tc.b, tc.b.CID, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, chunkData) {
				t.Fatal("wrong bytes")
			}
		})
	}

	for _, tc := range []struct {
		name string
		b    wire.Block
		max  int
	}{
		{"block for another CID", wire.Block{Req: 1, CID: other, Object: zobj}, 64 << 10},
		{"raw bytes changed", wire.Block{Req: 1, CID: chunkID, Object: append([]byte{object.KindRaw}, flipped...)}, 64 << 10},
		{"zstd bytes changed", wire.Block{Req: 1, CID: chunkID, Object: object.Encode(nil, flipped)}, 64 << 10},
		{"zstd frame cut", wire.Block{Req: 1, CID: chunkID, Object: zobj[:len(zobj)/2]}, 64 << 10},
		{"zstd garbage", wire.Block{Req: 1, CID: chunkID, Object: append([]byte{object.KindZstd}, bytes.Repeat([]byte{0x5a}, 100)...)}, 64 << 10},
		{"raw above maximum chunk", wire.Block{Req: 1, CID: chunkID, Object: append([]byte{object.KindRaw}, chunkData...)}, len(chunkData) - 1},
		{"object above its bound", wire.Block{Req: 1, CID: chunkID, Object: append([]byte{object.KindRaw}, make([]byte, object.MaxSize(1000))...)}, 1000},
		{"zstd declares above maximum chunk", wire.Block{Req: 1, CID: chunkID, Object: zobj}, 1024},
		{"unknown object kind", wire.Block{Req: 1, CID: chunkID, Object: append([]byte{3}, chunkData...)}, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := wire.DecodeBlock(nil, &tc.b, chunkID, tc.max)
			checkSentinel(t, err, wire.ErrBadBlock)
			t.Log(err)
		})
	}
}

// A zstd frame that does not declare its size and expands to 16 MiB of
// zeros: refused with ErrBadBlock, without allocating its expansion.
func TestDecodeBlockUndeclaredBomb(t *testing.T) {
	var buf bytes.Buffer
	e, _ := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	zero := make([]byte, 1<<20)
	for range 16 {
		e.Write(zero)
	}
	e.Close()
	b := &wire.Block{Req: 1, CID: chunkID, Object: append([]byte{object.KindZstd}, buf.Bytes()...)}
	dst := make([]byte, 64<<10)
	if _, err := wire.DecodeBlock(dst, b, chunkID, 64<<10); !errors.Is(err, wire.ErrBadBlock) {
		t.Fatalf("got %v", err)
	}
	allocs := testing.AllocsPerRun(10, func() { wire.DecodeBlock(dst, b, chunkID, 64<<10) })
	if allocs > 20 {
		t.Errorf("%v allocations", allocs)
	}
}

// A want that is not a chunk ID, or a maximum chunk size out of range, is
// the caller's mistake, not the peer's.
func TestDecodeBlockCallerErrors(t *testing.T) {
	b := &wire.Block{Req: 1, CID: chunkID, Object: object.Encode(nil, chunkData)}
	for _, max := range []int{0, -1, chunker.MaxChunkCeil + 1} {
		_, err := wire.DecodeBlock(nil, b, chunkID, max)
		if err == nil || errors.Is(err, wire.ErrBadBlock) {
			t.Errorf("maxChunk %d: %v", max, err)
		}
	}
}

// DecodeBlock decodes into dst's array when it is large enough, and a raw
// object without copying.
func TestDecodeBlockBuffers(t *testing.T) {
	dst := make([]byte, 64<<10)
	b := &wire.Block{Req: 1, CID: chunkID, Object: object.Encode(nil, chunkData)}
	got, err := wire.DecodeBlock(dst, b, chunkID, 64<<10)
	if err != nil || &got[0] != &dst[0] {
		t.Fatalf("zstd block not decoded into dst (%v)", err)
	}
	b.Object = append([]byte{object.KindRaw}, chunkData...)
	got, err = wire.DecodeBlock(dst, b, chunkID, 64<<10)
	if err != nil || &got[0] != &b.Object[1] {
		t.Fatalf("raw block copied (%v)", err)
	}
}

// ExpandBlock decodes and bounds as DecodeBlock does but leaves the hash to
// its caller: changed bytes come through, everything else is refused.
func TestExpandBlock(t *testing.T) {
	flipped := append([]byte(nil), chunkData...)
	flipped[100] ^= 0x20
	b := wire.Block{Req: 1, CID: chunkID, Object: object.Encode(nil, flipped)}
	got, err := wire.ExpandBlock(nil, &b, chunkID, 64<<10)
	if err != nil || !bytes.Equal(got, flipped) {
		t.Fatalf("ExpandBlock = %v", err)
	}
	if _, err := wire.DecodeBlock(nil, &b, chunkID, 64<<10); !errors.Is(err, wire.ErrBadBlock) {
		t.Fatalf("DecodeBlock of changed bytes = %v", err)
	}
	other := idOf(chunker.SHA256, []byte("another chunk"))
	for name, tc := range map[string]struct {
		b    wire.Block
		want cid.Cid
		max  int
	}{
		"another CID":   {wire.Block{Req: 1, CID: other, Object: b.Object}, chunkID, 64 << 10},
		"above maximum": {wire.Block{Req: 1, CID: chunkID, Object: b.Object}, chunkID, 1024},
		"zstd garbage":  {wire.Block{Req: 1, CID: chunkID, Object: append([]byte{object.KindZstd}, 1, 2, 3)}, chunkID, 64 << 10},
	} {
		if _, err := wire.ExpandBlock(nil, &tc.b, tc.want, tc.max); !errors.Is(err, wire.ErrBadBlock) {
			t.Errorf("%s: ExpandBlock = %v, want ErrBadBlock", name, err)
		}
	}
}

// Watch sees every frame begin (first byte, then its length) and end, and
// nothing between frames.
func TestReaderWatch(t *testing.T) {
	var buf bytes.Buffer
	w := wire.NewWriter(&buf, 0)
	w.Write(&wire.Cancel{Req: 1})
	w.Write(&wire.Cancel{Req: 2})
	w.Flush()
	r := wire.NewReader(&buf, 0)
	var calls []int
	r.Watch(func(n int) { calls = append(calls, n) }, func() { calls = append(calls, 0) })
	for range 2 {
		if _, err := r.Read(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Read(); err == nil {
		t.Fatal("read past the end")
	}
	if len(calls) != 6 || calls[0] != -1 || calls[1] <= 0 || calls[2] != 0 || calls[3] != -1 || calls[5] != 0 {
		t.Fatalf("watch calls %v, want [-1 n 0 -1 n 0]", calls)
	}
}
