package sched

import "math/rand/v2"

// order is the session's random order of pieces: a pseudo-random bijection
// of [0, n) drawn once from the caller's rand. Ties in rarity go to the
// piece that comes first in it, so two sessions with different seeds break
// ties differently while one session never needs more random numbers.
//
// The bijection costs no memory per piece (a session of 10^4 pieces run
// 10^4 times in the simulator would otherwise spend 80 KB each on two
// tables): three rounds of an odd multiply, an add and an xorshift on
// k bits, 2^k ≥ n, cycle-walked back into [0, n).
type order struct {
	n        uint64
	k        uint
	mask     uint64
	mul, inv [3]uint64
	add      [3]uint64
	shift    [3]uint
	identity bool // tests: rank = position, for readable transcripts
}

func newOrder(n int, rng *rand.Rand, identity bool) order {
	k := uint(1)
	for uint64(1)<<k < uint64(n) {
		k++
	}
	o := order{n: uint64(n), k: k, mask: 1<<k - 1, identity: identity}
	for i := range 3 {
		o.mul[i] = rng.Uint64() | 1
		o.inv[i] = inverseOdd(o.mul[i])
		o.add[i] = rng.Uint64()
		o.shift[i] = uint(max(1, int(k)/2+i-1))
	}
	return o
}

// inverseOdd returns x with a·x = 1 mod 2^64 (Newton's iteration doubles the
// correct low bits each step, starting from 3).
func inverseOdd(a uint64) uint64 {
	x := a
	for range 5 {
		x *= 2 - a*x
	}
	return x
}

// rank maps a piece position to its place in the order.
func (o *order) rank(pos int) int32 {
	if o.identity {
		return int32(pos)
	}
	x := uint64(pos)
	for {
		for i := range 3 {
			x = (x*o.mul[i] + o.add[i]) & o.mask
			x ^= x >> o.shift[i]
		}
		if x < o.n {
			return int32(x)
		}
	}
}

// pos is rank's inverse.
func (o *order) pos(rank int32) int {
	if o.identity {
		return int(rank)
	}
	x := uint64(rank)
	for {
		for i := 2; i >= 0; i-- {
			y := x
			for s := o.shift[i]; s < o.k; s += o.shift[i] {
				x = y ^ x>>o.shift[i]
			}
			x = ((x - o.add[i]) * o.inv[i]) & o.mask
		}
		if x < o.n {
			return int(x)
		}
	}
}
