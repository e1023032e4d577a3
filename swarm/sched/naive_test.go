package sched

import (
	"cmp"
	"slices"
)

// naiveNext is the reference picker, written for obviousness and nothing
// else: from the session's ground truth (which pieces it holds, what each
// peer holds, the requests outstanding, each peer's window, strikes and
// age, the wanters and the origin) it computes the requests Next must
// issue, scanning every piece for every choice and recounting holders and
// owners each time. It shares only definitions with the session: its
// random order (rank), Owner and the Config. It does not change s.
func naiveNext(s *Session) []Request {
	cfg := s.cfg
	type npeer struct {
		id      string
		class   Class
		strikes int
		seq     uint64
		window  int
		have    func(pos int) bool
	}
	var peers []*npeer
	for _, p := range s.peers {
		p := p
		peers = append(peers, &npeer{p.id, p.class, p.strikes, p.seq, p.window,
			func(pos int) bool { return hasBit(p.have, s.ord.rank(pos)) }})
	}
	slices.SortFunc(peers, func(a, b *npeer) int {
		return cmp.Or(cmp.Compare(a.class, b.class), cmp.Compare(a.strikes, b.strikes), cmp.Compare(a.seq, b.seq))
	})
	rank := func(pos int) int32 { return s.ord.rank(pos) }
	held := func(pos int) bool {
		pl := s.pcs[rank(pos)].place
		return pl == placeHeld || pl == placeAlias
	}
	type key struct {
		pos int
		src string
	}
	nreq := map[int]int{}
	asked := map[key]bool{}
	out := map[string]int{}
	originOut, total := 0, 0
	for _, r := range s.reqs {
		if !r.live {
			continue
		}
		req := s.request(r)
		nreq[req.Piece]++
		asked[key{req.Piece, req.Source}] = true
		if req.Class == Origin {
			originOut++
		} else {
			out[req.Source]++
		}
		total++
	}
	var wanters []string
	for _, p := range peers {
		if sp := s.peers[p.id]; p.class == LAN && sp.wants && !sp.excluded && !sp.noShare {
			wanters = append(wanters, p.id)
		}
	}
	if !cfg.NoShare || len(wanters) == 0 {
		wanters = append(wanters, s.self) // a node that takes no share stands in only for nobody
	}
	holders := func(pos int, c Class) int {
		n := 0
		for _, p := range peers {
			if p.class == c && p.have(pos) {
				n++
			}
		}
		return n
	}
	// A piece whose owner stalled on it is this node's (a fact of the
	// session's history, like its strikes).
	mine := func(pos int) bool { return cfg.NoSplit || s.pcs[rank(pos)].ours || Owner(pos, wanters) == s.self }
	// placeOf is the pool a piece neither held nor requested is in.
	placeOf := func(pos int) string {
		switch {
		case held(pos) || nreq[pos] > 0:
			return ""
		case holders(pos, LAN) > 0:
			return "lan"
		case !mine(pos):
			return "await"
		case holders(pos, WAN) > 0 && !(cfg.OriginFirst && s.originUp):
			return "wan"
		}
		return "origin"
	}
	// The site origin window is shared with the wanters that still owe
	// this node pieces (own at least one it awaits).
	originWindow := cfg.OriginWindow
	if cfg.SiteOriginWindow > 0 && !cfg.NoSplit {
		owing := map[string]bool{}
		for pos := range s.n {
			if placeOf(pos) == "await" {
				owing[Owner(pos, wanters)] = true
			}
		}
		nw := len(owing)
		originWindow = min(cfg.OriginWindow, max(2, (cfg.SiteOriginWindow+nw)/(1+nw)))
	}
	bucket := func(pos int, c Class) int {
		if cfg.Strategy == Random {
			return 0
		}
		return min(holders(pos, c), cfg.RarityCap)
	}
	globalFree := func() bool { return cfg.MaxOutstanding == 0 || total < cfg.MaxOutstanding }
	var reqs []Request
	issue := func(pos int, p *npeer) {
		r := Request{Piece: pos, Class: Origin}
		if p != nil {
			r = Request{Piece: pos, Source: p.id, Class: p.class}
			out[p.id]++
		} else {
			originOut++
		}
		nreq[pos]++
		asked[key{pos, r.Source}] = true
		total++
		reqs = append(reqs, r)
	}
	// normal returns the piece p should be asked for: in its class's pool,
	// held by p, fewest holders (capped) then first in the random order.
	normal := func(p *npeer) int {
		best := -1
		for pos := range s.n {
			if placeOf(pos) != p.class.String() || !p.have(pos) {
				continue
			}
			if best < 0 || bucket(pos, p.class) < bucket(best, p.class) ||
				bucket(pos, p.class) == bucket(best, p.class) && rank(pos) < rank(best) {
				best = pos
			}
		}
		return best
	}
	// duplicate returns the endgame piece p should be asked for too.
	duplicate := func(p *npeer) int {
		best := -1
		for pos := range s.n {
			if held(pos) || nreq[pos] == 0 || nreq[pos] > cfg.EndgameDuplicates || asked[key{pos, p.id}] || !p.have(pos) {
				continue
			}
			switch {
			case holders(pos, LAN) > 0:
				if p.class != LAN {
					continue
				}
			case p.class != WAN || holders(pos, WAN) == 0 || !mine(pos) || cfg.OriginFirst && s.originUp:
				continue
			}
			if best < 0 || nreq[pos] < nreq[best] || nreq[pos] == nreq[best] && rank(pos) < rank(best) {
				best = pos
			}
		}
		return best
	}
	fill := func(c Class, pick func(*npeer) int) {
		for {
			progressed := false
			for _, p := range peers {
				if p.class != c || p.window-out[p.id] <= 0 {
					continue
				}
				if !globalFree() {
					return
				}
				if pos := pick(p); pos >= 0 {
					issue(pos, p)
					progressed = true
				}
			}
			if !progressed {
				return
			}
		}
	}
	fill(LAN, normal)
	fill(WAN, normal)
	for s.originUp && originOut < originWindow && globalFree() {
		best := -1
		for pos := range s.n {
			if placeOf(pos) == "origin" && (best < 0 || rank(pos) < rank(best)) {
				best = pos
			}
		}
		if best < 0 {
			break
		}
		issue(best, nil)
	}
	missing := 0
	for pos := range s.n {
		if !held(pos) {
			missing++
		}
	}
	if !cfg.NoEndgame && missing > 0 && missing <= cfg.EndgameThreshold {
		fill(LAN, duplicate)
		fill(WAN, duplicate)
	}
	return reqs
}
