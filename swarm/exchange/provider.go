package exchange

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/store"
)

// ErrNotHeld: a Provider does not hold the object asked for. The engine
// answers the Want with DontHave; it is not an error of the peer.
var ErrNotHeld = errors.New("exchange: object not held")

// Provider is what a node serves: the stored objects of chunks (and of
// indexes, which are content-addressed the same way), and which positions
// of a release index it holds. The node implements it over its
// running slot, the slot being filled, its badger store and bundles
// ([SlotProvider], [StoreProvider], combined by [Providers]).
//
// Contract: Object returns the stored object of chunk id (chunker/object:
// a kind byte, then the payload), which decodes to exactly the chunk's
// bytes — or, for the ID of an index it holds, to the encoded index. A raw
// object is best: the engine compresses it for the peers that gain from
// that (Config.CompressLAN). An implementation that reads storage that can
// rot hashes what it read and returns an error rather than bad bytes. index and pos are the
// requester's hint (cid.Undef and 0 when there is none): where it met the
// chunk, which an implementation may use to find it but must not trust.
// A chunk not held gives an error wrapping ErrNotHeld. The returned slice
// is the engine's, which writes it once and drops it.
//
// Holding returns a bitmap over ix's positions (the wire.Have layout) of
// the chunks Object would serve, or nil when it holds none. Both methods
// are safe for concurrent use.
type Provider interface {
	Object(ctx context.Context, id cid.Cid, index cid.Cid, pos int) ([]byte, error)
	Holding(ctx context.Context, ix *chunker.Index) ([]byte, error)
}

// SlotProvider serves the chunks of one index from a slot (the running
// slot, or the slot being filled): position i is read at its offset in
// the index and hashed before it is sent. Only positions in its held set
// are served, so a slot being filled serves just what was verified and
// written (the positions the updater's Placed callback reported).
type SlotProvider struct {
	r     io.ReaderAt
	ix    *chunker.Index
	id    cid.Cid
	off   []int64
	held  *Bitmap
	where map[cid.Cid][]int32
}

var _ Provider = (*SlotProvider)(nil)

// NewSlotProvider serves ix's chunks from r. held is the set of positions
// that hold verified bytes: nil means all of them (a verified, installed
// slot); for the slot being filled pass [Engine.Held] of the release, so
// the provider serves exactly what the engine announces.
func NewSlotProvider(r io.ReaderAt, ix *chunker.Index, held *Bitmap) *SlotProvider {
	if held == nil {
		held = NewBitmap(len(ix.Chunks))
		all := make([]int, len(ix.Chunks))
		for i := range all {
			all[i] = i
		}
		held.Set(all)
	}
	sp := &SlotProvider{r: r, ix: ix, id: ix.CID(), off: ix.Offsets(), held: held,
		where: make(map[cid.Cid][]int32, len(ix.Chunks))}
	for i := range ix.Chunks {
		id := ix.ID(i)
		sp.where[id] = append(sp.where[id], int32(i))
	}
	return sp
}

// Index is the CID of the index the provider serves.
func (sp *SlotProvider) Index() cid.Cid { return sp.id }

// Object reads the chunk from a held position (the hinted one if it holds
// id), checks it against id and returns it as a raw object.
func (sp *SlotProvider) Object(ctx context.Context, id cid.Cid, index cid.Cid, pos int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := -1
	if index.Equals(sp.id) && pos >= 0 && pos < len(sp.ix.Chunks) && sp.held.Has(pos) && sp.ix.ID(pos).Equals(id) {
		p = pos
	} else {
		for _, q := range sp.where[id] {
			if sp.held.Has(int(q)) {
				p = int(q)
				break
			}
		}
	}
	if p < 0 {
		return nil, fmt.Errorf("chunk %s: %w", id, ErrNotHeld)
	}
	e := sp.ix.Chunks[p]
	buf := make([]byte, 1+int(e.Size))
	if _, err := sp.r.ReadAt(buf[1:], sp.off[p]); err != nil {
		return nil, fmt.Errorf("exchange: read chunk %d of %s: %w", p, sp.id, err)
	}
	if sp.ix.Hash.Sum(buf[1:]) != e.Digest {
		return nil, fmt.Errorf("exchange: chunk %d of %s at offset %d does not hash to %s: %w", p, sp.id, sp.off[p], id, store.ErrCorrupt)
	}
	buf[0] = object.KindRaw
	return buf, nil
}

// Holding returns the held set when ix is the provider's index.
func (sp *SlotProvider) Holding(ctx context.Context, ix *chunker.Index) ([]byte, error) {
	if len(ix.Chunks) != len(sp.ix.Chunks) || !ix.CID().Equals(sp.id) {
		return nil, nil
	}
	return sp.held.Bytes(), nil
}

