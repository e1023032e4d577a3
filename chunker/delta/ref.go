package delta

import "github.com/shoalnet/shoal/chunker"

// refChooser picks the base ranges a new chunk is compressed against.
//
// The chunks the two releases share anchor the new chunks: a run of new
// chunks of the target sits between two chunks the base also has (or an
// image's start or end), and in the base those two chunks bound where the
// run's bytes used to be. That stretch of the base (the gap) is the
// reference when it fits the cap; when it does not, the chunk's place in
// the base is estimated from the nearer anchor (its distance from that
// anchor in the target, carried over) and a window of the cap around it is
// the reference. docs/deltas.md has the alternatives measured.
type refChooser struct {
	base, target *chunker.Index
	baseOff      []int64
	targetOff    []int64
	inBase       []int32 // per target position: the base position with the same chunk, or -1
	prev, next   []int32 // per target position: the nearest anchor before / after, or -1
	maxRef       int64
}

func newRefChooser(base, target *chunker.Index, baseOff []int64, maxRef int) refChooser {
	c := refChooser{base: base, target: target, baseOff: baseOff, targetOff: target.Offsets(), maxRef: int64(maxRef)}
	at := make(map[chunker.Digest]int32, len(base.Chunks))
	for i, e := range base.Chunks {
		if _, ok := at[e.Digest]; !ok {
			at[e.Digest] = int32(i)
		}
	}
	n := len(target.Chunks)
	c.inBase = make([]int32, n)
	c.prev = make([]int32, n)
	c.next = make([]int32, n)
	last := int32(-1)
	for i, e := range target.Chunks {
		c.prev[i] = last
		b, ok := at[e.Digest]
		if !ok {
			b = -1
		}
		c.inBase[i] = b
		if ok {
			last = int32(i)
		}
	}
	last = -1
	for i := n - 1; i >= 0; i-- {
		c.next[i] = last
		if c.inBase[i] >= 0 {
			last = int32(i)
		}
	}
	return c
}

// choose returns the reference ranges for the new chunk at target
// position i.
func (c *refChooser) choose(i int) []Range {
	baseSize := c.base.Size
	if baseSize == 0 {
		return nil
	}
	size := int64(c.target.Chunks[i].Size)
	t0 := c.targetOff[i]
	// Left anchor: end of the previous shared chunk, in target and base.
	var tA, A int64
	if j := c.prev[i]; j >= 0 {
		b := c.inBase[j]
		tA, A = c.targetOff[j+1], c.baseOff[b+1]
	}
	// Right anchor: start of the next shared chunk.
	tB, B := c.target.Size, baseSize
	if k := c.next[i]; k >= 0 {
		tB, B = c.targetOff[k], c.baseOff[c.inBase[k]]
	}
	if A < B && B-A <= c.maxRef {
		return []Range{{Off: A, Len: B - A}}
	}
	// The gap is empty (an insertion), crossed (the anchors moved past
	// each other) or too long: estimate where the chunk was from the
	// nearer anchor and centre a window on it.
	var at int64
	if t0-tA <= tB-(t0+size) {
		at = A + (t0 - tA)
	} else {
		at = B - (tB - t0)
	}
	return []Range{c.window(at+size/2, c.maxRef)}
}

// window returns the range of length n (or the whole base, if shorter)
// centred on mid, moved inside the base.
func (c *refChooser) window(mid, n int64) Range {
	size := c.base.Size
	if n >= size {
		return Range{Off: 0, Len: size}
	}
	off := mid - n/2
	off = max(off, 0)
	off = min(off, size-n)
	return Range{Off: off, Len: n}
}
