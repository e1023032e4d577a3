package exchange

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/swarm/sched"
	"github.com/shoalnet/shoal/swarm/wire"
)

// peer is one connection's state. The reader runs in Run's goroutine;
// serve and write have a goroutine each.
type peer struct {
	e     *Engine
	c     Conn
	id    string
	class sched.Class
	// noShare: the peer's Hello said it takes no share of the split (set
	// before the peer is ready, read-only after).
	noShare bool

	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once

	// Under e.mu.
	ready     bool
	haves     map[cid.Cid]*peerHave // what the peer announced
	haveBytes int
	// WAN peers hear what this node newly holds at most once per
	// Config.WANHaveDelay: the indexes whose Have is due, and the timer.
	haveDue   map[cid.Cid]bool
	haveTimer *time.Timer

	mu       sync.Mutex
	ctrl     []wire.Message // control frames waiting for the writer
	incoming map[wire.RequestID]*inWant
	outgoing map[wire.RequestID]*outWant
	nextReq  wire.RequestID

	notify  chan struct{} // ctrl grew
	wantsIn chan *inWant  // reader → server
	answers chan answer   // server → writer
}

// peerHave is what a peer announced for one index.
type peerHave struct {
	n      int
	bitmap []byte
	count  int
}

// inWant is a Want the peer sent, not answered yet.
type inWant struct {
	req       wire.RequestID
	id        cid.Cid
	index     cid.Cid
	pos       int
	cancelled atomic.Bool
}

// outWant is a Want this node sent the peer, not answered yet: for a
// chunk of a Download (d set), or for one object of FetchObject (obj set).
type outWant struct {
	id        cid.Cid
	d         *Download
	piece     int
	maxChunk  int
	cancelled bool
	obj       chan objResult // FetchObject's, buffered: gets the one answer
}

// objResult is the answer to a FetchObject Want: verified bytes, or an
// error (ErrNotHeld for a DontHave, ErrMisbehaved for a bad block).
type objResult struct {
	data []byte
	err  error
}

// what names the Want's object in log lines and errors.
func (ow *outWant) what() string {
	if ow.d == nil {
		return "object " + ow.id.String()
	}
	return fmt.Sprintf("chunk %d of %s", ow.piece, ow.d.id)
}

// answer is the server's reply to one Want: a Block if obj is set, else
// a DontHave.
type answer struct {
	req wire.RequestID
	id  cid.Cid
	obj []byte
}

func newPeer(e *Engine, c Conn) *peer {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &peer{
		e: e, c: c, id: c.Peer(), class: c.Class(),
		ctx: ctx, cancel: cancel,
		haves:    map[cid.Cid]*peerHave{},
		incoming: map[wire.RequestID]*inWant{},
		outgoing: map[wire.RequestID]*outWant{},
		notify:   make(chan struct{}, 1),
		wantsIn:  make(chan *inWant, e.cfg.MaxPeerWants),
		answers:  make(chan answer, 4),
	}
}

// close ends the connection (once), which unblocks every goroutine of it.
func (p *peer) close(cause error) {
	p.once.Do(func() {
		p.cancel(cause)
		p.c.Close()
	})
}

// misbehave disconnects the peer for what it sent, logs it and lowers its
// score.
func (p *peer) misbehave(format string, args ...any) error {
	err := fmt.Errorf("%w: %s", ErrMisbehaved, fmt.Sprintf(format, args...))
	p.once.Do(func() {
		p.e.misbehaved.Add(1)
		p.e.penalise(p.id)
		p.e.log.Warn("exchange: disconnecting peer", "peer", p.id, "class", p.class.String(), "reason", err.Error())
		if f := p.e.cfg.OnMisbehave; f != nil {
			f(p.id, err)
		}
		p.cancel(err)
		p.c.Close()
	})
	return err
}

