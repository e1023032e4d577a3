package updater_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/updater"
)

// countingFetcher counts the bytes a repository serves, by top directory.
type countingFetcher struct {
	fetch.Fetcher
	mu    sync.Mutex
	bytes map[string]int64
}

func (c *countingFetcher) Fetch(ctx context.Context, p string, max int64) ([]byte, error) {
	b, err := c.Fetcher.Fetch(ctx, p, max)
	c.mu.Lock()
	top, _, _ := strings.Cut(p, "/")
	c.bytes[top] += int64(len(b))
	c.mu.Unlock()
	return b, err
}

func (w *world) counted() *countingFetcher {
	f, err := fetch.New(w.repo)
	if err != nil {
		w.t.Fatal(err)
	}
	return &countingFetcher{Fetcher: f, bytes: map[string]int64{}}
}

// A device on v1 installs v2 from deltas against its active slot: the
// repository serves delta objects instead of the new chunks. A damaged
// delta object is refused, named, and its chunk fetched whole; a device
// not on the base fetches whole chunks.
func TestDeviceInstallsFromDeltas(t *testing.T) {
	w := newWorld(t)
	flag := filepath.Join(w.dir, "broken")
	cfg := w.device(1<<20, "test ! -e "+flag)
	ctx := context.Background()
	reboot(t, cfg)
	w.publish("stable", 1, nil)
	if _, err := w.apply(open(t, cfg)); err != nil {
		t.Fatal(err)
	}
	if r := reboot(t, cfg); !r.Committed {
		t.Fatalf("v1: %+v", r)
	}

	// v2 with deltas against v1. Its health check fails, so the device
	// returns to v1 for the next case.
	v2 := w.publish("stable", 2, func(o *manifest.PublishOptions) {
		o.DeltaFrom = []manifest.DeltaBase{{Version: 1}}
	})
	pub := w.lastPublish
	if len(pub.Deltas) != 1 || pub.Deltas[0].Stats.Deltas == 0 {
		t.Fatalf("publish: %+v", pub.Deltas)
	}
	ds := pub.Deltas[0].Stats
	os.WriteFile(flag, nil, 0o644)
	cf := w.counted()
	res, err := open(t, cfg).Apply(ctx, updater.ApplyOptions{Mirrors: []fetch.Fetcher{cf}})
	if err != nil {
		t.Fatal(err)
	}
	st := res.Stats
	if !res.Reboot || !slotHolds(t, cfg, "A", v2) || st.DeltaBase != 1 || st.DeltaChunks != ds.Deltas || st.DeltaFailed != 0 {
		t.Fatalf("apply v2 from deltas: %+v", res)
	}
	// What crossed from the repository is the deltas and the whole
	// objects of the chunks without one: the plan's figure, far below the
	// new chunks' objects.
	if got := cf.bytes["deltas"] + cf.bytes["chunks"]; got != ds.DeltaBytes+st.DeltaIndexBytes || got*3 > ds.WholeBytes {
		t.Fatalf("repository served %d bytes (deltas/ %d, chunks/ %d); plan: %d with deltas, %d whole; stats %+v",
			got, cf.bytes["deltas"], cf.bytes["chunks"], ds.DeltaBytes, ds.WholeBytes, st)
	}
	t.Logf("v1 -> v2: %d bytes with deltas (index %d), %d whole", cf.bytes["deltas"]+cf.bytes["chunks"], st.DeltaIndexBytes, ds.WholeBytes)
	if r := reboot(t, cfg); !r.RolledBack {
		t.Fatalf("v2 should roll back: %+v", r)
	}
	reboot(t, cfg)

	// Again, with one delta object damaged and slot A wiped (so nothing
	// of the first attempt is in place).
	dt := deltaObjects(t, w.repo)
	victim := dt[0]
	b, _ := os.ReadFile(victim)
	b[len(b)/2] ^= 0x10
	os.WriteFile(victim, b, 0o644)
	os.WriteFile(cfg.SlotPath("A"), make([]byte, 1<<20), 0o644)
	os.Remove(flag)
	cf = w.counted()
	res, err = open(t, cfg).Apply(ctx, updater.ApplyOptions{Mirrors: []fetch.Fetcher{cf}, OfferOptions: updater.OfferOptions{RetryFailed: true, SourceName: "the test repo"}})
	if err != nil {
		t.Fatal(err)
	}
	st = res.Stats
	if st.DeltaFailed != 1 || st.DeltaChunks != ds.Deltas-1 || st.FetchedChunks != ds.KeptWhole+1 ||
		!strings.Contains(st.DeltaRefusals[0], filepath.Base(victim)) || !strings.Contains(st.DeltaRefusals[0], "the test repo") {
		t.Fatalf("damaged delta: %+v", st)
	}
	if r := reboot(t, cfg); !r.Committed || !slotHolds(t, cfg, "A", v2) {
		t.Fatalf("v2 after a refused delta: %+v", r)
	}

	// v3 has deltas from v1 only; the device runs v2: whole chunks.
	w.publish("stable", 3, func(o *manifest.PublishOptions) { o.DeltaFrom = []manifest.DeltaBase{{Version: 1}} })
	cf = w.counted()
	res, err = open(t, cfg).Apply(ctx, updater.ApplyOptions{Mirrors: []fetch.Fetcher{cf}})
	if err != nil {
		t.Fatal(err)
	}
	st = res.Stats
	if st.DeltaBase != 0 || st.DeltaChunks != 0 || cf.bytes["deltas"] != 0 || st.FetchedChunks == 0 || !strings.Contains(st.DeltaNote, "from v2") {
		t.Fatalf("device on v2, deltas from v1: %+v", st)
	}
	if r := reboot(t, cfg); !r.Committed {
		t.Fatalf("v3: %+v", r)
	}

	// v4 has deltas from v3, but the source lacks the delta index (a
	// mirror that copied only chunks/): whole chunks, and no refusal.
	w.publish("stable", 4, func(o *manifest.PublishOptions) { o.DeltaFrom = []manifest.DeltaBase{{Version: 3}} })
	if err := os.RemoveAll(filepath.Join(w.repo, "deltas", "index")); err != nil {
		t.Fatal(err)
	}
	res, err = open(t, cfg).Apply(ctx, updater.ApplyOptions{Mirrors: []fetch.Fetcher{w.counted()}})
	if err != nil {
		t.Fatal(err)
	}
	if st := res.Stats; st.DeltaChunks != 0 || st.DeltaFailed != 0 || !strings.Contains(st.DeltaNote, "does not hold") || st.FetchedChunks == 0 {
		t.Fatalf("source without the delta index: %+v", st)
	}
}

// deltaObjects lists the delta object files of a repository.
func deltaObjects(t *testing.T, repo string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(repo, "deltas"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Base(filepath.Dir(p)) != "index" {
			out = append(out, p)
		}
		return nil
	})
	if len(out) == 0 {
		t.Fatal("no delta objects in the repository")
	}
	return out
}
