package sched

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
)

// Class is a source's locality. Lower classes are preferred.
type Class uint8

const (
	// LAN: a peer on the node's own site.
	LAN Class = iota
	// WAN: a peer elsewhere; its blocks cross the site's uplink.
	WAN
	// Origin: the release's repository. It holds every piece and is asked
	// only for pieces no peer can give.
	Origin
)

func (c Class) String() string {
	switch c {
	case LAN:
		return "lan"
	case WAN:
		return "wan"
	case Origin:
		return "origin"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Request is one piece asked of one source. Source is the peer's ID, or ""
// for the origin.
type Request struct {
	Piece  int
	Source string
	Class  Class
}

func (r Request) String() string {
	if r.Class == Origin {
		return fmt.Sprintf("%d@origin", r.Piece)
	}
	return fmt.Sprintf("%d@%s/%s", r.Piece, r.Source, r.Class)
}

// Actions is what the caller must do after a round of events, in this
// order: withdraw Cancel, send Request, and forget the Dropped peers. The
// slices belong to the session and are valid until the next call to Next.
type Actions struct {
	// Cancel lists requests the session no longer counts as outstanding:
	// answered by another source, stalled, or sent to the origin while it
	// was taken away. A block that still arrives for one is welcome
	// (report it with Received).
	Cancel []Request
	// Request lists new requests to send now.
	Request []Request
	// Dropped lists peers the session gave up on (too many stalls or
	// dont-haves in a row). They are removed as by RemovePeer; the caller
	// may disconnect them.
	Dropped []string
}

// Session schedules one node's download of one release. It is not safe
// for concurrent use.
type Session struct {
	cfg     Config
	self    string
	selfKey uint64
	n       int
	first   []int // NewDedup's, nil for New
	ord     order
	words   int
	tick    int64
	// stallAt: no request to a peer stalls before this tick (a lower
	// bound: a block from the peer or the request's end only delays it).
	stallAt int64

	pcs      []pieceState // by rank
	held     int          // aliases included
	pools    [2][]bucket  // LAN, WAN; by rarity
	origin   bucket
	originUp bool

	peers map[string]*peer
	order []*peer // LAN then WAN, each by before
	nLAN  int
	// By position in order: room has the peers with a free window, ready
	// those of them that hold a piece of their class's pool (useful > 0).
	// Next visits only these.
	room, ready []uint64
	posSlot     []uint16 // the slot of the peer at each position in order
	slots       []*peer
	// chunks hold the peers' have-bitmaps (peer.have) by slot, 1<<rowShift
	// apiece: scanning who holds a piece reads them, not the peers. A slot
	// keeps its bitmap when it is reused; chunks are never moved.
	chunks   [][]uint64
	rowShift uint
	free     []uint16
	seq      uint64

	wanters      []*peer  // LAN peers that want the release, share, and are not excluded
	wantersStale bool     // s.wanters needs listWanters
	wslots       []uint16 // their slots
	wkeys        []uint64 // their keys
	dirty        bool     // wanters changed since the pieces were divided
	// By slot, so that a tick does not visit every wanter: its awaited
	// count (peer.awaited), and the tick it last brought a new piece into
	// the site or owed nothing.
	awaitedBy []int32
	progress  []int64

	reqs      []request
	freeReqs  []int32
	head      map[int32]int32 // first request of each requested piece
	out       int
	originOut int

	dups     []dupCand // the endgame's candidates, during Next
	dupClass [2]bool   // whether s.dups holds one for LAN, WAN peers
	// dupsValid: nothing s.dups depends on (requests, which classes hold
	// the outstanding pieces, the origin, the split) changed since the
	// last endgame decision, so s.dups is still what duplicates would
	// collect. dupsIdle: nor did a peer come to hold an outstanding piece,
	// so the endgame would ask nothing more now (the last decision asked
	// for all it could, and only a request ending or a new holder, class
	// or candidate can change that).
	dupsValid, dupsIdle bool
	dupMasks            []wordMask
	cancels             []Request
	dropped             []string
	acts                Actions
	scratch             []*peer
	holder              *peer // a peer known to hold the piece being moved, for addUseful
	stalled             []int32
	bits                []uint64
	stats               Stats
}

// maxPeers is how many peers a session tracks at once (slots are uint16).
const maxPeers = 1<<16 - 1

// MaxPieces is the largest release a session schedules.
const MaxPieces = 1 << 30

// New starts the session of node self (its peer ID, which takes part in
// the split) for a release of pieces pieces, numbered 0..pieces-1 by their
// position in the release index. rng is drawn from once, for the order
// that breaks ties; the session keeps no reference to it.
//
// Positions that hold the same chunk are distinct pieces here; use
// NewDedup to fetch each chunk once.
func New(cfg Config, self string, pieces int, rng *rand.Rand) (*Session, error) {
	return newSession(cfg, self, pieces, nil, rng, false)
}

// NewDedup is New for a release whose index holds some chunks at several
// positions. first[i] is the first position holding the chunk at position
// i (first[i] ≤ i, and first[first[i]] = first[i]). Only first positions
// are requested; events may name any position and count for its first.
// The caller writes a received chunk at every position holding it. first
// is kept, not copied (sessions of one release may share it): do not
// change it.
func NewDedup(cfg Config, self string, first []int, rng *rand.Rand) (*Session, error) {
	if err := checkFirst(first); err != nil {
		return nil, err
	}
	return newSession(cfg, self, len(first), first, rng, false)
}

func checkFirst(first []int) error {
	for i, f := range first {
		if f < 0 || f > i || first[f] != f {
			return fmt.Errorf("%w: first[%d] = %d", ErrBadConfig, i, f)
		}
	}
	return nil
}

func newSession(cfg Config, self string, n int, first []int, rng *rand.Rand, identity bool) (*Session, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	switch {
	case self == "":
		return nil, fmt.Errorf("%w: empty self ID", ErrBadConfig)
	case n < 0 || n > MaxPieces:
		return nil, fmt.Errorf("%w: %d pieces", ErrBadConfig, n)
	case rng == nil:
		return nil, fmt.Errorf("%w: nil rand", ErrBadConfig)
	}
	s := &Session{
		cfg:      cfg,
		self:     self,
		selfKey:  idKey(self),
		n:        n,
		first:    first,
		ord:      newOrder(n, rng, identity),
		words:    (n + 63) / 64,
		pcs:      make([]pieceState, n),
		originUp: true,
		peers:    map[string]*peer{},
		head:     map[int32]int32{},
	}
	for c := range s.pools {
		s.pools[c] = make([]bucket, cfg.RarityCap)
	}
	s.bits = make([]uint64, s.words)
	// Chunks of up to 32 bitmaps of about 2 KiB in all, so that a small site
	// wastes little and a large one allocates a few times.
	for s.rowShift < 5 && s.words<<(s.rowShift+1) <= 256 {
		s.rowShift++
	}
	// Every piece starts in the origin pool (no peer holds anything yet),
	// but for the aliases.
	for q := range s.pcs {
		s.pcs[q].place = placeOrigin
	}
	s.origin.fill(n)
	if first != nil {
		for i, f := range first {
			if f != i {
				q := s.ord.rank(i)
				s.origin.remove(q)
				s.pcs[q].place = placeAlias
				s.held++
			}
		}
	}
	return s, nil
}

// Config returns the policy in force, defaults filled in.
func (s *Session) Config() Config { return s.cfg }

// Done reports whether every piece is held.
func (s *Session) Done() bool { return s.held == s.n }

func (s *Session) piece(i int) (int32, error) {
	if i < 0 || i >= s.n {
		return 0, fmt.Errorf("%w: %d of %d", ErrBadPiece, i, s.n)
	}
	if s.first != nil {
		i = s.first[i]
	}
	return s.ord.rank(i), nil
}

// source resolves a source ID: nil for the origin ("").
func (s *Session) source(id string) (*peer, error) {
	if id == "" {
		return nil, nil
	}
	if p := s.peers[id]; p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownPeer, id)
}

// Have records that the node holds piece already (a resumed download, a
// chunk found in the running slot or the cache). Requests outstanding for
// it are cancelled.
func (s *Session) Have(piece int) error {
	q, err := s.piece(piece)
	if err != nil {
		return err
	}
	if st := s.pcs[q].place; st != placeHeld && st != placeAlias {
		s.hold(q, -1)
	}
	return nil
}

// AddPeer adds a peer serving this release, with its locality class (LAN
// or WAN). It holds nothing until PeerHas or PeerHasBitmap says otherwise.
func (s *Session) AddPeer(id string, class Class) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty ID", ErrBadPeer)
	case id == s.self:
		return fmt.Errorf("%w: %q is this node", ErrBadPeer, id)
	case class != LAN && class != WAN:
		return fmt.Errorf("%w: %q of class %v", ErrBadPeer, id, class)
	case s.peers[id] != nil:
		return fmt.Errorf("%w: %q added twice", ErrBadPeer, id)
	case len(s.peers) >= maxPeers:
		return fmt.Errorf("%w: more than %d peers", ErrBadPeer, maxPeers)
	}
	p := &peer{
		id:     id,
		class:  class,
		seq:    s.seq,
		window: s.cfg.Window,
		struck: -1,
	}
	s.seq++
	if k := len(s.free); k > 0 {
		p.idx = s.free[k-1]
		s.free = s.free[:k-1]
		s.slots[p.idx] = p
	} else {
		p.idx = uint16(len(s.slots))
		s.slots = append(s.slots, p)
		if int(p.idx)>>s.rowShift == len(s.chunks) {
			s.chunks = append(s.chunks, make([]uint64, s.words<<s.rowShift))
		}
	}
	p.have = s.row(int(p.idx))
	clear(p.have)
	if int(p.idx) == len(s.awaitedBy) {
		s.awaitedBy = append(s.awaitedBy, 0)
		s.progress = append(s.progress, 0)
	}
	s.awaitedBy[p.idx], s.progress[p.idx] = 0, 0
	s.peers[id] = p
	s.insert(p)
	return nil
}