// drop disconnects a peer the scheduler gave up on (stalls, dont-haves).
func (p *peer) drop(reason string) {
	p.once.Do(func() {
		p.e.penalise(p.id)
		p.e.log.Info("exchange: dropping peer", "peer", p.id, "class", p.class.String(), "reason", reason)
		p.cancel(errors.New(reason))
		p.c.Close()
	})
}

// send queues control frames for the writer.
func (p *peer) send(ms ...wire.Message) {
	p.mu.Lock()
	p.ctrl = append(p.ctrl, ms...)
	p.mu.Unlock()
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// sendHave queues a Have or HaveDelta (under e.mu).
func (p *peer) sendHave(_ cid.Cid, m wire.Message) { p.send(m) }

// haveLater notes that index's Have is due at this WAN peer (under e.mu):
// the first note in a while starts the timer; when it fires the peer gets
// one whole Have per due index instead of a HaveDelta per batch of new
// positions. Across a site's uplink each small frame costs a packet of its
// own, and a WAN peer rarely needs to know at once.
func (p *peer) haveLater(index cid.Cid) {
	if p.haveDue == nil {
		p.haveDue = map[cid.Cid]bool{}
	}
	p.haveDue[index] = true
	if p.haveTimer != nil {
		return
	}
	e := p.e
	p.haveTimer = time.AfterFunc(e.cfg.WANHaveDelay, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for id := range p.haveDue {
			if sv := e.served[id]; sv != nil && p.ready {
				p.sendHave(id, sv.have())
			}
		}
		clear(p.haveDue)
		p.haveTimer = nil
	})
}

// want sends a Want for piece of d's index and records it.
func (p *peer) want(d *Download, piece int) wire.RequestID {
	p.mu.Lock()
	req := p.request(&outWant{id: d.ix.ID(piece), d: d, piece: piece, maxChunk: d.ix.Params.Max}, d.id, piece)
	p.mu.Unlock()
	p.wake()
	return req
}

// wantObject sends a Want for object id with no context (FetchObject),
// bounding the object by maxSize, unless the peer has Config.MaxPeerWants
// of this node's Wants unanswered already (a peer's limit, which this
// node assumes is its own): then it sends nothing and returns false.
func (p *peer) wantObject(id cid.Cid, maxSize int) (wire.RequestID, <-chan objResult, bool) {
	ch := make(chan objResult, 1)
	p.mu.Lock()
	if len(p.outgoing) >= p.e.cfg.MaxPeerWants {
		p.mu.Unlock()
		return 0, nil, false
	}
	req := p.request(&outWant{id: id, maxChunk: maxSize, obj: ch}, cid.Undef, 0)
	p.mu.Unlock()
	p.wake()
	return req, ch, true
}

// request records ow under a request ID no unanswered Want of ours uses
// and queues its Want (under p.mu).
func (p *peer) request(ow *outWant, index cid.Cid, pos int) wire.RequestID {
	for {
		p.nextReq++
		if p.outgoing[p.nextReq] == nil {
			break
		}
	}
	req := p.nextReq
	p.outgoing[req] = ow
	p.ctrl = append(p.ctrl, &wire.Want{Req: req, CID: ow.id, Index: index, Position: pos})
	return req
}

// wake tells the writer that control frames wait.
func (p *peer) wake() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// cancelWant sends a Cancel for req, if it is still unanswered; its
// answer will be dropped (a Block is still verified).
func (p *peer) cancelWant(req wire.RequestID) {
	p.mu.Lock()
	ow := p.outgoing[req]
	if ow == nil || ow.cancelled {
		p.mu.Unlock()
		return
	}
	ow.cancelled = true
	p.ctrl = append(p.ctrl, &wire.Cancel{Req: req})
	p.mu.Unlock()
	p.wake()
}

// stallWriter closes the connection when one write to it blocks longer
// than the timeout (a peer that stopped reading).
type stallWriter struct {
	p       *peer
	timeout time.Duration
}

