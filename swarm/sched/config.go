package sched

import (
	"errors"
	"fmt"
)

// Errors the session returns, wrapped with what was wrong. A refused event
// changes nothing.
var (
	// ErrBadConfig: a Config field is out of range, or New got bad arguments.
	ErrBadConfig = errors.New("sched: bad config")
	// ErrBadPiece: a piece number outside the release.
	ErrBadPiece = errors.New("sched: piece out of range")
	// ErrUnknownPeer: an event names a peer that was never added, was
	// removed, or was dropped.
	ErrUnknownPeer = errors.New("sched: unknown peer")
	// ErrBadPeer: AddPeer with an empty ID, the session's own ID, an ID
	// already added or a class other than LAN and WAN; or an event that
	// makes no sense for the origin (PeerHas, PeerWants).
	ErrBadPeer = errors.New("sched: bad peer")
	// ErrBadBitmap: a have-bitmap of the wrong length or with bits set
	// past the last piece.
	ErrBadBitmap = errors.New("sched: malformed bitmap")
)

// Strategy is how a source's next piece is chosen among those it may be
// asked for.
type Strategy uint8

const (
	// RarestFirst takes the piece with the fewest holders in the source's
	// class, ties broken by the session's random order (the default).
	RarestFirst Strategy = iota
	// Random takes the first piece in the session's random order,
	// whatever its rarity (for the simulator's comparisons).
	Random
)

func (s Strategy) String() string {
	switch s {
	case RarestFirst:
		return "rarest-first"
	case Random:
		return "random"
	}
	return fmt.Sprintf("strategy(%d)", uint8(s))
}

// Config is the scheduling policy of a session. Zero fields take defaults;
// ticks are the caller's unit of time (see the package comment).
type Config struct {
	// Window bounds the requests outstanding at one peer (default 8). A
	// peer that stalls or says dont-have has its window halved (at least
	// 1); each block it delivers grows it by one again, up to Window.
	Window int
	// OriginWindow bounds the requests outstanding at the origin
	// (default 16).
	OriginWindow int
	// SiteOriginWindow, if set, bounds the origin requests of the whole
	// site instead: each node keeps ⌈SiteOriginWindow / (1 + LAN
	// wanters)⌉ outstanding (at least 2, at most OriginWindow), so the
	// site's uplink carries about SiteOriginWindow origin transfers however
	// many devices share it. Many parallel transfers through one thin
	// uplink overflow its queue in bursts and resend much of what they
	// send.
	SiteOriginWindow int
	// MaxOutstanding bounds the requests outstanding in the whole session,
	// origin included; 0 means no bound beyond the windows. LAN peers are
	// served first, then WAN peers, then the origin.
	MaxOutstanding int
	// EndgameThreshold: once at most this many pieces are missing the
	// session is in its endgame (default 32).
	EndgameThreshold int
	// EndgameDuplicates is how many extra requests one outstanding piece
	// may get in the endgame (default 2), each to another holder of the
	// piece's best class (the origin is never a duplicate).
	EndgameDuplicates int
	// NoEndgame turns the endgame off.
	NoEndgame bool
	// StallTicks: a request to a peer is given up, and the peer
	// penalised, once the peer has delivered nothing for this many ticks
	// since the request was issued (default 20). A deep window on a thin
	// link keeps requests waiting long while blocks flow: that is no
	// stall. Origin requests are never given up here: the origin's fetcher
	// bounds its own transfers (minimum rate, timeouts) and reports a
	// failure with DontHave("").
	StallTicks int
	// ShareStallTicks: a LAN wanter that owes this node pieces of its share
	// and brings no new piece into the site for this many ticks is left out
	// of the split, so its share is divided among the others (default
	// 2×StallTicks).
	ShareStallTicks int
	// MaxStrikes: a peer that stalls or says dont-have on this many ticks
	// in a row (with no block delivered in between) is dropped (default 3).
	MaxStrikes int
	// RarityCap: holder counts at or above it count as equally common
	// (default 8, at most 255). It bounds the session's memory: one bitmap
	// per count and class.
	RarityCap int
	// NoSplit turns the site uplink split off: every node fetches any
	// piece no LAN peer holds from WAN peers or the origin.
	NoSplit bool
	// NoShare: this node takes no share of the split, because it has no
	// route to the origin (a device behind a site gateway). The pieces no
	// LAN peer holds are divided among the LAN wanters that do share, and
	// this node awaits them; with no such wanter it fetches what it can
	// itself. Its peers learn it from the node (PeerNoShare), so every node
	// of the site divides among the same set.
	NoShare bool
	// OriginFirst: a piece no LAN peer holds comes from the origin while
	// the origin is up, and from WAN peers only while it is not (default:
	// WAN peers first). For sites behind thin uplinks: a chunk from a WAN
	// peer crosses two site uplinks (its site's up, this site's down), one
	// from the origin crosses only this site's.
	OriginFirst bool
	// Strategy picks among the pieces a source may be asked for.
	Strategy Strategy
}

func (c *Config) validate() error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Window, 8)
	def(&c.OriginWindow, 16)
	def(&c.EndgameThreshold, 32)
	def(&c.EndgameDuplicates, 2)
	def(&c.StallTicks, 20)
	def(&c.ShareStallTicks, 2*c.StallTicks)
	def(&c.MaxStrikes, 3)
	def(&c.RarityCap, 8)
	switch {
	case c.Window < 1:
		return fmt.Errorf("%w: window %d", ErrBadConfig, c.Window)
	case c.SiteOriginWindow < 0:
		return fmt.Errorf("%w: site origin window %d", ErrBadConfig, c.SiteOriginWindow)
	case c.OriginWindow < 1:
		return fmt.Errorf("%w: origin window %d", ErrBadConfig, c.OriginWindow)
	case c.MaxOutstanding < 0:
		return fmt.Errorf("%w: max outstanding %d", ErrBadConfig, c.MaxOutstanding)
	case c.EndgameThreshold < 1:
		return fmt.Errorf("%w: endgame threshold %d", ErrBadConfig, c.EndgameThreshold)
	case c.EndgameDuplicates < 1:
		return fmt.Errorf("%w: endgame duplicates %d", ErrBadConfig, c.EndgameDuplicates)
	case c.StallTicks < 1:
		return fmt.Errorf("%w: stall ticks %d", ErrBadConfig, c.StallTicks)
	case c.ShareStallTicks < 1:
		return fmt.Errorf("%w: share stall ticks %d", ErrBadConfig, c.ShareStallTicks)
	case c.MaxStrikes < 1:
		return fmt.Errorf("%w: max strikes %d", ErrBadConfig, c.MaxStrikes)
	case c.RarityCap < 1 || c.RarityCap > 255:
		return fmt.Errorf("%w: rarity cap %d (1..255)", ErrBadConfig, c.RarityCap)
	case c.Strategy > Random:
		return fmt.Errorf("%w: %v", ErrBadConfig, c.Strategy)
	}
	return nil
}