// RemovePeer forgets a peer (it disconnected). Its outstanding requests
// are given up without a cancel, and what it held no longer counts.
func (s *Session) RemovePeer(id string) error {
	p, err := s.peer(id)
	if err != nil {
		return err
	}
	s.remove(p, false)
	return nil
}

// PeerHas records that a peer holds piece (a have message).
func (s *Session) PeerHas(id string, piece int) error {
	p, err := s.peer(id)
	if err != nil {
		return err
	}
	q, err := s.piece(piece)
	if err != nil {
		return err
	}
	s.setHave(p, q)
	return nil
}

// PeerHasBitmap replaces what a peer holds by its have-bitmap: bit i, the
// bit 0x80>>(i%8) of byte i/8, is set when it holds the piece at position
// i. The bitmap has (pieces+7)/8 bytes and no bits set past the last
// piece. Pieces it no longer lists no longer count as held by it.
func (s *Session) PeerHasBitmap(id string, bitmap []byte) error {
	p, err := s.peer(id)
	if err != nil {
		return err
	}
	if len(bitmap) != (s.n+7)/8 {
		return fmt.Errorf("%w: %d bytes for %d pieces", ErrBadBitmap, len(bitmap), s.n)
	}
	if r := s.n % 8; r != 0 && bitmap[len(bitmap)-1]&(0xff>>r) != 0 {
		return fmt.Errorf("%w: bits set past piece %d", ErrBadBitmap, s.n-1)
	}
	next := s.bits
	clear(next)
	for i, b := range bitmap {
		for b != 0 {
			z := bits.LeadingZeros8(b)
			b &^= 0x80 >> z
			q, _ := s.piece(i*8 + z)
			next[q>>6] |= 1 << (q & 63)
		}
	}
	for w := range next {
		gained, lost := next[w]&^p.have[w], p.have[w]&^next[w]
		for gained != 0 {
			s.setHave(p, int32(w<<6+bits.TrailingZeros64(gained)))
			gained &= gained - 1
		}
		for lost != 0 {
			s.clearHave(p, int32(w<<6+bits.TrailingZeros64(lost)))
			lost &= lost - 1
		}
	}
	return nil
}

