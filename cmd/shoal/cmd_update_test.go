package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startServe runs `shoal serve` on a loopback port until the test ends
// and returns its URL (with a trailing slash).
func startServe(t *testing.T, repo string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newRootCmd()
	var out syncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"serve", "--repo", repo, "--listen", "127.0.0.1:0"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
	})
	re := regexp.MustCompile(`http://[0-9.:]+/`)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if url := re.FindString(out.String()); url != "" {
			return url
		}
	}
	t.Fatalf("serve printed no address: %q", out.String())
	return ""
}

type applyJSON struct {
	Version uint64 `json:"version"`
	Reboot  bool   `json:"reboot"`
	Stats   struct {
		FetchedBytes    int64    `json:"fetched_bytes"`
		FetchedChunks   int      `json:"fetched_chunks"`
		LocalBytes      int64    `json:"local_bytes"`
		DeltaBase       uint64   `json:"delta_base"`
		DeltaIndexBytes int64    `json:"delta_index_bytes"`
		DeltaChunks     int      `json:"delta_chunks"`
		DeltaBytes      int64    `json:"delta_bytes"`
		DeltaRawBytes   int64    `json:"delta_raw_bytes"`
		DeltaRefBytes   int64    `json:"delta_ref_bytes"`
		DeltaFailed     int      `json:"delta_failed"`
		DeltaRefusals   []string `json:"delta_refusals"`
		DeltaNote       string   `json:"delta_note"`
	} `json:"stats"`
}

// TestPublishApplyDeltas: publish --delta-from, then update apply from
// the directory and over shoal serve onto virtual devices on v1: the
// devices download the deltas (not the new chunks) and verify the slot.
// A damaged delta object is refused, named, and its chunk fetched whole;
// a device not on the base fetches whole chunks.
func TestPublishApplyDeltas(t *testing.T) {
	dir := t.TempDir()
	must := mustCLI(t)
	img2, keys, repo := publishV1(t, dir)

	// Three devices: two on v1, one with nothing installed.
	devs := devicesOnV1(t, dir, keys, repo, "dir", "http", "fresh")

	// Usage errors before anything is read.
	for _, bad := range [][]string{
		{"--delta-from", "x"},
		{"--delta-from", "1", "--delta-base-image", "3=" + filepath.Join(dir, "v1.img")},
		{"--delta-from", "1", "--delta-level", "ultra"},
	} {
		args := append([]string{"publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "2"}, bad...)
		if _, errs, code := runCLI(t, append(args, "rootfs="+img2)...); code != exitUsage {
			t.Fatalf("%v: exit %d (%s), want %d", bad, code, errs, exitUsage)
		}
	}
	// A base that does not exist, and a base image of other bytes.
	if _, errs, code := runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "beta", "--version", "2",
		"--delta-from", "1", "rootfs="+img2); code != exitFailure || !strings.Contains(errs, "not in the repository") {
		t.Fatalf("missing base: exit %d: %s", code, errs)
	}
	if _, errs, code := runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "2",
		"--delta-from", "1", "--delta-base-image", "1="+img2, "rootfs="+img2); code != exitIntegrity || !strings.Contains(errs, "base image") {
		t.Fatalf("wrong base image: exit %d: %s", code, errs)
	}

	var pub struct {
		Deltas []struct {
			Target      string `json:"target"`
			BaseVersion uint64 `json:"base_version"`
			Rebuilt     bool   `json:"base_rebuilt"`
			WholeBytes  int64  `json:"whole_compressed_bytes"`
			DeltaBytes  int64  `json:"delta_bytes"`
			Deltas      int    `json:"deltas"`
			IndexBytes  int64  `json:"delta_index_bytes"`
			ObjectBytes int64  `json:"delta_object_bytes"`
			KeptWhole   int    `json:"kept_whole"`
		} `json:"deltas"`
	}
	out := must("publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "2",
		"--delta-from", "1", "--json", "rootfs="+img2)
	if err := json.Unmarshal([]byte(out), &pub); err != nil || len(pub.Deltas) != 1 {
		t.Fatalf("publish --json: %v: %s", err, out)
	}
	pd := pub.Deltas[0]
	if pd.Target != "releases/stable/2/rootfs.delta/1" || !pd.Rebuilt || pd.Deltas == 0 || pd.DeltaBytes*4 > pd.WholeBytes {
		t.Fatalf("publish deltas: %+v", pd)
	}

	apply := func(cfg, source string) applyJSON {
		t.Helper()
		var r applyJSON
		out := must("update", "apply", "--config", cfg, "--source", source, "--json")
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if r.Version != 2 || !r.Reboot {
			t.Fatalf("apply from %s: %s", source, out)
		}
		return r
	}

	// From the directory: the deltas, the index, nothing whole.
	r := apply(devs["dir"], repo)
	s := r.Stats
	if s.DeltaBase != 1 || s.DeltaChunks != pd.Deltas || s.DeltaFailed != 0 || s.DeltaBytes != pd.ObjectBytes ||
		s.DeltaIndexBytes != pd.IndexBytes || s.FetchedChunks != pd.KeptWhole || s.DeltaRefBytes == 0 {
		t.Fatalf("apply from the directory: %+v (publish: %+v)", s, pd)
	}
	t.Logf("v1 -> v2 (2 MiB image): %d bytes of deltas + %d of delta index, %d bytes whole (%d chunks); without deltas %d",
		s.DeltaBytes, s.DeltaIndexBytes, s.FetchedBytes, s.FetchedChunks, pd.WholeBytes)
	must("device", "reboot", "--config", devs["dir"])
	if out := must("update", "boot-check", "--config", devs["dir"], "--json"); !strings.Contains(out, `"committed": true`) {
		t.Fatalf("v2 from deltas does not commit: %s", out)
	}

	// Over shoal serve, with one delta object damaged.
	objs, _ := filepath.Glob(filepath.Join(repo, "deltas", "??", "*"))
	if len(objs) == 0 {
		t.Fatal("no delta objects")
	}
	b, _ := os.ReadFile(objs[0])
	b[len(b)-1] ^= 1
	os.WriteFile(objs[0], b, 0o644)
	url := startServe(t, repo)
	r = apply(devs["http"], url)
	s = r.Stats
	if s.DeltaFailed != 1 || s.DeltaChunks != pd.Deltas-1 || s.FetchedChunks == 0 || len(s.DeltaRefusals) != 1 ||
		!strings.Contains(s.DeltaRefusals[0], filepath.Base(objs[0])) || !strings.Contains(s.DeltaRefusals[0], url) {
		t.Fatalf("apply over serve with a damaged delta: %+v", s)
	}
	must("device", "reboot", "--config", devs["http"])
	if out := must("update", "boot-check", "--config", devs["http"], "--json"); !strings.Contains(out, `"committed": true`) {
		t.Fatalf("v2 after a refused delta does not commit: %s", out)
	}

	// A device with nothing installed takes whole chunks.
	must("device", "reboot", "--config", devs["fresh"])
	r = apply(devs["fresh"], url)
	if r.Stats.DeltaChunks != 0 || r.Stats.DeltaBytes != 0 || r.Stats.DeltaNote == "" || r.Stats.FetchedBytes < 2<<20 {
		t.Fatalf("fresh device: %+v", r.Stats)
	}
}

