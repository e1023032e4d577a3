package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/internal/atomicfile"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/store"
	"github.com/shoalnet/shoal/updater"
)

// deltaSource is the delta fetcher a device node hands its updater
// (updater.OfferOptions.Deltas): delta indexes and delta objects travel
// through the swarm as chunks do, each set of them behind a piece list
// that every device derives alike from signed bytes, so a site's devices
// trade them over the LAN and the scheduler's uplink split has each cross
// the site's uplink once (docs/deltas.md, "In the swarm").
type deltaSource struct {
	n       *Node
	release cid.Cid // the release index the deltas build, for the status
}

var _ updater.BulkDeltas = deltaSource{}

// Fetch fetches a delta index (deltas/index/CID) as a download of one
// piece (fetchOne). It serves nothing else: the installer takes a
// BulkDeltas's delta objects through FetchDeltas.
func (s deltaSource) Fetch(ctx context.Context, path string, max int64) ([]byte, error) {
	id, ok := pathID(path, "deltas/index/")
	if !ok {
		return nil, fmt.Errorf("node: %s: delta objects come through FetchDeltas: %w", path, fetch.ErrNotFound)
	}
	return s.n.fetchOne(ctx, path, id, max, transfer{kind: kindDeltaIndex, release: s.release})
}

// FetchDeltas fetches the delta objects of the delta index dix through
// the swarm, the download of dix's piece list, and hands those in want to
// deliver. It gives up (the installer then fetches the rest
// whole) when the origin does not have a delta, or when no delta arrived
// for deltaStall: no peer holds the rest, and there is no origin, or it
// is unreachable.
func (s deltaSource) FetchDeltas(ctx context.Context, dix *delta.Index, want []cid.Cid, deliver func(cid.Cid, []byte) error) error {
	set := make(map[cid.Cid]bool, len(want))
	for _, id := range want {
		set[id] = true
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stalled := fmt.Errorf("%w: no delta arrived for %v", fetch.ErrNotFound, deltaStall)
	watchdog := time.AfterFunc(deltaStall, func() { cancel(stalled) })
	defer watchdog.Stop()
	// Every delta of the list comes into the store, wanted or not (a
	// resumed install wants only those of the chunks not yet in its slot):
	// peers count this node as a wanter of the whole list, and would
	// await from it a piece of its share it never fetched.
	err := s.n.fetchPieces(ctx, deltaPieces(dix), transfer{kind: kindDeltas, release: s.release}, manifest.FetchDelta,
		func(id cid.Cid, b []byte) error {
			watchdog.Reset(deltaStall)
			if !set[id] {
				return nil
			}
			return deliver(id, b)
		})
	if err != nil {
		if c := context.Cause(ctx); c == stalled {
			err = c
		}
		return err
	}
	s.n.rememberDeltas(dix.Hash.ID(dix.Digest()))
	return nil
}

// deltaStall is how long FetchDeltas waits for the next delta before it
// leaves the rest to whole chunks (a variable for the tests).
var deltaStall = 30 * time.Second

// deltaPieces is the piece list of the delta objects of dix, in entry
// order.
func deltaPieces(dix *delta.Index) *chunker.Index {
	es := make([]chunker.Entry, len(dix.Entries))
	for i, e := range dix.Entries {
		es[i] = chunker.Entry{Size: uint32(e.Size), Digest: e.Digest}
	}
	return pieceList(dix.Hash, es)
}

// indexSource fetches release indexes (index/CID) for
// manifest.Client.FetchIndexes as downloads of one piece (fetchOne), so a
// site's devices, which all ask at the announcement, take each index
// across the uplink once.
type indexSource struct{ n *Node }

func (s indexSource) Fetch(ctx context.Context, path string, max int64) ([]byte, error) {
	id, ok := pathID(path, "index/")
	if !ok {
		return nil, fmt.Errorf("node: %s: %w", path, fetch.ErrNotFound)
	}
	return s.n.fetchOne(ctx, path, id, max, transfer{kind: kindIndex, release: id})
}

// pathID is the ID in the path DIR/CID of a repository file named by the
// CID of its bytes, when path is one (a canonical raw chunk-form CID).
func pathID(path, dir string) (cid.Cid, bool) {
	s, ok := strings.CutPrefix(path, dir)
	if !ok {
		return cid.Undef, false
	}
	id, err := cid.Decode(s)
	if err != nil || id.String() != s {
		return cid.Undef, false
	}
	if _, _, err := chunker.ParseID(id); err != nil {
		return cid.Undef, false
	}
	return id, true
}

// fetchOne fetches the repository file path, named by id and size bytes
// long (its signed length), as a download of one piece: the devices of a
// site ask for it at the same moment, and the scheduler's split lets one
// of them take it from the origin and the others from it over the LAN. A
// file too large for a Block comes from the origin. It gives up, with an
// error wrapping fetch.ErrNotFound (the caller falls back), when the
// origin does not have the file or after oneWait(size): no peer brought
// it, and there is no origin or it is unreachable.
func (n *Node) fetchOne(ctx context.Context, path string, id cid.Cid, size int64, t transfer) ([]byte, error) {
	h, d, _ := chunker.ParseID(id)
	if size < 1 || size > int64(n.engine.MaxObject()) {
		if n.origin == nil {
			return nil, fmt.Errorf("node: %s of %d bytes does not fit a block and there is no origin: %w", path, size, fetch.ErrNotFound)
		}
		return n.origin.Fetch(ctx, path, size)
	}
	wait := oneWait(size)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	origin := func(ctx context.Context, f fetch.Fetcher, id cid.Cid, max int) ([]byte, error) {
		return manifest.FetchFileByID(ctx, f, path, id, max)
	}
	var out []byte
	err := n.fetchPieces(ctx, pieceList(h, []chunker.Entry{{Size: uint32(size), Digest: d}}), t, origin, func(_ cid.Cid, b []byte) error {
		out = b
		return nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: nothing brought it in %v", fetch.ErrNotFound, wait)
	}
	if err != nil {
		return nil, fmt.Errorf("node: %s: %w", path, err)
	}
	return out, nil
}

// oneWait bounds fetchOne: oneWaitBase, plus the file's time at 32 KiB/s
// (a 9 MiB index of a 16 GiB image over a thin, shared uplink).
func oneWait(size int64) time.Duration {
	return oneWaitBase + time.Duration(size)*time.Second/(32<<10)
}

// oneWaitBase is oneWait's fixed part (a variable for the tests).
var oneWaitBase = 15 * time.Second

// pieceList is the chunk list that stands for a set of objects in the
// swarm: its CID names them in Haves and provider records, and positions
// in it are what the have-bitmaps cover. It is never stored, and no node
// needs it sent: every node builds the same one from the same signed
// bytes. Its parameters are no chunker's (Min is below MinChunkFloor: a
// delta may be a few dozen bytes, so the list would not pass
// chunker.DecodeIndex); they only bound the pieces' size
// (exchange.NewDownload checks Max against the engine's limit).
func pieceList(h chunker.Hash, es []chunker.Entry) *chunker.Index {
	ix := &chunker.Index{Hash: h, Chunks: es}
	big := uint32(chunker.MinChunkFloor)
	for _, e := range es {
		ix.Size += int64(e.Size)
		big = max(big, e.Size)
	}
	ix.Params = chunker.Params{Min: chunker.MinChunkFloor / 2, Avg: chunker.MinChunkFloor - 1, Max: int(big)}
	return ix
}

// fetchPieces downloads the objects of the piece list ix that the store
// lacks, from peers and (through originObject) the origin, into the
// store, where the node serves them to its peers, and hands each object
// of ix to deliver (those the store held first). t
// says what the status reports the download as. The list stays served
// after it returns, and its CID is provided in the DHT.
func (n *Node) fetchPieces(ctx context.Context, ix *chunker.Index, t transfer, originObject func(context.Context, fetch.Fetcher, cid.Cid, int) ([]byte, error), deliver func(cid.Cid, []byte) error) error {
	cfg := n.downloadConfig()
	cfg.OriginObject = originObject
	// A mirror may lack these files (deltas/ not copied): the caller then
	// falls back to whole chunks or to its next mirror.
	cfg.MissingEnds = true
	dl, err := n.engine.NewDownload(ctx, ix, cfg)
	if err != nil {
		return err
	}
	id := ix.CID()
	t.dl = dl
	n.track(id, t)
	defer n.track(id, transfer{})
	if err := n.fetchIntoStore(ctx, ix, dl, deliver); err != nil {
		return err
	}
	n.smu.Lock()
	n.pieces = append(slices.DeleteFunc(n.pieces, id.Equals), id)
	if len(n.pieces) > maxPieces {
		n.pieces = n.pieces[len(n.pieces)-maxPieces:]
	}
	n.smu.Unlock()
	if err := n.host.ProvideRelease(ctx, id); err != nil && ctx.Err() == nil {
		n.log.Debug("provide", "pieces", id, "err", err)
	}
	return nil
}

// maxPieces bounds the piece lists provideAll provides again.
const maxPieces = 32

// keepFromDeltas builds into the store the chunks of ix (artifact art of
// the release v) that have a delta against a release the store keeps: a
// cache node then takes the deltas across its site's uplink instead of
// the whole chunks, and serves both to the site — the deltas to devices
// on the base, the chunks to the rest. It is best effort: a chunk it does
// not build is fetched whole afterwards, and every chunk it builds is
// checked against its ID (delta.ExpandFrom).
func (n *Node) keepFromDeltas(ctx context.Context, v *manifest.Verified, art string, ix *chunker.Index) {
	base, bix := n.keptBase(ctx, v, art)
	if bix == nil {
		return
	}
	dt, _ := v.Delta(art, base)
	src := deltaSource{n, ix.CID()}
	dix, err := manifest.FetchDeltaIndex(ctx, src, dt, 0)
	if err == nil {
		err = dix.Check(bix, ix)
	}
	if err != nil {
		n.log.Warn("delta index refused; keeping whole chunks", "release", v.Release.Version, "artifact", art, "base", base, "err", err)
		return
	}
	// Every delta, even of a chunk the store holds already: the cache
	// serves the site's devices on the base, who want them all, and a
	// wanter of part of a piece list would leave the others awaiting
	// pieces it never fetches.
	want := make([]cid.Cid, len(dix.Entries))
	chunkOf := map[cid.Cid]cid.Cid{} // delta → the chunk it builds
	for i, e := range dix.Entries {
		want[i] = dix.ID(e)
		chunkOf[want[i]] = ix.ID(int(e.Pos))
	}
	img := &storeImage{ctx: ctx, db: n.db, ix: bix, off: bix.Offsets(), last: -1}
	built := 0
	err = src.FetchDeltas(ctx, dix, want, func(did cid.Cid, obj []byte) error {
		id := chunkOf[did]
		if has, err := n.db.Has(ctx, id); err != nil || has {
			return err
		}
		b, err := delta.ExpandFrom(nil, nil, id, obj, img, dix.Limits())
		if err != nil {
			n.log.Warn("delta refused; its chunk comes whole", "delta", did, "chunk", id, "err", err)
			return nil
		}
		built++
		return n.db.Put(ctx, id, b)
	})
	if err != nil && ctx.Err() == nil {
		n.log.Warn("deltas", "release", v.Release.Version, "artifact", art, "err", err)
	}
	n.log.Info("chunks built from deltas", "release", v.Release.Version, "artifact", art, "base", base, "built", built, "deltas", len(want))
}

// keptBase is the newest release of v's channel older than v that the
// store keeps (pinned as CHANNEL/VERSION/ARTIFACT) and that v lists a
// delta index from, with its index; 0 and nil when there is none.
func (n *Node) keptBase(ctx context.Context, v *manifest.Verified, art string) (uint64, *chunker.Index) {
	pins, err := n.db.Pins(ctx)
	if err != nil {
		return 0, nil
	}
	var best uint64
	var bestID cid.Cid
	prefix := v.Release.Channel + "/"
	for name, id := range pins {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		ver, a, ok := strings.Cut(rest, "/")
		b, err := strconv.ParseUint(ver, 10, 64)
		if !ok || err != nil || a != art || b >= v.Release.Version || b <= best {
			continue
		}
		if dt, ok := v.Delta(art, b); ok && dt.BaseIndex.Equals(id) {
			best, bestID = b, id
		}
	}
	if best == 0 {
		return 0, nil
	}
	bix, err := n.db.GetIndex(ctx, bestID)
	if err != nil {
		return 0, nil
	}
	return best, bix
}

// storeImage reads a kept release's image from the store's chunks, for
// the references of deltas against it. It keeps the last chunk it read:
// a reference is a run of neighbouring chunks.
type storeImage struct {
	ctx  context.Context
	db   *store.DB
	ix   *chunker.Index
	off  []int64
	last int
	buf  []byte
}

func (s *storeImage) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		o := off + int64(n)
		if o < 0 || o >= s.ix.Size {
			return n, io.EOF
		}
		i := sort.Search(len(s.ix.Chunks), func(i int) bool { return s.off[i+1] > o })
		if i != s.last {
			b, err := s.db.Get(s.ctx, s.ix.ID(i))
			if err != nil {
				return n, err
			}
			if len(b) != int(s.ix.Chunks[i].Size) {
				return n, fmt.Errorf("node: chunk %d of the base from the store: %d bytes, its index says %d", i, len(b), s.ix.Chunks[i].Size)
			}
			s.buf, s.last = b, i
		}
		n += copy(p[n:], s.buf[o-s.off[i]:])
	}
	return n, nil
}

