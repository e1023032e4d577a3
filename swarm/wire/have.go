package wire

import (
	"encoding/binary"

	"github.com/ipfs/go-cid"
)

// Have tells the peer which chunks of one index (one artifact of a
// release) the sender holds and will serve. It replaces whatever the
// sender announced for that index before; a bitmap of zeros withdraws it.
//
// Layout: index CID field | count u32 | bitmap, BitmapLen(count) bytes.
type Have struct {
	Index cid.Cid // the index's content ID
	// Count is the index's number of chunks n, 0..MaxChunks. A receiver
	// checks it against the index it knows ([Have.Check]).
	Count int
	// Bitmap has BitmapLen(Count) bytes; chunk i is held when bit
	// 0x80>>(i%8) of byte i/8 is set (most significant bit first). Bits
	// past Count are zero.
	Bitmap []byte
}

// BitmapLen is the length of a bitmap over n chunk positions: ⌈n/8⌉.
func BitmapLen(n int) int { return (n + 7) / 8 }

func (Have) Kind() Kind { return KindHave }

// Has reports whether the bitmap marks chunk i as held.
func (h *Have) Has(i int) bool {
	return i >= 0 && i < h.Count && h.Bitmap[i/8]&(0x80>>(i%8)) != 0
}

// Check verifies that the Have describes an index of n chunks, the n the
// receiver knows for h.Index. A mismatch wraps ErrMalformed.
func (h *Have) Check(n int) error {
	if h.Count != n || len(h.Bitmap) != BitmapLen(n) {
		return malformed(KindHave, "%d positions (%d bitmap bytes) for index %s of %d chunks", h.Count, len(h.Bitmap), h.Index, n)
	}
	return nil
}

func (h Have) validate() error {
	if h.Count < 0 || h.Count > MaxChunks {
		return malformed(KindHave, "count %d outside 0..%d", h.Count, MaxChunks)
	}
	if len(h.Bitmap) != BitmapLen(h.Count) {
		return malformed(KindHave, "bitmap of %d bytes for %d positions, want %d", len(h.Bitmap), h.Count, BitmapLen(h.Count))
	}
	if r := h.Count % 8; r != 0 && h.Bitmap[len(h.Bitmap)-1]&(0xff>>r) != 0 {
		return malformed(KindHave, "bits set past position %d", h.Count)
	}
	return nil
}

func (h Have) appendBody(dst []byte) ([]byte, error) {
	if err := h.validate(); err != nil {
		return dst, err
	}
	dst, err := appendCID(dst, KindHave, "index", h.Index, false)
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.Count))
	return append(dst, h.Bitmap...), nil
}

func (h *Have) decode(b []byte) error {
	d := body{k: KindHave, b: b}
	var err error
	if h.Index, err = d.cid("index", false); err != nil {
		return err
	}
	n, err := d.u32("count")
	if err != nil {
		return err
	}
	if n > MaxChunks {
		return malformed(KindHave, "count %d above %d", n, MaxChunks)
	}
	h.Count, h.Bitmap = int(n), d.b
	return h.validate()
}

// HaveDelta adds chunks to what the sender announced for an index: it
// now also holds the listed positions. A node sends one as chunks arrive
// instead of resending the whole bitmap; it follows a Have for the same
// index on the same stream (a receiver refuses one that does not), and a
// sender sends a Have instead when that is shorter (more than
// Count/32 positions).
//
// Layout: index CID field | count u32 | positions, u32 each, to the end
// of the frame (at least one).
type HaveDelta struct {
	Index cid.Cid
	Count int // as in Have: the index's number of chunks, 1..MaxChunks
	// Positions are strictly increasing chunk positions below Count. A
	// Reader reuses the slice's array for the next HaveDelta.
	Positions []uint32
}

func (HaveDelta) Kind() Kind { return KindHaveDelta }

// Check verifies that the HaveDelta describes an index of n chunks; a
// mismatch wraps ErrMalformed.
func (h *HaveDelta) Check(n int) error {
	if h.Count != n {
		return malformed(KindHaveDelta, "%d positions for index %s of %d chunks", h.Count, h.Index, n)
	}
	return nil
}

func (h HaveDelta) validate() error {
	if h.Count < 1 || h.Count > MaxChunks {
		return malformed(KindHaveDelta, "count %d outside 1..%d", h.Count, MaxChunks)
	}
	if len(h.Positions) == 0 {
		return malformed(KindHaveDelta, "no positions")
	}
	if len(h.Positions) > h.Count {
		return malformed(KindHaveDelta, "%d positions for %d chunks", len(h.Positions), h.Count)
	}
	for i, p := range h.Positions {
		if i > 0 && p <= h.Positions[i-1] {
			return malformed(KindHaveDelta, "position %d after %d: not increasing", p, h.Positions[i-1])
		}
	}
	if last := h.Positions[len(h.Positions)-1]; int64(last) >= int64(h.Count) {
		return malformed(KindHaveDelta, "position %d not below count %d", last, h.Count)
	}
	return nil
}

func (h HaveDelta) appendBody(dst []byte) ([]byte, error) {
	if err := h.validate(); err != nil {
		return dst, err
	}
	dst, err := appendCID(dst, KindHaveDelta, "index", h.Index, false)
	if err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.Count))
	for _, p := range h.Positions {
		dst = binary.BigEndian.AppendUint32(dst, p)
	}
	return dst, nil
}

func (h *HaveDelta) decode(b []byte) error {
	d := body{k: KindHaveDelta, b: b}
	var err error
	if h.Index, err = d.cid("index", false); err != nil {
		return err
	}
	n, err := d.u32("count")
	if err != nil {
		return err
	}
	if n < 1 || n > MaxChunks {
		return malformed(KindHaveDelta, "count %d outside 1..%d", n, MaxChunks)
	}
	if len(d.b)%4 != 0 {
		return malformed(KindHaveDelta, "%d bytes of positions, not a multiple of 4", len(d.b))
	}
	k := len(d.b) / 4
	if k == 0 || k > int(n) {
		return malformed(KindHaveDelta, "%d positions for %d chunks", k, n)
	}
	// k is bounded by the frame (and by n) before the slice grows.
	ps := h.Positions[:0]
	if cap(ps) < k {
		ps = make([]uint32, 0, k)
	}
	for i := 0; i < k; i++ {
		ps = append(ps, binary.BigEndian.Uint32(d.b[4*i:]))
	}
	h.Count, h.Positions = int(n), ps
	return h.validate()
}
