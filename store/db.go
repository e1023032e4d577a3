package store

import (
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
)

// Key layout. Every key starts with one byte naming its kind, so each kind
// is one contiguous key range that a prefix scan walks without touching the
// others (docs/store.md has the same table):
//
//	'c' ‖ chunk CID bytes → the chunk's bytes, raw (exactly what was hashed)
//	'a' ‖ chunk CID bytes → access record: use counter ‖ size, both uint64
//	                        big-endian (16 bytes)
//	'i' ‖ index CID bytes → the encoded index (chunker.Index.Encode)
//	'p' ‖ pin name        → the pinned index's CID bytes
//	'm' ‖ name            → store metadata; "version" holds layoutVersion
//
// The access record is kept apart from the chunk so that recency updates
// rewrite 16 bytes, not the chunk, and so that Open rebuilds sizes and the
// LRU order from the small records alone, without reading any chunk.
// Other lower-case prefixes are free for later metadata (have-bitmaps,
// resume state, peer scores).
const (
	prefixChunk  byte = 'c'
	prefixAccess byte = 'a'
	prefixIndex  byte = 'i'
	prefixPin    byte = 'p'
	prefixMeta   byte = 'm'

	layoutVersion = 1
	metaVersion   = "version"

	// maxPinName bounds pin names; they are keys, and keys should stay small.
	maxPinName = 1024
	// flushEvery is how many chunks may have unsaved use counters before a
	// Get writes them out; Close and GC write the rest. A crash loses at
	// most this much recency, never data.
	flushEvery = 512
	// deleteBatch is how many chunks GC deletes between context checks.
	deleteBatch = 1024
	// maxInlineEvict is how many evicted chunks Put deletes in its own
	// transaction; more go through a write batch first.
	maxInlineEvict = 64
)

// DB is the badger-backed chunk store: chunks, indexes and named pins, with
// garbage collection of unpinned chunks and an optional size-bounded cache
// mode (see [WithCacheLimit]). It is safe for concurrent use.
type DB struct {
	bdb   *badger.DB
	log   *slog.Logger
	limit int64
	dir   string

	// life guards closed: every method holds it shared, Close exclusively.
	life   sync.RWMutex
	closed bool

	// wmu serializes every change to badger (chunks, access records,
	// indexes, pins), so the in-memory view below can be updated after each
	// commit without racing another writer. Reads do not take it.
	wmu sync.Mutex

	// mu guards the in-memory view of the chunks.
	mu          sync.Mutex
	chunks      map[string]*entry // by chunk CID bytes
	lru         list.List         // unpinned entries, most recently used at the front
	clock       uint64            // last use counter handed out
	bytes       int64             // total size of held chunks
	pinnedBytes int64             // size of held chunks that a pinned index references
	pinned      map[string]struct{}
	pinErr      error               // why some pinned index could not be read, if it could not
	dirty       map[string]struct{} // entries whose use counter is not yet saved
}

// entry is the in-memory record of one held chunk.
type entry struct {
	key    string
	size   int64
	use    uint64
	pinned bool
	elem   *list.Element // in DB.lru when not pinned
}

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
}

// Open opens (creating if needed) the store in dir.
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
		bdb:    bdb,
		log:    c.logger,
		limit:  c.limit,
		dir:    dir,
		chunks: make(map[string]*entry),
		pinned: make(map[string]struct{}),
		dirty:  make(map[string]struct{}),
	}
	if db.log == nil {
		db.log = slog.New(slog.DiscardHandler)
	}
	if err := db.load(); err != nil {
		bdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return db, nil
}

// load checks the layout version and rebuilds the in-memory view: sizes and
// use counters from the access records, the pinned set from the pins, and
// the LRU order from the counters.
func (db *DB) load() error {
	if err := db.checkVersion(); err != nil {
		return err
	}
	records := make(map[string][2]uint64) // key → {use, size}
	var bad [][]byte                      // access records to delete
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
		// Join with the chunks themselves: a chunk without a record (a crash
		// between the two halves of a batched delete, or a bad record) gets
		// its size from its value; a record without a chunk is dropped.
		return scan(txn, prefixChunk, func(item *badger.Item) error {
			key := string(item.Key()[1:])
			r, ok := records[key]
			if !ok {
				var n int
				if err := item.Value(func(v []byte) error { n = len(v); return nil }); err != nil {
					return fmt.Errorf("read chunk %x: %w", key, err)
				}
				r = [2]uint64{0, uint64(n)}
				db.dirty[key] = struct{}{}
			}
			delete(records, key)
			db.chunks[key] = &entry{key: key, size: int64(r[1]), use: r[0]}
			db.bytes += int64(r[1])
			db.clock = max(db.clock, r[0])
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load chunk records: %w", err)
	}
	for key := range records {
		bad = append(bad, append([]byte{prefixAccess}, key...))
	}
	if len(bad) > 0 {
		wb := db.bdb.NewWriteBatch()
		defer wb.Cancel()
		for _, k := range bad {
			if err := wb.Delete(k); err != nil {
				return fmt.Errorf("drop stale access records: %w", err)
			}
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("drop stale access records: %w", err)
		}
	}
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

func (db *DB) checkVersion() error {
	key := []byte{prefixMeta}
	key = append(key, metaVersion...)
	return db.bdb.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set(key, []byte{layoutVersion})
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 1 || v[0] != layoutVersion {
				return fmt.Errorf("layout version %x, this build reads %d", v, layoutVersion)
			}
			return nil
		})
	})
}

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

// Close saves pending use counters and closes the database.
func (db *DB) Close() error {
	db.life.Lock()
	defer db.life.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true
	db.wmu.Lock()
	ferr := db.flushLocked()
	db.wmu.Unlock()
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
	return s
}

// scan calls fn for every key with the given prefix, without prefetching
// values (chunk values live in the value log and are read only on demand).
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
