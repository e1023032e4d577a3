package updater

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/updater/fsys"
)

var testParams = chunker.Params{Min: 1024, Avg: 4096, Max: 16384}

// image returns n pseudo-random bytes for seed, and a variant with a few
// regions rewritten and bytes inserted.
func image(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func variant(old []byte, seed uint64, edits int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := bytes.Clone(old)
	for e := 0; e < edits; e++ {
		at := r.IntN(len(b) - 200)
		if e%2 == 0 {
			for j := 0; j < 100; j++ {
				b[at+j] = byte(r.Uint32())
			}
		} else {
			b = append(b[:at], append([]byte("inserted bytes"), b[at:]...)...)
		}
	}
	return b
}

func index(t testing.TB, data []byte) *chunker.Index {
	t.Helper()
	ix, err := chunker.Split(context.Background(), bytes.NewReader(data), chunker.Options{Params: testParams})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// memSource serves chunks of some artifacts and counts requests; corrupt
// makes the first n answers for an ID wrong.
type memSource struct {
	mu      sync.Mutex
	chunks  map[cid.Cid][]byte
	corrupt map[cid.Cid]int
	gets    int
	bytes   int64
}

func newMemSource(artifacts ...[]byte) *memSource {
	s := &memSource{chunks: map[cid.Cid][]byte{}, corrupt: map[cid.Cid]int{}}
	for _, a := range artifacts {
		ix, _ := chunker.Split(context.Background(), bytes.NewReader(a), chunker.Options{Params: testParams})
		off := ix.Offsets()
		for i := range ix.Chunks {
			s.chunks[ix.ID(i)] = a[off[i]:off[i+1]]
		}
	}
	return s
}

func (s *memSource) Get(ctx context.Context, id cid.Cid) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.chunks[id]
	if !ok {
		return nil, fmt.Errorf("no chunk %s", id)
	}
	s.gets++
	s.bytes += int64(len(b))
	b = bytes.Clone(b)
	if s.corrupt[id] > 0 {
		s.corrupt[id]--
		b[0] ^= 0xff
	}
	return b, nil
}

type fixture struct {
	old, new     []byte
	oldIx, newIx *chunker.Index
	active       *os.File
	target       fsys.File
	newBytes     int64
}

func setup(t *testing.T, size int) *fixture {
	t.Helper()
	f := &fixture{}
	f.old = image(1, size)
	f.new = variant(f.old, 2, 6)
	f.oldIx, f.newIx = index(t, f.old), index(t, f.new)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), f.old, 0o644)
	os.WriteFile(filepath.Join(dir, "b"), make([]byte, size+4096), 0o644)
	var err error
	if f.active, err = os.Open(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.active.Close() })
	if f.target, err = (fsys.OS{}).OpenFile(filepath.Join(dir, "b"), os.O_RDWR, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.target.Close() })
	have := map[chunker.Digest]bool{}
	for _, e := range f.oldIx.Chunks {
		have[e.Digest] = true
	}
	for _, e := range f.newIx.Chunks {
		if !have[e.Digest] {
			have[e.Digest] = true
			f.newBytes += int64(e.Size)
		}
	}
	return f
}

func (f *fixture) plan(src ChunkSource) InstallPlan {
	return InstallPlan{Target: f.target, TargetSize: int64(len(f.new)) + 4096, Index: f.newIx,
		Local: []LocalCopy{{File: f.active, Index: f.oldIx}}, Source: src, SourceName: "test origin"}
}

func (f *fixture) check(t *testing.T) {
	t.Helper()
	got := make([]byte, len(f.new))
	f.target.ReadAt(got, 0)
	if !bytes.Equal(got, f.new) {
		t.Fatal("slot does not hold the new release")
	}
}

