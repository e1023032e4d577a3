package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
