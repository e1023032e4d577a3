package chunker

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
)

// Index describes one artifact as a sequence of chunks.
type Index struct {
	Params Params
	Hash   Hash
	Size   int64   // total bytes; equals the sum of chunk sizes
	Chunks []Entry // in stream order
}

// Entry is one chunk of an index.
type Entry struct {
	Size   uint32
	Digest Digest
}

// Offsets returns each chunk's starting offset, plus the total size as a
// final element, so chunk i spans [off[i], off[i+1]).
func (ix *Index) Offsets() []int64 {
	off := make([]int64, len(ix.Chunks)+1)
	var o int64
	for i, e := range ix.Chunks {
		off[i] = o
		o += int64(e.Size)
	}
	off[len(ix.Chunks)] = o
	return off
}

// ID returns the content identifier of chunk i.
func (ix *Index) ID(i int) cid.Cid { return ix.Hash.ID(ix.Chunks[i].Digest) }

// CID returns the content identifier of the encoded index itself, so an
// index can be stored and fetched like a chunk.
func (ix *Index) CID() cid.Cid {
	return ix.Hash.ID(ix.Hash.Sum(ix.Encode()))
}

// Index format constants; docs/formats.md describes the layout byte by byte.
const (
	indexMagic      = "SHOALIDX"
	IndexVersion    = 1
	indexHeaderSize = 48
	indexEntrySize  = 4 + DigestSize
	// KindChunks is the only object kind of format version 1: a plain list
	// of chunks. Later kinds (delta-described chunks) get their own value.
	KindChunks = 0
)

// ErrMalformedIndex is wrapped by every decoding error.
var ErrMalformedIndex = errors.New("chunker: malformed index")

// IndexError says where an index failed to decode and why.
type IndexError struct {
	Offset int64  // byte offset of the offending field
	Field  string // the field's name as in docs/formats.md
	Reason string
}

func (e *IndexError) Error() string {
	return fmt.Sprintf("chunker: malformed index at offset %d (%s): %s", e.Offset, e.Field, e.Reason)
}

func (e *IndexError) Unwrap() error { return ErrMalformedIndex }

// Encode returns the deterministic binary encoding of ix. It does not
// validate ix; use [DecodeIndex] on the result when ix came from outside.
func (ix *Index) Encode() []byte {
	b := make([]byte, indexHeaderSize, indexHeaderSize+len(ix.Chunks)*indexEntrySize)
	copy(b, indexMagic)
	b[8] = IndexVersion
	b[9] = KindChunks
	// b[10:12] reserved, zero
	binary.BigEndian.PutUint32(b[12:], uint32(ix.Params.Min))
	binary.BigEndian.PutUint32(b[16:], uint32(ix.Params.Avg))
	binary.BigEndian.PutUint32(b[20:], uint32(ix.Params.Max))
	binary.BigEndian.PutUint64(b[24:], uint64(ix.Hash))
	binary.BigEndian.PutUint64(b[32:], uint64(ix.Size))
	binary.BigEndian.PutUint64(b[40:], uint64(len(ix.Chunks)))
	for _, e := range ix.Chunks {
		b = binary.BigEndian.AppendUint32(b, e.Size)
		b = append(b, e.Digest[:]...)
	}
	return b
}

// MarshalBinary implements encoding.BinaryMarshaler.
func (ix *Index) MarshalBinary() ([]byte, error) { return ix.Encode(), nil }

// UnmarshalBinary implements encoding.BinaryUnmarshaler with the checks of
// [DecodeIndex].
func (ix *Index) UnmarshalBinary(b []byte) error {
	d, err := DecodeIndex(b)
	if err != nil {
		return err
	}
	*ix = *d
	return nil
}

