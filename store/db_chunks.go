package store

import (
	"context"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
)

// Put stores a chunk after checking that data hashes to id. Putting a chunk
// the store already holds only counts as a use. In cache mode Put first
// evicts least recently used unpinned chunks to stay within the limit, and
// returns an error wrapping [ErrCacheFull] for an unpinned chunk that would
// not fit beside the pinned data. A chunk that a pinned index references is
// always taken, even when pinned data alone goes over the limit.
func (db *DB) Put(ctx context.Context, id cid.Cid, data []byte) error {
	if err := db.enter(); err != nil {
		return fmt.Errorf("store: put %s: %w", id, err)
	}
	defer db.leave()
	if err := ctxErr(ctx, "put", id); err != nil {
		return err
	}
	if len(data) > chunker.MaxChunkCeil {
		return fmt.Errorf("store: put %s: %d bytes exceeds the largest chunk, %d", id, len(data), chunker.MaxChunkCeil)
	}
	if err := checkPut(id, data); err != nil {
		return err
	}
	key := id.KeyString()
	size := int64(len(data))

	db.wmu.Lock()
	defer db.wmu.Unlock()
	db.mu.Lock()
	if e, ok := db.chunks[key]; ok {
		db.touchLocked(e)
		db.mu.Unlock()
		return db.maybeFlushLocked()
	}
	var victims []*entry
	if db.limit > 0 {
		var err error
		_, pinned := db.pinned[key]
		if victims, err = db.planLocked(size, pinned); err != nil {
			db.mu.Unlock()
			return fmt.Errorf("store: put %s: %w", id, err)
		}
	}
	db.clock++
	use := db.clock
	db.mu.Unlock()

	// Usually a Put evicts a chunk or two: delete them in the same
	// transaction, so eviction costs no extra commit. Many victims (a big
	// chunk replacing small ones) go in batches first.
	inline := victims
	if len(victims) > maxInlineEvict {
		if err := db.removeLocked(victims); err != nil {
			return fmt.Errorf("store: put %s: evict: %w", id, err)
		}
		inline = nil
	}
	err := db.bdb.Update(func(txn *badger.Txn) error {
		for _, e := range inline {
			if err := txn.Delete(rawChunkKey(e.key)); err != nil {
				return err
			}
			if err := txn.Delete(accessKey(e.key)); err != nil {
				return err
			}
		}
		if err := txn.Set(chunkKey(id), data); err != nil {
			return err
		}
		return txn.Set(accessKey(key), encodeAccess(use, size))
	})
	if err != nil {
		return fmt.Errorf("store: put %s: %w", id, err)
	}
	db.forget(inline)
	db.mu.Lock()
	e := &entry{key: key, size: size, use: use}
	db.chunks[key] = e
	db.bytes += size
	if _, ok := db.pinned[key]; ok {
		e.pinned = true
		db.pinnedBytes += size
	} else {
		e.elem = db.lru.PushFront(e)
	}
	db.mu.Unlock()
	return db.maybeFlushLocked()
}

// Get returns the chunk's bytes after checking that they still hash to id;
// damaged bytes give a [*CorruptError]. A successful Get counts as a use.
func (db *DB) Get(ctx context.Context, id cid.Cid) ([]byte, error) {
	if err := db.enter(); err != nil {
		return nil, fmt.Errorf("store: get %s: %w", id, err)
	}
	defer db.leave()
	if err := ctxErr(ctx, "get", id); err != nil {
		return nil, err
	}
	if _, _, err := chunker.ParseID(id); err != nil {
		return nil, notFound(id) // never stored: Put refuses such IDs
	}
	var data []byte
	err := db.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(chunkKey(id))
		if err != nil {
			return err
		}
		data, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", id, err)
	}
	got, ok, err := chunker.SumID(id, data)
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", id, err)
	}
	if !ok {
		return nil, &CorruptError{ID: id, Got: got, Where: "database " + db.dir, Offset: -1}
	}
	db.mu.Lock()
	e := db.chunks[id.KeyString()]
	if e != nil {
		db.touchLocked(e)
	}
	n := len(db.dirty)
	db.mu.Unlock()
	// Save counters now and then. A Get does not wait for a writer: if one
	// holds the lock, a later call saves them.
	if n >= flushEvery && db.wmu.TryLock() {
		if err := db.flushLocked(); err != nil {
			db.log.Warn("store: saving use counters", "err", err)
		}
		db.wmu.Unlock()
	}
	return data, nil
}

// Has reports whether the chunk is held. It does not count as a use.
func (db *DB) Has(ctx context.Context, id cid.Cid) (bool, error) {
	if err := db.enter(); err != nil {
		return false, fmt.Errorf("store: has %s: %w", id, err)
	}
	defer db.leave()
	if err := ctxErr(ctx, "has", id); err != nil {
		return false, err
	}
	db.mu.Lock()
	_, ok := db.chunks[id.KeyString()]
	db.mu.Unlock()
	return ok, nil
}

