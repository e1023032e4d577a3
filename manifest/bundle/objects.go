package bundle

import (
	"context"
	"fmt"
	"sort"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
)

// objectSet is what a bundle must carry of chunk and delta objects. Create
// and Verify both compute it with planObjects, from the same signed
// indexes and delta indexes, so what one writes the other expects.
type objectSet struct {
	chunks map[string]int   // chunk path -> the largest maximum chunk size of an index listing it
	sizes  map[string]int64 // chunk path -> its raw size
	deltas map[string]deltaObject
	// skipped are the release's distinct chunks release From has;
	// replaced those left out because deltas build them.
	skipped, replaced int
	// releaseChunks are the release's distinct chunks.
	releaseChunks int
	// replacedRaw are the raw bytes of the replaced chunks.
	replacedRaw int64
}

// deltaObject is what the signed delta index says of one delta object.
type deltaObject struct {
	dix *manifest.CheckedDeltaIndex
	o   manifest.DeltaObject
	raw int64 // the chunk it builds
}

// artifactPlan is one artifact of the release as planObjects sees it.
type artifactPlan struct {
	ix   *chunker.Index
	dix  *manifest.CheckedDeltaIndex // nil: no delta index for this artifact in the bundle
	name string
}

// planObjects decides the bundle's objects: every distinct chunk of the
// release's artifacts that release From's indexes lack, except those
// replaced by a delta. A chunk is replaced only when every artifact that
// needs it has a delta for it: a chunk two artifacts share, one of them
// without a delta, stays whole (the delta is carried all the same, so the
// artifact with it uses it). Delta objects are carried for every entry of
// a delta index whose chunk the bundle would otherwise need.
func planObjects(arts []artifactPlan, from []*chunker.Index) objectSet {
	s := objectSet{chunks: map[string]int{}, sizes: map[string]int64{}, deltas: map[string]deltaObject{}}
	for _, a := range arts {
		for i, c := range a.ix.Chunks {
			p := manifest.ChunkPath(a.ix.ID(i))
			s.chunks[p] = max(s.chunks[p], a.ix.Params.Max)
			s.sizes[p] = int64(c.Size)
		}
	}
	s.releaseChunks = len(s.chunks)
	for _, ix := range from {
		for i := range ix.Chunks {
			p := manifest.ChunkPath(ix.ID(i))
			if _, ok := s.chunks[p]; ok {
				delete(s.chunks, p)
				s.skipped++
			}
		}
	}
	// needers counts the artifacts that need each chunk, covered those of
	// them with a delta for it.
	needers, covered := map[string]int{}, map[string]int{}
	for _, a := range arts {
		seen := map[string]bool{}
		for i := range a.ix.Chunks {
			p := manifest.ChunkPath(a.ix.ID(i))
			if _, ok := s.chunks[p]; ok && !seen[p] {
				seen[p] = true
				needers[p]++
			}
		}
		if a.dix == nil {
			continue
		}
		seen = map[string]bool{}
		for _, o := range a.dix.Objects() {
			p := manifest.ChunkPath(a.ix.ID(int(o.Pos)))
			if _, ok := s.chunks[p]; !ok || seen[p] {
				continue
			}
			seen[p] = true
			covered[p]++
			s.deltas[manifest.DeltaPath(o.ID)] = deltaObject{dix: a.dix, o: o, raw: int64(a.ix.Chunks[o.Pos].Size)}
		}
	}
	for p, n := range covered {
		if n == needers[p] {
			s.replacedRaw += s.sizes[p]
			delete(s.chunks, p)
			s.replaced++
		}
	}
	return s
}

// paths returns the object paths of s, sorted: the order they take in
// the bundle.
func (s objectSet) paths() []string {
	out := make([]string, 0, len(s.chunks)+len(s.deltas))
	for p := range s.chunks {
		out = append(out, p)
	}
	for p := range s.deltas {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// rawBytes are the decoded bytes the objects of s give: the chunks, and
// the chunks the deltas build.
func (s objectSet) rawBytes() int64 {
	var n int64
	for p := range s.chunks {
		n += s.sizes[p]
	}
	for _, d := range s.deltas {
		n += d.raw
	}
	return n
}

// checked is one object fetched and checked by checkObject.
type checked struct {
	obj   []byte
	raw   int
	delta bool
}

// checkObject fetches the object at p from f and checks it: a chunk
// object decodes to the bytes of its ID; a delta object has the length
// and digest its signed delta index entry gives and a header within the
// delta index's limits (it cannot be expanded here: that needs the base
// image, which only a device holds).
func (s objectSet) checkObject(ctx context.Context, f fetch.Fetcher, p string) (checked, error) {
	if d, ok := s.deltas[p]; ok {
		// Fetched up to the format's bound, so that an object of the
		// wrong length is reported as the corrupt delta it is.
		obj, err := f.Fetch(ctx, p, manifest.MaxDeltaObjectSize(chunker.MaxChunkCeil))
		if err != nil {
			return checked{}, err
		}
		if err := d.dix.CheckObject(d.o, obj, int(d.raw)); err != nil {
			return checked{}, err
		}
		return checked{obj, int(d.raw), true}, nil
	}
	id, err := idOfChunkPath(p)
	if err != nil {
		return checked{}, err
	}
	obj, err := f.Fetch(ctx, p, manifest.MaxObjectSize(s.chunks[p]))
	if err != nil {
		return checked{}, err
	}
	data, err := manifest.DecodeChunk(id, obj, s.chunks[p])
	if err != nil {
		return checked{}, fmt.Errorf("%s: %w", p, err)
	}
	return checked{obj, len(data), false}, nil
}

// deltaIndexFor fetches and checks the delta index of dt from f: the
// signed length, sha256 and content ID, then that it belongs to the pair
// (base, target) of indexes. It returns the bytes too, which a bundle
// copies unchanged.
func deltaIndexFor(ctx context.Context, f fetch.Fetcher, dt manifest.DeltaTarget, base, target *chunker.Index) (*manifest.CheckedDeltaIndex, []byte, error) {
	p := manifest.DeltaIndexPath(dt.DeltaIndex)
	if dt.Length <= 0 || dt.Length > manifest.DefaultLimits.Index {
		return nil, nil, fmt.Errorf("%s: %w: signed length %d (limit %d)", p, manifest.ErrTooLarge, dt.Length, manifest.DefaultLimits.Index)
	}
	b, err := f.Fetch(ctx, p, dt.Length)
	if err != nil {
		return nil, nil, err
	}
	dix, err := manifest.CheckDeltaIndex(b, dt, base, target)
	if err != nil {
		return nil, nil, err
	}
	return dix, b, nil
}
