package exchange_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/store"
	"github.com/shoalnet/shoal/swarm/exchange"
	"github.com/shoalnet/shoal/swarm/sched"
	"github.com/shoalnet/shoal/swarm/wire"
)

// An index is content-addressed like a chunk: its CID is the raw ID of
// its encoding, so wire.DecodeBlock verifies a Block of it.
func TestIndexCIDIsRawIDOfEncoding(t *testing.T) {
	for _, h := range []chunker.Hash{chunker.SHA256, chunker.BLAKE3} {
		ix := syntheticIndex(100, h)
		enc := ix.Encode()
		id, err := chunker.IDOf(h, bytes.NewReader(enc))
		if err != nil || !id.Equals(ix.CID()) {
			t.Fatalf("%v: IDOf(encoding) = %s, %v; CID() = %s", h, id, err, ix.CID())
		}
		data, err := wire.DecodeBlock(nil, &wire.Block{Req: 1, CID: id, Object: object.Encode(nil, enc)}, id, len(enc))
		if err != nil || !bytes.Equal(data, enc) {
			t.Fatalf("%v: DecodeBlock: %v", h, err)
		}
	}
}

// syntheticIndex is an index of n chunks with random digests (nothing
// to split).
func syntheticIndex(n int, h chunker.Hash) *chunker.Index {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	ix := &chunker.Index{Params: smallParams, Hash: h, Chunks: make([]chunker.Entry, n)}
	for i := range ix.Chunks {
		ix.Chunks[i].Size = uint32(smallParams.Min + r.IntN(smallParams.Max-smallParams.Min))
		for k := range ix.Chunks[i].Digest {
			ix.Chunks[i].Digest[k] = byte(r.Uint32())
		}
		ix.Size += int64(ix.Chunks[i].Size)
	}
	return ix
}

// A node fetches an index from a peer that announces it (Engine.Serve),
// through FetchObject and through PeerFetcher as manifest reads it.
func TestFetchIndexServed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rl := makeRelease(t, 1<<20, 11, smallParams)
	s := newNode(t, "seed", exchange.Config{})
	s.seed(rl)
	if _, err := s.e.Serve(ctx, rl.ix); err != nil {
		t.Fatal(err)
	}
	d := newNode(t, "dev", exchange.Config{})
	connect(s, d, sched.WAN)
	// A LAN peer that announces another release and lies when asked:
	// the seed announced the index, so it is asked first, and the liar
	// never.
	enc := rl.ix.Encode()
	startHostile(t, d, "other", makeRelease(t, 256<<10, 99, smallParams), func(h *hostile, m *wire.Want) error {
		h.w.Write(&wire.Block{Req: m.Req, CID: m.CID, Object: append([]byte{object.KindRaw}, enc[1:]...)})
		return h.w.Flush()
	})
	announced(t, d, rl.id, 1)
	waitFor(t, "dev to see both peers", func() bool { return len(d.e.Peers()) == 2 })

	got, err := d.e.FetchObject(ctx, rl.id, len(enc))
	if err != nil || !bytes.Equal(got, enc) {
		t.Fatalf("FetchObject: %d bytes, %v", len(got), err)
	}
	if got, err := s.e.FetchObject(ctx, rl.id, len(enc)); err != nil || !bytes.Equal(got, enc) {
		t.Fatalf("FetchObject of an index the node serves: %d bytes, %v", len(got), err)
	}
	pf := exchange.PeerFetcher{Engine: d.e}
	got, err = pf.Fetch(ctx, manifest.IndexPath(rl.id), int64(len(enc)))
	if err != nil || !bytes.Equal(got, enc) {
		t.Fatalf("PeerFetcher: %d bytes, %v", len(got), err)
	}
	// A bound below the index's length: the bytes verified, so it is the
	// index itself that is too long, and nobody is blamed.
	if _, err := pf.Fetch(ctx, manifest.IndexPath(rl.id), int64(len(enc)-1)); !errors.Is(err, fetch.ErrTooLarge) {
		t.Fatalf("short bound: %v", err)
	}
	for _, p := range []string{"metadata/timestamp.json", manifest.ChunkPath(rl.ix.ID(0)), "index/nonsense", "index/" + rl.id.String() + "x"} {
		if _, err := pf.Fetch(ctx, p, 1<<20); !errors.Is(err, fetch.ErrNotFound) {
			t.Errorf("PeerFetcher %s: %v, want not found", p, err)
		}
	}
	if s.e.Penalties("dev") != 0 || d.e.Penalties("seed") != 0 || d.e.Penalties("other") != 0 {
		t.Error("a peer was penalised")
	}
}

