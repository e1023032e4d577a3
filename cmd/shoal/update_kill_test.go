package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/manifest"
)

// TestApplyKilledAndResumed runs `shoal update apply` against an HTTP
// origin as a separate process, kills it with SIGKILL at random moments
// many times, and resumes it each time. The slot must end verified, and
// the origin must have served no more than the release's new bytes plus
// one chunk per interruption (one fetcher, so one chunk is in flight).
func TestApplyKilledAndResumed(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns many processes")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "v1.img")
	data := writeImage(t, img, 6<<20, 0)
	run := func(args ...string) {
		t.Helper()
		if _, errs, code := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, errs)
		}
	}
	run("keys", "init", filepath.Join(dir, "keys"))
	repo := filepath.Join(dir, "repo")
	run("publish", "--repo", repo, "--keys", filepath.Join(dir, "keys"), "--channel", "stable", "--version", "1", "--min", "4K", "--avg", "16K", "--max", "64K", "rootfs="+img)
	run("device", "init", filepath.Join(dir, "dev"), "--slot-size", "8M", "--root", filepath.Join(dir, "keys", "root.json"), "--channel", "stable")

	ixBytes, _ := os.ReadFile(filepath.Join(dir, "dev", "..", "repo", "index", mustSingleIndex(t, repo)))
	ix, err := chunker.DecodeIndex(ixBytes)
	if err != nil {
		t.Fatal(err)
	}
	size := map[string]int64{}
	var maxChunk, unique int64
	for i, e := range ix.Chunks {
		p := manifest.ChunkPath(ix.ID(i))
		if _, ok := size[p]; !ok {
			unique += int64(e.Size)
		}
		size[p] = int64(e.Size)
		maxChunk = max(maxChunk, int64(e.Size))
	}

	// The origin: a static file server over the repository, counting the
	// chunk bytes (uncompressed) it serves, a little slow so kills land
	// mid-install.
	var mu sync.Mutex
	var served int64
	h := manifest.Handler(repo)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, ok := size[strings.TrimPrefix(r.URL.Path, "/")]; ok {
			time.Sleep(2 * time.Millisecond)
			mu.Lock()
			served += n
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	cfg := filepath.Join(dir, "dev", "shoal.toml")
	r := rand.New(rand.NewPCG(1, 2))
	kills := 0
	for attempt := 0; ; attempt++ {
		if attempt > 200 {
			t.Fatal("apply never completed")
		}
		cmd := exec.Command(os.Args[0], "update", "apply", "--config", cfg, "--source", srv.URL, "--fetchers", "1", "--json")
		cmd.Env = append(os.Environ(), "SHOAL_TEST_RUN_MAIN=1")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		killAfter := time.Duration(20+r.IntN(120)) * time.Millisecond
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("apply failed: %v\n%s", err, errb.String())
			}
			var res struct {
				Slot  string `json:"slot"`
				State string `json:"state"`
			}
			if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.State != "tentative" {
				t.Fatalf("apply output: %v %s", err, out.String())
			}
			slot, _ := os.ReadFile(filepath.Join(dir, "dev", "slot-"+strings.ToLower(res.Slot)+".img"))
			if !bytes.Equal(slot[:len(data)], data) {
				t.Fatal("slot does not hold the release after resumed applies")
			}
			limit := unique + int64(kills)*maxChunk
			t.Logf("%d kills; origin served %d chunk bytes; release has %d unique bytes; limit %d", kills, served, unique, limit)
			if kills < 5 {
				t.Fatalf("only %d kills landed; the test did not exercise resume", kills)
			}
			if served > limit {
				t.Fatalf("origin served %d bytes, more than new bytes %d + %d kills x max chunk %d", served, unique, kills, maxChunk)
			}
			return
		case <-time.After(killAfter):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
	}
}

func mustSingleIndex(t *testing.T, repo string) string {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(repo, "index"))
	if err != nil || len(es) != 1 {
		t.Fatalf("index dir: %v %d", err, len(es))
	}
	return es[0].Name()
}
