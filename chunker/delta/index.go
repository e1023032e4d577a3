package delta

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
)

// Index is the delta index of one base→target pair: for each new chunk of
// the target that has a delta, the delta object's digest and size and the
// base ranges it references. Chunks it does not list are fetched whole. It
// names both indexes by the digest of their encoding, so a device can tell
// whether the base it holds is the one the deltas were made against.
type Index struct {
	Hash     chunker.Hash   // hash function of both indexes, their chunk IDs and the delta IDs
	Base     chunker.Digest // digest (Hash) of the encoded base index
	Target   chunker.Digest // digest (Hash) of the encoded target index
	BaseSize int64          // the base image's size
	MaxChunk int            // the target index's maximum chunk size
	MaxRef   int            // the most reference bytes any delta names, 1..RefCeil
	Entries  []Entry        // by target position, strictly increasing
}

// Entry is one delta of an [Index].
type Entry struct {
	Pos    int64          // position of the chunk in the target index
	Digest chunker.Digest // digest of the delta object's bytes
	Size   int            // the delta object's length
	Ranges []Range        // the base ranges it references, as in its header
}

// ID returns the content identifier of the delta object of e: CIDv1 raw
// with ix's hash function, the same form as a chunk ID.
func (ix *Index) ID(e Entry) cid.Cid { return ix.Hash.ID(e.Digest) }

// Limits returns the limits a reader checks each delta of ix against.
func (ix *Index) Limits() Limits {
	return Limits{MaxChunk: ix.MaxChunk, MaxRef: ix.MaxRef, BaseSize: ix.BaseSize}
}

// Delta index format constants; docs/formats.md ("Delta index") describes
// the layout byte by byte.
const (
	indexMagic      = "SHOALDLT"
	IndexVersion    = 1
	indexHeaderSize = 112
	entryFixed      = 8 + chunker.DigestSize + 4 + 1
	minEntrySize    = entryFixed + rangeSize
)

// ErrMalformedIndex is wrapped by every error of [DecodeIndex] and
// [Index.Check].
var ErrMalformedIndex = errors.New("delta: malformed delta index")

// IndexError says where a delta index failed to decode and why.
type IndexError struct {
	Offset int64  // byte offset of the offending field (-1 for Check's findings)
	Field  string // the field's name as in docs/formats.md
	Reason string
}

