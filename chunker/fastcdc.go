package chunker

import "encoding/binary"

// cutter finds chunk boundaries. It is immutable and safe for concurrent
// use.
type cutter struct {
	min, normal, max int
	maskS, maskL     uint64
	// Masks shifted for each position of an eight-byte step (see roll8).
	stepS, stepL [8]uint64
	// zeroSkip: a run of zero bytes at the start of a chunk can be skipped
	// without hashing (see skipZeros).
	zeroSkip bool
}

// zeroFixpoint is the gear hash after 64 or more zero bytes, whatever came
// before: each zero byte doubles fp and adds gear[0], and after 64 steps
// the old state has been shifted out, leaving gear[0]*(2^64-1) = -gear[0].
var zeroFixpoint = -gear[0]

func newCutter(p Params) *cutter { return newCutterNorm(p, p.Normalization()) }

// newCutterNorm builds a cutter with explicit normalization; n must be
// valid for p (see Normalization.validate).
func newCutterNorm(p Params, n Normalization) *cutter {
	s, l := spreadMask(n.StrictBits), spreadMask(n.LooseBits)
	c := &cutter{min: p.Min, normal: n.Normal, max: p.Max, maskS: s, maskL: l}
	for j := range 8 {
		c.stepS[j] = s << (7 - j)
		c.stepL[j] = l << (7 - j)
	}
	// Skipping is exact only if no hash value a zero run produces from a
	// chunk's start (fp = 0) can end the chunk: gear[0]*(2^k-1) for k = 1
	// ..64 under the strict mask, and the fixpoint under the loose one.
	c.zeroSkip = zeroFixpoint&l != 0
	for k, fp := 1, uint64(0); k <= 64; k++ {
		fp = fp<<1 + gear[0]
		if fp&s == 0 {
			c.zeroSkip = false
		}
	}
	return c
}

// skipZeros returns how many zero bytes data[i:] starts with, in whole
// eight-byte words (a few bytes more or less do not matter: the gear loop
// handles them).
func skipZeros(data []byte, i int) int {
	j := i
	for ; j+8 <= len(data); j += 8 {
		if binary.LittleEndian.Uint64(data[j:]) != 0 {
			break
		}
	}
	return j - i
}

// cut returns the length of the chunk that starts at data[0]. The caller
// passes at least c.max bytes unless the stream ends sooner; cut never looks
// past c.max.
//
// Definition (what cutRef computes one byte at a time): skip the first min
// bytes; then for each byte b at index i, fp = fp<<1 + gear[b], and the
// chunk ends after byte i when fp&mask == 0, with mask = maskS while
// i < normal (see Params.normal) and maskL after. A chunk ends at max regardless.
//
// The loops below roll eight bytes per step (see roll8), so the
// loop-carried dependency is one shift and one add per eight bytes; tail
// finishes the last few bytes one at a time.
func (c *cutter) cut(data []byte) int {
	n := len(data)
	if n <= c.min {
		return n
	}
	if n > c.max {
		n = c.max
	}
	normal := min(c.normal, n)
	var (
		fp    uint64
		found bool
	)
	i := c.min
	// Disk images hold long runs of zeros, where the gear hash sits at a
	// fixpoint that never cuts: jump over them instead of hashing them.
	// This gives exactly cutRef's boundaries (see zeroSkip).
	if c.zeroSkip {
		if z := skipZeros(data[:n], i); z >= 64 {
			i, fp = i+z, zeroFixpoint
		}
	}
	if i, fp, found = roll8(data[:normal], i, fp, &c.stepS); found {
		return i
	}
	if i, found = tail(data[:normal], i, &fp, c.maskS); found {
		return i
	}
	if i, fp, found = roll8(data[:n], i, fp, &c.stepL); found {
		return i
	}
	if i, found = tail(data[:n], i, &fp, c.maskL); found {
		return i
	}
	return n
}

// gear8[k] is gear shifted left by 7-k bits, for roll8.
var gear8 = func() (t [8][256]uint64) {
	for k := range t {
		for i, v := range gear {
			t[k][i] = v << (7 - k)
		}
	}
	return t
}()

// roll8 hashes data[i:] eight bytes per step from state fp. It returns the
// chunk length when a boundary is found; otherwise the position it stopped
// at (fewer than eight bytes before the end) and the hash state.
//
// With T = fp<<8 and bytes b0..b7, the hash after byte bj, shifted left by
// 7-j so that all eight share T, is
//
//	fp_j << (7-j) = T + gear[b0]<<7 + gear[b1]<<6 + ... + gear[bj]<<(7-j)
//
// which is a running sum of table lookups, tested against mask<<(7-j)
// (step[j]). The shifted test is exact because masks keep their top bits
// clear (see spreadMask). Only T depends on the previous step, so the
// loop-carried chain is one shift and one add per eight bytes.
func roll8(data []byte, i int, fp uint64, step *[8]uint64) (int, uint64, bool) {
	tab := &gear8
	ms := *step
	for ; i+8 <= len(data); i += 8 {
		q := data[i : i+8 : i+8]
		p := fp<<8 + tab[0][q[0]]
		if p&ms[0] == 0 {
			return i + 1, 0, true
		}
		p += tab[1][q[1]]
		if p&ms[1] == 0 {
			return i + 2, 0, true
		}
		p += tab[2][q[2]]
		if p&ms[2] == 0 {
			return i + 3, 0, true
		}
		p += tab[3][q[3]]
		if p&ms[3] == 0 {
			return i + 4, 0, true
		}
		p += tab[4][q[4]]
		if p&ms[4] == 0 {
			return i + 5, 0, true
		}
		p += tab[5][q[5]]
		if p&ms[5] == 0 {
			return i + 6, 0, true
		}
		p += tab[6][q[6]]
		if p&ms[6] == 0 {
			return i + 7, 0, true
		}
		fp = p + tab[7][q[7]]
		if fp&ms[7] == 0 {
			return i + 8, 0, true
		}
	}
	return i, fp, false
}

// tail hashes the bytes roll8 left, one at a time.
func tail(data []byte, i int, fp *uint64, mask uint64) (int, bool) {
	for ; i < len(data); i++ {
		*fp = *fp<<1 + gear[data[i]]
		if *fp&mask == 0 {
			return i + 1, true
		}
	}
	return i, false
}

// cutRef is the definition of cut, one byte per step, kept for tests.
func (c *cutter) cutRef(data []byte) int {
	n := len(data)
	if n <= c.min {
		return n
	}
	if n > c.max {
		n = c.max
	}
	var fp uint64
	for i := c.min; i < n; i++ {
		fp = fp<<1 + gear[data[i]]
		mask := c.maskL
		if i < c.normal {
			mask = c.maskS
		}
		if fp&mask == 0 {
			return i + 1
		}
	}
	return n
}
