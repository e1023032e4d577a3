package sched

import (
	"cmp"
	"math/bits"
	"slices"
)

// Next returns what to do now: the cancels and drops the events since the
// last call produced, and new requests filling the free windows. The
// caller must carry out all of it; the requests count as outstanding from
// now on.
//
// Requests are chosen in rounds, one per source and round, so free windows
// fill evenly: LAN peers first, then WAN peers (each in service order:
// fewer strikes first, then the order they were added), then the origin.
// A source is asked only for pieces in its class's pool (see the package
// comment), the rarest first.
func (s *Session) Next() Actions {
	s.refresh()
	a := &s.acts
	a.Request = a.Request[:0]
	a.Cancel, s.cancels = s.cancels, a.Cancel[:0]
	a.Dropped, s.dropped = s.dropped, a.Dropped[:0]
	s.fill(LAN)
	s.fill(WAN)
	if s.originUp {
		for s.originOut < s.originWindow() && s.globalFree() {
			q := s.origin.first(nil)
			if q < 0 {
				break
			}
			s.issue(q, nil)
		}
	}
	if missing := s.n - s.held; !s.cfg.NoEndgame && missing > 0 && missing <= s.cfg.EndgameThreshold {
		if !s.dupsIdle && s.duplicates() {
			s.fillDuplicates(LAN)
			s.fillDuplicates(WAN)
		}
		// The fills kept s.dups up to date with their own requests, and
		// asked for everything they could.
		s.dupsValid, s.dupsIdle = true, true
	}
	return *a
}

// originWindow is how many origin requests this node may have
// outstanding now (Config.OriginWindow, SiteOriginWindow).
//
// The site window is shared only with the wanters that still owe this node
// pieces. A wanter that owes nothing has no uplink work this node knows of:
// a piece it owns and this node lacks is either held on the LAN (so it
// fetches that from the LAN too) or awaited from it. The split divides the
// pieces evenly but the nodes fetch at different speeds, so near the end
// most of them have finished their shares while one still has many pieces
// left; that one then takes the whole site window instead of leaving the
// uplink idle.
func (s *Session) originWindow() int {
	if s.cfg.SiteOriginWindow == 0 || s.cfg.NoSplit {
		return s.cfg.OriginWindow
	}
	owing := 0
	for _, slot := range s.wslots {
		if s.awaitedBy[slot] > 0 {
			owing++
		}
	}
	share := (s.cfg.SiteOriginWindow + owing) / (1 + owing)
	return min(s.cfg.OriginWindow, max(2, share))
}

func (s *Session) globalFree() bool {
	return s.cfg.MaxOutstanding == 0 || s.out < s.cfg.MaxOutstanding
}

// classRange is the positions in s.order of the peers of class c.
func (s *Session) classRange(c Class) (lo, hi int) {
	if c == LAN {
		return 0, s.nLAN
	}
	return s.nLAN, len(s.order)
}

// gather returns the peers of class c whose bits are set in set, in
// service order.
func (s *Session) gather(set []uint64, c Class) []*peer {
	act := s.scratch[:0]
	lo, hi := s.classRange(c)
	for w := lo >> 6; w<<6 < hi; w++ {
		x := set[w]
		if w<<6 < lo {
			x &^= 1<<(lo&63) - 1
		}
		for x != 0 {
			k := w<<6 + bits.TrailingZeros64(x)
			if k >= hi {
				break
			}
			act = append(act, s.order[k])
			x &= x - 1
		}
	}
	return act
}

// fill asks the peers of class c, in rounds, for what pick chooses for
// them, until their windows are full or there is nothing more to choose.
// Only the ready peers (a free window and a useful piece) can be given
// anything; the others' picks would find nothing.
func (s *Session) fill(c Class) {
	act := s.gather(s.ready, c)
	for len(act) > 0 && s.globalFree() {
		k := 0
		for _, p := range act {
			if !s.globalFree() {
				break
			}
			q := s.pick(p)
			if q < 0 {
				continue // nothing for p now, nor later in this call
			}
			s.issue(q, p)
			if p.free() > 0 {
				act[k] = p
				k++
			}
		}
		act = act[:k]
	}
	s.scratch = act[:0]
}

// pick returns the piece p should be asked for: the first, in rarity then
// random order, of its class's pool that it holds; or -1.
func (s *Session) pick(p *peer) int32 {
	if p.useful == 0 {
		return -1
	}
	for i := range s.pools[p.class] {
		if q := s.pools[p.class][i].first(p.have); q >= 0 {
			return q
		}
	}
	return -1
}

// dupCand is a piece the endgame may ask of one more source: outstanding,
// with at most EndgameDuplicates requests.
type dupCand struct {
	q     int32
	head  int32 // its newest request
	n     int32 // its requests outstanding
	class Class // of the peers that may be asked (its best class), or Origin for none
}

func (d *dupCand) before(o *dupCand) bool {
	return d.n < o.n || d.n == o.n && d.q < o.q
}

