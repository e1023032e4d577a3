package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
)

// Compaction returns the space of deleted and evicted chunks. Packs are
// append-only, so a removed chunk's record stays until its whole pack is
// rewritten: the live records of a sealed pack that is mostly dead space
// are copied to the pack being written, and once their new locations are
// committed and badger is synced, the old pack is removed. A power cut at
// any point leaves every location pointing at durable bytes: the copies are
// synced before their locations are committed, and the old pack outlives
// the last durable pointer into it.
//
// GC compacts every sealed pack less than half live. Between GCs, the
// writer compacts on its own once such packs hold a pack's worth of dead
// space (a cache node evicting as it goes), so the disk a store uses stays
// within about twice its chunks plus two packs.

// compactStats counts what a compaction did.
type compactStats struct {
	packs int
	freed int64
}

// compactable returns the sealed packs whose live records fill less than
// half of them, oldest first. Unless their dead space adds up to minDead,
// only the packs with nothing live are returned (removing those costs no
// copying). wmu must be held.
func (db *DB) compactable(minDead int64) []*pack {
	db.mu.Lock()
	defer db.mu.Unlock()
	var out []*pack
	var dead int64
	for _, p := range db.packs {
		if p == db.active {
			continue
		}
		if used := p.size - int64(packHeaderSize); p.live*2 < used || p.live == 0 {
			out = append(out, p)
			dead += p.dead()
		}
	}
	if dead < minDead {
		out = slices.DeleteFunc(out, func(p *pack) bool { return p.live > 0 })
	}
	slices.SortFunc(out, func(a, b *pack) int { return cmp.Compare(a.num, b.num) })
	return out
}

// maybeCompactLocked compacts when enough dead space has gathered; what
// goes wrong is logged, for the write that triggered it has succeeded.
// wmu must be held.
func (db *DB) maybeCompactLocked() {
	// A pack's worth of dead space makes the writer compact without a GC.
	cands := db.compactable(db.maxPack)
	if len(cands) == 0 {
		return
	}
	cs, err := db.compactLocked(context.Background(), cands)
	if err != nil {
		db.log.Warn("store: compacting packs", "err", err)
		return
	}
	db.log.Debug("store: compacted packs", "packs", cs.packs, "freed_bytes", cs.freed)
}

// compactLocked moves the live chunks of each pack in cands to the active
// pack and removes the pack. ctx is checked between packs. wmu must be
// held.
func (db *DB) compactLocked(ctx context.Context, cands []*pack) (compactStats, error) {
	var cs compactStats
	if len(cands) == 0 {
		return cs, nil
	}
	// Nothing may be pending: a pending deletion of a chunk in a candidate
	// would otherwise still point into it when it is removed.
	if err := db.commitLocked(); err != nil {
		return cs, err
	}
	byPack := make(map[*pack][]*entry, len(cands))
	for _, p := range cands {
		byPack[p] = nil
	}
	db.mu.Lock()
	for _, e := range db.chunks {
		if l, ok := byPack[e.pack]; ok {
			byPack[e.pack] = append(l, e)
		}
	}
	db.mu.Unlock()
	var buf []byte
	for _, p := range cands {
		if err := ctx.Err(); err != nil {
			return cs, err
		}
		live := byPack[p]
		slices.SortFunc(live, func(a, b *entry) int { return cmp.Compare(a.off, b.off) })
		var err error
		if buf, err = db.movePackLocked(p, live, buf); err != nil {
			return cs, err
		}
		// The moved chunks' locations reach badger after the active pack
		// is synced; the sync makes that state durable, and only then may
		// the old pack go.
		if err := db.commitLocked(); err != nil {
			return cs, err
		}
		if err := db.bdb.Sync(); err != nil {
			return cs, fmt.Errorf("compact pack %s: sync: %w", p.path, err)
		}
		size := p.size
		if err := db.removePacks([]*pack{p}); err != nil {
			return cs, err
		}
		cs.packs++
		cs.freed += size
	}
	return cs, nil
}

// movePackLocked copies the records of live (chunks in p, by offset) to
// the active pack, points the chunks at the copies and queues their new
// locations. A record that is not the chunk its location claims, or whose
// bytes no longer hash to it, is not copied: the chunk is dropped and will
// be fetched again. buf is scratch space, returned for reuse.
func (db *DB) movePackLocked(p *pack, live []*entry, buf []byte) ([]byte, error) {
	var lost []*entry
	for _, e := range live {
		hl := recordHeaderLen(e.key)
		n := int(e.recLen())
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		rec := buf[:n]
		if _, err := p.f.ReadAt(rec, e.off-hl); err != nil {
			db.log.Error("store: compaction drops a chunk it cannot read", "pack", p.path, "offset", e.off, "err", err)
			lost = append(lost, e)
			continue
		}
		if err := checkRecord(e.key, e.size, rec); err != nil {
			db.log.Error("store: compaction drops a damaged chunk", "pack", p.path, "offset", e.off, "err", err)
			lost = append(lost, e)
			continue
		}
		to, off, err := db.appendLocked(e.key, rec[hl:])
		if err != nil {
			return buf, fmt.Errorf("compact pack %s: %w", p.path, err)
		}
		db.mu.Lock()
		p.live -= e.recLen()
		e.pack, e.off = to, off
		to.live += e.recLen()
		db.mu.Unlock()
		db.pending[e.key] = e
		db.pendingBytes += e.recLen()
	}
	db.dropLocked(lost)
	return buf, nil
}

// checkRecord checks that rec is the whole record of the chunk key with a
// payload of size bytes, and that the payload hashes to it.
func checkRecord(key string, size int64, rec []byte) error {
	id, n, hdr, err := decodeRecordHeader(rec)
	if err != nil {
		return err
	}
	want, err := cid.Cast([]byte(key))
	if err != nil {
		return fmt.Errorf("%w: key: %v", errBadPack, err)
	}
	if !id.Equals(want) || n != size || hdr+int(n) != len(rec) {
		return fmt.Errorf("%w: record of %s (%d bytes), location says %s (%d bytes)", errBadPack, id, n, want, size)
	}
	got, ok, err := chunker.SumID(id, rec[hdr:])
	if err != nil {
		return err
	}
	if !ok {
		return &CorruptError{ID: id, Got: got, Where: "pack", Offset: -1}
	}
	return nil
}
