package delta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/klauspost/compress/zstd"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
)

// KindDelta is the kind byte of a delta object, the next free value after
// chunker/object's KindZstd (1) and KindRaw (2), so a delta can travel
// wherever a chunk object does and a reader that does not know deltas
// refuses it by its kind rather than misreading it.
const KindDelta byte = 3

// Bounds on what a delta names. A reader checks every field against them
// before it allocates or reads anything.
const (
	// MaxRanges is the most base ranges one delta may reference.
	MaxRanges = 4
	// RefCeil is the most reference bytes any delta index may allow per
	// delta (its MaxRef field): a device holds one reference in memory
	// while it expands, so this caps that memory whatever a publisher
	// claims.
	RefCeil = 16 << 20
	// DefaultMaxRef is the planner's reference cap per delta.
	DefaultMaxRef = 4 << 20
)

// Sentinel errors. Every error of [Expand], [ParseHeader] and
// [ReadReference] wraps one of them.
var (
	// ErrCorrupt: the object is not a delta, does not decode, or expands
	// to bytes that do not hash to the chunk's ID.
	ErrCorrupt = errors.New("delta: delta object corrupt")
	// ErrTooLarge: the object, the expansion it declares, or the
	// reference it names is larger than the limits allow.
	ErrTooLarge = errors.New("delta: delta object too large")
	// ErrBadRange: a referenced range lies outside the base image.
	ErrBadRange = errors.New("delta: reference range outside the base image")
)

// Range is a byte range of the base image.
type Range struct {
	Off int64
	Len int64
}

// End returns the offset just past the range.
func (r Range) End() int64 { return r.Off + r.Len }

func (r Range) String() string { return fmt.Sprintf("[%d,%d)", r.Off, r.End()) }

// RefLen returns the total length of ranges: the size of the reference
// (the zstd dictionary) they make when concatenated in order.
func RefLen(ranges []Range) int64 {
	var n int64
	for _, r := range ranges {
		n += r.Len
	}
	return n
}

// Limits are what a reader knows before it looks at a delta: they come from
// the target index (MaxChunk), the base index (BaseSize) and the delta
// index (MaxRef).
type Limits struct {
	MaxChunk int   // the target index's maximum chunk size
	MaxRef   int   // the most reference bytes one delta may name, ≤ RefCeil
	BaseSize int64 // the base image's size; every range must lie inside it
}

func (l Limits) check() error {
	switch {
	case l.MaxChunk <= 0 || l.MaxChunk > chunker.MaxChunkCeil:
		return fmt.Errorf("delta: maximum chunk size %d outside 1..%d", l.MaxChunk, chunker.MaxChunkCeil)
	case l.MaxRef <= 0 || l.MaxRef > RefCeil:
		return fmt.Errorf("delta: reference cap %d outside 1..%d", l.MaxRef, RefCeil)
	case l.BaseSize < 0:
		return fmt.Errorf("delta: negative base size %d", l.BaseSize)
	}
	return nil
}

// Header is the fixed part of a delta object, ahead of its zstd frame.
//
//	offset  size  field
//	0       1     kind, KindDelta
//	1       1     n, the number of ranges, 1..MaxRanges
//	2       4     expanded size in bytes (big-endian), 1..max chunk
//	6       12·n  ranges: offset (8 bytes) and length (4 bytes), big-endian
//	6+12·n  ...   one zstd frame, no dictionary ID, whose raw dictionary is
//	              the ranges' bytes concatenated in order
type Header struct {
	Size   int // expanded size: the chunk's length
	Ranges []Range
}

const (
	headerFixed = 6
	rangeSize   = 12
)

// HeaderLen is the length of the header of a delta with n ranges.
func HeaderLen(n int) int { return headerFixed + rangeSize*n }

// MaxObjectSize is the largest delta object a reader accepts for a chunk of
// at most maxChunk bytes: a delta larger than the chunk's own stored
// object is never worth sending, so the bound is the chunk object's plus
// the largest header.
func MaxObjectSize(maxChunk int) int64 {
	return object.MaxSize(maxChunk) + int64(HeaderLen(MaxRanges))
}

