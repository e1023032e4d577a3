package swarm

import (
	"context"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/shoalnet/shoal/chunker"
)

// DHTMode is the host's role in the fleet's DHT.
type DHTMode int

const (
	// DHTAuto lets libp2p choose: a server once AutoNAT finds the host
	// reachable from outside, a client before. In a private network that
	// may never happen, so give always-on nodes DHTServer.
	DHTAuto DHTMode = iota
	// DHTServer answers other peers' queries and stores provider records:
	// always-on nodes (site gateways, the origin's host).
	DHTServer
	// DHTClient only queries and provides: small or intermittently
	// connected devices.
	DHTClient
)

var dhtModes = map[DHTMode]dht.ModeOpt{DHTAuto: dht.ModeAuto, DHTServer: dht.ModeServer, DHTClient: dht.ModeClient}

func (m DHTMode) String() string {
	switch m {
	case DHTAuto:
		return "auto"
	case DHTServer:
		return "server"
	case DHTClient:
		return "client"
	}
	return fmt.Sprintf("DHTMode(%d)", int(m))
}

// ParseDHTMode parses "auto", "server" or "client".
func ParseDHTMode(s string) (DHTMode, error) {
	for m := range dhtModes {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("DHT mode %q is not auto, server or client", s)
}

// ReprovideInterval is how often a node provides the releases it holds
// again: well inside the 48 h a provider record lives, so a record
// survives a missed round.
const ReprovideInterval = 12 * time.Hour

// providerAddrTTL is how long a found provider's addresses stay in the
// peerstore: enough to dial it and fetch.
var providerAddrTTL = peerstore.RecentlyConnectedAddrTTL

// DHTPrefix is the protocol prefix of the fleet's DHT, "/shoal/<fleet>":
// its peers speak "/shoal/<fleet>/kad/1.0.0", so they never join the
// public IPFS DHT or another fleet's.
func DHTPrefix(fleet string) protocol.ID { return protocol.ID("/shoal/" + fleet) }

// ProvideRelease announces in the DHT that this host holds (or is
// fetching) the release whose index has ID indexCID, so that peers
// outside its LAN can find it. Keys are index IDs only, never chunk IDs:
// a 4 GiB image has ~65,000 chunks, and peers that find each other by
// release trade have-bitmaps over its index instead. Records expire
// (48 h by default), so a node provides its releases again every few
// hours while it holds them.
func (h *Host) ProvideRelease(ctx context.Context, indexCID cid.Cid) error {
	if _, _, err := chunker.ParseID(indexCID); err != nil {
		return fmt.Errorf("swarm: provide release: %w", err)
	}
	if err := h.dht.Provide(ctx, indexCID, true); err != nil {
		return fmt.Errorf("swarm: provide release %s: %w", indexCID, err)
	}
	return nil
}

// FindReleaseProviders asks the DHT for up to limit peers (other than this
// host) that provide the release whose index has ID indexCID. It returns
// what it found when the query ends or ctx is done, whichever is first;
// a cancelled search with some providers is not an error. The providers'
// addresses go to the host's peerstore, so they can be dialled by ID.
func (h *Host) FindReleaseProviders(ctx context.Context, indexCID cid.Cid, limit int) ([]peer.ID, error) {
	if _, _, err := chunker.ParseID(indexCID); err != nil {
		return nil, fmt.Errorf("swarm: find release providers: %w", err)
	}
	if limit < 1 {
		return nil, fmt.Errorf("swarm: find release providers: limit %d", limit)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out []peer.ID
	// One more than limit: the local provider store may list this host.
	for ai := range h.dht.FindProvidersAsync(ctx, indexCID, limit+1) {
		if ai.ID == h.h.ID() {
			continue
		}
		if len(ai.Addrs) > 0 {
			h.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, providerAddrTTL)
		}
		out = append(out, ai.ID)
		if len(out) == limit {
			break
		}
	}
	if len(out) == 0 && ctx.Err() != nil {
		return nil, fmt.Errorf("swarm: find release providers %s: %w", indexCID, ctx.Err())
	}
	return out, nil
}
