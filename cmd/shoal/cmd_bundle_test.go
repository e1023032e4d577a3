package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/manifest/bundle"
	"github.com/shoalnet/shoal/store"
)

func TestBundleCLI(t *testing.T) {
	keys, repo, _ := publishTwo(t)
	root := filepath.Join(keys, "root.json")
	dir := t.TempDir()
	full, delta := filepath.Join(dir, "full.tar"), filepath.Join(dir, "delta.tar")

	out, errs, code := runCLI(t, "bundle", "create", "--repo", repo, "--channel", "stable", "--version", "2", "-o", full, "--json")
	if code != 0 {
		t.Fatalf("create: %d %s", code, errs)
	}
	var cr bundleCreateJSON
	if err := json.Unmarshal([]byte(out), &cr); err != nil {
		t.Fatalf("create --json: %v\n%s", err, out)
	}
	if cr.Version != 2 || cr.Chunks == 0 || cr.Chunks != cr.ReleaseChunks || cr.Indexes != 1 {
		t.Fatalf("create: %+v", cr)
	}
	st, err := os.Stat(full)
	if err != nil || st.Size() != cr.Bytes {
		t.Fatalf("bundle file %v, reported %d bytes", err, cr.Bytes)
	}
	out, errs, code = runCLI(t, "bundle", "create", "--repo", repo, "--channel", "stable", "--from", "1", "-o", delta)
	if code != 0 || !strings.Contains(out, "left out, release 1 has them") {
		t.Fatalf("create --from: %d %s %s", code, out, errs)
	}

	// Offline: the repository is gone.
	if err := os.RemoveAll(repo); err != nil {
		t.Fatal(err)
	}
	out, errs, code = runCLI(t, "bundle", "verify", full, "--root", root, "--json")
	if code != 0 {
		t.Fatalf("verify: %d %s", code, errs)
	}
	var vr bundleVerifyJSON
	if err := json.Unmarshal([]byte(out), &vr); err != nil {
		t.Fatalf("verify --json: %v\n%s", err, out)
	}
	// The key directory has a log key, so publish logged both targets
	// versions; without --log-key the checkpoint's signature is unchecked.
	if vr.Chunks != cr.Chunks || vr.Hardware != "rpi4" || len(vr.Artifacts) != 1 ||
		vr.Log == nil || vr.Log.Signed || vr.Log.TreeSize != 2 || vr.Log.Entry != 1 {
		t.Fatalf("verify: %+v (log %+v)", vr, vr.Log)
	}
	// --require-log takes the log key provisioned next to the root, and
	// checks it as a device does.
	out, errs, code = runCLI(t, "bundle", "verify", full, "--root", root, "--require-log", "--state", filepath.Join(dir, "trust"), "--json")
	vr = bundleVerifyJSON{}
	if code != 0 || json.Unmarshal([]byte(out), &vr) != nil || vr.Log == nil || !vr.Log.Signed {
		t.Fatalf("verify --require-log: %d %s %s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "trust", "log.checkpoint")); err != nil {
		t.Fatalf("verify --require-log --state did not remember the checkpoint: %v", err)
	}
	out, errs, code = runCLI(t, "bundle", "verify", delta, "--root", root, "--hardware", "rpi4")
	if code != 0 || !strings.Contains(out, "more come from release 1") {
		t.Fatalf("verify --from bundle: %d %s %s", code, out, errs)
	}
	if _, errs, code = runCLI(t, "bundle", "verify", delta, "--root", root, "--hardware", "other"); code != 1 || !strings.Contains(errs, "other hardware") {
		t.Fatalf("verify for other hardware: %d %s", code, errs)
	}

	// Bad bytes: exit code 3, naming the entry.
	b, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("chunks/"))
	bad := bytes.Clone(b)
	bad[i+1024+100] ^= 0xff // inside the first chunk's data
	badPath := filepath.Join(dir, "bad.tar")
	if err := os.WriteFile(badPath, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code = runCLI(t, "bundle", "verify", badPath, "--root", root); code != 3 || !strings.Contains(errs, "chunks/") {
		t.Fatalf("verify of a corrupt bundle: %d %s", code, errs)
	}
	if err := os.WriteFile(badPath, b[:len(b)-700], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code = runCLI(t, "bundle", "verify", badPath, "--root", root); code != 3 || !strings.Contains(errs, "truncated") {
		t.Fatalf("verify of a truncated bundle: %d %s", code, errs)
	}
	if _, errs, code = runCLI(t, "bundle", "import", badPath, "--store", filepath.Join(dir, "nostore"), "--root", root); code != 3 {
		t.Fatalf("import of a truncated bundle: %d %s", code, errs)
	}
	// Without the trusted root, import would pin whatever the bundle claims.
	if _, errs, code = runCLI(t, "bundle", "import", full, "--store", filepath.Join(dir, "nostore")); code != 2 || !strings.Contains(errs, "--root") {
		t.Fatalf("import without --root: %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "nostore")); err == nil {
		t.Fatal("a refused import created the store")
	}

	// Import, then serve release 2's chunks from the store: the image
	// reassembles byte for byte.
	storeDir := filepath.Join(dir, "store")
	out, errs, code = runCLI(t, "bundle", "import", full, "--store", storeDir, "--root", root, "--json")
	if code != 0 {
		t.Fatalf("import: %d %s", code, errs)
	}
	var ir importJSON
	if err := json.Unmarshal([]byte(out), &ir); err != nil {
		t.Fatalf("import --json: %v\n%s", err, out)
	}
	if ir.Chunks != cr.Chunks || ir.Indexes != 1 || len(ir.Pins) != 1 || ir.Pins[0].Name != "stable/2/rootfs" || !ir.Verified {
		t.Fatalf("import: %+v", ir)
	}
	db, err := store.Open(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	pins, err := db.Pins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ixID, ok := pins["stable/2/rootfs"]
	if !ok || ixID.String() != ir.Pins[0].Index {
		t.Fatalf("pins %v", pins)
	}
	ix, err := db.GetIndex(ctx, ixID)
	if err != nil {
		t.Fatal(err)
	}
	var img []byte
	for j := range ix.Chunks {
		data, err := db.Get(ctx, ix.ID(j))
		if err != nil {
			t.Fatalf("chunk %d from the store: %v", j, err)
		}
		img = append(img, data...)
	}
	want := writeImage(t, filepath.Join(dir, "v2.img"), 1<<20, 2)
	if !bytes.Equal(img, want) {
		t.Fatal("release 2 served from the store differs from its image")
	}
	// Garbage collection keeps a pinned release's chunks.
	if _, err := db.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := db.Has(ctx, ix.ID(0)); !ok || err != nil {
		t.Fatalf("after GC: %v %v", ok, err)
	}
}

func TestBundleCLIUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bundle", "create", "--channel", "stable", "-o", "x.tar"},
		{"bundle", "create", "--repo", "r", "-o", "x.tar"},
		{"bundle", "create", "--repo", "r", "--channel", "stable"},
		{"bundle", "verify", "x.tar"},
		{"bundle", "verify", "--root", "root.json"},
		{"bundle", "import", "x.tar"},
		{"bundle", "verify", "x.tar", "--root", "r.json", "--require-log"},
	} {
		if _, errs, code := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, errs)
		}
	}
	out, _, code := runCLI(t, "bundle", "create", "--help")
	if code != 0 || !strings.Contains(out, "shoal bundle create --repo repo/ --channel stable -o stable.tar") {
		t.Fatalf("help: %d %s", code, out)
	}
}

