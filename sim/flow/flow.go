package flow

import (
	"errors"
	"fmt"
	"math"
)

// LinkID names a link of a Network, FlowID a flow. Flow IDs are reused
// after Remove (the most recently freed first), so they are deterministic.
type (
	LinkID int32
	FlowID int32
)

// Never is the finish time of a flow that makes no progress (rate 0).
const Never int64 = math.MaxInt64

// MaxPath is the most links a flow's path may cross. Paths are stored in
// the flow itself, so that the network's millions of flows make no
// allocations of their own and hold no pointers for the collector.
const MaxPath = 6

// ErrBadFlow: Add got an empty path, one longer than MaxPath, an unknown
// link, a link twice, or a negative or not finite byte count; or a call
// named a flow that is not live.
var ErrBadFlow = errors.New("flow: bad flow")

// ErrBadLink: a capacity that is negative or not a number, or an unknown
// link.
var ErrBadLink = errors.New("flow: bad link")

type link struct {
	cap   float64
	load  float64  // the sum of the rates of the flows on it
	flows []FlowID // the flows crossing it
	bn    []FlowID // the flows it is the bottleneck of
	level float64  // their rate, while bn is not empty

	// Scratch of Settle.
	visit     uint64
	resid     float64
	cflows    []FlowID // flows of C crossing it
	n         int32    // of cflows, those not frozen yet
	ver       uint32   // heap entry version
	fillLevel float64  // the share it froze its flows at
	capSet    bool     // its capacity changed since the last Settle
	held      uint64   // the Settle (epoch) that holds its level (precision)
	exact     uint64   // the Settle (epoch) that must not hold it
	force     bool     // recompute all its flows at the next Settle
}

type flow struct {
	rate      float64
	remaining float64 // bytes at time updated
	updated   int64
	finish    int64
	pbuf      [MaxPath]LinkID
	at        [MaxPath]int32 // position in links[path[i]].flows
	bn        LinkID         // -1 before the first computation
	bnAt      int32
	hidx      int32 // position in the finish heap, -1 when not in it
	np        uint8 // links in pbuf
	live      bool

	// Scratch of Settle.
	frozen  bool
	newBn   LinkID
	newRate float64
	inC     uint64
}

// Flows live in pages of a fixed size, so that a network of millions of
// flows grows without copying them (or holding two copies at once).
const (
	pageBits = 12
	pageSize = 1 << pageBits
)

// fl returns flow id's record.
func (n *Network) fl(id FlowID) *flow { return &n.pages[id>>pageBits][id&(pageSize-1)] }

// path is the links a flow crosses.
func (f *flow) path() []LinkID { return f.pbuf[:f.np] }

// Stats counts the network's work, for the simulator's performance notes.
type Stats struct {
	// Settles is how many recomputations ran (instants with changes).
	Settles int64
	// Recomputed sums the flows whose rate was recomputed; Rounds the
	// fillings (a settle whose second rule pulled in more flows fills
	// again).
	Recomputed, Rounds int64
	// Held counts the links whose level a Settle held (with a
	// precision), Forced the times a held link drifted past it and was
	// recomputed.
	Held, Forced int64
	// Links and Flows are the sizes now.
	Links, Flows int
}

// Network is a set of links and the flows across them. It is not safe for
// concurrent use.
type Network struct {
	links  []link
	pages  []*[pageSize]flow
	nflows int // flow IDs handed out (live or free)
	free   []FlowID
	live   int

	// Changes since the last Settle.
	added    []FlowID
	seeds    []LinkID
	pending  bool
	noHold   bool // this pass of Settle holds no level (maxHeldPasses)
	epoch    uint64
	cset     []FlowID
	visited  []LinkID
	stack    []LinkID
	lheap    []heapEntry
	bottled  []LinkID // links that bottleneck a flow of C in this round
	finished []FlowID

	fheap []fentry // flows by finish time
	stats Stats

	// Precision (SetPrecision): 0 is exact.
	eps      float64
	minGroup int
	holding  []LinkID // links held in this Settle
}

// New returns an empty network.
func New() *Network { return &Network{} }

// AddLink adds a link of capacity bytes per second (0: down, carries
// nothing; +Inf is refused: leave such a link out of the paths).
func (n *Network) AddLink(capacity float64) (LinkID, error) {
	if !(capacity >= 0) || math.IsInf(capacity, 0) {
		return 0, fmt.Errorf("%w: capacity %v", ErrBadLink, capacity)
	}
	n.links = append(n.links, link{cap: capacity})
	return LinkID(len(n.links) - 1), nil
}

