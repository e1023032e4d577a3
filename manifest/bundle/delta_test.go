package bundle

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/store"
)

// createWith writes a bundle with options o (Repo, Channel and Out
// filled in).
func (f *fixture) createWith(t testing.TB, o CreateOptions) (string, *Result) {
	t.Helper()
	o.Repo, o.Channel, o.Out = f.repo, "stable", filepath.Join(t.TempDir(), "b.tar")
	res, err := Create(context.Background(), o)
	if err != nil {
		t.Fatalf("create %+v: %v", o, err)
	}
	return o.Out, res
}

func TestCreateDeltaBundle(t *testing.T) {
	f := newFixtureWith(t, true, true)
	pd := f.published[2].Deltas
	if len(pd) != 2 || pd[1].Artifact != "rootfs" || pd[1].Target == "" || pd[0].Target != "" {
		t.Fatalf("fixture: want a delta target for rootfs only, got %+v", pd)
	}
	full, fr := f.create(t, 0)
	whole, wr := f.createWith(t, CreateOptions{From: 1, NoDeltas: true})
	deltas, dr := f.create(t, 1)
	t.Logf("bundles of release 2: full %d bytes, from 1 without deltas %d, with deltas %d (%d delta objects, %d bytes, for %d chunks; %d whole chunks)",
		fr.Bytes, wr.Bytes, dr.Bytes, dr.Deltas, dr.DeltaBytes, dr.ReplacedChunks, dr.Chunks)

	if fr.Deltas != 0 || fr.Info.Format != FormatVersion || wr.Deltas != 0 || wr.Info.Format != FormatVersion || len(wr.Info.Deltas) != 0 {
		t.Fatalf("deltas without from or with NoDeltas: %+v / %+v", fr.Info, wr.Info)
	}
	if dr.Info.Format != FormatDeltas || len(dr.Info.Deltas) != 1 || dr.Info.Deltas[0] != (DeltaRef{"rootfs", pd[1].DeltaIndex}) ||
		dr.DeltaIndexes != 1 || int(dr.DeltaIndexBytes) != pd[1].IndexBytes {
		t.Fatalf("delta bundle info: %+v, result %+v", dr.Info, dr)
	}
	if dr.Deltas == 0 || dr.ReplacedChunks != dr.Deltas || dr.Chunks+dr.ReplacedChunks != wr.Chunks ||
		dr.RawBytes+dr.DeltaRawBytes != wr.RawBytes || dr.ReplacedRawBytes != dr.DeltaRawBytes {
		t.Fatalf("delta bundle: %+v, without deltas %+v", dr, wr)
	}
	if !(dr.Bytes < wr.Bytes && wr.Bytes < fr.Bytes) || dr.DeltaBytes >= wr.ChunkBytes-dr.ChunkBytes {
		t.Fatalf("sizes: with deltas %d (%d of deltas), without %d, full %d", dr.Bytes, dr.DeltaBytes, wr.Bytes, fr.Bytes)
	}
	// Deterministic.
	again, _ := f.create(t, 1)
	a, _ := os.ReadFile(deltas)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Fatal("two delta bundles of the same repository differ")
	}

	for _, p := range []string{full, whole, deltas} {
		vr, err := Verify(context.Background(), p, f.verifyOptions())
		if err != nil {
			t.Fatalf("verify %s: %v", p, err)
		}
		if p == deltas && (vr.Deltas != dr.Deltas || vr.DeltaBytes != dr.DeltaBytes || vr.ReplacedChunks != dr.ReplacedChunks || vr.Chunks != dr.Chunks) {
			t.Fatalf("verify delta bundle: %+v, created %+v", vr, dr)
		}
	}
}