// PeerWants records whether a peer is fetching this release too (its
// announcements say so). LAN peers that want the release share the uplink
// split with this node; for WAN peers it is recorded and changes nothing.
func (s *Session) PeerWants(id string, wants bool) error {
	p, err := s.peer(id)
	if err != nil {
		return err
	}
	if p.wants == wants {
		return nil
	}
	p.wants = wants
	if wants {
		p.excluded = false
		s.progress[p.idx] = s.tick
	}
	if p.class == LAN {
		s.wantersChanged()
	}
	return nil
}

// PeerNoShare records that a peer takes no share of the split (it said it
// has no route to the origin; see Config.NoShare): it still fetches the
// release, but the pieces no LAN peer holds are divided among the others.
func (s *Session) PeerNoShare(id string) error {
	p, err := s.peer(id)
	if err != nil {
		return err
	}
	if p.noShare {
		return nil
	}
	p.noShare = true
	if p.class == LAN && p.wants {
		s.wantersChanged()
	}
	return nil
}

// Received records that a block of piece arrived from id ("" for the
// origin) and was verified. The node now holds the piece; other requests
// for it are cancelled (see Actions.Cancel). A block nobody asked for is
// accepted and counted; one for a piece already held changes nothing.
func (s *Session) Received(id string, piece int) error {
	p, err := s.source(id)
	if err != nil {
		return err
	}
	q, err := s.piece(piece)
	if err != nil {
		return err
	}
	if st := s.pcs[q].place; st == placeHeld || st == placeAlias {
		s.stats.Duplicate++
	} else {
		ri := s.find(q, p)
		if p != nil {
			p.lastRecv = s.tick
		}
		if ri >= 0 && p != nil {
			if p.strikes != 0 {
				s.unlink(p)
				p.strikes = 0
				s.insert(p)
			}
			p.window = min(p.window+1, s.cfg.Window)
			s.mark(p)
		}
		if ri < 0 {
			s.stats.Unrequested++
		}
		if p == nil {
			s.stats.Received[Origin]++
		} else {
			s.stats.Received[p.class]++
		}
		s.hold(q, ri)
	}
	if p != nil {
		s.setHave(p, q)
	}
	return nil
}

