package store

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
)

// PutIndex validates and stores an index and returns its CID (the CID of
// its encoding, [chunker.Index.CID]). Storing an index does not pin it.
// Indexes are metadata and are kept until [DB.DeleteIndex]; GC removes only
// chunks.
func (db *DB) PutIndex(ctx context.Context, ix *chunker.Index) (cid.Cid, error) {
	if err := db.enter(); err != nil {
		return cid.Undef, fmt.Errorf("store: put index: %w", err)
	}
	defer db.leave()
	if err := ctx.Err(); err != nil {
		return cid.Undef, fmt.Errorf("store: put index: %w", err)
	}
	if ix == nil {
		return cid.Undef, fmt.Errorf("store: put index: nil index")
	}
	b := ix.Encode()
	// Encode does not validate, and an index the store cannot read back is
	// worse than none: decode what would be stored.
	if _, err := chunker.DecodeIndex(b); err != nil {
		return cid.Undef, fmt.Errorf("store: put index: %w", err)
	}
	id := ix.Hash.ID(ix.Hash.Sum(b))
	db.wmu.Lock()
	defer db.wmu.Unlock()
	// The chunks put before the index become durable with it.
	if err := db.commitLocked(); err != nil {
		return cid.Undef, fmt.Errorf("store: put index %s: %w", id, err)
	}
	// Always write, even if the key exists: that repairs a damaged copy.
	if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(indexKey(id), b) }); err != nil {
		return cid.Undef, fmt.Errorf("store: put index %s: %w", id, err)
	}
	if err := db.bdb.Sync(); err != nil {
		return cid.Undef, fmt.Errorf("store: put index %s: sync: %w", id, err)
	}
	// A pinned index that was unreadable may just have been repaired.
	db.mu.Lock()
	stale := db.pinErr != nil
	db.mu.Unlock()
	if stale {
		if err := db.recomputePins(); err != nil {
			return id, err
		}
	}
	return id, nil
}

// GetIndex reads an index back and validates it again: it must decode
// strictly ([chunker.DecodeIndex]; damage gives an error wrapping both
// [ErrCorrupt] and [chunker.ErrMalformedIndex]) and hash to id (else a
// [*CorruptError]).
func (db *DB) GetIndex(ctx context.Context, id cid.Cid) (*chunker.Index, error) {
	if err := db.enter(); err != nil {
		return nil, fmt.Errorf("store: get index %s: %w", id, err)
	}
	defer db.leave()
	if err := ctxErr(ctx, "get index", id); err != nil {
		return nil, err
	}
	return db.getIndex(id)
}

func (db *DB) getIndex(id cid.Cid) (*chunker.Index, error) {
	if _, _, err := chunker.ParseID(id); err != nil {
		return nil, fmt.Errorf("store: index %s: %w", id, ErrNoIndex)
	}
	var b []byte
	err := db.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(indexKey(id))
		if err != nil {
			return err
		}
		b, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("store: index %s: %w", id, ErrNoIndex)
	}
	if err != nil {
		return nil, fmt.Errorf("store: index %s: %w", id, err)
	}
	ix, err := chunker.DecodeIndex(b)
	if err != nil {
		return nil, fmt.Errorf("store: index %s in database %s: %w: %w", id, db.dir, ErrCorrupt, err)
	}
	got, ok, err := chunker.SumID(id, b)
	if err != nil {
		return nil, fmt.Errorf("store: index %s: %w", id, err)
	}
	if !ok {
		return nil, &CorruptError{ID: id, Got: got, Where: "database " + db.dir, Offset: -1}
	}
	return ix, nil
}

// DeleteIndex removes an index. It refuses an index that a pin names.
func (db *DB) DeleteIndex(ctx context.Context, id cid.Cid) error {
	if err := db.enter(); err != nil {
		return fmt.Errorf("store: delete index %s: %w", id, err)
	}
	defer db.leave()
	if err := ctxErr(ctx, "delete index", id); err != nil {
		return err
	}
	db.wmu.Lock()
	defer db.wmu.Unlock()
	pins, err := db.readPins()
	if err != nil {
		return err
	}
	for name, p := range pins {
		if p.Equals(id) {
			return fmt.Errorf("store: delete index %s: pinned as %q", id, name)
		}
	}
	if err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Delete(indexKey(id)) }); err != nil {
		return fmt.Errorf("store: delete index %s: %w", id, err)
	}
	return nil
}

