package flow

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

const sec = int64(1e9)

func links(t *testing.T, n *Network, caps ...float64) []LinkID {
	t.Helper()
	var ids []LinkID
	for _, c := range caps {
		l, err := n.AddLink(c)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, l)
	}
	return ids
}

func add(t *testing.T, n *Network, now int64, bytes float64, path ...LinkID) FlowID {
	t.Helper()
	id, err := n.Add(now, path, bytes)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func wantRates(t *testing.T, n *Network, ids []FlowID, want ...float64) {
	t.Helper()
	for i, id := range ids {
		if got := n.Rate(id); !near(got, want[i]) {
			t.Errorf("flow %d: rate %v, want %v", i, got, want[i])
		}
	}
}

func TestSharedLink(t *testing.T) {
	n := New()
	l := links(t, n, 100)
	a := add(t, n, 0, 1000, l[0])
	n.Settle(0)
	wantRates(t, n, []FlowID{a}, 100)
	b := add(t, n, 0, 500, l[0])
	c := add(t, n, 0, 2000, l[0])
	n.Settle(0)
	wantRates(t, n, []FlowID{a, b, c}, 100.0/3, 100.0/3, 100.0/3)
	// b finishes first: 500 bytes at 100/3 B/s = 15 s.
	if got := n.NextFinish(); got != 15*sec {
		t.Fatalf("next finish %d, want %d", got, 15*sec)
	}
	done := n.PopFinished(15 * sec)
	if !slices.Equal(done, []FlowID{b}) {
		t.Fatalf("finished %v, want [%d]", done, b)
	}
	if _, err := n.Remove(15*sec, b); err != nil {
		t.Fatal(err)
	}
	n.Settle(15 * sec)
	wantRates(t, n, []FlowID{a, c}, 50, 50)
	// a had 1000 - 500 = 500 left at 15 s, now at 50 B/s: 10 s more.
	if got := n.NextFinish(); got != 25*sec {
		t.Fatalf("next finish %d, want %d", got, 25*sec)
	}
	if r := n.Remaining(20*sec, c); !near(r, 2000-500-250) {
		t.Fatalf("c remaining %v at 20 s", r)
	}
}

// The classic case: flow 0 crosses both links, flow 1 only A, flow 2 only
// B. B (4) is the tighter link: flows 0 and 2 get 2 each, and flow 1 takes
// what A has left, 8.
func TestTwoLinksThreeFlows(t *testing.T) {
	n := New()
	l := links(t, n, 10, 4)
	f0 := add(t, n, 0, 1e6, l[0], l[1])
	f1 := add(t, n, 0, 1e6, l[0])
	f2 := add(t, n, 0, 1e6, l[1])
	n.Settle(0)
	wantRates(t, n, []FlowID{f0, f1, f2}, 2, 8, 2)
	if n.Bottleneck(f1) != l[0] || n.Bottleneck(f0) != l[1] {
		t.Errorf("bottlenecks %d %d", n.Bottleneck(f0), n.Bottleneck(f1))
	}
	// Flow 2 goes: flow 0 is then limited by A, shared with flow 1.
	if _, err := n.Remove(0, f2); err != nil {
		t.Fatal(err)
	}
	n.Settle(0)
	wantRates(t, n, []FlowID{f0, f1}, 4, 6)
}

func TestLinkDownAndUp(t *testing.T) {
	n := New()
	l := links(t, n, 10, 10)
	a := add(t, n, 0, 100, l[0], l[1])
	b := add(t, n, 0, 100, l[0])
	n.Settle(0)
	wantRates(t, n, []FlowID{a, b}, 5, 5)
	// B goes down at 4 s: a pauses with 80 bytes left, b takes all of A.
	if err := n.SetCapacity(4*sec, l[1], 0); err != nil {
		t.Fatal(err)
	}
	n.Settle(4 * sec)
	wantRates(t, n, []FlowID{a, b}, 0, 10)
	if got := n.NextFinish(); got != 4*sec+8*sec {
		t.Fatalf("next finish %d", got)
	}
	n.PopFinished(12 * sec)
	if _, err := n.Remove(12*sec, b); err != nil {
		t.Fatal(err)
	}
	n.Settle(12 * sec)
	if n.NextFinish() != Never {
		t.Fatalf("a paused flow finishes at %d", n.NextFinish())
	}
	if r := n.Remaining(100*sec, a); !near(r, 80) {
		t.Fatalf("paused flow moved: %v left", r)
	}
	// Back up at 100 s: 80 bytes at 10 B/s.
	if err := n.SetCapacity(100*sec, l[1], 10); err != nil {
		t.Fatal(err)
	}
	n.Settle(100 * sec)
	if got := n.NextFinish(); got != 108*sec {
		t.Fatalf("next finish %d, want %d", got, 108*sec)
	}
}

func TestContinueKeepsRate(t *testing.T) {
	n := New()
	l := links(t, n, 10)
	a := add(t, n, 0, 10, l[0])
	n.Settle(0)
	if got := n.PopFinished(1 * sec); !slices.Equal(got, []FlowID{a}) {
		t.Fatalf("finished %v", got)
	}
	if err := n.Continue(sec, a, 20); err != nil {
		t.Fatal(err)
	}
	if n.NextFinish() != 3*sec {
		t.Fatalf("continued flow finishes at %d", n.NextFinish())
	}
	if st := n.Stats(); st.Settles != 1 {
		t.Fatalf("settles %d", st.Settles)
	}
}

func TestBadInput(t *testing.T) {
	n := New()
	if _, err := n.AddLink(-1); !errors.Is(err, ErrBadLink) {
		t.Errorf("negative capacity: %v", err)
	}
	if _, err := n.AddLink(math.Inf(1)); !errors.Is(err, ErrBadLink) {
		t.Errorf("infinite capacity: %v", err)
	}
	l := links(t, n, 1)
	for _, tc := range []struct {
		path  []LinkID
		bytes float64
	}{{nil, 1}, {[]LinkID{5}, 1}, {[]LinkID{l[0], l[0]}, 1}, {l, -1}, {l, math.NaN()}} {
		if _, err := n.Add(0, tc.path, tc.bytes); !errors.Is(err, ErrBadFlow) {
			t.Errorf("Add(%v, %v): %v", tc.path, tc.bytes, err)
		}
	}
	if _, err := n.Remove(0, 3); !errors.Is(err, ErrBadFlow) {
		t.Errorf("Remove of no flow: %v", err)
	}
	if err := n.SetCapacity(0, 7, 1); !errors.Is(err, ErrBadLink) {
		t.Errorf("SetCapacity of no link: %v", err)
	}
	for _, eps := range []float64{-0.01, 0.2, math.NaN(), math.Inf(1)} {
		if err := n.SetPrecision(eps); err == nil {
			t.Errorf("SetPrecision(%v) accepted", eps)
		}
	}
	m := New()
	long := links(t, m, make([]float64, MaxPath+1)...)
	if _, err := m.Add(0, long, 1); !errors.Is(err, ErrBadFlow) {
		t.Errorf("a path of %d links: %v", len(long), err)
	}
	if _, err := m.Add(0, long[:MaxPath], 1); err != nil {
		t.Errorf("a path of %d links: %v", MaxPath, err)
	}
}

// naive is max-min fair sharing computed from scratch by progressive
// filling over every flow, the plainest way.
func naive(caps []float64, paths [][]LinkID) []float64 {
	rate := make([]float64, len(paths))
	frozen := make([]bool, len(paths))
	resid := slices.Clone(caps)
	for {
		best, bl := math.Inf(1), -1
		for l := range caps {
			k := 0
			for f, p := range paths {
				if !frozen[f] && slices.Contains(p, LinkID(l)) {
					k++
				}
			}
			if k > 0 && max(resid[l], 0)/float64(k) < best {
				best, bl = max(resid[l], 0)/float64(k), l
			}
		}
		if bl < 0 {
			return rate
		}
		for f, p := range paths {
			if !frozen[f] && slices.Contains(p, LinkID(bl)) {
				frozen[f], rate[f] = true, best
				for _, m := range p {
					resid[m] -= best
				}
			}
		}
	}
}

// randomNet is a network driven through random changes, with what the
// tests check it against: each link's capacity and each live flow's path.
type randomNet struct {
	t     *testing.T
	n     *Network
	rng   *rand.Rand
	caps  []float64
	live  []FlowID
	paths map[FlowID][]LinkID
}

func newRandomNet(t *testing.T, n *Network, rng *rand.Rand, caps []float64) *randomNet {
	links(t, n, caps...)
	return &randomNet{t: t, n: n, rng: rng, caps: caps, paths: map[FlowID][]LinkID{}}
}

func (r *randomNet) add(now int64, bytes float64, path []LinkID) {
	id := add(r.t, r.n, now, bytes, path...)
	r.live = append(r.live, id)
	r.paths[id] = path
}

// remove removes the live flow at index i.
func (r *randomNet) remove(now int64, i int) {
	if _, err := r.n.Remove(now, r.live[i]); err != nil {
		r.t.Fatal(err)
	}
	delete(r.paths, r.live[i])
	r.live = slices.Delete(r.live, i, i+1)
}

// removeAny removes a live flow chosen at random.
func (r *randomNet) removeAny(now int64) { r.remove(now, r.rng.IntN(len(r.live))) }

// setAnyCapacity gives a link chosen at random a capacity below most.
func (r *randomNet) setAnyCapacity(now int64, most int) {
	l := r.rng.IntN(len(r.caps))
	r.caps[l] = float64(r.rng.IntN(most))
	if err := r.n.SetCapacity(now, LinkID(l), r.caps[l]); err != nil {
		r.t.Fatal(err)
	}
}

// livePaths are the live flows' paths, in the order of live.
func (r *randomNet) livePaths() [][]LinkID {
	ps := make([][]LinkID, len(r.live))
	for i, id := range r.live {
		ps[i] = r.paths[id]
	}
	return ps
}

// checkPrecision checks the bounds of "Precision" (doc.go) after a
// Settle: every link's load is the sum of its flows' rates and at most its
// capacity times 1+ε; every flow has a bottleneck on its path loaded to at
// least its capacity times 1-ε, on which no flow has more.
func (r *randomNet) checkPrecision(eps float64, at string) {
	r.t.Helper()
	n := r.n
	load := make([]float64, len(r.caps))
	top := make([]float64, len(r.caps))
	for _, id := range r.live {
		for _, l := range r.paths[id] {
			load[l] += n.Rate(id)
			top[l] = max(top[l], n.Rate(id))
		}
	}
	for l := range r.caps {
		if got := n.Load(LinkID(l)); !near(got, load[l]) {
			r.t.Fatalf("%s: link %d load %v, its flows' rates sum to %v", at, l, got, load[l])
		}
		if load[l] > r.caps[l]*(1+eps)+1e-6 {
			r.t.Fatalf("%s: link %d load %v over capacity %v (ε %v)", at, l, load[l], r.caps[l], eps)
		}
	}
	for _, id := range r.live {
		b := n.Bottleneck(id)
		if !slices.Contains(r.paths[id], b) {
			r.t.Fatalf("%s: flow %d bottleneck %d not on its path %v", at, id, b, r.paths[id])
		}
		if load[b] < r.caps[b]*(1-eps)-1e-6 {
			r.t.Fatalf("%s: flow %d bottleneck %d loaded %v of %v (ε %v)", at, id, b, load[b], r.caps[b], eps)
		}
		if rate := n.Rate(id); rate < top[b]-1e-6*max(1, top[b]) {
			r.t.Fatalf("%s: flow %d has %v at its bottleneck %d, where a flow has %v", at, id, rate, b, top[b])
		}
	}
}

// TestMatchesFullRecomputation drives random networks through random
// changes and checks, after every instant, that recomputing only what the
// changes touch gives the rates a full recomputation gives.
func TestMatchesFullRecomputation(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := New()
		nl := 2 + rng.IntN(10)
		caps := make([]float64, nl)
		for i := range caps {
			caps[i] = float64(1 + rng.IntN(20))
			if rng.IntN(8) == 0 {
				caps[i] = 0
			}
		}
		r := newRandomNet(t, n, rng, caps)
		now := int64(0)
		for step := range 60 {
			for range 1 + rng.IntN(3) {
				switch k := rng.IntN(10); {
				case k < 5 || len(r.live) == 0:
					p := rng.Perm(nl)[:1+rng.IntN(min(nl, 4))]
					path := make([]LinkID, len(p))
					for i, l := range p {
						path[i] = LinkID(l)
					}
					r.add(now, 1e9, path)
				case k < 8:
					r.removeAny(now)
				default:
					r.setAnyCapacity(now, 20)
				}
			}
			n.Settle(now)
			ps := r.livePaths()
			want := naive(caps, ps)
			for i, id := range r.live {
				if got := n.Rate(id); !near(got, want[i]) {
					t.Fatalf("seed %d step %d: flow %d (path %v) rate %v, want %v", seed, step, id, ps[i], got, want[i])
				}
			}
			for l := range caps {
				var sum float64
				for i, p := range ps {
					if slices.Contains(p, LinkID(l)) {
						sum += want[i]
					}
				}
				if got := n.Load(LinkID(l)); !near(got, sum) {
					t.Fatalf("seed %d step %d: link %d load %v, want %v", seed, step, l, got, sum)
				}
			}
			now += sec
		}
	}
}

