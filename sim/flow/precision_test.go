package flow

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPrecisionFinishing checks the bounds of "Precision" (doc.go) where
// TestPrecision does not reach: flows that finish and are continued or
// removed, several shared links at once, capacity changes, and paths up
// to MaxPath long.
func TestPrecisionFinishing(t *testing.T) {
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
		r := newRandomNet(t, n, rng, caps)
		now := int64(0)
		for step := range 200 {
			for range 1 + rng.IntN(5) {
				switch k := rng.IntN(10); {
				case k < 5 || len(r.live) < 80:
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
					r.add(now, float64(1+rng.IntN(200)), path)
				case k < 8:
					r.removeAny(now)
				default:
					r.setAnyCapacity(now, 60)
				}
			}
			n.Settle(now)
			r.checkPrecision(eps, fmt.Sprintf("seed %d step %d", seed, step))
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
				r.remove(now, slices.Index(r.live, id))
			}
		}
	}
}