// A node that does not announce an index but holds it in its store
// (StoreProvider.Indexes: a bundle imported, a release kept) serves it.
func TestFetchIndexFromStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rl := makeRelease(t, 1<<20, 12, smallParams)
	db, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.PutIndex(ctx, rl.ix); err != nil {
		t.Fatal(err)
	}
	s := newNode(t, "cache", exchange.Config{})
	s.prov.Add(exchange.StoreProvider{Source: db, Indexes: db})
	d := newNode(t, "dev", exchange.Config{})
	connect(s, d, sched.LAN)
	waitFor(t, "dev to see the cache", func() bool { return len(d.e.Peers()) == 1 })

	enc := rl.ix.Encode()
	got, err := d.e.FetchObject(ctx, rl.id, len(enc))
	if err != nil || !bytes.Equal(got, enc) {
		t.Fatalf("FetchObject: %d bytes, %v", len(got), err)
	}
	// The cache node holds it itself: no peer is asked (it has one, which
	// does not hold the index).
	got, err = s.e.FetchObject(ctx, rl.id, len(enc))
	if err != nil || !bytes.Equal(got, enc) {
		t.Fatalf("FetchObject of its own index: %d bytes, %v", len(got), err)
	}
	// Without Indexes the store serves chunks only.
	s2 := newNode(t, "cache2", exchange.Config{})
	s2.prov.Add(exchange.StoreProvider{Source: db})
	d2 := newNode(t, "dev2", exchange.Config{})
	connect(s2, d2, sched.LAN)
	waitFor(t, "dev2 to see cache2", func() bool { return len(d2.e.Peers()) == 1 })
	if _, err := d2.e.FetchObject(ctx, rl.id, len(enc)); !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("without Indexes: %v", err)
	}
}

// A peer that announces the index and sends wrong bytes for it is
// disconnected and penalised; the index comes from an honest peer; a peer
// that never answers is given up after ObjectTimeout. Alone, the liar
// leaves the fetch with ErrNotFound.
func TestFetchIndexRefusesWrongBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rl := makeRelease(t, 1<<20, 13, smallParams)
	enc := rl.ix.Encode()
	lie := func(h *hostile, m *wire.Want) error {
		obj := append([]byte{object.KindRaw}, enc...)
		obj[len(obj)/2] ^= 1
		h.w.Write(&wire.Block{Req: m.Req, CID: m.CID, Object: obj})
		return h.w.Flush()
	}

	d := newNode(t, "dev", exchange.Config{})
	startHostile(t, d, "liar", rl, lie)
	announced(t, d, rl.id, 1)
	_, err := d.e.FetchObject(ctx, rl.id, len(enc))
	if !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("from the liar alone: %v, want not found", err)
	}
	if d.e.Penalties("liar") != 1 || !containsAll(d.log.String(), "disconnecting peer", "peer=liar", "object "+rl.id.String(), "bad block") {
		t.Fatalf("liar not penalised (%d):\n%s", d.e.Penalties("liar"), d.log.String())
	}

	d2 := newNode(t, "dev2", exchange.Config{ObjectTimeout: 100 * time.Millisecond})
	startHostile(t, d2, "liar", rl, lie)
	startHostile(t, d2, "mute", rl, func(*hostile, *wire.Want) error { return nil })
	s := newNode(t, "seed", exchange.Config{})
	if _, err := s.e.Serve(ctx, rl.ix); err != nil {
		t.Fatal(err)
	}
	connect(s, d2, sched.WAN) // announced and WAN: asked after the two LAN liars
	announced(t, d2, rl.id, 3)
	got, err := d2.e.FetchObject(ctx, rl.id, len(enc))
	if err != nil || !bytes.Equal(got, enc) {
		t.Fatalf("FetchObject with an honest peer: %d bytes, %v", len(got), err)
	}
	if d2.e.Penalties("liar") != 1 || d2.e.Penalties("mute") != 0 || d2.e.Penalties("seed") != 0 {
		t.Errorf("penalties liar %d mute %d seed %d", d2.e.Penalties("liar"), d2.e.Penalties("mute"), d2.e.Penalties("seed"))
	}
	if !peerConnected(d2, "mute") {
		t.Error("the mute peer was disconnected; a timeout is no misbehaviour")
	}
}

