package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"

	"golang.org/x/mod/sumdb/note"
	sumtlog "golang.org/x/mod/sumdb/tlog"

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

// logFetcher reads the log of a repository through a manifest.Fetcher.
func logFetcher(f manifest.Fetcher) tlog.Fetcher {
	return func(ctx context.Context, path string, max int64) ([]byte, error) {
		b, err := f.Fetch(ctx, logPrefix+path, max)
		switch {
		case errors.Is(err, manifest.ErrNotFound):
			return nil, fmt.Errorf("%s%s: %w", logPrefix, path, fs.ErrNotExist)
		case errors.Is(err, manifest.ErrTooLarge):
			return nil, fmt.Errorf("%s%s: %w", logPrefix, path, tlog.ErrTooLarge)
		}
		return b, err
	}
}

// treeOf reads the tree a checkpoint signs. With verifiers it must be
// signed by one of them; without, the signature is not checked (Create
// has no log key; the device checks it), but the note must still be well
// formed and its text exactly a tree.
func treeOf(msg []byte, verifiers note.Verifiers) (sumtlog.Tree, error) {
	if verifiers != nil {
		cp, err := tlog.VerifyCheckpoint(msg, verifiers)
		return cp.Tree, err
	}
	if len(msg) > tlog.MaxCheckpointSize {
		return sumtlog.Tree{}, fmt.Errorf("%w: %d bytes", tlog.ErrBadCheckpoint, len(msg))
	}
	n, err := note.Open(msg, nil)
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		n, err = unverified.Note, nil
	}
	if err != nil {
		return sumtlog.Tree{}, fmt.Errorf("%w: %v", tlog.ErrBadCheckpoint, err)
	}
	tree, err := sumtlog.ParseTree([]byte(n.Text))
	if err != nil || !bytes.Equal(sumtlog.FormatTree(tree), []byte(n.Text)) {
		return sumtlog.Tree{}, fmt.Errorf("%w: text is not a tree", tlog.ErrBadCheckpoint)
	}
	return tree, nil
}

// checkLog proves, through fetch, that the targets record is in the
// checkpoint's tree, that its entry bundle holds it, and that every tile
// of the tree is authentic; it returns the files read, as repository
// paths.
func checkLog(ctx context.Context, fetch tlog.Fetcher, checkpoint []byte, verifiers note.Verifiers, record []byte) (*logSlice, error) {
	tree, err := treeOf(checkpoint, verifiers)
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w", logPrefix, tlog.CheckpointPath, err)
	}
	rd := tlog.NewReader(fetch, verifiers)
	idx, err := rd.ProveInclusion(ctx, tree, record)
	if err != nil {
		return nil, err
	}
	rec, err := rd.Record(ctx, tree, idx)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(rec, record) {
		return nil, fmt.Errorf("%w: entry %d holds another record", tlog.ErrCorrupt, idx)
	}
	if err := authenticateTiles(ctx, fetch, tree); err != nil {
		return nil, err
	}
	ls := &logSlice{tree: tree, index: idx, files: map[string][]byte{}}
	for _, p := range logPaths(tree, record, idx) {
		_, limit, err := classify(p)
		if err != nil {
			return nil, err
		}
		b, err := fetch(ctx, p[len(logPrefix):], limit)
		if err != nil {
			return nil, err
		}
		ls.files[p] = b
	}
	return ls, nil
}

// collectLog returns the log files for a bundle of targets version
// version, or nil when the repository has no log.
func collectLog(ctx context.Context, f manifest.Fetcher, version int64, targets []byte) (*logSlice, error) {
	cp, err := f.Fetch(ctx, logPrefix+tlog.CheckpointPath, tlog.MaxCheckpointSize)
	if errors.Is(err, manifest.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	record, err := targetsRecord(version, targets)
	if err != nil {
		return nil, err
	}
	ls, err := checkLog(ctx, logFetcher(f), cp, nil, record)
	if err != nil {
		return nil, fmt.Errorf("bundle: transparency log: targets version %d: %w (use NoLog to leave the log out)", version, err)
	}
	return ls, nil
}

// authenticateTiles reads every hash of every tile of tree through a
// hash reader that checks tiles against the tree hash, so a damaged tile
// anywhere is found now, not by the device that needs it later.
func authenticateTiles(ctx context.Context, fetch tlog.Fetcher, tree sumtlog.Tree) error {
	tr := &tileReader{ctx: ctx, fetch: fetch}
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
	fetch tlog.Fetcher
	err   error // a fetch failure, to tell it from bad tile data
}

func (r *tileReader) Height() int { return tlog.TileHeight }

func (r *tileReader) ReadTiles(tiles []sumtlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		want := int64(t.W) * sumtlog.HashSize
		b, err := r.fetch(r.ctx, t.Path(), want)
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
