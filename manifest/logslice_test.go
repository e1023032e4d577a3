package manifest

import (
	"context"
	"errors"
	"testing"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// TestCollectLog: the slice of a logged repository, beside its metadata
// set and nothing else, is enough for a device that requires the log; a
// repository without a log has no slice; a log above the bound is
// refused.
func TestCollectLog(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil) // before the log
	set, err := CollectMetadata(ctx, fetch.Dir(f.repo), 10)
	if err != nil {
		t.Fatal(err)
	}
	if ls, err := CollectLog(ctx, fetch.Dir(f.repo), set.TargetsVersion, set.Targets, 100); ls != nil || err != nil {
		t.Fatalf("repository without a log: %+v, %v", ls, err)
	}

	f.publish("stable", 2, 2, f.logged)
	f.publish("beta", 1, 3, f.logged)
	f.publish("stable", 3, 4, f.logged)
	set, err = CollectMetadata(ctx, fetch.Dir(f.repo), 10)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := CollectLog(ctx, fetch.Dir(f.repo), set.TargetsVersion, set.Targets, 100)
	if err != nil {
		t.Fatal(err)
	}
	if ls.Tree.N != 3 || ls.Entry != 2 {
		t.Fatalf("slice of entry %d in a tree of %d", ls.Entry, ls.Tree.N)
	}
	files := fetch.Mem{}
	for p, b := range set.Files {
		files[p] = b
	}
	for p, b := range ls.Files {
		limit, err := LogPathLimit(p)
		if err != nil || int64(len(b)) > limit {
			t.Fatalf("%s: %d bytes, limit %d, %v", p, len(b), limit, err)
		}
		files[p] = b
	}
	w := f.witness()
	v, err := f.logClient(w, files).VerifyMetadata(ctx, stableDevice, []fetch.Fetcher{files})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := w.Proof(v.TargetsVersion, v.Targets); !ok || p.Tree != ls.Tree || p.Entry != ls.Entry {
		t.Fatalf("witness proof %+v %v", p, ok)
	}

	if _, err := CollectLog(ctx, fetch.Dir(f.repo), set.TargetsVersion, set.Targets, 2); !errors.Is(err, tlog.ErrTooLarge) {
		t.Fatalf("log above the bound: %v", err)
	}
	// Targets the log does not hold.
	if _, err := CollectLog(ctx, fetch.Dir(f.repo), set.TargetsVersion, append(set.Targets, ' '), 100); !errors.Is(err, tlog.ErrNotFound) {
		t.Fatalf("unlogged targets: %v", err)
	}
}

func TestLogPathLimit(t *testing.T) {
	if n, err := LogPathLimit("log/checkpoint"); err != nil || n != tlog.MaxCheckpointSize {
		t.Fatalf("log/checkpoint: %d, %v", n, err)
	}
	for _, p := range []string{"checkpoint", "log/.lock", "log/tile/9/0/000", "metadata/timestamp.json", "log/lookup/zz"} {
		if _, err := LogPathLimit(p); err == nil {
			t.Errorf("%s accepted", p)
		}
	}
}
