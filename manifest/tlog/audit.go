package tlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
)

// Audit fetches and verifies the current checkpoint and then checks the
// whole log behind it: every entry bundle is decoded and every entry
// re-hashed, the root they give is compared with the signed one (when it
// differs, the first entry that differs from its authenticated leaf is
// named), every tile of the tree is re-derived from the entries and
// compared byte for byte, every
// lookup shard must point each entry's hash at its index, no record may
// appear twice, and no two targets records may give one channel and
// targets version different bytes. The first problem found comes
// back as an *AuditError naming the file and the entry.
//
// Audit holds two hashes per entry in memory (64 MB for a million entries).
func (r *Reader) Audit(ctx context.Context) (Checkpoint, error) {
	cp, err := r.Checkpoint(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	if err := r.AuditTree(ctx, cp.Tree); err != nil {
		return cp, err
	}
	return cp, nil
}

// AuditTree runs Audit's checks against tree, which the caller verified.
func (r *Reader) AuditTree(ctx context.Context, tree tlog.Tree) error {
	type targetsKey struct {
		channel string
		version int64
	}
	type targetsAt struct {
		index int64
		sum   [32]byte
	}
	if tree.N < 0 {
		return fmt.Errorf("tlog: audit: tree size %d", tree.N)
	}
	// Size hints are capped: tree.N is signed, but a signed lie must cost
	// the auditor an error, not its memory.
	hint := min(tree.N, 1<<20)
	var (
		stored = make([]tlog.Hash, 0, 2*hint)
		mem    = tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return memHashes(stored, idx) })
		seen   = make(map[tlog.Hash]int64, hint)
		logged = map[targetsKey]targetsAt{}
	)
	// semantic is the first duplicate or equivocation; it is reported
	// after the storage checks, which say more when both fail.
	var semantic error
	for first := int64(0); first < tree.N; first += tileWidth {
		if err := ctx.Err(); err != nil {
			return err
		}
		bt := bundleFor(first, tree.N)
		data, err := r.fetchStored(ctx, bt.Path(), maxBundleSize(bt.W), first)
		if err != nil {
			return err
		}
		recs, err := decodeBundle(data, bt.W)
		if err != nil {
			return &AuditError{Path: bt.Path(), Index: first, Msg: err.Error(), Err: ErrCorrupt}
		}
		for j, rec := range recs {
			i := first + int64(j)
			h := tlog.RecordHash(rec)
			if k, ok := seen[h]; ok {
				if semantic == nil {
					semantic = &AuditError{Path: bt.Path(), Index: i, Msg: fmt.Sprintf("same record as entry %d", k), Err: ErrDuplicate}
				}
			} else {
				seen[h] = i
			}
			if tg, err := ParseTargets(rec); err == nil {
				key := targetsKey{tg.Channel, tg.Version}
				if prev, ok := logged[key]; !ok {
					logged[key] = targetsAt{i, tg.SHA256}
				} else if prev.sum != tg.SHA256 && semantic == nil {
					semantic = &AuditError{Path: bt.Path(), Index: i, Msg: fmt.Sprintf("targets version %d (channel %q) was logged at entry %d with other bytes", tg.Version, tg.Channel, prev.index), Err: ErrEquivocation}
				}
			}
			hs, err := tlog.StoredHashes(i, rec, mem)
			if err != nil {
				return fmt.Errorf("tlog: audit entry %d: %w", i, err)
			}
			stored = append(stored, hs...)
		}
	}
	root, err := tlog.TreeHash(tree.N, mem)
	if err != nil {
		return fmt.Errorf("tlog: audit tree hash: %w", err)
	}
	if root != tree.Hash {
		// Some entry is not what was signed. The tiles, if they still
		// match the signed root, say which.
		return r.blameEntry(ctx, tree, stored)
	}

	// The entries are what was signed; every stored tile must be exactly
	// what they imply.
	for _, t := range tlog.NewTiles(TileHeight, 0, tree.N) {
		if err := ctx.Err(); err != nil {
			return err
		}
		want, err := tlog.ReadTileData(t, mem)
		if err != nil {
			return fmt.Errorf("tlog: audit tile %s: %w", t.Path(), err)
		}
		cover := func(j int) int64 { return (t.N<<TileHeight + int64(j)) << (t.L * TileHeight) }
		got, err := r.fetchStored(ctx, t.Path(), int64(len(want)), cover(0))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			j := 0
			for j < t.W && j*tlog.HashSize+tlog.HashSize <= len(got) &&
				bytes.Equal(got[j*tlog.HashSize:(j+1)*tlog.HashSize], want[j*tlog.HashSize:(j+1)*tlog.HashSize]) {
				j++
			}
			return &AuditError{Path: t.Path(), Index: cover(j), Msg: fmt.Sprintf("hash %d does not match the entries below it", j), Err: ErrCorrupt}
		}
	}
	if err := r.auditLookup(ctx, tree.N, seen); err != nil {
		return err
	}
	return semantic
}