// appendHeader appends h's encoding to dst.
func appendHeader(dst []byte, h Header) []byte {
	dst = append(dst, KindDelta, byte(len(h.Ranges)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.Size))
	for _, r := range h.Ranges {
		dst = binary.BigEndian.AppendUint64(dst, uint64(r.Off))
		dst = binary.BigEndian.AppendUint32(dst, uint32(r.Len))
	}
	return dst
}

// ParseHeader reads and checks a delta object's header against lim and
// returns it with the zstd frame that follows. It allocates only the
// ranges slice (at most MaxRanges entries).
func ParseHeader(obj []byte, lim Limits) (Header, []byte, error) {
	var h Header
	if err := lim.check(); err != nil {
		return h, nil, err
	}
	if int64(len(obj)) > MaxObjectSize(lim.MaxChunk) {
		return h, nil, fmt.Errorf("%w: object of %d bytes exceeds %d", ErrTooLarge, len(obj), MaxObjectSize(lim.MaxChunk))
	}
	if len(obj) < headerFixed {
		return h, nil, fmt.Errorf("%w: %d bytes, shorter than a delta header", ErrCorrupt, len(obj))
	}
	if obj[0] != KindDelta {
		return h, nil, fmt.Errorf("%w: object kind %d is not a delta (%d)", ErrCorrupt, obj[0], KindDelta)
	}
	n := int(obj[1])
	if n < 1 || n > MaxRanges {
		return h, nil, fmt.Errorf("%w: %d ranges, want 1..%d", ErrCorrupt, n, MaxRanges)
	}
	size := binary.BigEndian.Uint32(obj[2:])
	if size == 0 {
		return h, nil, fmt.Errorf("%w: expanded size 0", ErrCorrupt)
	}
	if uint64(size) > uint64(lim.MaxChunk) {
		return h, nil, fmt.Errorf("%w: expands to %d bytes, above the maximum chunk size %d", ErrTooLarge, size, lim.MaxChunk)
	}
	if len(obj) < HeaderLen(n) {
		return h, nil, fmt.Errorf("%w: %d bytes, header of %d ranges needs %d", ErrCorrupt, len(obj), n, HeaderLen(n))
	}
	h.Size = int(size)
	h.Ranges = make([]Range, n)
	var total int64
	for i := range h.Ranges {
		b := obj[headerFixed+i*rangeSize:]
		off, ln := binary.BigEndian.Uint64(b), binary.BigEndian.Uint32(b[8:])
		if ln == 0 {
			return h, nil, fmt.Errorf("%w: range %d is empty", ErrCorrupt, i)
		}
		if off > uint64(lim.BaseSize) || uint64(ln) > uint64(lim.BaseSize)-off {
			return h, nil, fmt.Errorf("%w: range %d [%d,+%d) outside a base of %d bytes", ErrBadRange, i, off, ln, lim.BaseSize)
		}
		total += int64(ln)
		if total > int64(lim.MaxRef) {
			return h, nil, fmt.Errorf("%w: ranges name more than %d reference bytes", ErrTooLarge, lim.MaxRef)
		}
		h.Ranges[i] = Range{Off: int64(off), Len: int64(ln)}
	}
	return h, obj[HeaderLen(n):], nil
}

// ReadReference reads the bytes of ranges from base, concatenated, into
// buf's capacity when it suffices (a new buffer otherwise). The caller has
// checked the ranges (ParseHeader does).
func ReadReference(buf []byte, base io.ReaderAt, ranges []Range) ([]byte, error) {
	n := RefLen(ranges)
	if int64(cap(buf)) >= n {
		buf = buf[:n]
	} else {
		buf = make([]byte, n)
	}
	p := buf
	for _, r := range ranges {
		if _, err := base.ReadAt(p[:r.Len], r.Off); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: range %v: base ends early (%v)", ErrBadRange, r, err)
			}
			return nil, fmt.Errorf("delta: read reference %v: %w", r, err)
		}
		p = p[r.Len:]
	}
	return buf, nil
}