func (w stallWriter) Write(b []byte) (int, error) {
	t := time.AfterFunc(w.timeout, func() { w.p.close(fmt.Errorf("exchange: write to %s blocked for %v", w.p.id, w.timeout)) })
	n, err := w.p.c.Write(b)
	t.Stop()
	return n, err
}

// run is the connection: handshake, then the reader loop, with the server
// and the writer beside it.
func (p *peer) run(ctx context.Context) error {
	defer p.close(io.EOF)
	stop := context.AfterFunc(ctx, func() { p.close(ctx.Err()) })
	defer stop()

	r := wire.NewReader(p.c, wire.FrameLimitFor(p.e.cfg.MaxChunk))
	w := wire.NewWriter(stallWriter{p, p.e.cfg.WriteTimeout}, 0)
	t := time.AfterFunc(p.e.cfg.HandshakeTimeout, func() { p.close(errors.New("handshake timed out")) })
	var features uint32
	if p.e.cfg.NoShare {
		features |= wire.NoShare
	}
	hello, err := wire.Handshake(r, w, features)
	t.Stop()
	if err != nil {
		return p.streamErr(err, "handshake")
	}
	p.noShare = hello.Features&wire.NoShare != 0

	ft := p.watchFrames(r)
	defer ft.Stop()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.serve() }()
	go func() { defer wg.Done(); p.write(w) }()
	defer func() {
		p.close(io.EOF) // ends the server and the writer
		wg.Wait()
	}()

	p.e.mu.Lock()
	p.ready = true
	for _, sv := range p.e.served {
		p.sendHave(sv.id, sv.have())
	}
	for _, d := range p.e.downloads {
		d.post(event{kind: evAdd, p: p})
	}
	p.e.mu.Unlock()

	for {
		m, err := r.Read()
		if err != nil {
			return p.streamErr(err, "read")
		}
		if err := p.handle(m); err != nil {
			return err
		}
	}
}

// watchFrames bounds the time each frame from the peer may take
// (Config.FrameTimeout, MinFrameRate): once it runs out the peer is
// disconnected as misbehaving. Without it a peer that sends half a frame
// and stalls would hold the stream, its goroutines and its buffer until it
// hung up, since a download's stall detection covers only the Wants of a
// download in progress. Stop the returned timer when the reader ends.
func (p *peer) watchFrames(r *wire.Reader) *time.Timer {
	cfg := p.e.cfg
	var limit atomic.Int64 // the deadline in force, for the log line
	t := time.AfterFunc(time.Hour, func() {
		p.misbehave("stalled in the middle of a frame for %v", time.Duration(limit.Load()))
	})
	t.Stop()
	r.Watch(func(n int) {
		d := cfg.FrameTimeout
		if n > 0 {
			d += time.Duration(n) * time.Second / time.Duration(cfg.MinFrameRate)
		}
		limit.Store(int64(d))
		t.Reset(d)
	}, func() { t.Stop() })
	return t
}

// streamErr sorts an error of the stream: a wire error is misbehaviour,
// anything else (end of stream, reset, our own close) just ends it.
func (p *peer) streamErr(err error, op string) error {
	if cause := context.Cause(p.ctx); cause != nil {
		if errors.Is(cause, ErrMisbehaved) {
			return cause
		}
		return nil
	}
	if errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrUnknownKind) || errors.Is(err, wire.ErrBadBlock) {
		return p.misbehave("%s: %v", op, err)
	}
	return nil
}

