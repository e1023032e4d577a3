package exchange

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/swarm/sched"
	"github.com/shoalnet/shoal/swarm/wire"
)

// DownloadConfig configures a [Download]. Zero fields take defaults.
type DownloadConfig struct {
	// Sched is the scheduling policy (windows, endgame, stalls, split),
	// in ticks of TickPeriod.
	Sched sched.Config
	// Origin reads chunk objects from the release's repository
	// (manifest.FetchChunk); nil: no origin, peers only. At most
	// Sched.OriginWindow origin fetches run at once.
	Origin fetch.Fetcher
	// OriginObject reads one piece from Origin and checks it against id
	// (bytes that are not id wrap manifest.ErrChunkCorrupt, an oversized
	// object manifest.ErrTooLarge). Default: manifest.FetchChunk, the
	// repository's chunk objects; a download of delta objects (the
	// pieces of a delta index) passes manifest.FetchDelta.
	OriginObject func(ctx context.Context, origin fetch.Fetcher, id cid.Cid, max int) ([]byte, error)
	// MissingEnds makes an origin's "not found" (fetch.ErrNotFound) for a
	// piece end FetchAll with that error, where by default the origin
	// rests and is asked again (a chunk the signed index lists is there,
	// or the repository is broken). The node sets it for pieces a
	// repository may lack — delta objects, which a mirror may not have
	// copied — so that the installer falls back to whole chunks.
	MissingEnds bool
	// TickPeriod is the scheduler's tick (default 100 ms, which makes the
	// scheduler's defaults 2 s for a stall and 4 s for a share stall).
	TickPeriod time.Duration
	// Ticks, if set, replaces the ticker of TickPeriod (tests, the
	// simulator).
	Ticks <-chan time.Time
	// OriginDelay is how many ticks a FetchAll waits before it asks the
	// origin anything (default 3; negative: none), so that the Haves of
	// peers already connected arrive first.
	OriginDelay int
	// OriginBackoff is how many ticks the origin rests after it failed to
	// serve a chunk (default 10).
	OriginBackoff int
	// Seed seeds the scheduler's tie-breaking order (default: a hash of
	// the node's ID and the index, different on every node).
	Seed uint64
	// IsBadChunk tells which errors of deliver mean "these bytes were
	// refused" (the sender is treated as having sent a bad block, and the
	// chunk is fetched again elsewhere); any other error ends FetchAll.
	// Default: errors.Is(err, ErrBadChunk). The node passes
	// errors.Is(err, updater.ErrBadChunk).
	IsBadChunk func(error) bool
	// DeliverChecks says that deliver hashes every chunk against its ID
	// before it uses the bytes and refuses a bad one with an error
	// IsBadChunk recognises (the installer and the node's store both do).
	// Blocks from peers are then only decoded on arrival
	// (wire.ExpandBlock), not hashed as well: each chunk is hashed once.
	// A peer whose block deliver refuses is disconnected and penalised as
	// for a block that failed the engine's own check.
	DeliverChecks bool
}

// Download fetches one release index from the swarm and the origin. It
// implements updater.BulkSource: the installer hands FetchAll every chunk
// it lacks. One FetchAll (or Get) runs at a time.
type Download struct {
	e       *Engine
	ix      *chunker.Index
	id      cid.Cid
	cfg     DownloadConfig
	first   []int
	dups    map[int][]int // first position → every position, for chunks held at several
	firstOf map[cid.Cid]int

	run sync.Mutex

	qmu     sync.Mutex
	running bool
	queue   []event
	notify  chan struct{}

	smu   sync.Mutex
	stats DownloadStats
}

// DownloadStats are a download's counters, over every FetchAll.
type DownloadStats struct {
	Chunks    [3]int   // chunks delivered, by source class (sched.LAN, WAN, Origin)
	Bytes     [3]int64 // their bytes
	BadBlocks int      // blocks refused (by verification or by deliver)
	Sched     sched.Stats
}

