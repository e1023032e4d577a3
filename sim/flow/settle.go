package flow

import "math"

// Settle recomputes the rates after the changes made since the last call,
// at time now (see the package comment for which flows it recomputes and
// why the result is exact). Flows whose rate changes have their remaining
// bytes brought up to date and their finish time moved.
func (n *Network) Settle(now int64) {
	// A forced link's recomputation can push another held link past ε,
	// and so on; no bound on that chain is proven (at most 5 passes were
	// seen), so after maxHeldPasses the passes hold nothing: they are
	// exact, and force nothing more.
	for pass := 0; n.pending; pass++ {
		n.noHold = pass >= maxHeldPasses
		n.settle(now)
	}
	n.noHold = false
}

// maxHeldPasses bounds the passes of one Settle that may hold levels.
const maxHeldPasses = 8

// settle is one recomputation; with a precision, one whose held links
// drifted too far asks for another (pending) that recomputes them.
func (n *Network) settle(now int64) {
	n.pending = false
	n.epoch++
	n.stats.Settles++
	n.cset, n.visited, n.stack = n.cset[:0], n.visited[:0], n.stack[:0]
	for _, id := range n.added {
		if n.fl(id).live {
			n.addC(id)
		}
	}
	n.added = n.added[:0]
	for _, l := range n.seeds {
		lk := &n.links[l]
		if lk.capSet || lk.force {
			// A link whose capacity changed may change every flow on it,
			// and so may a held link's level that drifted.
			lk.capSet, lk.force = false, false
			lk.exact = n.epoch
			for _, g := range lk.flows {
				n.addC(g)
			}
		}
		n.stack = append(n.stack, l)
	}
	n.seeds = n.seeds[:0]
	n.closure()
	for {
		n.stats.Rounds++
		n.fill()
		if !n.expand() {
			break
		}
		n.closure()
	}
	n.commit(now)
	n.stats.Recomputed += int64(len(n.cset))
	for _, l := range n.holding {
		lk := &n.links[l]
		n.stats.Held++
		if math.Abs(lk.load-lk.cap) > n.eps*lk.cap+tolerance(lk.cap) {
			lk.force = true
			n.seeds = append(n.seeds, l)
			n.pending = true
			n.stats.Forced++
		}
	}
	n.holding = n.holding[:0]
}

// addC puts a flow in C; the links on its path are visited by closure.
func (n *Network) addC(id FlowID) {
	f := n.fl(id)
	if f.inC == n.epoch {
		return
	}
	f.inC = n.epoch
	n.cset = append(n.cset, id)
	n.stack = append(n.stack, f.path()...)
}

// closure visits the links on C's paths: every flow bottlenecked at a
// visited link joins C (the first rule).
func (n *Network) closure() {
	for len(n.stack) > 0 {
		l := n.stack[len(n.stack)-1]
		n.stack = n.stack[:len(n.stack)-1]
		lk := &n.links[l]
		if lk.visit == n.epoch {
			continue
		}
		lk.visit = n.epoch
		n.visited = append(n.visited, l)
		if n.eps > 0 && !n.noHold && lk.exact != n.epoch && len(lk.bn) >= n.minGroup {
			// Precision: the flows bottlenecked here keep its level; a
			// flow of C crossing it gets at most that level.
			lk.held = n.epoch
			n.holding = append(n.holding, l)
			continue
		}
		for _, g := range lk.bn {
			n.addC(g)
		}
	}
}

// fill runs progressive filling over C: every visited link offers what
// the flows outside C leave of it; the link with the least share per
// unfrozen flow of C freezes those flows at that share, and so on.
func (n *Network) fill() {
	for _, l := range n.visited {
		lk := &n.links[l]
		lk.resid = lk.cap - lk.load
		lk.cflows = lk.cflows[:0]
		lk.n = 0
	}
	for _, id := range n.cset {
		f := n.fl(id)
		f.frozen = false
		for _, l := range f.path() {
			lk := &n.links[l]
			lk.resid += f.rate
			lk.cflows = append(lk.cflows, id)
			lk.n++
		}
	}
	n.lheap = n.lheap[:0]
	for _, l := range n.visited {
		if lk := &n.links[l]; lk.n > 0 {
			lk.ver++
			n.lpush(heapEntry{key: n.share(lk), link: l, ver: lk.ver})
		}
	}
	n.bottled = n.bottled[:0]
	for len(n.lheap) > 0 {
		e := n.lpop()
		lk := &n.links[e.link]
		if e.ver != lk.ver || lk.n == 0 {
			continue
		}
		lvl := n.share(lk)
		lk.fillLevel = lvl
		n.bottled = append(n.bottled, e.link)
		for _, id := range lk.cflows {
			f := n.fl(id)
			if f.frozen {
				continue
			}
			f.frozen, f.newRate, f.newBn = true, lvl, e.link
			for _, m := range f.path() {
				mk := &n.links[m]
				mk.resid -= lvl
				mk.n--
				if m != e.link && mk.n > 0 && mk.held != n.epoch {
					mk.ver++
					n.lpush(heapEntry{key: n.share(mk), link: m, ver: mk.ver})
				}
			}
		}
	}
}

// share is what a link offers each unfrozen flow of C: an equal part of
// what is left of it, or, for a held link, its level.
func (n *Network) share(lk *link) float64 {
	if lk.held == n.epoch {
		return lk.level
	}
	return max(lk.resid, 0) / float64(lk.n)
}

// expand applies the second rule: a flow outside C on a link that
// bottlenecks flows of C at level λ must not have more than λ. Flows
// outside C on a link that was a bottleneck before have at most its old
// level (they are bottlenecked elsewhere, where they have the most), so
// such a link needs no look unless its level fell.
func (n *Network) expand() bool {
	grew := false
	for _, l := range n.bottled {
		lk := &n.links[l]
		lvl := lk.fillLevel
		if len(lk.bn) > 0 && lvl >= lk.level-tolerance(lk.level) {
			continue
		}
		for _, g := range lk.flows {
			if f := n.fl(g); f.inC != n.epoch && f.rate > lvl+tolerance(lvl) {
				n.addC(g)
				grew = true
			}
		}
	}
	return grew
}

// tolerance is how far apart two rates near r may be and still count as
// equal: sums of floating-point rates are not exact.
func tolerance(r float64) float64 { return 1e-9*r + 1e-9 }

// commit installs the rates and bottlenecks of C.
func (n *Network) commit(now int64) {
	for _, l := range n.visited {
		// By the first rule every flow bottlenecked here is in C (but
		// for a held link's).
		if lk := &n.links[l]; lk.held != n.epoch {
			lk.bn = lk.bn[:0]
		}
	}
	if len(n.holding) > 0 {
		for _, id := range n.cset {
			if f := n.fl(id); f.bn >= 0 && n.links[f.bn].held == n.epoch {
				n.unBottle(id)
			}
		}
	}
	for _, id := range n.cset {
		f := n.fl(id)
		bk := &n.links[f.newBn]
		f.bn, f.bnAt = f.newBn, int32(len(bk.bn))
		bk.bn = append(bk.bn, id)
		bk.level = bk.fillLevel
		if f.newRate == f.rate {
			continue
		}
		f.remaining, f.updated = n.Remaining(now, id), now
		d := f.newRate - f.rate
		for _, l := range f.path() {
			n.links[l].load += d
		}
		f.rate = f.newRate
		if f.remaining > 0 || f.hidx >= 0 {
			n.schedule(id)
		}
	}
}
