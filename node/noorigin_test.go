package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/bundle"
	"github.com/shoalnet/shoal/swarm/sched"
	"github.com/shoalnet/shoal/updater"
	"github.com/shoalnet/shoal/updater/state"
)

// TestCacheNodeFeedsDeviceWithoutOrigin: a remote site with no route to
// the origin. Its cache node is seeded from a bundle (manifest/bundle,
// Node.ImportBundle) and announces the release from the bundle's
// metadata; a device node with no origin at all hears the announcement,
// gets the release's index and every chunk from the cache node, installs
// it (tentative), and commits after its reboot.
func TestCacheNodeFeedsDeviceWithoutOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	keys, err := manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	img := make([]byte, 2<<20)
	rand.Read(img)
	imgPath := filepath.Join(dir, "v1.img")
	os.WriteFile(imgPath, img, 0o644)
	if _, err := manifest.Publish(ctx, manifest.PublishOptions{Repo: repo, Keys: keys, Channel: "stable", Version: 1,
		Artifacts: []manifest.ArtifactInput{{Name: "rootfs", Path: imgPath}},
		Params:    chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}}); err != nil {
		t.Fatal(err)
	}
	bpath := filepath.Join(dir, "v1.shoal")
	if _, err := bundle.Create(ctx, bundle.CreateOptions{Repo: repo, Channel: "stable", Out: bpath}); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "keys", "root.json")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// Neither node has an origin: no [node] origin, no WithOrigin.
	cache, err := New(ctx, nodeConfig(t, filepath.Join(dir, "cache"), fmt.Sprintf("channels = [\"stable\"]\n[trust]\nroot = %q\n", root), nil), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	if _, err := cache.ImportBundle(ctx, bpath); err != nil {
		t.Fatal(err)
	}
	dcfg := virtualDevice(t, filepath.Join(dir, "dev", "device"), root, 4<<20)
	dev, err := New(ctx, nodeConfig(t, filepath.Join(dir, "dev"), fmt.Sprintf("[device]\nconfig = %q\n", dcfg), []string{cache.Addrs()[0]}), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	devClosed := false
	defer func() {
		if !devClosed {
			dev.Close()
		}
	}()
	if cache.origin != nil || dev.origin != nil || len(dev.cfg.Node.Origin) != 0 {
		t.Fatal("a node has a route to the origin")
	}

	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	defer func() { stop(); wg.Wait() }()
	for _, n := range []*Node{cache, dev} {
		wg.Add(1)
		go func() { defer wg.Done(); n.Run(runCtx) }()
	}
	waitFor(t, ctx, "the exchange connected", func() bool {
		return len(dev.engine.Peers()) == 1 && len(cache.engine.Peers()) == 1
	})
	time.Sleep(1500 * time.Millisecond) // the gossip mesh forms
	br, err := bundle.Open(bpath)
	if err != nil {
		t.Fatal(err)
	}
	err = cache.Announce(ctx, br)
	br.Close()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the device flipped", func() bool {
		dev.devMu.Lock()
		defer dev.devMu.Unlock()
		return dev.dev.State().Phase == state.Tentative
	})
	st := dev.Status()
	if len(st.Transfers) != 1 || st.Transfers[0].Held != st.Transfers[0].Total {
		t.Fatalf("device transfers: %+v", st.Transfers)
	}
	tr := st.Transfers[0]
	t.Logf("device: %d/%d chunks, by source %v", tr.Held, tr.Total, tr.Chunks)
	if tr.Chunks[sched.Origin.String()] != 0 {
		t.Errorf("chunks from an origin: %v", tr.Chunks)
	}
	// The cache node heard its own announcement too and kept the release
	// it holds, reading the index from its own store.
	waitFor(t, ctx, "the cache node took its announcement", func() bool {
		cache.smu.Lock()
		defer cache.smu.Unlock()
		return len(cache.finished) == 1 || cache.lastErr != ""
	})
	cache.smu.Lock()
	if cache.lastErr != "" {
		t.Errorf("cache node: %s", cache.lastErr)
	}
	cache.smu.Unlock()
	if served := cache.engine.Stats().ServedBlocks; served < 2 {
		t.Errorf("the cache node served %d blocks", served)
	}

	stop()
	wg.Wait()
	devCfg := dev.dev.Config
	dev.Close()
	devClosed = true
	d, err := updater.Open(ctx, devCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := d.BootCheck(ctx)
	if err != nil || !res.Committed {
		t.Fatalf("boot-check: %+v %v", res, err)
	}
	slot, _ := os.ReadFile(devCfg.SlotPath("B"))
	if !bytes.Equal(slot[:len(img)], img) {
		t.Fatal("slot B does not hold the release")
	}
}
