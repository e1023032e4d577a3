package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/manifest"
)

// Every integrity sentinel maps to exit code 3, however deeply wrapped.
func TestIntegrityErrorsExit3(t *testing.T) {
	for _, s := range integrityErrors {
		err := fmt.Errorf("command: %w", fmt.Errorf("step: %w", s))
		if got := exitCode(err); got != exitIntegrity {
			t.Errorf("%v: exit %d, want %d", s, got, exitIntegrity)
		}
	}
	if got := exitCode(errors.New("plain")); got != exitFailure {
		t.Errorf("plain error: exit %d", got)
	}
}

// Errors of delta objects and delta indexes are integrity failures, as
// the codec returns them.
func TestDeltaErrorsExit3(t *testing.T) {
	for _, s := range []error{delta.ErrCorrupt, delta.ErrTooLarge, delta.ErrBadRange, delta.ErrMalformedIndex, delta.ErrImageMismatch} {
		if got := exitCode(fmt.Errorf("apply: %w", s)); got != exitIntegrity {
			t.Errorf("%v: exit %d, want %d", s, got, exitIntegrity)
		}
	}
	_, err := delta.DecodeIndex([]byte("SHOALDLT but not an index"))
	if got := exitCode(err); err == nil || got != exitIntegrity {
		t.Errorf("DecodeIndex of junk: %v, exit %d", err, got)
	}
	lim := delta.Limits{MaxChunk: 1 << 16, MaxRef: 1 << 20, BaseSize: 100}
	_, _, err = delta.ParseHeader([]byte{delta.KindDelta, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200}, lim)
	if got := exitCode(err); !errors.Is(err, delta.ErrBadRange) || got != exitIntegrity {
		t.Errorf("a range outside the base: %v, exit %d", err, got)
	}
}

// initDevice publishes nothing: it makes a virtual device for the keys of
// publishTwo.
func initDevice(t *testing.T, keys string) string {
	t.Helper()
	dev := filepath.Join(t.TempDir(), "dev")
	if _, errs, code := runCLI(t, "device", "init", dev, "--slot-size", "2M", "--root", filepath.Join(keys, "root.json"),
		"--channel", "stable", "--hardware", "rpi4"); code != 0 {
		t.Fatal(errs)
	}
	return filepath.Join(dev, "shoal.toml")
}

// TestApplyCorruptChunkExit3: a chunk object whose bytes are not what its
// ID says makes apply exit 3, and nothing is flipped.
func TestApplyCorruptChunkExit3(t *testing.T) {
	keys, repo, _ := publishTwo(t)
	cfg := initDevice(t, keys)
	objs, _ := filepath.Glob(filepath.Join(repo, "chunks", "*", "*"))
	if len(objs) == 0 {
		t.Fatal("no chunk objects")
	}
	for _, p := range objs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// A well-formed object of other bytes: only the ID check can tell.
		if err := os.WriteFile(p, manifest.EncodeChunk(nil, append(b, 'x')), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, errs, code := runCLI(t, "update", "apply", "--config", cfg, "--source", repo)
	if code != exitIntegrity || !strings.Contains(errs, "chunk") {
		t.Fatalf("apply with corrupt chunks: exit %d %s", code, errs)
	}
	out, _, _ := runCLI(t, "update", "status", "--config", cfg, "--json")
	if !strings.Contains(out, `"staged_version": 0`) {
		t.Fatalf("status after a failed apply: %s", out)
	}
}

// TestVerifyTamperedMetadataExit3: a targets file edited after signing.
func TestVerifyTamperedMetadataExit3(t *testing.T) {
	keys, repo, _ := publishTwo(t)
	ts, _ := filepath.Glob(filepath.Join(repo, "metadata", "*.targets.json"))
	for _, p := range ts {
		b, _ := os.ReadFile(p)
		os.WriteFile(p, []byte(strings.Replace(string(b), "rpi4", "rpi5", 1)), 0o644)
	}
	_, errs, code := runCLI(t, "verify", "--repo", repo, "--root", filepath.Join(keys, "root.json"), "--hardware", "rpi4")
	if code != exitIntegrity {
		t.Fatalf("verify of tampered targets: exit %d %s", code, errs)
	}
}

// TestBootCheckCorruptSlotExit3: the new slot is damaged between the flip
// and the boot: boot-check rolls back, says why, and exits 3.
func TestBootCheckCorruptSlotExit3(t *testing.T) {
	keys, repo, _ := publishTwo(t)
	cfg := initDevice(t, keys)
	if _, errs, code := runCLI(t, "update", "apply", "--config", cfg, "--source", repo); code != 0 {
		t.Fatal(errs)
	}
	slotB := filepath.Join(filepath.Dir(cfg), "slot-b.img")
	f, err := os.OpenFile(slotB, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("bit rot"), 4096)
	f.Close()
	if _, errs, code := runCLI(t, "device", "reboot", "--config", cfg); code != 0 {
		t.Fatal(errs)
	}
	out, errs, code := runCLI(t, "update", "boot-check", "--config", cfg)
	if code != exitIntegrity || !strings.Contains(out, "rolled back") || !strings.Contains(errs, "does not verify") {
		t.Fatalf("boot-check of a damaged slot: exit %d\n%s\n%s", code, out, errs)
	}
	out, _, _ = runCLI(t, "update", "status", "--config", cfg, "--json")
	if !strings.Contains(out, `"state": "rolled-back"`) {
		t.Fatalf("status: %s", out)
	}
}

// TestApplyTimeoutOnSlowOrigin: an origin that sends chunk objects at a
// trickle cannot keep apply busy past --timeout; the message says how to
// resume.
func TestApplyTimeoutOnSlowOrigin(t *testing.T) {
	keys, repo, _ := publishTwo(t)
	cfg := initDevice(t, keys)
	srv := tricklingOrigin(t, repo)
	_, errs, code := runCLI(t, "update", "apply", "--config", cfg, "--source", srv.URL+"/", "--timeout", "2s")
	if code == exitOK || !strings.Contains(errs, "--timeout 2s") || !strings.Contains(errs, "resume") {
		t.Fatalf("apply against a trickling origin: exit %d %s", code, errs)
	}
}

// tricklingOrigin serves repo over HTTP, but chunk objects at one byte a
// second: a source far slower than any apply can wait for, and never
// silent long enough to count as dead.
func tricklingOrigin(t *testing.T, repo string) *httptest.Server {
	files := http.FileServer(http.Dir(repo))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/chunks/") {
			files.ServeHTTP(w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
		for range 60 {
			if _, err := w.Write([]byte{0}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(time.Second):
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestApplyWithoutSourceOrNode: no --source and no node for the device.
func TestApplyWithoutSourceOrNode(t *testing.T) {
	keys, _, _ := publishTwo(t)
	cfg := initDevice(t, keys)
	_, errs, code := runCLI(t, "update", "apply", "--config", cfg)
	if code != exitUsage || !strings.Contains(errs, "--source is required (no shoal node runs this device)") {
		t.Fatalf("apply without a source: %d %s", code, errs)
	}
}