// TestPrecision drives random networks in which one link is shared by many
// flows (an origin) through random changes with a precision, and checks
// after every instant that the allocation is max-min fair within it: every
// link's load is the sum of its flows' rates and at most its capacity
// times 1+ε; every flow has a bottleneck on its path that is loaded to at
// least its capacity times 1-ε and on which no flow has more. Instants in
// before any link was held must give the exact rates.
func TestPrecision(t *testing.T) {
	var held, forced int64
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 11))
		eps := []float64{0.1, 0.05, 0.02}[seed%3]
		n := New()
		if err := n.SetPrecision(eps); err != nil {
			t.Fatal(err)
		}
		nl := 3 + rng.IntN(20)
		caps := make([]float64, nl)
		for i := range caps {
			caps[i] = float64(1 + rng.IntN(20))
			if rng.IntN(20) == 0 {
				caps[i] = 0
			}
		}
		caps[0] = float64(5 + rng.IntN(40)) // the shared link
		r := newRandomNet(t, n, rng, caps)
		now := int64(0)
		for step := range 150 {
			for range 1 + rng.IntN(4) {
				switch k := rng.IntN(10); {
				case k < 5 || len(r.live) < 20:
					p := rng.Perm(nl)[:1+rng.IntN(min(nl, 3))]
					path := make([]LinkID, 0, len(p)+1)
					if rng.IntN(4) != 0 && !slices.Contains(p, 0) {
						path = append(path, 0)
					}
					for _, l := range p {
						path = append(path, LinkID(l))
					}
					r.add(now, 1e9, path)
				case k < 8:
					r.removeAny(now)
				default:
					r.setAnyCapacity(now, 40)
				}
			}
			n.Settle(now)
			r.checkPrecision(eps, fmt.Sprintf("seed %d step %d", seed, step))
			if n.Stats().Held == 0 {
				ps := r.livePaths()
				want := naive(caps, ps)
				for i, id := range r.live {
					if got := n.Rate(id); !near(got, want[i]) {
						t.Fatalf("seed %d step %d: nothing held, flow %d rate %v, want %v", seed, step, id, got, want[i])
					}
				}
			}
			now += sec
		}
		held += n.Stats().Held
		forced += n.Stats().Forced
	}
	t.Logf("links held %d times, forced %d", held, forced)
	if held == 0 || forced == 0 {
		t.Fatal("the random networks never held a link or never forced one")
	}
}

