package sim

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoalnet/shoal/chunker"
)

// A release from two real index files: the devices holding the base need
// exactly the new index's chunks the old one lacks.
func TestRealIndexes(t *testing.T) {
	dir := t.TempDir()
	old := make([]byte, 4<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range old {
		old[i] = byte(rng.Uint32())
	}
	neu := bytes.Clone(old)
	for i := 1 << 20; i < 1<<20+200<<10; i++ {
		neu[i] = byte(rng.Uint32())
	}
	write := func(name string, data []byte) (string, *chunker.Index) {
		ix, err := chunker.Split(context.Background(), bytes.NewReader(data), chunker.Options{})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, ix.Encode(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p, ix
	}
	op, oix := write("old.idx", old)
	np, nix := write("new.idx", neu)
	have := map[chunker.Digest]bool{}
	for _, c := range oix.Chunks {
		have[c.Digest] = true
	}
	var want int64
	for _, c := range nix.Chunks {
		if !have[c.Digest] {
			have[c.Digest] = true
			want += int64(c.Size)
		}
	}
	sc := base()
	sc.Topology.Sites = 2
	sc.Release.OldIndex, sc.Release.NewIndex = op, np
	r := run(t, sc, 1)
	if r.NewBytesPerSite[0] != want || r.OriginEgressBytes != 2*want {
		t.Errorf("new bytes %d, origin sent %d; want %d per site", r.NewBytesPerSite[0], r.OriginEgressBytes, want)
	}
	if want <= 0 || want >= nix.Size/2 {
		t.Errorf("the change made %d of %d bytes new", want, nix.Size)
	}
}
