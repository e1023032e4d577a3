package exchange

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/swarm/sched"
	"github.com/shoalnet/shoal/swarm/wire"
)

// Errors of the engine.
var (
	// ErrMisbehaved wraps every error for which the engine disconnected a
	// peer: a session rule of swarm/wire broken, a bad block, a wire
	// error. The log line and Config.OnMisbehave get the detail.
	ErrMisbehaved = errors.New("exchange: peer misbehaved")
	// ErrDuplicatePeer: a second connection to a peer that is connected
	// already, or to this node itself. The node keeps one per peer.
	ErrDuplicatePeer = errors.New("exchange: peer already connected")
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("exchange: engine closed")
	// ErrBadChunk is what a deliver function returns (wrapped) to refuse
	// bytes, unless DownloadConfig.IsBadChunk says otherwise.
	ErrBadChunk = errors.New("exchange: chunk refused")
)

// Config configures an [Engine]. Zero fields take defaults.
type Config struct {
	// Logger gets one line per peer disconnected for misbehaviour, naming
	// the peer and what was wrong (default slog.Default()).
	Logger *slog.Logger
	// MaxChunk is the largest chunk of any release this node fetches; the
	// frame limit it announces is wire.FrameLimitFor(MaxChunk) (default
	// 1 MiB, which covers the default chunker parameters).
	MaxChunk int
	// MaxPeerWants bounds the Wants a peer may have unanswered at this
	// node (default 256); one more disconnects it.
	MaxPeerWants int
	// MaxPeerIndexes bounds the indexes a peer may announce Haves for
	// (default 64), and MaxPeerHaveBytes the bitmap bytes kept for them
	// (default 16 MiB); more disconnects it.
	MaxPeerIndexes   int
	MaxPeerHaveBytes int
	// UploadRate caps the bytes of blocks this node serves per second, over
	// all peers (0: no cap).
	UploadRate int64
	// DownloadRate caps the bytes of blocks this node takes in per second,
	// from peers and the origin together (0: no cap): a block's reader
	// waits before it reads on, so the sender's stream backs up.
	DownloadRate int64
	// HandshakeTimeout bounds the wait for a peer's Hello (default 10 s);
	// WriteTimeout bounds one write to a peer that does not read (default
	// 30 s). Either ends the connection.
	HandshakeTimeout time.Duration
	WriteTimeout     time.Duration
	// ObjectTimeout bounds the wait for one peer's answer to a Want of
	// FetchObject (default 30 s: an index of 16 MiB at 5 Mbit/s); then
	// the Want is cancelled and the next peer asked.
	ObjectTimeout time.Duration
	// FrameTimeout and MinFrameRate bound how long one frame from a peer
	// may take once its first byte has arrived: FrameTimeout plus its
	// length at MinFrameRate bytes per second (defaults 30 s and 8 KiB/s:
	// 38 s for a 64 KiB chunk). A peer that sends part of a frame and
	// stalls is disconnected as misbehaving; between frames a stream may
	// rest as long as it likes.
	FrameTimeout time.Duration
	MinFrameRate int
	// NoShare: this node has no route to the origin, so it takes no share
	// of its site's uplink split (sched.Config.NoShare) and says so in its
	// Hello (wire.NoShare); the LAN peers that can reach the origin divide
	// the pieces no LAN peer holds among themselves.
	NoShare bool
	// WANHaveDelay is how long news of newly held positions may wait
	// before it goes to a WAN peer, as one Have per index (default 1 s;
	// negative: at once, a HaveDelta per batch, as LAN peers get it).
	// On a thin uplink the small frames cost: with a release mostly
	// copied from the running slot they were a tenth of the bytes that
	// crossed it.
	WANHaveDelay time.Duration
	// CompressLAN makes the engine compress blocks (zstd, where it
	// shrinks them) for LAN peers too. By default only WAN peers get them
	// compressed: on a LAN the link is rarely the bottleneck, and the CPU
	// both ends would spend is (on loopback it took a third of the
	// serving node's time).
	CompressLAN bool
	// OnMisbehave, if set, hears each peer disconnected for misbehaviour
	// (the node lowers its libp2p score). It must not block.
	OnMisbehave func(peer string, err error)
}

