package sched

import (
	"math/rand/v2"
	"testing"
)

// TestOrderIsAPermutation: rank is a bijection of [0, n) and pos its
// inverse, for every size up to 600 and a few large ones.
func TestOrderIsAPermutation(t *testing.T) {
	sizes := []int{0, 1, 2, 3}
	for n := 4; n <= 600; n++ {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 4096, 4097, 65536, 100_003)
	for _, n := range sizes {
		o := newOrder(n, rand.New(rand.NewPCG(uint64(n), 7)), false)
		seen := make([]bool, n)
		for pos := range n {
			q := o.rank(pos)
			if q < 0 || int(q) >= n || seen[q] {
				t.Fatalf("n=%d: rank(%d) = %d (seen %v)", n, pos, q, int(q) < n && q >= 0 && seen[q])
			}
			seen[q] = true
			if back := o.pos(q); back != pos {
				t.Fatalf("n=%d: pos(rank(%d)) = %d", n, pos, back)
			}
		}
	}
}

// TestOrderSpreads: different seeds put different pieces first, and a
// piece's rank is spread over the whole range.
func TestOrderSpreads(t *testing.T) {
	const n, seeds = 64, 4000
	firsts := map[int]int{}
	var ranks [4]int // quarters of the range where piece 0 lands
	for seed := range seeds {
		o := newOrder(n, rand.New(rand.NewPCG(uint64(seed), 8)), false)
		firsts[o.pos(0)]++
		ranks[o.rank(0)*4/n]++
	}
	if len(firsts) < n*9/10 {
		t.Errorf("only %d of %d pieces ever come first", len(firsts), n)
	}
	for pos, c := range firsts {
		if c > 4*seeds/n {
			t.Errorf("piece %d comes first for %d of %d seeds", pos, c, seeds)
		}
	}
	for i, c := range ranks {
		if c < seeds/4*8/10 || c > seeds/4*12/10 {
			t.Errorf("piece 0 lands in quarter %d for %d of %d seeds", i, c, seeds)
		}
	}
}