// mustCLI returns a runner of shoal commands that fails the test on a
// non-zero exit and returns stdout.
func mustCLI(t *testing.T) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		out, errs, code := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		return out
	}
}

// devicesOnV1 makes a virtual device dir/dev-NAME for each name and
// installs and commits the repository's v1 on each but "fresh"; it
// returns their configs by name.
func devicesOnV1(t *testing.T, dir, keys, repo string, names ...string) map[string]string {
	t.Helper()
	must := mustCLI(t)
	devs := map[string]string{}
	for _, name := range names {
		d := filepath.Join(dir, "dev-"+name)
		must("device", "init", d, "--slot-size", "3M", "--root", filepath.Join(keys, "root.json"), "--channel", "stable")
		devs[name] = filepath.Join(d, "shoal.toml")
		if name == "fresh" {
			continue
		}
		must("device", "reboot", "--config", devs[name])
		must("update", "boot-check", "--config", devs[name])
		must("update", "apply", "--config", devs[name], "--source", repo)
		must("device", "reboot", "--config", devs[name])
		if out := must("update", "boot-check", "--config", devs[name], "--json"); !strings.Contains(out, `"committed": true`) {
			t.Fatalf("v1 on %s: %s", name, out)
		}
	}
	return devs
}

// publishV1 writes two 2 MiB images under dir (v2 differs from v1), makes
// keys and publishes v1 to channel stable; it returns v2's image, the
// keys directory and the repository.
func publishV1(t *testing.T, dir string) (img2, keys, repo string) {
	t.Helper()
	must := mustCLI(t)
	img1 := filepath.Join(dir, "v1.img")
	img2 = filepath.Join(dir, "v2.img")
	writeImage(t, img1, 2<<20, 0)
	writeImage(t, img2, 2<<20, 0x55)
	keys, repo = filepath.Join(dir, "keys"), filepath.Join(dir, "repo")
	must("keys", "init", keys)
	must("publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "1", "rootfs="+img1)
	return img2, keys, repo
}
