package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/swarm/announce"
	"github.com/shoalnet/shoal/updater"
	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/state"
)

// countingOrigin is a repository directory that counts the chunk objects
// it serves.
type countingOrigin struct {
	fetch.Fetcher
	mu     sync.Mutex
	chunks map[string]int
}

func (o *countingOrigin) Fetch(ctx context.Context, p string, max int64) ([]byte, error) {
	b, err := o.Fetcher.Fetch(ctx, p, max)
	if err == nil && strings.HasPrefix(p, "chunks/") {
		o.mu.Lock()
		o.chunks[p]++
		o.mu.Unlock()
	}
	return b, err
}

func (o *countingOrigin) served() (total, most int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range o.chunks {
		total += n
		most = max(most, n)
	}
	return total, most
}

// virtualDevice makes a file-backed device trusting keys' root and
// returns its shoal.toml.
func virtualDevice(t *testing.T, dir, root string, slot int64) string {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	b, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "root.json"), b, 0o644)
	for _, s := range []string{"a.img", "b.img"} {
		f, _ := os.Create(filepath.Join(dir, s))
		f.Truncate(slot)
		f.Close()
	}
	bootPath, err := boot.InitVirtual("file", dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg := updater.Config{State: "state",
		Device: updater.DeviceConfig{ID: filepath.Base(dir), Channel: "stable"},
		Trust:  updater.TrustConfig{Root: "root.json"},
		Slots:  updater.SlotsConfig{A: "a.img", B: "b.img"},
		Boot:   updater.BootConfig{Adapter: "file", Path: bootPath, Tries: 2, Cmdline: "cmdline", Virtual: true}}
	text, err := cfg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "shoal.toml")
	os.WriteFile(p, text, 0o644)
	return p
}

