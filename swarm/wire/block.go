package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker/object"
)

// Block answers a Want with the wanted object.
//
// Layout: req u32 | CID field | object (to the end of the frame): one
// object kind byte (chunker/object: 1 zstd, 2 raw; others reserved for
// deltas), then the payload, exactly as the repository stores it.
type Block struct {
	Req RequestID
	CID cid.Cid // the Want's CID
	// Object is the stored object (kind byte and payload), never empty.
	// A Reader's Block aliases the Reader's buffer: valid until the next
	// Read. What it decodes to is unverified until [DecodeBlock].
	Object []byte
}

func (Block) Kind() Kind { return KindBlock }

func (b Block) validate() error {
	if len(b.Object) == 0 {
		return malformed(KindBlock, "empty object")
	}
	if !object.Known(b.Object[0]) {
		return fmt.Errorf("%w: block: object kind %d", ErrUnknownKind, b.Object[0])
	}
	return nil
}

// appendHead appends everything of the body but the object.
func (b Block) appendHead(dst []byte) ([]byte, error) {
	if err := b.validate(); err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(b.Req))
	return appendCID(dst, KindBlock, "cid", b.CID, false)
}

func (b Block) appendBody(dst []byte) ([]byte, error) {
	dst, err := b.appendHead(dst)
	if err != nil {
		return dst, err
	}
	return append(dst, b.Object...), nil
}

func (b *Block) decode(p []byte) error {
	d := body{k: KindBlock, b: p}
	req, err := d.u32("req")
	if err != nil {
		return err
	}
	b.Req = RequestID(req)
	if b.CID, err = d.cid("cid", false); err != nil {
		return err
	}
	b.Object = d.b
	return b.validate()
}

// DecodeBlock returns the bytes of the chunk want, which b must carry:
// it checks that b names want, bounds b's object by the index's maximum
// chunk size maxChunk (object.MaxSize before decompressing, maxChunk
// after), decodes it and hashes the result against want. Any failure
// wraps ErrBadBlock: the peer sent bytes that are not the chunk it was
// asked for. (A want that is not a chunk ID, or a maxChunk outside
// 1..chunker.MaxChunkCeil, is the caller's error and wraps neither.)
//
// Buffer ownership: the result aliases b.Object for a raw object (for a
// Reader's Block, valid until the next Read) and dst's array for a zstd
// object when cap(dst) ≥ maxChunk (or the size the frame declares);
// otherwise it is newly allocated. Copy it, or write it to its slot,
// before reusing either.
func DecodeBlock(dst []byte, b *Block, want cid.Cid, maxChunk int) ([]byte, error) {
	return decodeBlock(dst, b, want, maxChunk, object.Decode)
}

// ExpandBlock is DecodeBlock without the hash (object.Expand): for a
// receiver that hashes the chunk itself before any use. The result is
// NOT verified.
func ExpandBlock(dst []byte, b *Block, want cid.Cid, maxChunk int) ([]byte, error) {
	return decodeBlock(dst, b, want, maxChunk, object.Expand)
}

func decodeBlock(dst []byte, b *Block, want cid.Cid, maxChunk int, decode func([]byte, cid.Cid, []byte, int) ([]byte, error)) ([]byte, error) {
	if !b.CID.Equals(want) {
		return nil, fmt.Errorf("%w: request %d: block for %s answers a want for %s", ErrBadBlock, b.Req, b.CID, want)
	}
	data, err := decode(dst, want, b.Object, maxChunk)
	if err != nil {
		if errors.Is(err, object.ErrCorrupt) || errors.Is(err, object.ErrTooLarge) {
			return nil, fmt.Errorf("%w: request %d: %w", ErrBadBlock, b.Req, err)
		}
		return nil, fmt.Errorf("wire: request %d: %w", b.Req, err)
	}
	return data, nil
}
