package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testFleet = "testfleet"

// loopback listens on ephemeral TCP and QUIC ports of 127.0.0.1 only.
var loopback = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

// newTestHost starts a host on loopback (DHT server, no mDNS) after edit
// changes its config, and closes it when the test ends.
func newTestHost(t *testing.T, edit func(*HostConfig)) *Host {
	t.Helper()
	cfg := HostConfig{
		Fleet:   testFleet,
		KeyFile: filepath.Join(t.TempDir(), "identity.key"),
		Listen:  loopback,
		DHT:     DHTServer,
	}
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := NewHost(ctx, cfg)
	if err != nil {
		t.Fatalf("NewHost: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tcpAddrs keeps the TCP addresses of addrs.
func tcpAddrs(addrs []string) []string {
	var out []string
	for _, a := range addrs {
		if strings.Contains(a, "/tcp/") {
			out = append(out, a)
		}
	}
	return out
}

func TestHostsConnectViaBootstrap(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, func(c *HostConfig) { c.Bootstrap = a.Addrs() })
	c := newTestHost(t, func(c *HostConfig) { c.Bootstrap = a.Addrs() })
	// Both ends must see each connection: a's side of an inbound one is
	// registered a moment after the dialer's.
	eventually(t, 10*time.Second, "b and c connected to a", func() bool {
		return b.Connected(a.ID()) && c.Connected(a.ID()) && a.Connected(b.ID()) && a.Connected(c.ID())
	})
	got := map[peer.ID]Class{}
	for _, p := range a.Peers() {
		got[p.ID] = p.Class
		if !strings.HasPrefix(p.Addr, "/ip4/127.0.0.1/") {
			t.Errorf("peer %s at %q, want a loopback address", p.ID, p.Addr)
		}
	}
	for _, h := range []*Host{b, c} {
		if cl, ok := got[h.ID()]; !ok || cl != WAN {
			t.Errorf("a's peers %v: want %s as WAN (no LAN prefixes, no mDNS)", got, h.ID())
		}
	}
}

func TestBootstrapOverQUIC(t *testing.T) {
	a := newTestHost(t, func(c *HostConfig) { c.Listen = loopback[1:] })
	var quic []string
	for _, s := range a.Addrs() {
		if strings.Contains(s, "/quic-v1/") {
			quic = append(quic, s)
		}
	}
	if len(quic) == 0 {
		t.Fatalf("no QUIC address in %v", a.Addrs())
	}
	b := newTestHost(t, func(c *HostConfig) { c.Listen = loopback[1:]; c.Bootstrap = quic })
	eventually(t, 10*time.Second, "b connected to a over QUIC", func() bool { return b.Connected(a.ID()) })
	for _, p := range b.Peers() {
		if p.ID == a.ID() && !strings.Contains(p.Addr, "/quic-v1") {
			t.Errorf("connection to a over %s, want QUIC", p.Addr)
		}
	}
}

// TestBootstrapRedials starts a host whose bootstrap peer is not up yet:
// the host keeps dialling with backoff and connects once the peer starts.
func TestBootstrapRedials(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "later.key")
	sk, err := LoadIdentity(key)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	// A free port for the late peer.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	listen := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)

	b := newTestHost(t, func(c *HostConfig) { c.Bootstrap = []string{listen + "/p2p/" + id.String()} })
	time.Sleep(300 * time.Millisecond) // the first dial fails
	if b.Connected(id) {
		t.Fatal("connected to a peer that is not running")
	}
	late := newTestHost(t, func(c *HostConfig) { c.KeyFile = key; c.Listen = []string{listen} })
	if late.ID() != id {
		t.Fatalf("late peer is %s, want %s from its key file", late.ID(), id)
	}
	eventually(t, 10*time.Second, "b redialled its bootstrap peer", func() bool { return b.Connected(id) })
}

func TestNewHostRefusesBadConfig(t *testing.T) {
	good := func() HostConfig {
		return HostConfig{Fleet: testFleet, KeyFile: filepath.Join(t.TempDir(), "k"), Listen: loopback}
	}
	for _, tc := range []struct {
		name string
		edit func(*HostConfig)
		want string
	}{
		{"no fleet", func(c *HostConfig) { c.Fleet = "" }, "fleet name is empty"},
		{"fleet with slash", func(c *HostConfig) { c.Fleet = "a/b" }, `fleet name "a/b"`},
		{"no key", func(c *HostConfig) { c.KeyFile = "" }, "no identity key file"},
		{"no listen", func(c *HostConfig) { c.Listen = nil }, "no listen address"},
		{"bad listen", func(c *HostConfig) { c.Listen = []string{"127.0.0.1:4101"} }, `listen address "127.0.0.1:4101"`},
		{"udp without quic", func(c *HostConfig) { c.Listen = []string{"/ip4/127.0.0.1/udp/1"} }, "neither TCP"},
		{"bootstrap without id", func(c *HostConfig) { c.Bootstrap = []string{"/ip4/127.0.0.1/tcp/1"} }, "/p2p/<peer id>"},
		{"bad dht mode", func(c *HostConfig) { c.DHT = 7 }, "DHT mode 7"},
		{"water marks", func(c *HostConfig) { c.ConnLow, c.ConnHigh = 10, 5 }, "low 10, high 5"},
		{"conns under high mark", func(c *HostConfig) { c.Limits = DefaultLimits; c.Limits.Conns = 100 }, "high mark 192"},
		{"peer memory", func(c *HostConfig) { c.Limits = DefaultLimits; c.Limits.PeerMemory = 1 << 20 }, "peer memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good()
			tc.edit(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			h, err := NewHost(ctx, cfg)
			if err == nil {
				h.Close()
				t.Fatal("NewHost accepted it")
			}
			if !errors.Is(err, ErrHostConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want ErrHostConfig naming %q", err, tc.want)
			}
		})
	}
}

// TestLimitsInEffect checks the resource manager's numbers that bulk
// transfer depends on.
func TestLimitsInEffect(t *testing.T) {
	c := DefaultLimits.concrete().ToPartialLimitConfig()
	for _, tc := range []struct {
		name      string
		got, want int64
	}{
		{"system memory", int64(c.System.Memory), 256 << 20},
		{"system conns", int64(c.System.Conns), 256},
		{"system fds", int64(c.System.FD), 512},
		{"peer memory", int64(c.PeerDefault.Memory), 64 << 20},
		{"peer streams", int64(c.PeerDefault.Streams), 256},
		{"peer inbound streams", int64(c.PeerDefault.StreamsInbound), 256},
		{"peer conns", int64(c.PeerDefault.Conns), 8},
		{"conn memory", int64(c.Conn.Memory), 32 << 20},
		{"stream memory", int64(c.Stream.Memory), 16 << 20},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	if c.Transient.Memory == rcmgr.Unlimited64 || c.Transient.Memory <= 0 {
		t.Errorf("transient memory %d: want a finite limit", c.Transient.Memory)
	}
}

// TestBulkStream moves 64 MiB over one stream between two hosts, so the
// resource limits are shown not to stall a bulk transfer.
func TestBulkStream(t *testing.T) {
	const size = 64 << 20
	const proto = protocol.ID("/shoal/test/bulk")
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	got := make(chan int64, 1)
	b.Libp2p().SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		n, _ := io.Copy(io.Discard, s)
		got <- n
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Connect(ctx, tcpAddrs(b.Addrs())[0]); err != nil {
		t.Fatal(err)
	}
	s, err := a.Libp2p().NewStream(ctx, b.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	buf := make([]byte, 1<<20)
	for i := 0; i < size/len(buf); i++ {
		if _, err := s.Write(buf); err != nil {
			t.Fatalf("write after %d MiB: %v", i, err)
		}
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-got:
		if n != size {
			t.Fatalf("received %d bytes, want %d", n, size)
		}
	case <-ctx.Done():
		t.Fatal("transfer did not finish")
	}
	s.Close()
	el := time.Since(start)
	t.Logf("64 MiB over one stream in %v (%.0f MB/s)", el, float64(size)/el.Seconds()/1e6)
}