func TestInstallCopiesLocalAndFetchesRest(t *testing.T) {
	f := setup(t, 2<<20)
	src := newMemSource(f.new)
	st, err := Install(context.Background(), f.plan(src))
	if err != nil {
		t.Fatal(err)
	}
	f.check(t)
	if st.FetchedBytes != f.newBytes || src.bytes != f.newBytes {
		t.Fatalf("fetched %d (source served %d), want exactly the new bytes %d", st.FetchedBytes, src.bytes, f.newBytes)
	}
	if st.LocalBytes+st.FetchedBytes < int64(len(f.new)) || st.LocalBytes < int64(len(f.new))*8/10 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInstallRefusesBadChunksAndRetries(t *testing.T) {
	f := setup(t, 1<<20)
	src := newMemSource(f.new)
	// Two bad answers for one new chunk: refused, fetched again, installed.
	var victim cid.Cid
	for i := range f.newIx.Chunks {
		victim = f.newIx.ID(i)
		found := false
		for _, e := range f.oldIx.Chunks {
			if e.Digest == f.newIx.Chunks[i].Digest {
				found = true
			}
		}
		if !found {
			break
		}
	}
	src.corrupt[victim] = 2
	if _, err := Install(context.Background(), f.plan(src)); err != nil {
		t.Fatal(err)
	}
	f.check(t)

	// A source that always lies: error names the source and both IDs.
	f2 := setup(t, 1<<20)
	src2 := newMemSource(f2.new)
	src2.corrupt[victim] = 100
	_, err := Install(context.Background(), f2.plan(src2))
	if !errors.Is(err, ErrBadChunk) || !strings.Contains(err.Error(), "test origin") || !strings.Contains(err.Error(), victim.String()) {
		t.Fatalf("got %v", err)
	}
}

func TestInstallRepairsDamagedLocalCopy(t *testing.T) {
	f := setup(t, 1<<20)
	// Damage a chunk of the active slot that the new release reuses.
	data, _ := os.ReadFile(f.active.Name())
	data[100] ^= 1
	os.WriteFile(f.active.Name(), data, 0o644)
	src := newMemSource(f.new)
	st, err := Install(context.Background(), f.plan(src))
	if err != nil {
		t.Fatal(err)
	}
	f.check(t)
	if st.Refetched != 1 {
		t.Fatalf("refetched %d, want 1", st.Refetched)
	}
}

func TestInstallSlotTooSmall(t *testing.T) {
	f := setup(t, 1<<20)
	p := f.plan(newMemSource(f.new))
	p.TargetSize = int64(len(f.new)) - 1
	before, _ := os.ReadFile(f.target.Name())
	if _, err := Install(context.Background(), p); !errors.Is(err, ErrSlotTooSmall) {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(f.target.Name()); !bytes.Equal(before, after) {
		t.Fatal("slot written although the release does not fit")
	}
}

// Interrupted installs resume from what the slot holds: across many
// interruptions the source serves the new bytes plus at most the chunks in
// flight at each interruption.
func TestInstallResume(t *testing.T) {
	f := setup(t, 4<<20)
	src := newMemSource(f.new)
	var maxChunk int64
	for _, e := range f.newIx.Chunks {
		maxChunk = max(maxChunk, int64(e.Size))
	}
	interruptions := 0
	for {
		ctx, cancel := context.WithCancel(context.Background())
		p := f.plan(&cancelAfter{src: src, n: 1, cancel: cancel})
		p.Resume = true
		p.Fetchers = 1
		_, err := Install(ctx, p)
		cancel()
		if err == nil {
			break
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
		interruptions++
		if interruptions > 1000 {
			t.Fatal("no progress")
		}
	}
	f.check(t)
	if interruptions < 3 {
		t.Fatalf("only %d interruptions; test too weak", interruptions)
	}
	if limit := f.newBytes + int64(interruptions)*maxChunk; src.bytes > limit {
		t.Fatalf("served %d bytes over %d interruptions, limit %d", src.bytes, interruptions, limit)
	}
}

// cancelAfter cancels the install after n chunks were served.
type cancelAfter struct {
	src    *memSource
	n      int
	cancel func()
}

func (c *cancelAfter) Get(ctx context.Context, id cid.Cid) ([]byte, error) {
	if c.n == 0 {
		c.cancel()
		return nil, context.Canceled
	}
	c.n--
	return c.src.Get(ctx, id)
}

// bulkSource delivers the wanted chunks in reverse order, each bad one
// first when corrupt says so, re-delivering after a refusal, as the swarm
// does with another peer.
type bulkSource struct {
	*memSource
	wanted    int
	refused   int
	delivered map[cid.Cid]int
}

func (b *bulkSource) FetchAll(ctx context.Context, want []cid.Cid, deliver func(cid.Cid, []byte) error) error {
	b.wanted = len(want)
	b.delivered = map[cid.Cid]int{}
	for i := len(want) - 1; i >= 0; i-- {
		for {
			data, err := b.Get(ctx, want[i])
			if err != nil {
				return err
			}
			err = deliver(want[i], data)
			if errors.Is(err, ErrBadChunk) {
				b.refused++
				continue
			}
			if err != nil {
				return err
			}
			b.delivered[want[i]]++
			break
		}
	}
	return nil
}

func TestInstallFromBulkSource(t *testing.T) {
	f := setup(t, 2<<20)
	src := &bulkSource{memSource: newMemSource(f.new)}
	var victim cid.Cid
	have := map[chunker.Digest]bool{}
	for _, e := range f.oldIx.Chunks {
		have[e.Digest] = true
	}
	for i, e := range f.newIx.Chunks {
		if !have[e.Digest] {
			victim = f.newIx.ID(i)
		}
	}
	src.corrupt[victim] = 2
	placed := make([]int, len(f.newIx.Chunks))
	p := f.plan(src)
	p.Placed = func(pos []int) {
		for _, i := range pos {
			placed[i]++
		}
	}
	st, err := Install(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t)
	if src.refused != 2 || st.FetchedBytes != f.newBytes {
		t.Fatalf("refused %d bad deliveries (want 2), fetched %d of %d new bytes", src.refused, st.FetchedBytes, f.newBytes)
	}
	for id, n := range src.delivered {
		if n != 1 {
			t.Fatalf("chunk %s accepted %d times", id, n)
		}
	}
	for i, n := range placed {
		if n != 1 {
			t.Fatalf("position %d reported placed %d times", i, n)
		}
	}
}

// A bulk source that stops early leaves the install failed, naming how
// much is missing.
type shortBulk struct{ *memSource }

func (s shortBulk) FetchAll(ctx context.Context, want []cid.Cid, deliver func(cid.Cid, []byte) error) error {
	b, _ := s.Get(ctx, want[0])
	return deliver(want[0], b)
}

func TestInstallBulkSourceShort(t *testing.T) {
	f := setup(t, 1<<20)
	_, err := Install(context.Background(), f.plan(shortBulk{newMemSource(f.new)}))
	if err == nil || !strings.Contains(err.Error(), "not delivered") {
		t.Fatalf("got %v", err)
	}
}

// gatedReader is a local copy whose reads wait until the gate opens.
type gatedReader struct {
	io.ReaderAt
	gate <-chan struct{}
}

func (g gatedReader) ReadAt(p []byte, off int64) (int, error) {
	<-g.gate
	return g.ReaderAt.ReadAt(p, off)
}

// openingBulk opens the gate when it is first asked for chunks.
type openingBulk struct {
	*bulkSource
	once sync.Once
	gate chan struct{}
}

func (s *openingBulk) FetchAll(ctx context.Context, want []cid.Cid, deliver func(cid.Cid, []byte) error) error {
	s.once.Do(func() { close(s.gate) })
	return s.bulkSource.FetchAll(ctx, want, deliver)
}

// The download does not wait for the local copies: a small change to a
// large release would otherwise leave the link idle while the unchanged
// bytes are copied. Here the local copy cannot read a byte until the
// source has been asked for the new chunks; copying first would hang.
func TestInstallFetchesBesideLocalCopies(t *testing.T) {
	f := setup(t, 2<<20)
	gate := make(chan struct{})
	src := &openingBulk{bulkSource: &bulkSource{memSource: newMemSource(f.new)}, gate: gate}
	p := f.plan(src)
	p.Local = []LocalCopy{{File: gatedReader{f.active, gate}, Index: f.oldIx}}
	var mu sync.Mutex
	placed := 0
	p.Placed = func(pos []int) {
		mu.Lock()
		placed += len(pos)
		mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := Install(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t)
	if st.FetchedBytes != f.newBytes || st.LocalBytes+st.FetchedBytes < int64(len(f.new)) {
		t.Fatalf("stats %+v, want %d new bytes fetched", st, f.newBytes)
	}
	if placed != len(f.newIx.Chunks) {
		t.Fatalf("%d positions reported placed, want %d", placed, len(f.newIx.Chunks))
	}
}
