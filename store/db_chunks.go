package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
)

// Put stores a chunk after checking that data hashes to id. Putting a chunk
// the store already holds only counts as a use. In cache mode Put first
// evicts least recently used unpinned chunks to stay within the limit, and
// returns an error wrapping [ErrCacheFull] for an unpinned chunk that would
// not fit beside the pinned data. A chunk that a pinned index references is
// always taken, even when pinned data alone goes over the limit.
//
// The chunk can be read as soon as Put returns; it survives a crash once
// committed, which happens in batches (within a second, or at the next
// PutIndex, Pin, Unpin, Delete, GC or Close: see docs/store.md).
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
		return db.maybeCommitLocked()
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
	db.mu.Unlock()

	p, off, err := db.appendLocked(key, data)
	if err != nil {
		return fmt.Errorf("store: put %s: %w", id, err)
	}
	// Evicted chunks and the new one are committed together, later: the
	// victims' deletions need no sync, and the new chunk's location goes
	// to badger only once its pack is synced.
	db.dropLocked(victims)
	db.mu.Lock()
	db.clock++
	e := &entry{key: key, size: size, use: db.clock, pack: p, off: off}
	db.chunks[key] = e
	db.bytes += size
	p.live += e.recLen()
	if _, ok := db.pinned[key]; ok {
		e.pinned = true
		db.pinnedBytes += size
	} else {
		e.elem = db.lru.PushFront(e)
	}
	db.mu.Unlock()
	db.pending[key] = e
	delete(db.pendingDel, key) // the new location replaces the old one
	db.pendingBytes += e.recLen()
	db.armLocked()
	return db.maybeCommitLocked()
}

// Get returns the chunk's bytes after checking that they still hash to id;
// damaged bytes give a [*CorruptError]. A successful Get counts as a use.
// It reads the bytes from their pack with one pread: through the page
// cache, never mapped into the process.
func (db *DB) Get(ctx context.Context, id cid.Cid) ([]byte, error) {
	return db.AppendChunk(ctx, nil, id)
}

// AppendChunk is Get that reads the chunk onto the end of dst and returns
// the extended slice: a server that frames the chunk behind a header
// reads it into place instead of copying it there.
func (db *DB) AppendChunk(ctx context.Context, dst []byte, id cid.Cid) ([]byte, error) {
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
	key := id.KeyString()
	base := len(dst)
	var data []byte
	var p *pack
	var off int64
	for attempt := 0; ; attempt++ {
		db.mu.Lock()
		e := db.chunks[key]
		if e == nil {
			db.mu.Unlock()
			return nil, notFound(id)
		}
		p, off = e.pack, e.off
		if data == nil || int64(len(data)) != e.size {
			dst = slices.Grow(dst[:base], int(e.size))
			data = dst[base : base+int(e.size)]
		}
		db.mu.Unlock()
		n, err := p.f.ReadAt(data, off)
		if err == nil {
			break
		}
		// Compaction moved the chunk and closed the pack it was in between
		// the lookup and the read: look again.
		if errors.Is(err, os.ErrClosed) && attempt < 3 {
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("store: chunk %s at offset %d of %s: %w: the pack ends after %d of its %d bytes",
				id, off, p.path, ErrCorrupt, n, len(data))
		}
		return nil, fmt.Errorf("store: get %s: %w", id, err)
	}
	got, ok, err := chunker.SumID(id, data)
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", id, err)
	}
	if !ok {
		return nil, &CorruptError{ID: id, Got: got, Where: p.path, Offset: off}
	}
	db.mu.Lock()
	e := db.chunks[key]
	if e != nil {
		db.touchLocked(e)
	}
	n := len(db.dirty)
	db.mu.Unlock()
	// Save counters now and then. A Get does not wait for a writer: if one
	// holds the lock, a later call saves them.
	if n >= flushEvery && db.wmu.TryLock() {
		if err := db.commitLocked(); err != nil {
			db.log.Warn("store: saving use counters", "err", err)
		}
		db.wmu.Unlock()
	}
	return dst[:base+len(data)], nil
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
	db.dropLocked([]*entry{e})
	if err := db.commitLocked(); err != nil {
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
	db.dropLocked(victims)
	if err := db.commitLocked(); err != nil {
		return fmt.Errorf("trim cache to %d bytes: %w", db.limit, err)
	}
	return nil
}

