package tlog

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
)

// Reader verifies a log it reads through a fetch.Fetcher rooted at the log
// directory (paths such as "checkpoint" or "tile/8/0/000"; for a
// repository, fetch.Sub(f, RepoDir)): checkpoints against trusted keys,
// inclusion and consistency proofs against signed trees. All tile data is
// authenticated against the tree in question before use, so the fetcher
// (a mirror, a peer, a USB stick) need not be trusted. A log file the
// fetcher does not have wraps fetch.ErrNotFound.
type Reader struct {
	fetch     fetch.Fetcher
	verifiers note.Verifiers
}

// NewReader returns a Reader; verifiers holds the trusted log keys (see
// NewVerifiers).
func NewReader(f fetch.Fetcher, verifiers note.Verifiers) *Reader {
	return &Reader{fetch: f, verifiers: verifiers}
}

// Checkpoint fetches and verifies the log's current checkpoint.
func (r *Reader) Checkpoint(ctx context.Context) (Checkpoint, error) {
	msg, err := r.fetch.Fetch(ctx, CheckpointPath, MaxCheckpointSize)
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return Checkpoint{}, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
		}
		return Checkpoint{}, err
	}
	return VerifyCheckpoint(msg, r.verifiers)
}

// Check is what a device that requires the log does before installing: it
// fetches and verifies the current checkpoint, checks that it and last (the
// tree the device remembered, the zero Tree the first time) are views of one
// log, and proves record is in the current tree. It returns the checkpoint
// and the record's index. The device should then remember whichever of last
// and the checkpoint's tree is larger.
func (r *Reader) Check(ctx context.Context, last tlog.Tree, record []byte) (Checkpoint, int64, error) {
	cp, err := r.Checkpoint(ctx)
	if err != nil {
		return Checkpoint{}, 0, err
	}
	if err := r.CheckConsistency(ctx, last, cp.Tree); err != nil {
		return Checkpoint{}, 0, err
	}
	i, err := r.ProveInclusion(ctx, cp.Tree, record)
	if err != nil {
		return Checkpoint{}, 0, err
	}
	return cp, i, nil
}

// ProveInclusion proves that record is an entry of tree (which the caller
// took from a verified checkpoint) and returns its index. It finds the
// index through the lookup shard, then checks an inclusion proof built from
// tiles authenticated against tree. A record that is not in the tree gives
// ErrNotFound; stored data that does not add up gives ErrCorrupt.
func (r *Reader) ProveInclusion(ctx context.Context, tree tlog.Tree, record []byte) (int64, error) {
	if err := checkRecordSize(record); err != nil {
		return 0, err
	}
	h := tlog.RecordHash(record)
	shard := lookupShard(h)
	data, err := r.fetch.Fetch(ctx, shard, MaxLookupShardSize)
	if errors.Is(err, fetch.ErrNotFound) {
		return 0, fmt.Errorf("%w: record %x: no lookup shard %s", ErrNotFound, h[:8], shard)
	}
	if err != nil {
		return 0, err
	}
	es, err := decodeLookup(data, h[0])
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrCorrupt, shard, err)
	}
	i, _ := slices.BinarySearchFunc(es, lookupEntry{Hash: h}, compareLookup)
	for ; i < len(es) && es[i].Hash == h; i++ {
		idx := es[i].Index
		if idx >= tree.N {
			// Appended after this tree, or left by an interrupted append.
			continue
		}
		if err := r.proveAt(ctx, tree, idx, h); err != nil {
			return 0, fmt.Errorf("record %x at entry %d (from %s): %w", h[:8], idx, shard, err)
		}
		return idx, nil
	}
	return 0, fmt.Errorf("%w: record %x in a tree of %d entries", ErrNotFound, h[:8], tree.N)
}

// proveAt proves that the entry at idx of tree hashes to h.
func (r *Reader) proveAt(ctx context.Context, tree tlog.Tree, idx int64, h tlog.Hash) error {
	tr := newTileReader(ctx, r.fetch)
	p, err := tlog.ProveRecord(tree.N, idx, tlog.TileHashReader(tree, tr))
	if err != nil {
		return tr.classify(err)
	}
	if err := tlog.CheckRecord(p, tree.N, tree.Hash, idx, h); err != nil {
		return fmt.Errorf("%w: lookup points at an entry holding another record", ErrCorrupt)
	}
	return nil
}