func (c *Config) fill() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxChunk <= 0 {
		c.MaxChunk = 1 << 20
	}
	c.MaxChunk = min(c.MaxChunk, chunker.MaxChunkCeil)
	if c.MaxPeerWants <= 0 {
		c.MaxPeerWants = 256
	}
	if c.MaxPeerIndexes <= 0 {
		c.MaxPeerIndexes = 64
	}
	if c.MaxPeerHaveBytes <= 0 {
		c.MaxPeerHaveBytes = 16 << 20
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.ObjectTimeout <= 0 {
		c.ObjectTimeout = 30 * time.Second
	}
	if c.WANHaveDelay == 0 {
		c.WANHaveDelay = time.Second
	}
	if c.FrameTimeout <= 0 {
		c.FrameTimeout = 30 * time.Second
	}
	if c.MinFrameRate <= 0 {
		c.MinFrameRate = 8 << 10
	}
}

// Engine is one node's side of the chunk exchange: it runs every peer
// connection (handshake, serving Wants from its Provider, announcing what
// the node holds, enforcing the session rules) and routes what peers send
// to the [Download]s in progress. Safe for concurrent use.
type Engine struct {
	self     string
	provider Provider
	cfg      Config
	log      *slog.Logger
	limit    *bucket // uploads
	down     *bucket // downloads

	mu        sync.Mutex
	closed    bool
	peers     map[string]*peer
	served    map[cid.Cid]*served
	downloads map[cid.Cid]*Download // with a FetchAll running

	pmu       sync.Mutex
	penalties map[string]int

	wg sync.WaitGroup // Add's goroutines

	servedBlocks atomic.Int64
	servedBytes  atomic.Int64
	misbehaved   atomic.Int64
}

// served is an index this node announces.
type served struct {
	ix   *chunker.Index
	id   cid.Cid
	held *Bitmap
}

// New returns the engine of node self (its peer ID, as peers name it),
// serving from provider.
func New(self string, provider Provider, cfg Config) *Engine {
	cfg.fill()
	return &Engine{
		self:      self,
		provider:  provider,
		cfg:       cfg,
		log:       cfg.Logger,
		limit:     newBucket(cfg.UploadRate, wire.FrameLimitFor(cfg.MaxChunk)),
		down:      newBucket(cfg.DownloadRate, wire.FrameLimitFor(cfg.MaxChunk)),
		peers:     map[string]*peer{},
		served:    map[cid.Cid]*served{},
		downloads: map[cid.Cid]*Download{},
		penalties: map[string]int{},
	}
}

// Self is the node's peer ID.
func (e *Engine) Self() string { return e.self }

// Add runs c in a goroutine of its own (see Run); Close waits for it.
func (e *Engine) Add(c Conn) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		_ = e.Run(context.Background(), c)
	}()
}

// Run runs one peer connection until it ends, ctx ends, the engine is
// closed or the peer misbehaves; it closes c. It exchanges Hellos, sends
// the Haves of every index the node announces, serves the peer's Wants
// and feeds its Haves and answers to the downloads. It returns nil when
// the stream ended, an error wrapping ErrMisbehaved when the peer was
// disconnected for what it sent, and ErrDuplicatePeer for a second
// connection to the same peer (c is closed; the first one stays).
func (e *Engine) Run(ctx context.Context, c Conn) error {
	p := newPeer(e, c)
	e.mu.Lock()
	switch {
	case e.closed:
		e.mu.Unlock()
		c.Close()
		return ErrClosed
	case c.Peer() == e.self || e.peers[c.Peer()] != nil:
		e.mu.Unlock()
		c.Close()
		return fmt.Errorf("%w: %s", ErrDuplicatePeer, c.Peer())
	}
	e.peers[p.id] = p // reserved; not announced to downloads until the handshake is done
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.peers, p.id)
		if p.haveTimer != nil {
			p.haveTimer.Stop()
		}
		if p.ready {
			for _, d := range e.downloads {
				d.post(event{kind: evGone, p: p})
			}
		}
		p.ready = false
		e.mu.Unlock()
	}()
	return p.run(ctx)
}

// Close disconnects every peer and waits for the connections Add started.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	for _, p := range e.peers {
		p.close(ErrClosed)
	}
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

