// Package storetest holds the conformance suites that every chunk source
// and chunk store passes: [Run] for the read side ([store.Source]) and
// [RunWritable] for stores that also take chunks ([store.ReadWriter]).
//
// A new implementation (a peer, the origin, a fault-injecting wrapper) gets
// the same checks as the built-in ones by calling these from its tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, chunks [][]byte) (store.Source, []cid.Cid) {
//			h := storetest.Hash(t) // name chunks with the hash under test
//			...
//		})
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/store"
)

// Hashes are the hash functions every suite runs with, one subtest each.
var Hashes = []chunker.Hash{chunker.SHA256, chunker.BLAKE3}

// hashes maps a running subtest to the hash function it tests.
var hashes sync.Map // *testing.T → chunker.Hash

// Hash returns the hash function whose IDs the factory given to [Run] must
// use for the chunks it is handed. Call it only with the *testing.T that
// Run passed to the factory.
func Hash(t *testing.T) chunker.Hash {
	t.Helper()
	h, ok := hashes.Load(t)
	if !ok {
		t.Fatalf("storetest.Hash: %s is not a test that storetest.Run started", t.Name())
	}
	return h.(chunker.Hash)
}

func withHash(t *testing.T, h chunker.Hash) {
	hashes.Store(t, h)
	t.Cleanup(func() { hashes.Delete(t) })
}

// Chunks returns the test chunks the suites use: sizes from 100 bytes to
// 256 KiB, deterministic content, and one all-zero chunk twice (images
// repeat chunks; a source must cope with the same ID at two places).
func Chunks() [][]byte {
	r := rand.New(rand.NewPCG(0x5ee0a1, 0x5107e))
	sizes := []int{100, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10}
	var chunks [][]byte
	for i := range 20 {
		n := sizes[i%len(sizes)] + r.IntN(200)
		n = min(n, chunker.DefaultParams.Max)
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		chunks = append(chunks, b)
		if i == 7 || i == 13 {
			chunks = append(chunks, make([]byte, 32<<10))
		}
	}
	return chunks
}

// IDs returns the chunk ID of each chunk under h.
func IDs(h chunker.Hash, chunks [][]byte) []cid.Cid {
	ids := make([]cid.Cid, len(chunks))
	for i, c := range chunks {
		ids[i] = h.ID(h.Sum(c))
	}
	return ids
}

// Filled adapts a writable store's factory to [Run]: it opens a store and
// Puts the chunks under the hash under test.
func Filled(open func(t *testing.T) store.ReadWriter) func(t *testing.T, chunks [][]byte) (store.Source, []cid.Cid) {
	return func(t *testing.T, chunks [][]byte) (store.Source, []cid.Cid) {
		t.Helper()
		s := open(t)
		ids := IDs(Hash(t), chunks)
		for i, c := range chunks {
			if err := s.Put(context.Background(), ids[i], c); err != nil {
				t.Fatalf("Put chunk %d (%s): %v", i, ids[i], err)
			}
		}
		return s, ids
	}
}

// Run checks the read contract of [store.Source]: open must return a
// source holding exactly the given chunks, named with [Hash](t), and their
// IDs in order. It is called once per hash function.
func Run(t *testing.T, open func(t *testing.T, chunks [][]byte) (src store.Source, ids []cid.Cid)) {
	for _, h := range Hashes {
		t.Run(h.String(), func(t *testing.T) {
			withHash(t, h)
			// The factory gets its own copy, so a source that keeps the
			// caller's slices cannot hide it by sharing them with the suite.
			chunks := Chunks()
			src, ids := open(t, Chunks())
			want := IDs(h, chunks)
			if len(ids) != len(want) {
				t.Fatalf("factory returned %d IDs for %d chunks", len(ids), len(chunks))
			}
			for i := range ids {
				if !ids[i].Equals(want[i]) {
					t.Fatalf("factory's ID %d is %s, want %s (chunk named with storetest.Hash?)", i, ids[i], want[i])
				}
			}
			t.Run("Get", func(t *testing.T) { testGet(t, src, ids, chunks) })
			t.Run("Has", func(t *testing.T) { testHas(t, src, ids, h) })
			t.Run("NotFound", func(t *testing.T) { testNotFound(t, src, h) })
			t.Run("IndependentBuffers", func(t *testing.T) { testIndependent(t, src, ids, chunks) })
			t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, src, ids, chunks) })
			t.Run("Canceled", func(t *testing.T) { testCanceled(t, src, ids[0]) })
		})
	}
}

