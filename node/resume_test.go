package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/bundle"
	"github.com/shoalnet/shoal/updater/state"
)

// TestKilledNodeResumes: a device node installing a 24 MiB release of
// about 1,600 chunks from a cache node (its only source: no origin) is
// stopped in the middle of the transfer. A new node on the same config
// and store, told of the release again, installs it without fetching
// again what the first run verified: over both runs the cache node
// serves at most every chunk once, plus the Wants that were in flight at
// the stop (one window) and the index once per run.
func TestKilledNodeResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dir := t.TempDir()
	keys, err := manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	const size = 24 << 20
	img := publishImage(t, ctx, keys, dir, repo, 1, size, chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10})
	bpath := filepath.Join(dir, "v1.shoal")
	if _, err := bundle.Create(ctx, bundle.CreateOptions{Repo: repo, Channel: "stable", Out: bpath}); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "keys", "root.json")
	quiet := (&logSink{}).logger()

	// The holder: a cache node seeded from a bundle, its uploads capped so
	// the transfer lasts long enough to be cut (the cap lets the first
	// 16 MiB through at once: the exchange's bucket holds one largest
	// frame).
	holder, err := New(ctx, nodeConfig(t, filepath.Join(dir, "cache"),
		fmt.Sprintf("channels = [\"stable\"]\nupload_rate = \"2 MiB/s\"\n[trust]\nroot = %q\n", root), nil), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.ImportBundle(ctx, bpath); err != nil {
		t.Fatal(err)
	}
	pins, err := holder.db.Pins(ctx)
	if err != nil || len(pins) != 1 {
		t.Fatalf("pins %v %v", pins, err)
	}
	var ix *chunker.Index
	for _, id := range pins {
		if ix, err = holder.db.GetIndex(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	unique := map[chunker.Digest]bool{}
	for _, e := range ix.Chunks {
		unique[e.Digest] = true
	}
	var hwg sync.WaitGroup
	holderCtx, stopHolder := context.WithCancel(ctx)
	defer func() { stopHolder(); hwg.Wait() }()
	hwg.Add(1)
	go func() { defer hwg.Done(); holder.Run(holderCtx) }()

	dcfgPath := virtualDevice(t, filepath.Join(dir, "dev", "device"), root, size+1<<20)
	dcfg := nodeConfig(t, filepath.Join(dir, "dev"), fmt.Sprintf("[device]\nconfig = %q\n", dcfgPath), holder.Addrs())
	announce := func(n *Node) {
		t.Helper()
		br, err := bundle.Open(bpath)
		if err != nil {
			t.Fatal(err)
		}
		defer br.Close()
		if err := n.Announce(ctx, br); err != nil {
			t.Fatal(err)
		}
	}
	// runDevice starts a device node on dcfg and returns it with the
	// function that stops its Run and closes it.
	runDevice := func() (*Node, func()) {
		t.Helper()
		n, err := New(ctx, dcfg, WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); n.Run(runCtx) }()
		var once sync.Once
		return n, func() {
			once.Do(func() {
				stop()
				<-done
				n.Close()
			})
		}
	}
	transfer := func(n *Node) (TransferStatus, bool) {
		st := releaseTransfers(n.Status())
		if len(st) == 0 {
			return TransferStatus{}, false
		}
		return st[0], true
	}

	// First run: stopped once it holds some of the release but not all.
	dev, stopDev := runDevice()
	defer func() { stopDev() }()
	if dev.origin != nil {
		t.Fatal("the device has an origin")
	}
	waitFor(t, ctx, "the exchange connected", func() bool {
		return len(dev.engine.Peers()) == 1 && len(holder.engine.Peers()) == 1
	})
	time.Sleep(1500 * time.Millisecond) // the gossip mesh forms
	announce(holder)
	var first TransferStatus
	waitFor(t, ctx, "the device to hold part of the release", func() bool {
		tr, ok := transfer(dev)
		first = tr
		return ok && tr.Held >= tr.Total/4 && tr.Held < tr.Total
	})
	stopDev()
	dev.devMu.Lock()
	phase := dev.dev.State().Phase
	dev.devMu.Unlock()
	if phase != state.Fetching {
		t.Fatalf("after the stop the device is %s, want fetching", phase)
	}
	if first.Held == first.Total {
		t.Fatal("the first run finished before it was stopped: the test proves nothing")
	}
	waitFor(t, ctx, "the holder to forget the device", func() bool { return len(holder.engine.Peers()) == 0 })
	servedFirst := holder.engine.Stats().ServedBlocks
	t.Logf("first run: stopped holding %d of %d positions (%d unique chunks); the holder served %d blocks",
		first.Held, first.Total, len(unique), servedFirst)

	// Second run: the same config, store and slots, and no announcement:
	// the node checks the last one it accepted again and resumes.
	dev2, stopDev2 := runDevice()
	defer stopDev2()
	waitFor(t, ctx, "the device installed the release", func() bool {
		dev2.devMu.Lock()
		ok := dev2.dev.State().Phase == state.Tentative
		dev2.devMu.Unlock()
		if !ok && time.Until(deadlineOf(ctx)) < 100*time.Millisecond {
			t.Logf("second run status: %+v", dev2.Status())
		}
		return ok
	})
	second, _ := transfer(dev2)
	servedAll := holder.engine.Stats().ServedBlocks
	t.Logf("second run: fetched %v chunks; the holder served %d blocks in all (%d in the second run)",
		second.Chunks, servedAll, servedAll-servedFirst)
	stopDev2()

	slot, err := os.ReadFile(dev2.dev.Config.SlotPath("B"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(slot[:len(img)], img) {
		t.Fatal("the slot does not hold the release")
	}
	// Every chunk at most once, plus one window of Wants in flight at the
	// stop (sched.Config.Window, default 8) and the index in each run.
	const window, indexes = 8, 2
	if bound := int64(len(unique) + window + indexes); servedAll > bound {
		t.Errorf("the holder served %d blocks over both runs for %d unique chunks: more than %d, verified chunks were fetched again",
			servedAll, len(unique), bound)
	}
	// The second run fetched only what the first did not hold.
	if got, most := second.Chunks["lan"], first.Total-first.Held+window; got > most || got == 0 {
		t.Errorf("the second run fetched %d chunks; the first held %d of %d positions (%d unique chunks)", got, first.Held, first.Total, len(unique))
	}
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
