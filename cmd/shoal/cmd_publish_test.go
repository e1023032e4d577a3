package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestPublishCLI(t *testing.T) {
	dir := t.TempDir()
	keys, repo := filepath.Join(dir, "keys"), filepath.Join(dir, "repo")
	if _, errs, code := runCLI(t, "keys", "init", keys); code != 0 {
		t.Fatal(errs)
	}
	img := filepath.Join(dir, "v1.img")
	writeImage(t, img, 2<<20, 0)
	sbom := filepath.Join(dir, "sbom.json")
	writeImage(t, sbom, 100, 0)
	out, errs, code := runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "1",
		"--hardware", "rpi4", "--rollout", "percent=100, region=eu", "--sbom", sbom, "--json", "rootfs="+img)
	if code != 0 {
		t.Fatalf("publish: %d %s", code, errs)
	}
	var r publishResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Version != 1 || r.NewChunks == 0 || r.NewChunks != r.Chunks || len(r.Artifacts) != 1 || r.Artifacts[0].Name != "rootfs" {
		t.Fatalf("%+v", r)
	}
	// Republishing the same image: no new chunks, and the text says so.
	out, errs, code = runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "2", "rootfs="+img)
	if code != 0 {
		t.Fatalf("republish: %d %s", code, errs)
	}
	if !strings.Contains(out, "wrote 0 new chunks, 0 B") {
		t.Fatalf("republish output:\n%s", out)
	}
	// Stale version, bad arguments.
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--version", "2", "rootfs=" + img}, 1, "not above the last published"},
		{[]string{"--version", "3", "rootfs"}, 2, "want NAME=IMAGE"},
		{[]string{"--version", "3"}, 2, "no images"},
		{[]string{"--version", "3", "--rollout", "{", "rootfs=" + img}, 2, "--rollout"},
		{[]string{"--version", "3", "--rollout", "percent=500", "rootfs=" + img}, 2, "--rollout"},
		{[]string{"--version", "3", "--slot", "boot=b", "rootfs=" + img}, 2, "no image named boot"},
		{[]string{"--version", "3", "rootfs=" + filepath.Join(dir, "missing.img")}, 1, "missing.img"},
	} {
		args := append([]string{"publish", "--repo", repo, "--keys", keys, "--channel", "stable"}, tc.args...)
		_, errs, code := runCLI(t, args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v: exit %d, %q; want exit %d mentioning %q", tc.args, code, errs, tc.code, tc.msg)
		}
	}
}
