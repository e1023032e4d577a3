package fleet

import (
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
)

// ImageBlock is the stretch of an image over which Image spreads its
// changes: each block of a changed image has one rewritten run.
const ImageBlock = 4 << 20

// Image writes size deterministic bytes for seed: seeded random bytes,
// incompressible, so a chunk's object is as large as the chunk and the
// interface counters compare with the release's bytes directly. With
// changed > 0 it writes the same image with a fraction changed of its
// bytes rewritten: in every ImageBlock one run of round(changed × block)
// bytes, at an offset drawn from the seed, so the changes are spread over
// the whole image and content-defined chunking keeps everything around
// them. Image(w, n, s, 0) is the base that Image(w, n, s, f) changes.
func Image(w io.Writer, size int64, seed uint64, changed float64) error {
	changed = min(max(changed, 0), 1)
	buf := make([]byte, ImageBlock)
	for b, off := uint64(0), int64(0); off < size; b, off = b+1, off+ImageBlock {
		blk := buf[:min(int64(ImageBlock), size-off)]
		fill(blk, rand.New(rand.NewPCG(seed, b)))
		if n := int(math.Round(changed * float64(len(blk)))); n > 0 {
			at := rand.New(rand.NewPCG(seed^0x5eed, b)).IntN(len(blk) - n + 1)
			fill(blk[at:at+n], rand.New(rand.NewPCG(seed^0xc4a9, b)))
		}
		if _, err := w.Write(blk); err != nil {
			return err
		}
	}
	return nil
}

func fill(b []byte, r *rand.Rand) {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	if i < len(b) {
		var t [8]byte
		binary.LittleEndian.PutUint64(t[:], r.Uint64())
		copy(b[i:], t[:])
	}
}
