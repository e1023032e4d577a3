package store

import (
	"bytes"
	"context"
	"errors"
	"testing"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/shoalnet/shoal/chunker"
)

func internalIndex(h chunker.Hash, chunks ...[]byte) *chunker.Index {
	ix := &chunker.Index{Params: chunker.Params{Min: 64, Avg: 4096, Max: 1 << 20}, Hash: h}
	for _, c := range chunks {
		ix.Chunks = append(ix.Chunks, chunker.Entry{Size: uint32(len(c)), Digest: h.Sum(c)})
		ix.Size += int64(len(c))
	}
	return ix
}

func mustOpen(t *testing.T, dir string, opts ...Option) *DB {
	t.Helper()
	db, err := Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestGetIndexOfCorruptedIndex(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t, t.TempDir())
	ix := internalIndex(chunker.SHA256, bytes.Repeat([]byte{1}, 100), bytes.Repeat([]byte{2}, 200))
	id, err := db.PutIndex(ctx, ix)
	if err != nil {
		t.Fatal(err)
	}
	// A flipped byte in the magic no longer decodes.
	if err := db.flipByte(indexKey(id), 0); err != nil {
		t.Fatal(err)
	}
	_, err = db.GetIndex(ctx, id)
	if !errors.Is(err, chunker.ErrMalformedIndex) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GetIndex of a damaged index = %v; want ErrMalformedIndex and ErrCorrupt", err)
	}
	t.Log(err)

	// A flipped byte inside a digest still decodes but no longer hashes to
	// the index's ID.
	if _, err := db.PutIndex(ctx, ix); err != nil { // PutIndex repairs it
		t.Fatal(err)
	}
	if _, err := db.GetIndex(ctx, id); err != nil {
		t.Fatalf("GetIndex after PutIndex repaired it: %v", err)
	}
	if err := db.flipByte(indexKey(id), 48+4+5); err != nil {
		t.Fatal(err)
	}
	_, err = db.GetIndex(ctx, id)
	var ce *CorruptError
	if !errors.As(err, &ce) || !ce.ID.Equals(id) || ce.Got.Equals(id) {
		t.Fatalf("GetIndex of an index with a damaged digest = %v; want *CorruptError", err)
	}
}

func TestGetOfCorruptedChunk(t *testing.T) {
	ctx := context.Background()
	db := mustOpen(t, t.TempDir())
	h := chunker.BLAKE3
	data := bytes.Repeat([]byte("chunk"), 2000)
	id := h.ID(h.Sum(data))
	if err := db.Put(ctx, id, data); err != nil {
		t.Fatal(err)
	}
	if err := db.flipByte(chunkKey(id), 1234); err != nil {
		t.Fatal(err)
	}
	_, err := db.Get(ctx, id)
	var ce *CorruptError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || !ce.ID.Equals(id) {
		t.Fatalf("Get of a damaged chunk = %v; want *CorruptError", err)
	}
	// Delete drops it so that it can be fetched again.
	if err := db.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := db.Put(ctx, id, data); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Get(ctx, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after Delete and Put: %v", err)
	}
}

// A pinned index that cannot be read leaves the store unable to tell which
// chunks are pinned: GC and eviction must stop rather than guess.
func TestUnreadablePinnedIndexStopsGC(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const size = 1024
	db, err := Open(dir, WithCacheLimit(2*size))
	if err != nil {
		t.Fatal(err)
	}
	h := chunker.SHA256
	a, b, c := bytes.Repeat([]byte{'a'}, size), bytes.Repeat([]byte{'b'}, size), bytes.Repeat([]byte{'c'}, size)
	ix := internalIndex(h, a)
	id, err := db.PutIndex(ctx, ix)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Pin(ctx, "rootfs", id); err != nil {
		t.Fatal(err)
	}
	for _, d := range [][]byte{a, b} {
		if err := db.Put(ctx, h.ID(h.Sum(d)), d); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.flipByte(indexKey(id), 0); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = mustOpen(t, dir, WithCacheLimit(2*size))
	if _, err := db.GC(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("GC with an unreadable pinned index = %v; want refusal wrapping ErrCorrupt", err)
	}
	if err := db.Put(ctx, h.ID(h.Sum(c)), c); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Put needing eviction with an unreadable pinned index = %v; want refusal", err)
	}
	if s := db.Stats(); s.Chunks != 2 {
		t.Fatalf("chunks were removed while pins were unknown: %+v", s)
	}
	// Storing the index again repairs it, and everything works again.
	if _, err := db.PutIndex(ctx, ix); err != nil {
		t.Fatal(err)
	}
	if err := db.Put(ctx, h.ID(h.Sum(c)), c); err != nil {
		t.Fatalf("Put after repair: %v", err)
	}
	if ok, _ := db.Has(ctx, h.ID(h.Sum(a))); !ok {
		t.Fatal("pinned chunk evicted after repair")
	}
}

// Open rebuilds the in-memory view from the chunks, even when access
// records are missing, damaged or left over from a deleted chunk.
func TestOpenRepairsAccessRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := chunker.SHA256
	x, y := bytes.Repeat([]byte{'x'}, 3000), bytes.Repeat([]byte{'y'}, 5000)
	idX, idY := h.ID(h.Sum(x)), h.ID(h.Sum(y))
	if err := db.Put(ctx, idX, x); err != nil {
		t.Fatal(err)
	}
	if err := db.Put(ctx, idY, y); err != nil {
		t.Fatal(err)
	}
	orphan := h.ID(h.Sum([]byte("gone")))
	err = db.rawUpdate(func(txn *badger.Txn) error {
		if err := txn.Delete(accessKey(idX.KeyString())); err != nil {
			return err
		}
		if err := txn.Set(accessKey(idY.KeyString()), []byte("short")); err != nil {
			return err
		}
		return txn.Set(accessKey(orphan.KeyString()), encodeAccess(99, 123))
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = mustOpen(t, dir)
	if s := db.Stats(); s.Chunks != 2 || s.Bytes != int64(len(x)+len(y)) {
		t.Fatalf("Stats after repair = %+v; want 2 chunks, %d bytes", s, len(x)+len(y))
	}
	if ok, _ := db.Has(ctx, orphan); ok {
		t.Fatal("an orphan access record became a chunk")
	}
	err = db.bdb.View(func(txn *badger.Txn) error {
		_, err := txn.Get(accessKey(orphan.KeyString()))
		return err
	})
	if !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatalf("orphan access record still stored: %v", err)
	}
}

func TestAccessRecordRoundTrip(t *testing.T) {
	use, size, err := decodeAccess(encodeAccess(12345, 65536))
	if err != nil || use != 12345 || size != 65536 {
		t.Fatalf("round trip = %d, %d, %v", use, size, err)
	}
	for _, b := range [][]byte{nil, make([]byte, 15), make([]byte, 17), encodeAccess(1, 1<<41)} {
		if _, _, err := decodeAccess(b); !errors.Is(err, errBadRecord) {
			t.Errorf("decodeAccess(%x) = %v; want errBadRecord", b, err)
		}
	}
}
