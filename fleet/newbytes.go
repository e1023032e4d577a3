package fleet

import "github.com/shoalnet/shoal/chunker"

// NewBytes returns what a release adds over what a device holds: the
// bytes of the distinct chunks of next that held lacks (held may be nil:
// a device with nothing), each counted once, and how many chunks that is.
// It is what must cross a site's uplink at least once, and what `shoal
// diff` reports as new_bytes.
func NewBytes(held, next *chunker.Index) (bytes int64, chunks int) {
	have := make(map[chunker.Digest]struct{})
	if held != nil {
		for _, e := range held.Chunks {
			have[e.Digest] = struct{}{}
		}
	}
	for _, e := range next.Chunks {
		if _, ok := have[e.Digest]; ok {
			continue
		}
		have[e.Digest] = struct{}{}
		bytes += int64(e.Size)
		chunks++
	}
	return bytes, chunks
}
