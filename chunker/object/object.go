// Package object is the codec of stored chunk objects (docs/formats.md,
// "Chunk objects"): one kind byte, then the payload. The repository stores
// chunks this way and the chunk protocol (swarm/wire) carries them this
// way, so one codec serves both and a node can send what it stored without
// re-encoding it.
//
// [Decode] is the only way bytes from outside become chunk bytes: it bounds
// the object and its decompressed size by the index's maximum chunk size
// before allocating, and accepts the bytes only if they hash to the chunk's
// ID.
package object

import (
	"errors"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/klauspost/compress/zstd"

	"github.com/shoalnet/shoal/chunker"
)

// Object kinds. Only these exist today; a later kind (a delta against other
// chunks) gets the next number, and readers reject kinds they do not know
// rather than guess.
const (
	// KindZstd: one zstd frame that decompresses to the chunk's bytes.
	KindZstd byte = 1
	// KindRaw: the chunk's bytes as they are, for chunks zstd cannot shrink.
	KindRaw byte = 2
)

// Known reports whether kind is an object kind this package decodes.
func Known(kind byte) bool { return kind == KindZstd || kind == KindRaw }

// Sentinel errors; every error of [Decode] wraps one of them (or
// chunker.ErrBadID when the ID itself is not a chunk ID).
var (
	// ErrCorrupt: the object does not decode, is of an unknown kind, or
	// its bytes do not hash to the chunk's ID.
	ErrCorrupt = errors.New("object: chunk object corrupt")
	// ErrTooLarge: the object is longer than any object of a chunk of the
	// allowed size can be.
	ErrTooLarge = errors.New("object: chunk object too large")
)

// Overhead bounds what a zstd frame of n incompressible bytes adds (frame
// header, block headers, checksum), with room to spare; the object's kind
// byte is not included.
func Overhead(n int) int { return 64 + n/(128<<10)*3 + 8 }

// MaxSize is the largest object a reader accepts for a chunk of at most
// maxChunk bytes: 1 + maxChunk + Overhead(maxChunk).
func MaxSize(maxChunk int) int64 { return int64(1 + maxChunk + Overhead(maxChunk)) }

var (
	encoders = sync.Pool{New: func() any {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false))
		if err != nil {
			panic(err) // only invalid options fail, and these are fixed
		}
		return e
	}}
	// Decoders write into the capacity of the buffer they are given and
	// no further (WithDecodeAllCapLimit), so a frame that does not declare
	// its size still cannot make them allocate beyond one maximum chunk.
	decoders = sync.Pool{New: func() any {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(chunker.MaxChunkCeil+1), zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(err)
		}
		return d
	}}
)

// Encode appends the object for a chunk's bytes to dst: zstd when that is
// smaller, the raw bytes otherwise. Safe for concurrent use; encoders are
// pooled and reused.
func Encode(dst, data []byte) []byte {
	e := encoders.Get().(*zstd.Encoder)
	start := len(dst)
	dst = append(dst, KindZstd)
	dst = e.EncodeAll(data, dst)
	encoders.Put(e)
	if len(dst)-start-1 >= len(data) {
		dst = append(dst[:start], KindRaw)
		dst = append(dst, data...)
	}
	return dst
}

// Decode turns an object back into the chunk's bytes and checks them
// against id. maxChunk (the index's maximum chunk size, at most
// chunker.MaxChunkCeil) bounds the object and the decompressed size, so a
// hostile object cannot make the reader allocate more than one maximum
// chunk.
//
// Buffer ownership: for a KindRaw object the result is obj[1:] itself (no
// copy); for KindZstd it is decompressed into dst's capacity when that
// holds maxChunk bytes (dst's contents are overwritten) and into a new
// buffer otherwise. Either way the result aliases obj or dst, so copy it
// before reusing those.
func Decode(dst []byte, id cid.Cid, obj []byte, maxChunk int) ([]byte, error) {
	data, err := Expand(dst, id, obj, maxChunk)
	if err != nil {
		return nil, err
	}
	got, ok, err := chunker.SumID(id, data)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w: bytes hash to %s", id, ErrCorrupt, got)
	}
	return data, nil
}

// Expand is Decode without the hash: the bounded decoding alone, for a
// caller that hashes the bytes itself before it uses them (the swarm's
// installer, which then hashes each chunk once, not twice). id only names
// the chunk in errors. The result is NOT verified.
func Expand(dst []byte, id cid.Cid, obj []byte, maxChunk int) ([]byte, error) {
	if len(obj) == 0 {
		return nil, fmt.Errorf("chunk %s: %w: empty object", id, ErrCorrupt)
	}
	if maxChunk <= 0 || maxChunk > chunker.MaxChunkCeil {
		return nil, fmt.Errorf("chunk %s: maximum chunk size %d outside 1..%d", id, maxChunk, chunker.MaxChunkCeil)
	}
	if int64(len(obj)) > MaxSize(maxChunk) {
		return nil, fmt.Errorf("chunk %s: %w: object of %d bytes exceeds %d", id, ErrTooLarge, len(obj), MaxSize(maxChunk))
	}
	var data []byte
	switch obj[0] {
	case KindRaw:
		data = obj[1:]
	case KindZstd:
		var err error
		data, err = decompress(dst, obj[1:], maxChunk)
		if err != nil {
			return nil, fmt.Errorf("chunk %s: %w: zstd: %v", id, ErrCorrupt, err)
		}
	default:
		return nil, fmt.Errorf("chunk %s: %w: unknown object kind %d", id, ErrCorrupt, obj[0])
	}
	if len(data) > maxChunk {
		return nil, fmt.Errorf("chunk %s: %w: %d bytes exceed the maximum chunk size %d", id, ErrCorrupt, len(data), maxChunk)
	}
	return data, nil
}

// decompress decodes one zstd frame, refusing output beyond limit bytes
// before allocating it: the frame header's declared size is checked first,
// and the output buffer's capacity, which the decoder never exceeds, is at
// most limit bytes (or the declared size).
func decompress(dst, src []byte, limit int) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return nil, err
	}
	want := limit
	if h.HasFCS {
		if h.FrameContentSize > uint64(limit) {
			return nil, fmt.Errorf("frame declares %d bytes, limit %d", h.FrameContentSize, limit)
		}
		want = int(h.FrameContentSize)
	}
	if cap(dst) >= want {
		dst = dst[:0:want]
	} else {
		dst = make([]byte, 0, want)
	}
	d := decoders.Get().(*zstd.Decoder)
	out, err := d.DecodeAll(src, dst)
	decoders.Put(d)
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, fmt.Errorf("decompressed to %d bytes, limit %d", len(out), limit)
	}
	return out, nil
}