func nodeConfig(t *testing.T, dir, extra string, bootstrap []string) *Config {
	t.Helper()
	var bs string
	if len(bootstrap) > 0 {
		bs = fmt.Sprintf("bootstrap = [%q]\n", bootstrap[0])
	}
	text := fmt.Sprintf(`[node]
fleet = "test-fleet"
store = %q
listen = ["/ip4/127.0.0.1/tcp/0"]
mdns = false
dht = "server"
lan_prefixes = ["127.0.0.0/8"]
%s%s`, filepath.Join(dir, "store"), bs, extra)
	c, err := ParseConfig([]byte(text), dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSiteFetchesFromOriginOnce: a cache node and two devices on one LAN
// hear a release announced once; every node gets it, the devices install
// it and commit after their reboot, and the origin serves each chunk at
// most once (the uplink split).
func TestSiteFetchesFromOriginOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	keys, err := manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(dir, "repo")
	img := publishImage(t, ctx, keys, dir, repo, 1, 3<<20, chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10})
	root := filepath.Join(dir, "keys", "root.json")
	origin := &countingOrigin{Fetcher: fetch.Dir(repo), chunks: map[string]int{}}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	start := func(cfg *Config) *Node {
		t.Helper()
		n, err := New(ctx, cfg, WithOrigin(origin), WithLogger(log))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	cache := start(nodeConfig(t, filepath.Join(dir, "cache"), fmt.Sprintf("channels = [\"stable\"]\n[trust]\nroot = %q\n", root), nil))
	boot0 := cache.Addrs()[0]
	var devs []*Node
	for i := range 2 {
		d := filepath.Join(dir, fmt.Sprintf("dev%d", i))
		dcfg := virtualDevice(t, filepath.Join(d, "device"), root, 4<<20)
		devs = append(devs, start(nodeConfig(t, d, fmt.Sprintf("[device]\nconfig = %q\n", dcfg), []string{boot0})))
	}
	all := append([]*Node{cache}, devs...)
	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	for _, n := range all {
		wg.Add(1)
		go func() { defer wg.Done(); n.Run(runCtx) }()
	}
	defer func() {
		stop()
		wg.Wait()
		for _, n := range all {
			n.Close()
		}
	}()
	// Let the peers connect and the gossip mesh form, then announce once.
	waitFor(t, ctx, "peers connected", func() bool {
		return len(cache.Host().Peers()) == 2 && len(devs[0].Host().Peers()) >= 1 && len(devs[1].Host().Peers()) >= 1
	})
	time.Sleep(1500 * time.Millisecond)
	if err := cache.Announce(ctx, fetch.Dir(repo)); err != nil {
		t.Fatal(err)
	}
	for i, d := range devs {
		waitFor(t, ctx, fmt.Sprintf("device %d flipped", i), func() bool {
			d.devMu.Lock()
			defer d.devMu.Unlock()
			return d.dev.State().Phase == state.Tentative
		})
	}
	waitFor(t, ctx, "cache node kept the release", func() bool {
		cache.smu.Lock()
		defer cache.smu.Unlock()
		return len(cache.held) == 1
	})
	total, most := origin.served()
	unique := len(origin.chunks)
	t.Logf("origin served %d chunk objects for %d unique chunks (each at most %d times)", total, unique, most)
	for i, n := range all {
		st := n.Status()
		for _, tr := range st.Transfers {
			t.Logf("node %d: %d/%d chunks, by source %v, %d bad", i, tr.Held, tr.Total, tr.Chunks, tr.BadBlocks)
		}
	}
	// Without the split each of the three nodes would fetch everything
	// (3x). A node that joins the split late waits OriginDelay before it
	// asks the origin, long enough on a LAN for what the others have in
	// flight there to arrive and be announced.
	if most > 1 {
		t.Errorf("the origin served %d chunk objects for %d chunks, one of them %d times: the uplink split does not hold", total, unique, most)
	}
	// The API tells the same story.
	srv := httptest.NewServer(devs[0].Handler())
	st, err := ReadStatus(ctx, strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if st.CacheNode || len(st.Peers) == 0 || st.Updater == nil || st.Updater.State != "tentative" || len(st.Releases) != 1 || len(releaseTransfers(*st)) != 1 || releaseTransfers(*st)[0].Held != releaseTransfers(*st)[0].Total {
		t.Fatalf("status: %+v", st)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	srv.Close()
	for _, want := range []string{`shoal_received_bytes_total{index="`, `source="lan"`, `shoal_updater_phase{channel="stable",phase="tentative",version="1"} 1`, `shoal_peers{class="lan"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s:\n%s", want, metrics)
		}
	}
	// Each device reboots into the new slot and commits it.
	stop()
	wg.Wait()
	for i, d := range devs {
		dcfg := d.dev.Config
		d.Close()
		dev, err := updater.Open(ctx, dcfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dev.PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := dev.BootCheck(ctx)
		dev.Close()
		if err != nil || !res.Committed {
			t.Fatalf("device %d boot-check: %+v %v", i, res, err)
		}
		slot, _ := os.ReadFile(dcfg.SlotPath("B"))
		if !bytes.Equal(slot[:len(img)], img) {
			t.Fatalf("device %d slot B does not hold the release", i)
		}
	}
}

// releaseTransfers are st's downloads of release chunks (not the one-piece
// downloads of indexes, nor deltas).
func releaseTransfers(st Status) []TransferStatus {
	var out []TransferStatus
	for _, t := range st.Transfers {
		if t.Kind == kindRelease {
			out = append(out, t)
		}
	}
	return out
}

func waitFor(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting: %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestFlippedDeviceServesItsRelease: a device that installed a release and
// flipped to it (tentative, not yet rebooted) serves it from that slot, so
// a device that was off when the release was announced, and has no
// origin, takes the whole release, index and chunks, from it over the LAN
// when it comes back (it resumes from the announcement it had accepted).
func TestFlippedDeviceServesItsRelease(t *testing.T) {
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
	root := filepath.Join(dir, "keys", "root.json")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	device := func(name string, bootstrap []string, opts ...Option) *Node {
		t.Helper()
		d := filepath.Join(dir, name)
		dcfg := virtualDevice(t, filepath.Join(d, "device"), root, 3<<20)
		n, err := New(ctx, nodeConfig(t, d, fmt.Sprintf("[device]\nconfig = %q\n", dcfg), bootstrap), append(opts, WithLogger(log))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	tentative := func(n *Node) func() bool {
		return func() bool {
			n.devMu.Lock()
			defer n.devMu.Unlock()
			return n.dev.State().Phase == state.Tentative
		}
	}
	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	defer func() { stop(); wg.Wait() }()
	run := func(n *Node) {
		wg.Add(1)
		go func() { defer wg.Done(); n.Run(runCtx) }()
	}

	first := device("first", nil, WithOrigin(fetch.Dir(repo)))
	run(first)
	if err := first.Announce(ctx, fetch.Dir(repo)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the first device flipped", tentative(first))

	// The late device accepted the announcement before it went off.
	a, err := announce.Collect(ctx, fetch.Dir(repo), "test-fleet", "stable")
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "late", "store"), 0o700)
	os.WriteFile(filepath.Join(dir, "late", "store", "announcement-stable.json"), b, 0o600)
	late := device("late", first.Addrs()[:1]) // no origin at all
	run(late)
	waitFor(t, ctx, "the late device flipped", tentative(late))
	slot, err := os.ReadFile(late.dev.Config.SlotPath("B"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(slot[:len(img)], img) {
		t.Fatal("the late device's slot does not hold the release")
	}
	st := late.Status()
	if tr := releaseTransfers(st); len(tr) != 1 || tr[0].Chunks["lan"] != tr[0].Total {
		t.Fatalf("the late device's transfer: %+v", st.Transfers)
	}
}
