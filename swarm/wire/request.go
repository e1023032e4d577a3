package wire

import (
	"encoding/binary"

	"github.com/ipfs/go-cid"
)

// Want asks the peer for one object. The peer answers every Want exactly
// once on the same stream: with a Block or a DontHave carrying the same
// request ID and CID.
//
// Layout: req u32 | CID field | index CID field (length 0: none) |
// position u32 (0 when there is no index).
type Want struct {
	Req RequestID
	CID cid.Cid // the chunk (or, later, delta object) wanted
	// Index and Position optionally say where the requester met CID:
	// chunk Position of that index. A server may use them to find the
	// chunk (in a slot, at the index's offset for Position) and must
	// still check that the bytes it sends hash to CID. cid.Undef: no
	// context (an index fetched by its ID, for example).
	Index    cid.Cid
	Position int // 0..MaxChunks-1; 0 without Index
}

func (Want) Kind() Kind { return KindWant }

func (w Want) validate() error {
	if w.Position < 0 || w.Position >= MaxChunks {
		return malformed(KindWant, "position %d outside 0..%d", w.Position, MaxChunks-1)
	}
	if !w.Index.Defined() && w.Position != 0 {
		return malformed(KindWant, "position %d without an index", w.Position)
	}
	return nil
}

func (w Want) appendBody(dst []byte) ([]byte, error) {
	if err := w.validate(); err != nil {
		return dst, err
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(w.Req))
	dst, err := appendCID(dst, KindWant, "cid", w.CID, false)
	if err != nil {
		return dst, err
	}
	if dst, err = appendCID(dst, KindWant, "index", w.Index, true); err != nil {
		return dst, err
	}
	return binary.BigEndian.AppendUint32(dst, uint32(w.Position)), nil
}

func (w *Want) decode(b []byte) error {
	d := body{k: KindWant, b: b}
	req, err := d.u32("req")
	if err != nil {
		return err
	}
	w.Req = RequestID(req)
	if w.CID, err = d.cid("cid", false); err != nil {
		return err
	}
	if w.Index, err = d.cid("index", true); err != nil {
		return err
	}
	pos, err := d.u32("position")
	if err != nil {
		return err
	}
	if pos >= MaxChunks {
		return malformed(KindWant, "position %d above %d", pos, MaxChunks-1)
	}
	w.Position = int(pos)
	if err := d.end(); err != nil {
		return err
	}
	return w.validate()
}

// DontHave answers a Want the sender will not serve (it does not hold the
// object, its frame would exceed the requester's limit, or the Want was
// cancelled).
//
// Layout: req u32 | CID field.
type DontHave struct {
	Req RequestID
	CID cid.Cid // the Want's CID
}

func (DontHave) Kind() Kind { return KindDontHave }

func (m DontHave) appendBody(dst []byte) ([]byte, error) {
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Req))
	return appendCID(dst, KindDontHave, "cid", m.CID, false)
}

func (m *DontHave) decode(b []byte) error {
	d := body{k: KindDontHave, b: b}
	req, err := d.u32("req")
	if err != nil {
		return err
	}
	m.Req = RequestID(req)
	if m.CID, err = d.cid("cid", false); err != nil {
		return err
	}
	return d.end()
}

// Cancel withdraws a Want. The peer still answers it exactly once: with
// DontHave if it has not sent the Block yet, else the Block already on
// its way; so the requester frees the request ID when the answer comes.
//
// Layout: req u32.
type Cancel struct {
	Req RequestID
}

func (Cancel) Kind() Kind { return KindCancel }

func (m Cancel) appendBody(dst []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint32(dst, uint32(m.Req)), nil
}

func (m *Cancel) decode(b []byte) error {
	d := body{k: KindCancel, b: b}
	req, err := d.u32("req")
	if err != nil {
		return err
	}
	m.Req = RequestID(req)
	return d.end()
}
