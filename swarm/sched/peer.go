package sched

import (
	"fmt"
	"math/bits"
)

// peer is what a session knows of one peer.
type peer struct {
	id      string
	class   Class
	idx     uint16 // slot in Session.slots
	seq     uint64 // order of AddPeer
	key     uint64 // idKey(id)
	have    []uint64
	useful  int // pieces in its class's pool it holds
	out     int // requests outstanding
	window  int
	strikes int
	struck  int64 // tick of the last strike
	// lastRecv is the tick of its last block; requests stall only when
	// the peer delivered nothing for StallTicks.
	lastRecv int64

	// The split.
	wants    bool
	noShare  bool  // takes no share: it cannot reach the origin
	excluded bool  // left out for stalling on its share
	awaited  int   // pieces this node awaits from it
	progress int64 // tick it last brought a new piece into the site, or owed nothing
}

func (p *peer) has(q int32) bool { return hasBit(p.have, q) }
func (p *peer) free() int        { return p.window - p.out }

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
	if p.class == LAN {
		s.nLAN++
	}
}

func (s *Session) unlink(p *peer) {
	for i, o := range s.order {
		if o == p {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	if p.class == LAN {
		s.nLAN--
	}
}

func (s *Session) remove(p *peer, cancel bool) {
	s.unlink(p)
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