// Pin names an index the store holds, so that GC and cache eviction keep
// every chunk it lists. Pinning an existing name moves it to indexID. The
// index must be present and readable.
func (db *DB) Pin(ctx context.Context, name string, indexID cid.Cid) error {
	if err := db.enter(); err != nil {
		return fmt.Errorf("store: pin %q: %w", name, err)
	}
	defer db.leave()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: pin %q: %w", name, err)
	}
	if err := checkPinName(name); err != nil {
		return err
	}
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if _, err := db.getIndex(indexID); err != nil {
		return fmt.Errorf("store: pin %q: %w", name, err)
	}
	// The chunks put before the pin become durable with it.
	if err := db.commitLocked(); err != nil {
		return fmt.Errorf("store: pin %q: %w", name, err)
	}
	err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(pinKey(name), indexID.Bytes()) })
	if err != nil {
		return fmt.Errorf("store: pin %q: %w", name, err)
	}
	if err := db.bdb.Sync(); err != nil {
		return fmt.Errorf("store: pin %q: sync: %w", name, err)
	}
	return db.recomputePins()
}

// Unpin removes a pin; its chunks become garbage unless another pin's
// index lists them. An unknown name gives an error wrapping [ErrNoPin].
func (db *DB) Unpin(ctx context.Context, name string) error {
	if err := db.enter(); err != nil {
		return fmt.Errorf("store: unpin %q: %w", name, err)
	}
	defer db.leave()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: unpin %q: %w", name, err)
	}
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if err := db.commitLocked(); err != nil {
		return fmt.Errorf("store: unpin %q: %w", name, err)
	}
	err := db.bdb.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get(pinKey(name)); err != nil {
			return err
		}
		return txn.Delete(pinKey(name))
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("store: unpin %q: %w", name, ErrNoPin)
	}
	if err != nil {
		return fmt.Errorf("store: unpin %q: %w", name, err)
	}
	if err := db.bdb.Sync(); err != nil {
		return fmt.Errorf("store: unpin %q: sync: %w", name, err)
	}
	return db.recomputePins()
}

// Pins returns every pin's name and index CID.
func (db *DB) Pins(ctx context.Context) (map[string]cid.Cid, error) {
	if err := db.enter(); err != nil {
		return nil, fmt.Errorf("store: pins: %w", err)
	}
	defer db.leave()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: pins: %w", err)
	}
	return db.readPins()
}

func checkPinName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("store: pin name is empty")
	case len(name) > maxPinName:
		return fmt.Errorf("store: pin name is %d bytes, at most %d allowed", len(name), maxPinName)
	case !utf8.ValidString(name):
		return fmt.Errorf("store: pin name %q is not UTF-8", name)
	}
	return nil
}

