package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/shoalnet/shoal/manifest"
)

// TestRequireLogCLI: publish logs every targets version; verify
// --require-log accepts what is logged and refuses, with exit code 3, a
// release left out of the log, a forged checkpoint and a forked log; log
// verify audits the whole log and names the entry it finds edited.
func TestRequireLogCLI(t *testing.T) {
	keys, repo, _ := publishTwo(t)
	dir := t.TempDir()
	root := filepath.Join(keys, "root.json")
	state := filepath.Join(dir, "state")
	verify := func(repo string, extra ...string) (string, string, int) {
		t.Helper()
		args := append([]string{"verify", "--repo", repo, "--root", root, "--state", state, "--hardware", "rpi4"}, extra...)
		return runCLI(t, args...)
	}

	// Both releases are logged; the device proves release 2 and remembers
	// the checkpoint. --log-key defaults to log.pub next to --root.
	out, errs, code := verify(repo, "--require-log", "--json")
	if code != 0 {
		t.Fatalf("verify --require-log: %d %s", code, errs)
	}
	var vr verifyResult
	if err := json.Unmarshal([]byte(out), &vr); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if vr.Log == nil || vr.Log.TreeSize != 2 || vr.Log.Entry != 1 || vr.TargetsVersion != 2 || !strings.Contains(vr.Log.Checkpoint, "\n2\n") {
		t.Fatalf("verify --json log: %+v", vr.Log)
	}
	if _, err := os.Stat(filepath.Join(state, manifest.LogStateFile)); err != nil {
		t.Fatal(err)
	}
	// And over HTTP, with the key named explicitly.
	srv := httptest.NewServer(manifest.Handler(repo))
	defer srv.Close()
	if out, errs, code := verify(srv.URL+"/", "--require-log", "--log-key", filepath.Join(keys, "log.pub")); code != 0 || !strings.Contains(out, "entry 1 of a signed tree of 2 entries") {
		t.Fatalf("verify --require-log over HTTP: %d %s %s", code, out, errs)
	}

	// A fork: the same keys publish another history, longer than the
	// one the device remembers.
	fork := filepath.Join(dir, "fork")
	for v, salt := range []byte{7, 8, 9} {
		img := filepath.Join(dir, "fork.img")
		writeImage(t, img, 256<<10, salt)
		if _, errs, code := runCLI(t, "publish", "--repo", fork, "--keys", keys, "--channel", "stable",
			"--version", string(rune('1'+v)), "--hardware", "rpi4", "rootfs="+img); code != 0 {
			t.Fatal(errs)
		}
	}
	if _, errs, code := verify(fork, "--require-log"); code != exitIntegrity || !strings.Contains(errs, "split view") || !strings.Contains(errs, "inconsistent") {
		t.Fatalf("forked log: exit %d %q", code, errs)
	}
	// A fresh device with no memory takes the fork: the log cannot tell
	// it apart without something remembered.
	if _, errs, code := runCLI(t, "verify", "--repo", fork, "--root", root, "--hardware", "rpi4", "--require-log"); code != 0 {
		t.Fatalf("fork for a device without state: %d %s", code, errs)
	}

	// Forged checkpoint: one number changed, the signature kept.
	forged := filepath.Join(dir, "forged")
	copyTree(t, repo, forged)
	cp := filepath.Join(forged, "log", "checkpoint")
	b, _ := os.ReadFile(cp)
	os.WriteFile(cp, bytes.Replace(b, []byte("\n2\n"), []byte("\n3\n"), 1), 0o644)
	if _, errs, code := verify(forged, "--require-log"); code != exitIntegrity || !strings.Contains(errs, "invalid checkpoint") || !strings.Contains(errs, "log/checkpoint") {
		t.Fatalf("forged checkpoint: exit %d %q", code, errs)
	}

	// Release 3 published by a key directory without the log key.
	aside := filepath.Join(dir, "aside")
	os.MkdirAll(aside, 0o700)
	for _, p := range []string{"log.pub", "private/log.skey"} {
		if err := os.Rename(filepath.Join(keys, p), filepath.Join(aside, filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "v3.img")
	writeImage(t, img, 256<<10, 3)
	out, errs, code = runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "3", "--hardware", "rpi4", "rootfs="+img)
	if code != 0 || !strings.Contains(out, "log: none") {
		t.Fatalf("unlogged publish: %d %s %s", code, out, errs)
	}
	for _, p := range []string{"log.pub", "private/log.skey"} {
		os.Rename(filepath.Join(aside, filepath.Base(p)), filepath.Join(keys, p))
	}
	if _, errs, code := verify(repo, "--require-log"); code != exitIntegrity || !strings.Contains(errs, "record not in log") || !strings.Contains(errs, "targets version 3") {
		t.Fatalf("unlogged release: exit %d %q", code, errs)
	}
	// Without --require-log, verify works as before.
	if out, errs, code := verify(repo); code != 0 || !strings.Contains(out, "stable/3") || strings.Contains(out, "log:") {
		t.Fatalf("verify without --require-log: %d %s %s", code, out, errs)
	}

	// The device: provisioned with the log key and required to use it.
	dev := filepath.Join(dir, "dev")
	if out, errs, code := runCLI(t, "device", "init", dev, "--slot-size", "2M", "--root", root, "--channel", "stable", "--hardware", "rpi4", "--require-log"); code != 0 || !strings.Contains(out, "requires the transparency log") {
		t.Fatalf("device init --require-log: %d %s %s", code, out, errs)
	}
	toml, _ := os.ReadFile(filepath.Join(dev, "shoal.toml"))
	pub, _ := os.ReadFile(filepath.Join(dev, "log.pub"))
	want, _ := os.ReadFile(filepath.Join(keys, "log.pub"))
	if !strings.Contains(string(toml), "log_key = \"log.pub\"\n") || !strings.Contains(string(toml), "require_log = true\n") || !bytes.Equal(pub, want) {
		t.Fatalf("device config:\n%s\nlog.pub %q", toml, pub)
	}
	if _, errs, code := runCLI(t, "update", "apply", "--config", filepath.Join(dev, "shoal.toml"), "--source", repo); code != exitIntegrity || !strings.Contains(errs, "record not in log") {
		t.Fatalf("device apply of an unlogged release: exit %d %q", code, errs)
	}

	// The auditor: two entries (release 3 is not logged), all correct.
	logPub := filepath.Join(keys, "log.pub")
	out, errs, code = runCLI(t, "log", "verify", "--repo", repo, "--log-key", logPub, "--json")
	var lr logVerifyJSON
	if code != 0 || json.Unmarshal([]byte(out), &lr) != nil || !lr.OK || !lr.Signed || lr.TreeSize != 2 {
		t.Fatalf("log verify: %d %s %s", code, out, errs)
	}
	// One parser of key files: comments and blank lines are skipped here
	// as everywhere; a named pipe is refused, not waited on.
	commented := filepath.Join(dir, "commented.pub")
	os.WriteFile(commented, append([]byte("# fleet log key\n\n"), want...), 0o644)
	if out, errs, code := runCLI(t, "log", "verify", "--repo", repo, "--log-key", commented); code != 0 || !strings.Contains(out, "signed checkpoint") {
		t.Fatalf("log verify with a commented key file: %d %s %s", code, out, errs)
	}
	fifo := filepath.Join(dir, "fifo.pub")
	if err := syscall.Mkfifo(fifo, 0o644); err == nil {
		if _, errs, code := runCLI(t, "log", "verify", "--repo", repo, "--log-key", fifo); code == 0 || !strings.Contains(errs, "not a regular file") {
			t.Fatalf("log verify with a FIFO key file: %d %s", code, errs)
		}
	}
	if out, _, code := runCLI(t, "log", "verify", "--repo", srv.URL+"/"); code != 0 || !strings.Contains(out, "NOT checked") || !strings.Contains(out, "2 entries") {
		t.Fatalf("log verify without a key, over HTTP: %d %s", code, out)
	}
	if _, errs, code := runCLI(t, "log", "verify", "--repo", forged, "--log-key", logPub); code != exitIntegrity || !strings.Contains(errs, "invalid checkpoint") {
		t.Fatalf("log verify of a forged checkpoint: %d %s", code, errs)
	}

	// An edited entry: entry 1's targets hash, one hex digit changed.
	bundlePath := filepath.Join(repo, "log", "tile", "8", "data", "000.p", "2")
	good, err := os.ReadFile(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(good, []byte("targets-sha256 ")) + len("targets-sha256 ")
	bad := bytes.Clone(good)
	if bad[i] == '0' {
		bad[i] = '1'
	} else {
		bad[i] = '0'
	}
	os.WriteFile(bundlePath, bad, 0o644)
	if _, errs, code := runCLI(t, "log", "verify", "--repo", repo, "--log-key", logPub); code != exitIntegrity || !strings.Contains(errs, "entry 1") || !strings.Contains(errs, "tile/8/data/000.p/2") {
		t.Fatalf("log verify of an edited entry: %d %s", code, errs)
	}
	os.WriteFile(bundlePath, good, 0o644)

	// An edited hash tile.
	tilePath := filepath.Join(repo, "log", "tile", "8", "0", "000.p", "2")
	good, _ = os.ReadFile(tilePath)
	bad = bytes.Clone(good)
	bad[40] ^= 1 // inside hash 1
	os.WriteFile(tilePath, bad, 0o644)
	if _, errs, code := runCLI(t, "log", "verify", "--repo", repo, "--log-key", logPub); code != exitIntegrity || !strings.Contains(errs, "tile/8/0/000.p/2") || !strings.Contains(errs, "entry 1") {
		t.Fatalf("log verify of an edited tile: %d %s", code, errs)
	}
	os.WriteFile(tilePath, good, 0o644)
	if _, errs, code := runCLI(t, "log", "verify", "--repo", repo, "--log-key", logPub); code != 0 {
		t.Fatalf("log verify after repair: %d %s", code, errs)
	}
}

func TestLogCLIUsage(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	out, errs, code := runCLI(t, "keys", "init", keys, "--no-log", "--json")
	var kr keysResult
	if code != 0 || json.Unmarshal([]byte(out), &kr) != nil || kr.LogKey != "" {
		t.Fatalf("keys init --no-log: %d %s %s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(keys, "log.pub")); !os.IsNotExist(err) {
		t.Fatalf("--no-log wrote log.pub: %v", err)
	}
	root := filepath.Join(keys, "root.json")
	for _, args := range [][]string{
		{"keys", "init", filepath.Join(dir, "k2"), "--no-log", "--log-name", "x"},
		{"verify", "--repo", dir, "--root", root, "--log-key", "log.pub"}, // --log-key without --require-log
		{"verify", "--repo", dir, "--root", root, "--require-log"},        // no log.pub next to the root
		{"device", "init", filepath.Join(dir, "dev"), "--slot-size", "1M", "--root", root, "--channel", "stable", "--require-log"},
		{"log", "verify"},
		{"log", "verify", "--repo", dir, "extra"},
	} {
		if _, errs, code := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, errs, exitUsage)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "dev")); !os.IsNotExist(err) {
		t.Fatal("a refused device init left a directory behind")
	}

	// keys init with a log: named key, and the JSON says where devices
	// find it.
	out, errs, code = runCLI(t, "keys", "init", filepath.Join(dir, "k3"), "--log-name", "fleet.test/log", "--json")
	if code != 0 || json.Unmarshal([]byte(out), &kr) != nil || kr.LogName != "fleet.test/log" || kr.LogKey != filepath.Join(dir, "k3", "log.pub") {
		t.Fatalf("keys init --log-name: %d %s %s", code, out, errs)
	}
	if pub, _ := os.ReadFile(kr.LogKey); !strings.HasPrefix(string(pub), "fleet.test/log+") {
		t.Fatalf("log.pub %q", pub)
	}
	// A publish with it reports the log in --json.
	img := filepath.Join(dir, "img")
	writeImage(t, img, 128<<10, 1)
	out, errs, code = runCLI(t, "publish", "--repo", filepath.Join(dir, "repo"), "--keys", filepath.Join(dir, "k3"), "--channel", "stable", "--version", "1", "--json", "rootfs="+img)
	var pr publishResult
	if code != 0 || json.Unmarshal([]byte(out), &pr) != nil || pr.Log == nil || pr.Log.TreeSize != 1 || pr.Log.Entry != 0 || pr.Log.RootHash == "" {
		t.Fatalf("publish --json: %d %s %s", code, out, errs)
	}
}
