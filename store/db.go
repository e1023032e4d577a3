package store

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
)

// Key layout. Every key starts with one byte naming its kind, so each kind
// is one contiguous key range that a prefix scan walks without touching the
// others (docs/store.md has the same table):
//
//	'l' ‖ chunk CID bytes → where the chunk's bytes are: pack number ‖
//	                        offset ‖ length (16 bytes, see pack.go)
//	'a' ‖ chunk CID bytes → access record: use counter ‖ size, both uint64
//	                        big-endian (16 bytes)
//	'i' ‖ index CID bytes → the encoded index (chunker.Index.Encode)
//	'p' ‖ pin name        → the pinned index's CID bytes
//	'm' ‖ name            → store metadata; "version" holds layoutVersion
//	'c' ‖ chunk CID bytes → layout 1 only: the chunk's bytes; Open moves
//	                        them into packs (migrate.go)
//
// Chunk bytes live in pack files, not in badger: badger maps its value log
// into memory, and every chunk served from it would count in the process's
// resident set. Packs are read with pread, through the page cache.
//
// The access record is kept apart from the location so that recency
// updates rewrite 16 bytes of their own, and so that Open rebuilds sizes
// and the LRU order from the small records alone.
// Other lower-case prefixes are free for later metadata (have-bitmaps,
// resume state, peer scores).
const (
	prefixChunk   byte = 'l'
	prefixAccess  byte = 'a'
	prefixIndex   byte = 'i'
	prefixPin     byte = 'p'
	prefixMeta    byte = 'm'
	prefixChunkV1 byte = 'c'

	layoutVersion = 2
	metaVersion   = "version"

	// maxPinName bounds pin names; they are keys, and keys should stay small.
	maxPinName = 1024
	// flushEvery is how many chunks may have unsaved use counters before a
	// Get writes them out; Close and GC write the rest. A crash loses at
	// most this much recency, never data.
	flushEvery = 512
	// commitBytes and commitOps bound the chunks written to packs but not
	// yet committed: past either, the writer syncs the pack and commits
	// their locations. commitDelay bounds how long they wait otherwise.
	commitBytes = 8 << 20
	commitOps   = 1024
	commitDelay = time.Second
	// deleteBatch is how many chunks GC deletes between context checks.
	deleteBatch = 1024
)

// DB is the chunk store: chunks in append-only pack files, their
// locations, indexes and named pins in badger, with garbage collection of
// unpinned chunks and an optional size-bounded cache mode (see
// [WithCacheLimit]). It is safe for concurrent use.
type DB struct {
	bdb     *badger.DB
	log     *slog.Logger
	limit   int64
	dir     string
	packDir string
	maxPack int64 // packSize; smaller in tests of compaction

	// life guards closed: every method holds it shared, Close exclusively.
	life   sync.RWMutex
	closed bool

	// wmu serializes every change to badger and to the packs (chunks,
	// access records, indexes, pins, compaction), so the in-memory view
	// below can be updated after each write without racing another writer.
	// Reads do not take it. The fields after it are the writer's.
	wmu sync.Mutex
	// active is the pack new records go to; nil until the first write.
	active *pack
	// pending holds chunks written to a pack whose locations are not yet in
	// badger; pendingDel the keys of removed chunks whose locations still
	// are. commit syncs the pack, then writes both (commitLocked).
	pending      map[string]*entry
	pendingDel   map[string]struct{}
	pendingBytes int64
	timer        *time.Timer // commits pending chunks after commitDelay
	armed        bool        // timer is set to fire
	sealed       bool        // a pack was sealed or chunks committed: look for dead space
	hdr          []byte      // record header scratch
	failed       error       // set when a pack sync failed: writes are refused

	// mu guards the in-memory view of the chunks and the packs.
	mu          sync.Mutex
	chunks      map[string]*entry // by chunk CID bytes
	packs       map[uint32]*pack
	lru         list.List // unpinned entries, most recently used at the front
	clock       uint64    // last use counter handed out
	bytes       int64     // total size of held chunks
	pinnedBytes int64     // size of held chunks that a pinned index references
	pinned      map[string]struct{}
	pinErr      error               // why some pinned index could not be read, if it could not
	dirty       map[string]struct{} // entries whose use counter is not yet saved
}

