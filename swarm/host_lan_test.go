package swarm

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestInPrefixes(t *testing.T) {
	prefixes := []netip.Prefix{
		netip.MustParsePrefix("192.168.1.0/24"),
		netip.MustParsePrefix("fd00:1::/64"),
	}
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"/ip4/192.168.1.7/tcp/4101", true},
		{"/ip4/192.168.1.7/udp/4101/quic-v1", true},
		{"/ip4/192.168.2.7/tcp/4101", false},
		{"/ip4/10.0.0.1/tcp/4101", false},
		{"/ip6/fd00:1::5/tcp/4101", true},
		{"/ip6/fd00:2::5/tcp/4101", false},
		{"/ip6/::ffff:192.168.1.9/tcp/4101", true}, // IPv4-mapped counts as IPv4
		{"/ip6zone/eth0/ip6/fe80::1/tcp/4101", false},
		{"/dns4/gateway.local/tcp/4101", false}, // names are not classified
	} {
		a, err := ma.NewMultiaddr(tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := inPrefixes(a, prefixes); got != tc.want {
			t.Errorf("%s: LAN %v, want %v", tc.addr, got, tc.want)
		}
		if inPrefixes(a, nil) {
			t.Errorf("%s: LAN without prefixes", tc.addr)
		}
	}
}

// TestClassByPrefix: a host with 127.0.0.0/8 as a LAN prefix counts a
// loopback peer as LAN; one without prefixes counts the same peer as WAN.
func TestClassByPrefix(t *testing.T) {
	lan := newTestHost(t, func(c *HostConfig) { c.LANPrefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	wan := newTestHost(t, func(c *HostConfig) { c.LANPrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wan.Connect(ctx, tcpAddrs(lan.Addrs())[0]); err != nil {
		t.Fatal(err)
	}
	if got := lan.Class(wan.ID()); got != LAN {
		t.Errorf("host with 127.0.0.0/8 classes its loopback peer %v, want lan", got)
	}
	if got := wan.Class(lan.ID()); got != WAN {
		t.Errorf("host with 10.0.0.0/8 classes its loopback peer %v, want wan", got)
	}
	if got := lan.h.ConnManager().GetTagInfo(wan.ID()); got == nil || got.Tags[lanTag] != lanTagValue {
		t.Errorf("LAN peer's connection manager tags %+v, want %s", got, lanTag)
	}
	unknown := peer.ID("not connected")
	if got := lan.Class(unknown); got != WAN {
		t.Errorf("unconnected peer: %v, want wan", got)
	}
}

// TestClassByMDNS drives the mDNS notifee directly: multicast on this
// sandbox's interfaces is not something a test should send, so mDNS itself
// is left to the fleet harness (network namespaces).
func TestClassByMDNS(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	if a.Class(b.ID()) != WAN {
		t.Fatal("b is LAN before mDNS found it")
	}
	a.foundOnLAN(peer.AddrInfo{ID: b.ID(), Addrs: b.h.Addrs()})
	if got := a.Class(b.ID()); got != LAN {
		t.Errorf("peer found by mDNS: %v, want lan", got)
	}
	if !a.Connected(b.ID()) {
		t.Error("a did not connect to the peer mDNS found")
	}
	a.foundOnLAN(peer.AddrInfo{ID: a.ID()}) // itself: ignored
	if a.Class(a.ID()) != WAN {
		t.Error("a host found itself on the LAN")
	}
}

func TestMDNSService(t *testing.T) {
	a, b := MDNSService("acme"), MDNSService("acme-lab")
	if a == b {
		t.Errorf("two fleets share mDNS service %s", a)
	}
	if a != MDNSService("acme") {
		t.Error("service name not deterministic")
	}
	for _, s := range []string{a, b, MDNSService("a-very-long-fleet-name-that-would-not-fit-into-fifteen-characters")} {
		if len(s) != 15 || s[0] != '_' {
			t.Errorf("service %q: want '_' and 14 characters (DNS-SD allows 15)", s)
		}
	}
}