func (db *DB) readPins() (map[string]cid.Cid, error) {
	pins := make(map[string]cid.Cid)
	err := db.bdb.View(func(txn *badger.Txn) error {
		return scan(txn, prefixPin, func(item *badger.Item) error {
			name := string(item.Key()[1:])
			return item.Value(func(v []byte) error {
				id, err := decodePin(v)
				if err != nil {
					return fmt.Errorf("pin %q: %w", name, err)
				}
				pins[name] = id
				return nil
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: read pins: %w", err)
	}
	return pins, nil
}

// decodePin parses a pin's stored value: the CID bytes of a chunk-style ID.
func decodePin(v []byte) (cid.Cid, error) {
	n, id, err := cid.CidFromBytes(v)
	if err != nil {
		return cid.Undef, fmt.Errorf("%w: bad CID: %v", ErrCorrupt, err)
	}
	if n != len(v) {
		return cid.Undef, fmt.Errorf("%w: %d trailing bytes after CID", ErrCorrupt, len(v)-n)
	}
	if _, _, err := chunker.ParseID(id); err != nil {
		return cid.Undef, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return id, nil
}

// recomputePins rebuilds the set of pinned chunks from the pins and their
// indexes, then the pinned flags, pinned byte count and LRU order. An
// unreadable pinned index does not fail it: the error is kept in pinErr and
// stops GC and eviction until the pin is fixed, because without that index
// the store cannot tell which chunks are safe to remove. wmu must be held
// (or the DB not yet shared).
func (db *DB) recomputePins() error {
	pins, err := db.readPins()
	if err != nil {
		return err
	}
	set := make(map[string]struct{})
	var pinErr error
	for name, id := range pins {
		ix, err := db.getIndex(id)
		if err != nil {
			pinErr = errors.Join(pinErr, fmt.Errorf("pin %q: %w", name, err))
			continue
		}
		for i := range ix.Chunks {
			set[ix.ID(i).KeyString()] = struct{}{}
		}
	}
	if pinErr != nil {
		db.log.Error("store: a pinned index is unreadable; GC and eviction are off until it is fixed", "err", pinErr)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.pinned = set
	db.pinErr = pinErr
	db.pinnedBytes = 0
	for k, e := range db.chunks {
		_, e.pinned = set[k]
		if e.pinned {
			db.pinnedBytes += e.size
		}
	}
	db.rebuildLRU()
	return nil
}

// GCStats reports what a GC removed and kept.
type GCStats struct {
	RemovedChunks    int64
	RemovedBytes     int64
	KeptChunks       int64
	KeptBytes        int64
	PacksCompacted   int   // pack files whose live chunks were moved and that were removed
	PackBytesFreed   int64 // disk space those packs returned
	ValueLogRewrites int   // value-log files badger rewrote to free space (indexes live there)
}

// GC removes every chunk that no pinned index lists, then compacts the
// packs that are mostly free space (copying their live chunks to the
// newest pack and removing them) and runs badger's value-log GC for the
// space of deleted indexes. Badger learns which value-log space is free as
// it compacts, so that space may come back only on a later GC. GC refuses
// to run while a pinned index is unreadable (error wrapping [ErrCorrupt]).
// On cancellation it returns what it had removed so far with the context's
// error.
func (db *DB) GC(ctx context.Context) (GCStats, error) {
	var st GCStats
	if err := db.enter(); err != nil {
		return st, fmt.Errorf("store: gc: %w", err)
	}
	defer db.leave()
	if err := ctx.Err(); err != nil {
		return st, fmt.Errorf("store: gc: %w", err)
	}
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if err := db.commitLocked(); err != nil {
		return st, fmt.Errorf("store: gc: %w", err)
	}
	db.mu.Lock()
	if db.pinErr != nil {
		err := db.pinErr
		db.mu.Unlock()
		return st, fmt.Errorf("store: gc refused, a pinned index is unreadable: %w", err)
	}
	var garbage []*entry
	for _, e := range db.chunks {
		if !e.pinned {
			garbage = append(garbage, e)
		}
	}
	db.mu.Unlock()

	for len(garbage) > 0 {
		if err := ctx.Err(); err != nil {
			return db.gcKept(st), fmt.Errorf("store: gc: %w", err)
		}
		n := min(len(garbage), deleteBatch)
		db.dropLocked(garbage[:n])
		if err := db.commitLocked(); err != nil {
			return db.gcKept(st), fmt.Errorf("store: gc: %w", err)
		}
		for _, e := range garbage[:n] {
			st.RemovedChunks++
			st.RemovedBytes += e.size
		}
		garbage = garbage[n:]
	}
	st = db.gcKept(st)
	cs, err := db.compactLocked(ctx, db.compactable(0))
	st.PacksCompacted, st.PackBytesFreed = cs.packs, cs.freed
	if err != nil {
		return st, fmt.Errorf("store: gc: %w", err)
	}
	db.log.Info("store: gc", "removed_chunks", st.RemovedChunks, "removed_bytes", st.RemovedBytes,
		"kept_chunks", st.KeptChunks, "kept_bytes", st.KeptBytes,
		"packs_compacted", st.PacksCompacted, "pack_bytes_freed", st.PackBytesFreed)

	// Rewrite value-log files while badger finds ones at least half garbage.
	// The bound keeps one call from running for long on a big store.
	for range 16 {
		if ctx.Err() != nil {
			break
		}
		err := db.bdb.RunValueLogGC(0.5)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			break
		}
		if err != nil {
			return st, fmt.Errorf("store: gc: value log: %w", err)
		}
		st.ValueLogRewrites++
	}
	return st, nil
}

func (db *DB) gcKept(st GCStats) GCStats {
	db.mu.Lock()
	defer db.mu.Unlock()
	st.KeptChunks, st.KeptBytes = int64(len(db.chunks)), db.bytes
	return st
}
