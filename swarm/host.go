// Package swarm moves chunks between shoal nodes over libp2p. The host
// files (host*.go) hold the libp2p plumbing and keep it out of every other
// package: NewHost builds one peer of a fleet — transports, identity,
// resource limits, the fleet's private DHT, mDNS, gossipsub — and Host
// offers what a node needs from it: release providers (ProvideRelease,
// FindReleaseProviders), release announcements (JoinReleases), and the
// locality of a peer (Class). docs/swarm.md describes the choices.
package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrHostConfig is wrapped by every error NewHost returns for a bad
// HostConfig.
var ErrHostConfig = errors.New("swarm: bad host configuration")

// HostConfig is what NewHost needs to start one peer of a fleet.
type HostConfig struct {
	// Fleet names the fleet: it makes the DHT's protocol prefix, the mDNS
	// service name and the gossipsub topics private to the fleet
	// (CheckName's alphabet).
	Fleet string
	// KeyFile is the persistent Ed25519 identity (LoadIdentity): created
	// on first start, refused when others may read it.
	KeyFile string
	// Listen are multiaddrs to listen on, e.g. /ip4/0.0.0.0/tcp/4101 and
	// /ip4/0.0.0.0/udp/4101/quic-v1. At least one.
	Listen []string
	// Bootstrap are peers (multiaddrs ending in /p2p/<peer id>) dialled at
	// start and redialled with backoff whenever the host is not connected
	// to them.
	Bootstrap []string
	// DHT is the DHT's mode: DHTServer on always-on nodes, DHTClient on
	// small devices, DHTAuto to let libp2p decide from reachability.
	DHT DHTMode
	// MDNS turns on LAN discovery by multicast DNS.
	MDNS bool
	// LANPrefixes: a peer connected from an address in one of these is a
	// LAN peer (as is every peer found by mDNS).
	LANPrefixes []netip.Prefix
	// Limits sizes the resource manager; the zero value means
	// DefaultLimits.
	Limits Limits
	// ConnLow and ConnHigh are the connection manager's water marks:
	// above ConnHigh connections, the least valuable are trimmed down to
	// ConnLow (LAN and bootstrap peers last). Zero means 64 and 192.
	ConnLow, ConnHigh int
	// AppScore, when set, adds a score of the application (e.g. from the
	// chunk protocol's bad blocks) to each peer's gossipsub score.
	AppScore func(peer.ID) float64
	// Registerer receives libp2p's Prometheus metrics; nil disables them.
	Registerer prometheus.Registerer
	// Logger receives the host's log lines; nil discards them.
	Logger *slog.Logger
}

// Default connection manager water marks.
const (
	DefaultConnLow  = 64
	DefaultConnHigh = 192
)

// Host is one running peer of a fleet. Its methods are safe for
// concurrent use. Close stops everything it started.
type Host struct {
	h       host.Host
	dht     *dht.IpfsDHT
	ps      *pubsub.PubSub
	mdns    mdns.Service
	cm      *connmgr.BasicConnMgr
	fleet   string
	lan     []netip.Prefix
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	mdnsLAN map[peer.ID]bool
	scores  map[peer.ID]float64
	topics  map[string]*Releases
	closed  bool
}

