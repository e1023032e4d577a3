package manifest

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/fetch"
)

// Stored chunk objects are self-describing: one kind byte, then the
// payload. The codec is package chunker/object's, which the chunk
// protocol (swarm/wire) shares; these names are kept for callers here.
const (
	// KindZstd: a zstd frame that decompresses to the chunk's bytes.
	KindZstd = object.KindZstd
	// KindRaw: the chunk's bytes as they are, for chunks zstd cannot shrink.
	KindRaw = object.KindRaw
)

// MaxObjectSize is the largest stored object a reader accepts for a chunk
// of at most maxChunk bytes.
func MaxObjectSize(maxChunk int) int64 { return object.MaxSize(maxChunk) }

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

// EncodeChunk appends the stored object for a chunk's bytes to dst: zstd
// when that is smaller, the raw bytes otherwise (object.Encode).
func EncodeChunk(dst, data []byte) []byte { return object.Encode(dst, data) }

// DecodeChunk turns a stored object back into the chunk's bytes and checks
// them against id (object.Decode). maxChunk bounds the decompressed size,
// so a hostile object cannot make the reader allocate more than one
// maximum chunk. Errors wrap ErrChunkCorrupt or ErrTooLarge.
func DecodeChunk(id cid.Cid, obj []byte, maxChunk int) ([]byte, error) {
	data, err := object.Decode(nil, id, obj, maxChunk)
	switch {
	case err == nil:
		return data, nil
	case errors.Is(err, object.ErrTooLarge):
		return nil, fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, object.ErrCorrupt):
		return nil, fmt.Errorf("%w: %w", ErrChunkCorrupt, err)
	}
	return nil, err
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