func testGet(t *testing.T, src store.Source, ids []cid.Cid, chunks [][]byte) {
	ctx := context.Background()
	for i, id := range ids {
		got, err := src.Get(ctx, id)
		if err != nil {
			t.Fatalf("Get chunk %d (%s): %v", i, id, err)
		}
		if !bytes.Equal(got, chunks[i]) {
			t.Fatalf("Get chunk %d (%s): %d bytes differ from the %d stored", i, id, len(got), len(chunks[i]))
		}
	}
}

// unknownIDs are IDs that no source built from Chunks holds: a digest of
// other bytes, the digest of a held chunk under the other hash function's
// code, and IDs that are not chunk IDs at all.
func unknownIDs(h chunker.Hash) []cid.Cid {
	other := chunker.SHA256
	if h == chunker.SHA256 {
		other = chunker.BLAKE3
	}
	held := h.Sum(Chunks()[0])
	pb, _ := mh.Sum([]byte("x"), mh.SHA2_256, -1)
	return []cid.Cid{
		h.ID(h.Sum([]byte("storetest: not stored"))),
		other.ID(held),
		cid.NewCidV1(cid.DagProtobuf, pb),
		cid.NewCidV0(pb),
	}
}

func testHas(t *testing.T, src store.Source, ids []cid.Cid, h chunker.Hash) {
	ctx := context.Background()
	for i, id := range ids {
		ok, err := src.Has(ctx, id)
		if err != nil || !ok {
			t.Fatalf("Has chunk %d (%s) = %v, %v; want true, nil", i, id, ok, err)
		}
	}
	for _, id := range unknownIDs(h) {
		ok, err := src.Has(ctx, id)
		if err != nil || ok {
			t.Fatalf("Has unknown %s = %v, %v; want false, nil", id, ok, err)
		}
	}
}

func testNotFound(t *testing.T, src store.Source, h chunker.Hash) {
	for _, id := range unknownIDs(h) {
		b, err := src.Get(context.Background(), id)
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get unknown %s = %d bytes, %v; want error wrapping ErrNotFound", id, len(b), err)
		}
		if !strings.Contains(err.Error(), id.String()) {
			t.Fatalf("Get unknown %s: error %q does not name the ID", id, err)
		}
	}
}

func testIndependent(t *testing.T, src store.Source, ids []cid.Cid, chunks [][]byte) {
	ctx := context.Background()
	for i, id := range ids {
		a, err := src.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for j := range a {
			a[j] ^= 0xff
		}
		b, err := src.Get(ctx, id)
		if err != nil {
			t.Fatalf("Get chunk %d again after changing the first copy: %v", i, err)
		}
		if !bytes.Equal(b, chunks[i]) {
			t.Fatalf("chunk %d: changing a returned buffer changed what a later Get returns", i)
		}
	}
}