// SetPrecision lets a large group of flows keep a common rate that is no
// longer exact, to save the recomputation a change of it spreads (see the
// package comment, "Precision"). eps is the relative bound, between 0
// (exact, the default) and 0.1: a link that is the bottleneck of at least
// 1/eps flows keeps their rate through changes while its load stays within
// eps of its capacity (over or under), and is recomputed exactly once it
// would not. Call it before the first flow is added: levels held before a
// switch back to exact stay until a change reaches their links.
func (n *Network) SetPrecision(eps float64) error {
	if !(eps >= 0 && eps <= 0.1) {
		return fmt.Errorf("flow: precision %v is not in [0, 0.1]", eps)
	}
	n.eps = eps
	n.minGroup = 0
	if eps > 0 {
		n.minGroup = int(math.Ceil(1/eps - 1e-9))
	}
	return nil
}

// Capacity returns a link's capacity.
func (n *Network) Capacity(l LinkID) float64 { return n.links[l].cap }

// Load returns the sum of the rates of the flows on a link, as of the last
// Settle.
func (n *Network) Load(l LinkID) float64 { return n.links[l].load }

// SetCapacity changes a link's capacity from now on (0 takes it down: its
// flows stop until it comes back). The rates change at the next Settle.
func (n *Network) SetCapacity(now int64, l LinkID, capacity float64) error {
	if l < 0 || int(l) >= len(n.links) {
		return fmt.Errorf("%w: link %d", ErrBadLink, l)
	}
	if !(capacity >= 0) || math.IsInf(capacity, 0) {
		return fmt.Errorf("%w: capacity %v", ErrBadLink, capacity)
	}
	lk := &n.links[l]
	if lk.cap == capacity {
		return nil
	}
	lk.cap = capacity
	if !lk.capSet {
		lk.capSet = true
		n.seeds = append(n.seeds, l)
	}
	n.pending = true
	return nil
}

// Add starts a flow of bytes along path at time now. Its rate is set by
// the next Settle; until then it moves nothing.
func (n *Network) Add(now int64, path []LinkID, bytes float64) (FlowID, error) {
	if len(path) == 0 || len(path) > MaxPath {
		return 0, fmt.Errorf("%w: a path of %d links", ErrBadFlow, len(path))
	}
	if !(bytes >= 0) || math.IsInf(bytes, 0) {
		return 0, fmt.Errorf("%w: %v bytes", ErrBadFlow, bytes)
	}
	for i, l := range path {
		if l < 0 || int(l) >= len(n.links) {
			return 0, fmt.Errorf("%w: unknown link %d", ErrBadFlow, l)
		}
		for _, m := range path[:i] {
			if m == l {
				return 0, fmt.Errorf("%w: link %d twice", ErrBadFlow, l)
			}
		}
	}
	var id FlowID
	if k := len(n.free); k > 0 {
		id = n.free[k-1]
		n.free = n.free[:k-1]
	} else {
		if n.nflows == len(n.pages)*pageSize {
			n.pages = append(n.pages, new([pageSize]flow))
		}
		id = FlowID(n.nflows)
		n.nflows++
	}
	f := n.fl(id)
	f.np = uint8(copy(f.pbuf[:], path))
	for i, l := range path {
		lk := &n.links[l]
		f.at[i] = int32(len(lk.flows))
		lk.flows = append(lk.flows, id)
	}
	f.bn, f.bnAt = -1, -1
	f.rate, f.remaining, f.updated, f.finish = 0, bytes, now, Never
	f.hidx = -1
	f.live = true
	n.live++
	if bytes == 0 {
		n.schedule(id) // nothing to carry: finished now
	}
	n.added = append(n.added, id)
	n.pending = true
	return id, nil
}

func (n *Network) check(id FlowID) error {
	if id < 0 || int(id) >= n.nflows || !n.fl(id).live {
		return fmt.Errorf("%w: flow %d is not live", ErrBadFlow, id)
	}
	return nil
}

