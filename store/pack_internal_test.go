package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
)

// crash abandons db the way a power cut at the worst moment would leave
// it: badger keeps every write it was given (committed locations, synced
// or not), while each pack loses what was not synced and ends in a torn
// record. Nothing pending is committed.
func (db *DB) crash(t *testing.T) {
	t.Helper()
	db.life.Lock()
	db.closed = true
	db.life.Unlock()
	db.wmu.Lock()
	defer db.wmu.Unlock()
	if db.timer != nil {
		db.timer.Stop()
	}
	synced := make(map[string]int64)
	for _, p := range db.packs {
		synced[p.path] = p.synced
	}
	closePacks(db.packs)
	if err := db.bdb.Close(); err != nil {
		t.Fatal(err)
	}
	for path, n := range synced {
		if err := os.Truncate(path, n); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		// A torn record: a header promising more than follows.
		torn := appendRecordHeader(nil, string(chunker.SHA256.ID(chunker.SHA256.Sum([]byte("torn"))).Bytes()), 4096)
		if _, err := f.Write(append(torn, "half a chunk"...)); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

// checkLocations asserts the crash-safety invariant: every location in
// badger points into a pack that exists, within the part of it that has
// been synced.
func checkLocations(t *testing.T, db *DB) {
	t.Helper()
	db.wmu.Lock()
	defer db.wmu.Unlock()
	db.mu.Lock()
	defer db.mu.Unlock()
	err := db.bdb.View(func(txn *badger.Txn) error {
		return scan(txn, prefixChunk, func(item *badger.Item) error {
			return item.Value(func(v []byte) error {
				l, err := decodeLoc(v)
				if err != nil {
					return err
				}
				p := db.packs[l.pack]
				if p == nil {
					return fmt.Errorf("location %+v: pack %d does not exist", l, l.pack)
				}
				if l.off+l.size > p.synced {
					return fmt.Errorf("location %+v: past the synced %d bytes of pack %d", l, p.synced, l.pack)
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func newChunk(r *rand.Rand, max int) []byte {
	b := make([]byte, 64+r.IntN(max)) // at least internalIndex's minimum chunk
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestCrashKeepsCommittedChunks runs random operations on a store with
// small packs (so that packs rotate and compaction runs) and cuts the
// power now and then. At every step, no location in badger is ahead of
// its pack's sync; after every crash, each chunk the store holds reads
// back exactly, and every chunk held at the last pin (a commit point) and
// not removed since is still there.
func TestCrashKeepsCommittedChunks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(7, 7))
	h := chunker.SHA256
	var opts []Option
	open := func() *DB {
		db, err := Open(dir, opts...)
		if err != nil {
			t.Fatal(err)
		}
		db.maxPack = 64 << 10
		return db
	}
	db := open()
	defer func() { db.Close() }()
	all := map[string][]byte{}     // every chunk ever put, by key
	committed := map[string]bool{} // held at the last commit point
	var list []cid.Cid
	held := func() map[string]bool {
		db.mu.Lock()
		defer db.mu.Unlock()
		m := make(map[string]bool, len(db.chunks))
		for k := range db.chunks {
			m[k] = true
		}
		return m
	}
	crashes := 0
	for step := range 600 {
		switch op := r.IntN(100); {
		case op < 50:
			c := newChunk(r, 12<<10)
			id := h.ID(h.Sum(c))
			if err := db.Put(ctx, id, c); errors.Is(err, ErrCacheFull) {
				continue
			} else if err != nil {
				t.Fatal(err)
			}
			all[id.KeyString()] = c
			list = append(list, id)
		case op < 60 && len(list) > 0:
			id := list[r.IntN(len(list))]
			got, err := db.Get(ctx, id)
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatalf("step %d: Get: %v", step, err)
			}
			if err == nil && !bytes.Equal(got, all[id.KeyString()]) {
				t.Fatalf("step %d: Get returned other bytes", step)
			}
		case op < 70 && len(list) > 0:
			if err := db.Delete(ctx, list[r.IntN(len(list))]); err != nil {
				t.Fatal(err)
			}
		case op < 80 && len(list) > 0:
			// Pin a random selection of held chunks; the pin is a commit
			// point.
			var chunks [][]byte
			for k := range held() {
				if r.IntN(3) == 0 {
					chunks = append(chunks, all[k])
				}
			}
			if len(chunks) == 0 {
				continue
			}
			id, err := db.PutIndex(ctx, internalIndex(h, chunks...))
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Pin(ctx, "p", id); err != nil {
				t.Fatal(err)
			}
			committed = held()
		case op < 85:
			if _, err := db.GC(ctx); err != nil {
				t.Fatal(err)
			}
			committed = held()
		case op < 90:
			db.commitLater() // what the timer does
		case op < 95:
			now := held()
			db.crash(t)
			crashes++
			if r.IntN(2) == 0 {
				opts = nil
			} else {
				opts = []Option{WithCacheLimit(int64(64+r.IntN(128)) << 10)}
			}
			db = open()
			after := held()
			for k := range after {
				id, _ := cid.Cast([]byte(k))
				got, err := db.Get(ctx, id)
				if err != nil || !bytes.Equal(got, all[k]) {
					t.Fatalf("step %d: after a crash, held chunk %s reads back %d bytes, %v", step, id, len(got), err)
				}
			}
			for k := range committed {
				if now[k] && !after[k] && opts == nil {
					id, _ := cid.Cast([]byte(k))
					t.Fatalf("step %d: chunk %s, committed and held, lost in a crash", step, id)
				}
			}
			committed = after
		default:
			db.Close()
			db = open()
		}
		checkLocations(t, db)
	}
	if crashes == 0 {
		t.Fatal("no crash happened")
	}
	s := db.Stats()
	t.Logf("%d crashes; now %d chunks (%d bytes) in %d packs of %d bytes", crashes, s.Chunks, s.Bytes, s.Packs, s.PackBytes)
}

// TestCompactionReturnsSpace fills small packs, unpins most chunks and
// checks that GC compacts the packs: disk use falls to about the live
// chunks, the kept chunks read back (also after reopening), and Gets
// running during the compaction never fail.
func TestCompactionReturnsSpace(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := mustOpen(t, dir)
	db.maxPack = 256 << 10
	h := chunker.SHA256
	r := rand.New(rand.NewPCG(3, 3))
	var chunks [][]byte
	for range 200 {
		chunks = append(chunks, newChunk(r, 16<<10))
	}
	for _, c := range chunks {
		if err := db.Put(ctx, h.ID(h.Sum(c)), c); err != nil {
			t.Fatal(err)
		}
	}
	var keep [][]byte
	for i, c := range chunks {
		if i%5 == 0 {
			keep = append(keep, c)
		}
	}
	id, err := db.PutIndex(ctx, internalIndex(h, keep...))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Pin(ctx, "keep", id); err != nil {
		t.Fatal(err)
	}
	before := db.Stats()

	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := keep[i%len(keep)]
				got, err := db.Get(ctx, h.ID(h.Sum(c)))
				if err != nil || !bytes.Equal(got, c) {
					errs <- fmt.Errorf("Get during compaction: %d bytes, %v", len(got), err)
					return
				}
			}
		}()
	}
	st, err := db.GC(ctx)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	after := db.Stats()
	t.Logf("before GC %+v\nGC %+v\nafter GC %+v", before, st, after)
	if st.PacksCompacted == 0 || st.PackBytesFreed == 0 {
		t.Fatalf("GC compacted nothing: %+v", st)
	}
	if after.PackBytes > after.Bytes*3/2+2*db.maxPack {
		t.Fatalf("after GC the packs take %d bytes for %d bytes of chunks", after.PackBytes, after.Bytes)
	}
	db.Close()
	db = mustOpen(t, dir)
	for _, c := range keep {
		got, err := db.Get(ctx, h.ID(h.Sum(c)))
		if err != nil || !bytes.Equal(got, c) {
			t.Fatalf("after compaction and reopening: %d bytes, %v", len(got), err)
		}
	}
	if s := db.Stats(); s.Chunks != int64(len(keep)) || s.PackBytes != after.PackBytes {
		t.Fatalf("after reopening %+v; want %d chunks in %d pack bytes", s, len(keep), after.PackBytes)
	}
}

// TestCacheCompactsAsItGoes keeps putting into a full cache with small
// packs and no GC: the writer compacts on its own, so the packs stay
// within a few times the limit.
func TestCacheCompactsAsItGoes(t *testing.T) {
	ctx := context.Background()
	const limit = 128 << 10
	db := mustOpen(t, t.TempDir(), WithCacheLimit(limit))
	db.maxPack = 64 << 10
	h := chunker.SHA256
	r := rand.New(rand.NewPCG(4, 4))
	most := int64(0)
	for range 2000 {
		c := newChunk(r, 8<<10)
		if err := db.Put(ctx, h.ID(h.Sum(c)), c); err != nil {
			t.Fatal(err)
		}
		most = max(most, db.Stats().PackBytes)
	}
	if most > 4*limit+2*db.maxPack {
		t.Fatalf("packs grew to %d bytes under a %d-byte cache", most, limit)
	}
	checkLocations(t, db)
}

// TestCompactionDropsDamagedChunk: a record whose bytes rotted is not
// copied; the chunk is dropped so that it can be fetched again.
func TestCompactionDropsDamagedChunk(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t, t.TempDir())
	db.maxPack = 32 << 10
	h := chunker.BLAKE3
	r := rand.New(rand.NewPCG(5, 5))
	var chunks [][]byte
	for range 12 {
		c := newChunk(r, 8<<10)
		chunks = append(chunks, c)
		if err := db.Put(ctx, h.ID(h.Sum(c)), c); err != nil {
			t.Fatal(err)
		}
	}
	id, err := db.PutIndex(ctx, internalIndex(h, chunks[0], chunks[1]))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Pin(ctx, "p", id); err != nil {
		t.Fatal(err)
	}
	bad := h.ID(h.Sum(chunks[1]))
	if err := db.flipByte(chunkKey(bad), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := db.Has(ctx, bad); ok {
		t.Fatal("compaction kept a damaged chunk")
	}
	if got, err := db.Get(ctx, h.ID(h.Sum(chunks[0]))); err != nil || !bytes.Equal(got, chunks[0]) {
		t.Fatalf("intact pinned chunk after compaction: %v", err)
	}
}

// writeV1 makes a store of layout 1 in dir: version 1, chunks as 'c'
// values with access records, and one pinned index.
func writeV1(t *testing.T, dir string, chunks [][]byte, pinned int) cid.Cid {
	t.Helper()
	bdb, err := badger.Open(badgerOptions(dir, config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	h := chunker.SHA256
	ix := internalIndex(h, chunks[:pinned]...)
	b := ix.Encode()
	ixID := h.ID(h.Sum(b))
	wb := bdb.NewWriteBatch()
	defer wb.Cancel()
	set := func(k, v []byte) {
		if err := wb.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	set(versionKey(), []byte{1})
	for i, c := range chunks {
		key := h.ID(h.Sum(c)).KeyString()
		set(append([]byte{prefixChunkV1}, key...), c)
		set(accessKey(key), encodeAccess(uint64(100+i), int64(len(c))))
	}
	set(indexKey(ixID), b)
	set(pinKey("rootfs"), ixID.Bytes())
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	return ixID
}

// TestMigrateV1 opens a layout 1 store: its chunks move to packs, pins and
// recency are kept, and no chunk bytes are left under the old keys.
func TestMigrateV1(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(6, 6))
	var chunks [][]byte
	for range 600 { // more than one migration batch
		chunks = append(chunks, newChunk(r, 4<<10))
	}
	ixID := writeV1(t, dir, chunks, 10)
	db := mustOpen(t, dir)
	h := chunker.SHA256
	for _, c := range chunks {
		got, err := db.Get(ctx, h.ID(h.Sum(c)))
		if err != nil || !bytes.Equal(got, c) {
			t.Fatalf("migrated chunk: %d bytes, %v", len(got), err)
		}
	}
	if pins, err := db.Pins(ctx); err != nil || !pins["rootfs"].Equals(ixID) {
		t.Fatalf("pins after migration %v, %v", pins, err)
	}
	if s := db.Stats(); s.Chunks != int64(len(chunks)) || s.PinnedChunks != 10 || s.Packs == 0 {
		t.Fatalf("Stats after migration %+v", s)
	}
	if e := db.chunks[h.ID(h.Sum(chunks[5])).KeyString()]; e.use < 100 {
		t.Fatalf("use counter after migration %d; the layout 1 record said 105 or more", e.use)
	}
	n := 0
	err := db.bdb.View(func(txn *badger.Txn) error {
		return scan(txn, prefixChunkV1, func(*badger.Item) error { n++; return nil })
	})
	if err != nil || n != 0 {
		t.Fatalf("%d layout 1 chunk keys left, %v", n, err)
	}
	if v, err := db.readVersion(); err != nil || v != layoutVersion {
		t.Fatalf("layout version %d, %v", v, err)
	}
	checkLocations(t, db)
}

// TestMigrateV1Resumes: a migration cut short (some chunks moved, some
// still under the old keys, a pack holding records never committed) is
// finished by the next Open.
func TestMigrateV1Resumes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(8, 8))
	var chunks [][]byte
	for range 40 {
		chunks = append(chunks, newChunk(r, 4<<10))
	}
	writeV1(t, dir, chunks[:20], 5)
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Write the rest in layout 1 again and an uncommitted record, as a
	// crash mid-migration would leave them.
	h := chunker.SHA256
	err = db.rawUpdate(func(txn *badger.Txn) error {
		for _, c := range chunks[20:] {
			if err := txn.Set(append([]byte{prefixChunkV1}, h.ID(h.Sum(c)).KeyString()...), c); err != nil {
				return err
			}
		}
		return txn.Set(versionKey(), []byte{1})
	})
	if err != nil {
		t.Fatal(err)
	}
	db.wmu.Lock()
	if _, _, err := db.appendLocked(h.ID(h.Sum([]byte("x"))).KeyString(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	db.wmu.Unlock()
	db.crash(t)

	db = mustOpen(t, dir)
	for _, c := range chunks {
		got, err := db.Get(ctx, h.ID(h.Sum(c)))
		if err != nil || !bytes.Equal(got, c) {
			t.Fatalf("chunk after resumed migration: %d bytes, %v", len(got), err)
		}
	}
	if v, _ := db.readVersion(); v != layoutVersion {
		t.Fatalf("layout version %d after resumed migration", v)
	}
}

// TestOpenDropsImpossibleLocations: a location into a missing pack or past
// a pack's end (damage below the store) loses that chunk, not the store.
func TestOpenDropsImpossibleLocations(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := chunker.SHA256
	a, b, c := []byte("chunk a"), []byte("chunk b"), []byte("chunk c")
	for _, d := range [][]byte{a, b, c} {
		if err := db.Put(ctx, h.ID(h.Sum(d)), d); err != nil {
			t.Fatal(err)
		}
	}
	idA, idB := h.ID(h.Sum(a)), h.ID(h.Sum(b))
	err = db.rawUpdate(func(txn *badger.Txn) error {
		if err := txn.Set(chunkKey(idA), encodeLoc(loc{pack: 99, off: 100, size: 7})); err != nil {
			return err
		}
		return txn.Set(chunkKey(idB), encodeLoc(loc{pack: 1, off: 1 << 30, size: 7}))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = mustOpen(t, dir)
	for _, id := range []cid.Cid{idA, idB} {
		if ok, _ := db.Has(ctx, id); ok {
			t.Fatalf("chunk %s with an impossible location still held", id)
		}
	}
	if got, err := db.Get(ctx, h.ID(h.Sum(c))); err != nil || !bytes.Equal(got, c) {
		t.Fatalf("intact chunk: %v", err)
	}
}

// TestOpenRemovesEmptyPacks: packs nothing points into (a crash before a
// commit, files left by hand) are removed at Open; files that are not
// packs are left alone.
func TestOpenRemovesEmptyPacks(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	pd := filepath.Join(dir, packDirName)
	for name, data := range map[string]string{"00000007.pack": packMagic, "00000008.pack": "junk", "notes.txt": "x"} {
		if err := os.WriteFile(filepath.Join(pd, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	db = mustOpen(t, dir)
	ents, err := os.ReadDir(pd)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if fmt.Sprint(names) != "[notes.txt]" {
		t.Fatalf("pack directory holds %v; want only notes.txt", names)
	}
	if s := db.Stats(); s.Packs != 0 {
		t.Fatalf("Stats %+v", s)
	}
}

func TestLocAndRecordRoundTrip(t *testing.T) {
	l := loc{pack: 3, off: 12345, size: 65536}
	if got, err := decodeLoc(encodeLoc(l)); err != nil || got != l {
		t.Fatalf("location round trip = %+v, %v", got, err)
	}
	for _, b := range [][]byte{nil, make([]byte, 15), encodeLoc(loc{pack: 0, off: 100, size: 1}),
		encodeLoc(loc{pack: 1, off: 2, size: 1}), encodeLoc(loc{pack: 1, off: 100, size: chunker.MaxChunkCeil + 1})} {
		if _, err := decodeLoc(b); !errors.Is(err, errBadPack) {
			t.Errorf("decodeLoc(%x) = %v; want errBadPack", b, err)
		}
	}
	h := chunker.BLAKE3
	id := h.ID(h.Sum([]byte("x")))
	hdr := appendRecordHeader(nil, id.KeyString(), 4096)
	got, size, n, err := decodeRecordHeader(append(hdr, 1, 2, 3))
	if err != nil || !got.Equals(id) || size != 4096 || n != len(hdr) || int64(n) != recordHeaderLen(id.KeyString()) {
		t.Fatalf("record header round trip = %s, %d, %d, %v", got, size, n, err)
	}
}

// TestFailedSyncRefusesWrites: once a pack cannot be synced, nothing more
// is committed (a later sync could succeed without the lost pages), writes
// are refused, and a reopened store holds what was committed before.
func TestFailedSyncRefusesWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := chunker.SHA256
	a, b, c := []byte("committed"), []byte("pending"), []byte("later")
	if err := db.Put(ctx, h.ID(h.Sum(a)), a); err != nil {
		t.Fatal(err)
	}
	id, err := db.PutIndex(ctx, internalIndex(h, a))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Put(ctx, h.ID(h.Sum(b)), b); err != nil {
		t.Fatal(err)
	}
	db.active.f.Close() // the next sync fails
	if err := db.Pin(ctx, "p", id); err == nil {
		t.Fatal("Pin committed although the pack could not be synced")
	}
	if err := db.Put(ctx, h.ID(h.Sum(c)), c); err == nil || !strings.Contains(err.Error(), "reopened") {
		t.Fatalf("Put after a failed sync = %v; want refusal", err)
	}
	checkLocations(t, db)
	db.crash(t)

	db = mustOpen(t, dir)
	if got, err := db.Get(ctx, h.ID(h.Sum(a))); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("committed chunk after reopening: %v", err)
	}
	if ok, _ := db.Has(ctx, h.ID(h.Sum(b))); ok {
		t.Fatal("a chunk whose pack sync failed was committed")
	}
	if err := db.Put(ctx, h.ID(h.Sum(c)), c); err != nil {
		t.Fatalf("Put after reopening: %v", err)
	}
}
