package bundle

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"testing"

	"github.com/shoalnet/shoal/store"
)

// TestImport: a verified full bundle goes into a node's store whole: every
// chunk the release needs, its indexes, and one pin per artifact, from
// which each image can be rebuilt byte for byte.
func TestImport(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, true)
	path, _ := f.create(t, 0)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	if _, err := Import(ctx, r, nil, db, nil); !errors.Is(err, ErrUnverified) {
		t.Fatalf("Import without verification: %v", err)
	}
	v, err := r.Verify(ctx, f.verifyOptions())
	if err != nil {
		t.Fatal(err)
	}
	var reports [][2]int64
	res, err := Import(ctx, r, v, db, func(done, total int64) { reports = append(reports, [2]int64{done, total}) })
	if err != nil {
		t.Fatal(err)
	}

	want := f.indexChunks(t, 2)
	if res.Chunks != len(want) || res.Indexes != 2 || res.Info.Version != 2 {
		t.Fatalf("imported %d chunks, %d indexes of v%d; want %d chunks, 2 indexes of v2", res.Chunks, res.Indexes, res.Info.Version, len(want))
	}
	if len(reports) != res.Chunks {
		t.Fatalf("%d progress reports for %d chunks", len(reports), res.Chunks)
	}
	for i, rep := range reports {
		if rep[1] <= 0 || rep[0] > rep[1] || (i > 0 && rep[0] <= reports[i-1][0]) {
			t.Fatalf("progress report %d: %v after %v", i, rep, reports[max(i-1, 0)])
		}
	}
	if last := reports[len(reports)-1]; last[0] != last[1] {
		t.Fatalf("last progress report %v: not done", last)
	}

	pins, err := db.Pins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range res.Pins {
		names = append(names, p.Name)
		if id, ok := pins[p.Name]; !ok || id.String() != p.Index {
			t.Fatalf("pin %s: store has %v, result says %s", p.Name, id, p.Index)
		}
	}
	sort.Strings(names)
	if len(pins) != 2 || len(names) != 2 || names[0] != "stable/2/boot" || names[1] != "stable/2/rootfs" {
		t.Fatalf("pins %v, result %v", pins, names)
	}

	var raw int64
	seen := map[string]bool{}
	for _, a := range f.published[2].Artifacts {
		id := pins["stable/2/"+a.Name]
		if id.String() != a.Index {
			t.Fatalf("%s pinned to %s, published as %s", a.Name, id, a.Index)
		}
		ix, err := db.GetIndex(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var img []byte
		for i := range ix.Chunks {
			c, err := db.Get(ctx, ix.ID(i))
			if err != nil {
				t.Fatalf("%s chunk %d: %v", a.Name, i, err)
			}
			if k := ix.ID(i).String(); !seen[k] {
				seen[k] = true
				raw += int64(len(c))
			}
			img = append(img, c...)
		}
		if !bytes.Equal(img, f.images[2][a.Name]) {
			t.Fatalf("%s rebuilt from the store differs from the published image", a.Name)
		}
	}
	if res.RawBytes != raw {
		t.Fatalf("RawBytes %d, the distinct chunks hold %d", res.RawBytes, raw)
	}
}