// duplicates collects the endgame's candidates in s.dups, fewest requests
// first, then in random order (as pickDuplicate takes them), and reports
// whether there are any.
func (s *Session) duplicates() bool {
	if s.dupsValid {
		return len(s.dups) > 0
	}
	s.dups = s.dups[:0]
	s.dupClass = [2]bool{}
	for ri := range s.reqs {
		r := &s.reqs[ri]
		if !r.live || !r.head {
			continue
		}
		n := int32(0)
		for i := int32(ri); i >= 0; i = s.reqs[i].next {
			n++
		}
		if n > int32(s.cfg.EndgameDuplicates) {
			continue
		}
		c := s.dupClassOf(r.q)
		if c == Origin {
			continue
		}
		s.dupClass[c] = true
		s.dups = append(s.dups, dupCand{q: r.q, head: int32(ri), n: n, class: c})
	}
	if len(s.dups) == 0 {
		return false
	}
	slices.SortFunc(s.dups, func(a, b dupCand) int {
		return cmp.Or(cmp.Compare(a.n, b.n), cmp.Compare(a.q, b.q))
	})
	return true
}

// dupsChanged records that s.dups may no longer be what duplicates
// would collect.
func (s *Session) dupsChanged() {
	s.dupsValid, s.dupsIdle = false, false
}

// dupClassOf is the class of the peers an outstanding q may also be asked
// of (see bestClass), or Origin if none: no peer of any other class can
// be, and a WAN peer holding q means some WAN peer holds it.
func (s *Session) dupClassOf(q int32) Class {
	st := &s.pcs[q]
	switch {
	case st.lan > 0:
		return LAN
	case st.wan == 0:
		return Origin
	case s.bestClass(q, WAN):
		return WAN
	}
	return Origin
}

// fillDuplicates is fill for the endgame: it asks the peers of class c
// with a free window, in rounds, for what pickDuplicate chooses for them.
func (s *Session) fillDuplicates(c Class) {
	if !s.dupClass[c] {
		return
	}
	act := s.dupTakers(c)
	for len(act) > 0 && s.globalFree() && len(s.dups) > 0 {
		k := 0
		for _, p := range act {
			if !s.globalFree() {
				break
			}
			i := s.pickDuplicate(p)
			if i < 0 {
				continue // nothing for p now, nor later in this call
			}
			d := &s.dups[i]
			d.head = s.issue(d.q, p)
			d.n++
			s.requeue(i)
			if p.free() > 0 {
				act[k] = p
				k++
			}
		}
		act = act[:k]
	}
	s.scratch = act[:0]
}

// dupTakers returns the peers of class c with a free window that hold
// one of its candidates, in service order (in s.scratch). The others'
// picks would find nothing; it reads their bitmaps, not the peers.
func (s *Session) dupTakers(c Class) []*peer {
	masks := s.dupMasks[:0]
next:
	for _, d := range s.dups {
		if d.class != c {
			continue
		}
		w, bit := d.q>>6, uint64(1)<<(d.q&63)
		for i := range masks {
			if masks[i].w == w {
				masks[i].bits |= bit
				continue next
			}
		}
		masks = append(masks, wordMask{w, bit})
	}
	s.dupMasks = masks
	act := s.scratch[:0]
	if len(masks) == 0 {
		return act
	}
	lo, hi := s.classRange(c)
	for w := lo >> 6; w<<6 < hi; w++ {
		x := s.room[w]
		if w<<6 < lo {
			x &^= 1<<(lo&63) - 1
		}
		for ; x != 0; x &= x - 1 {
			k := w<<6 + bits.TrailingZeros64(x)
			if k >= hi {
				break
			}
			i := int(s.posSlot[k])
			for _, m := range masks {
				if s.holds(i, int(m.w), m.bits) {
					act = append(act, s.order[k])
					break
				}
			}
		}
	}
	return act
}

// wordMask is some bits of one word of a bitmap.
type wordMask struct {
	w    int32
	bits uint64
}

// requeue moves s.dups[i], which got one more request, to its place, or
// drops it once it may get no more.
func (s *Session) requeue(i int) {
	if s.dups[i].n > int32(s.cfg.EndgameDuplicates) {
		s.dups = slices.Delete(s.dups, i, i+1)
		return
	}
	for ; i+1 < len(s.dups) && s.dups[i+1].before(&s.dups[i]); i++ {
		s.dups[i], s.dups[i+1] = s.dups[i+1], s.dups[i]
	}
}

// pickDuplicate returns which of s.dups p should be asked for as well: a
// piece already outstanding elsewhere, with fewer than EndgameDuplicates
// extra requests, that p holds, not asked of p yet, and whose best class
// is p's (a LAN peer holds it, or, for a WAN peer, none does and the
// piece is this node's to fetch). Fewest requests first, then random
// order; -1 if none.
func (s *Session) pickDuplicate(p *peer) int {
	src := int32(p.idx)
next:
	for i := range s.dups {
		d := &s.dups[i]
		if d.class != p.class || !p.has(d.q) {
			continue
		}
		for ri := d.head; ri >= 0; ri = s.reqs[ri].next {
			if s.reqs[ri].src == src {
				continue next
			}
		}
		return i
	}
	return -1
}

// bestClass reports whether class c, of a peer holding q, is where q would
// be fetched from if it were not outstanding.
func (s *Session) bestClass(q int32, c Class) bool {
	if s.pcs[q].lan > 0 {
		return c == LAN
	}
	// A WAN peer holds it and no LAN peer does: is it ours to fetch, and
	// from the WAN?
	if s.cfg.OriginFirst && s.originUp {
		return false
	}
	if s.cfg.NoSplit {
		return true
	}
	mine, _ := s.ownerOf(s.ord.pos(q))
	return mine
}
