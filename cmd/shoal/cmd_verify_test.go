package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// publishTwo makes keys and a repository with stable releases 1 and 2 and
// returns the key directory, the repository and a copy of it as it was
// after release 1.
func publishTwo(t *testing.T) (keys, repo, old string) {
	t.Helper()
	dir := t.TempDir()
	keys, repo, old = filepath.Join(dir, "keys"), filepath.Join(dir, "repo"), filepath.Join(dir, "old")
	if _, errs, code := runCLI(t, "keys", "init", keys); code != 0 {
		t.Fatal(errs)
	}
	for v, salt := range []byte{1, 2} {
		img := filepath.Join(dir, "img")
		writeImage(t, img, 1<<20, salt)
		if _, errs, code := runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "stable",
			"--version", string(rune('1'+v)), "--hardware", "rpi4", "rootfs="+img); code != 0 {
			t.Fatal(errs)
		}
		if v == 0 {
			copyTree(t, repo, old)
		}
	}
	return keys, repo, old
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerifyCLI(t *testing.T) {
	keys, repo, old := publishTwo(t)
	state := filepath.Join(t.TempDir(), "state")
	root := filepath.Join(keys, "root.json")
	out, errs, code := runCLI(t, "verify", "--repo", repo, "--root", root, "--state", state, "--hardware", "rpi4", "--json")
	if code != 0 {
		t.Fatalf("verify: %d %s", code, errs)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r["channel"] != "stable" || r["version"] != 2.0 {
		t.Fatalf("%v", r)
	}
	arts := r["artifacts"].([]any)
	a := arts[0].(map[string]any)
	for _, k := range []string{"name", "size", "root", "chunks"} {
		if _, ok := a[k]; !ok {
			t.Fatalf("artifact lacks %q: %v", k, a)
		}
	}
	// Rollback: the device remembers release 2's metadata.
	_, errs, code = runCLI(t, "verify", "--repo", old, "--root", root, "--state", state, "--hardware", "rpi4")
	if code != exitIntegrity || !strings.Contains(errs, "rollback") || !strings.Contains(errs, "timestamp.json") {
		t.Fatalf("rollback: exit %d %q", code, errs)
	}
	// Wrong hardware: exit 1, reason named.
	_, errs, code = runCLI(t, "verify", "--repo", repo, "--root", root, "--hardware", "x86")
	if code != exitFailure || !strings.Contains(errs, "other hardware") {
		t.Fatalf("hardware: exit %d %q", code, errs)
	}
	// A tampered index.
	ents, _ := os.ReadDir(filepath.Join(repo, "index"))
	for _, e := range ents {
		p := filepath.Join(repo, "index", e.Name())
		b, _ := os.ReadFile(p)
		b[len(b)-1] ^= 1
		os.WriteFile(p, b, 0o644)
	}
	_, errs, code = runCLI(t, "verify", "--repo", repo, "--root", root, "--hardware", "rpi4")
	if code != exitIntegrity || !strings.Contains(errs, "index") {
		t.Fatalf("tampered index: exit %d %q", code, errs)
	}
	if _, _, code := runCLI(t, "verify", "--root", root); code != exitUsage {
		t.Fatalf("no --repo: exit %d", code)
	}
}

func TestVerifyCLIRollout(t *testing.T) {
	dir := t.TempDir()
	keys, repo := filepath.Join(dir, "keys"), filepath.Join(dir, "repo")
	if _, errs, code := runCLI(t, "keys", "init", keys); code != 0 {
		t.Fatal(errs)
	}
	img := filepath.Join(dir, "img")
	writeImage(t, img, 256<<10, 0)
	if _, errs, code := runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "1",
		"--rollout", "percent=100, region in (eu,uk)", "rootfs="+img); code != 0 {
		t.Fatal(errs)
	}
	root := filepath.Join(keys, "root.json")
	if _, errs, code := runCLI(t, "verify", "--repo", repo, "--root", root, "--device-id", "d1", "--label", "region=eu"); code != 0 {
		t.Fatalf("eligible device: %d %s", code, errs)
	}
	_, errs, code := runCLI(t, "verify", "--repo", repo, "--root", root, "--device-id", "d1", "--label", "region=us")
	if code != exitFailure || !strings.Contains(errs, "rollout") || !strings.Contains(errs, "label-mismatch") {
		t.Fatalf("device outside the selector: exit %d %q", code, errs)
	}
}
