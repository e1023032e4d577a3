package tlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
)

// A Slice is the part of a log that proves, with nothing else, that one
// record is an entry of the checkpoint's tree and that any older tree a
// reader remembers is a prefix of it: the checkpoint, every tile of the
// tree (a consistency proof from an older tree reads tiles along that
// tree's right edge, which whoever cuts the slice cannot know), the
// lookup shard that finds the record and the entry bundle that holds it.
// Offline bundles and gossip announcements carry one, so a device with no
// route to the log can run the same Reader checks on it.
type Slice struct {
	// Tree is the tree the checkpoint states.
	Tree tlog.Tree
	// Index is the record's entry.
	Index int64
	// Files maps paths inside the log directory ("checkpoint",
	// "lookup/3f", "tile/8/0/000", "tile/8/data/000.p/2") to their bytes.
	Files map[string][]byte
}

var lookupPathRE = regexp.MustCompile(`^lookup/[0-9a-f]{2}$`)

// PathLimit checks p, a path inside a log directory, against the files a
// slice may hold — the checkpoint, a lookup shard, a hash tile or entry
// bundle of height TileHeight in its canonical name — and returns the
// largest size a file at p may have: MaxCheckpointSize, MaxLookupShardSize,
// 32 bytes per hash of a tile, and the most W entries can take in a
// bundle. Anything else in a log directory (the publisher's lock and
// journal, other tile heights) is an error, which does not repeat p.
func PathLimit(p string) (int64, error) {
	switch {
	case p == CheckpointPath:
		return MaxCheckpointSize, nil
	case lookupPathRE.MatchString(p):
		return MaxLookupShardSize, nil
	case strings.HasPrefix(p, "tile/"):
		t, err := tlog.ParseTilePath(p)
		if err != nil || t.H != TileHeight || t.Path() != p {
			return 0, fmt.Errorf("not a tile of height %d", TileHeight)
		}
		if t.L < 0 {
			return maxBundleSize(t.W), nil
		}
		return int64(t.W) * tlog.HashSize, nil
	}
	return 0, fmt.Errorf("not a file of a log slice (checkpoint, lookup/XX, tile/%d/...)", TileHeight)
}

// slicePaths lists the files of the slice for the record at entry idx of
// tree, sorted.
func slicePaths(tree tlog.Tree, record []byte, idx int64) []string {
	ps := []string{CheckpointPath, lookupShard(tlog.RecordHash(record))}
	for _, t := range tlog.NewTiles(TileHeight, 0, tree.N) {
		ps = append(ps, t.Path())
		if t.L == 0 && t.N == idx>>TileHeight {
			ps = append(ps, dataTile(t).Path())
		}
	}
	sort.Strings(ps)
	return ps
}

// ReadSlice reads the slice for record from the log f serves, whose
// checkpoint states tree (the caller got tree from that checkpoint,
// verified or not), and checks everything in it but the checkpoint's
// signature: the lookup shard finds the record, an inclusion proof puts it
// in tree, the entry bundle holds it, and every tile of tree hashes to
// tree. A tree of more than maxEntries entries is refused (ErrTooLarge)
// before any file is read: a checkpoint may claim any size, and a slice
// holds every tile. Other errors wrap ErrNotFound (the record is not in
// tree), ErrCorrupt (files that do not add up to tree), ErrBadCheckpoint,
// or a fetch error of a missing file (fetch.ErrNotFound).
func ReadSlice(ctx context.Context, f fetch.Fetcher, tree tlog.Tree, record []byte, maxEntries int64) (*Slice, error) {
	if tree.N > maxEntries {
		return nil, fmt.Errorf("%w: a log of %d entries; a slice holds every tile of a log of at most %d", ErrTooLarge, tree.N, maxEntries)
	}
	m := newMemo(f)
	msg, err := m.Fetch(ctx, CheckpointPath, MaxCheckpointSize)
	if err != nil {
		return nil, err
	}
	stated, err := UnverifiedCheckpoint(msg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CheckpointPath, err)
	}
	if stated != tree {
		return nil, fmt.Errorf("%w: %s states a tree of %d entries (%v), not the tree of %d entries (%v) the record was proven in", ErrCorrupt, CheckpointPath, stated.N, stated.Hash, tree.N, tree.Hash)
	}
	r := NewReader(m, nil)
	idx, err := r.ProveInclusion(ctx, tree, record)
	if err != nil {
		return nil, err
	}
	rec, err := r.Record(ctx, tree, idx)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(rec, record) {
		return nil, fmt.Errorf("%w: entry %d holds another record", ErrCorrupt, idx)
	}
	if err := authenticateTiles(ctx, m, tree); err != nil {
		return nil, err
	}
	s := &Slice{Tree: tree, Index: idx, Files: map[string][]byte{}}
	for _, p := range slicePaths(tree, record, idx) {
		limit, err := PathLimit(p)
		if err != nil {
			return nil, err
		}
		b, err := m.Fetch(ctx, p, limit)
		if err != nil {
			return nil, err
		}
		s.Files[p] = b
	}
	return s, nil
}

