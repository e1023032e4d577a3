package exchange_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/swarm/exchange"
	"github.com/shoalnet/shoal/swarm/sched"
	"github.com/shoalnet/shoal/swarm/wire"
)

// hostile is a peer written with swarm/wire directly: it announces the
// whole release and answers Wants as its behaviour says.
type hostile struct {
	c      exchange.Conn
	r      *wire.Reader
	w      *wire.Writer
	gone   chan struct{} // closed when its stream ends
	wantsN int
}

// startHostile connects a hostile peer id to victim (class LAN, so it is
// asked first) and runs it.
func startHostile(t *testing.T, victim *node, id string, rl *release, onWant func(h *hostile, m *wire.Want) error) *hostile {
	t.Helper()
	mine, theirs := exchange.Pipe(id, victim.id, sched.LAN)
	victim.e.Add(theirs)
	h := &hostile{c: mine, r: wire.NewReader(mine, 0), w: wire.NewWriter(mine, 0), gone: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(h.gone)
		defer mine.Close()
		if _, err := wire.Handshake(h.r, h.w, 0); err != nil {
			return
		}
		all := make([]byte, wire.BitmapLen(len(rl.ix.Chunks)))
		for i := range rl.ix.Chunks {
			all[i/8] |= 0x80 >> (i % 8)
		}
		h.w.Write(&wire.Have{Index: rl.id, Count: len(rl.ix.Chunks), Bitmap: all})
		h.w.Flush()
		for {
			m, err := h.r.Read()
			if err != nil {
				return
			}
			if w, ok := m.(*wire.Want); ok {
				h.wantsN++
				if err := onWant(h, w); err != nil {
					return
				}
			}
		}
	}()
	t.Cleanup(func() { mine.Close(); wg.Wait() })
	return h
}

// A hostile LAN peer announces everything and then misbehaves; an honest
// WAN peer holds the release too. The download completes from the honest
// one, the hostile one is disconnected with a log line naming it and its
// fault, and no byte that is not the release's reaches deliver.
func TestHostilePeer(t *testing.T) {
	rl := makeRelease(t, 1<<20, 3, smallParams)
	corrupt := func(rl *release, m *wire.Want) []byte {
		for i := range rl.ix.Chunks {
			if rl.ix.ID(i).Equals(m.CID) {
				obj := append([]byte{object.KindRaw}, rl.chunk(i)...)
				obj[len(obj)/2] ^= 0x40
				return obj
			}
		}
		return []byte{object.KindRaw, 1, 2, 3}
	}
	cases := []struct {
		name   string
		onWant func(h *hostile, m *wire.Want) error
		log    []string // nil: not misbehaviour; it may stay connected
	}{
		{"corrupt block", func(h *hostile, m *wire.Want) error {
			h.w.Write(&wire.Block{Req: m.Req, CID: m.CID, Object: corrupt(rl, m)})
			return h.w.Flush()
		}, []string{"disconnecting peer", "bad block"}},
		{"corrupt zstd block", func(h *hostile, m *wire.Want) error {
			obj := []byte{object.KindZstd, 0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0}
			h.w.Write(&wire.Block{Req: m.Req, CID: m.CID, Object: obj})
			return h.w.Flush()
		}, []string{"disconnecting peer", "bad block"}},
		{"unrequested block", func(h *hostile, m *wire.Want) error {
			h.w.Write(&wire.Block{Req: m.Req + 1000, CID: m.CID, Object: corrupt(rl, m)})
			return h.w.Flush()
		}, []string{"disconnecting peer", "unrequested block"}},
		{"block for another chunk", func(h *hostile, m *wire.Want) error {
			other := rl.ix.ID(0)
			if other.Equals(m.CID) {
				other = rl.ix.ID(1)
			}
			h.w.Write(&wire.Block{Req: m.Req, CID: other, Object: []byte{object.KindRaw, 0}})
			return h.w.Flush()
		}, []string{"disconnecting peer", "unrequested block"}},
		{"oversized frame", func(h *hostile, m *wire.Want) error {
			var b [5]byte
			binary.BigEndian.PutUint32(b[:], 64<<20)
			b[4] = byte(wire.KindBlock)
			h.c.Write(b[:])
			return errors.New("done")
		}, []string{"disconnecting peer", "frame too large"}},
		{"unknown kind", func(h *hostile, m *wire.Want) error {
			h.c.Write([]byte{0, 0, 0, 1, 0x42})
			return errors.New("done")
		}, []string{"disconnecting peer", "unknown kind"}},
		{"stall mid-stream", func(h *hostile, m *wire.Want) error {
			if h.wantsN == 1 {
				// Half a block frame, then nothing: keep reading, never write.
				h.c.Write([]byte{0, 1, 0, 0, byte(wire.KindBlock), 0, 0})
			}
			return nil
		}, []string{"dropping peer", "scheduler gave up"}},
		{"dont-have to everything", func(h *hostile, m *wire.Want) error {
			h.w.Write(&wire.DontHave{Req: m.Req, CID: m.CID})
			return h.w.Flush()
		}, nil},
	}
	// deliverChecks: the engine only decodes blocks and deliver hashes
	// them (as the node runs it): bad bytes reach deliver, which refuses
	// them, and the sender is disconnected all the same.
	for _, deliverChecks := range []bool{false, true} {
		for _, tc := range cases {
			name := tc.name
			if deliverChecks {
				name += "/deliver checks"
			}
			hostileCase(t, rl, name, deliverChecks, tc.onWant, tc.log)
		}
	}
}

