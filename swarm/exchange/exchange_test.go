package exchange_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/shoalnet/shoal/swarm/exchange"
	"github.com/shoalnet/shoal/swarm/sched"
)

// Three nodes on one LAN, one holding the whole release: the other two
// complete from it (and from each other) without a byte from the origin.
func TestThreeNodesFromHolder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rl := makeRelease(t, 4<<20, 1, smallParams)
	org := newOrigin(rl)
	s := newNode(t, "seed", exchange.Config{})
	s.seed(rl)
	if _, err := s.e.Serve(ctx, rl.ix); err != nil {
		t.Fatal(err)
	}
	a, b := newNode(t, "a", exchange.Config{}), newNode(t, "b", exchange.Config{})
	connect(s, a, sched.LAN)
	connect(s, b, sched.LAN)
	connect(a, b, sched.LAN)
	cfg := exchange.DownloadConfig{Origin: org, TickPeriod: 10 * time.Millisecond}
	da, dla := a.prepare(t, rl, cfg)
	db, dlb := b.prepare(t, rl, cfg)
	announced(t, a, rl.id, 2)
	announced(t, b, rl.id, 2)

	want := rl.unique()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = da.FetchAll(ctx, want, dla.deliver(rl)) }()
	go func() { defer wg.Done(); errs[1] = db.FetchAll(ctx, want, dlb.deliver(rl)) }()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
	}
	dla.check(t, rl, want)
	dlb.check(t, rl, want)
	if got := org.bytes.Load(); got != 0 {
		t.Errorf("origin served %d bytes, want 0", got)
	}
	for _, n := range []*node{a, b} {
		if string(n.slot.b) != string(rl.data) {
			t.Errorf("%s: slot differs from the release", n.id)
		}
	}
	t.Logf("a: %+v", da.Stats().Chunks)
	t.Logf("b: %+v", db.Stats().Chunks)
	if st := s.e.Stats(); st.Misbehaved != 0 {
		t.Errorf("seed disconnected %d peers", st.Misbehaved)
	}
}

// Three nodes on one LAN and only the origin holds the release: with the
// uplink split, the origin serves each chunk once and every node
// completes.
func TestLANSplitOriginOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rl := makeRelease(t, 4<<20, 2, smallParams)
	org := newOrigin(rl)
	nodes := []*node{newNode(t, "a", exchange.Config{}), newNode(t, "b", exchange.Config{}), newNode(t, "c", exchange.Config{})}
	connect(nodes[0], nodes[1], sched.LAN)
	connect(nodes[0], nodes[2], sched.LAN)
	connect(nodes[1], nodes[2], sched.LAN)
	cfg := exchange.DownloadConfig{Origin: org, TickPeriod: 10 * time.Millisecond,
		Sched: sched.Config{StallTicks: 100000, ShareStallTicks: 100000}}
	want := rl.unique()
	for i, d := range fetchSite(t, ctx, rl, nodes, func(int) exchange.DownloadConfig { return cfg }) {
		t.Logf("%s: chunks by class %v", nodes[i].id, d.Stats().Chunks)
	}
	org.mu.Lock()
	defer org.mu.Unlock()
	if len(org.count) != len(want) {
		t.Errorf("origin served %d distinct chunks, want %d", len(org.count), len(want))
	}
	for p, c := range org.count {
		if c != 1 {
			t.Errorf("origin served %s %d times", p, c)
		}
	}
}

