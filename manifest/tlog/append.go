package tlog

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/internal/atomicfile"
)

// lockName is the lock file that keeps two publishers from appending to one
// log directory at once.
const lockName = ".lock"

// journalName lists the lookup shards an append is about to change. Lookup
// lines of an append that dies before its checkpoint name indexes the next
// append will reuse for other records; the journal tells that append which
// shards to clean. It is removed once the checkpoint is written.
const journalName = ".append"

// faultHook, when set by a test, runs at each stage of Append; an error
// stops Append right there, as a crash would (nothing is cleaned up).
var faultHook func(stage string) error

func fault(stage string) error {
	if faultHook == nil {
		return nil
	}
	return faultHook(stage)
}

// Append adds records, in order, to the log in directory dir (created if
// missing; conventionally the repository's "log" directory) and returns the
// new checkpoint, signed by signer.
//
// Every record must be 1 to MaxRecordSize bytes and not already in the log
// (ErrDuplicate). Before writing, Append checks that the stored checkpoint is
// exactly what signer would sign (so the log belongs to this key) and that
// the stored tiles hash to it; old entries it rewrites into a bundle are
// checked against the tiles too, so damage is reported, not spread.
//
// Entry bundles, tiles and lookup shards are written first and the
// checkpoint last, each file atomically. A crash before the checkpoint is
// renamed leaves the old checkpoint in force; the files written for the
// lost tree are never referenced by a signed tree and the next Append
// overwrites them. Appends to one directory are serialised by a lock file.
func Append(ctx context.Context, dir string, signer note.Signer, records ...[]byte) (Checkpoint, error) {
	if len(records) == 0 {
		return Checkpoint{}, errors.New("tlog: append: no records")
	}
	hashes := make([]tlog.Hash, len(records))
	batch := make(map[tlog.Hash]int, len(records))
	for i, rec := range records {
		if err := checkRecordSize(rec); err != nil {
			return Checkpoint{}, fmt.Errorf("tlog: append record %d: %w", i, err)
		}
		hashes[i] = tlog.RecordHash(rec)
		if j, ok := batch[hashes[i]]; ok {
			return Checkpoint{}, fmt.Errorf("tlog: append: %w: records %d and %d are equal", ErrDuplicate, j, i)
		}
		batch[hashes[i]] = i
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Checkpoint{}, fmt.Errorf("tlog: append: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return Checkpoint{}, err
	}
	defer unlock()

	old, err := readOwnCheckpoint(dir, signer)
	if err != nil {
		return Checkpoint{}, err
	}
	tr := newTileReader(ctx, fetch.Dir(dir))
	oldHR := tlog.TileHashReader(old, tr)
	if old.N > 0 {
		th, err := tlog.TreeHash(old.N, oldHR)
		if err != nil {
			return Checkpoint{}, fmt.Errorf("tlog: append to %s: tiles for the stored checkpoint: %w", dir, tr.classify(err))
		}
		if th != old.Hash {
			return Checkpoint{}, fmt.Errorf("tlog: append to %s: %w: tiles hash to %v, checkpoint says %v", dir, ErrCorrupt, th, old.Hash)
		}
	}

	// Load the lookup shards this batch touches and those an interrupted
	// append touched, dropping lines for entries past the stored tree, and
	// refuse records already logged. The journal goes to disk before any
	// shard changes.
	shards := map[string][]lookupEntry{}
	load := func(p string) error {
		if _, ok := shards[p]; ok {
			return nil
		}
		es, err := readShard(dir, p, old.N)
		if err != nil {
			return err
		}
		shards[p] = es
		return nil
	}
	pending, err := readJournal(dir)
	if err != nil {
		return Checkpoint{}, err
	}
	for _, p := range pending {
		if err := load(p); err != nil {
			return Checkpoint{}, err
		}
	}
	for _, h := range hashes {
		if err := load(lookupShard(h)); err != nil {
			return Checkpoint{}, err
		}
	}
	for i, h := range hashes {
		p := lookupShard(h)
		for _, e := range shards[p] {
			if e.Hash != h {
				continue
			}
			proof, err := tlog.ProveRecord(old.N, e.Index, oldHR)
			if err == nil {
				err = tlog.CheckRecord(proof, old.N, old.Hash, e.Index, h)
			}
			if err != nil {
				return Checkpoint{}, fmt.Errorf("tlog: append to %s: %w: lookup says record %d is entry %d, proof fails: %w", dir, ErrCorrupt, i, e.Index, err)
			}
			return Checkpoint{}, fmt.Errorf("tlog: append record %d: %w: entry %d", i, ErrDuplicate, e.Index)
		}
	}

	paths := make([]string, 0, len(shards))
	for p := range shards {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	if err := atomicfile.WriteFile(filepath.Join(dir, journalName), []byte(strings.Join(paths, "\n")+"\n"), 0o644); err != nil {
		return Checkpoint{}, fmt.Errorf("tlog: append: %w", err)
	}
	if err := fault("journal"); err != nil {
		return Checkpoint{}, err
	}

	// Hashes of the new entries, kept in memory from the first stored hash
	// of the new tree on; older ones come from the authenticated tiles.
	start := tlog.StoredHashCount(old.N)
	var fresh []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		var olds []int64
		for i, x := range idx {
			switch {
			case x >= start+int64(len(fresh)):
				return nil, fmt.Errorf("tlog: hash %d not computed yet", x)
			case x >= start:
				out[i] = fresh[x-start]
			default:
				olds = append(olds, x)
			}
		}
		if len(olds) > 0 {
			got, err := oldHR.ReadHashes(olds)
			if err != nil {
				return nil, tr.classify(err)
			}
			k := 0
			for i, x := range idx {
				if x < start {
					out[i] = got[k]
					k++
				}
			}
		}
		return out, nil
	})
	for i, rec := range records {
		if i%tileWidth == 0 {
			if err := ctx.Err(); err != nil {
				return Checkpoint{}, err
			}
		}
		hs, err := tlog.StoredHashes(old.N+int64(i), rec, hr)
		if err != nil {
			return Checkpoint{}, fmt.Errorf("tlog: append record %d: %w", i, err)
		}
		fresh = append(fresh, hs...)
	}
	tree := tlog.Tree{N: old.N + int64(len(records))}
	if tree.Hash, err = tlog.TreeHash(tree.N, hr); err != nil {
		return Checkpoint{}, fmt.Errorf("tlog: append: tree hash: %w", err)
	}

	w := writer{root: dir, made: map[string]bool{}}
	for _, t := range tlog.NewTiles(TileHeight, old.N, tree.N) {
		if err := ctx.Err(); err != nil {
			return Checkpoint{}, err
		}
		data, err := tlog.ReadTileData(t, hr)
		if err != nil {
			return Checkpoint{}, fmt.Errorf("tlog: append: tile %s: %w", t.Path(), err)
		}
		if err := w.write(t.Path(), data); err != nil {
			return Checkpoint{}, err
		}
		if t.L != 0 {
			continue
		}
		recs, err := oldBundle(ctx, dir, t, old.N, hr)
		if err != nil {
			return Checkpoint{}, err
		}
		first := t.N << TileHeight
		lo := max(first-old.N, 0)
		hi := first + int64(t.W) - old.N
		recs = append(recs, records[lo:hi]...)
		if err := w.write(dataTile(t).Path(), encodeBundle(recs)); err != nil {
			return Checkpoint{}, err
		}
		if err := fault("bundle"); err != nil {
			return Checkpoint{}, err
		}
	}

	for i, h := range hashes {
		p := lookupShard(h)
		shards[p] = append(shards[p], lookupEntry{Hash: h, Index: old.N + int64(i)})
	}
	for _, p := range paths {
		if err := w.write(p, encodeLookup(shards[p])); err != nil {
			return Checkpoint{}, err
		}
		if err := fault("lookup"); err != nil {
			return Checkpoint{}, err
		}
	}

	msg, err := signCheckpoint(tree, signer)
	if err != nil {
		return Checkpoint{}, err
	}
	if err := ctx.Err(); err != nil {
		return Checkpoint{}, err
	}
	if err := fault("sign"); err != nil {
		return Checkpoint{}, err
	}
	if err := w.write(CheckpointPath, msg); err != nil {
		return Checkpoint{}, err
	}
	if err := fault("checkpoint"); err != nil {
		return Checkpoint{}, err
	}
	// A journal left behind only costs the next append a few reads.
	_ = os.Remove(filepath.Join(dir, journalName))
	return Checkpoint{Tree: tree, Note: msg}, nil
}

