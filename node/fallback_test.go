package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest/bundle"
	"github.com/shoalnet/shoal/updater/state"
)

// Every file a node fetches as a piece has a way out: a missing delta
// falls back to whole chunks, a dead origin to the peers, a peer that
// never brings a piece to the next source. None of these may hang an
// install (each ran for ever before its fix).

// noDeltas is a mirror that copied everything but deltas/.
type noDeltas struct{ fetch.Fetcher }

func (m noDeltas) Fetch(ctx context.Context, p string, max int64) ([]byte, error) {
	if strings.HasPrefix(p, "deltas/") {
		return nil, fmt.Errorf("%s: %w", p, fetch.ErrNotFound)
	}
	return m.Fetcher.Fetch(ctx, p, max)
}

// deadOrigin refuses every connection.
type deadOrigin struct{}

func (deadOrigin) Fetch(context.Context, string, int64) ([]byte, error) {
	return nil, errors.New("dial tcp: connection refused")
}

// runNodes runs ns until the test ends (before their Cleanup closes
// them: cleanups run last first).
func runNodes(t *testing.T, ctx context.Context, ns ...*Node) {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{}, len(ns))
	for _, n := range ns {
		go func() { n.Run(runCtx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		stop()
		for range ns {
			<-done
		}
	})
}

func flipped(n *Node) func() bool {
	return func() bool {
		n.devMu.Lock()
		defer n.devMu.Unlock()
		return n.dev.State().Phase == state.Tentative
	}
}

// A device on v1 whose origin lacks deltas/ installs v2 from whole
// chunks, and a cache node beside it keeps v2.
func TestMirrorWithoutDeltas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newDeltaFixture(t, ctx, 1<<20)
	origin := noDeltas{fetch.Dir(f.repo)}
	cache := f.cacheNode(t, ctx, "cache", WithOrigin(origin))
	c := virtualDevice(t, filepath.Join(f.dir, "dev", "device"), f.root, 2<<20)
	installDirect(t, ctx, c, f.repo)
	dev := f.deviceNode(t, ctx, c, cache.Addrs()[:1], WithOrigin(origin))
	runNodes(t, ctx, cache, dev)
	waitFor(t, ctx, "peers connected", func() bool { return len(dev.Host().Peers()) == 1 })
	if err := cache.Announce(ctx, fetch.Dir(f.repo)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the cache node kept v1", func() bool { return len(cache.Status().Releases) == 1 })
	f.publishV2(t, ctx)
	if err := cache.Announce(ctx, fetch.Dir(f.repo)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the device flipped to v2 from whole chunks", flipped(dev))
	waitFor(t, ctx, "the cache node kept v2", func() bool { return len(cache.Status().Releases) == 2 })
}

// A device whose origin is down takes the release's index from the cache
// node that serves it (imported from a bundle: it never announced the
// index as a piece).
func TestDeadOriginCacheHasIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newDeltaFixture(t, ctx, 1<<20)
	bpath := filepath.Join(f.dir, "v1.tar")
	if _, err := bundle.Create(ctx, bundle.CreateOptions{Repo: f.repo, Channel: "stable", Out: bpath}); err != nil {
		t.Fatal(err)
	}
	cache := f.cacheNode(t, ctx, "cache")
	if _, err := cache.ImportBundle(ctx, bpath); err != nil {
		t.Fatal(err)
	}
	c := virtualDevice(t, filepath.Join(f.dir, "dev", "device"), f.root, 2<<20)
	dev := f.deviceNode(t, ctx, c, cache.Addrs()[:1], WithOrigin(deadOrigin{}))
	runNodes(t, ctx, cache, dev)
	waitFor(t, ctx, "the exchange connected", func() bool { return len(dev.engine.Peers()) == 1 })
	time.Sleep(time.Second)
	if err := cache.Announce(ctx, fetch.Dir(f.repo)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the device flipped to v1 from the cache node", flipped(dev))
}

// A device on v1 with no origin behind a cache node that does not keep
// v1 (so it fetches no delta index, nor deltas) installs v2 from the
// cache's whole chunks once no peer brought the delta index for
// oneWait (shortened here).
func TestNoDeltasFromPeersFallsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	defer func(d time.Duration) { oneWaitBase = d }(oneWaitBase)
	oneWaitBase = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := newDeltaFixture(t, ctx, 1<<20)
	c := virtualDevice(t, filepath.Join(f.dir, "dev", "device"), f.root, 2<<20)
	installDirect(t, ctx, c, f.repo)
	f.publishV2(t, ctx)
	cache := f.cacheNode(t, ctx, "cache", WithOrigin(fetch.Dir(f.repo)))
	dev := f.deviceNode(t, ctx, c, cache.Addrs()[:1])
	runNodes(t, ctx, cache, dev)
	waitFor(t, ctx, "peers connected", func() bool { return len(dev.Host().Peers()) == 1 })
	time.Sleep(time.Second)
	if err := cache.Announce(ctx, fetch.Dir(f.repo)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the device flipped to v2", flipped(dev))
}
