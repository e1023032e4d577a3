package sched

import "math/bits"

// bucket is a set of pieces (by rank) as a bitmap with a summary bit per
// non-zero word, so that finding the first member, or the first member a
// peer holds, skips empty stretches. Its words are allocated on first use.
type bucket struct {
	words []uint64
	sum   []uint64
	size  int
}

func (b *bucket) add(q int32, nwords int) {
	if b.words == nil {
		b.words = make([]uint64, nwords)
		b.sum = make([]uint64, (nwords+63)/64)
	}
	w := q >> 6
	b.words[w] |= 1 << (q & 63)
	b.sum[w>>6] |= 1 << (w & 63)
	b.size++
}

// fill makes b the set of all of 0..n-1.
func (b *bucket) fill(n int) {
	if n == 0 {
		return
	}
	nwords := (n + 63) / 64
	b.words = make([]uint64, nwords)
	b.sum = make([]uint64, (nwords+63)/64)
	for w := range b.words {
		b.words[w] = ^uint64(0)
		b.sum[w>>6] |= 1 << (w & 63)
	}
	if r := n % 64; r != 0 {
		b.words[nwords-1] = 1<<r - 1
	}
	b.size = n
}

func (b *bucket) remove(q int32) {
	w := q >> 6
	b.words[w] &^= 1 << (q & 63)
	if b.words[w] == 0 {
		b.sum[w>>6] &^= 1 << (w & 63)
	}
	b.size--
}

func (b *bucket) has(q int32) bool {
	return b.words != nil && b.words[q>>6]&(1<<(q&63)) != 0
}

// first returns the lowest member of b that is also in have (every member
// if have is nil), or -1.
func (b *bucket) first(have []uint64) int32 {
	if b.size == 0 {
		return -1
	}
	for si, s := range b.sum {
		for s != 0 {
			w := si<<6 + bits.TrailingZeros64(s)
			x := b.words[w]
			if have != nil {
				x &= have[w]
			}
			if x != 0 {
				return int32(w<<6 + bits.TrailingZeros64(x))
			}
			s &= s - 1
		}
	}
	return -1
}

func hasBit(set []uint64, q int32) bool { return set[q>>6]&(1<<(q&63)) != 0 }
