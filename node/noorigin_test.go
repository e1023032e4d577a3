package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/bundle"
	"github.com/shoalnet/shoal/swarm"
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
	img := publishImage(t, ctx, keys, dir, repo, 1, 2<<20, chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10})
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
	if rt := releaseTransfers(st); len(rt) != 1 || rt[0].Held != rt[0].Total {
		t.Fatalf("device transfers: %+v", st.Transfers)
	}
	tr := releaseTransfers(st)[0]
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
	rebootCommits(t, ctx, devCfg, img)
}

// logFleet is a publisher whose every release is logged in the
// repository's transparency log.
type logFleet struct {
	dir, repo, root string
	keys            *manifest.Keyring
}

func newLogFleet(t *testing.T) *logFleet {
	t.Helper()
	dir := t.TempDir()
	keys, err := manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &logFleet{dir: dir, repo: filepath.Join(dir, "repo"), root: filepath.Join(dir, "keys", "root.json"), keys: keys}
}

// publish publishes version of the stable channel, logged, and returns
// its image and its announcement.
func (f *logFleet) publish(t *testing.T, ctx context.Context, version uint64, size int) ([]byte, []byte) {
	t.Helper()
	img := make([]byte, size)
	rand.Read(img)
	p := filepath.Join(f.dir, fmt.Sprintf("v%d.img", version))
	os.WriteFile(p, img, 0o644)
	if _, err := manifest.Publish(ctx, manifest.PublishOptions{Repo: f.repo, Keys: f.keys, Channel: "stable", Version: version,
		Artifacts: []manifest.ArtifactInput{{Name: "rootfs", Path: p}}, Log: f.keys.TargetsLog(),
		Params: chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}}); err != nil {
		t.Fatal(err)
	}
	return img, collectAnnouncement(t, f.repo, testFleet, "stable")
}

// device makes the config of a device node (name under the fleet's
// directory) that requires the log, and has no origin.
func (f *logFleet) device(t *testing.T, name string, bootstrap []string) *Config {
	t.Helper()
	d := filepath.Join(f.dir, name)
	path := virtualDevice(t, filepath.Join(d, "device"), f.root, 4<<20)
	dcfg, err := updater.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(f.keys.Dir(), manifest.LogPubFile))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d, "device", "log.pub"), pub, 0o644)
	dcfg.Trust.LogKey, dcfg.Trust.RequireLog = "log.pub", true
	text, err := dcfg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, text, 0o644)
	return nodeConfig(t, d, fmt.Sprintf("[device]\nconfig = %q\n", path), bootstrap)
}

