package exchange

import (
	"math/bits"
	"sync"

	"github.com/shoalnet/shoal/swarm/wire"
)

// Bitmap is a set of chunk positions of one index, safe for concurrent
// use, in the layout of a Have's bitmap (position i is bit 0x80>>(i%8) of
// byte i/8). The engine keeps one per index it announces ([Engine.Held]);
// a [SlotProvider] may share it, so what is served and what is announced
// are the same set.
type Bitmap struct {
	mu    sync.RWMutex
	n     int
	b     []byte
	count int
}

// NewBitmap returns an empty set over n positions.
func NewBitmap(n int) *Bitmap { return &Bitmap{n: n, b: make([]byte, wire.BitmapLen(n))} }

// Len is the number of positions the set ranges over.
func (m *Bitmap) Len() int { return m.n }

// Has reports whether position i is in the set.
func (m *Bitmap) Has(i int) bool {
	if i < 0 || i >= m.n {
		return false
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.b[i/8]&(0x80>>(i%8)) != 0
}

// Count is the number of positions in the set.
func (m *Bitmap) Count() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.count
}

// Full reports whether every position is in the set.
func (m *Bitmap) Full() bool { return m.Count() == m.n }

// Set adds positions (those out of range are ignored) and returns the
// ones that were not in the set before, in the order given.
func (m *Bitmap) Set(positions []int) []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var added []int
	for _, i := range positions {
		if i < 0 || i >= m.n || m.b[i/8]&(0x80>>(i%8)) != 0 {
			continue
		}
		m.b[i/8] |= 0x80 >> (i % 8)
		m.count++
		added = append(added, i)
	}
	return added
}

// Or adds every position set in b, a bitmap in the same layout (a shorter
// b adds what it covers; bits past the last position are ignored), and
// returns the positions added.
func (m *Bitmap) Or(b []byte) []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var added []int
	for k := 0; k < len(b) && k < len(m.b); k++ {
		nb := b[k] &^ m.b[k]
		if k == len(m.b)-1 && m.n%8 != 0 {
			nb &= 0xff << (8 - m.n%8)
		}
		m.b[k] |= nb
		m.count += bits.OnesCount8(nb)
		for nb != 0 {
			z := bits.LeadingZeros8(nb)
			nb &^= 0x80 >> z
			added = append(added, k*8+z)
		}
	}
	return added
}

// Bytes returns a copy of the bitmap.
func (m *Bitmap) Bytes() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.b...)
}

// popcount counts the positions set in a bitmap.
func popcount(b []byte) int {
	c := 0
	for _, x := range b {
		c += bits.OnesCount8(x)
	}
	return c
}
