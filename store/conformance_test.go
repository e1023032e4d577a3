package store_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/store"
	"github.com/shoalnet/shoal/store/storetest"
)

func openMem(t *testing.T) store.ReadWriter { return store.NewMem() }

func TestMemConformance(t *testing.T) {
	t.Run("Source", func(t *testing.T) { storetest.Run(t, storetest.Filled(openMem)) })
	t.Run("Sink", func(t *testing.T) { storetest.RunWritable(t, openMem) })
}

// openDB opens a DB in a fresh temporary directory and closes it when the
// test ends.
func openDB(t testing.TB, opts ...store.Option) *store.DB {
	t.Helper()
	db, err := store.Open(t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

func TestDBConformance(t *testing.T) {
	modes := map[string][]store.Option{
		"plain": nil,
		// Big enough for every suite's chunks: the suites test the Source
		// and Sink contracts, not eviction.
		"cache": {store.WithCacheLimit(64 << 20)},
	}
	for name, opts := range modes {
		t.Run(name, func(t *testing.T) {
			open := func(t *testing.T) store.ReadWriter { return openDB(t, opts...) }
			t.Run("Source", func(t *testing.T) { storetest.Run(t, storetest.Filled(open)) })
			t.Run("Sink", func(t *testing.T) { storetest.RunWritable(t, open) })
		})
	}
}

// slotIndex builds the index of chunks laid end to end, with parameters
// loose enough for the suite's chunk sizes.
func slotIndex(h chunker.Hash, chunks [][]byte) *chunker.Index {
	ix := &chunker.Index{Params: chunker.Params{Min: 64, Avg: 64 << 10, Max: 1 << 20}, Hash: h}
	for _, c := range chunks {
		ix.Chunks = append(ix.Chunks, chunker.Entry{Size: uint32(len(c)), Digest: h.Sum(c)})
		ix.Size += int64(len(c))
	}
	return ix
}

func TestSlotConformance(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, chunks [][]byte) (store.Source, []cid.Cid) {
			h := storetest.Hash(t)
			path := filepath.Join(t.TempDir(), "slot.img")
			if err := os.WriteFile(path, bytes.Join(chunks, nil), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := store.OpenSlot(path, slotIndex(h, chunks))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s, storetest.IDs(h, chunks)
		})
	})
	t.Run("readerat", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, chunks [][]byte) (store.Source, []cid.Cid) {
			h := storetest.Hash(t)
			s, err := store.NewSlotSource(bytes.NewReader(bytes.Join(chunks, nil)), slotIndex(h, chunks))
			if err != nil {
				t.Fatal(err)
			}
			return s, storetest.IDs(h, chunks)
		})
	})
}