func testConcurrent(t *testing.T, src store.Source, ids []cid.Cid, chunks [][]byte) {
	const workers, rounds = 8, 3
	ctx := context.Background()
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				for k := range ids {
					i := (k + w*7 + r) % len(ids) // each worker in its own order
					got, err := src.Get(ctx, ids[i])
					if err == nil && !bytes.Equal(got, chunks[i]) {
						err = fmt.Errorf("chunk %d: wrong bytes under concurrency", i)
					}
					if err == nil {
						_, err = src.Has(ctx, ids[i])
					}
					if err != nil {
						errs <- fmt.Errorf("worker %d: %w", w, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testCanceled(t *testing.T, src store.Source, id cid.Cid) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b, err := src.Get(ctx, id); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context = %d bytes, %v; want error wrapping context.Canceled", len(b), err)
	}
	if ok, err := src.Has(ctx, id); !errors.Is(err, context.Canceled) {
		t.Errorf("Has with a canceled context = %v, %v; want error wrapping context.Canceled", ok, err)
	}
}

// RunWritable checks the write contract of [store.Sink] on stores from
// open, which must return a new, empty store each call. Run the read suite
// too, with [Filled](open).
func RunWritable(t *testing.T, open func(t *testing.T) store.ReadWriter) {
	for _, h := range Hashes {
		t.Run(h.String(), func(t *testing.T) {
			t.Run("PutGet", func(t *testing.T) { testPutGet(t, open(t), h) })
			t.Run("CallerKeepsBuffer", func(t *testing.T) { testCallerBuffer(t, open(t), h) })
			t.Run("Mismatch", func(t *testing.T) { testMismatch(t, open(t), h) })
			t.Run("DoublePut", func(t *testing.T) { testDoublePut(t, open(t), h) })
			t.Run("ConcurrentPut", func(t *testing.T) { testConcurrentPut(t, open(t), h) })
			t.Run("Canceled", func(t *testing.T) { testPutCanceled(t, open(t), h) })
		})
	}
	t.Run("BadID", func(t *testing.T) { testBadID(t, open(t)) })
}

func testPutGet(t *testing.T, s store.ReadWriter, h chunker.Hash) {
	ctx := context.Background()
	chunks := Chunks()
	ids := IDs(h, chunks)
	seen := make(map[cid.Cid]bool)
	for i, id := range ids {
		if seen[id] {
			continue // the repeated zero chunk
		}
		seen[id] = true
		if ok, err := s.Has(ctx, id); err != nil || ok {
			t.Fatalf("Has chunk %d before Put = %v, %v; want false, nil", i, ok, err)
		}
		if err := s.Put(ctx, id, chunks[i]); err != nil {
			t.Fatalf("Put chunk %d (%s): %v", i, id, err)
		}
		if ok, err := s.Has(ctx, id); err != nil || !ok {
			t.Fatalf("Has chunk %d after Put = %v, %v; want true, nil", i, ok, err)
		}
	}
	for i, id := range ids {
		got, err := s.Get(ctx, id)
		if err != nil || !bytes.Equal(got, chunks[i]) {
			t.Fatalf("Get chunk %d (%s) after Put: %d bytes, %v", i, id, len(got), err)
		}
	}
}

func testCallerBuffer(t *testing.T, s store.ReadWriter, h chunker.Hash) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("caller's buffer "), 4096)
	orig := bytes.Clone(data)
	id := h.ID(h.Sum(data))
	if err := s.Put(ctx, id, data); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 0
	}
	got, err := s.Get(ctx, id)
	if err != nil || !bytes.Equal(got, orig) {
		t.Fatalf("after the caller reused its buffer, Get = %d bytes, %v; want the bytes as put", len(got), err)
	}
}

func testMismatch(t *testing.T, s store.ReadWriter, h chunker.Hash) {
	ctx := context.Background()
	chunks := Chunks()
	claimed := h.ID(h.Sum(chunks[1]))
	actual := h.ID(h.Sum(chunks[2]))
	err := s.Put(ctx, claimed, chunks[2])
	if !errors.Is(err, store.ErrMismatch) {
		t.Fatalf("Put of bytes under another chunk's ID = %v; want error wrapping ErrMismatch", err)
	}
	for _, id := range []cid.Cid{claimed, actual} {
		if !strings.Contains(err.Error(), id.String()) {
			t.Errorf("mismatch error %q does not name %s", err, id)
		}
	}
	for _, id := range []cid.Cid{claimed, actual} {
		if ok, err := s.Has(ctx, id); err != nil || ok {
			t.Errorf("Has %s after a refused Put = %v, %v; want false, nil", id, ok, err)
		}
	}
	if _, err := s.Get(ctx, claimed); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of the claimed ID after a refused Put = %v; want ErrNotFound", err)
	}
	// A single flipped bit is refused too.
	bad := bytes.Clone(chunks[3])
	bad[len(bad)/2] ^= 1
	if err := s.Put(ctx, h.ID(h.Sum(chunks[3])), bad); !errors.Is(err, store.ErrMismatch) {
		t.Errorf("Put with one flipped bit = %v; want ErrMismatch", err)
	}
}

