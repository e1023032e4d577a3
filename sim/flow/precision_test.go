package flow

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPrecisionFinishing checks the bounds of "Precision" (doc.go) where
// TestPrecision does not reach: flows that finish and are continued or
// removed, several shared links at once, capacity changes, and paths up
// to MaxPath long. After every Settle: each link's load is the sum of
// its flows' rates and at most its capacity times 1+ε, and every flow's
// bottleneck is on its path, loaded to within ε, with no flow there
// getting more.
func TestPrecisionFinishing(t *testing.T) {
	const tol = 1e-6
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 9))
		eps := []float64{0.1, 0.05, 0.02}[seed%3]
		n := New()
		if err := n.SetPrecision(eps); err != nil {
			t.Fatal(err)
		}
		nl := 6 + rng.IntN(20)
		nshared := 2 + rng.IntN(4) // the first links: shared by many flows
		caps := make([]float64, nl)
		for i := range caps {
			caps[i] = float64(1 + rng.IntN(20))
			if i < nshared {
				caps[i] = float64(5 + rng.IntN(60))
			}
		}
		links(t, n, caps...)
		paths := map[FlowID][]LinkID{}
		var live []FlowID
		now := int64(0)
		for step := range 200 {
			for range 1 + rng.IntN(5) {
				switch k := rng.IntN(10); {
				case k < 5 || len(live) < 80:
					var path []LinkID
					for s := range nshared {
						if rng.IntN(2) == 0 {
							path = append(path, LinkID(s))
						}
					}
					for _, l := range rng.Perm(nl)[:1+rng.IntN(3)] {
						if !slices.Contains(path, LinkID(l)) && len(path) < MaxPath {
							path = append(path, LinkID(l))
						}
					}
					live = append(live, add(t, n, now, float64(1+rng.IntN(200)), path...))
					paths[live[len(live)-1]] = path
				case k < 8:
					i := rng.IntN(len(live))
					if _, err := n.Remove(now, live[i]); err != nil {
						t.Fatal(err)
					}
					delete(paths, live[i])
					live = slices.Delete(live, i, i+1)
				default:
					l := rng.IntN(nl)
					caps[l] = float64(rng.IntN(60))
					if err := n.SetCapacity(now, LinkID(l), caps[l]); err != nil {
						t.Fatal(err)
					}
				}
			}
			n.Settle(now)
			load := make([]float64, nl)
			top := make([]float64, nl)
			for _, id := range live {
				for _, l := range paths[id] {
					load[l] += n.Rate(id)
					top[l] = max(top[l], n.Rate(id))
				}
			}
			for l := range caps {
				if got := n.Load(LinkID(l)); math.Abs(got-load[l]) > tol*max(1, load[l]) {
					t.Fatalf("seed %d step %d: link %d says load %v, its flows add up to %v", seed, step, l, got, load[l])
				}
				if load[l] > caps[l]*(1+eps)+tol {
					t.Fatalf("seed %d step %d: link %d carries %v, capacity %v, ε %v", seed, step, l, load[l], caps[l], eps)
				}
			}
			for _, id := range live {
				b := n.Bottleneck(id)
				switch {
				case !slices.Contains(paths[id], b):
					t.Fatalf("seed %d step %d: flow %d's bottleneck %d is not on its path %v", seed, step, id, b, paths[id])
				case load[b] < caps[b]*(1-eps)-tol:
					t.Fatalf("seed %d step %d: flow %d's bottleneck %d carries %v of %v", seed, step, id, b, load[b], caps[b])
				case n.Rate(id) < top[b]-tol*max(1, top[b]):
					t.Fatalf("seed %d step %d: flow %d gets %v at its bottleneck %d, another %v", seed, step, id, n.Rate(id), b, top[b])
				}
			}
			next := n.NextFinish()
			if next == Never || next > now+2*sec {
				next = now + 2*sec
			}
			now = next
			for _, id := range slices.Clone(n.PopFinished(now)) {
				if rng.IntN(2) == 0 {
					if err := n.Continue(now, id, float64(1+rng.IntN(200))); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if _, err := n.Remove(now, id); err != nil {
					t.Fatal(err)
				}
				delete(paths, id)
				live = slices.DeleteFunc(live, func(x FlowID) bool { return x == id })
			}
		}
	}
}