func hostileCase(t *testing.T, rl *release, name string, deliverChecks bool, onWant func(h *hostile, m *wire.Want) error, wantLog []string) {
	tc := struct{ log []string }{wantLog}
	t.Run(name, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		honest := newNode(t, "honest", exchange.Config{})
		honest.seed(rl)
		if _, err := honest.e.Serve(ctx, rl.ix); err != nil {
			t.Fatal(err)
		}
		v := newNode(t, "victim", exchange.Config{})
		connect(v, honest, sched.WAN)
		d, dl := v.prepare(t, rl, exchange.DownloadConfig{TickPeriod: 5 * time.Millisecond,
			Sched: sched.Config{StallTicks: 10, MaxStrikes: 2}, DeliverChecks: deliverChecks})
		h := startHostile(t, v, "mallory", rl, onWant)
		announced(t, v, rl.id, 2)
		want := rl.unique()
		if err := d.FetchAll(ctx, want, dl.deliver(rl)); err != nil {
			t.Fatal(err)
		}
		if deliverChecks {
			dl.refused() // deliver refused them; the slot check below holds
		}
		dl.check(t, rl, want)
		if string(v.slot.b) != string(rl.data) {
			t.Fatal("slot differs from the release")
		}
		if v.e.Penalties("honest") != 0 {
			t.Error("honest peer penalised")
		}
		if tc.log == nil {
			// Dont-haves are no misbehaviour: the scheduler stops asking
			// (strikes, halved window); whether it drops the peer before
			// the download ends depends on timing.
			return
		}
		select {
		case <-h.gone:
		case <-ctx.Done():
			t.Fatal("hostile peer still connected")
		}
		waitFor(t, "the victim to forget mallory", func() bool { return !peerConnected(v, "mallory") })
		if v.e.Penalties("mallory") == 0 {
			t.Error("mallory not penalised")
		}
		if v.e.Penalties("honest") != 0 {
			t.Error("honest peer penalised")
		}
		logs := v.log.String()
		if !containsAll(logs, append([]string{"peer=mallory"}, tc.log...)...) {
			t.Errorf("log lacks %q:\n%s", tc.log, logs)
		}
		t.Logf("victim: chunks by class %v, bad blocks %d", d.Stats().Chunks, d.Stats().BadBlocks)
	})
}