// TestPrecisionSavesWork: an origin shared by 2,000 flows, each also on a
// link of its own, which flows start and stop on one by one. Exact, every
// change recomputes every flow; with ε = 1% a few in 10 do, and the flows
// finish within about ε of the exact times.
func TestPrecisionSavesWork(t *testing.T) {
	finish := func(eps float64) ([]int64, Stats) {
		n := New()
		if err := n.SetPrecision(eps); err != nil {
			t.Fatal(err)
		}
		origin := links(t, n, 1000)[0]
		const flows = 2000
		own := make([]LinkID, flows)
		for i := range own {
			own[i] = links(t, n, 10)[0]
		}
		rng := rand.New(rand.NewPCG(1, 2))
		done := make([]int64, flows)
		ids := map[FlowID]int{}
		next := 0
		start := func(now int64) {
			id := add(t, n, now, float64(100+rng.IntN(400)), origin, own[next])
			ids[id] = next
			next++
		}
		for range flows / 2 {
			start(0)
		}
		n.Settle(0)
		for len(ids) > 0 {
			now := n.NextFinish()
			for _, id := range slices.Clone(n.PopFinished(now)) {
				done[ids[id]] = now
				delete(ids, id)
				if _, err := n.Remove(now, id); err != nil {
					t.Fatal(err)
				}
				if next < flows {
					start(now)
				}
			}
			n.Settle(now)
		}
		return done, n.Stats()
	}
	exact, se := finish(0)
	approx, sa := finish(0.01)
	t.Logf("exact: %+v", se)
	t.Logf("ε 1%%: %+v", sa)
	if sa.Recomputed*5 > se.Recomputed {
		t.Errorf("ε 1%% recomputed %d flows, exact %d", sa.Recomputed, se.Recomputed)
	}
	worst := 0.0
	for i := range exact {
		worst = max(worst, math.Abs(float64(approx[i]-exact[i]))/float64(exact[i]))
	}
	t.Logf("worst relative difference in finish time: %.4f", worst)
	if worst > 0.03 {
		t.Errorf("finish times differ by up to %.4f", worst)
	}
}
