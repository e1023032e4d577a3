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

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/swarm"
	"github.com/shoalnet/shoal/swarm/announce"
	"github.com/shoalnet/shoal/updater/audit"
	"github.com/shoalnet/shoal/updater/state"
)

// logRecord is one log line a node wrote: its message and attributes.
type logRecord struct {
	msg   string
	attrs map[string]string
}

// logSink keeps the log lines of one node, for tests that assert what a
// node refused and why.
type logSink struct {
	mu   sync.Mutex
	recs []logRecord
}

func (s *logSink) logger() *slog.Logger { return slog.New(&sinkHandler{s: s}) }

// find returns the records whose message is msg and whose attributes
// include every key=value of kv.
func (s *logSink) find(msg string, kv ...string) []logRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logRecord
next:
	for _, r := range s.recs {
		if r.msg != msg {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if r.attrs[kv[i]] != kv[i+1] {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, r := range s.recs {
		fmt.Fprintf(&b, "%s %v\n", r.msg, r.attrs)
	}
	return b.String()
}

type sinkHandler struct {
	s     *logSink
	attrs []slog.Attr
}

func (h *sinkHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *sinkHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.s.mu.Lock()
	h.s.recs = append(h.s.recs, rec)
	h.s.mu.Unlock()
	return nil
}

func (h *sinkHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &sinkHandler{s: h.s, attrs: append(slices.Clone(h.attrs), as...)}
}

func (h *sinkHandler) WithGroup(string) slog.Handler { return h }

// testFleet is the fleet nodeConfig puts every node in.
const testFleet = "test-fleet"

// collectAnnouncement is the encoded announcement of repo's current state
// for the test fleet's channel.
func collectAnnouncement(t *testing.T, repo, fleet, channel string) []byte {
	t.Helper()
	a, err := announce.Collect(context.Background(), fetch.Dir(repo), fleet, channel)
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publishImage publishes a release of size random bytes as version of
// the stable channel of repo, and returns the image.
func publishImage(t *testing.T, ctx context.Context, keys *manifest.Keyring, dir, repo string, version uint64, size int, params chunker.Params) []byte {
	t.Helper()
	img := make([]byte, size)
	rand.Read(img)
	p := filepath.Join(dir, fmt.Sprintf("v%d.img", version))
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Publish(ctx, manifest.PublishOptions{Repo: repo, Keys: keys, Channel: "stable", Version: version,
		Artifacts: []manifest.ArtifactInput{{Name: "rootfs", Path: p}}, Params: params}); err != nil {
		t.Fatal(err)
	}
	return img
}

// bareHost starts a swarm host of the test fleet that is no node: a DHT
// client (so the peers it knows do not introduce it to others) connected
// to bootstrap. Tests drive it as a misbehaving peer.
func bareHost(t *testing.T, ctx context.Context, bootstrap []string) *swarm.Host {
	t.Helper()
	h, err := swarm.NewHost(ctx, swarm.HostConfig{Fleet: testFleet, KeyFile: filepath.Join(t.TempDir(), "identity.key"),
		Listen: []string{"/ip4/127.0.0.1/tcp/0"}, Bootstrap: bootstrap, DHT: swarm.DHTClient})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// deviceSnapshot is what a device node's updater holds: its state
// machine's state and its audit log.
type deviceSnapshot struct {
	state   state.State
	audit   []audit.Entry
	lastErr string
}

func snapshotDevice(t *testing.T, n *Node) deviceSnapshot {
	t.Helper()
	n.devMu.Lock()
	st := n.dev.State()
	entries, err := n.dev.AuditEntries()
	n.devMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	n.smu.Lock()
	defer n.smu.Unlock()
	return deviceSnapshot{state: st, audit: entries, lastErr: n.lastErr}
}

// TestBadAnnouncementsDieAtFirstHop: a chain A→B→C where A is a bare
// swarm host that publishes whatever it likes and knows only B, and C
// knows only B. A good announcement travels the chain (both devices
// install it). Then A publishes a replay of the older release's
// announcement, a forged one (targets edited after signing), one for
// another channel, one for another fleet, and garbage: B's validator
// ignores the replay and rejects the rest, each with a log line naming A
// and the reason; none reaches C (its validator never sees them); and
// neither device's update state nor audit log changes.
func TestBadAnnouncementsDieAtFirstHop(t *testing.T) {
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
	params := chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}
	publishImage(t, ctx, keys, dir, repo, 1, 256<<10, params)
	ann1 := collectAnnouncement(t, repo, testFleet, "stable")
	img2 := publishImage(t, ctx, keys, dir, repo, 2, 256<<10, params)
	ann2 := collectAnnouncement(t, repo, testFleet, "stable")
	root := filepath.Join(dir, "keys", "root.json")

	// The bad ones, made from the good v2 announcement.
	a, err := announce.Decode(ann2)
	if err != nil {
		t.Fatal(err)
	}
	forgedFiles := 0
	for p, b := range a.Files {
		if strings.HasSuffix(p, ".targets.json") {
			a.Files[p] = bytes.Replace(b, []byte(`"rootfs"`), []byte(`"rootfz"`), 1)
			forgedFiles++
		}
	}
	forged, err := a.Encode()
	if err != nil || forgedFiles != 1 || bytes.Equal(forged, ann2) {
		t.Fatalf("forging: %v (%d targets files)", err, forgedFiles)
	}
	a, _ = announce.Decode(ann2)
	a.Channel = "beta"
	otherChannel, _ := a.Encode()
	a, _ = announce.Decode(ann2)
	a.Fleet = "other-fleet"
	otherFleet, _ := a.Encode()

	sinks := map[string]*logSink{"B": {}, "C": {}}
	start := func(name string, bootstrap []string) *Node {
		t.Helper()
		d := filepath.Join(dir, name)
		dcfg := virtualDevice(t, filepath.Join(d, "device"), root, 1<<20)
		cfg := nodeConfig(t, d, fmt.Sprintf("[device]\nconfig = %q\n", dcfg), bootstrap)
		if len(bootstrap) > 0 {
			// C is a DHT client, as A is: B's DHT introduces neither to
			// the other, so A reaches C only through B.
			cfg.Node.DHT, cfg.dht = "client", swarm.DHTClient
		}
		n, err := New(ctx, cfg, WithOrigin(fetch.Dir(repo)), WithLogger(sinks[name].logger()))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	b := start("B", nil)
	c := start("C", b.Addrs())
	nodes := []*Node{b, c}
	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		wg.Wait()
		for _, n := range nodes {
			n.Close()
		}
	}()
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Run(runCtx) }()
	}

	// A: a bare host that accepts anything it publishes itself. It
	// remembers every peer it was ever connected to.
	pub := bareHost(t, ctx, b.Addrs())
	var cmu sync.Mutex
	touched := map[peer.ID]bool{}
	pub.Libp2p().Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, cn network.Conn) {
		cmu.Lock()
		touched[cn.RemotePeer()] = true
		cmu.Unlock()
	}})
	ra, err := pub.JoinReleases("stable", func(context.Context, peer.ID, []byte) swarm.ValidationResult { return swarm.Accept })
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "topic peers", func() bool {
		return slices.Contains(ra.Peers(), b.ID()) && slices.Contains(b.topics[0].Peers(), pub.ID()) &&
			slices.Contains(b.topics[0].Peers(), c.ID()) && slices.Contains(c.topics[0].Peers(), b.ID())
	})
	time.Sleep(1500 * time.Millisecond) // the gossip mesh forms

	// The good announcement travels A→B→C and both devices install v2.
	if err := ra.Publish(ctx, ann2); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFor(t, ctx, "the device installed v2", func() bool {
			n.devMu.Lock()
			defer n.devMu.Unlock()
			st := n.dev.State()
			return st.Phase == state.Tentative && st.Release != nil && st.Release.Version == 2
		})
	}
	for i, n := range nodes {
		slot, _ := os.ReadFile(n.dev.Config.SlotPath(n.dev.State().Target))
		if !bytes.Equal(slot[:len(img2)], img2) {
			t.Fatalf("node %d: the slot does not hold v2", i)
		}
	}
	cAcc, cRej, cIgn := c.vals[0].counts()
	if cAcc == 0 {
		t.Fatal("C's validator accepted nothing, yet C installed v2")
	}
	before := []deviceSnapshot{snapshotDevice(t, b), snapshotDevice(t, c)}
	bAcc, bRej, bIgn := b.vals[0].counts()

	// Each bad announcement in turn: B drops it, naming A and why.
	from := pub.ID().String()
	cases := []struct {
		name   string
		data   []byte
		result swarm.ValidationResult
		reason string // in B's log line
	}{
		{"replay of v1", ann1, swarm.Ignore, ""},
		{"forged targets", forged, swarm.Reject, ""},
		{"another channel", otherChannel, swarm.Reject, "on the topic of " + testFleet + "/stable"},
		{"another fleet", otherFleet, swarm.Reject, "on the topic of " + testFleet + "/stable"},
		{"garbage", []byte("\x00\xffnot an announcement"), swarm.Reject, ""},
	}
	for i, tc := range cases {
		if err := ra.Publish(ctx, tc.data); err != nil {
			t.Fatalf("%s: publish: %v", tc.name, err)
		}
		waitFor(t, ctx, "B's verdict on the "+tc.name, func() bool {
			return len(sinks["B"].find("announcement dropped", "from", from)) == i+1
		})
		rec := sinks["B"].find("announcement dropped", "from", from)[i]
		if rec.attrs["result"] != tc.result.String() || !strings.Contains(rec.attrs["reason"], tc.reason) || rec.attrs["reason"] == "" {
			t.Errorf("%s: B logged %v, want result %s and a reason with %q", tc.name, rec.attrs, tc.result, tc.reason)
		}
		t.Logf("%s: B: %s (%s)", tc.name, rec.attrs["result"], rec.attrs["reason"])
	}
	acc, rej, ign := b.vals[0].counts()
	if acc != bAcc || rej != bRej+4 || ign != bIgn+1 {
		t.Errorf("B's verdicts: +%d accepted, +%d rejected, +%d ignored; want +0, +4, +1", acc-bAcc, rej-bRej, ign-bIgn)
	}

	// Give stray copies time to arrive (a gossip heartbeat and more),
	// then check that none reached C and nothing changed on a device.
	time.Sleep(2 * time.Second)
	if acc, rej, ign := c.vals[0].counts(); acc != cAcc || rej != cRej || ign != cIgn {
		t.Errorf("C's validator saw bad announcements: +%d accepted, +%d rejected, +%d ignored", acc-cAcc, rej-cRej, ign-cIgn)
	}
	if drops := sinks["C"].find("announcement dropped"); len(drops) != 0 {
		t.Errorf("C dropped announcements, so some reached it: %v", drops)
	}
	for i, n := range nodes {
		after := snapshotDevice(t, n)
		if !reflect.DeepEqual(after, before[i]) {
			t.Errorf("node %d: the device changed:\nbefore %+v\nafter  %+v", i, before[i], after)
		}
		for _, e := range after.audit {
			if e.Version != 2 && e.Version != 0 {
				t.Errorf("node %d: audit entry for v%d: %+v", i, e.Version, e)
			}
		}
	}
	cmu.Lock()
	if touched[c.ID()] {
		t.Error("A was connected to C: the chain was not a chain")
	}
	cmu.Unlock()
	// The rejections cost A its standing at B (gossipsub's P4).
	waitFor(t, ctx, "B's gossip score of A to fall below zero", func() bool { return b.Host().GossipScore(pub.ID()) < 0 })
	t.Logf("B's gossip score of A: %.0f", b.Host().GossipScore(pub.ID()))
	if t.Failed() {
		t.Logf("B's log:\n%s", sinks["B"])
		t.Logf("C's log:\n%s", sinks["C"])
	}
}