// TestRequireLogDeviceWithoutOrigin: a device that requires the
// transparency log ([trust] require_log) and has no route to the origin
// hears the announcement of a logged release from a cache node that has
// one; it proves the log from the slice the announcement carries (its
// witness remembers the checkpoint), gets the index and every chunk from
// the cache node, installs the release and commits it after its reboot.
func TestRequireLogDeviceWithoutOrigin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newLogFleet(t)
	img, _ := f.publish(t, ctx, 1, 1<<20)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	cache, err := New(ctx, nodeConfig(t, filepath.Join(f.dir, "cache"), fmt.Sprintf("channels = [\"stable\"]\n[trust]\nroot = %q\n", f.root), nil),
		WithOrigin(fetch.Dir(f.repo)), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	dev, err := New(ctx, f.device(t, "dev", []string{cache.Addrs()[0]}), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	devClosed := false
	defer func() {
		if !devClosed {
			dev.Close()
		}
	}()
	if dev.origin != nil || len(dev.cfg.Node.Origin) != 0 || dev.trust.Witness == nil {
		t.Fatal("the device node has a route to the origin, or does not require the log")
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
	if err := cache.Announce(ctx, fetch.Dir(f.repo)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the device flipped", func() bool {
		dev.devMu.Lock()
		defer dev.devMu.Unlock()
		return dev.dev.State().Phase == state.Tentative
	})
	// The log was proven from the announcement: the validator's witness
	// remembers the checkpoint it carried.
	cp, err := dev.trust.Witness.Remembered()
	if err != nil || cp.Tree.N != 1 {
		t.Fatalf("the device node's witness remembers %+v, %v", cp.Tree, err)
	}
	if acc, _, _ := dev.vals[0].counts(); acc == 0 {
		t.Fatal("the device's validator accepted nothing")
	}
	tr := releaseTransfers(dev.Status())
	if len(tr) != 1 || tr[0].Held != tr[0].Total || tr[0].Chunks[sched.Origin.String()] != 0 {
		t.Fatalf("device transfers: %+v", tr)
	}

	stop()
	wg.Wait()
	devCfg := dev.dev.Config
	dev.Close()
	devClosed = true
	rebootCommits(t, ctx, devCfg, img)
}

// TestRequireLogRefusesBadSlices: a device node that requires the log
// and has no origin hears, from a peer that publishes what it likes,
// announcements of a genuine release whose log slice is stripped, whose
// checkpoint is signed by another key, or whose checkpoint is stale (the
// previous release's slice). Its validator refuses each with a log line
// naming the peer and what was wrong with the log — ignored when a peer
// that does not require the log could have relayed it in good faith,
// rejected when no honest peer would — and none reaches the updater: no
// state or audit entry changes. The genuine announcement is accepted.
func TestRequireLogRefusesBadSlices(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newLogFleet(t)
	_, ann1 := f.publish(t, ctx, 1, 256<<10)
	_, ann2 := f.publish(t, ctx, 2, 256<<10)
	bad := logVariants(t, ann2, ann1)

	sink := &logSink{}
	dev, err := New(ctx, f.device(t, "dev", nil), WithLogger(sink.logger()))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		wg.Wait()
		dev.Close()
	}()
	wg.Add(1)
	go func() { defer wg.Done(); dev.Run(runCtx) }()

	pub := bareHost(t, ctx, dev.Addrs())
	ra, err := pub.JoinReleases("stable", func(context.Context, peer.ID, []byte) swarm.ValidationResult { return swarm.Accept })
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "topic peers", func() bool {
		return slices.Contains(ra.Peers(), dev.ID()) && slices.Contains(dev.topics[0].Peers(), pub.ID())
	})
	time.Sleep(1500 * time.Millisecond) // the gossip mesh forms
	before := snapshotDevice(t, dev)

	from := pub.ID().String()
	cases := []struct {
		name   string
		result swarm.ValidationResult
		reason string
	}{
		{"stripped", swarm.Ignore, "carries no transparency-log files"},
		{"forged checkpoint", swarm.Ignore, "log/checkpoint: tlog: invalid checkpoint"},
		{"stale", swarm.Reject, "the log files do not prove the targets"},
	}
	for i, tc := range cases {
		if err := ra.Publish(ctx, bad[tc.name]); err != nil {
			t.Fatalf("%s: publish: %v", tc.name, err)
		}
		waitFor(t, ctx, "the verdict on the "+tc.name+" slice", func() bool {
			return len(sink.find("announcement dropped", "from", from)) == i+1
		})
		rec := sink.find("announcement dropped", "from", from)[i]
		if rec.attrs["result"] != tc.result.String() || !strings.Contains(rec.attrs["reason"], tc.reason) {
			t.Errorf("%s: logged %v, want result %s and a reason with %q", tc.name, rec.attrs, tc.result, tc.reason)
		}
		t.Logf("%s: %s (%s)", tc.name, rec.attrs["result"], rec.attrs["reason"])
	}
	if acc, rej, ign := dev.vals[0].counts(); acc != 0 || rej != 1 || ign != 2 {
		t.Errorf("verdicts: %d accepted, %d rejected, %d ignored; want 0, 1, 2", acc, rej, ign)
	}
	time.Sleep(500 * time.Millisecond)
	if after := snapshotDevice(t, dev); !reflect.DeepEqual(after, before) {
		t.Errorf("the device changed:\nbefore %+v\nafter  %+v", before, after)
	}
	dev.smu.Lock()
	finished, transfers := len(dev.finished), len(dev.transfers)
	dev.smu.Unlock()
	if finished != 0 || transfers != 0 {
		t.Errorf("the node took a release: %d finished, %d transfers", finished, len(dev.transfers))
	}

	// The genuine announcement, from the same peer, passes.
	if err := ra.Publish(ctx, ann2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the genuine announcement accepted", func() bool {
		acc, _, _ := dev.vals[0].counts()
		return acc == 1
	})
	if t.Failed() {
		t.Logf("the device node's log:\n%s", sink)
	}
}

// rebootCommits powers the (closed) node's device on again: its boot check
// must commit, and slot B must hold img.
func rebootCommits(t *testing.T, ctx context.Context, cfg *updater.Config, img []byte) {
	t.Helper()
	d, err := updater.Open(ctx, cfg)
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
	slot, _ := os.ReadFile(cfg.SlotPath("B"))
	if !bytes.Equal(slot[:len(img)], img) {
		t.Fatal("slot B does not hold the release")
	}
}
