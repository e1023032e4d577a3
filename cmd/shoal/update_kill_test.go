package main

import (
	"bytes"
	"encoding/json"
	"fmt"
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
// no byte may be fetched twice without cause. Each run uses its own URL
// prefix, so the origin knows which run every chunk went to, even a
// request that arrives after its process died; after each kill the test
// reads which chunks the slot holds. Then, for every run:
//   - it fetched no chunk the slot already held when it started (resume
//     found everything the runs before it had written), and none twice;
//   - if killed, at most one chunk it fetched is missing from the slot
//     afterwards (one fetcher, so one chunk in flight).
//
// A kill before the run fetched anything earns no allowance at all.
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

	ixBytes, _ := os.ReadFile(filepath.Join(repo, "index", mustSingleIndex(t, repo)))
	ix, err := chunker.DecodeIndex(ixBytes)
	if err != nil {
		t.Fatal(err)
	}
	size := map[string]int64{}
	var unique int64
	for i, e := range ix.Chunks {
		p := manifest.ChunkPath(ix.ID(i))
		if _, ok := size[p]; !ok {
			unique += int64(e.Size)
		}
		size[p] = int64(e.Size)
	}
	// holds returns the chunks (by path) a slot file holds at every
	// position where the release has them.
	off := ix.Offsets()
	holds := func(slot string) map[string]bool {
		b, _ := os.ReadFile(slot)
		got, missing := map[string]bool{}, map[string]bool{}
		for i, e := range ix.Chunks {
			p := manifest.ChunkPath(ix.ID(i))
			if off[i+1] <= int64(len(b)) && ix.Hash.Sum(b[off[i]:off[i+1]]) == e.Digest {
				got[p] = true
			} else {
				missing[p] = true
			}
		}
		for p := range missing {
			delete(got, p)
		}
		return got
	}
	slots := map[string]string{"A": filepath.Join(dir, "dev", "slot-a.img"), "B": filepath.Join(dir, "dev", "slot-b.img")}
	// held[slot][n]: what the slot held before run n started.
	held := map[string][]map[string]bool{}
	snapshot := func() {
		for name, p := range slots {
			held[name] = append(held[name], holds(p))
		}
	}

	// The origin: a static file server over the repository under /run-N/
	// for the Nth run, recording the chunks it serves to each run, a little
	// slow so kills land mid-install.
	var mu sync.Mutex
	served := map[int][]string{} // chunk paths by run, in order
	// progress hears the run number after each chunk served, so a kill can
	// land after the k-th chunk of a run, whatever the machine's speed.
	progress := make(chan int, 1<<16)
	h := manifest.Handler(repo)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var run int
		if _, err := fmt.Sscanf(r.URL.Path, "/run-%d/", &run); err != nil {
			http.Error(w, "no run prefix", http.StatusBadRequest)
			return
		}
		_, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if _, ok := size[rest]; ok {
			time.Sleep(2 * time.Millisecond)
			mu.Lock()
			served[run] = append(served[run], rest)
			mu.Unlock()
			progress <- run
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + rest
		h.ServeHTTP(w, r2)
	}))
	defer srv.Close()

	cfg := filepath.Join(dir, "dev", "shoal.toml")
	r := rand.New(rand.NewPCG(1, 2))
	var target string // the slot the last run reports
	runs := 0
	for attempt := 0; target == ""; attempt++ {
		if attempt > 300 {
			t.Fatal("apply never completed")
		}
		snapshot()
		runs++
		source := fmt.Sprintf("%s/run-%d/", srv.URL, attempt)
		cmd := exec.Command(os.Args[0], "update", "apply", "--config", cfg, "--source", source, "--fetchers", "1", "--json")
		cmd.Env = append(os.Environ(), "SHOAL_TEST_RUN_MAIN=1")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// Kill after the k-th chunk this run is served (k = 0: as soon
		// as it starts, before any fetch), or let it finish.
		k := r.IntN(12)
		var kill <-chan time.Time
		if k == 0 {
			kill = time.After(time.Millisecond)
		}
		got := 0
		stuck := time.After(2 * time.Minute)
		running := true
		for running {
			select {
			case n := <-progress:
				if n == attempt {
					if got++; got == k {
						cmd.Process.Signal(syscall.SIGKILL)
						<-done
						running = false
					}
				}
			case <-stuck:
				cmd.Process.Signal(syscall.SIGKILL)
				<-done
				t.Fatalf("run %d made no progress for 2 minutes", attempt)
			case <-kill:
				cmd.Process.Signal(syscall.SIGKILL)
				<-done
				running = false
			case err := <-done:
				running = false
				if err != nil {
					t.Fatalf("apply failed: %v\n%s", err, errb.String())
				}
				var res struct {
					Slot  string `json:"slot"`
					State string `json:"state"`
				}
				if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.State != "tentative" || slots[res.Slot] == "" {
					t.Fatalf("apply output: %v %s", err, out.String())
				}
				slot, _ := os.ReadFile(slots[res.Slot])
				if len(slot) < len(data) || !bytes.Equal(slot[:len(data)], data) {
					t.Fatal("slot does not hold the release after resumed applies")
				}
				target = res.Slot
			}
		}
	}
	snapshot() // after the last run
	// Every request has been answered once the server closes, including
	// any that arrived after their process was killed.
	srv.Close()
	mu.Lock()
	defer mu.Unlock()

	var total, wasted int64
	midFetch := 0
	for n := range runs {
		before, after := held[target][n], held[target][n+1]
		seen := map[string]bool{}
		var lost []string
		for _, p := range served[n] {
			total += size[p]
			switch {
			case before[p]:
				t.Errorf("run %d fetched %s, which the slot already held", n, p)
			case seen[p]:
				t.Errorf("run %d fetched %s twice", n, p)
			case !after[p]:
				lost = append(lost, p)
				wasted += size[p]
			}
			seen[p] = true
		}
		if n == runs-1 {
			if len(lost) > 0 {
				t.Errorf("the completed run fetched %d chunks the slot does not hold", len(lost))
			}
			break
		}
		if len(served[n]) > 0 {
			midFetch++
		}
		if len(lost) > 1 {
			t.Errorf("run %d, killed, fetched %d chunks the slot did not hold afterwards; at most the one in flight may be lost", n, len(lost))
		}
	}
	t.Logf("%d runs, %d killed after fetching began; origin served %d chunk bytes: the release's %d unique bytes and %d lost in flight",
		runs, midFetch, total, unique, wasted)
	if midFetch < 5 {
		t.Fatalf("only %d kills landed after fetching began; the test did not exercise resume", midFetch)
	}
	if total != unique+wasted {
		t.Fatalf("origin served %d bytes, want the release's %d unique bytes + %d lost in flight", total, unique, wasted)
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