// DecodeIndex parses and validates an encoded index. Every length is checked
// against the input before anything is allocated from it, and the encoding
// must be canonical: decoding then encoding gives back the same bytes.
func DecodeIndex(b []byte) (*Index, error) {
	bad := func(off int64, field, format string, args ...any) error {
		return &IndexError{Offset: off, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if len(b) < indexHeaderSize {
		// Name the first header field that does not fit.
		start := 0
		for _, f := range headerFields {
			if len(b) < f.end {
				return nil, bad(int64(start), f.name, "truncated: input is %d bytes, header needs %d", len(b), indexHeaderSize)
			}
			start = f.end
		}
	}
	if string(b[:8]) != indexMagic {
		return nil, bad(0, "magic", "got %q, want %q", b[:8], indexMagic)
	}
	if b[8] != IndexVersion {
		return nil, bad(8, "version", "unsupported format version %d (this build reads %d)", b[8], IndexVersion)
	}
	if b[9] != KindChunks {
		return nil, bad(9, "kind", "unknown object kind %d", b[9])
	}
	if b[10] != 0 || b[11] != 0 {
		return nil, bad(10, "reserved", "must be zero")
	}
	ix := &Index{}
	p := Params{
		Min: int(binary.BigEndian.Uint32(b[12:])),
		Avg: int(binary.BigEndian.Uint32(b[16:])),
		Max: int(binary.BigEndian.Uint32(b[20:])),
	}
	if err := p.Validate(); err != nil {
		return nil, bad(12, "min/avg/max", "%v", err)
	}
	ix.Params = p
	ix.Hash = Hash(binary.BigEndian.Uint64(b[24:]))
	if !ix.Hash.Valid() {
		return nil, bad(24, "hash", "unknown hash function code 0x%x", uint64(ix.Hash))
	}
	size := binary.BigEndian.Uint64(b[32:])
	if size > 1<<62 {
		return nil, bad(32, "size", "total size %d is implausible", size)
	}
	ix.Size = int64(size)
	count := binary.BigEndian.Uint64(b[40:])
	body := uint64(len(b) - indexHeaderSize)
	if count > body/indexEntrySize {
		need := indexHeaderSize + count*indexEntrySize
		if count > (1<<62)/indexEntrySize {
			return nil, bad(40, "count", "chunk count %d is implausible", count)
		}
		last := indexHeaderSize + (body/indexEntrySize)*indexEntrySize
		return nil, bad(int64(last), "chunks", "truncated: count says %d chunks (%d bytes), input is %d bytes", count, need, len(b))
	}
	if rest := body - count*indexEntrySize; rest != 0 {
		return nil, bad(int64(indexHeaderSize+count*indexEntrySize), "end", "%d trailing bytes after %d chunks", rest, count)
	}
	ix.Chunks = make([]Entry, count)
	var sum uint64
	for i := range ix.Chunks {
		off := indexHeaderSize + i*indexEntrySize
		s := binary.BigEndian.Uint32(b[off:])
		switch {
		case s == 0:
			return nil, bad(int64(off), fmt.Sprintf("chunks[%d].size", i), "zero-length chunk")
		case int(s) > p.Max:
			return nil, bad(int64(off), fmt.Sprintf("chunks[%d].size", i), "%d exceeds max %d", s, p.Max)
		case int(s) < p.Min && uint64(i) != count-1:
			return nil, bad(int64(off), fmt.Sprintf("chunks[%d].size", i), "%d below min %d and not the last chunk", s, p.Min)
		}
		sum += uint64(s)
		ix.Chunks[i].Size = s
		copy(ix.Chunks[i].Digest[:], b[off+4:off+indexEntrySize])
	}
	if sum != size {
		return nil, bad(32, "size", "header says %d bytes, chunks add up to %d", size, sum)
	}
	return ix, nil
}

// headerFields lists the header's fields in order with their end offsets.
var headerFields = []struct {
	end  int
	name string
}{{8, "magic"}, {9, "version"}, {10, "kind"}, {12, "reserved"}, {16, "min"}, {20, "avg"}, {24, "max"}, {32, "hash"}, {40, "size"}, {48, "count"}}
