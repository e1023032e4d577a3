package manifest

import (
	"context"
	"fmt"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/klauspost/compress/zstd"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
)

// Stored chunk objects are self-describing: one kind byte, then the
// payload. Only the kinds below exist today; a later kind (a delta against
// other chunks) gets the next number, and readers reject kinds they do not
// know rather than guess.
const (
	// KindZstd: a zstd frame that decompresses to the chunk's bytes.
	KindZstd byte = 1
	// KindRaw: the chunk's bytes as they are, for chunks zstd cannot shrink.
	KindRaw byte = 2
)

// zstdOverhead bounds what a zstd frame of incompressible input adds
// (frame header, block headers, checksum), with room to spare.
func zstdOverhead(n int) int { return 64 + n/(128<<10)*3 + 8 }

// MaxObjectSize is the largest stored object a reader accepts for a chunk
// of at most maxChunk bytes.
func MaxObjectSize(maxChunk int) int64 { return int64(1 + maxChunk + zstdOverhead(maxChunk)) }

// ChunkPath is the repository path of a chunk object: chunks/SHARD/CID.
// SHARD is two characters of the CID string taken from the digest (the
// ninth and tenth), which vary; the leading characters spell the CID's
// version, codec and hash function and are the same for every chunk.
func ChunkPath(id cid.Cid) string {
	s := id.String()
	return "chunks/" + shard(s) + "/" + s
}

func shard(s string) string {
	if len(s) < 10 {
		return "00"
	}
	return s[8:10]
}

var (
	encoders = sync.Pool{New: func() any {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false))
		if err != nil {
			panic(err) // only invalid options fail, and these are fixed
		}
		return e
	}}
	decoders = sync.Pool{New: func() any {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(chunker.MaxChunkCeil+1))
		if err != nil {
			panic(err)
		}
		return d
	}}
)

// EncodeChunk appends the stored object for a chunk's bytes to dst: zstd
// when that is smaller, the raw bytes otherwise. Safe for concurrent use;
// encoders are pooled and reused.
func EncodeChunk(dst, data []byte) []byte {
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

// DecodeChunk turns a stored object back into the chunk's bytes and checks
// them against id. maxChunk bounds the decompressed size, so a hostile
// object cannot make the reader allocate more than one maximum chunk.
func DecodeChunk(id cid.Cid, obj []byte, maxChunk int) ([]byte, error) {
	if len(obj) == 0 {
		return nil, fmt.Errorf("chunk %s: %w: empty object", id, ErrChunkCorrupt)
	}
	if int64(len(obj)) > MaxObjectSize(maxChunk) {
		return nil, fmt.Errorf("chunk %s: %w: object of %d bytes exceeds %d", id, ErrTooLarge, len(obj), MaxObjectSize(maxChunk))
	}
	var data []byte
	switch obj[0] {
	case KindRaw:
		data = obj[1:]
	case KindZstd:
		d := decoders.Get().(*zstd.Decoder)
		var err error
		data, err = decodeBounded(d, obj[1:], maxChunk)
		decoders.Put(d)
		if err != nil {
			return nil, fmt.Errorf("chunk %s: %w: zstd: %v", id, ErrChunkCorrupt, err)
		}
	default:
		return nil, fmt.Errorf("chunk %s: %w: unknown object kind %d", id, ErrChunkCorrupt, obj[0])
	}
	if len(data) > maxChunk {
		return nil, fmt.Errorf("chunk %s: %w: %d bytes exceed the maximum chunk size %d", id, ErrChunkCorrupt, len(data), maxChunk)
	}
	got, ok, err := chunker.SumID(id, data)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("chunk %s: %w: bytes hash to %s", id, ErrChunkCorrupt, got)
	}
	return data, nil
}

// decodeBounded decompresses src, refusing output beyond limit bytes
// before allocating it: the frame header's declared size is checked first,
// and the decoder's own limit catches frames that do not declare one.
func decodeBounded(d *zstd.Decoder, src []byte, limit int) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return nil, err
	}
	if h.HasFCS && h.FrameContentSize > uint64(limit) {
		return nil, fmt.Errorf("frame declares %d bytes, limit %d", h.FrameContentSize, limit)
	}
	out, err := d.DecodeAll(src, make([]byte, 0, min(limit, 1<<20)))
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, fmt.Errorf("decompressed to %d bytes, limit %d", len(out), limit)
	}
	return out, nil
}

// FetchChunk fetches a chunk object from a repository and returns the
// chunk's verified bytes. maxChunk is the index's maximum chunk size.
func FetchChunk(ctx context.Context, f fetch.Fetcher, id cid.Cid, maxChunk int) ([]byte, error) {
	obj, err := f.Fetch(ctx, ChunkPath(id), MaxObjectSize(maxChunk))
	if err != nil {
		return nil, err
	}
	return DecodeChunk(id, obj, maxChunk)
}
