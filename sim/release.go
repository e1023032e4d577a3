package sim

import (
	"fmt"
	"math"
	"os"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/sim/scenario"
)

// release is what the devices download, cut into the pieces the
// scheduler schedules: consecutive chunks of the index grouped to about
// Release.PieceSize bytes (one chunk per piece without it).
type release struct {
	// full[p] is what piece p costs a device that holds nothing of the
	// release; fresh[p] what it costs a device holding the base release
	// (its chunks the base lacks). A chunk that occurs more than once in
	// the release is counted at its first position only: a device copies
	// the later ones locally.
	full, fresh []int64
	totalFull   int64
	totalFresh  int64
	chunks      int
}

// changeBlock is the span over which a synthetic release's changes are
// spread: in every block of this size one run of Changed × block bytes is
// rewritten, as the fleet harness's v2 images are (docs/fleet.md).
const changeBlock = 4 << 20

func buildRelease(sc *scenario.Scenario, seed int64) (*release, error) {
	r := sc.Release
	if r.PieceSize < 0 {
		return nil, fmt.Errorf("%w: piece size %d", ErrInvalid, r.PieceSize)
	}
	var sizes []int64
	var freshC, fullC []bool // per chunk: costs a base holder, costs anyone
	if r.NewIndex != "" {
		var err error
		sizes, freshC, fullC, err = indexChunks(sc)
		if err != nil {
			return nil, err
		}
	} else {
		switch {
		case r.Size <= 0:
			return nil, fmt.Errorf("%w: release size %d", ErrInvalid, r.Size)
		case !(r.Changed >= 0 && r.Changed <= 1):
			return nil, fmt.Errorf("%w: changed fraction %v (0..1)", ErrInvalid, r.Changed)
		case r.ChunkSize < 0:
			return nil, fmt.Errorf("%w: chunk size %d", ErrInvalid, r.ChunkSize)
		}
		sizes, freshC = synthChunks(r, seed)
		fullC = make([]bool, len(sizes))
		for i := range fullC {
			fullC[i] = true
		}
	}
	rel := &release{chunks: len(sizes)}
	var pf, pn, acc int64
	flush := func() {
		rel.full = append(rel.full, pf)
		rel.fresh = append(rel.fresh, pn)
		rel.totalFull += pf
		rel.totalFresh += pn
		pf, pn, acc = 0, 0, 0
	}
	for i, s := range sizes {
		if fullC[i] {
			pf += s
		}
		if freshC[i] {
			pn += s
		}
		acc += s
		if acc >= r.PieceSize {
			flush()
		}
	}
	if acc > 0 {
		flush()
	}
	if len(rel.full) == 0 {
		return nil, fmt.Errorf("%w: an empty release", ErrInvalid)
	}
	return rel, nil
}

// synthChunks draws a synthetic release: chunk sizes around the mean as
// FastCDC's cluster (a quarter of the mean plus an exponential tail,
// capped at four times the mean), and which chunks are new.
func synthChunks(r scenario.Release, seed int64) (sizes []int64, fresh []bool) {
	rng := stream(seed, streamRelease, 0)
	mean := r.ChunkSize
	if mean <= 0 {
		mean = 64 << 10
	}
	for off := int64(0); off < r.Size; {
		s := int64(float64(mean)/4 + float64(3*mean)/4*rng.ExpFloat64())
		s = min(max(s, 1), 4*mean, r.Size-off)
		sizes = append(sizes, s)
		off += s
	}
	fresh = make([]bool, len(sizes))
	switch {
	case r.Changed >= 1:
		for i := range fresh {
			fresh[i] = true
		}
	case r.Changed > 0:
		block := min(int64(changeBlock), r.Size)
		run := int64(math.Ceil(r.Changed * float64(block)))
		c, off := 0, int64(0)
		for b := int64(0); b < r.Size; b += block {
			at := b + int64(rng.Float64()*float64(block-run))
			end := min(at+run, r.Size)
			// Chunks overlapping the rewritten run are new: content-defined
			// boundaries resynchronise right after a change.
			for c < len(sizes) && off+sizes[c] <= at {
				off += sizes[c]
				c++
			}
			for k, o := c, off; k < len(sizes) && o < end; k++ {
				fresh[k] = true
				o += sizes[k]
			}
		}
	}
	return sizes, fresh
}

// indexChunks reads the release from two real index files (shoal chunk):
// a chunk costs a base holder when the old index lacks it, and anyone at
// its first position only.
func indexChunks(sc *scenario.Scenario) (sizes []int64, fresh, full []bool, err error) {
	read := func(p string) (*chunker.Index, error) {
		if p == "" {
			return nil, nil
		}
		// scenario.Load stores the path joined to the file's directory
		// already: it opens as it is.
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("sim: release index: %w", err)
		}
		ix, err := chunker.DecodeIndex(b)
		if err != nil {
			return nil, fmt.Errorf("sim: release index %s: %w", p, err)
		}
		return ix, nil
	}
	nx, err := read(sc.Release.NewIndex)
	if err != nil {
		return nil, nil, nil, err
	}
	ox, err := read(sc.Release.OldIndex)
	if err != nil {
		return nil, nil, nil, err
	}
	old := map[chunker.Digest]bool{}
	if ox != nil {
		for _, e := range ox.Chunks {
			old[e.Digest] = true
		}
	}
	seen := map[chunker.Digest]bool{}
	for _, e := range nx.Chunks {
		first := !seen[e.Digest]
		seen[e.Digest] = true
		sizes = append(sizes, int64(e.Size))
		full = append(full, first)
		fresh = append(fresh, first && !old[e.Digest])
	}
	return sizes, fresh, full, nil
}
