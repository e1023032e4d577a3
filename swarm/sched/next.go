package sched

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
	s.fill(s.order[:s.nLAN], false)
	s.fill(s.order[s.nLAN:], false)
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
		s.fill(s.order[:s.nLAN], true)
		s.fill(s.order[s.nLAN:], true)
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
	for _, w := range s.wanters {
		if w.awaited > 0 {
			owing++
		}
	}
	share := (s.cfg.SiteOriginWindow + owing) / (1 + owing)
	return min(s.cfg.OriginWindow, max(2, share))
}

func (s *Session) globalFree() bool {
	return s.cfg.MaxOutstanding == 0 || s.out < s.cfg.MaxOutstanding
}

// fill asks the peers, in rounds, for what pick (or, in the endgame,
// pickDuplicate) chooses for them, until their windows are full or there
// is nothing more to choose.
func (s *Session) fill(peers []*peer, duplicates bool) {
	act := s.scratch[:0]
	for _, p := range peers {
		if p.free() > 0 {
			act = append(act, p)
		}
	}
	for len(act) > 0 && s.globalFree() {
		k := 0
		for _, p := range act {
			if !s.globalFree() {
				break
			}
			var q int32
			if duplicates {
				q = s.pickDuplicate(p)
			} else {
				q = s.pick(p)
			}
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

// pickDuplicate returns the endgame piece p should be asked for as well:
// one already outstanding elsewhere, with fewer than EndgameDuplicates
// extra requests, that p holds, not asked of p yet, and whose best class
// is p's (a LAN peer holds it, or, for a WAN peer, none does and the
// piece is this node's to fetch). Fewest requests first, then random
// order; -1 if none.
func (s *Session) pickDuplicate(p *peer) int32 {
	best, bestN := int32(-1), 0
	for ri := range s.reqs {
		r := &s.reqs[ri]
		if !r.live || s.head[r.q] != int32(ri) || !p.has(r.q) {
			continue
		}
		n, asked := 0, false
		for i := int32(ri); i >= 0; i = s.reqs[i].next {
			n++
			asked = asked || s.reqs[i].src == int32(p.idx)
		}
		if asked || n > s.cfg.EndgameDuplicates || best >= 0 && (n > bestN || n == bestN && r.q > best) {
			continue
		}
		if !s.bestClass(r.q, p.class) {
			continue
		}
		best, bestN = r.q, n
	}
	return best
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