// readOwnCheckpoint returns the stored tree, or the empty tree for a new log.
func readOwnCheckpoint(dir string, signer note.Signer) (tlog.Tree, error) {
	msg, err := fetch.Dir(dir).Fetch(context.Background(), CheckpointPath, MaxCheckpointSize)
	if errors.Is(err, fetch.ErrNotFound) {
		empty, _ := tlog.TreeHash(0, nil)
		return tlog.Tree{N: 0, Hash: empty}, nil
	}
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("tlog: append to %s: %w", dir, err)
	}
	tree, err := ownCheckpoint(msg, signer)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("tlog: append to %s: %w", dir, err)
	}
	return tree, nil
}

// readJournal returns the shards an interrupted append was changing.
func readJournal(dir string) ([]string, error) {
	// At most one line ("lookup/xx") for each of the 256 shards.
	b, err := fetch.ReadFile(filepath.Join(dir, journalName), 256*int64(len("lookup/00\n")))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tlog: append: %w", err)
	}
	var ps []string
	for _, p := range strings.Fields(string(b)) {
		if len(p) != len("lookup/00") || !strings.HasPrefix(p, "lookup/") {
			return nil, fmt.Errorf("tlog: append: %w: %s names %q", ErrCorrupt, journalName, p)
		}
		if _, err := hex.DecodeString(p[len("lookup/"):]); err != nil {
			return nil, fmt.Errorf("tlog: append: %w: %s names %q", ErrCorrupt, journalName, p)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// readShard loads a lookup shard for appending, keeping lines for entries
// of the current tree only.
func readShard(dir, p string, n int64) ([]lookupEntry, error) {
	prefix, err := hex.DecodeString(p[len("lookup/"):])
	if err != nil || len(prefix) != 1 {
		return nil, fmt.Errorf("tlog: append: bad shard path %q", p)
	}
	data, err := fetch.Dir(dir).Fetch(context.Background(), p, MaxLookupShardSize)
	if errors.Is(err, fetch.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tlog: append to %s: %w", dir, err)
	}
	es, err := decodeLookup(data, prefix[0])
	if err != nil {
		return nil, fmt.Errorf("tlog: append to %s: %w: %s: %w", dir, ErrCorrupt, p, err)
	}
	return slices.DeleteFunc(es, func(e lookupEntry) bool { return e.Index >= n }), nil
}

// oldBundle returns the entries of the old tree that share a bundle with
// new tile t, each checked against its authenticated leaf hash.
func oldBundle(ctx context.Context, dir string, t tlog.Tile, n int64, hr tlog.HashReader) ([][]byte, error) {
	first := t.N << TileHeight
	if first >= n {
		return nil, nil
	}
	bt := bundleFor(first, n)
	data, err := fetch.Dir(dir).Fetch(ctx, bt.Path(), maxBundleSize(bt.W))
	if err != nil {
		return nil, fmt.Errorf("tlog: append to %s: %w", dir, err)
	}
	recs, err := decodeBundle(data, bt.W)
	if err != nil {
		return nil, fmt.Errorf("tlog: append to %s: %w: %s: %w", dir, ErrCorrupt, bt.Path(), err)
	}
	idx := make([]int64, len(recs))
	for j := range recs {
		idx[j] = tlog.StoredHashIndex(0, first+int64(j))
	}
	leaves, err := hr.ReadHashes(idx)
	if err != nil {
		return nil, fmt.Errorf("tlog: append to %s: %w", dir, err)
	}
	for j, rec := range recs {
		if tlog.RecordHash(rec) != leaves[j] {
			return nil, fmt.Errorf("tlog: append to %s: %w: %s: entry %d does not match its tile hash", dir, ErrCorrupt, bt.Path(), first+int64(j))
		}
	}
	return recs, nil
}

// writer writes files under root atomically, creating (and syncing)
// directories on the way so that a new file's name survives a crash.
type writer struct {
	root string
	made map[string]bool
}

func (w *writer) write(rel string, data []byte) error {
	if err := w.mkdirs(path.Dir(rel)); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(w.root, filepath.FromSlash(rel)), data, 0o644)
}

func (w *writer) mkdirs(rel string) error {
	if rel == "." || w.made[rel] {
		return nil
	}
	if err := w.mkdirs(path.Dir(rel)); err != nil {
		return err
	}
	full := filepath.Join(w.root, filepath.FromSlash(rel))
	switch err := os.Mkdir(full, 0o755); {
	case err == nil:
		if err := syncDir(filepath.Dir(full)); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("tlog: %w", err)
	}
	w.made[rel] = true
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("tlog: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("tlog: sync %s: %w", dir, err)
	}
	return nil
}

// lockDir takes an exclusive lock on dir's lock file, waiting for another
// publisher to finish.
func lockDir(dir string) (unlock func(), err error) {
	p := filepath.Join(dir, lockName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("tlog: lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("tlog: lock %s: %w", p, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