// entry is the in-memory record of one held chunk. pack and off change
// only under both wmu and mu (compaction), so a reader holding either may
// use them.
type entry struct {
	key    string
	size   int64
	use    uint64
	pinned bool
	elem   *list.Element // in DB.lru when not pinned
	pack   *pack
	off    int64 // of the payload in pack
}

// recLen is the length of the entry's record in its pack.
func (e *entry) recLen() int64 { return recordHeaderLen(e.key) + e.size }

var (
	_ Source     = (*DB)(nil)
	_ ReadWriter = (*DB)(nil)
)

// Stats describes what a DB holds.
type Stats struct {
	Chunks       int64
	Bytes        int64
	PinnedChunks int64 // held chunks that a pinned index references
	PinnedBytes  int64
	Limit        int64 // cache limit in bytes; 0 when not in cache mode
	Packs        int64 // pack files
	PackBytes    int64 // their total size: Bytes, record headers, and space not yet compacted
}

// Open opens (creating if needed) the store in dir. A store of layout 1
// (chunk bytes in badger's value log) is migrated to pack files first.
// Only one process may have a store open: badger locks the directory.
func Open(dir string, opts ...Option) (*DB, error) {
	var c config
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	bdb, err := badger.Open(badgerOptions(dir, c))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	db := &DB{
		bdb:        bdb,
		log:        c.logger,
		limit:      c.limit,
		dir:        dir,
		packDir:    filepath.Join(dir, packDirName),
		maxPack:    packSize,
		chunks:     make(map[string]*entry),
		pinned:     make(map[string]struct{}),
		dirty:      make(map[string]struct{}),
		pending:    make(map[string]*entry),
		pendingDel: make(map[string]struct{}),
	}
	if db.log == nil {
		db.log = slog.New(slog.DiscardHandler)
	}
	if err := db.load(); err != nil {
		closePacks(db.packs)
		bdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return db, nil
}

// load checks the layout version (migrating layout 1), opens the packs and
// rebuilds the in-memory view: locations from the chunk keys, use counters
// from the access records, the pinned set from the pins, and the LRU order
// from the counters. Packs no chunk points into are removed.
func (db *DB) load() error {
	version, err := db.readVersion()
	if err != nil {
		return err
	}
	if db.packs, err = openPacks(db.packDir); err != nil {
		return fmt.Errorf("open packs: %w", err)
	}
	switch version {
	case 0:
		if err := db.setVersion(); err != nil {
			return err
		}
	case 1:
		if err := db.migrateV1(); err != nil {
			return fmt.Errorf("migrate layout 1: %w", err)
		}
	case layoutVersion:
	default:
		return fmt.Errorf("layout version %d, this build reads %d (and migrates 1)", version, layoutVersion)
	}
	if err := db.loadChunks(); err != nil {
		return err
	}
	if err := db.dropEmptyPacks(); err != nil {
		return err
	}
	db.pickActive()
	if err := db.recomputePins(); err != nil {
		return err
	}
	if db.limit > 0 && db.bytes > db.limit {
		if err := db.trim(); err != nil {
			return err
		}
	}
	return nil
}

// loadChunks reads every chunk location and access record into the view.
// A location that cannot be right (a pack that does not exist, a range
// past its end) is dropped with the chunk: only damage below the store can
// make one, and the chunk will be fetched again.
func (db *DB) loadChunks() error {
	records := make(map[string][2]uint64) // key → {use, size}
	var bad [][]byte                      // keys to delete
	err := db.bdb.View(func(txn *badger.Txn) error {
		err := scan(txn, prefixAccess, func(item *badger.Item) error {
			k := item.KeyCopy(nil)
			return item.Value(func(v []byte) error {
				use, size, err := decodeAccess(v)
				if err != nil {
					db.log.Warn("store: dropping bad access record", "key", fmt.Sprintf("%x", k), "err", err)
					bad = append(bad, k)
					return nil
				}
				records[string(k[1:])] = [2]uint64{use, size}
				return nil
			})
		})
		if err != nil {
			return err
		}
		// Join with the locations: a chunk without a record (a crash
		// between writes, or a bad record) gets its size from its location;
		// a record without a chunk is dropped.
		return scan(txn, prefixChunk, func(item *badger.Item) error {
			k := item.KeyCopy(nil)
			key := string(k[1:])
			var l loc
			err := item.Value(func(v []byte) error {
				var err error
				l, err = decodeLoc(v)
				return err
			})
			var p *pack
			if err == nil {
				p = db.packs[l.pack]
				switch {
				case p == nil:
					err = fmt.Errorf("pack %d does not exist", l.pack)
				case l.off+l.size > p.size:
					err = fmt.Errorf("bytes %d to %d are past the end of pack %s (%d bytes)", l.off, l.off+l.size, p.path, p.size)
				case l.off < int64(packHeaderSize)+recordHeaderLen(key):
					err = fmt.Errorf("offset %d in pack %s leaves no room for the record header", l.off, p.path)
				}
			}
			if err != nil {
				db.log.Error("store: dropping a chunk whose location is wrong", "key", fmt.Sprintf("%x", key), "err", err)
				bad = append(bad, k, accessKey(key))
				return nil
			}
			r, ok := records[key]
			if !ok || int64(r[1]) != l.size {
				r = [2]uint64{r[0], uint64(l.size)}
				db.dirty[key] = struct{}{}
			}
			delete(records, key)
			e := &entry{key: key, size: l.size, use: r[0], pack: p, off: l.off}
			db.chunks[key] = e
			p.live += e.recLen()
			db.bytes += l.size
			db.clock = max(db.clock, r[0])
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load chunk records: %w", err)
	}
	for key := range records {
		bad = append(bad, accessKey(key))
	}
	if len(bad) > 0 {
		wb := db.bdb.NewWriteBatch()
		defer wb.Cancel()
		for _, k := range bad {
			if err := wb.Delete(k); err != nil {
				return fmt.Errorf("drop stale chunk records: %w", err)
			}
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("drop stale chunk records: %w", err)
		}
	}
	for _, p := range db.packs {
		if p.bad != nil && p.live > 0 {
			db.log.Error("store: a pack's header is damaged; its chunks are checked as they are read", "err", p.bad)
		}
	}
	return nil
}

// dropEmptyPacks removes the packs no chunk points into: the leftovers of
// a crash (chunks written but never committed) or of an interrupted
// compaction. Badger is synced first, so that no lost write can bring back
// a pointer into a removed pack.
func (db *DB) dropEmptyPacks() error {
	var empty []*pack
	for _, p := range db.packs {
		if p.live == 0 {
			empty = append(empty, p)
		}
	}
	if len(empty) == 0 {
		return nil
	}
	if err := db.bdb.Sync(); err != nil {
		return fmt.Errorf("sync before removing empty packs: %w", err)
	}
	return db.removePacks(empty)
}

// removePacks closes and deletes packs that nothing points into any more,
// durably. Callers have synced badger since the last pointer into them was
// replaced.
func (db *DB) removePacks(packs []*pack) error {
	db.mu.Lock()
	for _, p := range packs {
		delete(db.packs, p.num)
	}
	db.mu.Unlock()
	var errs []error
	for _, p := range packs {
		if db.active == p {
			db.active = nil
		}
		p.f.Close()
		if err := os.Remove(p.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := syncDir(db.packDir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove packs: %w", err)
	}
	return nil
}

// pickActive continues the newest pack if it has room, so that restarts do
// not leave a trail of small packs. Anything past its last committed record
// (a record torn by a crash) is dead space that new records follow.
func (db *DB) pickActive() {
	var newest *pack
	for _, p := range db.packs {
		if newest == nil || p.num > newest.num {
			newest = p
		}
	}
	if newest != nil && newest.bad == nil && newest.size < db.maxPack {
		db.active = newest
	}
}

// readVersion returns the stored layout version, 0 for a new store.
func (db *DB) readVersion() (int, error) {
	var v int
	err := db.bdb.View(func(txn *badger.Txn) error {
		item, err := txn.Get(versionKey())
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			if len(b) != 1 || b[0] == 0 {
				return fmt.Errorf("layout version %x is not a version", b)
			}
			v = int(b[0])
			return nil
		})
	})
	return v, err
}

// setVersion records the current layout version, durably.
func (db *DB) setVersion() error {
	err := db.bdb.Update(func(txn *badger.Txn) error { return txn.Set(versionKey(), []byte{layoutVersion}) })
	if err != nil {
		return fmt.Errorf("set layout version: %w", err)
	}
	return db.bdb.Sync()
}

func versionKey() []byte { return append([]byte{prefixMeta}, metaVersion...) }

// enter admits a method call unless the DB is closed; leave ends it.
func (db *DB) enter() error {
	db.life.RLock()
	if db.closed {
		db.life.RUnlock()
		return ErrClosed
	}
	return nil
}

func (db *DB) leave() { db.life.RUnlock() }

// Close commits pending chunks and use counters and closes the database.
func (db *DB) Close() error {
	db.life.Lock()
	defer db.life.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true
	db.wmu.Lock()
	if db.timer != nil {
		db.timer.Stop()
	}
	ferr := db.commitLocked()
	db.wmu.Unlock()
	db.mu.Lock()
	closePacks(db.packs)
	db.mu.Unlock()
	if err := db.bdb.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", db.dir, err)
	}
	if ferr != nil {
		return fmt.Errorf("store: close %s: %w", db.dir, ferr)
	}
	return nil
}

// Stats returns counts from the in-memory view; it does not touch disk.
func (db *DB) Stats() Stats {
	db.mu.Lock()
	defer db.mu.Unlock()
	s := Stats{Chunks: int64(len(db.chunks)), Bytes: db.bytes, PinnedBytes: db.pinnedBytes, Limit: db.limit}
	for _, e := range db.chunks {
		if e.pinned {
			s.PinnedChunks++
		}
	}
	s.Packs = int64(len(db.packs))
	for _, p := range db.packs {
		s.PackBytes += p.size
	}
	return s
}

// scan calls fn for every key with the given prefix, without prefetching
// values (indexes live in the value log and are read only on demand).
func scan(txn *badger.Txn, prefix byte, fn func(*badger.Item) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := fn(it.Item()); err != nil {
			return err
		}
	}
	return nil
}

// Keys.

func chunkKey(id cid.Cid) []byte    { return append([]byte{prefixChunk}, id.Bytes()...) }
func indexKey(id cid.Cid) []byte    { return append([]byte{prefixIndex}, id.Bytes()...) }
func pinKey(name string) []byte     { return append([]byte{prefixPin}, name...) }
func rawChunkKey(key string) []byte { return append([]byte{prefixChunk}, key...) }
func accessKey(key string) []byte   { return append([]byte{prefixAccess}, key...) }

// encodeAccess and decodeAccess handle the 16-byte access record.
func encodeAccess(use uint64, size int64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, use)
	binary.BigEndian.PutUint64(b[8:], uint64(size))
	return b
}

// errBadRecord is wrapped by decodeAccess errors.
var errBadRecord = errors.New("bad access record")

func decodeAccess(b []byte) (use, size uint64, err error) {
	if len(b) != 16 {
		return 0, 0, fmt.Errorf("%w: %d bytes, want 16", errBadRecord, len(b))
	}
	use, size = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	if size > 1<<40 {
		return 0, 0, fmt.Errorf("%w: implausible size %d", errBadRecord, size)
	}
	return use, size, nil
}

// rebuildLRU orders the unpinned entries by use counter. mu must be held.
func (db *DB) rebuildLRU() {
	db.lru.Init()
	var unpinned []*entry
	for _, e := range db.chunks {
		e.elem = nil
		if !e.pinned {
			unpinned = append(unpinned, e)
		}
	}
	slices.SortFunc(unpinned, func(a, b *entry) int {
		switch {
		case a.use < b.use:
			return -1
		case a.use > b.use:
			return 1
		}
		return 0
	})
	for _, e := range unpinned {
		e.elem = db.lru.PushFront(e)
	}
}