// authenticateTiles reads every hash of every tile of tree through a hash
// reader that checks tiles against the tree hash, so a damaged tile
// anywhere is found now, not by the reader of the slice that needs it.
func authenticateTiles(ctx context.Context, f fetch.Fetcher, tree tlog.Tree) error {
	tr := newTileReader(ctx, f)
	hr := tlog.TileHashReader(tree, tr)
	for _, t := range tlog.NewTiles(TileHeight, 0, tree.N) {
		idx := make([]int64, t.W)
		for j := range idx {
			idx[j] = tlog.StoredHashIndex(t.L*TileHeight, t.N<<TileHeight+int64(j))
		}
		if _, err := hr.ReadHashes(idx); err != nil {
			if tr.err != nil || ctx.Err() != nil {
				return err
			}
			return fmt.Errorf("%w: %s does not match the tree of %d entries: %v", ErrCorrupt, t.Path(), tree.N, err)
		}
	}
	return nil
}

// UnverifiedCheckpoint returns the tree a checkpoint note states without
// checking its signature. The note must still be well formed, at most
// MaxCheckpointSize bytes, and its text exactly a tree. Errors wrap
// ErrBadCheckpoint. Nothing a device relies on may come from here.
func UnverifiedCheckpoint(msg []byte) (tlog.Tree, error) {
	if len(msg) > MaxCheckpointSize {
		return tlog.Tree{}, fmt.Errorf("%w: %d bytes, limit %d", ErrBadCheckpoint, len(msg), MaxCheckpointSize)
	}
	n, err := note.Open(msg, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		n, err = unverified.Note, nil
	}
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil || !bytes.Equal(tlog.FormatTree(tree), []byte(n.Text)) {
		return tlog.Tree{}, fmt.Errorf("%w: text is not exactly a tree", ErrBadCheckpoint)
	}
	return tree, nil
}

// memo is a fetcher that keeps what it fetched, so a slice's files are
// read once however many checks read them.
type memo struct {
	f   fetch.Fetcher
	mu  sync.Mutex
	got map[string][]byte
}

func newMemo(f fetch.Fetcher) *memo { return &memo{f: f, got: map[string][]byte{}} }

func (m *memo) Fetch(ctx context.Context, p string, maxBytes int64) ([]byte, error) {
	m.mu.Lock()
	b, ok := m.got[p]
	m.mu.Unlock()
	if ok {
		if int64(len(b)) > maxBytes {
			return nil, fmt.Errorf("%s: %w: %d bytes, at most %d", p, ErrTooLarge, len(b), maxBytes)
		}
		return b, nil
	}
	b, err := m.f.Fetch(ctx, p, maxBytes)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.got[p] = b
	m.mu.Unlock()
	return b, nil
}