// StoreProvider serves chunks held in a chunk store (the badger store, a
// bundle imported into it, memory): Get by ID, encoded as a stored object.
// With Indexes set it serves the indexes held there too.
type StoreProvider struct {
	Source store.Source
	// Indexes, if set, is asked for an ID the Source does not hold: an
	// index it holds is served as the object of its encoding (store.DB:
	// the releases a cache node kept, bundles imported).
	Indexes IndexStore
}

// IndexStore holds release indexes by their ID (store.DB). GetIndex of an
// index not held returns an error wrapping store.ErrNoIndex.
type IndexStore interface {
	GetIndex(ctx context.Context, id cid.Cid) (*chunker.Index, error)
}

var _ Provider = StoreProvider{}

// Object gets the chunk (or, with Indexes, the index) from the store as a
// raw object.
func (sp StoreProvider) Object(ctx context.Context, id cid.Cid, _ cid.Cid, _ int) ([]byte, error) {
	obj, err := sp.chunk(ctx, id)
	if err == nil {
		return obj, nil
	}
	switch {
	case errors.Is(err, store.ErrNotFound) && sp.Indexes != nil:
		ix, err := sp.Indexes.GetIndex(ctx, id)
		if errors.Is(err, store.ErrNoIndex) {
			return nil, fmt.Errorf("object %s: %w", id, ErrNotHeld)
		}
		if err != nil {
			return nil, err
		}
		return append([]byte{object.KindRaw}, ix.Encode()...), nil
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("chunk %s: %w", id, ErrNotHeld)
	}
	return nil, err
}

// chunk reads chunk id as a raw object, straight behind its kind byte when
// the store can append (store.DB: one copy of each chunk served, not two).
func (sp StoreProvider) chunk(ctx context.Context, id cid.Cid) ([]byte, error) {
	type appender interface {
		AppendChunk(ctx context.Context, dst []byte, id cid.Cid) ([]byte, error)
	}
	if a, ok := sp.Source.(appender); ok {
		return a.AppendChunk(ctx, []byte{object.KindRaw}, id)
	}
	b, err := sp.Source.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return append([]byte{object.KindRaw}, b...), nil
}

// Holding asks the store for each chunk of ix.
func (sp StoreProvider) Holding(ctx context.Context, ix *chunker.Index) ([]byte, error) {
	m := NewBitmap(len(ix.Chunks))
	seen := make(map[cid.Cid]bool, len(ix.Chunks))
	var pos []int
	for i := range ix.Chunks {
		id := ix.ID(i)
		has, ok := seen[id]
		if !ok {
			var err error
			if has, err = sp.Source.Has(ctx, id); err != nil {
				return nil, err
			}
			seen[id] = has
		}
		if has {
			pos = append(pos, i)
		}
	}
	if len(pos) == 0 {
		return nil, nil
	}
	m.Set(pos)
	return m.Bytes(), nil
}

// Providers combines providers: Object asks each in turn until one holds
// the chunk, Holding is the union. Add and Remove may be called while the
// engine serves (a slot being filled joins, a release is garbage
// collected). The zero value is empty and ready to use.
type Providers struct {
	mu   sync.RWMutex
	list []Provider
}

var _ Provider = (*Providers)(nil)

// NewProviders returns the combination of ps.
func NewProviders(ps ...Provider) *Providers { return &Providers{list: ps} }

// Add appends p.
func (c *Providers) Add(p Provider) {
	c.mu.Lock()
	c.list = append(c.list, p)
	c.mu.Unlock()
}

// Remove removes p (compared with ==).
func (c *Providers) Remove(p Provider) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, q := range c.list {
		if q == p {
			c.list = append(c.list[:i:i], c.list[i+1:]...)
			return
		}
	}
}

func (c *Providers) snapshot() []Provider {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.list
}

// Object asks each provider in turn.
func (c *Providers) Object(ctx context.Context, id cid.Cid, index cid.Cid, pos int) ([]byte, error) {
	var first error
	for _, p := range c.snapshot() {
		obj, err := p.Object(ctx, id, index, pos)
		if err == nil {
			return obj, nil
		}
		if !errors.Is(err, ErrNotHeld) && first == nil {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}
	return nil, fmt.Errorf("chunk %s: %w", id, ErrNotHeld)
}

// Holding is the union of the providers' bitmaps.
func (c *Providers) Holding(ctx context.Context, ix *chunker.Index) ([]byte, error) {
	var out []byte
	for _, p := range c.snapshot() {
		b, err := p.Holding(ctx, ix)
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue
		}
		if out == nil {
			out = make([]byte, len(b))
		}
		for k := range min(len(b), len(out)) {
			out[k] |= b[k]
		}
	}
	return out, nil
}