// NewDownload prepares the download of ix and starts announcing it
// ([Engine.Serve]): peers get a Have of what the node holds of it, which
// tells LAN peers that this node fetches the release (docs/swarm.md,
// "Exchange engine"). ix must be verified already.
func (e *Engine) NewDownload(ctx context.Context, ix *chunker.Index, cfg DownloadConfig) (*Download, error) {
	if ix.Params.Max > e.cfg.MaxChunk {
		return nil, fmt.Errorf("exchange: index chunks of up to %d bytes, engine's MaxChunk is %d", ix.Params.Max, e.cfg.MaxChunk)
	}
	if len(ix.Chunks) > wire.MaxChunks {
		return nil, fmt.Errorf("exchange: index of %d chunks, more than %d", len(ix.Chunks), wire.MaxChunks)
	}
	if cfg.TickPeriod <= 0 {
		cfg.TickPeriod = 100 * time.Millisecond
	}
	if cfg.OriginDelay == 0 {
		cfg.OriginDelay = 3
	}
	if cfg.OriginBackoff <= 0 {
		cfg.OriginBackoff = 10
	}
	if cfg.IsBadChunk == nil {
		cfg.IsBadChunk = func(err error) bool { return errors.Is(err, ErrBadChunk) }
	}
	if cfg.OriginObject == nil {
		cfg.OriginObject = manifest.FetchChunk
	}
	d := &Download{e: e, ix: ix, id: ix.CID(), cfg: cfg, notify: make(chan struct{}, 1),
		first: make([]int, len(ix.Chunks)), dups: map[int][]int{}, firstOf: make(map[cid.Cid]int, len(ix.Chunks))}
	if d.cfg.Seed == 0 {
		h := fnv.New64a()
		h.Write([]byte(e.self))
		h.Write(d.id.Bytes())
		d.cfg.Seed = h.Sum64()
	}
	for i := range ix.Chunks {
		id := ix.ID(i)
		f, ok := d.firstOf[id]
		if !ok {
			f = i
			d.firstOf[id] = i
		} else {
			if d.dups[f] == nil {
				d.dups[f] = []int{f}
			}
			d.dups[f] = append(d.dups[f], i)
		}
		d.first[i] = f
	}
	if _, err := e.Serve(ctx, ix); err != nil {
		return nil, err
	}
	if _, err := sched.NewDedup(cfg.Sched, e.self, d.first, rand.New(rand.NewPCG(1, 2))); err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	return d, nil
}

// Index is the CID of the release index.
func (d *Download) Index() cid.Cid { return d.id }

// Stats returns the download's counters.
func (d *Download) Stats() DownloadStats {
	d.smu.Lock()
	defer d.smu.Unlock()
	return d.stats
}

// Placed announces positions whose bytes are now where the node's
// Provider serves them: found in place, copied from the running slot, or
// delivered by FetchAll and stored since. Only the one who stores the
// bytes knows when they are there to serve: the installer's deliver only
// queues a chunk for its writer, and a position announced before the
// write is asked for at once by the site's peers, who, told "corrupt",
// forget that this node holds it and are never told again. The node calls it from the updater's Placed callback.
func (d *Download) Placed(positions []int) { d.e.Announce(d.id, positions) }

// group is every position holding the chunk first at f.
func (d *Download) group(f int) []int {
	if g := d.dups[f]; g != nil {
		return g
	}
	return []int{f}
}

// Get fetches one chunk (updater.ChunkSource). It runs a FetchAll of that
// chunk alone; the bytes are the caller's.
func (d *Download) Get(ctx context.Context, id cid.Cid) ([]byte, error) {
	var out []byte
	err := d.fetch(ctx, []cid.Cid{id}, func(_ cid.Cid, b []byte) error { out = b; return nil })
	if err != nil {
		return nil, err
	}
	return out, nil
}

// FetchAll fetches every chunk of want (chunks of the index; duplicates
// and order do not matter) and calls deliver once for each, from one
// goroutine, with verified bytes that are the installer's after the call.
// The chunks of the index not in want count as held already: they are
// never fetched. FetchAll announces nothing: the caller calls Placed once
// a delivered chunk is stored where the node's Provider serves it (the
// slot being filled, whose SlotProvider shares Engine.Held). An error of deliver that IsBadChunk accepts counts as a
// bad block from whoever sent the bytes: the chunk is fetched again
// elsewhere. FetchAll returns nil when every chunk was delivered, ctx's
// error when ctx ends, or deliver's other errors.
func (d *Download) FetchAll(ctx context.Context, want []cid.Cid, deliver func(id cid.Cid, data []byte) error) error {
	return d.fetch(ctx, want, deliver)
}