// TestBundleImportForeignRoot: a bundle signed under keys the devices do
// not trust is refused by import as by verify (exit 3), and no store is
// created: nothing it claims gets pinned.
func TestBundleImportForeignRoot(t *testing.T) {
	_, repo, _ := publishTwo(t)
	dir := t.TempDir()
	other := filepath.Join(dir, "other-keys")
	if _, errs, code := runCLI(t, "keys", "init", other); code != 0 {
		t.Fatal(errs)
	}
	b := filepath.Join(dir, "b.tar")
	if _, errs, code := runCLI(t, "bundle", "create", "--repo", repo, "--channel", "stable", "-o", b); code != 0 {
		t.Fatal(errs)
	}
	foreign := filepath.Join(other, "root.json")
	if _, errs, code := runCLI(t, "bundle", "verify", b, "--root", foreign); code != exitIntegrity {
		t.Fatalf("verify under a foreign root: %d %s", code, errs)
	}
	storeDir := filepath.Join(dir, "store")
	if _, errs, code := runCLI(t, "bundle", "import", b, "--store", storeDir, "--root", foreign); code != exitIntegrity {
		t.Fatalf("import under a foreign root: %d %s", code, errs)
	}
	if _, err := os.Stat(storeDir); err == nil {
		t.Fatal("a refused import created the store")
	}
}

