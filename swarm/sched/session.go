package sched

import (
	"fmt"
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

// Where a piece is. Every piece is in exactly one place; the pools are the
// pieces that can be asked for now, each from one class.
const (
	placeNone      uint8 = iota // transient, inside a step
	placeHeld                   // held locally
	placeAlias                  // the same chunk as an earlier position (NewDedup)
	placeRequested              // outstanding at one or more sources
	placeLAN                    // a LAN peer holds it
	placeWAN                    // no LAN peer, a WAN peer holds it, ours to fetch
	placeOrigin                 // no peer holds it, ours to fetch
	placeAwait                  // no LAN peer holds it and a LAN wanter owns it
)

type pieceState struct {
	lan, wan uint16 // holders by class
	owner    uint16 // the wanter's slot, in placeAwait
	place    uint8
	bucket   uint8 // rarity bucket, in placeLAN and placeWAN
}

type peer struct {
	id      string
	class   Class
	idx     uint16 // slot in Session.slots
	seq     uint64 // order of AddPeer
	key     uint64 // idKey(id)
	have    []uint64
	useful  int // pieces in its class's pool it holds
	out     int // requests outstanding
	window  int
	strikes int
	struck  int64 // tick of the last strike

	// The split.
	wants    bool
	excluded bool  // left out for stalling on its share
	awaited  int   // pieces this node awaits from it
	progress int64 // tick it last brought a new piece into the site, or owed nothing
}

func (p *peer) has(q int32) bool { return hasBit(p.have, q) }
func (p *peer) free() int        { return p.window - p.out }

// before is the order peers are served in: LAN first, fewer strikes first,
// then the order they were added.
func (p *peer) before(o *peer) bool {
	if p.class != o.class {
		return p.class < o.class
	}
	if p.strikes != o.strikes {
		return p.strikes < o.strikes
	}
	return p.seq < o.seq
}

type request struct {
	q      int32
	src    int32 // peer slot, -1 for the origin
	next   int32 // the piece's next request, -1
	issued int64
	live   bool
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

	pcs      []pieceState // by rank
	held     int          // aliases included
	pools    [2][]bucket  // LAN, WAN; by rarity
	origin   bucket
	originUp bool

	peers map[string]*peer
	order []*peer // LAN then WAN, each by before
	nLAN  int
	slots []*peer
	free  []uint16
	seq   uint64

	wanters []*peer // LAN peers that want the release and are not excluded
	dirty   bool    // wanters changed since the pieces were divided

	reqs      []request
	freeReqs  []int32
	head      map[int32]int32 // first request of each requested piece
	out       int
	originOut int

	cancels []Request
	dropped []string
	acts    Actions
	scratch []*peer
	stalled []int32
	bits    []uint64
	stats   Stats
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
	for i := range n {
		q := s.ord.rank(i)
		if first != nil && first[i] != i {
			s.pcs[q].place = placeAlias
			s.held++
			continue
		}
		s.enter(q, placeOrigin, 0)
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

// peer resolves a peer ID; the origin is refused.
func (s *Session) peer(id string) (*peer, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: the origin is not a peer", ErrBadPeer)
	}
	return s.source(id)
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
		key:    idKey(id),
		have:   make([]uint64, s.words),
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
	}
	s.peers[id] = p
	s.insert(p)
	return nil
}

// insert puts p at its place in s.order.
func (s *Session) insert(p *peer) {
	i := len(s.order)
	for i > 0 && p.before(s.order[i-1]) {
		i--
	}
	s.order = append(s.order, nil)
	copy(s.order[i+1:], s.order[i:])
	s.order[i] = p
	if p.class == LAN {
		s.nLAN++
	}
}

func (s *Session) unlink(p *peer) {
	for i, o := range s.order {
		if o == p {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	if p.class == LAN {
		s.nLAN--
	}
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

func (s *Session) remove(p *peer, cancel bool) {
	s.unlink(p)
	for ri := range s.reqs {
		if r := &s.reqs[ri]; r.live && r.src == int32(p.idx) {
			s.release(int32(ri), cancel)
		}
	}
	for w, word := range p.have {
		for word != 0 {
			q := int32(w<<6 + bits.TrailingZeros64(word))
			word &= word - 1
			if st := &s.pcs[q]; p.class == LAN {
				st.lan--
			} else {
				st.wan--
			}
			s.reconcile(q)
		}
	}
	delete(s.peers, p.id)
	s.slots[p.idx] = nil
	s.free = append(s.free, p.idx)
	if p.class == LAN && p.wants && !p.excluded {
		s.wantersChanged()
	}
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
		p.progress = s.tick
	}
	if p.class == LAN {
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
		if ri >= 0 && p != nil {
			if p.strikes != 0 {
				s.unlink(p)
				p.strikes = 0
				s.insert(p)
			}
			p.window = min(p.window+1, s.cfg.Window)
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
	if !up {
		for ri := range s.reqs {
			if r := &s.reqs[ri]; r.live && r.src < 0 {
				s.release(int32(ri), true)
			}
		}
	}
}

// Tick advances the session's clock by one tick: requests outstanding for
// StallTicks are given up (cancelled, the piece no longer counted as held
// by that peer, the peer penalised), and LAN wanters that owe this node
// pieces but brought no new piece into the site for ShareStallTicks are
// left out of the split.
func (s *Session) Tick() {
	s.refresh()
	s.tick++
	s.stalled = s.stalled[:0]
	for ri := range s.reqs {
		if r := &s.reqs[ri]; r.live && s.tick-r.issued >= int64(s.cfg.StallTicks) {
			s.stalled = append(s.stalled, int32(ri))
		}
	}
	for _, ri := range s.stalled {
		r := s.reqs[ri]
		if !r.live { // its peer was dropped a moment ago
			continue
		}
		s.stats.Stalled++
		if r.src < 0 {
			s.release(ri, true)
			continue
		}
		p := s.slots[r.src]
		s.clearHave(p, r.q)
		s.release(ri, true)
		s.strike(p)
	}
	if s.cfg.NoSplit {
		return
	}
	s.refresh()
	excluded := false
	for _, w := range s.wanters {
		switch {
		case w.awaited == 0:
			w.progress = s.tick
		case s.tick-w.progress >= int64(s.cfg.ShareStallTicks):
			w.excluded = true
			excluded = true
			s.stats.Excluded++
		}
	}
	if excluded {
		s.wantersChanged()
	}
}

// strike penalises a peer (at most once a tick) and drops it after
// MaxStrikes in a row.
func (s *Session) strike(p *peer) {
	if p.struck == s.tick {
		return
	}
	p.struck = s.tick
	p.window = max(1, p.window/2)
	if p.strikes+1 >= s.cfg.MaxStrikes {
		s.dropped = append(s.dropped, p.id)
		s.stats.Dropped++
		s.remove(p, true)
		return
	}
	s.unlink(p)
	p.strikes++
	s.insert(p)
}

// setHave records that p holds q.
func (s *Session) setHave(p *peer, q int32) {
	if p.has(q) {
		return
	}
	// p's bit counts in the pool q is in now; enter and leave keep it right
	// from here on.
	if s.inPool(q, p.class) {
		p.useful++
	}
	p.have[q>>6] |= 1 << (q & 63)
	st := &s.pcs[q]
	if p.class == WAN {
		st.wan++
	} else {
		if st.lan == 0 && st.place != placeHeld && st.place != placeAlias {
			// p brought a piece this node lacks into the site.
			p.progress = s.tick
			if p.excluded && p.wants {
				p.excluded = false
				s.stats.Reinstated++
				s.wantersChanged()
			}
		}
		st.lan++
	}
	s.reconcile(q)
}

// clearHave records that p does not hold q.
func (s *Session) clearHave(p *peer, q int32) {
	if !p.has(q) {
		return
	}
	if s.inPool(q, p.class) {
		p.useful--
	}
	p.have[q>>6] &^= 1 << (q & 63)
	if st := &s.pcs[q]; p.class == WAN {
		st.wan--
	} else {
		st.lan--
	}
	s.reconcile(q)
}

func (s *Session) inPool(q int32, c Class) bool {
	pl := s.pcs[q].place
	return pl == placeLAN && c == LAN || pl == placeWAN && c == WAN
}

// want says where q, neither held nor requested, belongs. Unless fresh, an
// owner computed before is reused (refresh recomputes them all after the
// split set changes).
func (s *Session) want(q int32, fresh bool) (uint8, uint16) {
	st := &s.pcs[q]
	if st.lan > 0 {
		return placeLAN, 0
	}
	if !s.cfg.NoSplit {
		mine, owner := true, uint16(0)
		switch {
		case !fresh && (st.place == placeWAN || st.place == placeOrigin):
		case !fresh && st.place == placeAwait:
			mine, owner = false, st.owner
		default:
			mine, owner = s.ownerOf(s.ord.pos(q))
		}
		if !mine {
			return placeAwait, owner
		}
	}
	if st.wan > 0 {
		return placeWAN, 0
	}
	return placeOrigin, 0
}

// bucketOf is the rarity bucket of a piece with count holders.
func (s *Session) bucketOf(count uint16) uint8 {
	if s.cfg.Strategy == Random {
		return 0
	}
	return uint8(min(int(count), s.cfg.RarityCap) - 1)
}

// reconcile moves q to where it belongs after its holders changed.
func (s *Session) reconcile(q int32) {
	st := &s.pcs[q]
	switch st.place {
	case placeHeld, placeAlias, placeRequested:
		return
	}
	np, owner := s.want(q, false)
	if np == st.place {
		switch np {
		case placeLAN, placeWAN:
			c, n := LAN, st.lan
			if np == placeWAN {
				c, n = WAN, st.wan
			}
			if b := s.bucketOf(n); b != st.bucket {
				s.pools[c][st.bucket].remove(q)
				s.pools[c][b].add(q, s.words)
				st.bucket = b
			}
			return
		case placeOrigin:
			return
		case placeAwait:
			if owner == st.owner {
				return
			}
		}
	}
	s.leave(q)
	s.enter(q, np, owner)
}

// classPeers are the peers of class c, in service order.
func (s *Session) classPeers(c Class) []*peer {
	if c == LAN {
		return s.order[:s.nLAN]
	}
	return s.order[s.nLAN:]
}

// leave takes q out of its place.
func (s *Session) leave(q int32) {
	st := &s.pcs[q]
	switch st.place {
	case placeLAN, placeWAN:
		c := LAN
		if st.place == placeWAN {
			c = WAN
		}
		s.pools[c][st.bucket].remove(q)
		for _, p := range s.classPeers(c) {
			if p.has(q) {
				p.useful--
			}
		}
	case placeOrigin:
		s.origin.remove(q)
	case placeAwait:
		if o := s.slots[st.owner]; o != nil {
			o.awaited--
		}
	}
	st.place = placeNone
}

// enter puts q, out of any place, into place np.
func (s *Session) enter(q int32, np uint8, owner uint16) {
	st := &s.pcs[q]
	st.place = np
	switch np {
	case placeLAN, placeWAN:
		c, n := LAN, st.lan
		if np == placeWAN {
			c, n = WAN, st.wan
		}
		st.bucket = s.bucketOf(n)
		s.pools[c][st.bucket].add(q, s.words)
		for _, p := range s.classPeers(c) {
			if p.has(q) {
				p.useful++
			}
		}
	case placeOrigin:
		s.origin.add(q, s.words)
	case placeAwait:
		st.owner = owner
		if o := s.slots[owner]; o != nil {
			o.awaited++
		}
	}
}

// hold marks q held; its requests are cancelled, except the one with
// index answered, which a block just answered.
func (s *Session) hold(q int32, answered int32) {
	st := &s.pcs[q]
	if st.place == placeRequested {
		for ri := s.head[q]; ri >= 0; {
			next := s.reqs[ri].next
			if ri != answered {
				s.cancel(ri)
			}
			s.freeReq(ri)
			ri = next
		}
		delete(s.head, q)
		st.place = placeNone
	} else {
		s.leave(q)
	}
	st.place = placeHeld
	s.held++
}

// find returns the request for q outstanding at p (nil: the origin), or -1.
func (s *Session) find(q int32, p *peer) int32 {
	if s.pcs[q].place != placeRequested {
		return -1
	}
	src := int32(-1)
	if p != nil {
		src = int32(p.idx)
	}
	for ri := s.head[q]; ri >= 0; ri = s.reqs[ri].next {
		if s.reqs[ri].src == src {
			return ri
		}
	}
	return -1
}

// issue asks src (nil: the origin) for q.
func (s *Session) issue(q int32, p *peer) {
	st := &s.pcs[q]
	next := int32(-1)
	if st.place == placeRequested {
		next = s.head[q]
	} else {
		s.leave(q)
		st.place = placeRequested
	}
	var ri int32
	if k := len(s.freeReqs); k > 0 {
		ri = s.freeReqs[k-1]
		s.freeReqs = s.freeReqs[:k-1]
	} else {
		ri = int32(len(s.reqs))
		s.reqs = append(s.reqs, request{})
	}
	r := request{q: q, src: -1, next: next, issued: s.tick, live: true}
	c := Origin
	if p != nil {
		r.src = int32(p.idx)
		c = p.class
		p.out++
	} else {
		s.originOut++
	}
	s.reqs[ri] = r
	s.head[q] = ri
	s.out++
	s.stats.Requested[c]++
	s.acts.Request = append(s.acts.Request, s.request(r))
}

func (s *Session) request(r request) Request {
	if r.src < 0 {
		return Request{Piece: s.ord.pos(r.q), Class: Origin}
	}
	p := s.slots[r.src]
	return Request{Piece: s.ord.pos(r.q), Source: p.id, Class: p.class}
}

func (s *Session) cancel(ri int32) {
	s.cancels = append(s.cancels, s.request(s.reqs[ri]))
	s.stats.Cancelled++
}

// freeReq forgets request ri (its piece's chain is the caller's).
func (s *Session) freeReq(ri int32) {
	r := &s.reqs[ri]
	if r.src < 0 {
		s.originOut--
	} else {
		s.slots[r.src].out--
	}
	s.out--
	r.live = false
	s.freeReqs = append(s.freeReqs, ri)
}

// release gives request ri up (with a cancel if asked); a piece with no
// request left goes back where it belongs.
func (s *Session) release(ri int32, cancel bool) {
	r := s.reqs[ri]
	if cancel {
		s.cancel(ri)
	}
	if s.head[r.q] == ri {
		if r.next >= 0 {
			s.head[r.q] = r.next
		} else {
			delete(s.head, r.q)
		}
	} else {
		for pi := s.head[r.q]; ; pi = s.reqs[pi].next {
			if s.reqs[pi].next == ri {
				s.reqs[pi].next = r.next
				break
			}
		}
	}
	s.freeReq(ri)
	if _, ok := s.head[r.q]; !ok {
		s.pcs[r.q].place = placeNone
		s.reconcile(r.q)
	}
}
