package sched

import (
	"fmt"
	"slices"
	"strings"
)

// check recomputes everything the session maintains incrementally (holder
// counts, pools and their buckets, useful counts, what each wanter owes,
// request chains and window counts, service order) from the ground truth
// and returns the first difference.
func check(s *Session) error {
	s.refresh()
	// Peers.
	if !slices.IsSortedFunc(s.order, func(a, b *peer) int {
		if a.before(b) {
			return -1
		}
		if b.before(a) {
			return 1
		}
		return 0
	}) {
		return fmt.Errorf("order not sorted")
	}
	nLAN := 0
	for _, p := range s.order {
		if p.class == LAN {
			nLAN++
		}
		if s.peers[p.id] != p || s.slots[p.idx] != p {
			return fmt.Errorf("peer %s not indexed", p.id)
		}
	}
	if nLAN != s.nLAN || len(s.order) != len(s.peers) {
		return fmt.Errorf("nLAN %d, want %d; %d peers in order, %d in map", s.nLAN, nLAN, len(s.order), len(s.peers))
	}
	var wanters []*peer
	for _, p := range s.order[:s.nLAN] {
		if p.wants && !p.excluded && !p.noShare {
			wanters = append(wanters, p)
		}
	}
	got := slices.Clone(s.wanters)
	byID := func(a, b *peer) int { return strings.Compare(a.id, b.id) }
	slices.SortFunc(got, byID)
	slices.SortFunc(wanters, byID)
	if !slices.Equal(wanters, got) { // the order of the set does not matter
		return fmt.Errorf("wanters %v, want %v", peerIDs(s.wanters), peerIDs(wanters))
	}

	// Requests.
	perPeer := map[int32]int{}
	chains := map[int32]int{}
	live := 0
	for ri, r := range s.reqs {
		if !r.live {
			continue
		}
		live++
		perPeer[r.src]++
		chains[r.q]++
		if r.src >= 0 && s.slots[r.src] == nil {
			return fmt.Errorf("request %d to a removed peer", ri)
		}
	}
	if live != s.out || perPeer[-1] != s.originOut {
		return fmt.Errorf("%d live requests, out=%d; origin %d, originOut=%d", live, s.out, perPeer[-1], s.originOut)
	}
	if len(s.freeReqs)+live != len(s.reqs) {
		return fmt.Errorf("%d free + %d live requests of %d", len(s.freeReqs), live, len(s.reqs))
	}
	for _, p := range s.order {
		if perPeer[int32(p.idx)] != p.out {
			return fmt.Errorf("peer %s: %d requests, out=%d", p.id, perPeer[int32(p.idx)], p.out)
		}
	}
	for q, ri := range s.head {
		n := 0
		seen := map[int32]bool{}
		for i := ri; i >= 0; i = s.reqs[i].next {
			r := s.reqs[i]
			if !r.live || r.q != q || seen[r.src] {
				return fmt.Errorf("piece %d: bad chain at %d: %+v", q, i, r)
			}
			seen[r.src] = true
			n++
		}
		if n != chains[q] {
			return fmt.Errorf("piece %d: chain of %d, %d live requests", q, n, chains[q])
		}
		if n > 1+s.cfg.EndgameDuplicates {
			return fmt.Errorf("piece %d: %d requests", q, n)
		}
	}

	// Pieces.
	held := 0
	useful := map[*peer]int{}
	awaited := map[uint16]int{}
	var sizes [2][]int
	for c := range sizes {
		sizes[c] = make([]int, s.cfg.RarityCap)
	}
	originSize := 0
	for i := range s.n {
		q := int32(i)
		st := s.pcs[q]
		var lan, wan uint16
		for _, p := range s.order {
			if p.has(q) {
				if p.class == LAN {
					lan++
				} else {
					wan++
				}
			}
		}
		if lan != st.lan || wan != st.wan {
			return fmt.Errorf("piece %d: counts lan=%d wan=%d, want %d %d", s.ord.pos(q), st.lan, st.wan, lan, wan)
		}
		pos := s.ord.pos(q)
		if s.ord.rank(pos) != q {
			return fmt.Errorf("order: rank(pos(%d)) = %d", q, s.ord.rank(pos))
		}
		isAlias := s.first != nil && s.first[pos] != pos
		if isAlias != (st.place == placeAlias) {
			return fmt.Errorf("piece %d: alias %v, place %d", pos, isAlias, st.place)
		}
		if _, ok := s.head[q]; ok != (st.place == placeRequested) {
			return fmt.Errorf("piece %d: requested %v, place %d", pos, ok, st.place)
		}
		inBucket := [2]int{-1, -1}
		for c := range s.pools {
			for b := range s.pools[c] {
				if s.pools[c][b].has(q) {
					if inBucket[c] >= 0 {
						return fmt.Errorf("piece %d in two buckets", pos)
					}
					inBucket[c] = b
				}
			}
		}
		want := [2]int{-1, -1}
		switch st.place {
		case placeHeld, placeAlias:
			held++
		case placeRequested:
		case placeLAN, placeWAN, placeOrigin, placeAwait:
			np, owner := s.want(q, true)
			if np != st.place || np == placeAwait && owner != st.owner {
				return fmt.Errorf("piece %d: place %d owner %d, want %d %d", pos, st.place, st.owner, np, owner)
			}
			switch np {
			case placeLAN, placeWAN:
				c, n := LAN, lan
				if np == placeWAN {
					c, n = WAN, wan
				}
				if b := s.bucketOf(n); b != st.bucket {
					return fmt.Errorf("piece %d: bucket %d, want %d", pos, st.bucket, b)
				}
				want[c] = int(st.bucket)
				sizes[c][st.bucket]++
				for _, p := range s.classPeers(c) {
					if p.has(q) {
						useful[p]++
					}
				}
			case placeOrigin:
				originSize++
			case placeAwait:
				awaited[st.owner]++
			}
		default:
			return fmt.Errorf("piece %d: place %d", pos, st.place)
		}
		if inBucket != want {
			return fmt.Errorf("piece %d: in buckets %v, want %v", pos, inBucket, want)
		}
		if s.origin.has(q) != (st.place == placeOrigin) {
			return fmt.Errorf("piece %d: origin pool bit %v, place %d", pos, s.origin.has(q), st.place)
		}
	}
	if held != s.held {
		return fmt.Errorf("held %d, counted %d", s.held, held)
	}
	for c := range sizes {
		for b, n := range sizes[c] {
			if s.pools[c][b].size != n {
				return fmt.Errorf("pool %v bucket %d: size %d, want %d", Class(c), b, s.pools[c][b].size, n)
			}
		}
	}
	if s.origin.size != originSize {
		return fmt.Errorf("origin pool: size %d, want %d", s.origin.size, originSize)
	}
	for _, p := range s.order {
		if p.useful != useful[p] {
			return fmt.Errorf("peer %s: useful %d, want %d", p.id, p.useful, useful[p])
		}
		if p.awaited != awaited[p.idx] {
			return fmt.Errorf("peer %s: awaited %d, want %d", p.id, p.awaited, awaited[p.idx])
		}
		if awaited[p.idx] > 0 && !slices.Contains(s.wanters, p) {
			return fmt.Errorf("pieces awaited from %s, not a wanter", p.id)
		}
		delete(awaited, p.idx)
	}
	if len(awaited) > 0 {
		return fmt.Errorf("pieces awaited from removed peers: %v", awaited)
	}
	return nil
}

func peerIDs(ps []*peer) string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.id)
	}
	return strings.Join(ids, " ")
}
