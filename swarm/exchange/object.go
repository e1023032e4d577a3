package exchange

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/swarm/sched"
	"github.com/shoalnet/shoal/swarm/wire"
)

// ErrObjectTooLarge: FetchObject was asked for an object larger than a
// Block this node accepts can carry ([Engine.MaxObject]). No peer was
// asked; such an object (an index of a very large image) comes from the
// origin.
var ErrObjectTooLarge = errors.New("exchange: object larger than a block this node accepts")

// MaxObject is the largest object [Engine.FetchObject] fetches: the
// largest a Block within this node's frame limit carries,
// wire.FrameLimitFor(Config.MaxChunk) less 1 KiB (the Block's head), which
// is also the bound wire.DecodeBlock allows (chunker.MaxChunkCeil). With
// Config.MaxChunk = chunker.MaxChunkCeil (the node) it is 16 MiB: an
// encoded index of at most (16 MiB − 48) / 36 = 466,032 chunks; with the
// default MaxChunk, 1 MiB (29,125 chunks).
func (e *Engine) MaxObject() int { return wire.FrameLimitFor(e.cfg.MaxChunk) - 1<<10 }

// object is what the engine serves for a Want: the encoded index of an
// index it announces (an index is content-addressed like a chunk:
// chunker.Index.CID is the raw ID of its encoding), else the Provider's
// object.
func (e *Engine) object(ctx context.Context, iw *inWant) ([]byte, error) {
	e.mu.Lock()
	sv := e.served[iw.id]
	e.mu.Unlock()
	if sv != nil {
		return object.Encode(nil, sv.ix.Encode()), nil
	}
	return e.provider.Object(ctx, iw.id, iw.index, iw.pos)
}

// FetchObject fetches one object by its ID from the connected peers,
// outside any Download: a release's index, which a node with no route to
// the origin gets from the peers that announced it. An object the node
// serves itself (an index it announces or its Provider holds: a bundle
// imported) is returned without asking anyone. It asks one peer at a
// time — those that sent a Have for id first (they serve the index), LAN
// before WAN, then the others — and waits Config.ObjectTimeout for each
// answer (then cancels the Want and moves on). A DontHave moves on; a
// Block is checked with wire.DecodeBlock against id before anything else
// sees it, and a peer whose Block does not verify is disconnected and
// penalised as in a download. A Want goes only to a peer with fewer than
// Config.MaxPeerWants of this node's Wants unanswered.
//
// max bounds the object's size (for an index, its signed length); it may
// not exceed [Engine.MaxObject] (ErrObjectTooLarge). Verified bytes longer
// than max give an error wrapping fetch.ErrTooLarge (they are the object:
// every peer would send the same). When no peer delivered the object the
// error wraps fetch.ErrNotFound; when ctx ends, ctx's error. The bytes are
// the caller's.
func (e *Engine) FetchObject(ctx context.Context, id cid.Cid, max int) ([]byte, error) {
	if _, _, err := chunker.ParseID(id); err != nil {
		return nil, fmt.Errorf("exchange: fetch object: %w", err)
	}
	if max < 1 {
		return nil, fmt.Errorf("exchange: fetch object %s: size bound %d", id, max)
	}
	if max > e.MaxObject() {
		return nil, fmt.Errorf("%w: %s of up to %d bytes, limit %d (Config.MaxChunk %d)", ErrObjectTooLarge, id, max, e.MaxObject(), e.cfg.MaxChunk)
	}
	if data := e.local(ctx, id); data != nil {
		if len(data) > max {
			return nil, fmt.Errorf("exchange: object %s: %w: %d bytes, bound %d", id, fetch.ErrTooLarge, len(data), max)
		}
		return data, nil
	}
	peers := e.objectPeers(id)
	var none, failed, busy int
	for _, p := range peers {
		data, err := p.fetchObject(ctx, id, e.MaxObject(), e.cfg.ObjectTimeout)
		switch {
		case err == nil && len(data) > max:
			return nil, fmt.Errorf("exchange: object %s from %s: %w: %d bytes, bound %d", id, p.id, fetch.ErrTooLarge, len(data), max)
		case err == nil:
			return data, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, errBusy):
			busy++
		case errors.Is(err, ErrNotHeld):
			none++
		default:
			failed++
			e.log.Info("exchange: peer did not deliver an object", "object", id.String(), "peer", p.id, "err", err)
		}
	}
	return nil, fmt.Errorf("exchange: object %s: %w at any of %d peers (%d do not hold it, %d failed or timed out, %d busy)",
		id, fetch.ErrNotFound, len(peers), none, failed, busy)
}

