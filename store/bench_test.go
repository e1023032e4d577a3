package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/store"
)

const benchChunk = 64 << 10

// benchPut measures Put of distinct 64 KiB chunks (hashing included: Put
// verifies every chunk).
func benchPut(b *testing.B, opts ...store.Option) {
	db := openDB(b, opts...)
	h := chunker.SHA256
	buf := testChunks(9, 1, benchChunk)[0]
	ctx := context.Background()
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(buf, uint64(i)) // a new chunk each time
		if err := db.Put(ctx, h.ID(h.Sum(buf)), buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDBPut(b *testing.B) { benchPut(b) }

// BenchmarkDBPutCache puts into a full 16 MiB cache: every Put evicts.
func BenchmarkDBPutCache(b *testing.B) { benchPut(b, store.WithCacheLimit(16<<20)) }

func BenchmarkDBGet(b *testing.B) {
	db := openDB(b)
	h := chunker.SHA256
	chunks := testChunks(10, 256, benchChunk)
	put(b, db, h, chunks...)
	list := ids(h, chunks)
	ctx := context.Background()
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := db.Get(ctx, list[i%len(list)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSlotGet(b *testing.B) {
	h := chunker.SHA256
	chunks := testChunks(11, 256, benchChunk)
	path := writeFile(b, bytes.Join(chunks, nil))
	s, err := store.OpenSlot(path, indexOf(h, chunks...))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	list := ids(h, chunks)
	ctx := context.Background()
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Get(ctx, list[i%len(list)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMemGet(b *testing.B) {
	m := store.NewMem()
	h := chunker.SHA256
	chunks := testChunks(12, 64, benchChunk)
	list := make([]cid.Cid, len(chunks))
	for i, c := range chunks {
		list[i] = h.ID(h.Sum(c))
		if err := m.Put(context.Background(), list[i], c); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := m.Get(context.Background(), list[i%len(list)]); err != nil {
			b.Fatal(err)
		}
	}
}
