package swarm

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"

	"github.com/shoalnet/shoal/chunker"
)

func TestParseDHTMode(t *testing.T) {
	for _, m := range []DHTMode{DHTAuto, DHTServer, DHTClient} {
		got, err := ParseDHTMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseDHTMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseDHTMode("full"); err == nil || !strings.Contains(err.Error(), `"full"`) {
		t.Errorf("ParseDHTMode(full): %v", err)
	}
	if got := string(DHTPrefix("acme")); got != "/shoal/acme" {
		t.Errorf("DHTPrefix = %s", got)
	}
}

// TestDHTProvideFind: three hosts form the fleet's DHT through one
// bootstrap peer; one provides a release index and another finds it.
func TestDHTProvideFind(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, func(c *HostConfig) { c.Bootstrap = a.Addrs() })
	c := newTestHost(t, func(c *HostConfig) { c.Bootstrap = a.Addrs(); c.DHT = DHTClient })
	eventually(t, 10*time.Second, "routing tables filled", func() bool {
		return a.dht.RoutingTable().Size() >= 1 && b.dht.RoutingTable().Size() >= 1 && c.dht.RoutingTable().Size() >= 1
	})
	const kad = "/shoal/" + testFleet + "/kad/1.0.0"
	for _, h := range []*Host{a, b, c} {
		if serves := slices.Contains(h.h.Mux().Protocols(), kad); serves != (h != c) {
			t.Errorf("%s serves %s: %v, want it on the servers only", h.ID(), kad, serves)
		}
	}

	index := chunker.SHA256.ID(chunker.SHA256.Sum([]byte("release index v1")))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := b.ProvideRelease(ctx, index); err != nil {
		t.Fatalf("ProvideRelease: %v", err)
	}
	got, err := c.FindReleaseProviders(ctx, index, 5)
	if err != nil {
		t.Fatalf("FindReleaseProviders: %v", err)
	}
	if !slices.Equal(got, []peer.ID{b.ID()}) {
		t.Errorf("providers %v, want [%s]", got, b.ID())
	}
	if len(c.h.Peerstore().Addrs(b.ID())) == 0 {
		t.Error("no address of the provider in the peerstore")
	}
	// The provider does not find itself.
	if got, err := b.FindReleaseProviders(ctx, index, 5); err != nil || len(got) != 0 {
		t.Errorf("provider's own search: %v, %v; want none", got, err)
	}
	other := chunker.SHA256.ID(chunker.SHA256.Sum([]byte("nobody has this")))
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if got, _ := c.FindReleaseProviders(short, other, 5); len(got) != 0 {
		t.Errorf("providers of an unprovided release: %v", got)
	}
}

func TestDHTKeysAreIndexIDs(t *testing.T) {
	a := newTestHost(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mh, _ := multihash.Sum([]byte("x"), multihash.SHA2_256, -1)
	for _, bad := range []cid.Cid{cid.Undef, cid.NewCidV0(mh), cid.NewCidV1(cid.DagProtobuf, mh)} {
		if err := a.ProvideRelease(ctx, bad); err == nil {
			t.Errorf("ProvideRelease(%v) accepted", bad)
		}
		if _, err := a.FindReleaseProviders(ctx, bad, 1); err == nil {
			t.Errorf("FindReleaseProviders(%v) accepted", bad)
		}
	}
}