// A site gateway with the origin and two devices without it (they say so
// in their Hellos): the gateway fetches every chunk from the origin once,
// the devices take everything from the LAN, and nobody waits for a share
// that a device could never fetch (ShareStallTicks is out of reach, so a
// wrong split would hang until the test's deadline).
func TestNoShareDevices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rl := makeRelease(t, 4<<20, 13, smallParams)
	org := newOrigin(rl)
	nodes := []*node{newNode(t, "gateway", exchange.Config{}),
		newNode(t, "d1", exchange.Config{NoShare: true}), newNode(t, "d2", exchange.Config{NoShare: true})}
	connect(nodes[0], nodes[1], sched.LAN)
	connect(nodes[0], nodes[2], sched.LAN)
	connect(nodes[1], nodes[2], sched.LAN)
	ds := fetchSite(t, ctx, rl, nodes, func(i int) exchange.DownloadConfig {
		cfg := exchange.DownloadConfig{TickPeriod: 10 * time.Millisecond,
			Sched: sched.Config{StallTicks: 100000, ShareStallTicks: 100000}}
		if i == 0 {
			cfg.Origin = org
		}
		return cfg
	})
	for i, n := range nodes {
		st := ds[i].Stats()
		if st.Sched.Excluded != 0 {
			t.Errorf("%s excluded %d wanters for stalling on their share", n.id, st.Sched.Excluded)
		}
		if i > 0 && st.Chunks[sched.Origin] != 0 {
			t.Errorf("%s fetched %d chunks from an origin it does not have", n.id, st.Chunks[sched.Origin])
		}
		t.Logf("%s: chunks by class %v", n.id, st.Chunks)
	}
	org.mu.Lock()
	defer org.mu.Unlock()
	for p, c := range org.count {
		if c != 1 {
			t.Errorf("origin served %s %d times", p, c)
		}
	}
}

// fetchSite has every node, each with cfg(i), download the whole release
// at once (once each has heard the others' Haves) and checks what each
// got: every chunk once, the slot equal to the release.
func fetchSite(t *testing.T, ctx context.Context, rl *release, nodes []*node, cfg func(int) exchange.DownloadConfig) []*exchange.Download {
	t.Helper()
	ds := make([]*exchange.Download, len(nodes))
	dls := make([]*delivery, len(nodes))
	for i, n := range nodes {
		ds[i], dls[i] = n.prepare(t, rl, cfg(i))
	}
	for _, n := range nodes {
		announced(t, n, rl.id, len(nodes)-1)
	}
	want := rl.unique()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = ds[i].FetchAll(ctx, want, dls[i].deliver(rl)) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("download %s: %v", nodes[i].id, err)
		}
	}
	for i, n := range nodes {
		dls[i].check(t, rl, want)
		if string(n.slot.b) != string(rl.data) {
			t.Errorf("%s: slot differs from the release", n.id)
		}
	}
	return ds
}

// What a node newly holds reaches a LAN peer at once, a HaveDelta per
// batch, and a WAN peer after WANHaveDelay, as one Have for all batches.
func TestWANHavesCoalesce(t *testing.T) {
	rl := makeRelease(t, 1<<20, 14, smallParams)
	a := newNode(t, "a", exchange.Config{WANHaveDelay: 300 * time.Millisecond})
	lan, wan := newNode(t, "lan", exchange.Config{}), newNode(t, "wan", exchange.Config{})
	connect(a, lan, sched.LAN)
	connect(a, wan, sched.WAN)
	if _, err := a.e.Serve(context.Background(), rl.ix); err != nil {
		t.Fatal(err)
	}
	seen := func(n *node) int {
		for _, p := range n.e.Peers() {
			if p.ID == "a" {
				return p.Announced[rl.id]
			}
		}
		return -1
	}
	waitFor(t, "both peers to hear a's empty Have", func() bool { return seen(lan) == 0 && seen(wan) == 0 })
	start := time.Now()
	for i := range 3 {
		a.e.Announce(rl.id, []int{i})
	}
	waitFor(t, "the LAN peer to hear three positions", func() bool { return seen(lan) == 3 })
	if seen(wan) != 0 && time.Since(start) < 300*time.Millisecond {
		t.Fatalf("the WAN peer heard of %d positions before the delay", seen(wan))
	}
	waitFor(t, "the WAN peer to hear three positions", func() bool { return seen(wan) == 3 })
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("the WAN peer heard after %v, before WANHaveDelay", el)
	}
}