// Expand turns a delta object back into the chunk named id, given the
// reference bytes its header names (ref, as [ReadReference] returns them),
// and accepts the result only if it hashes to id. It never allocates more
// than the header's expanded size, which lim.MaxChunk bounds before
// anything is decoded; the output goes into dst's capacity when that holds
// the chunk. Errors name the chunk. Those about the object wrap ErrCorrupt,
// ErrTooLarge or ErrBadRange; a caller's mistake (limits out of range, a
// reference of another length than the header names) wraps none of them.
func Expand(dst []byte, id cid.Cid, obj, ref []byte, lim Limits) ([]byte, error) {
	h, frame, err := ParseHeader(obj, lim)
	if err != nil {
		return nil, fmt.Errorf("delta for chunk %s: %w", id, err)
	}
	if int64(len(ref)) != RefLen(h.Ranges) {
		return nil, fmt.Errorf("delta for chunk %s: reference of %d bytes, the header names %d", id, len(ref), RefLen(h.Ranges))
	}
	data, err := decompress(dst, frame, ref, h.Size)
	if err != nil {
		return nil, fmt.Errorf("delta for chunk %s: %w: zstd: %v", id, ErrCorrupt, err)
	}
	if len(data) != h.Size {
		return nil, fmt.Errorf("delta for chunk %s: %w: expanded to %d bytes, header says %d", id, ErrCorrupt, len(data), h.Size)
	}
	got, ok, err := chunker.SumID(id, data)
	if err != nil {
		return nil, fmt.Errorf("delta for chunk %s: %w", id, err)
	}
	if !ok {
		return nil, fmt.Errorf("delta for chunk %s: %w: expands to bytes that hash to %s", id, ErrCorrupt, got)
	}
	return data, nil
}

// ExpandFrom is Expand with the reference read from base: ParseHeader,
// ReadReference into refBuf's capacity when it suffices, then Expand.
func ExpandFrom(dst, refBuf []byte, id cid.Cid, obj []byte, base io.ReaderAt, lim Limits) ([]byte, error) {
	h, _, err := ParseHeader(obj, lim)
	if err != nil {
		return nil, fmt.Errorf("delta for chunk %s: %w", id, err)
	}
	ref, err := ReadReference(refBuf, base, h.Ranges)
	if err != nil {
		return nil, fmt.Errorf("delta for chunk %s: %w", id, err)
	}
	return Expand(dst, id, obj, ref, lim)
}

// decoders are reused: a decoder keeps a reference to the dictionary it was
// last given (no copy), and dropping it before pooling lets the reference
// buffer go.
var decoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(chunker.MaxChunkCeil+1), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxWindow(RefCeil+chunker.MaxChunkCeil))
	if err != nil {
		panic(err) // only invalid options fail, and these are fixed
	}
	return d
}}

// decompress decodes one zstd frame with ref as its raw dictionary into at
// most size bytes. The frame must declare exactly size bytes, or nothing;
// the output buffer's capacity, which the decoder never exceeds, is size.
func decompress(dst, frame, ref []byte, size int) ([]byte, error) {
	var fh zstd.Header
	if err := fh.Decode(frame); err != nil {
		return nil, err
	}
	if fh.HasFCS && fh.FrameContentSize != uint64(size) {
		return nil, fmt.Errorf("frame declares %d bytes, header %d", fh.FrameContentSize, size)
	}
	if fh.DictionaryID != 0 {
		return nil, fmt.Errorf("frame names dictionary %d; deltas use none", fh.DictionaryID)
	}
	if cap(dst) >= size {
		dst = dst[:0:size]
	} else {
		dst = make([]byte, 0, size)
	}
	d := decoders.Get().(*zstd.Decoder)
	defer func() {
		// Forget the reference before pooling (ignore the error: only a
		// closed decoder fails, and pooled decoders are never closed).
		_ = d.ResetWithOptions(nil, zstd.WithDecoderDictDelete(0))
		decoders.Put(d)
	}()
	if err := d.ResetWithOptions(nil, zstd.WithDecoderDictRaw(0, ref)); err != nil {
		return nil, err
	}
	out, err := d.DecodeAll(frame, dst)
	if err != nil {
		return nil, err
	}
	return out, nil
}