// CheckConsistency checks that trees a and b (each from a verified
// checkpoint, in either order) are views of one append-only log: the
// smaller must be a prefix of the larger. It reads tiles of the larger
// tree. Two different trees of one size, or a smaller tree that is not a
// prefix, give ErrInconsistent: a split view, or history rewritten.
func (r *Reader) CheckConsistency(ctx context.Context, a, b tlog.Tree) error {
	if a.N > b.N {
		a, b = b, a
	}
	if a.N < 0 {
		return fmt.Errorf("%w: tree size %d", ErrInconsistent, a.N)
	}
	if a.N == b.N {
		if a.Hash != b.Hash {
			return fmt.Errorf("%w: two trees of %d entries with hashes %v and %v", ErrInconsistent, a.N, a.Hash, b.Hash)
		}
		return nil
	}
	if a.N == 0 {
		// Every log extends the empty one, whatever hash a caller that
		// remembered nothing put in its zero Tree.
		return nil
	}
	tr := newTileReader(ctx, r.fetch)
	p, err := tlog.ProveTree(b.N, a.N, tlog.TileHashReader(b, tr))
	if err != nil {
		return fmt.Errorf("prove tree of %d entries is a prefix of tree of %d: %w", a.N, b.N, tr.classify(err))
	}
	if err := tlog.CheckTree(p, b.N, b.Hash, a.N, a.Hash); err != nil {
		return fmt.Errorf("%w: tree of %d entries (%v) is not a prefix of tree of %d entries (%v)", ErrInconsistent, a.N, a.Hash, b.N, b.Hash)
	}
	return nil
}

// Record returns entry idx of tree, checked against the tree's hash.
func (r *Reader) Record(ctx context.Context, tree tlog.Tree, idx int64) ([]byte, error) {
	if idx < 0 || idx >= tree.N {
		return nil, fmt.Errorf("%w: entry %d in a tree of %d entries", ErrNotFound, idx, tree.N)
	}
	bt := bundleFor(idx, tree.N)
	data, err := r.fetch.Fetch(ctx, bt.Path(), maxBundleSize(bt.W))
	if err != nil {
		return nil, err
	}
	recs, err := decodeBundle(data, bt.W)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, bt.Path(), err)
	}
	rec := recs[idx-bt.N<<TileHeight]
	if err := r.proveAt(ctx, tree, idx, tlog.RecordHash(rec)); err != nil {
		return nil, fmt.Errorf("entry %d from %s: %w", idx, bt.Path(), err)
	}
	return rec, nil
}

func checkRecordSize(record []byte) error {
	if len(record) == 0 || len(record) > MaxRecordSize {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrMalformedRecord, len(record), MaxRecordSize)
	}
	return nil
}

// tileReader adapts a fetch.Fetcher to tlog.TileReader. tlog's interface has no
// context, so the reader carries the one of the call it serves. Tiles that
// tlog has authenticated (SaveTiles) are kept for the rest of the call.
type tileReader struct {
	ctx   context.Context
	fetch fetch.Fetcher
	saved map[tlog.Tile][]byte
	err   error // first fetch error, to tell it from a bad tile
}

func newTileReader(ctx context.Context, f fetch.Fetcher) *tileReader {
	return &tileReader{ctx: ctx, fetch: f, saved: map[tlog.Tile][]byte{}}
}

func (r *tileReader) Height() int { return TileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if d, ok := r.saved[t]; ok {
			out[i] = d
			continue
		}
		if t.H != TileHeight || t.L < 0 || t.W < 1 || t.W > tileWidth {
			return nil, fmt.Errorf("tlog: unexpected tile request %+v", t)
		}
		want := int64(t.W) * tlog.HashSize
		d, err := r.fetch.Fetch(r.ctx, t.Path(), want)
		if err != nil {
			if !errors.Is(err, ErrTooLarge) {
				r.err = err
			}
			return nil, fmt.Errorf("tile %s: %w", t.Path(), err)
		}
		if int64(len(d)) != want {
			return nil, fmt.Errorf("tile %s: %d bytes, want %d", t.Path(), len(d), want)
		}
		out[i] = d
	}
	return out, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	for i, t := range tiles {
		r.saved[t] = data[i]
	}
}

// classify turns an error from a tlog proof function into ours: a failure
// to fetch stays what it was (the caller may retry elsewhere); anything
// else means the tiles did not match the signed tree.
func (r *tileReader) classify(err error) error {
	if r.err != nil || r.ctx.Err() != nil {
		return err
	}
	return fmt.Errorf("%w: tiles do not match the signed tree: %w", ErrCorrupt, err)
}