// DontHave records that a peer answered dont-have for piece (or, from the
// origin, that it failed to serve it). The piece no longer counts as held
// by the peer; a request for it is given up and will go elsewhere, and the
// peer is penalised (see Config.Window and MaxStrikes).
func (s *Session) DontHave(id string, piece int) error {
	p, err := s.source(id)
	if err != nil {
		return err
	}
	q, err := s.piece(piece)
	if err != nil {
		return err
	}
	s.stats.DontHave++
	ri := s.find(q, p)
	if p == nil {
		if ri >= 0 {
			s.release(ri, false)
		}
		return nil
	}
	s.clearHave(p, q)
	if ri >= 0 {
		s.release(ri, false)
		s.strike(p)
	}
	return nil
}

// BadBlock records that a block of piece from id failed verification. A
// peer is dropped at once, as by RemovePeer (the caller disconnects it);
// a request to the origin is given up and asked again.
func (s *Session) BadBlock(id string, piece int) error {
	p, err := s.source(id)
	if err != nil {
		return err
	}
	q, err := s.piece(piece)
	if err != nil {
		return err
	}
	s.stats.BadBlocks++
	if p != nil {
		s.remove(p, false)
	} else if ri := s.find(q, nil); ri >= 0 {
		s.release(ri, false)
	}
	return nil
}

// SetOrigin says whether the origin can be reached (it can at first).
// Taking it away cancels the requests outstanding there.
func (s *Session) SetOrigin(up bool) {
	if up == s.originUp {
		return
	}
	s.originUp = up
	s.dupsChanged()
	if !up {
		for ri := range s.reqs {
			if r := &s.reqs[ri]; r.live && r.src < 0 {
				s.release(int32(ri), true)
			}
		}
	}
	if s.cfg.OriginFirst {
		// Pieces WAN peers hold move between the WAN pool and the origin.
		for i := range s.pcs {
			if q := int32(i); s.pcs[q].wan > 0 {
				s.reconcile(q)
			}
		}
	}
}

// Tick advances the session's clock by one tick: requests to a peer that
// has delivered nothing for StallTicks since they were issued are given up
// (cancelled, the piece no longer counted as held by that peer, the peer
// penalised), and LAN wanters that owe this node
// pieces but brought no new piece into the site for ShareStallTicks are
// left out of the split.
func (s *Session) Tick() {
	s.refresh()
	s.tick++
	s.stalled = s.stalled[:0]
	if s.tick >= s.stallAt && s.out > s.originOut {
		// Some request to a peer may have stalled: find them, and the
		// first tick at which one of the others may.
		stall := int64(s.cfg.StallTicks)
		next := int64(math.MaxInt64)
		for ri := range s.reqs {
			r := &s.reqs[ri]
			if !r.live || r.src < 0 {
				continue
			}
			if s.tick-r.issued < stall {
				next = min(next, r.issued+stall)
				continue
			}
			if since := max(r.issued, s.slots[r.src].lastRecv); s.tick-since >= stall {
				s.stalled = append(s.stalled, int32(ri))
			} else {
				next = min(next, since+stall)
			}
		}
		s.stallAt = next
	}
	for _, ri := range s.stalled {
		r := s.reqs[ri]
		if !r.live { // its peer was dropped a moment ago
			continue
		}
		s.stats.Stalled++
		p := s.slots[r.src]
		if p.class == LAN && !s.cfg.NoSplit {
			if mine, owner := s.ownerOf(s.ord.pos(r.q)); !mine && s.slots[owner] == p {
				s.pcs[r.q].ours = true
			}
		}
		s.clearHave(p, r.q)
		s.release(ri, true)
		s.strike(p)
	}
	if s.cfg.NoSplit {
		return
	}
	s.refresh()
	excluded := false
	for i, slot := range s.wslots {
		switch {
		case s.awaitedBy[slot] == 0:
			s.progress[slot] = s.tick
		case s.tick-s.progress[slot] >= int64(s.cfg.ShareStallTicks):
			s.wanters[i].excluded = true
			excluded = true
			s.stats.Excluded++
		}
	}
	if excluded {
		s.wantersChanged()
	}
}