// handle acts on one message from the peer.
func (p *peer) handle(m wire.Message) error {
	e := p.e
	switch m := m.(type) {
	case *wire.Hello:
		return p.misbehave("a second hello")

	case *wire.Have:
		e.mu.Lock()
		defer e.mu.Unlock()
		if sv := e.served[m.Index]; sv != nil {
			if err := m.Check(len(sv.ix.Chunks)); err != nil {
				return p.misbehave("%v", err)
			}
		}
		h := p.haves[m.Index]
		if h == nil {
			if len(p.haves) >= e.cfg.MaxPeerIndexes {
				return p.misbehave("have for a %dth index, limit %d", len(p.haves)+1, e.cfg.MaxPeerIndexes)
			}
			if p.haveBytes+len(m.Bitmap) > e.cfg.MaxPeerHaveBytes {
				return p.misbehave("haves of more than %d bitmap bytes", e.cfg.MaxPeerHaveBytes)
			}
			h = &peerHave{}
			p.haves[m.Index] = h
		} else if h.n != m.Count {
			return p.misbehave("have for %s of %d positions after one of %d", m.Index, m.Count, h.n)
		}
		p.haveBytes += len(m.Bitmap) - len(h.bitmap)
		h.n = m.Count
		h.bitmap = append(h.bitmap[:0], m.Bitmap...)
		h.count = popcount(h.bitmap)
		if d := e.downloads[m.Index]; d != nil {
			d.post(event{kind: evBitmap, p: p, bitmap: append([]byte(nil), h.bitmap...), full: h.count == h.n})
		}

	case *wire.HaveDelta:
		e.mu.Lock()
		defer e.mu.Unlock()
		h := p.haves[m.Index]
		if h == nil {
			return p.misbehave("have-delta for %s before a have", m.Index)
		}
		if err := m.Check(h.n); err != nil {
			return p.misbehave("%v", err)
		}
		var added []int
		for _, q := range m.Positions {
			if h.bitmap[q/8]&(0x80>>(q%8)) == 0 {
				h.bitmap[q/8] |= 0x80 >> (q % 8)
				h.count++
				added = append(added, int(q))
			}
		}
		if d := e.downloads[m.Index]; d != nil && len(added) > 0 {
			d.post(event{kind: evHas, p: p, positions: added, full: h.count == h.n})
		}

	case *wire.Want:
		p.mu.Lock()
		if len(p.incoming) >= e.cfg.MaxPeerWants {
			p.mu.Unlock()
			return p.misbehave("more than %d unanswered wants", e.cfg.MaxPeerWants)
		}
		if p.incoming[m.Req] != nil {
			p.mu.Unlock()
			return p.misbehave("want %d reuses the ID of an unanswered want", m.Req)
		}
		iw := &inWant{req: m.Req, id: m.CID, index: m.Index, pos: m.Position}
		p.incoming[m.Req] = iw
		p.mu.Unlock()
		p.wantsIn <- iw // room for MaxPeerWants, which bounds incoming

	case *wire.Cancel:
		// A Cancel may cross the answer on the wire: one for a Want
		// answered already is no error.
		p.mu.Lock()
		if iw := p.incoming[m.Req]; iw != nil {
			iw.cancelled.Store(true)
		}
		p.mu.Unlock()

	case *wire.Block:
		ow, err := p.answered(m.Req, m.CID, "block")
		if err != nil {
			return err
		}
		if err := p.e.down.take(p.ctx, len(m.Object)); err != nil {
			return err
		}
		decode := wire.DecodeBlock
		if ow.d != nil && ow.d.cfg.DeliverChecks {
			decode = wire.ExpandBlock // deliver hashes it
		}
		data, err := decode(nil, m, ow.id, ow.maxChunk)
		if err != nil {
			if ow.d != nil {
				ow.d.post(event{kind: evBad, p: p, req: m.Req, piece: ow.piece})
			}
			err = p.misbehave("block for request %d (%s): %v", m.Req, ow.what(), err)
			if ow.obj != nil {
				ow.obj <- objResult{err: err}
			}
			return err
		}
		if m.Object[0] == object.KindRaw {
			data = append([]byte(nil), data...) // it aliases the Reader's buffer
		}
		if ow.obj != nil {
			ow.obj <- objResult{data: data}
			return nil
		}
		ow.d.post(event{kind: evBlock, p: p, req: m.Req, piece: ow.piece, data: data})

	case *wire.DontHave:
		ow, err := p.answered(m.Req, m.CID, "dont-have")
		if err != nil {
			return err
		}
		switch {
		case ow.obj != nil:
			ow.obj <- objResult{err: fmt.Errorf("%s: %w", ow.what(), ErrNotHeld)}
		case !ow.cancelled:
			ow.d.post(event{kind: evDontHave, p: p, req: m.Req, piece: ow.piece})
		}
	}
	return nil
}