// Delete removes a chunk, pinned or not; deleting an absent chunk is not an
// error. It is meant for repair (dropping a chunk found corrupt); GC and
// cache eviction remove garbage on their own.
func (db *DB) Delete(ctx context.Context, id cid.Cid) error {
	if err := db.enter(); err != nil {
		return fmt.Errorf("store: delete %s: %w", id, err)
	}
	defer db.leave()
	if err := ctxErr(ctx, "delete", id); err != nil {
		return err
	}
	db.wmu.Lock()
	defer db.wmu.Unlock()
	db.mu.Lock()
	e := db.chunks[id.KeyString()]
	db.mu.Unlock()
	if e == nil {
		return nil
	}
	if err := db.removeLocked([]*entry{e}); err != nil {
		return fmt.Errorf("store: delete %s: %w", id, err)
	}
	return nil
}

// touchLocked records a use of e. mu must be held.
func (db *DB) touchLocked(e *entry) {
	db.clock++
	e.use = db.clock
	if e.elem != nil {
		db.lru.MoveToFront(e.elem)
	}
	db.dirty[e.key] = struct{}{}
}

// planLocked picks the chunks to evict so that a new chunk of size bytes
// fits under the limit, least recently used first. mu must be held.
func (db *DB) planLocked(size int64, pinned bool) ([]*entry, error) {
	over := db.bytes + size - db.limit
	if over <= 0 {
		return nil, nil
	}
	if db.pinErr != nil {
		// Without every pinned index we cannot tell which chunks are safe.
		return nil, fmt.Errorf("cannot evict while a pinned index is unreadable: %w", db.pinErr)
	}
	if !pinned && db.pinnedBytes+size > db.limit {
		return nil, fmt.Errorf("%w: %d pinned bytes + this chunk's %d exceed the limit of %d",
			ErrCacheFull, db.pinnedBytes, size, db.limit)
	}
	// For an unpinned chunk the check above guarantees that the unpinned
	// chunks free enough; a pinned chunk may go over the limit once they are
	// all gone.
	var victims []*entry
	var freed int64
	for el := db.lru.Back(); el != nil && freed < over; el = el.Prev() {
		e := el.Value.(*entry)
		victims = append(victims, e)
		freed += e.size
	}
	return victims, nil
}

// trim evicts unpinned chunks until the total fits the limit, for a store
// reopened with a smaller limit than its content.
func (db *DB) trim() error {
	db.mu.Lock()
	if db.pinErr != nil {
		db.mu.Unlock()
		db.log.Warn("store: not trimming cache while a pinned index is unreadable", "err", db.pinErr)
		return nil
	}
	var victims []*entry
	total := db.bytes
	for el := db.lru.Back(); el != nil && total > db.limit; el = el.Prev() {
		e := el.Value.(*entry)
		victims = append(victims, e)
		total -= e.size
	}
	db.mu.Unlock()
	if err := db.removeLocked(victims); err != nil {
		return fmt.Errorf("trim cache to %d bytes: %w", db.limit, err)
	}
	return nil
}

// removeLocked deletes chunks and their access records from badger, then
// from the in-memory view. wmu must be held (or the DB not yet shared).
func (db *DB) removeLocked(victims []*entry) error {
	if len(victims) == 0 {
		return nil
	}
	wb := db.bdb.NewWriteBatch()
	defer wb.Cancel()
	for _, e := range victims {
		if err := wb.Delete(rawChunkKey(e.key)); err != nil {
			return err
		}
		if err := wb.Delete(accessKey(e.key)); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	db.forget(victims)
	return nil
}

// forget drops deleted chunks from the in-memory view.
func (db *DB) forget(victims []*entry) {
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, e := range victims {
		if db.chunks[e.key] != e {
			continue
		}
		delete(db.chunks, e.key)
		delete(db.dirty, e.key)
		db.bytes -= e.size
		if e.pinned {
			db.pinnedBytes -= e.size
		}
		if e.elem != nil {
			db.lru.Remove(e.elem)
			e.elem = nil
		}
	}
}

// maybeFlushLocked saves use counters once enough are pending. wmu must be
// held.
func (db *DB) maybeFlushLocked() error {
	db.mu.Lock()
	n := len(db.dirty)
	db.mu.Unlock()
	if n < flushEvery {
		return nil
	}
	return db.flushLocked()
}

// flushLocked writes the pending use counters. wmu must be held, which also
// keeps a chunk from being deleted while its record is written (a record
// written after its chunk was deleted would be an orphan).
func (db *DB) flushLocked() error {
	db.mu.Lock()
	if len(db.dirty) == 0 {
		db.mu.Unlock()
		return nil
	}
	type rec struct {
		key  string
		use  uint64
		size int64
	}
	recs := make([]rec, 0, len(db.dirty))
	for k := range db.dirty {
		if e := db.chunks[k]; e != nil {
			recs = append(recs, rec{k, e.use, e.size})
		}
	}
	clear(db.dirty)
	db.mu.Unlock()

	err := func() error {
		wb := db.bdb.NewWriteBatch()
		defer wb.Cancel()
		for _, r := range recs {
			if err := wb.Set(accessKey(r.key), encodeAccess(r.use, r.size)); err != nil {
				return err
			}
		}
		return wb.Flush()
	}()
	if err != nil {
		// Mark them pending again so a later flush retries.
		db.mu.Lock()
		for _, r := range recs {
			db.dirty[r.key] = struct{}{}
		}
		db.mu.Unlock()
		return fmt.Errorf("save use counters: %w", err)
	}
	return nil
}
