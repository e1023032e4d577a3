package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/updater"
)

// deltaOrigin is a repository directory that counts what it serves by
// path, and the bytes.
type deltaOrigin struct {
	fetch.Fetcher
	mu    sync.Mutex
	paths map[string]int
	bytes map[string]int64 // by top directory: chunks, deltas
}

func (o *deltaOrigin) Fetch(ctx context.Context, p string, max int64) ([]byte, error) {
	b, err := o.Fetcher.Fetch(ctx, p, max)
	if err == nil {
		o.mu.Lock()
		o.paths[p]++
		o.bytes[strings.SplitN(p, "/", 2)[0]] += int64(len(b))
		o.mu.Unlock()
	}
	return b, err
}

// served counts the files served under dir and the most times one was.
func (o *deltaOrigin) served(dir string) (files, most int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for p, n := range o.paths {
		if strings.HasPrefix(p, dir+"/") {
			files++
			most = max(most, n)
		}
	}
	return files, most
}

// installDirect installs the repository's newest release on a device
// without the swarm and commits it after a reboot.
func installDirect(t *testing.T, ctx context.Context, cfgPath, repo string) {
	t.Helper()
	cfg, err := updater.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	d, err := updater.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Apply(ctx, updater.ApplyOptions{Mirrors: []fetch.Fetcher{fetch.Dir(repo)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := d.BootCheck(ctx); err != nil || !res.Committed {
		t.Fatalf("boot-check: %+v %v", res, err)
	}
}

// deltaFixture is a repository holding v1, a random image, and the means
// to publish v2 with deltas against it.
type deltaFixture struct {
	dir, repo, root string
	keys            *manifest.Keyring
	params          chunker.Params
	v1              []byte
	origin          *deltaOrigin
	log             *slog.Logger
}

func newDeltaFixture(t *testing.T, ctx context.Context, size int) *deltaFixture {
	t.Helper()
	f := &deltaFixture{dir: t.TempDir(), params: chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10},
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	var err error
	if f.keys, err = manifest.InitKeys(filepath.Join(f.dir, "keys"), manifest.KeysOptions{}); err != nil {
		t.Fatal(err)
	}
	f.repo, f.root = filepath.Join(f.dir, "repo"), filepath.Join(f.dir, "keys", "root.json")
	f.v1 = publishImage(t, ctx, f.keys, f.dir, f.repo, 1, size, f.params)
	f.origin = &deltaOrigin{Fetcher: fetch.Dir(f.repo), paths: map[string]int{}, bytes: map[string]int64{}}
	return f
}

// publishV2 publishes v2 with deltas against v1: it rewrites a 1 KiB run
// in every 128 KiB of v1, so each changed chunk is mostly v1's bytes,
// which a delta does not carry.
func (f *deltaFixture) publishV2(t *testing.T, ctx context.Context) ([]byte, delta.Stats) {
	t.Helper()
	v2 := bytes.Clone(f.v1)
	rng := rand.New(rand.NewPCG(7, 7))
	for blk := 0; blk+128<<10 <= len(v2); blk += 128 << 10 {
		at := blk + rng.IntN(127<<10)
		for i := range 1 << 10 {
			v2[at+i] = byte(rng.Uint32())
		}
	}
	v1Path, v2Path := filepath.Join(f.dir, "v1.img"), filepath.Join(f.dir, "v2.img")
	if err := os.WriteFile(v2Path, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	pub, err := manifest.Publish(ctx, manifest.PublishOptions{Repo: f.repo, Keys: f.keys, Channel: "stable", Version: 2,
		Artifacts: []manifest.ArtifactInput{{Name: "rootfs", Path: v2Path}}, Params: f.params,
		DeltaFrom: []manifest.DeltaBase{{Version: 1, Images: map[string]string{"rootfs": v1Path}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pub.Deltas) != 1 || pub.Deltas[0].Stats.Deltas == 0 {
		t.Fatalf("publish made no deltas: %+v", pub.Deltas)
	}
	st := pub.Deltas[0].Stats
	t.Logf("v2: %d new chunks, %d with deltas of %d bytes", st.NewChunks, st.Deltas, st.ObjectBytes)
	return v2, st
}

// cacheNode starts (does not run) a cache node of the channel in
// f.dir/name; it is closed when the test ends.
func (f *deltaFixture) cacheNode(t *testing.T, ctx context.Context, name string, opts ...Option) *Node {
	t.Helper()
	return f.node(t, ctx, filepath.Join(f.dir, name), fmt.Sprintf("channels = [\"stable\"]\n[trust]\nroot = %q\n", f.root), nil, opts...)
}

// deviceNode starts (does not run) the node of the virtual device whose
// config is cfg (virtualDevice's DIR/device/shoal.toml), in DIR.
func (f *deltaFixture) deviceNode(t *testing.T, ctx context.Context, cfg string, bootstrap []string, opts ...Option) *Node {
	t.Helper()
	return f.node(t, ctx, filepath.Dir(filepath.Dir(cfg)), fmt.Sprintf("[device]\nconfig = %q\n", cfg), bootstrap, opts...)
}

func (f *deltaFixture) node(t *testing.T, ctx context.Context, dir, extra string, bootstrap []string, opts ...Option) *Node {
	t.Helper()
	n, err := New(ctx, nodeConfig(t, dir, extra, bootstrap), append(opts, WithLogger(f.log))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestSiteTradesDeltas: three devices of one site run v1; v2 is published
// with deltas against v1. Every device builds the changed chunks from
// delta objects; the release index, the delta index and each delta object
// cross the site's uplink (the origin) once; and a device with no origin
// at all gets its deltas from its peers.
func TestSiteTradesDeltas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := newDeltaFixture(t, ctx, 3<<20)
	var cfgs []string
	for i := range 3 {
		c := virtualDevice(t, filepath.Join(f.dir, fmt.Sprintf("dev%d", i), "device"), f.root, 4<<20)
		installDirect(t, ctx, c, f.repo)
		cfgs = append(cfgs, c)
	}
	v2, st := f.publishV2(t, ctx)
	origin := f.origin
	var nodes []*Node
	for i, c := range cfgs {
		var opts []Option
		if i < 2 { // the third device has no route to the origin
			opts = append(opts, WithOrigin(origin))
		}
		var bs []string
		if i > 0 {
			bs = nodes[0].Addrs()[:1]
		}
		nodes = append(nodes, f.deviceNode(t, ctx, c, bs, opts...))
	}
	runNodes(t, ctx, nodes...)
	waitFor(t, ctx, "peers connected", func() bool {
		for _, n := range nodes {
			if len(n.Host().Peers()) < 2 {
				return false
			}
		}
		return true
	})
	time.Sleep(1500 * time.Millisecond)
	if err := nodes[0].Announce(ctx, fetch.Dir(f.repo)); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		waitFor(t, ctx, fmt.Sprintf("device %d flipped", i), flipped(n))
	}
	for i, n := range nodes {
		slot, err := os.ReadFile(n.dev.Config.SlotPath("A"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(slot[:len(v2)], v2) {
			t.Fatalf("device %d: slot A does not hold v2", i)
		}
	}
	deltas, most := origin.served("deltas")
	chunks, _ := origin.served("chunks")
	t.Logf("origin served %d delta files (%d bytes, each at most %d times), %d chunk objects (%d bytes)",
		deltas, origin.bytes["deltas"], most, chunks, origin.bytes["chunks"])
	// The delta index and every delta object once: no more files than
	// the index lists plus the index, none twice.
	if deltas == 0 || deltas > st.Deltas+1 || most > 1 {
		t.Errorf("origin served %d delta files for %d deltas, one of them %d times: deltas do not cross the uplink once", deltas, st.Deltas, most)
	}
	// The release's index too: one device fetches it, the others take it
	// from the LAN.
	if n, most := origin.served("index"); n != 1 || most != 1 {
		t.Errorf("origin served %d index files, one of them %d times; want v2's once", n, most)
	}
	// Whole chunks only where a chunk has no delta: far fewer than the
	// deltas.
	if chunks >= st.Deltas {
		t.Errorf("origin served %d whole chunks beside %d deltas", chunks, st.Deltas)
	}
	// The device without an origin took its deltas from its peers: a
	// transfer of as many pieces as there are deltas, all from its LAN.
	var got bool
	for _, tr := range nodes[2].Status().Transfers {
		if tr.Total == st.Deltas && tr.Chunks["lan"] == tr.Total {
			got = true
		}
	}
	if !got {
		t.Errorf("the device without an origin shows no transfer from its LAN: %+v", nodes[2].Status().Transfers)
	}
}

// reset forgets what the origin served so far.
func (o *deltaOrigin) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.paths, o.bytes = map[string]int{}, map[string]int64{}
}

// TestCacheNodeKeepsFromDeltas: a cache node that keeps v1 keeps v2 by
// building its changed chunks from deltas: only the deltas (and the new
// chunks with no delta) cross the uplink, each once, and a device on v1
// behind it installs v2 from deltas too without asking the origin for
// them again.
func TestCacheNodeKeepsFromDeltas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := newDeltaFixture(t, ctx, 2<<20)
	origin := f.origin
	cache := f.cacheNode(t, ctx, "cache", WithOrigin(origin))
	devCfg := virtualDevice(t, filepath.Join(f.dir, "dev", "device"), f.root, 3<<20)
	installDirect(t, ctx, devCfg, f.repo)
	dev := f.deviceNode(t, ctx, devCfg, cache.Addrs()[:1], WithOrigin(origin))
	runNodes(t, ctx, cache, dev)
	waitFor(t, ctx, "peers connected", func() bool { return len(cache.Host().Peers()) == 1 && len(dev.Host().Peers()) == 1 })
	time.Sleep(1500 * time.Millisecond)
	kept := func(version int) func() bool {
		return func() bool {
			cache.smu.Lock()
			defer cache.smu.Unlock()
			_, ok := cache.held[fmt.Sprintf("stable/%d/rootfs", version)]
			return ok
		}
	}
	if err := cache.Announce(ctx, fetch.Dir(f.repo)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the cache node kept v1", kept(1))

	v2, st := f.publishV2(t, ctx)
	origin.reset()
	if err := cache.Announce(ctx, fetch.Dir(f.repo)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the cache node kept v2", kept(2))
	waitFor(t, ctx, "the device flipped", flipped(dev))
	slot, err := os.ReadFile(dev.dev.Config.SlotPath("A"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(slot[:len(v2)], v2) {
		t.Fatal("the device's slot A does not hold v2")
	}
	deltas, most := origin.served("deltas")
	chunks, _ := origin.served("chunks")
	t.Logf("origin served %d delta files (each at most %d times), %d chunk objects", deltas, most, chunks)
	if deltas == 0 || most > 1 {
		t.Errorf("origin served %d delta files, one of them %d times", deltas, most)
	}
	if chunks > st.KeptWhole {
		t.Errorf("origin served %d whole chunks; only the %d new chunks without a delta should cross", chunks, st.KeptWhole)
	}
}

// TestRestartedNodeServesDeltas: a device that installed v2 from deltas
// and restarted still serves them: a device on v1 with no route to the
// origin then installs v2 from it alone.
func TestRestartedNodeServesDeltas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := newDeltaFixture(t, ctx, 2<<20)
	aCfg := virtualDevice(t, filepath.Join(f.dir, "a", "device"), f.root, 3<<20)
	bCfg := virtualDevice(t, filepath.Join(f.dir, "b", "device"), f.root, 3<<20)
	installDirect(t, ctx, aCfg, f.repo)
	installDirect(t, ctx, bCfg, f.repo)
	v2, st := f.publishV2(t, ctx)
	start := func(name, cfg string, bootstrap []string, opts ...Option) (*Node, func()) {
		t.Helper()
		n := f.deviceNode(t, ctx, cfg, bootstrap, opts...)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); n.Run(runCtx) }()
		return n, func() { stop(); <-done; n.Close() }
	}
	a, stopA := start("a", aCfg, nil, WithOrigin(f.origin))
	if err := a.Announce(ctx, fetch.Dir(f.repo)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "a flipped to v2", flipped(a))
	stopA()

	a, stopA = start("a", aCfg, nil) // no origin now: what it serves is its own
	defer stopA()
	var pieces *chunker.Index
	{
		ids := readServedDeltas(filepath.Join(a.cfg.StoreDir(), servedDeltasFile))
		if len(ids) != 1 {
			t.Fatalf("a remembers %d delta indexes, want 1", len(ids))
		}
		b, err := a.db.Get(ctx, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		dix, err := delta.DecodeIndex(b)
		if err != nil {
			t.Fatal(err)
		}
		pieces = deltaPieces(dix)
	}
	if held := a.engine.Held(pieces.CID()); held == nil || held.Count() != st.Deltas {
		t.Fatalf("after its restart a serves %v of the %d deltas", held, st.Deltas)
	}
	b, stopB := start("b", bCfg, a.Addrs()[:1])
	defer stopB()
	waitFor(t, ctx, "peers connected", func() bool { return len(b.Host().Peers()) == 1 })
	// b was not running when v2 went out: it hears it announced again
	// (the metadata only; b has no route to the repository).
	if err := b.Announce(ctx, fetch.Dir(f.repo)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "b flipped to v2", flipped(b))
	slot, err := os.ReadFile(b.dev.Config.SlotPath("A"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(slot[:len(v2)], v2) {
		t.Fatal("b's slot A does not hold v2")
	}
}