// blameEntry finds the first entry whose hash differs from the leaf that
// the tiles, authenticated against the signed root, hold for it. stored
// holds the hashes computed from the entries.
func (r *Reader) blameEntry(ctx context.Context, tree tlog.Tree, stored []tlog.Hash) error {
	tr := newTileReader(ctx, r.fetch)
	hr := tlog.TileHashReader(tree, tr)
	for first := int64(0); first < tree.N; first += tileWidth {
		n := min(tileWidth, tree.N-first)
		idx := make([]int64, n)
		for j := range idx {
			idx[j] = tlog.StoredHashIndex(0, first+int64(j))
		}
		leaves, err := hr.ReadHashes(idx)
		if err != nil {
			if err := tr.classify(err); !errors.Is(err, ErrCorrupt) {
				return err
			}
			return &AuditError{Path: CheckpointPath, Index: -1, Msg: "neither the entries nor the tiles hash to the signed root", Err: ErrCorrupt}
		}
		for j, x := range idx {
			if leaves[j] != stored[x] {
				bt := bundleFor(first, tree.N)
				return &AuditError{Path: bt.Path(), Index: first + int64(j), Msg: "entry does not hash to the leaf the signed tree holds", Err: ErrCorrupt}
			}
		}
	}
	return &AuditError{Path: CheckpointPath, Index: -1, Msg: "entries hash to another root, yet every leaf matches", Err: ErrCorrupt}
}

// auditLookup checks that every lookup line for an entry of the tree is
// right and that every entry has its line. Lines at or past n are leftovers
// of an interrupted append, or newer than the tree, and are ignored.
func (r *Reader) auditLookup(ctx context.Context, n int64, seen map[tlog.Hash]int64) error {
	want := make([][]lookupEntry, 256)
	for h, i := range seen {
		want[h[0]] = append(want[h[0]], lookupEntry{Hash: h, Index: i})
	}
	for s := range 256 {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := lookupShard(tlog.Hash{byte(s)})
		data, err := r.fetch.Fetch(ctx, p, MaxLookupShardSize)
		switch {
		case errors.Is(err, fetch.ErrNotFound) && len(want[s]) == 0:
			continue
		case errors.Is(err, fetch.ErrNotFound) || errors.Is(err, ErrTooLarge):
			return &AuditError{Path: p, Index: minIndex(want[s]), Msg: err.Error(), Err: ErrCorrupt}
		case err != nil:
			return err
		}
		es, err := decodeLookup(data, byte(s))
		if err != nil {
			return &AuditError{Path: p, Index: -1, Msg: err.Error(), Err: ErrCorrupt}
		}
		have := map[tlog.Hash]int64{}
		for _, e := range es {
			if e.Index >= n {
				continue
			}
			if i, ok := seen[e.Hash]; !ok || i != e.Index {
				return &AuditError{Path: p, Index: e.Index, Msg: fmt.Sprintf("line for hash %x names an entry holding another record", e.Hash[:8]), Err: ErrCorrupt}
			}
			have[e.Hash] = e.Index
		}
		for _, e := range want[s] {
			if _, ok := have[e.Hash]; !ok {
				return &AuditError{Path: p, Index: e.Index, Msg: "entry has no lookup line", Err: ErrCorrupt}
			}
		}
	}
	return nil
}

// fetchStored fetches a file the tree needs; a missing or oversized file is
// corruption of the log at entry index, other failures are returned as is.
func (r *Reader) fetchStored(ctx context.Context, p string, max, index int64) ([]byte, error) {
	data, err := r.fetch.Fetch(ctx, p, max)
	if errors.Is(err, fetch.ErrNotFound) || errors.Is(err, ErrTooLarge) {
		return nil, &AuditError{Path: p, Index: index, Msg: err.Error(), Err: ErrCorrupt}
	}
	return data, err
}

func memHashes(stored []tlog.Hash, idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(stored)) {
			return nil, fmt.Errorf("tlog: hash %d not computed", x)
		}
		out[i] = stored[x]
	}
	return out, nil
}

func minIndex(es []lookupEntry) int64 {
	m := int64(-1)
	for _, e := range es {
		if m < 0 || e.Index < m {
			m = e.Index
		}
	}
	return m
}
