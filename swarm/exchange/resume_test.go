package exchange_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/store"
	"github.com/shoalnet/shoal/swarm/exchange"
	"github.com/shoalnet/shoal/swarm/sched"
)

// A download cancelled midway and restarted (a new engine, as after a
// kill) with the chunks it holds announces them in its first Have and
// fetches only the rest: nothing held is asked for or delivered again.
func TestResumeRefetchesNothingHeld(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rl := makeRelease(t, 2<<20, 5, smallParams)
	org := newOrigin(rl)
	s := newNode(t, "seed", exchange.Config{})
	s.seed(rl)
	if _, err := s.e.Serve(ctx, rl.ix); err != nil {
		t.Fatal(err)
	}
	cfg := exchange.DownloadConfig{Origin: org, TickPeriod: 10 * time.Millisecond}

	// First run: cancelled after a third of the chunks.
	b := newNode(t, "b", exchange.Config{})
	connect(b, s, sched.LAN)
	d, dl := b.prepare(t, rl, cfg)
	announced(t, b, rl.id, 1)
	want := rl.unique()
	runCtx, stop := context.WithCancel(ctx)
	dl.hook = func(id cid.Cid, k int64) error {
		if k == int64(len(want)/3) {
			stop()
		}
		return nil
	}
	if err := d.FetchAll(runCtx, want, dl.deliver(rl)); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v, want cancelled", err)
	}
	stop()
	heldIDs := map[cid.Cid]bool{}
	for id := range dl.got {
		heldIDs[id] = true
	}
	var held []int
	var missing []cid.Cid
	for i := range rl.ix.Chunks {
		if heldIDs[rl.ix.ID(i)] {
			held = append(held, i)
		}
	}
	for _, id := range want {
		if !heldIDs[id] {
			missing = append(missing, id)
		}
	}
	if len(heldIDs) == 0 || len(missing) == 0 {
		t.Fatalf("first run delivered %d of %d chunks", len(heldIDs), len(want))
	}
	slot := b.slot
	b.e.Close()
	waitFor(t, "the seed to forget b", func() bool { return !peerConnected(s, "b") })
	served := s.e.Stats().ServedBlocks

	// Restart: a new engine; the slot holds what was delivered.
	b2 := newNode(t, "b", exchange.Config{})
	d2, err := b2.e.NewDownload(ctx, rl.ix, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b2.slot = slot
	b2.prov.Add(exchange.NewSlotProvider(slot, rl.ix, b2.e.Held(rl.id)))
	d2.Placed(held)
	connect(b2, s, sched.LAN)
	waitFor(t, "the seed to hear b's have", func() bool {
		for _, p := range s.e.Peers() {
			if p.ID == "b" && p.Announced[rl.id] == len(held) {
				return true
			}
		}
		return false
	})
	announced(t, b2, rl.id, 1)
	dl2 := &delivery{got: map[cid.Cid]int{}, slots: slot, placed: d2.Placed}
	dl2.hook = func(id cid.Cid, _ int64) error {
		if heldIDs[id] {
			return fmt.Errorf("chunk %s delivered again", id)
		}
		return nil
	}
	if err := d2.FetchAll(ctx, missing, dl2.deliver(rl)); err != nil {
		t.Fatal(err)
	}
	dl2.check(t, rl, missing)
	if string(slot.b) != string(rl.data) {
		t.Fatal("slot differs from the release")
	}
	if got := s.e.Stats().ServedBlocks - served; got != int64(len(missing)) {
		t.Errorf("seed served %d blocks on restart, want %d (the missing chunks)", got, len(missing))
	}
	if org.bytes.Load() != 0 {
		t.Errorf("origin served %d bytes", org.bytes.Load())
	}
}