// dropLocked removes chunks from the in-memory view and queues the
// deletion of their locations and access records (a chunk whose location
// was never committed needs none). Deletions need no sync: one lost in a
// crash only brings the chunk back. wmu must be held (or the DB not yet
// shared).
func (db *DB) dropLocked(victims []*entry) {
	if len(victims) == 0 {
		return
	}
	db.mu.Lock()
	for _, e := range victims {
		if db.chunks[e.key] != e {
			continue
		}
		delete(db.chunks, e.key)
		delete(db.dirty, e.key)
		db.bytes -= e.size
		e.pack.live -= e.recLen()
		if e.pinned {
			db.pinnedBytes -= e.size
		}
		if e.elem != nil {
			db.lru.Remove(e.elem)
			e.elem = nil
		}
	}
	db.mu.Unlock()
	for _, e := range victims {
		if db.pending[e.key] == e {
			delete(db.pending, e.key)
			db.pendingBytes -= e.recLen()
		} else {
			db.pendingDel[e.key] = struct{}{}
		}
	}
	db.armLocked()
}

// appendLocked writes a record for the chunk key at the end of the active
// pack, starting a new pack when it is full, and returns where the payload
// went. The record is not durable until the pack is synced. wmu must be
// held.
func (db *DB) appendLocked(key string, data []byte) (*pack, int64, error) {
	if db.failed != nil {
		return nil, 0, db.failed
	}
	if len(key) > maxCIDLen {
		return nil, 0, fmt.Errorf("chunk ID of %d bytes does not fit a pack record", len(key))
	}
	rec := recordHeaderLen(key) + int64(len(data))
	p := db.active
	if p == nil || (p.size+rec > db.maxPack && p.size > int64(packHeaderSize)) {
		var err error
		if p, err = db.rotateLocked(); err != nil {
			return nil, 0, err
		}
	}
	db.hdr = appendRecordHeader(db.hdr[:0], key, len(data))
	at := p.size
	if _, err := p.f.WriteAt(db.hdr, at); err != nil {
		return nil, 0, fmt.Errorf("write pack %s: %w", p.path, err)
	}
	if _, err := p.f.WriteAt(data, at+int64(len(db.hdr))); err != nil {
		return nil, 0, fmt.Errorf("write pack %s: %w", p.path, err)
	}
	db.mu.Lock()
	p.size += rec
	db.mu.Unlock()
	return p, at + int64(len(db.hdr)), nil
}

// rotateLocked seals the active pack (syncing it, so that only the newest
// pack can hold unsynced records) and starts the next one.
func (db *DB) rotateLocked() (*pack, error) {
	if p := db.active; p != nil {
		if err := db.syncPack(p); err != nil {
			return nil, err
		}
	}
	var num uint32
	db.mu.Lock()
	for n := range db.packs {
		num = max(num, n)
	}
	db.mu.Unlock()
	p, err := createPack(db.packDir, num+1)
	if err != nil {
		return nil, err
	}
	db.mu.Lock()
	db.packs[p.num] = p
	db.mu.Unlock()
	db.active = p
	db.sealed = true
	return p, nil
}

// syncPack makes a pack's records durable. wmu must be held.
//
// A failed sync may have dropped the unsynced pages, and a later sync could
// then succeed without them: after one failure the store refuses every
// write until it is reopened, so that no location is ever committed on the
// strength of such a sync. Reads go on.
func (db *DB) syncPack(p *pack) error {
	if db.failed != nil {
		return db.failed
	}
	if p.synced == p.size {
		return nil
	}
	if err := datasync(p.f); err != nil {
		db.failed = fmt.Errorf("writes refused until the store is reopened: sync pack %s: %w", p.path, err)
		db.log.Error("store: a pack could not be synced", "err", err)
		return db.failed
	}
	p.synced = p.size
	return nil
}

