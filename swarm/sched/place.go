package sched

// Where a piece is. Every piece is in exactly one place; the pools are the
// pieces that can be asked for now, each from one class.
const (
	placeNone      uint8 = iota // transient, inside a step
	placeHeld                   // held locally
	placeAlias                  // the same chunk as an earlier position (NewDedup)
	placeRequested              // outstanding at one or more sources
	placeLAN                    // a LAN peer holds it
	placeWAN                    // no LAN peer, a WAN peer holds it, ours to fetch
	placeOrigin                 // no peer holds it, ours to fetch
	placeAwait                  // no LAN peer holds it and a LAN wanter owns it
)

// pieceState is what a session knows of one piece, indexed by its rank in
// the random order.
type pieceState struct {
	lan, wan uint16 // holders by class
	owner    uint16 // the wanter's slot, in placeAwait
	place    uint8
	bucket   uint8 // rarity bucket, in placeLAN and placeWAN
	// ours: this node fetches the piece whoever's share it is, because
	// its owner stalled on it: the owner holds it, so it will not
	// announce it again, and awaiting it would wait for ever.
	ours bool
}

// setHave records that p holds q.
func (s *Session) setHave(p *peer, q int32) {
	if p.has(q) {
		return
	}
	// p's bit counts in the pool q is in now; enter and leave keep it right
	// from here on.
	if s.inPool(q, p.class) {
		p.useful++
		s.mark(p)
	}
	p.have[q>>6] |= 1 << (q & 63)
	st := &s.pcs[q]
	if st.place == placeRequested {
		s.dupsIdle = false // p may be asked for it too
		if p.class == LAN && st.lan == 0 || p.class == WAN && st.wan == 0 {
			s.dupsChanged() // its endgame class may change
		}
	}
	if p.class == WAN {
		st.wan++
	} else {
		if st.lan == 0 && st.place != placeHeld && st.place != placeAlias {
			// p brought a piece this node lacks into the site.
			s.progress[p.idx] = s.tick
			if p.excluded && p.wants {
				p.excluded = false
				s.stats.Reinstated++
				s.wantersChanged()
			}
		}
		st.lan++
	}
	s.holder = p
	s.reconcile(q)
	s.holder = nil
}

// clearHave records that p does not hold q.
func (s *Session) clearHave(p *peer, q int32) {
	if !p.has(q) {
		return
	}
	if s.inPool(q, p.class) {
		p.useful--
		s.mark(p)
	}
	p.have[q>>6] &^= 1 << (q & 63)
	st := &s.pcs[q]
	if p.class == WAN {
		st.wan--
	} else {
		st.lan--
	}
	if st.place == placeRequested && (p.class == LAN && st.lan == 0 || p.class == WAN && st.wan == 0) {
		s.dupsChanged() // its endgame class may change
	}
	s.reconcile(q)
}

func (s *Session) inPool(q int32, c Class) bool {
	pl := s.pcs[q].place
	return pl == placeLAN && c == LAN || pl == placeWAN && c == WAN
}

// want says where q, neither held nor requested, belongs. Unless fresh, an
// owner computed before is reused (refresh recomputes them all after the
// split set changes).
func (s *Session) want(q int32, fresh bool) (uint8, uint16) {
	st := &s.pcs[q]
	if st.lan > 0 {
		return placeLAN, 0
	}
	if !s.cfg.NoSplit {
		mine, owner := true, uint16(0)
		switch {
		case st.ours:
		case !fresh && (st.place == placeWAN || st.place == placeOrigin):
		case !fresh && st.place == placeAwait:
			mine, owner = false, st.owner
		default:
			mine, owner = s.ownerOf(s.ord.pos(q))
		}
		if !mine {
			return placeAwait, owner
		}
	}
	if st.wan > 0 && !(s.cfg.OriginFirst && s.originUp) {
		return placeWAN, 0
	}
	return placeOrigin, 0
}

// bucketOf is the rarity bucket of a piece with count holders.
func (s *Session) bucketOf(count uint16) uint8 {
	if s.cfg.Strategy == Random {
		return 0
	}
	return uint8(min(int(count), s.cfg.RarityCap) - 1)
}

// reconcile moves q to where it belongs after its holders changed.
func (s *Session) reconcile(q int32) {
	st := &s.pcs[q]
	switch st.place {
	case placeHeld, placeAlias, placeRequested:
		return
	}
	np, owner := s.want(q, false)
	if np == st.place {
		switch np {
		case placeLAN, placeWAN:
			c, n := LAN, st.lan
			if np == placeWAN {
				c, n = WAN, st.wan
			}
			if b := s.bucketOf(n); b != st.bucket {
				s.pools[c][st.bucket].remove(q)
				s.pools[c][b].add(q, s.words)
				st.bucket = b
			}
			return
		case placeOrigin:
			return
		case placeAwait:
			if owner == st.owner {
				return
			}
		}
	}
	s.leave(q)
	s.enter(q, np, owner)
}

// classPeers are the peers of class c, in service order.
func (s *Session) classPeers(c Class) []*peer {
	if c == LAN {
		return s.order[:s.nLAN]
	}
	return s.order[s.nLAN:]
}

// addUseful adds d to the useful count of the peers of class c that hold
// q. It finds them in the bitmaps, without reading the other peers, and
// stops once it found as many as q's count of holders of class c (which
// is never below the number in s.order), starting with s.holder if that
// is one.
func (s *Session) addUseful(q int32, c Class, d int) {
	st := &s.pcs[q]
	left := int(st.lan)
	if c == WAN {
		left = int(st.wan)
	}
	skip := -1
	if h := s.holder; h != nil && h.class == c && h.pos != noPos && h.has(q) {
		s.bump(h, int(h.pos), d)
		skip = int(h.pos)
		left--
	}
	lo, hi := s.classRange(c)
	w, bit := int(q>>6), uint64(1)<<(q&63)
	for k := lo; k < hi && left > 0; k++ {
		if i := int(s.posSlot[k]); s.holds(i, w, bit) && k != skip {
			s.bump(s.slots[i], k, d)
			left--
		}
	}
}

// bump adds d to the useful count of p, at position k.
func (s *Session) bump(p *peer, k int, d int) {
	p.useful += d
	if p.useful == 0 || p.useful == d {
		s.markAt(k, p)
	}
}

// leave takes q out of its place.
func (s *Session) leave(q int32) {
	st := &s.pcs[q]
	switch st.place {
	case placeLAN, placeWAN:
		c := LAN
		if st.place == placeWAN {
			c = WAN
		}
		s.pools[c][st.bucket].remove(q)
		s.addUseful(q, c, -1)
	case placeOrigin:
		s.origin.remove(q)
	case placeAwait:
		if o := s.slots[st.owner]; o != nil {
			o.awaited--
			s.awaitedBy[st.owner]--
		}
	}
	st.place = placeNone
}

// enter puts q, out of any place, into place np.
func (s *Session) enter(q int32, np uint8, owner uint16) {
	st := &s.pcs[q]
	st.place = np
	switch np {
	case placeLAN, placeWAN:
		c, n := LAN, st.lan
		if np == placeWAN {
			c, n = WAN, st.wan
		}
		st.bucket = s.bucketOf(n)
		s.pools[c][st.bucket].add(q, s.words)
		s.addUseful(q, c, +1)
	case placeOrigin:
		s.origin.add(q, s.words)
	case placeAwait:
		st.owner = owner
		if o := s.slots[owner]; o != nil {
			o.awaited++
			s.awaitedBy[owner]++
		}
	}
}