// A chunk that deliver refuses (ErrBadChunk) counts as a bad block from
// its sender: that peer is disconnected and the chunk comes from another.
func TestDeliverRefusesChunk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rl := makeRelease(t, 512<<10, 6, smallParams)
	x, y := newNode(t, "x", exchange.Config{}), newNode(t, "y", exchange.Config{})
	x.seed(rl)
	y.seed(rl)
	for _, n := range []*node{x, y} {
		if _, err := n.e.Serve(ctx, rl.ix); err != nil {
			t.Fatal(err)
		}
	}
	v := newNode(t, "v", exchange.Config{})
	connect(v, x, sched.LAN)
	connect(v, y, sched.LAN)
	d, dl := v.prepare(t, rl, exchange.DownloadConfig{TickPeriod: 10 * time.Millisecond})
	announced(t, v, rl.id, 2)
	victim := rl.ix.ID(3)
	refused := 0
	dl.hook = func(id cid.Cid, _ int64) error {
		if id.Equals(victim) && refused == 0 {
			refused++
			return fmt.Errorf("%w: pretend the bytes were bad", exchange.ErrBadChunk)
		}
		return nil
	}
	want := rl.unique()
	if err := d.FetchAll(ctx, want, dl.deliver(rl)); err != nil {
		t.Fatal(err)
	}
	if refused != 1 {
		t.Fatalf("refused %d times", refused)
	}
	if st := d.Stats(); st.BadBlocks != 1 {
		t.Errorf("bad blocks = %d", st.BadBlocks)
	}
	if v.e.Penalties("x")+v.e.Penalties("y") != 1 {
		t.Errorf("penalties x=%d y=%d", v.e.Penalties("x"), v.e.Penalties("y"))
	}
	if string(v.slot.b) != string(rl.data) {
		t.Fatal("slot differs from the release")
	}
}

// Only the origin: every chunk comes from it, within its window.
func TestOriginOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rl := makeRelease(t, 1<<20, 7, smallParams)
	org := newOrigin(rl)
	v := newNode(t, "v", exchange.Config{})
	d, dl := v.prepare(t, rl, exchange.DownloadConfig{Origin: org, TickPeriod: time.Millisecond})
	want := rl.unique()
	if err := d.FetchAll(ctx, want, dl.deliver(rl)); err != nil {
		t.Fatal(err)
	}
	dl.check(t, rl, want)
	if st := d.Stats(); st.Chunks[sched.Origin] != len(want) {
		t.Errorf("origin chunks = %d, want %d", st.Chunks[sched.Origin], len(want))
	}
	// Get fetches one chunk and announces nothing new.
	b, err := d.Get(ctx, rl.ix.ID(2))
	if err != nil || string(b) != string(rl.chunk(2)) {
		t.Fatalf("Get: %v", err)
	}
}

// The providers: a slot serves only held positions and never bad bytes;
// a store serves what it holds; the combination is the union.
func TestProviders(t *testing.T) {
	ctx := context.Background()
	rl := makeRelease(t, 256<<10, 8, smallParams)
	held := exchange.NewBitmap(len(rl.ix.Chunks))
	slot := &memSlot{b: append([]byte(nil), rl.data...)}
	sp := exchange.NewSlotProvider(slot, rl.ix, held)
	if _, err := sp.Object(ctx, rl.ix.ID(1), rl.id, 1); !errors.Is(err, exchange.ErrNotHeld) {
		t.Fatalf("unheld position served: %v", err)
	}
	held.Set([]int{1, 2})
	if obj, err := sp.Object(ctx, rl.ix.ID(1), rl.id, 1); err != nil || len(obj) == 0 {
		t.Fatalf("held position: %v", err)
	}
	slot.b[rl.off[2]] ^= 1
	if _, err := sp.Object(ctx, rl.ix.ID(2), cid.Undef, 0); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("torn slot: %v", err)
	}
	mem := store.NewMem()
	if err := mem.Put(ctx, rl.ix.ID(0), rl.chunk(0)); err != nil {
		t.Fatal(err)
	}
	all := exchange.NewProviders(sp, exchange.StoreProvider{Source: mem})
	bm, err := all.Holding(ctx, rl.ix)
	if err != nil {
		t.Fatal(err)
	}
	m := exchange.NewBitmap(len(rl.ix.Chunks))
	m.Or(bm)
	if !m.Has(0) || !m.Has(1) || !m.Has(2) || m.Count() != 3 {
		t.Errorf("holding %08b, want positions 0-2", bm)
	}
	if _, err := all.Object(ctx, rl.ix.ID(0), cid.Undef, 0); err != nil {
		t.Fatal(err)
	}
}

