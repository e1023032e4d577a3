package flow

// Settle recomputes the rates after the changes made since the last call,
// at time now (see the package comment for which flows it recomputes and
// why the result is exact). Flows whose rate changes have their remaining
// bytes brought up to date and their finish time moved.
func (n *Network) Settle(now int64) {
	if !n.pending {
		return
	}
	n.pending = false
	n.epoch++
	n.stats.Settles++
	n.cset, n.visited, n.stack = n.cset[:0], n.visited[:0], n.stack[:0]
	for _, id := range n.added {
		if n.flows[id].live {
			n.addC(id)
		}
	}
	n.added = n.added[:0]
	for _, l := range n.seeds {
		lk := &n.links[l]
		if lk.capSet {
			// A link whose capacity changed may change every flow on it.
			lk.capSet = false
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
}

// addC puts a flow in C; the links on its path are visited by closure.
func (n *Network) addC(id FlowID) {
	f := &n.flows[id]
	if f.inC == n.epoch {
		return
	}
	f.inC = n.epoch
	n.cset = append(n.cset, id)
	n.stack = append(n.stack, f.path...)
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
		f := &n.flows[id]
		f.frozen = false
		for _, l := range f.path {
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
			n.lpush(heapEntry{key: max(lk.resid, 0) / float64(lk.n), link: l, ver: lk.ver})
		}
	}
	n.bottled = n.bottled[:0]
	for len(n.lheap) > 0 {
		e := n.lpop()
		lk := &n.links[e.link]
		if e.ver != lk.ver || lk.n == 0 {
			continue
		}
		lvl := max(lk.resid, 0) / float64(lk.n)
		lk.fillLevel = lvl
		n.bottled = append(n.bottled, e.link)
		for _, id := range lk.cflows {
			f := &n.flows[id]
			if f.frozen {
				continue
			}
			f.frozen, f.newRate, f.newBn = true, lvl, e.link
			for _, m := range f.path {
				mk := &n.links[m]
				mk.resid -= lvl
				mk.n--
				if m != e.link && mk.n > 0 {
					mk.ver++
					n.lpush(heapEntry{key: max(mk.resid, 0) / float64(mk.n), link: m, ver: mk.ver})
				}
			}
		}
	}
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
			if f := &n.flows[g]; f.inC != n.epoch && f.rate > lvl+tolerance(lvl) {
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
		// By the first rule every flow bottlenecked here is in C.
		n.links[l].bn = n.links[l].bn[:0]
	}
	for _, id := range n.cset {
		f := &n.flows[id]
		bk := &n.links[f.newBn]
		f.bn, f.bnAt = f.newBn, int32(len(bk.bn))
		bk.bn = append(bk.bn, id)
		bk.level = bk.fillLevel
		if f.newRate == f.rate {
			continue
		}
		f.remaining, f.updated = n.Remaining(now, id), now
		d := f.newRate - f.rate
		for _, l := range f.path {
			n.links[l].load += d
		}
		f.rate = f.newRate
		if f.remaining > 0 || f.hidx >= 0 {
			n.schedule(id)
		}
	}
}