// NewHost starts a host: it loads or creates the identity key, listens,
// starts the DHT, gossipsub and (if configured) mDNS, and starts dialling
// the bootstrap peers in the background. It returns without waiting for
// any peer. ctx bounds only the start; Close stops the host.
func NewHost(ctx context.Context, cfg HostConfig) (_ *Host, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrHostConfig, fmt.Sprintf(format, args...))
	}
	if err := CheckName("fleet", cfg.Fleet); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHostConfig, err)
	}
	if cfg.KeyFile == "" {
		return nil, bad("no identity key file")
	}
	if len(cfg.Listen) == 0 {
		return nil, bad("no listen address")
	}
	listen := make([]ma.Multiaddr, 0, len(cfg.Listen))
	for _, s := range cfg.Listen {
		a, err := parseListenAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrHostConfig, err)
		}
		listen = append(listen, a)
	}
	boot := make([]peer.AddrInfo, 0, len(cfg.Bootstrap))
	for _, s := range cfg.Bootstrap {
		ai, err := parsePeerAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrHostConfig, err)
		}
		boot = append(boot, ai)
	}
	boot = mergeAddrInfos(boot)
	mode, ok := dhtModes[cfg.DHT]
	if !ok {
		return nil, bad("DHT mode %d", cfg.DHT)
	}
	low, high := cfg.ConnLow, cfg.ConnHigh
	if low == 0 && high == 0 {
		low, high = DefaultConnLow, DefaultConnHigh
	}
	if low < 1 || high < low {
		return nil, bad("connection water marks low %d, high %d: want 1 <= low <= high", low, high)
	}
	limits := cfg.Limits
	if limits == (Limits{}) {
		limits = DefaultLimits
	}
	if err := limits.check(high); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHostConfig, err)
	}
	key, err := LoadIdentity(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	rm, err := limits.resourceManager()
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(low, high, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		rm.Close()
		return nil, err
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrs(listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(libp2pquic.NewTransport),
		// TLS first: on loopback it moves bulk data ~1.6x faster than
		// Noise here (docs/swarm.md); Noise for peers that lack TLS.
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Security(noise.ID, noise.New),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.UserAgent("shoal"),
	}
	if cfg.Registerer != nil {
		opts = append(opts, libp2p.PrometheusRegisterer(cfg.Registerer))
	} else {
		opts = append(opts, libp2p.DisableMetrics())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		// libp2p.New closes what it built, the resource manager included.
		cm.Close()
		return nil, fmt.Errorf("swarm: start libp2p host: %w", err)
	}
	hctx, cancel := context.WithCancel(context.Background())
	hh := &Host{h: h, cm: cm, fleet: cfg.Fleet, lan: cfg.LANPrefixes, log: cfg.Logger,
		ctx: hctx, cancel: cancel, mdnsLAN: map[peer.ID]bool{}, scores: map[peer.ID]float64{},
		topics: map[string]*Releases{}}
	if hh.log == nil {
		hh.log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			hh.Close()
		}
	}()
	h.Network().Notify(&network.NotifyBundle{ConnectedF: hh.connected})

	hh.dht, err = dht.New(h,
		dht.Mode(mode),
		dht.ProtocolPrefix(DHTPrefix(cfg.Fleet)),
		// Provider records only: no values are stored in the fleet's DHT.
		dht.DisableValues(),
		dht.BootstrapPeers(boot...),
	)
	if err != nil {
		return nil, fmt.Errorf("swarm: start DHT: %w", err)
	}
	hh.ps, err = pubsub.NewGossipSub(hctx, h, hh.gossipOptions(cfg.AppScore)...)
	if err != nil {
		return nil, fmt.Errorf("swarm: start gossipsub: %w", err)
	}
	if cfg.MDNS {
		hh.mdns = mdns.NewMdnsService(h, MDNSService(cfg.Fleet), mdnsNotifee{hh})
		if err := hh.mdns.Start(); err != nil {
			return nil, fmt.Errorf("swarm: start mDNS: %w", err)
		}
	}
	for _, ai := range boot {
		h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.PermanentAddrTTL)
		cm.Protect(ai.ID, "shoal-bootstrap")
		hh.wg.Add(1)
		go hh.keepBootstrap(ai)
	}
	hh.log.Info("swarm host started", "peer", h.ID().String(), "fleet", cfg.Fleet,
		"dht", cfg.DHT.String(), "mdns", cfg.MDNS, "listen", fmt.Sprint(h.Addrs()))
	return hh, nil
}

// Close stops the host: mDNS, the topics, the DHT, gossipsub, the
// bootstrap dialers and every connection. It waits for the goroutines the
// host started. Calling it again does nothing.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	topics := make([]*Releases, 0, len(h.topics))
	for _, r := range h.topics {
		topics = append(topics, r)
	}
	h.mu.Unlock()

	var errs []error
	if h.mdns != nil {
		errs = append(errs, h.mdns.Close())
	}
	for _, r := range topics {
		errs = append(errs, r.Close())
	}
	h.cancel() // gossipsub and the bootstrap dialers
	if h.dht != nil {
		errs = append(errs, h.dht.Close())
	}
	errs = append(errs, h.h.Close()) // closes the connection and resource managers too
	h.wg.Wait()
	return errors.Join(errs...)
}

// ID is the host's peer ID, derived from its identity key.
func (h *Host) ID() peer.ID { return h.h.ID() }

// Addrs are the host's listen addresses with its peer ID appended, in the
// form other hosts take as bootstrap peers.
func (h *Host) Addrs() []string {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.h.ID(), Addrs: h.h.Addrs()})
	if err != nil {
		return nil
	}
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// Libp2p is the underlying libp2p host, for the swarm's own stream
// protocols (swarm/wire). Nothing outside the swarm needs it.
func (h *Host) Libp2p() host.Host { return h.h }

// Connect dials a peer given as a multiaddr ending in /p2p/<peer id>.
func (h *Host) Connect(ctx context.Context, addr string) error {
	ai, err := parsePeerAddr(addr)
	if err != nil {
		return err
	}
	return h.h.Connect(ctx, ai)
}

// Connected reports whether the host has a connection to p.
func (h *Host) Connected(p peer.ID) bool {
	return h.h.Network().Connectedness(p) == network.Connected
}

// PeerInfo describes one connected peer.
type PeerInfo struct {
	ID    peer.ID
	Class Class
	// Addr is the remote address of one connection to the peer.
	Addr string
}

