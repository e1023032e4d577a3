package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/bundle"
	"github.com/shoalnet/shoal/swarm"
	"github.com/shoalnet/shoal/swarm/wire"
	"github.com/shoalnet/shoal/updater/state"
)

// hostilePeer is a libp2p host that speaks /shoal/chunks/1 itself, with
// swarm/wire: it opens the chunk stream to a node, announces that it
// holds the whole release, and answers the node's Wants for chunks as
// its behaviour says (it answers a Want for anything else, the index, with
// a DontHave).
type hostilePeer struct {
	h     *swarm.Host
	wants atomic.Int64  // Wants for chunks received
	gone  chan struct{} // closed when the stream ended
}

// hostileBehaviour answers one Want for a chunk; chunk is the chunk's
// true bytes. An error ends the stream from the hostile side.
type hostileBehaviour func(hp *hostilePeer, s *hostileStream, m *wire.Want, chunk []byte) error

type hostileStream struct {
	raw interface{ Write([]byte) (int, error) }
	w   *wire.Writer
}

func startHostilePeer(t *testing.T, ctx context.Context, victim *Node, ix *chunker.Index, img []byte, behave hostileBehaviour) *hostilePeer {
	t.Helper()
	hp := &hostilePeer{h: bareHost(t, ctx, nil), gone: make(chan struct{})}
	if err := hp.h.Connect(ctx, victim.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	s, err := hp.h.Libp2p().NewStream(ctx, victim.ID(), wire.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	off := ix.Offsets()
	pos := map[cid.Cid]int{}
	for i := range ix.Chunks {
		if _, ok := pos[ix.ID(i)]; !ok {
			pos[ix.ID(i)] = i
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(hp.gone)
		defer s.Reset()
		r, w := wire.NewReader(s, 0), wire.NewWriter(s, 0)
		if _, err := wire.Handshake(r, w, 0); err != nil {
			return
		}
		n := len(ix.Chunks)
		all := make([]byte, wire.BitmapLen(n))
		for i := range n {
			all[i/8] |= 0x80 >> (i % 8)
		}
		if w.Write(&wire.Have{Index: ix.CID(), Count: n, Bitmap: all}) != nil || w.Flush() != nil {
			return
		}
		hs := &hostileStream{raw: s, w: w}
		for {
			m, err := r.Read()
			if err != nil {
				return
			}
			want, ok := m.(*wire.Want)
			if !ok {
				continue
			}
			i, ok := pos[want.CID]
			if !ok {
				w.Write(&wire.DontHave{Req: want.Req, CID: want.CID})
				if w.Flush() != nil {
					return
				}
				continue
			}
			hp.wants.Add(1)
			if err := behave(hp, hs, want, img[off[i]:off[i+1]]); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { s.Reset(); wg.Wait() })
	return hp
}

// TestHostilePeerOnLibp2p: a device node has two peers that announce the
// whole release: an honest cache node seeded from a bundle, and a hostile
// libp2p host that sends corrupted blocks, blocks never asked for, an
// oversized frame, or stalls in the middle of a block. In each case the
// device installs the release from the cache node (the slot holds exactly
// the release), the hostile peer asked for chunks is disconnected and
// penalised with a log line naming it, and the honest one is not.
func TestHostilePeerOnLibp2p(t *testing.T) {
	if testing.Short() {
		t.Skip("starts libp2p hosts")
	}
	dir := t.TempDir()
	keys, err := manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "keys", "root.json")

	cases := []struct {
		name   string
		behave hostileBehaviour
		reason string // in the device's log line about the hostile peer
		bad    bool   // the device counts a bad block
		// size is the release's size (default 2 MiB) and rate caps the
		// honest peer's uploads, so that the download outlasts the
		// scheduler's patience with a stalled peer (3 strikes of 2 s:
		// about 6 s). The cap lets a burst of 16 MiB through first (the
		// exchange's bucket holds one largest frame), hence the size.
		size int
		rate string
	}{
		{"corrupted blocks", func(hp *hostilePeer, s *hostileStream, m *wire.Want, chunk []byte) error {
			obj := append([]byte{object.KindRaw}, chunk...)
			obj[len(obj)/2] ^= 0x40
			s.w.Write(&wire.Block{Req: m.Req, CID: m.CID, Object: obj})
			return s.w.Flush()
		}, "bad block", true, 0, ""},
		{"unrequested blocks", func(hp *hostilePeer, s *hostileStream, m *wire.Want, chunk []byte) error {
			s.w.Write(&wire.Block{Req: m.Req + 1000, CID: m.CID, Object: append([]byte{object.KindRaw}, chunk...)})
			return s.w.Flush()
		}, "unrequested block", false, 0, ""},
		{"oversized frame", func(hp *hostilePeer, s *hostileStream, m *wire.Want, chunk []byte) error {
			var b [5]byte
			binary.BigEndian.PutUint32(b[:], 0x7f000000)
			b[4] = byte(wire.KindBlock)
			s.w.Flush()
			s.raw.Write(b[:])
			return nil // and keep reading: the node must hang up
		}, "frame too large", false, 0, ""},
		{"stall mid-block", stallMidBlock, "scheduler gave up", false, 24 << 20, "1 MiB/s"},
		// The honest peer delivers everything within a second: the
		// download ends before the scheduler gives up on the staller.
		// download ends before the scheduler gives up on the staller; the
		// frame deadline (2 s here, with 64 KiB at 8 KiB/s: 10 s) ends it.
		{"stall mid-block after the download", stallMidBlock, "stalled in the middle of a frame", false, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
			defer cancel()
			dir := t.TempDir()
			size := tc.size
			if size == 0 {
				size = 2 << 20
			}
			repo := filepath.Join(dir, "repo")
			img := publishImage(t, ctx, keys, dir, repo, 1, size, chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10})
			bpath := filepath.Join(dir, "v1.shoal")
			if _, err := bundle.Create(ctx, bundle.CreateOptions{Repo: repo, Channel: "stable", Out: bpath}); err != nil {
				t.Fatal(err)
			}
			sink := &logSink{}
			extra := "channels = [\"stable\"]\n"
			if tc.rate != "" {
				extra += fmt.Sprintf("upload_rate = %q\n", tc.rate)
			}
			extra += fmt.Sprintf("[trust]\nroot = %q\n", root)
			cache, err := New(ctx, nodeConfig(t, filepath.Join(dir, "cache"), extra, nil),
				WithLogger((&logSink{}).logger()))
			if err != nil {
				t.Fatal(err)
			}
			defer cache.Close()
			if _, err := cache.ImportBundle(ctx, bpath); err != nil {
				t.Fatal(err)
			}
			pins, err := cache.db.Pins(ctx)
			if err != nil || len(pins) != 1 {
				t.Fatalf("pins %v %v", pins, err)
			}
			var ix *chunker.Index
			for _, id := range pins {
				if ix, err = cache.db.GetIndex(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			dcfg := virtualDevice(t, filepath.Join(dir, "dev", "device"), root, int64(size)+1<<20)
			dev, err := New(ctx, nodeConfig(t, filepath.Join(dir, "dev"), fmt.Sprintf("[device]\nconfig = %q\n", dcfg), cache.Addrs()),
				WithLogger(sink.logger()), WithFrameTimeout(2*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			hp := startHostilePeer(t, ctx, dev, ix, img, tc.behave)
			mallory, honest := hp.h.ID().String(), cache.ID().String()

			var wg sync.WaitGroup
			runCtx, stop := context.WithCancel(ctx)
			defer func() { stop(); wg.Wait() }()
			for _, n := range []*Node{cache, dev} {
				wg.Add(1)
				go func() { defer wg.Done(); n.Run(runCtx) }()
			}
			// Both peers announced the whole release to the device before
			// it hears of it.
			waitFor(t, ctx, "both peers' haves at the device", func() bool {
				full := 0
				for _, p := range dev.engine.Peers() {
					if p.Announced[ix.CID()] == len(ix.Chunks) {
						full++
					}
				}
				return full == 2
			})
			time.Sleep(1500 * time.Millisecond) // the gossip mesh forms
			br, err := bundle.Open(bpath)
			if err != nil {
				t.Fatal(err)
			}
			announcedAt := time.Now()
			err = cache.Announce(ctx, br)
			br.Close()
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "the device installed the release", func() bool {
				dev.devMu.Lock()
				defer dev.devMu.Unlock()
				return dev.dev.State().Phase == state.Tentative
			})
			t.Logf("installed %v after the announcement", time.Since(announcedAt).Round(time.Millisecond))
			slot, err := os.ReadFile(dev.dev.Config.SlotPath("B"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(slot[:len(img)], img) {
				t.Fatal("the slot does not hold the release")
			}
			if hp.wants.Load() == 0 {
				t.Fatal("the device never asked the hostile peer for a chunk: the test proves nothing")
			}
			select {
			case <-hp.gone:
			case <-ctx.Done():
				t.Fatalf("the hostile peer's stream is still open (%d wants); device log:\n%s\nstatus %+v", hp.wants.Load(), sink, dev.Status().Transfers)
			}
			if dev.engine.Penalties(mallory) == 0 {
				t.Error("the hostile peer was not penalised")
			}
			if dev.engine.Penalties(honest) != 0 {
				t.Error("the honest peer was penalised")
			}
			var named bool
			sink.mu.Lock()
			for _, r := range sink.recs {
				if r.attrs["peer"] == mallory && strings.Contains(r.attrs["reason"], tc.reason) {
					named = true
				}
			}
			sink.mu.Unlock()
			st := dev.Status()
			rt := releaseTransfers(st)
			if len(rt) != 1 {
				t.Fatalf("transfers: %+v", st.Transfers)
			}
			tr := rt[0]
			if tc.bad && tr.BadBlocks == 0 {
				t.Error("no bad block counted")
			}
			if !named {
				t.Errorf("no log line names the hostile peer and %q:\n%s", tc.reason, sink)
			}
			if cache.engine.Stats().ServedBlocks == 0 {
				t.Error("the honest peer served nothing")
			}
			t.Logf("hostile peer: %d wants, %d penalties; device: %d/%d chunks by source %v, %d bad blocks, %d peers disconnected for misbehaviour",
				hp.wants.Load(), dev.engine.Penalties(mallory), tr.Held, tr.Total, tr.Chunks, tr.BadBlocks, st.Served.Misbehaved)
		})
	}
}

// stallMidBlock answers the first Want for a chunk with the start of a
// block frame, then never writes again (it keeps reading).
func stallMidBlock(hp *hostilePeer, s *hostileStream, m *wire.Want, chunk []byte) error {
	if hp.wants.Load() == 1 {
		s.raw.Write([]byte{0, 1, 0, 0, byte(wire.KindBlock), 0, 0})
	}
	return nil
}