type evKind uint8

const (
	evAdd evKind = iota
	evGone
	evBitmap
	evHas
	evBlock
	evDontHave
	evBad
	evOrigin
)

// event is what a connection or an origin fetch tells the download loop.
type event struct {
	kind      evKind
	p         *peer
	req       wire.RequestID
	piece     int
	data      []byte
	bitmap    []byte
	positions []int
	full      bool
	err       error
	or        *originReq
}

// post queues an event for the running FetchAll; without one it is
// dropped.
func (d *Download) post(ev event) {
	d.qmu.Lock()
	if !d.running {
		d.qmu.Unlock()
		return
	}
	d.queue = append(d.queue, ev)
	d.qmu.Unlock()
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

type reqKey struct {
	peer  string
	piece int
}

type originReq struct {
	piece     int
	cancel    context.CancelFunc
	cancelled bool
}

// fetchRun is one FetchAll's state, owned by its goroutine.
type fetchRun struct {
	d       *Download
	ctx     context.Context
	s       *sched.Session
	deliver func(cid.Cid, []byte) error
	got     []bool // by first position: delivered, or not wanted
	peers   map[string]*peer
	reqs    map[reqKey]wire.RequestID
	origin  map[int]*originReq
	wg      sync.WaitGroup

	tick      int
	resting   bool // the origin rests until restUntil
	restUntil int
	spare     []event
}

func (d *Download) fetch(ctx context.Context, want []cid.Cid, deliver func(cid.Cid, []byte) error) error {
	d.run.Lock()
	defer d.run.Unlock()
	n := len(d.ix.Chunks)
	got := make([]bool, n)
	for i := range got {
		got[i] = true
	}
	missing := 0
	for _, id := range want {
		f, ok := d.firstOf[id]
		if !ok {
			return fmt.Errorf("exchange: chunk %s is not in index %s", id, d.id)
		}
		if got[f] {
			got[f] = false
			missing++
		}
	}
	if missing == 0 {
		return nil
	}
	scfg := d.cfg.Sched
	scfg.NoShare = scfg.NoShare || d.e.cfg.NoShare
	s, err := sched.NewDedup(scfg, d.e.self, d.first, rand.New(rand.NewPCG(d.cfg.Seed, uint64(missing))))
	if err != nil {
		return fmt.Errorf("exchange: %w", err)
	}
	for i := range n {
		if d.first[i] == i && got[i] {
			s.Have(i)
		}
	}
	r := &fetchRun{d: d, ctx: ctx, s: s, deliver: deliver, got: got,
		peers: map[string]*peer{}, reqs: map[reqKey]wire.RequestID{}, origin: map[int]*originReq{}}
	switch {
	case d.cfg.Origin == nil:
		s.SetOrigin(false)
	case d.cfg.OriginDelay > 0:
		s.SetOrigin(false)
		r.resting, r.restUntil = true, d.cfg.OriginDelay
	}

	e := d.e
	e.mu.Lock()
	if e.downloads[d.id] != nil {
		e.mu.Unlock()
		return fmt.Errorf("exchange: another download of %s is running", d.id)
	}
	e.downloads[d.id] = d
	d.qmu.Lock()
	d.running = true
	d.queue = nil
	d.qmu.Unlock()
	for _, p := range e.peers {
		if p.ready {
			ev := event{kind: evAdd, p: p}
			if h := p.haves[d.id]; h != nil {
				ev.bitmap, ev.full = append([]byte(nil), h.bitmap...), h.count == h.n
			}
			d.post(ev)
		}
	}
	e.mu.Unlock()
	defer r.finish()

	ticks := d.cfg.Ticks
	if ticks == nil {
		t := time.NewTicker(d.cfg.TickPeriod)
		defer t.Stop()
		ticks = t.C
	}
	for {
		if err := r.drain(); err != nil {
			return err
		}
		if s.Done() {
			return nil
		}
		r.act(s.Next())
		select {
		case <-d.notify:
		case <-ticks:
			r.onTick()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// finish ends a FetchAll: it stops taking events, cancels what is
// outstanding and waits for the origin fetches.
func (r *fetchRun) finish() {
	d := r.d
	d.e.mu.Lock()
	delete(d.e.downloads, d.id)
	d.e.mu.Unlock()
	d.qmu.Lock()
	d.running = false
	d.queue = nil
	d.qmu.Unlock()
	for k, req := range r.reqs {
		if p := r.peers[k.peer]; p != nil {
			p.cancelWant(req)
		}
	}
	for _, or := range r.origin {
		or.cancel()
	}
	r.wg.Wait()
	d.smu.Lock()
	d.stats.Sched = r.s.Stats()
	d.smu.Unlock()
}

func (r *fetchRun) onTick() {
	r.tick++
	r.s.Tick()
	if r.resting && r.tick >= r.restUntil {
		r.resting = false
		r.s.SetOrigin(true)
	}
}

// drain handles the events queued since the last call.
func (r *fetchRun) drain() error {
	d := r.d
	d.qmu.Lock()
	evs := d.queue
	d.queue = r.spare[:0]
	d.qmu.Unlock()
	defer func() {
		clear(evs)
		r.spare = evs[:0]
	}()
	for i := range evs {
		if err := r.handle(&evs[i]); err != nil {
			return err
		}
	}
	d.smu.Lock()
	d.stats.Sched = r.s.Stats()
	d.smu.Unlock()
	return nil
}

func (r *fetchRun) handle(ev *event) error {
	s := r.s
	p := ev.p
	known := p != nil && r.peers[p.id] == p
	switch ev.kind {
	case evAdd:
		if err := s.AddPeer(p.id, p.class); err != nil {
			return nil
		}
		r.peers[p.id] = p
		if p.noShare {
			_ = s.PeerNoShare(p.id)
		}
		if ev.bitmap != nil {
			r.bitmap(p, ev.bitmap, ev.full)
		}
	case evBitmap:
		if known {
			r.bitmap(p, ev.bitmap, ev.full)
		}
	case evHas:
		if known {
			for _, i := range ev.positions {
				_ = s.PeerHas(p.id, i)
			}
			if ev.full && p.class == sched.LAN {
				_ = s.PeerWants(p.id, false)
			}
		}
	case evGone:
		if known {
			_ = s.RemovePeer(p.id)
			r.forget(p)
		}
	case evBlock:
		r.answered(p, ev)
		return r.block(p, ev.piece, ev.data)
	case evDontHave:
		r.answered(p, ev)
		if known {
			_ = s.DontHave(p.id, ev.piece)
		}
	case evBad:
		r.answered(p, ev)
		r.badBlock(p, ev.piece)
	case evOrigin:
		if r.origin[ev.piece] == ev.or {
			delete(r.origin, ev.piece)
		}
		switch {
		case ev.err == nil:
			return r.block(nil, ev.piece, ev.data)
		case errors.Is(ev.err, manifest.ErrChunkCorrupt) || errors.Is(ev.err, manifest.ErrTooLarge):
			r.d.e.log.Warn("exchange: origin sent a bad chunk", "index", r.d.id.String(), "chunk", ev.piece, "err", ev.err)
			r.badBlock(nil, ev.piece)
		case ev.or.cancelled:
		case r.d.cfg.MissingEnds && errors.Is(ev.err, fetch.ErrNotFound):
			return fmt.Errorf("exchange: piece %d of %s: the origin does not have it: %w", ev.piece, r.d.id, ev.err)
		default:
			r.d.e.log.Info("exchange: origin failed", "index", r.d.id.String(), "chunk", ev.piece, "err", ev.err)
			_ = s.DontHave("", ev.piece)
			if !r.resting {
				s.SetOrigin(false)
				r.resting, r.restUntil = true, r.tick+r.d.cfg.OriginBackoff
			}
		}
	}
	return nil
}

// bitmap applies a peer's Have; from a LAN peer, a Have that lacks
// positions means it fetches the release too.
func (r *fetchRun) bitmap(p *peer, b []byte, full bool) {
	if err := r.s.PeerHasBitmap(p.id, b); err != nil {
		return
	}
	if p.class == sched.LAN {
		_ = r.s.PeerWants(p.id, !full)
	}
}

// answered forgets the request an answer answers.
func (r *fetchRun) answered(p *peer, ev *event) {
	k := reqKey{p.id, ev.piece}
	if req, ok := r.reqs[k]; ok && req == ev.req {
		delete(r.reqs, k)
	}
}

func (r *fetchRun) forget(p *peer) {
	delete(r.peers, p.id)
	for k := range r.reqs {
		if k.peer == p.id {
			delete(r.reqs, k)
		}
	}
}

// badBlock reports a bad block from p (nil: the origin).
func (r *fetchRun) badBlock(p *peer, piece int) {
	r.d.smu.Lock()
	r.d.stats.BadBlocks++
	r.d.smu.Unlock()
	if p == nil {
		_ = r.s.BadBlock("", piece)
		return
	}
	if r.peers[p.id] == p {
		_ = r.s.BadBlock(p.id, piece)
		r.forget(p)
	}
}

// block hands verified bytes of piece from p (nil: the origin) to
// deliver, unless the chunk was delivered already.
func (r *fetchRun) block(p *peer, piece int, data []byte) error {
	d, s := r.d, r.s
	f := d.first[piece]
	src, class := "", sched.Origin
	if p != nil {
		src, class = p.id, p.class
	}
	inSession := p == nil || r.peers[src] == p
	if r.got[f] {
		if inSession {
			_ = s.Received(src, piece)
		}
		return nil
	}
	if err := r.deliver(d.ix.ID(f), data); err != nil {
		if !d.cfg.IsBadChunk(err) {
			return fmt.Errorf("exchange: deliver chunk %d of %s: %w", f, d.id, err)
		}
		r.badBlock(p, piece)
		if p != nil {
			p.misbehave("bad block: chunk %d of %s refused: %v", f, d.id, err)
		}
		return nil
	}
	r.got[f] = true
	d.smu.Lock()
	d.stats.Chunks[class]++
	d.stats.Bytes[class] += int64(len(data))
	d.smu.Unlock()
	if inSession {
		_ = s.Received(src, piece)
	} else {
		_ = s.Have(piece)
	}
	return nil
}

// act carries out the scheduler's actions.
func (r *fetchRun) act(a sched.Actions) {
	d := r.d
	for _, c := range a.Cancel {
		if c.Class == sched.Origin {
			if or := r.origin[c.Piece]; or != nil {
				or.cancelled = true
				or.cancel()
				delete(r.origin, c.Piece)
			}
			continue
		}
		k := reqKey{c.Source, c.Piece}
		if req, ok := r.reqs[k]; ok {
			delete(r.reqs, k)
			if p := r.peers[c.Source]; p != nil {
				p.cancelWant(req)
			}
		}
	}
	for _, q := range a.Request {
		if q.Class == sched.Origin {
			r.startOrigin(q.Piece)
			continue
		}
		if p := r.peers[q.Source]; p != nil {
			r.reqs[reqKey{q.Source, q.Piece}] = p.want(d, q.Piece)
		}
	}
	for _, id := range a.Dropped {
		if p := r.peers[id]; p != nil {
			r.forget(p)
			p.drop(fmt.Sprintf("the scheduler gave up on it while fetching %s (stalls or dont-haves in a row)", d.id))
		}
	}
}

func (r *fetchRun) startOrigin(piece int) {
	d := r.d
	ctx, cancel := context.WithCancel(r.ctx)
	or := &originReq{piece: piece, cancel: cancel}
	r.origin[piece] = or
	id := d.ix.ID(piece)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer cancel()
		data, err := d.cfg.OriginObject(ctx, d.cfg.Origin, id, d.ix.Params.Max)
		if err == nil {
			err = d.e.down.take(ctx, len(data))
		}
		d.post(event{kind: evOrigin, piece: piece, data: data, err: err, or: or})
	}()
}
