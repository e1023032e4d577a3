package swarm

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// Limits sizes libp2p's resource manager, which every connection, stream
// and flow-control window is charged against. libp2p's own defaults scale
// with the machine's memory; these are fixed numbers, so a device behaves
// the same whatever it runs on, and sized for bulk transfer rather than
// for many small requests.
//
// Memory is what matters for throughput: a yamux stream's receive window
// grows from 256 KiB towards 16 MiB only while its peer's and the
// system's reservations stay under about half their limit (yamux reserves
// window growth at priority 128 of 255), and a QUIC connection's window
// (up to 15 MiB) while the connection's stays under 60%. So PeerMemory of
// 64 MiB lets a peer's streams hold 32 MiB of windows — two streams at
// full window, each enough for 1.3 Gbit/s at 100 ms RTT — and Memory of
// 256 MiB lets eight peers do so at once; further windows stay small
// rather than fail.
type Limits struct {
	// Memory bounds the whole host's reservations (bytes).
	Memory int64
	// PeerMemory bounds one peer's reservations (bytes).
	PeerMemory int64
	// StreamsPerPeer bounds open streams with one peer, in each direction
	// and in total.
	StreamsPerPeer int
	// Conns bounds open connections, in each direction and in total.
	Conns int
	// FD bounds file descriptors used for connections.
	FD int
}

// DefaultLimits are the limits a host gets when HostConfig.Limits is
// zero. The scopes not named here (transient, per connection, per stream,
// per protocol and service) are libp2p's defaults scaled for Memory; the
// numbers in effect are listed in docs/swarm.md.
var DefaultLimits = Limits{
	Memory:         256 << 20,
	PeerMemory:     64 << 20,
	StreamsPerPeer: 256,
	Conns:          256,
	FD:             512,
}

// Per-connection and per-stream memory: a QUIC connection reserves its
// window growth (up to 15 MiB) at medium priority (60%), so 32 MiB; a
// stream's own scope holds at most one full yamux window.
const (
	connMemory   = 32 << 20
	streamMemory = 16 << 20
	peerConns    = 8 // libp2p dials up to 8 addresses of a peer at once
)

func (l Limits) check(connHigh int) error {
	switch {
	case l.Memory < 64<<20:
		return fmt.Errorf("resource limits: memory %d below 64 MiB", l.Memory)
	case l.PeerMemory < 32<<20 || l.PeerMemory > l.Memory:
		return fmt.Errorf("resource limits: peer memory %d not in 32 MiB..memory (%d)", l.PeerMemory, l.Memory)
	case l.StreamsPerPeer < 16:
		return fmt.Errorf("resource limits: %d streams per peer, want at least 16", l.StreamsPerPeer)
	case l.Conns <= connHigh:
		return fmt.Errorf("resource limits: %d connections, want more than the connection manager's high mark %d", l.Conns, connHigh)
	case l.FD < l.Conns:
		return fmt.Errorf("resource limits: %d file descriptors, want at least one per connection (%d)", l.FD, l.Conns)
	}
	return nil
}

// concrete returns the limiter's configuration: libp2p's defaults
// (services such as identify and ping included) scaled for l.Memory, with
// the system, peer, connection and stream scopes set from l.
func (l Limits) concrete() rcmgr.ConcreteLimitConfig {
	base := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&base)
	scaled := base.Scale(l.Memory, l.FD)
	n := rcmgr.LimitVal(l.StreamsPerPeer)
	conns := rcmgr.LimitVal(l.Conns)
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns: conns, ConnsInbound: conns, ConnsOutbound: conns,
			Streams:        rcmgr.LimitVal(16 * l.Conns),
			StreamsInbound: rcmgr.LimitVal(16 * l.Conns), StreamsOutbound: rcmgr.LimitVal(16 * l.Conns),
			Memory: rcmgr.LimitVal64(l.Memory),
			FD:     rcmgr.LimitVal(l.FD),
		},
		PeerDefault: rcmgr.ResourceLimits{
			Conns: peerConns, ConnsInbound: peerConns, ConnsOutbound: peerConns,
			Streams: n, StreamsInbound: n, StreamsOutbound: n,
			Memory: rcmgr.LimitVal64(l.PeerMemory),
			FD:     peerConns,
		},
		Conn:   rcmgr.ResourceLimits{Memory: connMemory},
		Stream: rcmgr.ResourceLimits{Memory: streamMemory},
	}
	return partial.Build(scaled)
}

func (l Limits) resourceManager() (network.ResourceManager, error) {
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(l.concrete()))
	if err != nil {
		return nil, fmt.Errorf("swarm: resource manager: %w", err)
	}
	return rm, nil
}
