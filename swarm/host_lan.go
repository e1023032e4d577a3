package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Class is a peer's locality: the scheduler prefers LAN peers to WAN peers
// to the origin, and the site's uplink is crossed about once per chunk.
type Class int

const (
	// WAN is any peer not known to share the host's LAN (the zero value:
	// a peer is WAN until shown otherwise).
	WAN Class = iota
	// LAN is a peer found by mDNS, or connected from an address in one of
	// the host's LAN prefixes.
	LAN
)

func (c Class) String() string {
	if c == LAN {
		return "lan"
	}
	return "wan"
}

// Class tells whether p is a LAN or a WAN peer: LAN if mDNS found it, or
// if one of the host's connections to it comes from an address inside one
// of HostConfig.LANPrefixes; WAN otherwise (a peer not connected is WAN
// unless mDNS found it).
func (h *Host) Class(p peer.ID) Class {
	h.mu.Lock()
	found := h.mdnsLAN[p]
	h.mu.Unlock()
	if found {
		return LAN
	}
	for _, c := range h.h.Network().ConnsToPeer(p) {
		if inPrefixes(c.RemoteMultiaddr(), h.lan) {
			return LAN
		}
	}
	return WAN
}

// inPrefixes reports whether a's IP address falls into one of prefixes.
// IPv4-mapped IPv6 addresses count as IPv4; zones are ignored.
func inPrefixes(a ma.Multiaddr, prefixes []netip.Prefix) bool {
	if len(prefixes) == 0 {
		return false
	}
	ip, err := manet.ToIP(a)
	if err != nil {
		return false
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// lanTag is the connection manager's tag for LAN peers: their connections
// are trimmed after WAN peers' when the host has too many.
const (
	lanTag      = "shoal-lan"
	lanTagValue = 50
)

// connected runs for each new connection: a connection from a LAN prefix
// marks its peer as worth keeping.
func (h *Host) connected(_ network.Network, c network.Conn) {
	if inPrefixes(c.RemoteMultiaddr(), h.lan) {
		h.cm.TagPeer(c.RemotePeer(), lanTag, lanTagValue)
	}
}

// MDNSService is the fleet's mDNS service name: "_shoal-" and the first
// eight hex digits of SHA-256 of the fleet name, so any fleet name fits
// the 15 characters DNS-SD allows a service name (RFC 6763) and hosts of
// other fleets on the same LAN do not see each other.
func MDNSService(fleet string) string {
	sum := sha256.Sum256([]byte(fleet))
	return "_shoal-" + hex.EncodeToString(sum[:4])
}

// mdnsDial bounds a dial to a peer mDNS found.
const mdnsDial = 10 * time.Second

// mdnsNotifee receives the peers mDNS finds (each call on a goroutine of
// its own, possibly after Close started).
type mdnsNotifee struct{ h *Host }

func (n mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) { n.h.foundOnLAN(ai) }

// foundOnLAN records a peer found by mDNS as LAN for the life of the host
// and connects to it.
func (h *Host) foundOnLAN(ai peer.AddrInfo) {
	if ai.ID == h.h.ID() {
		return
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.mdnsLAN[ai.ID] = true
	h.wg.Add(1)
	h.mu.Unlock()
	defer h.wg.Done()
	h.cm.TagPeer(ai.ID, lanTag, lanTagValue)
	h.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
	if h.Connected(ai.ID) {
		return
	}
	ctx, cancel := context.WithTimeout(h.ctx, mdnsDial)
	defer cancel()
	if err := h.h.Connect(ctx, ai); err != nil && h.ctx.Err() == nil {
		h.log.Debug("mDNS peer unreachable", "peer", ai.ID.String(), "err", err)
		return
	}
	h.log.Info("LAN peer found by mDNS", "peer", ai.ID.String())
}