// The upload cap holds: a seed capped at 2 MiB/s takes about a second for
// 3 MiB beyond its burst.
func TestUploadRate(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rl := makeRelease(t, 4<<20, 10, smallParams)
	s := newNode(t, "seed", exchange.Config{UploadRate: 2 << 20})
	sp := exchange.NewSlotProvider(byteReader(rl.data), rl.ix, nil)
	s.prov.Add(sp)
	if _, err := s.e.Serve(ctx, rl.ix); err != nil {
		t.Fatal(err)
	}
	v := newNode(t, "v", exchange.Config{})
	connect(v, s, sched.LAN)
	d, dl := v.prepare(t, rl, exchange.DownloadConfig{TickPeriod: 50 * time.Millisecond})
	announced(t, v, rl.id, 1)
	start := time.Now()
	if err := d.FetchAll(ctx, rl.unique(), dl.deliver(rl)); err != nil {
		t.Fatal(err)
	}
	// 4 MiB at 2 MiB/s, less a burst of about 1 MiB: at least 1.3 s.
	if el := time.Since(start); el < 1300*time.Millisecond {
		t.Errorf("4 MiB served in %v under a 2 MiB/s cap", el)
	}
}

func TestDownloadRate(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rl := makeRelease(t, 4<<20, 11, smallParams)
	s := newNode(t, "seed", exchange.Config{})
	sp := exchange.NewSlotProvider(byteReader(rl.data), rl.ix, nil)
	s.prov.Add(sp)
	if _, err := s.e.Serve(ctx, rl.ix); err != nil {
		t.Fatal(err)
	}
	v := newNode(t, "v", exchange.Config{DownloadRate: 2 << 20})
	connect(v, s, sched.LAN)
	d, dl := v.prepare(t, rl, exchange.DownloadConfig{TickPeriod: 50 * time.Millisecond})
	announced(t, v, rl.id, 1)
	start := time.Now()
	if err := d.FetchAll(ctx, rl.unique(), dl.deliver(rl)); err != nil {
		t.Fatal(err)
	}
	// 4 MiB at 2 MiB/s, less a burst of about 1 MiB: at least 1.3 s.
	if el := time.Since(start); el < 1300*time.Millisecond {
		t.Errorf("4 MiB taken in %v under a 2 MiB/s cap", el)
	}
}

// A node that allows the largest frames still caps a small transfer: the
// burst is half a second of the rate, not a frame.
func TestRateCapWithLargeFrames(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rl := makeRelease(t, 2<<20, 12, smallParams)
	s := newNode(t, "seed", exchange.Config{MaxChunk: chunker.MaxChunkCeil, UploadRate: 1 << 20})
	sp := exchange.NewSlotProvider(byteReader(rl.data), rl.ix, nil)
	s.prov.Add(sp)
	if _, err := s.e.Serve(ctx, rl.ix); err != nil {
		t.Fatal(err)
	}
	v := newNode(t, "v", exchange.Config{MaxChunk: chunker.MaxChunkCeil})
	connect(v, s, sched.LAN)
	d, dl := v.prepare(t, rl, exchange.DownloadConfig{TickPeriod: 50 * time.Millisecond})
	announced(t, v, rl.id, 1)
	start := time.Now()
	if err := d.FetchAll(ctx, rl.unique(), dl.deliver(rl)); err != nil {
		t.Fatal(err)
	}
	// About 1.75 MiB of unique chunks at 1 MiB/s with a burst of 512 KiB:
	// at least 1.1 s (a 16 MiB burst would let it all through at once).
	if el := time.Since(start); el < 1100*time.Millisecond {
		t.Errorf("2 MiB served in %v under a 1 MiB/s cap", el)
	}
}
