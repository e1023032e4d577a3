package sched

import (
	"fmt"
	"math/bits"
)

// peer is what a session knows of one peer. The small fields come first,
// packed into one word, so that a record takes 112 bytes.
type peer struct {
	id       string
	class    Class
	wants    bool   // the split: it fetches the release too
	noShare  bool   // takes no share: it cannot reach the origin
	excluded bool   // left out for stalling on its share
	idx      uint16 // slot in Session.slots
	pos      uint16 // place in Session.order, noPos when out of it
	seq      uint64 // order of AddPeer
	have     []uint64
	useful   int // pieces in its class's pool it holds
	out      int // requests outstanding
	window   int
	strikes  int
	struck   int64 // tick of the last strike
	// lastRecv is the tick of its last block; requests stall only when
	// the peer delivered nothing for StallTicks.
	lastRecv int64
	awaited  int // pieces this node awaits from it (the split; also Session.awaitedBy)
}

// noPos is peer.pos of a peer not in Session.order.
const noPos = 1<<16 - 1

func (p *peer) has(q int32) bool { return hasBit(p.have, q) }
func (p *peer) free() int        { return p.window - p.out }

// mark updates p's bits in Session.room and Session.ready after its
// window, requests outstanding or useful count changed.
func (s *Session) mark(p *peer) {
	if p.pos != noPos {
		s.markAt(int(p.pos), p)
	}
}

func (s *Session) markAt(k int, p *peer) {
	w, b := k>>6, uint64(1)<<(k&63)
	if p.window > p.out {
		s.room[w] |= b
		if p.useful > 0 {
			s.ready[w] |= b
		} else {
			s.ready[w] &^= b
		}
	} else {
		s.room[w] &^= b
		s.ready[w] &^= b
	}
}

// row is the have-bitmap of slot i.
func (s *Session) row(i int) []uint64 {
	c, o := s.chunks[i>>s.rowShift], (i&(1<<s.rowShift-1))*s.words
	return c[o : o+s.words : o+s.words]
}

// holds reports whether the peer in slot i holds q.
func (s *Session) holds(i int, w int, bit uint64) bool {
	return s.chunks[i>>s.rowShift][(i&(1<<s.rowShift-1))*s.words+w]&bit != 0
}

// renumber sets the positions of s.order[from:] and their bits, after
// peers moved in s.order; the bit past its end is cleared.
func (s *Session) renumber(from int) {
	if need := (len(s.order) + 64) / 64; len(s.room) < need {
		s.room = append(s.room, make([]uint64, need-len(s.room))...)
		s.ready = append(s.ready, make([]uint64, need-len(s.ready))...)
	}
	s.posSlot = s.posSlot[:len(s.order)]
	for k := from; k < len(s.order); k++ {
		p := s.order[k]
		p.pos = uint16(k)
		s.posSlot[k] = p.idx
		s.markAt(k, p)
	}
	k := len(s.order)
	s.room[k>>6] &^= 1 << (k & 63)
	s.ready[k>>6] &^= 1 << (k & 63)
}

// before is the order peers are served in: LAN first, fewer strikes first,
// then the order they were added.
func (p *peer) before(o *peer) bool {
	if p.class != o.class {
		return p.class < o.class
	}
	if p.strikes != o.strikes {
		return p.strikes < o.strikes
	}
	return p.seq < o.seq
}

// peer resolves a peer ID; the origin is refused.
func (s *Session) peer(id string) (*peer, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: the origin is not a peer", ErrBadPeer)
	}
	return s.source(id)
}

// insert puts p at its place in s.order.
func (s *Session) insert(p *peer) {
	i := len(s.order)
	for i > 0 && p.before(s.order[i-1]) {
		i--
	}
	s.order = append(s.order, nil)
	copy(s.order[i+1:], s.order[i:])
	s.order[i] = p
	s.posSlot = append(s.posSlot, 0)
	if p.class == LAN {
		s.nLAN++
	}
	s.renumber(i)
}

func (s *Session) unlink(p *peer) {
	i := int(p.pos)
	s.order = append(s.order[:i], s.order[i+1:]...)
	p.pos = noPos
	if p.class == LAN {
		s.nLAN--
	}
	s.renumber(i)
}

func (s *Session) remove(p *peer, cancel bool) {
	s.unlink(p)
	s.dupsChanged()
	for ri := range s.reqs {
		if r := &s.reqs[ri]; r.live && r.src == int32(p.idx) {
			s.release(int32(ri), cancel)
		}
	}
	for w, word := range p.have {
		for word != 0 {
			q := int32(w<<6 + bits.TrailingZeros64(word))
			word &= word - 1
			if st := &s.pcs[q]; p.class == LAN {
				st.lan--
			} else {
				st.wan--
			}
			s.reconcile(q)
		}
	}
	delete(s.peers, p.id)
	s.slots[p.idx] = nil
	s.free = append(s.free, p.idx)
	if p.class == LAN && p.wants && !p.excluded && !p.noShare {
		s.wantersChanged()
	}
}

// strike penalises a peer (at most once a tick) and drops it after
// MaxStrikes in a row.
func (s *Session) strike(p *peer) {
	if p.struck == s.tick {
		return
	}
	p.struck = s.tick
	p.window = max(1, p.window/2)
	s.mark(p)
	if p.strikes+1 >= s.cfg.MaxStrikes {
		s.dropped = append(s.dropped, p.id)
		s.stats.Dropped++
		s.remove(p, true)
		return
	}
	s.unlink(p)
	p.strikes++
	s.insert(p)
}
