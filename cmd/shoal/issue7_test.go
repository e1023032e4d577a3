package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestApplyConfigTimeoutOnSlowOrigin: [update] timeout in the device's
// config bounds an apply without --timeout, as the flag does
// (TestApplyTimeoutOnSlowOrigin): against an origin that trickles chunk
// bytes, the apply ends with the deadline at the configured 2 s, not at
// the 12 h default.
func TestApplyConfigTimeoutOnSlowOrigin(t *testing.T) {
	keys, repo, _ := publishTwo(t)
	cfg := initDevice(t, keys)
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(text), "[update]") {
		t.Fatalf("device init wrote an [update] table already:\n%s", text)
	}
	text = append(text, "\n[update]\ntimeout = \"2s\"\n"...)
	if err := os.WriteFile(cfg, text, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := tricklingOrigin(t, repo)
	start := time.Now()
	_, errs, code := runCLI(t, "update", "apply", "--config", cfg, "--source", srv.URL+"/")
	took := time.Since(start)
	if code == exitOK || !strings.Contains(errs, "deadline exceeded") || !strings.Contains(errs, "[update] timeout 2s") || !strings.Contains(errs, "resume") {
		t.Fatalf("apply against a trickling origin with [update] timeout = 2s: exit %d after %v: %s", code, took, errs)
	}
	// Not before the configured bound (something else ended it), and not
	// long after (the bound was not applied).
	if took < 2*time.Second || took > 20*time.Second {
		t.Fatalf("apply ended after %v, want about 2s", took)
	}
}

// TestBundleRefusesFIFO: `bundle verify` and `bundle import` given a named
// pipe refuse it at once, saying it is not a regular file, instead of
// waiting for a writer; import creates no store.
func TestBundleRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "b.tar")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	mustCLI(t)("keys", "init", filepath.Join(dir, "keys"))
	root := filepath.Join(dir, "keys", "root.json")
	storeDir := filepath.Join(dir, "store")
	for _, args := range [][]string{
		{"bundle", "verify", fifo, "--root", root},
		{"bundle", "import", fifo, "--store", storeDir, "--root", root},
	} {
		type result struct {
			errs string
			code int
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() {
			_, errs, code := runCLI(t, args...)
			done <- result{errs, code}
		}()
		select {
		case r := <-done:
			if r.code != exitFailure || !strings.Contains(r.errs, fifo) || !strings.Contains(r.errs, "not a regular file") {
				t.Errorf("%v: exit %d: %s", args[:2], r.code, r.errs)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("%v: refused only after %v", args[:2], took)
			}
		case <-time.After(10 * time.Second):
			// Release the blocked open, then fail.
			if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				w.Close()
			}
			<-done
			t.Fatalf("%v blocked on a named pipe", args[:2])
		}
	}
	if _, err := os.Stat(storeDir); !os.IsNotExist(err) {
		t.Fatalf("import of a FIFO created the store: %v", err)
	}
}
