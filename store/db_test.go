package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/store"
)

// testChunks returns n chunks of size bytes with content from seed.
func testChunks(seed uint64, n, size int) [][]byte {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([][]byte, n)
	for i := range out {
		b := make([]byte, size)
		for j := 0; j < len(b); j += 8 {
			v := r.Uint64()
			for k := 0; k < 8 && j+k < len(b); k++ {
				b[j+k] = byte(v >> (8 * k))
			}
		}
		out[i] = b
	}
	return out
}

func ids(h chunker.Hash, chunks [][]byte) []cid.Cid {
	out := make([]cid.Cid, len(chunks))
	for i, c := range chunks {
		out[i] = h.ID(h.Sum(c))
	}
	return out
}

// indexOf builds a valid index over chunks in order.
func indexOf(h chunker.Hash, chunks ...[]byte) *chunker.Index {
	ix := &chunker.Index{Params: chunker.Params{Min: 64, Avg: 4096, Max: 1 << 20}, Hash: h}
	for _, c := range chunks {
		ix.Chunks = append(ix.Chunks, chunker.Entry{Size: uint32(len(c)), Digest: h.Sum(c)})
		ix.Size += int64(len(c))
	}
	return ix
}

func put(t testing.TB, db *store.DB, h chunker.Hash, chunks ...[]byte) {
	t.Helper()
	for _, c := range chunks {
		if err := db.Put(context.Background(), h.ID(h.Sum(c)), c); err != nil {
			t.Fatal(err)
		}
	}
}

