package exchange_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"go.uber.org/goleak"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/swarm/exchange"
	"github.com/shoalnet/shoal/swarm/sched"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// release is a test artifact: its bytes and verified index.
type release struct {
	data []byte
	ix   *chunker.Index
	id   cid.Cid
	off  []int64
	pos  map[cid.Cid][]int // positions of each chunk
}

var smallParams = chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10}

// makeRelease builds size seeded random bytes with a repeated stretch (so
// some chunks sit at several positions) and chunks them.
func makeRelease(t testing.TB, size int, seed uint64, params chunker.Params) *release {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	data := make([]byte, size)
	for i := 0; i+8 <= size; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			data[i+k] = byte(v >> (8 * k))
		}
	}
	if rep := 4 * params.Max; size > 4*rep {
		copy(data[size/2:size/2+rep], data[size/4:size/4+rep])
	}
	ix, err := chunker.Split(context.Background(), bytes.NewReader(data), chunker.Options{Params: params})
	if err != nil {
		t.Fatal(err)
	}
	rl := &release{data: data, ix: ix, id: ix.CID(), off: ix.Offsets(), pos: map[cid.Cid][]int{}}
	for i := range ix.Chunks {
		rl.pos[ix.ID(i)] = append(rl.pos[ix.ID(i)], i)
	}
	return rl
}

func (rl *release) chunk(i int) []byte { return rl.data[rl.off[i]:rl.off[i+1]] }

// unique is every distinct chunk ID of the release.
func (rl *release) unique() []cid.Cid {
	seen := map[cid.Cid]bool{}
	var out []cid.Cid
	for i := range rl.ix.Chunks {
		if id := rl.ix.ID(i); !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// origin is a repository of the release's chunk objects that counts what
// it serves.
type origin struct {
	mem   fetch.Mem
	mu    sync.Mutex
	count map[string]int
	bytes atomic.Int64
}

func newOrigin(rl *release) *origin {
	o := &origin{mem: fetch.Mem{}, count: map[string]int{}}
	for i := range rl.ix.Chunks {
		o.mem[manifest.ChunkPath(rl.ix.ID(i))] = manifest.EncodeChunk(nil, rl.chunk(i))
	}
	return o
}

func (o *origin) Fetch(ctx context.Context, p string, max int64) ([]byte, error) {
	b, err := o.mem.Fetch(ctx, p, max)
	if err == nil {
		o.mu.Lock()
		o.count[p]++
		o.mu.Unlock()
		o.bytes.Add(int64(len(b)))
	}
	return b, err
}

// memSlot is a slot in memory.
type memSlot struct {
	mu sync.RWMutex
	b  []byte
}

func (s *memSlot) ReadAt(p []byte, off int64) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return copy(p, s.b[off:]), nil
}

func (s *memSlot) WriteAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copy(s.b[off:], p), nil
}

// logBuf collects log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// node is an engine with a provider set and a slot.
type node struct {
	id   string
	e    *exchange.Engine
	prov *exchange.Providers
	slot *memSlot
	log  *logBuf
}

func newNode(t testing.TB, id string, cfg exchange.Config) *node {
	t.Helper()
	n := &node{id: id, prov: exchange.NewProviders(), log: &logBuf{}}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(n.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	n.e = exchange.New(id, n.prov, cfg)
	t.Cleanup(func() { n.e.Close() })
	return n
}

// seed makes n hold the whole release (its installed slot).
func (n *node) seed(rl *release) {
	n.prov.Add(exchange.NewSlotProvider(bytes.NewReader(rl.data), rl.ix, nil))
}

func connect(a, b *node, class sched.Class) {
	ca, cb := exchange.Pipe(a.id, b.id, class)
	a.e.Add(ca)
	b.e.Add(cb)
}

// delivery records what a download delivered and checks it independently.
type delivery struct {
	mu    sync.Mutex
	got   map[cid.Cid]int
	bad   []string
	n     atomic.Int64
	hook  func(id cid.Cid, k int64) error // called before the write; nil: none
	slots *memSlot
	// placed announces what was written (Download.Placed), as the node
	// does once a chunk is stored.
	placed func([]int)
}

// prepare makes n a downloader of rl: a slot, a SlotProvider over it that
// serves what the engine announces, and a Download.
func (n *node) prepare(t testing.TB, rl *release, cfg exchange.DownloadConfig) (*exchange.Download, *delivery) {
	t.Helper()
	n.slot = &memSlot{b: make([]byte, rl.ix.Size)}
	d, err := n.e.NewDownload(context.Background(), rl.ix, cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.prov.Add(exchange.NewSlotProvider(n.slot, rl.ix, n.e.Held(rl.id)))
	return d, &delivery{got: map[cid.Cid]int{}, slots: n.slot, placed: d.Placed}
}

// deliver is the installer's part: check the bytes, write them at every
// position of the chunk, announce them.
func (dl *delivery) deliver(rl *release) func(cid.Cid, []byte) error {
	return func(id cid.Cid, data []byte) error {
		k := dl.n.Add(1)
		if dl.hook != nil {
			if err := dl.hook(id, k); err != nil {
				return err
			}
		}
		found := false
		for _, i := range rl.pos[id] {
			found = true
			if !bytes.Equal(data, rl.chunk(i)) {
				dl.mu.Lock()
				dl.bad = append(dl.bad, fmt.Sprintf("chunk %d: %d bytes differ from the release", i, len(data)))
				dl.mu.Unlock()
				return fmt.Errorf("%w: chunk %d", exchange.ErrBadChunk, i)
			}
			dl.slots.WriteAt(data, rl.off[i])
		}
		if !found {
			dl.mu.Lock()
			dl.bad = append(dl.bad, "unknown chunk "+id.String())
			dl.mu.Unlock()
		}
		dl.mu.Lock()
		dl.got[id]++
		dl.mu.Unlock()
		if found && dl.placed != nil {
			dl.placed(rl.pos[id])
		}
		return nil
	}
}

// refused forgets the bad bytes deliver saw and refused (with
// DownloadConfig.DeliverChecks the engine hands them over unhashed).
func (dl *delivery) refused() {
	dl.mu.Lock()
	dl.bad = nil
	dl.mu.Unlock()
}

func (dl *delivery) check(t testing.TB, rl *release, want []cid.Cid) {
	t.Helper()
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if len(dl.bad) > 0 {
		t.Fatalf("bad bytes delivered: %v", dl.bad)
	}
	for _, id := range want {
		if dl.got[id] != 1 {
			t.Errorf("chunk %s delivered %d times", id, dl.got[id])
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// announced waits until n sees k peers announcing index.
func announced(t testing.TB, n *node, index cid.Cid, k int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to hear %d haves", n.id, k), func() bool {
		c := 0
		for _, p := range n.e.Peers() {
			if _, ok := p.Announced[index]; ok {
				c++
			}
		}
		return c >= k
	})
}

func peerConnected(n *node, id string) bool {
	for _, p := range n.e.Peers() {
		if p.ID == id {
			return true
		}
	}
	return false
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