func testDoublePut(t *testing.T, s store.ReadWriter, h chunker.Hash) {
	ctx := context.Background()
	data := Chunks()[4]
	id := h.ID(h.Sum(data))
	for i := range 3 {
		if err := s.Put(ctx, id, data); err != nil {
			t.Fatalf("Put #%d of the same chunk: %v", i+1, err)
		}
	}
	got, err := s.Get(ctx, id)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after repeated Put: %d bytes, %v", len(got), err)
	}
}

func testConcurrentPut(t *testing.T, s store.ReadWriter, h chunker.Hash) {
	ctx := context.Background()
	chunks := Chunks()
	ids := IDs(h, chunks)
	const workers = 4
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range ids {
				i := (k + w*5) % len(ids)
				if err := s.Put(ctx, ids[i], chunks[i]); err != nil {
					errs <- err
					return
				}
				got, err := s.Get(ctx, ids[i])
				if err == nil && !bytes.Equal(got, chunks[i]) {
					err = fmt.Errorf("chunk %d: wrong bytes after concurrent Put", i)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testPutCanceled(t *testing.T, s store.ReadWriter, h chunker.Hash) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	data := Chunks()[5]
	id := h.ID(h.Sum(data))
	if err := s.Put(ctx, id, data); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a canceled context = %v; want error wrapping context.Canceled", err)
	}
	if ok, err := s.Has(context.Background(), id); err != nil || ok {
		t.Fatalf("Has after a canceled Put = %v, %v; want false, nil", ok, err)
	}
}

// badIDs are CIDs Put must refuse for data: right bytes, wrong kind of ID.
func badIDs(t *testing.T, data []byte) map[string]cid.Cid {
	sum := func(code uint64, length int) mh.Multihash {
		m, err := mh.Sum(data, code, length)
		if err != nil {
			t.Fatalf("multihash %x: %v", code, err)
		}
		return m
	}
	return map[string]cid.Cid{
		"undefined":            cid.Undef,
		"CIDv0":                cid.NewCidV0(sum(mh.SHA2_256, -1)),
		"dag-pb codec":         cid.NewCidV1(cid.DagProtobuf, sum(mh.SHA2_256, -1)),
		"sha2-512":             cid.NewCidV1(cid.Raw, sum(mh.SHA2_512, -1)),
		"sha1":                 cid.NewCidV1(cid.Raw, sum(mh.SHA1, -1)),
		"truncated sha2-256":   cid.NewCidV1(cid.Raw, sum(mh.SHA2_256, 20)),
		"identity":             cid.NewCidV1(cid.Raw, sum(mh.IDENTITY, -1)),
		"blake3 16-byte":       cid.NewCidV1(cid.Raw, sum(mh.BLAKE3, 16)),
		"blake3 64-byte (xof)": cid.NewCidV1(cid.Raw, sum(mh.BLAKE3, 64)),
	}
}

func testBadID(t *testing.T, s store.ReadWriter) {
	ctx := context.Background()
	data := []byte("a chunk put under an ID that is not a chunk ID")
	for name, id := range badIDs(t, data) {
		err := s.Put(ctx, id, data)
		if !errors.Is(err, chunker.ErrBadID) {
			t.Errorf("Put with %s ID %s = %v; want error wrapping chunker.ErrBadID", name, id, err)
		}
		if ok, err := s.Has(ctx, id); err != nil || ok {
			t.Errorf("Has %s ID after refused Put = %v, %v; want false, nil", name, ok, err)
		}
	}
}