// TestDeviceInstallsFromDeltaBundle walks what a device on release 1
// does with a delta bundle, by hand: verify through the bundle, find the
// delta index of rootfs from 1 in it, build every new chunk from its delta
// against release 1's image, take the rest from release 1 or the bundle.
// The image must come out as published; a chunk a delta replaces is not in
// the bundle, and asking for it says why.
func TestDeviceInstallsFromDeltaBundle(t *testing.T) {
	f := newFixtureWith(t, false, true)
	path, res := f.create(t, 1)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	c, err := manifest.NewClient(manifest.ClientConfig{TrustedRoot: f.root, StateDir: t.TempDir(),
		Mirrors: []fetch.Fetcher{r}, Now: f.verifyOptions().Now})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Verify(ctx, manifest.Device{Channel: "stable", Hardware: "rpi4", Arch: "arm64", Installed: 1})
	if err != nil {
		t.Fatal(err)
	}
	local := chunksOf(t, f.images[1])
	built := 0
	for i, a := range v.Release.Artifacts {
		ix := v.Indexes[i]
		byPos := map[int64]delta.Entry{}
		var dix *delta.Index
		if dt, ok := v.Delta(a.Name, 1); ok {
			if dix, err = manifest.FetchDeltaIndex(ctx, r, dt, 0); err != nil {
				t.Fatalf("%s: delta index from the bundle: %v", a.Name, err)
			}
			for _, e := range dix.Entries {
				byPos[e.Pos] = e
			}
		}
		var img []byte
		for j := range ix.Chunks {
			id := ix.ID(j)
			data, ok := local[id.String()]
			if e, isDelta := byPos[int64(j)]; !ok && isDelta {
				obj, err := r.Fetch(ctx, manifest.DeltaPath(dix.ID(e)), int64(e.Size))
				if err != nil {
					t.Fatalf("%s chunk %d: delta: %v", a.Name, j, err)
				}
				if data, err = delta.ExpandFrom(nil, nil, id, obj, bytes.NewReader(f.images[1][a.Name]), dix.Limits()); err != nil {
					t.Fatalf("%s chunk %d: expand: %v", a.Name, j, err)
				}
				built++
				// The whole chunk is not in the bundle.
				_, err = manifest.FetchChunk(ctx, r, id, ix.Params.Max)
				if !errors.Is(err, fetch.ErrNotFound) || !errors.Is(err, ErrNeedsFrom) || !strings.Contains(err.Error(), "--from 1") {
					t.Fatalf("%s chunk %d replaced by a delta: fetched whole: %v", a.Name, j, err)
				}
			} else if !ok {
				if data, err = manifest.FetchChunk(ctx, r, id, ix.Params.Max); err != nil {
					t.Fatalf("%s chunk %d: %v", a.Name, j, err)
				}
			}
			img = append(img, data...)
		}
		if !bytes.Equal(img, f.images[2][a.Name]) {
			t.Fatalf("%s assembled from the delta bundle differs from the published image", a.Name)
		}
	}
	if built != res.Deltas {
		t.Fatalf("built %d chunks from deltas, the bundle has %d", built, res.Deltas)
	}
}

func TestVerifyRejectsDeltaBundles(t *testing.T) {
	f := newFixtureWith(t, false, true)
	deltas, _ := f.create(t, 1)
	whole, _ := f.createWith(t, CreateOptions{From: 1, NoDeltas: true})
	wholeEntries := map[string][]byte{}
	for _, e := range readEntries(t, whole) {
		wholeEntries[e.name] = e.data
	}
	// A chunk the deltas replace: in the bundle without deltas only.
	var replaced string
	var replacedObj []byte
	have := map[string]bool{}
	for _, e := range readEntries(t, deltas) {
		have[e.name] = true
	}
	for p, b := range wholeEntries {
		if strings.HasPrefix(p, "chunks/") && !have[p] {
			replaced, replacedObj = p, b
			break
		}
	}
	if replaced == "" {
		t.Fatal("no replaced chunk")
	}
	deltaObj := func(es []tarEntry) int {
		for i, e := range es {
			if strings.HasPrefix(e.name, "deltas/") && !strings.HasPrefix(e.name, "deltas/index/") {
				return i
			}
		}
		t.Fatal("no delta object")
		return -1
	}
	var objName, dixName string
	for _, tc := range []struct {
		name  string
		fn    func(es []tarEntry) []tarEntry
		is    error
		names func() string
	}{
		{"delta object damaged", func(es []tarEntry) []tarEntry {
			i := deltaObj(es)
			objName = es[i].name
			es[i].data = bytes.Clone(es[i].data)
			es[i].data[len(es[i].data)-1] ^= 1
			return es
		}, delta.ErrCorrupt, func() string { return objName }},
		{"delta object cut short", func(es []tarEntry) []tarEntry {
			i := deltaObj(es)
			objName = es[i].name
			es[i].data = es[i].data[:len(es[i].data)-1]
			return es
		}, delta.ErrCorrupt, func() string { return objName }},
		{"delta object removed", func(es []tarEntry) []tarEntry {
			i := deltaObj(es)
			objName = es[i].name
			return append(es[:i], es[i+1:]...)
		}, ErrMissing, func() string { return objName }},
		{"delta index damaged", func(es []tarEntry) []tarEntry {
			i := firstWith(es, "deltas/index/")
			dixName = es[i].name
			es[i].data = bytes.Clone(es[i].data)
			es[i].data[len(es[i].data)-1] ^= 1
			return es
		}, manifest.ErrIndexHash, func() string { return dixName }},
		{"delta index removed", func(es []tarEntry) []tarEntry {
			i := firstWith(es, "deltas/index/")
			return append(es[:i], es[i+1:]...)
		}, ErrMalformed, func() string { return "0 delta indexes" }}, // bundle.json names one: Open refuses
		{"replaced chunk added", func(es []tarEntry) []tarEntry {
			return append(es, tarEntry{replaced, replacedObj})
		}, ErrExtra, func() string { return replaced }},
		{"bundle.json names another delta index", func(es []tarEntry) []tarEntry {
			i := firstWith(es, "index/")
			other := strings.TrimPrefix(es[i].name, "index/") // an ID of the right form, not the delta index's
			j := bytes.Index(es[0].data, []byte(`"delta_index":"`)) + len(`"delta_index":"`)
			k := j + bytes.IndexByte(es[0].data[j:], '"')
			es[0].data = append(append(append([]byte(nil), es[0].data[:j]...), other...), es[0].data[k:]...)
			return es
		}, ErrMalformed, func() string { return "delta index" }},
		{"bundle.json drops its deltas", func(es []tarEntry) []tarEntry {
			j := bytes.Index(es[0].data, []byte(`,"deltas":[`))
			k := j + bytes.IndexByte(es[0].data[j:], ']') + 1
			es[0].data = append(append([]byte(nil), es[0].data[:j]...), es[0].data[k:]...)
			es[0].data = bytes.Replace(es[0].data, []byte(`"format":2`), []byte(`"format":1`), 1)
			return es
		}, ErrMalformed, func() string { return "delta" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := edit(t, deltas, tc.fn)
			_, err := Verify(context.Background(), p, f.verifyOptions())
			if !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.names()) {
				t.Fatalf("error %q does not name %q", err, tc.names())
			}
		})
	}
}