// answered matches an answer to this node's unanswered Want and forgets
// the Want; an answer that matches none is misbehaviour.
func (p *peer) answered(req wire.RequestID, id cid.Cid, what string) (*outWant, error) {
	p.mu.Lock()
	ow := p.outgoing[req]
	if ow != nil && ow.id.Equals(id) {
		delete(p.outgoing, req)
		p.mu.Unlock()
		return ow, nil
	}
	p.mu.Unlock()
	if ow == nil {
		return nil, p.misbehave("unrequested %s: request %d names no unanswered want", what, req)
	}
	return nil, p.misbehave("unrequested %s: request %d is for %s, not %s", what, req, ow.id, id)
}

// serve answers the peer's Wants in order, from the Provider.
func (p *peer) serve() {
	for {
		var iw *inWant
		select {
		case iw = <-p.wantsIn:
		case <-p.ctx.Done():
			return
		}
		a := answer{req: iw.req, id: iw.id}
		if !iw.cancelled.Load() {
			obj, err := p.e.object(p.ctx, iw)
			switch {
			case err == nil && len(obj) > 0 && object.Known(obj[0]):
				if obj[0] == object.KindRaw && (p.class != sched.LAN || p.e.cfg.CompressLAN) {
					obj = object.Encode(make([]byte, 0, len(obj)), obj[1:])
				}
				a.obj = obj
			case err == nil:
				p.e.log.Error("exchange: provider returned no valid object", "object", iw.id.String())
			case !errors.Is(err, ErrNotHeld) && p.ctx.Err() == nil:
				p.e.log.Warn("exchange: cannot serve object", "object", iw.id.String(), "peer", p.id, "err", err)
			}
		}
		// The Want counts as answered from here: the peer cannot send
		// another before it reads this answer, which is written later.
		p.mu.Lock()
		delete(p.incoming, iw.req)
		p.mu.Unlock()
		select {
		case p.answers <- a:
		case <-p.ctx.Done():
			return
		}
	}
}

// write sends control frames first, then answers, flushing when there is
// nothing more to send right away.
func (p *peer) write(w *wire.Writer) {
	var batch []wire.Message
	fail := func(err error) {
		p.close(fmt.Errorf("exchange: write to %s: %w", p.id, err))
	}
	for {
		p.mu.Lock()
		batch, p.ctrl = p.ctrl, batch[:0]
		p.mu.Unlock()
		for i, m := range batch {
			if err := w.Write(m); err != nil {
				fail(err)
				return
			}
			batch[i] = nil
		}
		var a answer
		select {
		case a = <-p.answers:
		default:
			if err := w.Flush(); err != nil {
				fail(err)
				return
			}
			select {
			case <-p.notify:
				continue
			case a = <-p.answers:
			case <-p.ctx.Done():
				return
			}
		}
		if err := p.writeAnswer(w, a); err != nil {
			fail(err)
			return
		}
	}
}

func (p *peer) writeAnswer(w *wire.Writer, a answer) error {
	if a.obj != nil {
		if err := p.e.limit.take(p.ctx, len(a.obj)); err != nil {
			return err
		}
		err := w.Write(&wire.Block{Req: a.req, CID: a.id, Object: a.obj})
		if err == nil {
			p.e.servedBlocks.Add(1)
			p.e.servedBytes.Add(int64(len(a.obj)))
			return nil
		}
		if !errors.Is(err, wire.ErrFrameTooLarge) && !errors.Is(err, wire.ErrMalformed) && !errors.Is(err, wire.ErrUnknownKind) {
			return err
		}
		// Above the peer's frame limit: it cannot take this block.
	}
	return w.Write(&wire.DontHave{Req: a.req, CID: a.id})
}