// armLocked starts the timer that commits pending chunks, unless it is
// running or nothing is pending. wmu must be held.
func (db *DB) armLocked() {
	if db.armed || len(db.pending)+len(db.pendingDel) == 0 {
		return
	}
	db.armed = true
	if db.timer == nil {
		db.timer = time.AfterFunc(commitDelay, db.commitLater)
		return
	}
	db.timer.Reset(commitDelay)
}

// commitLater is the timer's commit: pending chunks wait at most
// commitDelay for their locations to reach badger.
func (db *DB) commitLater() {
	if db.enter() != nil {
		return
	}
	defer db.leave()
	db.wmu.Lock()
	defer db.wmu.Unlock()
	db.armed = false
	if err := db.commitLocked(); err != nil {
		db.log.Warn("store: committing chunks", "err", err)
		db.armLocked() // try again
		return
	}
	db.maybeCompactLocked()
}

// maybeCommitLocked commits once enough chunks, deletions or use counters
// are pending. wmu must be held.
func (db *DB) maybeCommitLocked() error {
	db.mu.Lock()
	n := len(db.dirty)
	db.mu.Unlock()
	if n >= flushEvery || db.pendingBytes >= commitBytes || len(db.pending)+len(db.pendingDel) >= commitOps {
		if err := db.commitLocked(); err != nil {
			return err
		}
		db.sealed = true
	}
	// Dead space is worth a look when a commit may have freed some, or a
	// pack was sealed: in a full cache, chunks can be evicted before they
	// are ever committed.
	if db.sealed {
		db.sealed = false
		db.maybeCompactLocked()
	}
	return nil
}

// commitLocked makes pending chunks durable and visible after a crash:
// it syncs the active pack, then writes to badger the new chunks'
// locations and access records, the removed chunks' deletions and the
// pending use counters, in one write batch. So a location is never in
// badger before the bytes it points at are on stable storage. Badger
// itself is not synced: a commit lost in a power cut loses chunks (they
// are fetched again) and brings deleted ones back, nothing worse. wmu must
// be held, which also keeps a chunk from being deleted while its record is
// written (a record written after its chunk was deleted would be an
// orphan).
func (db *DB) commitLocked() error {
	if db.failed != nil {
		return fmt.Errorf("commit chunks: %w", db.failed)
	}
	if p := db.active; p != nil && len(db.pending) > 0 {
		if err := db.syncPack(p); err != nil {
			return fmt.Errorf("commit chunks: %w", err)
		}
	}
	type rec struct {
		key  string
		use  uint64
		size int64
		loc  []byte // nil: only the use counter changed
	}
	db.mu.Lock()
	if len(db.dirty) == 0 && len(db.pending) == 0 && len(db.pendingDel) == 0 {
		db.mu.Unlock()
		return nil
	}
	recs := make([]rec, 0, len(db.dirty)+len(db.pending))
	for k, e := range db.pending {
		recs = append(recs, rec{k, e.use, e.size, encodeLoc(loc{e.pack.num, e.off, e.size})})
		delete(db.dirty, k)
	}
	for k := range db.dirty {
		if e := db.chunks[k]; e != nil {
			recs = append(recs, rec{k, e.use, e.size, nil})
		}
	}
	dirty := db.dirty
	db.dirty = make(map[string]struct{})
	db.mu.Unlock()

	err := func() error {
		wb := db.bdb.NewWriteBatch()
		defer wb.Cancel()
		for k := range db.pendingDel {
			if err := wb.Delete(rawChunkKey(k)); err != nil {
				return err
			}
			if err := wb.Delete(accessKey(k)); err != nil {
				return err
			}
		}
		for _, r := range recs {
			if r.loc != nil {
				if err := wb.Set(rawChunkKey(r.key), r.loc); err != nil {
					return err
				}
			}
			if err := wb.Set(accessKey(r.key), encodeAccess(r.use, r.size)); err != nil {
				return err
			}
		}
		return wb.Flush()
	}()
	if err != nil {
		// Mark the counters pending again so a later commit retries; the
		// pending chunks and deletions stay pending.
		db.mu.Lock()
		for k := range dirty {
			db.dirty[k] = struct{}{}
		}
		db.mu.Unlock()
		return fmt.Errorf("commit chunks: %w", err)
	}
	clear(db.pending)
	clear(db.pendingDel)
	db.pendingBytes = 0
	return nil
}