func TestImportRefusesDeltaBundle(t *testing.T) {
	f := newFixtureWith(t, false, true)
	path, _ := f.create(t, 1)
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	v, err := r.Verify(context.Background(), f.verifyOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Importable(); !errors.Is(err, ErrDeltaImport) || !strings.Contains(err.Error(), "--no-deltas") {
		t.Fatalf("Importable: %v", err)
	}
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Import(context.Background(), r, v, db, nil); !errors.Is(err, ErrDeltaImport) {
		t.Fatalf("Import: %v", err)
	}
	pins, err := db.Pins(context.Background())
	if err != nil || len(pins) != 0 {
		t.Fatalf("pins after a refused import: %v %v", pins, err)
	}
}

// TestOpenDeltaEntries: the reader accepts delta index and delta object
// entries at their repository paths and counts them, and refuses them
// anywhere else.
func TestOpenDeltaEntries(t *testing.T) {
	r, err := open(fuzzSeeds()[0])
	if err != nil {
		t.Fatalf("a well-formed bundle with deltas: %v", err)
	}
	if in := r.Info(); in.Counts.DeltaIndexes != 1 || in.Counts.Deltas != 1 || len(r.Paths()) != 4 {
		t.Fatalf("info %+v, paths %v", in, r.Paths())
	}
	if _, err := open(fuzzSeeds()[1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("counts naming absent deltas: %v", err)
	}
	tb := newTiny()
	for _, p := range []string{
		"deltas/index/" + tb.chunkID.String() + "x",
		"deltas/zz/" + tb.chunkID.String(), // wrong shard
		"deltas/" + tb.chunkID.String(),
		"deltas/index/sub/" + tb.chunkID.String(),
	} {
		if _, _, err := classify(p); err == nil {
			t.Errorf("classify %s: accepted", p)
		}
	}
}

// TestCreateDeltaRepoGaps: a repository that lists a delta index but does
// not hold its file (a mirror that copied only chunks/) gives a bundle of
// whole chunks for that artifact, noted, which verifies; one that holds
// the delta index but lacks a delta object it lists stops the create,
// naming the object, since devices on release 1 would fail on it.
func TestCreateDeltaRepoGaps(t *testing.T) {
	f := newFixtureWith(t, false, true)
	dixPath := manifest.DeltaIndexPath(mustCID(t, f.published[2].Deltas[1].DeltaIndex))
	orig := f.repo

	f.repo = filepath.Join(t.TempDir(), "no-index")
	copyTree(t, orig, f.repo)
	if err := os.Remove(filepath.Join(f.repo, filepath.FromSlash(dixPath))); err != nil {
		t.Fatal(err)
	}
	p, res := f.create(t, 1)
	if res.Info.Format != FormatVersion || res.Deltas != 0 || len(res.DeltaNotes) != 1 || !strings.Contains(res.DeltaNotes[0], dixPath) {
		t.Fatalf("create without the delta index file: %+v", res)
	}
	if _, err := Verify(context.Background(), p, f.verifyOptions()); err != nil {
		t.Fatalf("verify: %v", err)
	}

	f.repo = filepath.Join(t.TempDir(), "no-object")
	copyTree(t, orig, f.repo)
	objs, _ := filepath.Glob(filepath.Join(f.repo, "deltas", "??", "*"))
	if len(objs) == 0 {
		t.Fatal("no delta objects")
	}
	if err := os.Remove(objs[0]); err != nil {
		t.Fatal(err)
	}
	_, err := Create(context.Background(), CreateOptions{Repo: f.repo, Channel: "stable", From: 1, Out: filepath.Join(t.TempDir(), "b.tar")})
	if !errors.Is(err, fetch.ErrNotFound) || !strings.Contains(err.Error(), filepath.Base(objs[0])) {
		t.Fatalf("create without a delta object: %v", err)
	}
}

func mustCID(t *testing.T, s string) cid.Cid {
	t.Helper()
	id, err := cid.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
