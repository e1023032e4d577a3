package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// A bundle carries the part of the transparency log that a device needs
// to prove, offline, that the targets version it verified is logged and
// that the log it saw before is a prefix of this one: the checkpoint,
// every tile of the checkpoint's tree (consistency proofs from any older
// tree read tiles of the newer one), the lookup shard that finds the
// targets record, and the entry bundle that holds it.

// logSlice is the log part of a bundle.
type logSlice struct {
	tree  sumtlog.Tree
	index int64             // entry of the targets record
	files map[string][]byte // by repository path ("log/...")
}

// targetsRecord is the log record of a targets version, as
// tlog.Publisher appends it: no channel, since one targets file serves
// the whole repository.
func targetsRecord(version int64, targets []byte) ([]byte, error) {
	return tlog.TargetsOf("", version, targets).Record()
}

// logPaths lists the log files a bundle carries for the record at entry
// idx of tree, as repository paths, sorted.
func logPaths(tree sumtlog.Tree, record []byte, idx int64) []string {
	h := sumtlog.RecordHash(record)
	ps := []string{
		logPrefix + tlog.CheckpointPath,
		logPrefix + fmt.Sprintf("lookup/%02x", h[0]),
	}
	for _, t := range sumtlog.NewTiles(tlog.TileHeight, 0, tree.N) {
		ps = append(ps, logPrefix+t.Path())
		if t.L == 0 && t.N == idx>>tlog.TileHeight {
			t.L = -1
			ps = append(ps, logPrefix+t.Path())
		}
	}
	sort.Strings(ps)
	return ps
}

// proveUnsigned proves record is in the tree that checkpoint states,
// without checking the checkpoint's signature: Create has no log key, and
// Verify without LogKeys checks the log for consistency only. It returns
// the tree and the record's index.
func proveUnsigned(ctx context.Context, lf fetch.Fetcher, checkpoint []byte, record []byte) (sumtlog.Tree, int64, error) {
	tree, err := manifest.UnverifiedCheckpoint(checkpoint)
	if err != nil {
		return sumtlog.Tree{}, 0, fmt.Errorf("%s%s: %w", logPrefix, tlog.CheckpointPath, err)
	}
	idx, err := tlog.NewReader(lf, nil).ProveInclusion(ctx, tree, record)
	if err != nil {
		return sumtlog.Tree{}, 0, err
	}
	return tree, idx, nil
}

// sliceLog checks, through lf (rooted at the log directory), what a bundle needs beyond the
// inclusion proof of record at entry idx of tree (which the caller has
// made): that its entry bundle holds it and that every tile of the tree is
// authentic. It returns the log files a bundle carries, by repository
// path.
func sliceLog(ctx context.Context, lf fetch.Fetcher, tree sumtlog.Tree, record []byte, idx int64) (*logSlice, error) {
	// The tree may come from an unsigned checkpoint, and an inclusion
	// proof reads only a few tiles of a tree of any size. A bundle holds
	// at most maxEntries entries, so at most that many level-0 tiles:
	// refuse a larger tree before walking (and allocating for) its tiles.
	if tree.N > int64(maxEntries)<<tlog.TileHeight {
		return nil, fmt.Errorf("%w: a log of %d entries has more tiles than a bundle may hold (%d entries)", ErrMalformed, tree.N, maxEntries)
	}
	rec, err := tlog.NewReader(lf, nil).Record(ctx, tree, idx)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(rec, record) {
		return nil, fmt.Errorf("%w: entry %d holds another record", tlog.ErrCorrupt, idx)
	}
	if err := authenticateTiles(ctx, lf, tree); err != nil {
		return nil, err
	}
	ls := &logSlice{tree: tree, index: idx, files: map[string][]byte{}}
	for _, p := range logPaths(tree, record, idx) {
		_, limit, err := classify(p)
		if err != nil {
			return nil, err
		}
		b, err := lf.Fetch(ctx, p[len(logPrefix):], limit)
		if err != nil {
			return nil, err
		}
		ls.files[p] = b
	}
	return ls, nil
}

// collectLog returns the log files for a bundle of targets version
// version, or nil when the repository has no log.
func collectLog(ctx context.Context, f fetch.Fetcher, version int64, targets []byte) (*logSlice, error) {
	cp, err := f.Fetch(ctx, logPrefix+tlog.CheckpointPath, tlog.MaxCheckpointSize)
	if errors.Is(err, fetch.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	record, err := targetsRecord(version, targets)
	if err != nil {
		return nil, err
	}
	lf := fetch.Sub(f, tlog.RepoDir)
	tree, idx, err := proveUnsigned(ctx, lf, cp, record)
	var ls *logSlice
	if err == nil {
		ls, err = sliceLog(ctx, lf, tree, record, idx)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle: transparency log: targets version %d: %w (use NoLog to leave the log out)", version, err)
	}
	return ls, nil
}

// authenticateTiles reads every hash of every tile of tree through a
// hash reader that checks tiles against the tree hash, so a damaged tile
// anywhere is found now, not by the device that needs it later.
func authenticateTiles(ctx context.Context, lf fetch.Fetcher, tree sumtlog.Tree) error {
	tr := &tileReader{ctx: ctx, fetch: lf}
	hr := sumtlog.TileHashReader(tree, tr)
	for _, t := range sumtlog.NewTiles(tlog.TileHeight, 0, tree.N) {
		idx := make([]int64, t.W)
		for j := range idx {
			idx[j] = sumtlog.StoredHashIndex(t.L*tlog.TileHeight, t.N<<tlog.TileHeight+int64(j))
		}
		if _, err := hr.ReadHashes(idx); err != nil {
			if tr.err != nil {
				return tr.err
			}
			return fmt.Errorf("%w: %s%s does not match the tree of %d entries: %v", tlog.ErrCorrupt, logPrefix, t.Path(), tree.N, err)
		}
	}
	return nil
}

// tileReader reads tiles for sumtlog.TileHashReader.
type tileReader struct {
	ctx   context.Context
	fetch fetch.Fetcher
	err   error // a fetch failure, to tell it from bad tile data
}

func (r *tileReader) Height() int { return tlog.TileHeight }

func (r *tileReader) ReadTiles(tiles []sumtlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		want := int64(t.W) * sumtlog.HashSize
		b, err := r.fetch.Fetch(r.ctx, t.Path(), want)
		if err != nil {
			r.err = err
			return nil, err
		}
		if int64(len(b)) != want {
			return nil, fmt.Errorf("tile %s: %d bytes, want %d", t.Path(), len(b), want)
		}
		out[i] = b
	}
	return out, nil
}

func (r *tileReader) SaveTiles([]sumtlog.Tile, [][]byte) {}