// Peers lists the connected peers with their locality class.
func (h *Host) Peers() []PeerInfo {
	ids := h.h.Network().Peers()
	out := make([]PeerInfo, 0, len(ids))
	for _, p := range ids {
		pi := PeerInfo{ID: p, Class: h.Class(p)}
		if cs := h.h.Network().ConnsToPeer(p); len(cs) > 0 {
			pi.Addr = cs[0].RemoteMultiaddr().String()
		}
		out = append(out, pi)
	}
	return out
}

// Bootstrap redial backoff: the first dial is immediate, failures wait
// bootstrapMinBackoff doubling up to bootstrapMaxBackoff (±20% jitter so a
// fleet restarting together does not dial in lockstep); a connected
// bootstrap peer is checked every bootstrapCheck.
var (
	bootstrapMinBackoff = time.Second
	bootstrapMaxBackoff = time.Minute
	bootstrapCheck      = 10 * time.Second
	bootstrapDial       = 15 * time.Second
)

// keepBootstrap keeps the host connected to one bootstrap peer until the
// host closes.
func (h *Host) keepBootstrap(ai peer.AddrInfo) {
	defer h.wg.Done()
	backoff := bootstrapMinBackoff
	for {
		wait := bootstrapCheck
		if !h.Connected(ai.ID) {
			ctx, cancel := context.WithTimeout(h.ctx, bootstrapDial)
			// Our own backoff paces these dials, not the libp2p swarm's
			// (5 s and more after a failure), which a forced direct dial
			// skips.
			err := h.h.Connect(network.WithForceDirectDial(ctx, "shoal bootstrap"), ai)
			cancel()
			if h.ctx.Err() != nil {
				return
			}
			if err != nil {
				h.log.Warn("bootstrap peer unreachable", "peer", ai.ID.String(), "retry_in", backoff.String(), "err", err)
				wait = jitter(backoff)
				backoff = min(2*backoff, bootstrapMaxBackoff)
			} else {
				h.log.Info("connected to bootstrap peer", "peer", ai.ID.String())
				backoff = bootstrapMinBackoff
				// Fill the routing table through the new peer now rather
				// than at the next periodic refresh.
				if h.dht != nil {
					_ = h.dht.Bootstrap(h.ctx)
				}
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-h.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// nameRE is the alphabet of fleet and channel names: they become parts of
// protocol IDs, topic names and the mDNS service name.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// CheckName checks a fleet or channel name (what says which, for the
// message): 1 to 64 letters, digits, '.', '_' or '-', starting with a
// letter or digit.
func CheckName(what, name string) error {
	if !nameRE.MatchString(name) {
		if name == "" {
			return fmt.Errorf("%s name is empty", what)
		}
		return fmt.Errorf("%s name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", what, name)
	}
	return nil
}

// CheckListenAddr checks a listen address: a multiaddr over TCP
// (/ip4/0.0.0.0/tcp/4101) or QUIC (/ip4/0.0.0.0/udp/4101/quic-v1).
func CheckListenAddr(s string) error {
	_, err := parseListenAddr(s)
	return err
}

// CheckPeerAddr checks a bootstrap peer's address: a multiaddr that ends
// in /p2p/<peer id>.
func CheckPeerAddr(s string) error {
	_, err := parsePeerAddr(s)
	return err
}

func parseListenAddr(s string) (ma.Multiaddr, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %v", s, err)
	}
	if _, err := a.ValueForProtocol(ma.P_P2P); err == nil {
		return nil, fmt.Errorf("listen address %q: has a /p2p/ part (the host's own ID comes from its key)", s)
	}
	_, tcpErr := a.ValueForProtocol(ma.P_TCP)
	_, quicErr := a.ValueForProtocol(ma.P_QUIC_V1)
	if tcpErr != nil && quicErr != nil {
		return nil, fmt.Errorf("listen address %q: neither TCP (/tcp/PORT) nor QUIC (/udp/PORT/quic-v1)", s)
	}
	return a, nil
}

func parsePeerAddr(s string) (peer.AddrInfo, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("peer address %q: %v", s, err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("peer address %q: want a multiaddr ending in /p2p/<peer id>: %v", s, err)
	}
	if len(ai.Addrs) == 0 {
		return peer.AddrInfo{}, fmt.Errorf("peer address %q: no transport address before /p2p/", s)
	}
	return *ai, nil
}

// mergeAddrInfos joins the addresses of entries naming the same peer.
func mergeAddrInfos(in []peer.AddrInfo) []peer.AddrInfo {
	var out []peer.AddrInfo
	at := map[peer.ID]int{}
	for _, ai := range in {
		if i, ok := at[ai.ID]; ok {
			out[i].Addrs = append(out[i].Addrs, ai.Addrs...)
			continue
		}
		at[ai.ID] = len(out)
		out = append(out, ai)
	}
	return out
}