// Serve starts announcing ix: every connected peer, and every peer that
// connects later, gets a Have for it, with the positions the Provider
// holds. It returns the set of announced positions ([Engine.Held]).
// Serving an index served already changes nothing.
func (e *Engine) Serve(ctx context.Context, ix *chunker.Index) (*Bitmap, error) {
	if len(ix.Chunks) > wire.MaxChunks {
		return nil, fmt.Errorf("exchange: index of %d chunks, more than %d", len(ix.Chunks), wire.MaxChunks)
	}
	id := ix.CID()
	e.mu.Lock()
	sv := e.served[id]
	e.mu.Unlock()
	if sv != nil {
		return sv.held, nil
	}
	b, err := e.provider.Holding(ctx, ix)
	if err != nil {
		return nil, fmt.Errorf("exchange: what the node holds of %s: %w", id, err)
	}
	held := NewBitmap(len(ix.Chunks))
	held.Or(b)
	e.mu.Lock()
	defer e.mu.Unlock()
	if sv := e.served[id]; sv != nil {
		sv.held.Or(b)
		return sv.held, nil
	}
	sv = &served{ix: ix, id: id, held: held}
	e.served[id] = sv
	have := sv.have()
	for _, p := range e.peers {
		if p.ready {
			p.sendHave(id, have)
		}
	}
	return held, nil
}

// Held is the set of positions of index that the node announces, nil if
// it does not announce index. A SlotProvider of the slot being filled
// shares it, so that it serves what the engine announces.
func (e *Engine) Held(index cid.Cid) *Bitmap {
	e.mu.Lock()
	defer e.mu.Unlock()
	if sv := e.served[index]; sv != nil {
		return sv.held
	}
	return nil
}

// Announce adds positions of index to what the node announces, and tells
// every peer: a HaveDelta of the new positions, or a whole Have when that
// is shorter. The index must have been served ([Engine.Serve], or a
// Download of it); otherwise Announce does nothing and returns false.
// The node calls it for positions it gained outside a Download (copied
// locally, the updater's Placed); a Download announces what it delivers.
func (e *Engine) Announce(index cid.Cid, positions []int) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	sv := e.served[index]
	if sv == nil {
		return false
	}
	added := sv.held.Set(positions)
	if len(added) == 0 {
		return true
	}
	n := len(sv.ix.Chunks)
	var msg wire.Message
	if len(added) > n/32 {
		msg = sv.have()
	} else {
		sort.Ints(added)
		ps := make([]uint32, len(added))
		for i, a := range added {
			ps[i] = uint32(a)
		}
		msg = &wire.HaveDelta{Index: index, Count: n, Positions: ps}
	}
	for _, p := range e.peers {
		switch {
		case !p.ready:
		case p.class == sched.WAN && e.cfg.WANHaveDelay > 0:
			p.haveLater(index)
		default:
			p.sendHave(index, msg)
		}
	}
	return true
}

// Withdraw stops announcing index: peers get a Have of no positions.
func (e *Engine) Withdraw(index cid.Cid) {
	e.mu.Lock()
	defer e.mu.Unlock()
	sv := e.served[index]
	if sv == nil || e.downloads[index] != nil {
		return
	}
	delete(e.served, index)
	n := len(sv.ix.Chunks)
	msg := &wire.Have{Index: index, Count: n, Bitmap: make([]byte, wire.BitmapLen(n))}
	for _, p := range e.peers {
		if p.ready {
			p.sendHave(index, msg)
		}
	}
}

func (sv *served) have() *wire.Have {
	return &wire.Have{Index: sv.id, Count: len(sv.ix.Chunks), Bitmap: sv.held.Bytes()}
}

// PeerInfo describes a connected peer.
type PeerInfo struct {
	ID    string
	Class sched.Class
	// Announced maps each index the peer sent a Have for to the number of
	// positions it holds.
	Announced map[cid.Cid]int
}

// Peers lists the connected peers (handshake done), by ID.
func (e *Engine) Peers() []PeerInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []PeerInfo
	for _, p := range e.peers {
		if !p.ready {
			continue
		}
		pi := PeerInfo{ID: p.id, Class: p.class, Announced: map[cid.Cid]int{}}
		for id, h := range p.haves {
			pi.Announced[id] = h.count
		}
		out = append(out, pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Penalties is how many times the engine disconnected peer for
// misbehaviour (or the scheduler dropped it), since the engine started.
func (e *Engine) Penalties(peer string) int {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	return e.penalties[peer]
}

// Stats are the engine's counters.
type Stats struct {
	ServedBlocks int64 // blocks sent to peers
	ServedBytes  int64 // their object bytes
	Misbehaved   int64 // peers disconnected for misbehaviour
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{ServedBlocks: e.servedBlocks.Load(), ServedBytes: e.servedBytes.Load(), Misbehaved: e.misbehaved.Load()}
}

func (e *Engine) penalise(id string) {
	e.pmu.Lock()
	e.penalties[id]++
	e.pmu.Unlock()
}