func has(t testing.TB, db *store.DB, h chunker.Hash, c []byte) bool {
	t.Helper()
	ok, err := db.Has(context.Background(), h.ID(h.Sum(c)))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func reopen(t *testing.T, db *store.DB, dir string, opts ...store.Option) *store.DB {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestGCKeepsOnlyPinnedChunks(t *testing.T) {
	ctx := context.Background()
	h := chunker.SHA256
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	c := testChunks(1, 6, 8<<10)
	a1, a2, s1, s2, b1, loose := c[0], c[1], c[2], c[3], c[4], c[5]
	put(t, db, h, c...)
	ixA, ixB := indexOf(h, a1, s1, a2, s2), indexOf(h, s1, b1, s2)
	idA, err := db.PutIndex(ctx, ixA)
	if err != nil {
		t.Fatal(err)
	}
	idB, err := db.PutIndex(ctx, ixB)
	if err != nil {
		t.Fatal(err)
	}
	if !idA.Equals(ixA.CID()) {
		t.Fatalf("PutIndex returned %s, index CID is %s", idA, ixA.CID())
	}
	if err := db.Pin(ctx, "rootfs-a", idA); err != nil {
		t.Fatal(err)
	}
	if err := db.Pin(ctx, "rootfs-b", idB); err != nil {
		t.Fatal(err)
	}

	st, err := db.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.RemovedChunks != 1 || st.RemovedBytes != int64(len(loose)) || st.KeptChunks != 5 {
		t.Fatalf("first GC: %+v; want only the loose chunk removed", st)
	}
	if has(t, db, h, loose) {
		t.Fatal("loose chunk survived GC")
	}

	if err := db.Unpin(ctx, "rootfs-a"); err != nil {
		t.Fatal(err)
	}
	st, err = db.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.RemovedChunks != 2 || st.RemovedBytes != int64(len(a1)+len(a2)) {
		t.Fatalf("GC after unpinning A: %+v; want A's two unique chunks (%d bytes) removed", st, len(a1)+len(a2))
	}
	check := func(db *store.DB) {
		t.Helper()
		for name, want := range map[string]bool{"a1": false, "a2": false, "s1": true, "s2": true, "b1": true} {
			chunk := map[string][]byte{"a1": a1, "a2": a2, "s1": s1, "s2": s2, "b1": b1}[name]
			if got := has(t, db, h, chunk); got != want {
				t.Errorf("Has %s = %v, want %v", name, got, want)
			}
			if want {
				got, err := db.Get(ctx, h.ID(h.Sum(chunk)))
				if err != nil || !bytes.Equal(got, chunk) {
					t.Errorf("Get %s: %v", name, err)
				}
			}
		}
		pins, err := db.Pins(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(pins) != 1 || !pins["rootfs-b"].Equals(idB) {
			t.Errorf("Pins = %v, want only rootfs-b → %s", pins, idB)
		}
		if s := db.Stats(); s.Chunks != 3 || s.Bytes != int64(len(s1)+len(s2)+len(b1)) || s.PinnedChunks != 3 {
			t.Errorf("Stats = %+v", s)
		}
	}
	check(db)

	db = reopen(t, db, dir)
	check(db)
	if st, err := db.GC(ctx); err != nil || st.RemovedChunks != 0 {
		t.Fatalf("GC after reopen = %+v, %v; want nothing removed", st, err)
	}
	// The unpinned index itself is kept (indexes are metadata) and can be
	// pinned again.
	if _, err := db.GetIndex(ctx, idA); err != nil {
		t.Fatalf("GetIndex of the unpinned index: %v", err)
	}
}

func TestPinRefusesMissingIndex(t *testing.T) {
	ctx := context.Background()
	db := openDB(t)
	ix := indexOf(chunker.SHA256, testChunks(2, 2, 1024)...)
	err := db.Pin(ctx, "rootfs", ix.CID())
	if !errors.Is(err, store.ErrNoIndex) || !strings.Contains(err.Error(), ix.CID().String()) {
		t.Fatalf("Pin of an index the store does not hold = %v; want ErrNoIndex naming it", err)
	}
	if pins, _ := db.Pins(ctx); len(pins) != 0 {
		t.Fatalf("refused Pin left pins %v", pins)
	}
	if err := db.Unpin(ctx, "rootfs"); !errors.Is(err, store.ErrNoPin) {
		t.Fatalf("Unpin of an unknown name = %v; want ErrNoPin", err)
	}
	for _, name := range []string{"", strings.Repeat("x", 2000), "\xff"} {
		if err := db.Pin(ctx, name, ix.CID()); err == nil {
			t.Errorf("Pin with name %q accepted", name)
		}
	}
	id, err := db.PutIndex(ctx, ix)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteIndex(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetIndex(ctx, id); !errors.Is(err, store.ErrNoIndex) {
		t.Fatalf("GetIndex after DeleteIndex = %v; want ErrNoIndex", err)
	}
	if _, err := db.PutIndex(ctx, ix); err != nil {
		t.Fatal(err)
	}
	if err := db.Pin(ctx, "rootfs", id); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteIndex(ctx, id); err == nil || !strings.Contains(err.Error(), "rootfs") {
		t.Fatalf("DeleteIndex of a pinned index = %v; want refusal naming the pin", err)
	}
}

func TestPutIndexRefusesInvalid(t *testing.T) {
	db := openDB(t)
	ix := indexOf(chunker.SHA256, testChunks(3, 3, 1024)...)
	ix.Size++ // header no longer matches the chunks
	if _, err := db.PutIndex(context.Background(), ix); !errors.Is(err, chunker.ErrMalformedIndex) {
		t.Fatalf("PutIndex of an inconsistent index = %v; want ErrMalformedIndex", err)
	}
	ix.Size--
	ix.Hash = 0x99
	if _, err := db.PutIndex(context.Background(), ix); !errors.Is(err, chunker.ErrMalformedIndex) {
		t.Fatalf("PutIndex with an unknown hash = %v; want ErrMalformedIndex", err)
	}
}

func TestPutMismatchNamesBothIDs(t *testing.T) {
	db := openDB(t)
	h := chunker.BLAKE3
	c := testChunks(4, 2, 4096)
	claimed, actual := h.ID(h.Sum(c[0])), h.ID(h.Sum(c[1]))
	err := db.Put(context.Background(), claimed, c[1])
	if !errors.Is(err, store.ErrMismatch) {
		t.Fatalf("Put = %v; want ErrMismatch", err)
	}
	want := fmt.Sprintf("store: put %s: bytes hash to %s: %v", claimed, actual, store.ErrMismatch)
	if err.Error() != want {
		t.Fatalf("error\n %q\nwant\n %q", err, want)
	}
	if s := db.Stats(); s.Chunks != 0 {
		t.Fatalf("refused Put stored something: %+v", s)
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	h := chunker.SHA256
	const size = 4096
	limit := store.WithCacheLimit(4 * size)
	dir := t.TempDir()
	db, err := store.Open(dir, limit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := testChunks(5, 8, size)
	get := func(i int) {
		t.Helper()
		if _, err := db.Get(ctx, h.ID(h.Sum(c[i]))); err != nil {
			t.Fatalf("Get c%d: %v", i, err)
		}
	}
	held := func(want ...int) {
		t.Helper()
		var got []int
		for i := range c {
			if has(t, db, h, c[i]) {
				got = append(got, i)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("held chunks %v, want %v", got, want)
		}
		if s := db.Stats(); s.Bytes > 4*size {
			t.Fatalf("cache holds %d bytes, limit %d", s.Bytes, 4*size)
		}
	}

	put(t, db, h, c[0], c[1], c[2], c[3])
	get(0) // c0 is now the most recently used; c1 the least
	put(t, db, h, c[4])
	held(0, 2, 3, 4)

	// Pin c2 (the least recently used now): eviction must pass over it.
	id, err := db.PutIndex(ctx, indexOf(h, c[2]))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Pin(ctx, "keep", id); err != nil {
		t.Fatal(err)
	}
	put(t, db, h, c[5]) // evicts c3, not the pinned c2
	held(0, 2, 4, 5)
	put(t, db, h, c[0]) // a repeated Put counts as a use: now c4 is oldest

	// Recency survives a restart: after reopening, c4 is still the least
	// recently used although c0 was put first.
	db = reopen(t, db, dir, limit)
	held(0, 2, 4, 5)
	put(t, db, h, c[6])
	held(0, 2, 5, 6)
	get(5)
	db = reopen(t, db, dir, limit)
	put(t, db, h, c[7]) // c0 is oldest now (its last use came before c6's Put)
	held(2, 5, 6, 7)
	if s := db.Stats(); s.PinnedChunks != 1 || s.PinnedBytes != size || s.Limit != 4*size {
		t.Fatalf("Stats = %+v", s)
	}
}

func TestCacheFullOfPinnedData(t *testing.T) {
	ctx := context.Background()
	h := chunker.SHA256
	const size = 4096
	db := openDB(t, store.WithCacheLimit(3*size))
	c := testChunks(6, 6, size)
	// A pinned release of four chunks: more than the limit.
	id, err := db.PutIndex(ctx, indexOf(h, c[0], c[1], c[2], c[3]))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Pin(ctx, "release", id); err != nil {
		t.Fatal(err)
	}
	put(t, db, h, c[4]) // unpinned, fits
	put(t, db, h, c[0], c[1])
	// Putting c2 needs the unpinned c4's room: it is evicted.
	put(t, db, h, c[2])
	if has(t, db, h, c[4]) {
		t.Fatal("unpinned chunk kept while pinned data needed the room")
	}
	// Pinned chunks are taken past the limit; nothing pinned is evicted.
	put(t, db, h, c[3])
	if s := db.Stats(); s.Bytes != 4*size || s.PinnedBytes != 4*size {
		t.Fatalf("Stats = %+v; want all four pinned chunks held", s)
	}
	err = db.Put(ctx, h.ID(h.Sum(c[5])), c[5])
	if !errors.Is(err, store.ErrCacheFull) {
		t.Fatalf("Put of an unpinned chunk into a cache full of pinned data = %v; want ErrCacheFull", err)
	}
	for i := range 4 {
		if !has(t, db, h, c[i]) {
			t.Fatalf("pinned chunk c%d was evicted", i)
		}
	}
	// Unpinning makes room again: the next Put evicts old chunks.
	if err := db.Unpin(ctx, "release"); err != nil {
		t.Fatal(err)
	}
	put(t, db, h, c[5])
	if s := db.Stats(); s.Bytes > 3*size {
		t.Fatalf("after unpinning, cache holds %d bytes over its limit %d", s.Bytes, 3*size)
	}
}

func TestCacheTrimsOnOpenWithSmallerLimit(t *testing.T) {
	h := chunker.SHA256
	dir := t.TempDir()
	db, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := testChunks(7, 5, 4096)
	put(t, db, h, c...)
	if _, err := db.Get(context.Background(), h.ID(h.Sum(c[0]))); err != nil {
		t.Fatal(err)
	}
	db = reopen(t, db, dir, store.WithCacheLimit(2*4096))
	for i, want := range []bool{true, false, false, false, true} {
		if got := has(t, db, h, c[i]); got != want {
			t.Errorf("after trimming, Has c%d = %v, want %v", i, got, want)
		}
	}
}

func TestClosedDB(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	id := chunker.SHA256.ID(chunker.SHA256.Sum(nil))
	if _, err := db.Get(context.Background(), id); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Get after Close = %v; want ErrClosed", err)
	}
	if err := db.Put(context.Background(), id, nil); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Put after Close = %v; want ErrClosed", err)
	}
}

func TestOpenOptions(t *testing.T) {
	if _, err := store.Open(t.TempDir(), store.WithCacheLimit(0)); err == nil {
		t.Fatal("Open accepted a zero cache limit")
	}
	if _, err := store.Open(t.TempDir(), store.WithLogger(nil)); err == nil {
		t.Fatal("Open accepted a nil logger")
	}
}

// TestDBMemory checks that the badger settings keep a store with a few
// thousand 64 KiB chunks small in memory. Badger's default options would
// allocate a 64 MiB memtable arena at once (and up to five of them).
func TestDBMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 190 MiB")
	}
	heap := func() uint64 {
		runtime.GC()
		debug.FreeOSMemory()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()
	db := openDB(t)
	h := chunker.SHA256
	const n, size = 3000, 64 << 10
	ctx := context.Background()
	buf := make([]byte, size)
	r := rand.New(rand.NewPCG(8, 8))
	list := make([]cid.Cid, 0, n)
	for range n {
		for j := 0; j < size; j += 8 {
			v := r.Uint64()
			for k := range 8 {
				buf[j+k] = byte(v >> (8 * k))
			}
		}
		id := h.ID(h.Sum(buf))
		if err := db.Put(ctx, id, buf); err != nil {
			t.Fatal(err)
		}
		list = append(list, id)
	}
	for _, id := range list {
		if _, err := db.Get(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	after := heap()
	grew := int64(after) - int64(before)
	t.Logf("heap in use grew by %.1f MiB for %d chunks of %d KiB", float64(grew)/(1<<20), n, size>>10)
	if grew > 48<<20 {
		t.Fatalf("heap in use grew by %d MiB holding %d chunks; want under 48 MiB", grew>>20, n)
	}
	runtime.KeepAlive(db)
}

// TestCacheConcurrent runs Puts, Gets, pins and GCs at once on a small
// cache (run with -race): Gets return the right bytes or ErrNotFound, the
// limit holds throughout, and pinned chunks survive.
func TestCacheConcurrent(t *testing.T) {
	ctx := context.Background()
	h := chunker.SHA256
	const size, limit = 2048, 16 * 2048
	db := openDB(t, store.WithCacheLimit(limit))
	chunks := testChunks(15, 64, size)
	list := ids(h, chunks)
	pinnedIx := indexOf(h, chunks[0], chunks[1])
	id, err := db.PutIndex(ctx, pinnedIx)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Pin(ctx, "base", id); err != nil {
		t.Fatal(err)
	}
	put(t, db, h, chunks[0], chunks[1])

	errs := make(chan error, 8)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 400 {
				i := (k*7 + w*13) % len(chunks)
				if err := db.Put(ctx, list[i], chunks[i]); err != nil {
					errs <- err
					return
				}
				j := (k*5 + w) % len(chunks)
				got, err := db.Get(ctx, list[j])
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					errs <- err
					return
				}
				if err == nil && !bytes.Equal(got, chunks[j]) {
					errs <- fmt.Errorf("chunk %d: wrong bytes", j)
					return
				}
				if s := db.Stats(); s.Bytes > limit {
					errs <- fmt.Errorf("cache holds %d bytes, limit %d", s.Bytes, limit)
					return
				}
			}
		}()
	}
	var gc sync.WaitGroup
	gc.Add(1)
	go func() {
		defer gc.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := db.GC(ctx); err != nil {
				errs <- err
				return
			}
			if _, err := db.Pins(ctx); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(done)
	gc.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range 2 {
		if !has(t, db, h, chunks[i]) {
			t.Fatalf("pinned chunk %d lost", i)
		}
	}
}

// AppendChunk reads a chunk onto the end of a buffer, leaving what the
// buffer held, and refuses what Get refuses.
func TestAppendChunk(t *testing.T) {
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cs := testChunks(21, 2, 40<<10)
	put(t, db, chunker.SHA256, cs[0])
	id := ids(chunker.SHA256, cs)
	got, err := db.AppendChunk(context.Background(), []byte{7, 8}, id[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2+len(cs[0]) || got[0] != 7 || got[1] != 8 || !bytes.Equal(got[2:], cs[0]) {
		t.Fatalf("AppendChunk: %d bytes, prefix %v", len(got), got[:2])
	}
	if _, err := db.AppendChunk(context.Background(), []byte{7}, id[1]); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AppendChunk of a chunk not held: %v", err)
	}
}
