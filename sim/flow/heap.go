package flow

// heapEntry is a link's share per unfrozen flow during a fill; entries
// whose version is stale are skipped when popped.
type heapEntry struct {
	key  float64
	link LinkID
	ver  uint32
}

func (a heapEntry) less(b heapEntry) bool {
	return a.key < b.key || a.key == b.key && a.link < b.link
}

func (n *Network) lpush(e heapEntry) {
	h := append(n.lheap, e)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].less(h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	n.lheap = h
}

func (n *Network) lpop() heapEntry {
	h := n.lheap
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h[l].less(h[m]) {
			m = l
		}
		if r < len(h) && h[r].less(h[m]) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	n.lheap = h
	return top
}

// The finish heap: flows by finish time, then ID, each knowing its place.
// An entry carries its flow's finish time, so that comparisons read the
// heap alone and not the flows.

type fentry struct {
	finish int64
	id     FlowID
}

func (n *Network) fless(i, j int) bool {
	a, b := &n.fheap[i], &n.fheap[j]
	return a.finish < b.finish || a.finish == b.finish && a.id < b.id
}

func (n *Network) fswap(i, j int) {
	h := n.fheap
	h[i], h[j] = h[j], h[i]
	n.fl(h[i].id).hidx = int32(i)
	n.fl(h[j].id).hidx = int32(j)
}

func (n *Network) heapUp(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !n.fless(i, p) {
			break
		}
		n.fswap(i, p)
		i = p
	}
}

func (n *Network) heapDown(i int) bool {
	start := i
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(n.fheap) && n.fless(l, m) {
			m = l
		}
		if r < len(n.fheap) && n.fless(r, m) {
			m = r
		}
		if m == i {
			break
		}
		n.fswap(i, m)
		i = m
	}
	return i > start
}

func (n *Network) heapFix(i int32) {
	if !n.heapDown(int(i)) {
		n.heapUp(int(i))
	}
}

func (n *Network) heapRemove(i int32) {
	last := len(n.fheap) - 1
	id := n.fheap[i].id
	if int(i) != last {
		n.fswap(int(i), last)
	}
	n.fheap = n.fheap[:last]
	n.fl(id).hidx = -1
	if int(i) != last {
		n.heapFix(i)
	}
}