// TestBundleDeltas: a bundle made --from 1 over a repository published
// with --delta-from 1 carries the delta index and its delta objects
// instead of the chunks they build, is smaller than the bundle without
// them, verifies, and installs on a device on v1 from deltas; a device
// not on v1, a damaged delta and a damaged delta index each fail clearly,
// leaving the running slot as it was.
func TestBundleDeltas(t *testing.T) {
	dir := t.TempDir()
	must := mustCLI(t)
	img2, keys, repo := publishV1(t, dir)
	root := filepath.Join(keys, "root.json")
	devs := devicesOnV1(t, dir, keys, repo, "v1", "v1-bad", "fresh")
	must("publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "2", "--delta-from", "1", "rootfs="+img2)

	create := func(name string, args ...string) (bundleCreateJSON, string) {
		t.Helper()
		p := filepath.Join(dir, name)
		var cr bundleCreateJSON
		out := must(append([]string{"bundle", "create", "--repo", repo, "--channel", "stable", "-o", p, "--json"}, args...)...)
		if err := json.Unmarshal([]byte(out), &cr); err != nil {
			t.Fatalf("create --json: %v\n%s", err, out)
		}
		return cr, p
	}
	full, _ := create("full.tar")
	whole, _ := create("whole.tar", "--from", "1", "--no-deltas")
	dc, deltaPath := create("delta.tar", "--from", "1")
	t.Logf("v1 -> v2 bundles (2 MiB image): full %d bytes, --from 1 --no-deltas %d, --from 1 %d (%d delta objects, %d bytes, for %d chunks of %d raw bytes; %d whole chunks, %d bytes)",
		full.Bytes, whole.Bytes, dc.Bytes, dc.DeltaObjects, dc.DeltaBytes, dc.ReplacedChunks, dc.ReplacedRawBytes, dc.Chunks, dc.ChunkBytes)
	if full.DeltaIndexes != 0 || whole.DeltaIndexes != 0 || whole.DeltaObjects != 0 {
		t.Fatalf("deltas without --from, or with --no-deltas: %+v %+v", full, whole)
	}
	if dc.DeltaIndexes != 1 || dc.DeltaObjects == 0 || dc.ReplacedChunks != dc.DeltaObjects ||
		dc.Chunks+dc.ReplacedChunks != whole.Chunks || dc.DeltaBytes*4 > whole.ChunkBytes-dc.ChunkBytes {
		t.Fatalf("create --from 1 with deltas: %+v (without deltas: %+v)", dc, whole)
	}
	if !(dc.Bytes < whole.Bytes && whole.Bytes < full.Bytes) {
		t.Fatalf("sizes: with deltas %d, without %d, full %d", dc.Bytes, whole.Bytes, full.Bytes)
	}
	// Deterministic: the same repository gives the same bytes.
	_, again := create("again.tar", "--from", "1")
	a, _ := os.ReadFile(deltaPath)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Fatal("two bundles of the same repository state differ")
	}

	out := must("bundle", "verify", deltaPath, "--root", root, "--json")
	var vr bundleVerifyJSON
	if err := json.Unmarshal([]byte(out), &vr); err != nil {
		t.Fatal(err)
	}
	if vr.DeltaObjects != dc.DeltaObjects || vr.DeltaBytes != dc.DeltaBytes || vr.Replaced != dc.ReplacedChunks || vr.Chunks != dc.Chunks {
		t.Fatalf("verify: %+v, created %+v", vr, dc)
	}

	// Checked for a device on another release: it could not install it.
	if _, errs, code := runCLI(t, "bundle", "verify", deltaPath, "--root", root, "--installed-version", "2"); code != exitFailure ||
		!strings.Contains(errs, "--from 1") {
		t.Fatalf("verify for a device on v2: %d %s", code, errs)
	}

	// A node's store takes whole chunks only.
	if _, errs, code := runCLI(t, "bundle", "import", deltaPath, "--store", filepath.Join(dir, "store"), "--root", root); code != exitFailure ||
		!strings.Contains(errs, "--no-deltas") {
		t.Fatalf("import of a delta bundle: %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); err == nil {
		t.Fatal("a refused import created the store")
	}

	// Damaged copies: one delta object, the delta index.
	br, err := bundle.Open(deltaPath)
	if err != nil {
		t.Fatal(err)
	}
	var objPath, dixPath string
	for _, p := range br.Paths() {
		switch {
		case strings.HasPrefix(p, "deltas/index/"):
			dixPath = p
		case strings.HasPrefix(p, "deltas/") && objPath == "":
			objPath = p
		}
	}
	br.Close()
	if objPath == "" || dixPath == "" {
		t.Fatalf("no delta object or delta index in %v", br.Paths())
	}
	badObj := damageEntry(t, a, objPath, filepath.Join(dir, "bad-delta.tar"))
	badIdx := damageEntry(t, a, dixPath, filepath.Join(dir, "bad-index.tar"))
	if _, errs, code := runCLI(t, "bundle", "verify", badObj, "--root", root); code != exitIntegrity || !strings.Contains(errs, objPath) {
		t.Fatalf("verify with a damaged delta object: %d %s", code, errs)
	}
	if _, errs, code := runCLI(t, "bundle", "verify", badIdx, "--root", root); code != exitIntegrity || !strings.Contains(errs, dixPath) {
		t.Fatalf("verify with a damaged delta index: %d %s", code, errs)
	}

	// A device on v1 builds the replaced chunks from the bundle's deltas.
	var r applyJSON
	out = must("update", "apply", "--config", devs["v1"], "--source", deltaPath, "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	s := r.Stats
	if r.Version != 2 || s.DeltaBase != 1 || s.DeltaChunks != dc.DeltaObjects || s.DeltaBytes != dc.DeltaBytes ||
		s.DeltaIndexBytes != dc.DeltaIndexBytes || s.DeltaFailed != 0 || s.FetchedChunks != dc.Chunks {
		t.Fatalf("apply from the delta bundle: %s", out)
	}
	must("device", "reboot", "--config", devs["v1"])
	if out := must("update", "boot-check", "--config", devs["v1"], "--json"); !strings.Contains(out, `"committed": true`) {
		t.Fatalf("v2 from the delta bundle does not commit: %s", out)
	}

	// A device without v1, and a device on v1 given a damaged delta: the
	// whole chunk is not in the bundle, so the install stops, naming what
	// is missing and what to use; the running slot and state stay.
	freshB, err := os.ReadFile(filepath.Join(filepath.Dir(devs["fresh"]), "slot-b.img"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dev, src, slot string
		want           []string
		version        string
	}{
		{"fresh", deltaPath, "slot-a.img", []string{"--from 1", "release 1", "full bundle"}, `"active_version": 0`},
		{"v1-bad", badObj, "slot-b.img", []string{"--from 1", filepath.Base(objPath), "corrupt", "cannot use"}, `"active_version": 1`},
	} {
		slot := filepath.Join(filepath.Dir(devs[c.dev]), c.slot)
		before, err := os.ReadFile(slot)
		if err != nil {
			t.Fatal(err)
		}
		_, errs, code := runCLI(t, "update", "apply", "--config", devs[c.dev], "--source", c.src)
		if code == 0 {
			t.Fatalf("%s: apply from %s succeeded", c.dev, c.src)
		}
		for _, w := range c.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%s: error does not say %q: %s", c.dev, w, errs)
			}
		}
		after, _ := os.ReadFile(slot)
		if !bytes.Equal(before, after) {
			t.Errorf("%s: the running slot %s changed", c.dev, c.slot)
		}
		if c.dev == "fresh" {
			// Refused before the install began: the inactive slot too.
			if got, _ := os.ReadFile(filepath.Join(filepath.Dir(devs[c.dev]), "slot-b.img")); !bytes.Equal(got, freshB) {
				t.Errorf("fresh: the inactive slot was written before the refusal")
			}
		}
		st := must("update", "status", "--config", devs[c.dev], "--json")
		if !strings.Contains(st, c.version) || !strings.Contains(st, `"staged_version": 0`) {
			t.Errorf("%s: status after the failed apply: %s", c.dev, st)
		}
	}
}

// damageEntry writes a copy of the bundle b with the last byte of the
// data of entry path flipped, and returns the copy's path.
func damageEntry(t *testing.T, b []byte, path, out string) string {
	t.Helper()
	// The header's name field is the path, NUL-padded; entries start on
	// 512-byte blocks.
	i := bytes.Index(b, append([]byte(path), 0))
	r, err := bundle.NewReader(bytes.NewReader(b), int64(len(b)), "b")
	if err != nil || i < 0 || i%512 != 0 {
		t.Fatalf("entry %s at %d: %v", path, i, err)
	}
	n, _ := r.Has(path)
	bad := bytes.Clone(b)
	bad[i+512+int(n)-1] ^= 0x01
	if err := os.WriteFile(out, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