// Nobody has the index: ErrNotFound, with peers and without; an index
// above the frame limit is refused before anyone is asked.
func TestFetchIndexNotFound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rl := makeRelease(t, 1<<20, 14, smallParams)
	d := newNode(t, "dev", exchange.Config{})
	if _, err := d.e.FetchObject(ctx, rl.id, 1<<20); !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("no peers: %v", err)
	}
	a, b := newNode(t, "a", exchange.Config{}), newNode(t, "b", exchange.Config{})
	a.seed(rl) // the chunks, not the index
	connect(a, d, sched.LAN)
	connect(b, d, sched.WAN)
	waitFor(t, "two peers", func() bool { return len(d.e.Peers()) == 2 })
	_, err := d.e.FetchObject(ctx, rl.id, 1<<20)
	if !errors.Is(err, fetch.ErrNotFound) || errors.Is(err, exchange.ErrMisbehaved) {
		t.Fatalf("nobody holds it: %v", err)
	}
	t.Log(err)
	if a.e.Penalties("dev") != 0 || d.e.Penalties("a") != 0 {
		t.Error("a peer was penalised")
	}
	if _, err := d.e.FetchObject(ctx, rl.id, d.e.MaxObject()+1); !errors.Is(err, exchange.ErrObjectTooLarge) {
		t.Fatalf("above MaxObject: %v", err)
	}
	if _, err := (exchange.PeerFetcher{Engine: d.e}).Fetch(ctx, manifest.IndexPath(rl.id), 256<<20); !errors.Is(err, exchange.ErrObjectTooLarge) {
		t.Fatalf("PeerFetcher above MaxObject: %v", err)
	}
}

// The limit: an engine with MaxChunk = chunker.MaxChunkCeil (the node)
// fetches an index of 466,032 chunks (16 MiB encoded, the largest); one
// with the default MaxChunk refuses an index above 1 MiB, and a peer
// serving it to a node whose frame limit is smaller answers DontHave.
func TestFetchIndexLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 16 MiB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	big := newNode(t, "big", exchange.Config{MaxChunk: chunker.MaxChunkCeil})
	if big.e.MaxObject() != 16<<20 {
		t.Fatalf("MaxObject %d", big.e.MaxObject())
	}
	n := (big.e.MaxObject() - 48) / 36
	if n != 466032 {
		t.Fatalf("largest index: %d chunks", n)
	}
	ix := syntheticIndex(n, chunker.SHA256)
	enc := ix.Encode()
	if len(enc) > big.e.MaxObject() || len(enc)+36 <= big.e.MaxObject() {
		t.Fatalf("index of %d bytes is not the largest under %d", len(enc), big.e.MaxObject())
	}
	s := newNode(t, "seed", exchange.Config{})
	if _, err := s.e.Serve(ctx, ix); err != nil {
		t.Fatal(err)
	}
	small := newNode(t, "small", exchange.Config{})
	connect(s, big, sched.LAN)
	connect(s, small, sched.LAN)
	announced(t, big, ix.CID(), 1)
	announced(t, small, ix.CID(), 1)
	got, err := big.e.FetchObject(ctx, ix.CID(), len(enc))
	if err != nil || !bytes.Equal(got, enc) {
		t.Fatalf("the largest index: %d bytes, %v", len(got), err)
	}
	if _, err := small.e.FetchObject(ctx, ix.CID(), len(enc)); !errors.Is(err, exchange.ErrObjectTooLarge) {
		t.Fatalf("default MaxChunk: %v", err)
	}
	// Asked with a bound it accepts, the seed cannot send the block
	// within small's frame limit: DontHave, no misbehaviour.
	if _, err := small.e.FetchObject(ctx, ix.CID(), small.e.MaxObject()); !errors.Is(err, fetch.ErrNotFound) {
		t.Fatalf("above the frame limit: %v", err)
	}
	if small.e.Penalties("seed") != 0 || s.e.Penalties("small") != 0 {
		t.Error("a peer was penalised")
	}
}