// local is the object id as this node would serve it, checked against
// id; nil when the node does not hold it.
func (e *Engine) local(ctx context.Context, id cid.Cid) []byte {
	e.mu.Lock()
	sv := e.served[id]
	e.mu.Unlock()
	if sv != nil {
		return sv.ix.Encode()
	}
	obj, err := e.provider.Object(ctx, id, cid.Undef, 0)
	if err != nil {
		return nil
	}
	data, err := object.Decode(nil, id, obj, e.MaxObject())
	if err != nil {
		e.log.Warn("exchange: the node's own object does not verify", "object", id.String(), "err", err)
		return nil
	}
	return data
}

// objectPeers lists the ready peers in the order FetchObject asks them.
func (e *Engine) objectPeers(id cid.Cid) []*peer {
	type cand struct {
		p         *peer
		announced bool
	}
	e.mu.Lock()
	var cs []cand
	for _, p := range e.peers {
		if p.ready {
			cs = append(cs, cand{p, p.haves[id] != nil})
		}
	}
	e.mu.Unlock()
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.announced != b.announced {
			return a.announced
		}
		if a.p.class != b.p.class {
			return a.p.class == sched.LAN
		}
		return a.p.id < b.p.id
	})
	out := make([]*peer, len(cs))
	for i, c := range cs {
		out[i] = c.p
	}
	return out
}

// errBusy: the peer has as many of this node's Wants unanswered as it
// accepts.
var errBusy = errors.New("exchange: peer's want window is full")

// fetchObject asks the peer for one object and waits for its answer, at
// most timeout.
func (p *peer) fetchObject(ctx context.Context, id cid.Cid, maxSize int, timeout time.Duration) ([]byte, error) {
	req, ch, ok := p.wantObject(id, maxSize)
	if !ok {
		return nil, errBusy
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.data, r.err
	case <-p.ctx.Done():
		select {
		case r := <-ch: // answered as the connection ended (a bad block)
			return r.data, r.err
		default:
		}
		return nil, fmt.Errorf("connection ended: %w", context.Cause(p.ctx))
	case <-t.C:
		p.cancelWant(req) // the answer still comes, and is dropped
		return nil, fmt.Errorf("no answer in %v", timeout)
	case <-ctx.Done():
		p.cancelWant(req)
		return nil, ctx.Err()
	}
}

// PeerFetcher is a fetch.Fetcher over an engine's peers, for the
// repository files peers serve: "index/<cid>" (manifest.IndexPath), a
// release's index, through [Engine.FetchObject] with the caller's bound.
// Every other path is fetch.ErrNotFound: metadata travels in
// announcements, chunks in Downloads. So manifest.Client.FetchIndexes
// takes it as one more mirror, before or after the origin.
type PeerFetcher struct{ Engine *Engine }

var _ fetch.Fetcher = PeerFetcher{}

// Fetch fetches an index from the peers.
func (f PeerFetcher) Fetch(ctx context.Context, path string, maxBytes int64) ([]byte, error) {
	s, ok := strings.CutPrefix(path, "index/")
	if !ok {
		return nil, fmt.Errorf("exchange: peers serve no %s: %w", path, fetch.ErrNotFound)
	}
	id, err := cid.Decode(s)
	if err == nil && id.String() != s {
		err = errors.New("not in canonical form")
	}
	if err == nil {
		_, _, err = chunker.ParseID(id)
	}
	if err != nil {
		return nil, fmt.Errorf("exchange: %s: not an index ID (%v): %w", path, err, fetch.ErrNotFound)
	}
	if lim := f.Engine.MaxObject(); maxBytes > int64(lim) {
		return nil, fmt.Errorf("%w: %s of up to %d bytes, limit %d", ErrObjectTooLarge, path, maxBytes, lim)
	}
	return f.Engine.FetchObject(ctx, id, int(maxBytes))
}
