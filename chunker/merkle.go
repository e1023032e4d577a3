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
	if len(ix.Chunks) == 0 {
		return ix.Hash.sumParts()
	}
	level := make([]Digest, len(ix.Chunks))
	var leaf [1 + 8 + DigestSize]byte
	for i, e := range ix.Chunks {
		leaf[0] = 0x00
		binary.BigEndian.PutUint64(leaf[1:], uint64(e.Size))
		copy(leaf[9:], e.Digest[:])
		level[i] = ix.Hash.Sum(leaf[:])
	}
	return ix.Hash.merkle(level)
}

// merkle folds leaf hashes into the RFC 6962-shaped root. Pairing adjacent
// nodes level by level, and carrying an odd last node up unchanged, builds
// exactly the tree that splits at the largest power of two.
func (h Hash) merkle(level []Digest) Digest {
	var node [1 + 2*DigestSize]byte
	node[0] = 0x01
	for len(level) > 1 {
		next := level[:0]
		for i := 0; i+1 < len(level); i += 2 {
			copy(node[1:], level[i][:])
			copy(node[1+DigestSize:], level[i+1][:])
			next = append(next, h.Sum(node[:]))
		}
		if len(level)%2 == 1 {
			next = append(next, level[len(level)-1])
		}
		level = next
	}
	return level[0]
}