// servedDeltasFile lists, one CID a line, the delta indexes whose deltas
// the node fetched into its store, newest last: after a restart it serves
// them again (serveDeltas), so a device that wakes later still takes them
// over the LAN. At most maxServedDeltas are kept.
const (
	servedDeltasFile = "deltas-served"
	maxServedDeltas  = 4
)

// rememberDeltas notes that the store holds the deltas of the delta index
// id (best effort: a node that forgets only stops serving them after a
// restart).
func (n *Node) rememberDeltas(id cid.Cid) {
	n.smu.Lock()
	defer n.smu.Unlock()
	p := filepath.Join(n.cfg.StoreDir(), servedDeltasFile)
	ids := readServedDeltas(p)
	ids = slices.DeleteFunc(ids, id.Equals)
	ids = append(ids, id)
	if len(ids) > maxServedDeltas {
		ids = ids[len(ids)-maxServedDeltas:]
	}
	var b strings.Builder
	for _, x := range ids {
		b.WriteString(x.String() + "\n")
	}
	if err := atomicfile.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		n.log.Warn("remember deltas", "err", err)
	}
}

func readServedDeltas(p string) []cid.Cid {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	var ids []cid.Cid
	for _, line := range strings.Fields(string(b)) {
		if id, err := cid.Decode(line); err == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// serveDeltas serves again, after a restart, the piece lists of the delta
// indexes rememberDeltas noted whose index the store still holds (what it
// holds of their deltas is asked of the store, as for any list).
func (n *Node) serveDeltas(ctx context.Context) error {
	for _, id := range readServedDeltas(filepath.Join(n.cfg.StoreDir(), servedDeltasFile)) {
		b, err := n.db.Get(ctx, id)
		if err != nil {
			continue // collected since
		}
		dix, err := delta.DecodeIndex(b)
		if err != nil || !dix.Hash.ID(dix.Hash.Sum(b)).Equals(id) {
			n.log.Warn("a remembered delta index does not decode", "id", id, "err", err)
			continue
		}
		h, d, _ := chunker.ParseID(id)
		for _, ix := range []*chunker.Index{pieceList(h, []chunker.Entry{{Size: uint32(len(b)), Digest: d}}), deltaPieces(dix)} {
			if _, err := n.engine.Serve(ctx, ix); err != nil {
				return err
			}
			n.smu.Lock()
			n.pieces = append(n.pieces, ix.CID())
			n.smu.Unlock()
		}
	}
	return nil
}