func (e *IndexError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("delta: delta index does not fit its indexes (%s): %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("delta: malformed delta index at offset %d (%s): %s", e.Offset, e.Field, e.Reason)
}

func (e *IndexError) Unwrap() error { return ErrMalformedIndex }

// Encode returns the deterministic binary encoding of ix. It does not
// validate ix; DecodeIndex on the result does.
func (ix *Index) Encode() []byte {
	n := indexHeaderSize
	for _, e := range ix.Entries {
		n += entryFixed + rangeSize*len(e.Ranges)
	}
	b := make([]byte, indexHeaderSize, n)
	copy(b, indexMagic)
	b[8] = IndexVersion
	// b[9:12] reserved, zero
	binary.BigEndian.PutUint32(b[12:], uint32(ix.MaxRef))
	binary.BigEndian.PutUint64(b[16:], uint64(ix.Hash))
	copy(b[24:56], ix.Base[:])
	copy(b[56:88], ix.Target[:])
	binary.BigEndian.PutUint64(b[88:], uint64(ix.BaseSize))
	binary.BigEndian.PutUint32(b[96:], uint32(ix.MaxChunk))
	// b[100:104] reserved, zero
	binary.BigEndian.PutUint64(b[104:], uint64(len(ix.Entries)))
	for _, e := range ix.Entries {
		b = binary.BigEndian.AppendUint64(b, uint64(e.Pos))
		b = append(b, e.Digest[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(e.Size))
		b = append(b, byte(len(e.Ranges)))
		for _, r := range e.Ranges {
			b = binary.BigEndian.AppendUint64(b, uint64(r.Off))
			b = binary.BigEndian.AppendUint32(b, uint32(r.Len))
		}
	}
	return b
}

// Digest returns the digest of ix's encoding with ix's hash function: the
// delta index's own content address.
func (ix *Index) Digest() chunker.Digest { return ix.Hash.Sum(ix.Encode()) }

// DecodeIndex parses and validates an encoded delta index. Every count is
// checked against the input's length before anything is allocated from it,
// and the encoding must be canonical: decoding then encoding gives back the
// same bytes. Errors wrap ErrMalformedIndex and name the offset and field.
func DecodeIndex(b []byte) (*Index, error) {
	bad := func(off int, field, format string, args ...any) error {
		return &IndexError{Offset: int64(off), Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if len(b) < indexHeaderSize {
		return nil, bad(0, "header", "truncated: %d bytes, the header needs %d", len(b), indexHeaderSize)
	}
	if string(b[:8]) != indexMagic {
		return nil, bad(0, "magic", "got %q, want %q", b[:8], indexMagic)
	}
	if b[8] != IndexVersion {
		return nil, bad(8, "version", "unsupported format version %d (this build reads %d)", b[8], IndexVersion)
	}
	if b[9] != 0 || b[10] != 0 || b[11] != 0 {
		return nil, bad(9, "reserved", "must be zero")
	}
	ix := &Index{}
	maxRef := binary.BigEndian.Uint32(b[12:])
	if maxRef == 0 || maxRef > RefCeil {
		return nil, bad(12, "max_ref", "%d outside 1..%d", maxRef, RefCeil)
	}
	ix.MaxRef = int(maxRef)
	ix.Hash = chunker.Hash(binary.BigEndian.Uint64(b[16:]))
	if !ix.Hash.Valid() {
		return nil, bad(16, "hash", "unknown hash function code 0x%x", uint64(ix.Hash))
	}
	copy(ix.Base[:], b[24:56])
	copy(ix.Target[:], b[56:88])
	baseSize := binary.BigEndian.Uint64(b[88:])
	if baseSize > 1<<62 {
		return nil, bad(88, "base_size", "%d is implausible", baseSize)
	}
	ix.BaseSize = int64(baseSize)
	maxChunk := binary.BigEndian.Uint32(b[96:])
	if maxChunk < chunker.MinChunkFloor || maxChunk > chunker.MaxChunkCeil {
		return nil, bad(96, "max_chunk", "%d outside %d..%d", maxChunk, chunker.MinChunkFloor, chunker.MaxChunkCeil)
	}
	ix.MaxChunk = int(maxChunk)
	if binary.BigEndian.Uint32(b[100:]) != 0 {
		return nil, bad(100, "reserved", "must be zero")
	}
	count := binary.BigEndian.Uint64(b[104:])
	if body := uint64(len(b) - indexHeaderSize); count > body/minEntrySize {
		return nil, bad(104, "count", "%d entries cannot fit in %d bytes", count, body)
	}
	lim := ix.Limits()
	maxObj := MaxObjectSize(ix.MaxChunk)
	ix.Entries = make([]Entry, count)
	ranges := make([]Range, 0, count) // one backing array; most entries have one range
	off := indexHeaderSize
	for i := range ix.Entries {
		field := func(f string) string { return fmt.Sprintf("entries[%d].%s", i, f) }
		if len(b)-off < entryFixed {
			return nil, bad(off, field("pos"), "truncated")
		}
		e := &ix.Entries[i]
		pos := binary.BigEndian.Uint64(b[off:])
		if pos > 1<<62 {
			return nil, bad(off, field("pos"), "%d is implausible", pos)
		}
		if i > 0 && int64(pos) <= ix.Entries[i-1].Pos {
			return nil, bad(off, field("pos"), "%d does not follow %d: positions must increase", pos, ix.Entries[i-1].Pos)
		}
		e.Pos = int64(pos)
		copy(e.Digest[:], b[off+8:])
		size := binary.BigEndian.Uint32(b[off+8+chunker.DigestSize:])
		if size <= uint32(HeaderLen(1)) || int64(size) > maxObj {
			return nil, bad(off+8+chunker.DigestSize, field("size"), "%d outside %d..%d", size, HeaderLen(1)+1, maxObj)
		}
		e.Size = int(size)
		n := int(b[off+entryFixed-1])
		if n < 1 || n > MaxRanges {
			return nil, bad(off+entryFixed-1, field("ranges"), "%d ranges, want 1..%d", n, MaxRanges)
		}
		off += entryFixed
		if len(b)-off < n*rangeSize {
			return nil, bad(off, field("ranges"), "truncated: %d ranges need %d bytes", n, n*rangeSize)
		}
		start := len(ranges)
		var total uint64
		for j := range n {
			ro, rl := binary.BigEndian.Uint64(b[off:]), binary.BigEndian.Uint32(b[off+8:])
			rf := field(fmt.Sprintf("ranges[%d]", j))
			switch {
			case rl == 0:
				return nil, bad(off, rf, "empty range")
			case ro > baseSize || uint64(rl) > baseSize-ro:
				return nil, bad(off, rf, "[%d,+%d) outside a base of %d bytes", ro, rl, baseSize)
			}
			total += uint64(rl)
			if total > uint64(lim.MaxRef) {
				return nil, bad(off, rf, "ranges name more than max_ref %d bytes", lim.MaxRef)
			}
			ranges = append(ranges, Range{Off: int64(ro), Len: int64(rl)})
			off += rangeSize
		}
		e.Ranges = ranges[start:len(ranges):len(ranges)]
	}
	if off != len(b) {
		return nil, bad(off, "end", "%d trailing bytes after %d entries", len(b)-off, count)
	}
	return ix, nil
}

// Check verifies that ix belongs to the pair (base, target): the digests of
// their encodings, the base size, the target's maximum chunk size and
// hash function, and every position inside the target. A device runs it
// before using any entry.
func (ix *Index) Check(base, target *chunker.Index) error {
	bad := func(field, format string, args ...any) error {
		return &IndexError{Offset: -1, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case base.Hash != ix.Hash || target.Hash != ix.Hash:
		return bad("hash", "delta index uses %v, indexes %v and %v", ix.Hash, base.Hash, target.Hash)
	case ix.Hash.Sum(base.Encode()) != ix.Base:
		return bad("base", "names base index %v, not this one", ix.Hash.ID(ix.Base))
	case ix.Hash.Sum(target.Encode()) != ix.Target:
		return bad("target", "names target index %v, not this one", ix.Hash.ID(ix.Target))
	case base.Size != ix.BaseSize:
		return bad("base_size", "%d, the base index says %d", ix.BaseSize, base.Size)
	case target.Params.Max != ix.MaxChunk:
		return bad("max_chunk", "%d, the target index says %d", ix.MaxChunk, target.Params.Max)
	}
	if n := len(ix.Entries); n > 0 && ix.Entries[n-1].Pos >= int64(len(target.Chunks)) {
		return bad("entries", "position %d beyond the target's %d chunks", ix.Entries[n-1].Pos, len(target.Chunks))
	}
	return nil
}
