package chunker

import "encoding/binary"

// Root returns the Merkle root over the index's chunks, computed with the
// index's hash function:
//
//	leaf(i)  = H(0x00 || size_i as uint64 big-endian || digest_i)
//	node     = H(0x01 || left || right)
//	root(n)  = H() for n = 0; leaf for n = 1; otherwise node(root of the
//	           first k leaves, root of the rest), k the largest power of two
//	           below n (the tree shape of RFC 6962, section 2.1).
//
// Binding the size into each leaf means a root also fixes every chunk
// boundary, so the root alone pins the artifact's bytes and layout.
func (ix *Index) Root() Digest {
	b := NewRootBuilder(ix.Hash)
	for _, e := range ix.Chunks {
		b.Add(e)
	}
	return b.Root()
}

// RootBuilder computes the Merkle root of a chunk sequence incrementally,
// in O(log n) memory, so an index need not be held whole to know its root.
// The zero value is not usable; use NewRootBuilder.
type RootBuilder struct {
	h Hash
	// stack holds the roots of complete subtrees of 2^k leaves, largest
	// first, with their sizes: the binary representation of the count.
	stack []subtree
}

type subtree struct {
	leaves uint64
	d      Digest
}

// NewRootBuilder starts a root over chunks hashed with h.
func NewRootBuilder(h Hash) *RootBuilder { return &RootBuilder{h: h} }

// Add appends one chunk.
func (b *RootBuilder) Add(e Entry) {
	var leaf [1 + 8 + DigestSize]byte
	binary.BigEndian.PutUint64(leaf[1:], uint64(e.Size))
	copy(leaf[9:], e.Digest[:])
	t := subtree{1, b.h.Sum(leaf[:])}
	// Merge equal-sized neighbours, as binary addition carries.
	for n := len(b.stack); n > 0 && b.stack[n-1].leaves == t.leaves; n-- {
		t = subtree{2 * t.leaves, b.node(b.stack[n-1].d, t.d)}
		b.stack = b.stack[:n-1]
	}
	b.stack = append(b.stack, t)
}

// Root returns the root over the chunks added so far. With the complete
// subtrees ordered largest first, folding them from the right gives the
// RFC 6962 shape: every left subtree is the largest power of two below
// the count.
func (b *RootBuilder) Root() Digest {
	if len(b.stack) == 0 {
		return b.h.sumParts()
	}
	d := b.stack[len(b.stack)-1].d
	for i := len(b.stack) - 2; i >= 0; i-- {
		d = b.node(b.stack[i].d, d)
	}
	return d
}

func (b *RootBuilder) node(l, r Digest) Digest {
	var n [1 + 2*DigestSize]byte
	n[0] = 0x01
	copy(n[1:], l[:])
	copy(n[1+DigestSize:], r[:])
	return b.h.Sum(n[:])
}
