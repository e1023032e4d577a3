package node

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
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
// piece: the devices of a site ask for it at the same moment, and the
// split lets one of them take it from the origin and the others from it.
// A single delta object is asked of the origin alone: the installer
// fetches deltas through FetchDeltas.
func (s deltaSource) Fetch(ctx context.Context, path string, max int64) ([]byte, error) {
	id, ok := manifest.DeltaIndexID(path)
	if !ok {
		if s.n.origin == nil {
			return nil, fmt.Errorf("node: %s: no origin to ask: %w", path, fetch.ErrNotFound)
		}
		return s.n.origin.Fetch(ctx, path, max)
	}
	h, d, _ := chunker.ParseID(id)
	if max < 1 || max > int64(s.n.engine.MaxObject()) {
		// Too large for a Block: only the origin has it to give.
		if s.n.origin == nil {
			return nil, fmt.Errorf("node: %s of %d bytes does not fit a block and there is no origin: %w", path, max, fetch.ErrNotFound)
		}
		return s.n.origin.Fetch(ctx, path, max)
	}
	ix := pieceList(h, []chunker.Entry{{Size: uint32(max), Digest: d}})
	var out []byte
	err := s.n.fetchPieces(ctx, ix, transfer{kind: kindDeltaIndex, release: s.release}, manifest.FetchDeltaIndexFile, nil, func(_ cid.Cid, b []byte) error {
		out = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("node: %s: %w", path, err)
	}
	return out, nil
}

// FetchDeltas fetches the delta objects want of the delta index dix
// through the swarm: the download of dix's piece list, the delta objects
// in entry order.
func (s deltaSource) FetchDeltas(ctx context.Context, dix *delta.Index, want []cid.Cid, deliver func(cid.Cid, []byte) error) error {
	es := make([]chunker.Entry, len(dix.Entries))
	for i, e := range dix.Entries {
		es[i] = chunker.Entry{Size: uint32(e.Size), Digest: e.Digest}
	}
	set := make(map[cid.Cid]bool, len(want))
	for _, id := range want {
		set[id] = true
	}
	return s.n.fetchPieces(ctx, pieceList(dix.Hash, es), transfer{kind: kindDeltas, release: s.release}, manifest.FetchDelta, set, deliver)
}

// pieceList is the chunk list that stands for a set of objects in the
// swarm: its CID names them in Haves and provider records, and positions
// in it are what the have-bitmaps cover. It is never stored or sent, but
// every node builds the same one from the same signed bytes. Its
// parameters only bound the pieces' size (exchange.NewDownload checks
// Max against the engine's limit).
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

// fetchPieces downloads the objects of the piece list ix in want (nil:
// all) that the store lacks, from peers and (through originObject) the
// origin, into the store, where the node serves them to its peers, and
// hands each object of want to deliver (those the store held first). t
// says what the status reports the download as. The list stays served
// after it returns, and its CID is provided in the DHT.
func (n *Node) fetchPieces(ctx context.Context, ix *chunker.Index, t transfer, originObject func(context.Context, fetch.Fetcher, cid.Cid, int) ([]byte, error), want map[cid.Cid]bool, deliver func(cid.Cid, []byte) error) error {
	cfg := n.downloadConfig()
	cfg.OriginObject = originObject
	dl, err := n.engine.NewDownload(ctx, ix, cfg)
	if err != nil {
		return err
	}
	id := ix.CID()
	t.dl = dl
	n.track(id, t)
	defer n.track(id, transfer{})
	if err := n.fetchIntoStore(ctx, ix, dl, want, deliver); err != nil {
		return err
	}
	if err := n.host.ProvideRelease(ctx, id); err != nil && ctx.Err() == nil {
		n.log.Debug("provide", "pieces", id, "err", err)
	}
	return nil
}
