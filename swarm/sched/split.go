package sched

// The site uplink split. Every node of a site computes the same owner for
// each piece from the same inputs (the piece's position and the IDs of the
// LAN peers fetching the release), so the functions here are part of the
// protocol between nodes: change them only with every node of a fleet.

// idKey is the FNV-1a 64 hash of a peer ID, the per-peer half of Weight.
func idKey(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}

// fmix64 is MurmurHash3's 64-bit finalizer.
func fmix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func weight(key uint64, piece int) uint64 {
	return fmix64(key + uint64(piece)*0x9e3779b97f4a7c15)
}

// Weight is the rendezvous weight of peer id for the piece at position
// piece: fmix64(fnv1a64(id) + piece·0x9E3779B97F4A7C15), where fmix64 is
// MurmurHash3's finalizer and arithmetic wraps at 2^64.
func Weight(piece int, id string) uint64 { return weight(idKey(id), piece) }

// Owner returns which of ids owns piece in the split: the highest Weight,
// equal weights going to the smaller ID. It returns "" for no ids.
func Owner(piece int, ids []string) string {
	best, bestW := "", uint64(0)
	for _, id := range ids {
		if w := Weight(piece, id); best == "" || w > bestW || w == bestW && id < best {
			best, bestW = id, w
		}
	}
	return best
}

// ownerOf returns whether this node owns the piece at position pos among
// itself and the current wanters, or else which wanter does.
func (s *Session) ownerOf(pos int) (mine bool, owner uint16) {
	s.listWanters()
	var best uint64
	var bestID string
	// A node that takes no share stands in only when no wanter shares.
	none := s.cfg.NoShare && len(s.wanters) > 0
	if !none {
		best, bestID = weight(s.selfKey, pos), s.self
	}
	mine = true
	for i, key := range s.wkeys {
		if wt := weight(key, pos); none || wt > best || wt == best && s.wanters[i].id < bestID {
			best, bestID, mine, owner, none = wt, s.wanters[i].id, false, s.wslots[i], false
		}
	}
	return mine, owner
}

// wantersChanged records that the split set changed: a LAN peer joined or
// left it. Listing the set again waits until it is read (listWanters), and
// re-dividing the pieces until the next decision (refresh), so that a
// burst of announcements costs one pass.
func (s *Session) wantersChanged() {
	s.wantersStale = true
	if !s.cfg.NoSplit {
		s.dirty = true
	}
	s.dupsChanged()
}

// listWanters rebuilds s.wanters (and its slots and keys) if the split set
// changed since it was built: once for a burst of announcements (a node
// hears of a whole site at once), before anything reads it. Its order is
// the service order at the time and matters to no reader.
func (s *Session) listWanters() {
	if !s.wantersStale {
		return
	}
	s.wantersStale = false
	s.wanters, s.wslots, s.wkeys = s.wanters[:0], s.wslots[:0], s.wkeys[:0]
	for _, p := range s.order[:s.nLAN] {
		if p.wants && !p.excluded && !p.noShare {
			s.wanters = append(s.wanters, p)
			s.wslots = append(s.wslots, p.idx)
			s.wkeys = append(s.wkeys, idKey(p.id))
		}
	}
}

// refresh re-divides the pieces no LAN peer holds after the split set
// changed: it recomputes the owner of every piece waiting in the WAN or
// origin pool or awaited from a wanter, and recounts what each wanter owes.
func (s *Session) refresh() {
	s.listWanters()
	if !s.dirty {
		return
	}
	s.dirty = false
	for _, p := range s.order {
		p.awaited = 0
		s.awaitedBy[p.idx] = 0
	}
	for i := range s.pcs {
		q := int32(i)
		st := &s.pcs[q]
		switch st.place {
		case placeAwait:
			// Its owner may be gone and its count is rebuilt from zero:
			// forget it without leave's bookkeeping.
			st.place = placeNone
			s.reconcile(q)
		case placeWAN, placeOrigin:
			if np, owner := s.want(q, true); np != st.place {
				s.leave(q)
				s.enter(q, np, owner)
			}
		}
	}
}