// Remove ends a flow at time now, whatever it still had to carry, and
// returns the bytes it had not carried. The others' rates change at the
// next Settle.
func (n *Network) Remove(now int64, id FlowID) (float64, error) {
	if err := n.check(id); err != nil {
		return 0, err
	}
	left := n.Remaining(now, id)
	f := n.fl(id)
	if f.hidx >= 0 {
		n.heapRemove(f.hidx)
	}
	for i, l := range f.path() {
		lk := &n.links[l]
		lk.load -= f.rate
		last := len(lk.flows) - 1
		if pos := f.at[i]; int(pos) != last {
			moved := lk.flows[last]
			lk.flows[pos] = moved
			m := n.fl(moved)
			for j, ml := range m.path() {
				if ml == l {
					m.at[j] = pos
					break
				}
			}
		}
		lk.flows = lk.flows[:last]
		if last == 0 {
			lk.load = 0 // no drift left over from sums of rates
		}
		n.seeds = append(n.seeds, l)
	}
	if f.bn >= 0 {
		n.unBottle(id)
	}
	f.live = false
	f.rate = 0
	n.live--
	n.free = append(n.free, id)
	n.pending = true
	return left, nil
}

// unBottle takes flow id out of its bottleneck's list.
func (n *Network) unBottle(id FlowID) {
	f := n.fl(id)
	lk := &n.links[f.bn]
	last := len(lk.bn) - 1
	if pos := f.bnAt; int(pos) != last {
		moved := lk.bn[last]
		lk.bn[pos] = moved
		n.fl(moved).bnAt = pos
	}
	lk.bn = lk.bn[:last]
	f.bn, f.bnAt = -1, -1
}

// Continue gives a flow that finished (PopFinished) bytes more to carry, at
// the rate it has: a connection's next queued block. Nothing is
// recomputed.
func (n *Network) Continue(now int64, id FlowID, bytes float64) error {
	if err := n.check(id); err != nil {
		return err
	}
	if !(bytes >= 0) || math.IsInf(bytes, 0) {
		return fmt.Errorf("%w: %v bytes", ErrBadFlow, bytes)
	}
	f := n.fl(id)
	f.remaining, f.updated = bytes, now
	n.schedule(id)
	return nil
}

// Rate returns a flow's rate in bytes per second, as of the last Settle.
func (n *Network) Rate(id FlowID) float64 { return n.fl(id).rate }

// Bottleneck returns the link that set a flow's rate at the last Settle,
// or -1.
func (n *Network) Bottleneck(id FlowID) LinkID { return n.fl(id).bn }

// Remaining returns the bytes a flow has still to carry at time now.
func (n *Network) Remaining(now int64, id FlowID) float64 {
	f := n.fl(id)
	r := f.remaining - f.rate*float64(now-f.updated)/1e9
	return max(r, 0)
}

// Live returns how many flows there are.
func (n *Network) Live() int { return n.live }

// Stats returns the network's counters.
func (n *Network) Stats() Stats {
	st := n.stats
	st.Links, st.Flows = len(n.links), n.live
	return st
}

// NextFinish returns the earliest time a flow will have carried all its
// bytes, or Never.
func (n *Network) NextFinish() int64 {
	if len(n.fheap) == 0 {
		return Never
	}
	return n.fheap[0].finish
}

// PopFinished returns the flows whose bytes are all through by now, in
// order of finish time (then ID). Each keeps its rate, and its link share,
// until the caller removes or continues it. The slice is reused by the
// next call.
func (n *Network) PopFinished(now int64) []FlowID {
	n.finished = n.finished[:0]
	for len(n.fheap) > 0 {
		if n.fheap[0].finish > now {
			break
		}
		id := n.fheap[0].id
		f := n.fl(id)
		n.heapRemove(0)
		f.remaining, f.updated = 0, now
		n.finished = append(n.finished, id)
	}
	return n.finished
}

// schedule (re)computes a flow's finish time from its remaining bytes and
// rate and places it in the finish heap.
func (n *Network) schedule(id FlowID) {
	f := n.fl(id)
	switch {
	case f.remaining <= 0:
		f.finish = f.updated
	case f.rate <= 0:
		f.finish = Never
	default:
		d := math.Ceil(f.remaining / f.rate * 1e9)
		if d >= float64(Never-f.updated) {
			f.finish = Never
		} else {
			f.finish = f.updated + int64(d)
		}
	}
	switch {
	case f.finish == Never && f.hidx >= 0:
		n.heapRemove(f.hidx)
	case f.finish == Never:
	case f.hidx >= 0:
		n.fheap[f.hidx].finish = f.finish
		n.heapFix(f.hidx)
	default:
		f.hidx = int32(len(n.fheap))
		n.fheap = append(n.fheap, fentry{finish: f.finish, id: id})
		n.heapUp(int(f.hidx))
	}
}