// What a peer sends to the serving side: each broken rule disconnects it
// with a log line naming it and the fault.
func TestSessionRules(t *testing.T) {
	rl := makeRelease(t, 256<<10, 4, smallParams)
	id0 := rl.ix.ID(0)
	cases := []struct {
		name string
		send func(w *wire.Writer, c exchange.Conn)
		log  string
	}{
		{"second hello", func(w *wire.Writer, c exchange.Conn) {
			w.Write(&wire.Hello{Version: 1, MaxFrame: wire.MinFrameLimit})
		}, "second hello"},
		{"have-delta before have", func(w *wire.Writer, c exchange.Conn) {
			w.Write(&wire.HaveDelta{Index: rl.id, Count: len(rl.ix.Chunks), Positions: []uint32{1}})
		}, "before a have"},
		{"have of the wrong count", func(w *wire.Writer, c exchange.Conn) {
			n := len(rl.ix.Chunks) + 1
			w.Write(&wire.Have{Index: rl.id, Count: n, Bitmap: make([]byte, wire.BitmapLen(n))})
		}, "malformed"},
		{"too many wants", func(w *wire.Writer, c exchange.Conn) {
			for i := range 200 {
				w.Write(&wire.Want{Req: wire.RequestID(i), CID: id0})
			}
		}, "unanswered wants"},
		{"unrequested dont-have", func(w *wire.Writer, c exchange.Conn) {
			w.Write(&wire.DontHave{Req: 7, CID: id0})
		}, "unrequested dont-have"},
		{"unrequested block", func(w *wire.Writer, c exchange.Conn) {
			w.Write(&wire.Block{Req: 7, CID: id0, Object: []byte{object.KindRaw, 1}})
		}, "unrequested block"},
		{"oversized frame", func(w *wire.Writer, c exchange.Conn) {
			w.Flush()
			c.Write([]byte{0x7f, 0, 0, 0, byte(wire.KindBlock)})
		}, "frame too large"},
		{"empty frame", func(w *wire.Writer, c exchange.Conn) {
			w.Flush()
			c.Write([]byte{0, 0, 0, 0})
		}, "malformed"},
		// No download is running, so only the frame deadline can end these.
		{"stall in a frame", func(w *wire.Writer, c exchange.Conn) {
			w.Flush()
			c.Write([]byte{0, 0, 1, 0, byte(wire.KindBlock), 0, 0})
		}, "stalled in the middle of a frame"},
		{"stall in a header", func(w *wire.Writer, c exchange.Conn) {
			w.Flush()
			c.Write([]byte{0, 0})
		}, "stalled in the middle of a frame"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newNode(t, "server", exchange.Config{MaxPeerWants: 8, FrameTimeout: 100 * time.Millisecond})
			s.seed(rl)
			if _, err := s.e.Serve(context.Background(), rl.ix); err != nil {
				t.Fatal(err)
			}
			mine, theirs := exchange.Pipe("eve", "server", sched.LAN)
			done := make(chan error, 1)
			go func() { done <- s.e.Run(context.Background(), theirs) }()
			r, w := wire.NewReader(mine, 0), wire.NewWriter(mine, 0)
			if _, err := wire.Handshake(r, w, 0); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() { // drain what the server says (but see "too many wants")
				for {
					if _, err := r.Read(); err != nil {
						return
					}
					if tc.name == "too many wants" {
						<-stop // stop reading: answers pile up
						return
					}
				}
			}()
			go func() {
				tc.send(w, mine)
				w.Flush()
			}()
			select {
			case err := <-done:
				if !errors.Is(err, exchange.ErrMisbehaved) {
					t.Errorf("Run = %v, want ErrMisbehaved", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("server did not disconnect")
			}
			mine.Close()
			if logs := s.log.String(); !containsAll(logs, "peer=eve", tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, logs)
			}
			if s.e.Penalties("eve") != 1 {
				t.Errorf("penalties = %d", s.e.Penalties("eve"))
			}
		})
	}
}

// A plain end of stream is no misbehaviour.
func TestStreamEndIsNoFault(t *testing.T) {
	s := newNode(t, "server", exchange.Config{})
	mine, theirs := exchange.Pipe("bob", "server", sched.LAN)
	done := make(chan error, 1)
	go func() { done <- s.e.Run(context.Background(), theirs) }()
	r, w := wire.NewReader(mine, 0), wire.NewWriter(mine, 0)
	if _, err := wire.Handshake(r, w, 0); err != nil {
		t.Fatal(err)
	}
	mine.Close()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if s.e.Penalties("bob") != 0 {
		t.Error("penalised for hanging up")
	}
	_ = io.EOF
}

// A first frame that is not a Hello fails the handshake: misbehaviour.
func TestFirstFrameNotHello(t *testing.T) {
	s := newNode(t, "server", exchange.Config{})
	mine, theirs := exchange.Pipe("eve", "server", sched.LAN)
	done := make(chan error, 1)
	go func() { done <- s.e.Run(context.Background(), theirs) }()
	go io.Copy(io.Discard, mine)
	w := wire.NewWriter(mine, 0)
	w.Write(&wire.Cancel{Req: 1})
	w.Flush()
	if err := <-done; !errors.Is(err, exchange.ErrMisbehaved) {
		t.Fatalf("Run = %v, want ErrMisbehaved", err)
	}
	mine.Close()
	if logs := s.log.String(); !containsAll(logs, "peer=eve", "handshake", "not hello") {
		t.Errorf("log:\n%s", logs)
	}
}
