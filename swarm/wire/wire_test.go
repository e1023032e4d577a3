package wire_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"reflect"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/swarm/wire"
)

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func idOf(h chunker.Hash, data []byte) cid.Cid { return h.ID(h.Sum(data)) }

var (
	chunkData = bytes.Repeat([]byte("a chunk of an image "), 3000)
	chunkID   = idOf(chunker.SHA256, chunkData)
	indexID   = idOf(chunker.SHA256, []byte("an index"))
	blakeID   = idOf(chunker.BLAKE3, []byte("a blake3 chunk"))
)

// bitmap returns a bitmap over n positions with the given ones set.
func bitmap(n int, set ...int) []byte {
	b := make([]byte, wire.BitmapLen(n))
	for _, i := range set {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

// samples has every message kind, with edge cases of each.
func samples() []wire.Message {
	full := make([]byte, wire.BitmapLen(wire.MaxChunks))
	for i := range full {
		full[i] = 0xff
	}
	return []wire.Message{
		&wire.Hello{Version: 1, MaxFrame: wire.MinFrameLimit},
		&wire.Hello{Version: 7, Features: 0xdeadbeef, MaxFrame: wire.MaxFrameLimit},
		&wire.Have{Index: indexID, Count: 0, Bitmap: nil},
		&wire.Have{Index: indexID, Count: 1, Bitmap: bitmap(1, 0)},
		&wire.Have{Index: indexID, Count: 13, Bitmap: bitmap(13, 0, 7, 8, 12)},
		&wire.Have{Index: blakeID, Count: 64, Bitmap: bitmap(64, 63)},
		&wire.Have{Index: indexID, Count: wire.MaxChunks, Bitmap: full},
		&wire.HaveDelta{Index: indexID, Count: 1, Positions: []uint32{0}},
		&wire.HaveDelta{Index: indexID, Count: 65536, Positions: []uint32{0, 1, 2, 900, 65535}},
		&wire.Want{Req: 0, CID: chunkID},
		&wire.Want{Req: 1<<32 - 1, CID: chunkID, Index: indexID, Position: 0},
		&wire.Want{Req: 42, CID: blakeID, Index: indexID, Position: wire.MaxChunks - 1},
		&wire.Block{Req: 42, CID: chunkID, Object: object.Encode(nil, chunkData)},
		&wire.Block{Req: 43, CID: chunkID, Object: append([]byte{object.KindRaw}, chunkData...)},
		&wire.Block{Req: 44, CID: blakeID, Object: []byte{object.KindRaw}},
		&wire.DontHave{Req: 42, CID: chunkID},
		&wire.Cancel{Req: 42},
		&wire.Cancel{Req: 1<<32 - 1},
	}
}

// clone deep-copies a message (a Reader's is overwritten by the next
// Read) and normalizes empty slices to nil for comparison.
func clone(m wire.Message) wire.Message {
	cp := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return append([]byte(nil), b...)
	}
	switch v := m.(type) {
	case *wire.Hello:
		c := *v
		return &c
	case *wire.Have:
		c := *v
		c.Bitmap = cp(v.Bitmap)
		return &c
	case *wire.HaveDelta:
		c := *v
		c.Positions = append([]uint32(nil), v.Positions...)
		return &c
	case *wire.Want:
		c := *v
		return &c
	case *wire.Block:
		c := *v
		c.Object = cp(v.Object)
		return &c
	case *wire.DontHave:
		c := *v
		return &c
	case *wire.Cancel:
		c := *v
		return &c
	}
	panic(fmt.Sprintf("unknown message %T", m))
}

func TestRoundTripFrames(t *testing.T) {
	for _, m := range samples() {
		t.Run(m.Kind().String(), func(t *testing.T) {
			f, err := wire.AppendFrame([]byte("keep"), m)
			if err != nil {
				t.Fatal(err)
			}
			if string(f[:4]) != "keep" {
				t.Fatal("AppendFrame did not append")
			}
			f = f[4:]
			got, n, err := wire.DecodeFrame(append(f, "next frame"...), wire.MaxFrameLimit)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(f) {
				t.Fatalf("took %d bytes, frame has %d", n, len(f))
			}
			if !reflect.DeepEqual(clone(got), clone(m)) {
				t.Fatalf("got %+v, want %+v", got, m)
			}
		})
	}
}

func TestRoundTripStream(t *testing.T) {
	var buf bytes.Buffer
	w := wire.NewWriter(&buf, wire.MaxFrameLimit)
	ms := samples()
	for _, m := range ms {
		if err := w.Write(m); err != nil {
			t.Fatalf("%v: %v", m.Kind(), err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := wire.NewReader(&buf, wire.MaxFrameLimit)
	for i, want := range ms {
		got, err := r.Read()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !reflect.DeepEqual(clone(got), clone(want)) {
			t.Fatalf("message %d: got %+v, want %+v", i, got, want)
		}
	}
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

// Writing a value and writing a pointer give the same frame.
func TestWriteValues(t *testing.T) {
	vals := []wire.Message{
		wire.Hello{Version: 1, MaxFrame: wire.MinFrameLimit},
		wire.Want{Req: 1, CID: chunkID},
		wire.Block{Req: 1, CID: chunkID, Object: []byte{object.KindRaw, 1, 2}},
		wire.Cancel{Req: 9},
	}
	for _, v := range vals {
		var a, b bytes.Buffer
		wa, wb := wire.NewWriter(&a, 0), wire.NewWriter(&b, 0)
		p := reflect.New(reflect.TypeOf(v))
		p.Elem().Set(reflect.ValueOf(v))
		if err := wa.Write(v); err != nil {
			t.Fatal(err)
		}
		if err := wb.Write(p.Interface().(wire.Message)); err != nil {
			t.Fatal(err)
		}
		wa.Flush()
		wb.Flush()
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%v: value and pointer encode differently", v.Kind())
		}
	}
}

// The Reader reuses its buffers: a second message of a kind overwrites
// the first one's slices, as documented.
func TestReaderReusesBuffers(t *testing.T) {
	var buf bytes.Buffer
	w := wire.NewWriter(&buf, 0)
	w.Write(&wire.Block{Req: 1, CID: chunkID, Object: []byte{object.KindRaw, 'a'}})
	w.Write(&wire.Block{Req: 2, CID: chunkID, Object: []byte{object.KindRaw, 'b'}})
	w.Write(&wire.HaveDelta{Index: indexID, Count: 10, Positions: []uint32{1, 2}})
	w.Write(&wire.HaveDelta{Index: indexID, Count: 10, Positions: []uint32{3, 4}})
	w.Flush()
	r := wire.NewReader(&buf, 0)
	m1, _ := r.Read()
	b1 := m1.(*wire.Block)
	obj := b1.Object
	m2, _ := r.Read()
	if m1 != m2 || obj[1] != 'b' || &obj[0] != &m2.(*wire.Block).Object[0] {
		t.Error("the Reader did not reuse its Block and frame buffer")
	}
	m3, _ := r.Read()
	p := m3.(*wire.HaveDelta).Positions
	m4, _ := r.Read()
	if p[0] != 3 || &p[0] != &m4.(*wire.HaveDelta).Positions[0] {
		t.Error("the Reader did not reuse the positions slice")
	}
}

// Two peers over net.Pipe (synchronous, unbuffered): both handshake at
// once, then one pipelines Wants and the other answers with Blocks and a
// DontHave, the requester verifying every block.
func TestPipeConversation(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()

	chunks := map[cid.Cid][]byte{}
	var ids []cid.Cid
	for i := range 20 {
		data := randBytes(uint64(i), 1000+i*3000)
		if i%2 == 0 {
			data = bytes.Repeat(data[:100], len(data)/100)
		}
		id := idOf(chunker.SHA256, data)
		chunks[id] = data
		ids = append(ids, id)
	}
	missing := idOf(chunker.SHA256, []byte("nobody has this"))

	served := make(chan error, 1)
	go func() {
		served <- func() error {
			r, w := wire.NewReader(b, wire.FrameLimitFor(64<<10)), wire.NewWriter(b, 0)
			if _, err := wire.Handshake(r, w, 0); err != nil {
				return err
			}
			for {
				m, err := r.Read()
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				switch m := m.(type) {
				case *wire.Want:
					data, ok := chunks[m.CID]
					if !ok {
						err = w.Write(&wire.DontHave{Req: m.Req, CID: m.CID})
					} else {
						err = w.Write(&wire.Block{Req: m.Req, CID: m.CID, Object: object.Encode(nil, data)})
					}
				case *wire.Have:
					err = m.Check(len(ids))
				default:
					err = fmt.Errorf("unexpected %v", m.Kind())
				}
				if err == nil {
					err = w.Flush()
				}
				if err != nil {
					return err
				}
			}
		}()
	}()

	r, w := wire.NewReader(a, 0), wire.NewWriter(a, 0)
	peer, err := wire.Handshake(r, w, 0)
	if err != nil {
		t.Fatal(err)
	}
	if peer.Version != wire.Version || int(peer.MaxFrame) != wire.FrameLimitFor(64<<10) || w.MaxFrame() != int(peer.MaxFrame) {
		t.Fatalf("peer hello %+v, writer limit %d", peer, w.MaxFrame())
	}
	// Pipeline every want in one flush; the server answers as they come.
	writeDone := make(chan error, 1)
	go func() {
		if err := w.Write(&wire.Have{Index: indexID, Count: len(ids), Bitmap: bitmap(len(ids))}); err != nil {
			writeDone <- err
			return
		}
		for i, id := range ids {
			if err := w.Write(&wire.Want{Req: wire.RequestID(i), CID: id, Index: indexID, Position: i}); err != nil {
				writeDone <- err
				return
			}
		}
		if err := w.Write(&wire.Want{Req: 999, CID: missing}); err != nil {
			writeDone <- err
			return
		}
		writeDone <- w.Flush()
	}()
	dst := make([]byte, 64<<10)
	for range len(ids) + 1 {
		m, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *wire.Block:
			want := ids[m.Req]
			data, err := wire.DecodeBlock(dst, m, want, 64<<10)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, chunks[want]) {
				t.Fatalf("request %d: wrong bytes", m.Req)
			}
		case *wire.DontHave:
			if m.Req != 999 || !m.CID.Equals(missing) {
				t.Fatalf("unexpected dont-have %+v", m)
			}
		default:
			t.Fatalf("unexpected %v", m.Kind())
		}
	}
	if err := <-writeDone; err != nil {
		t.Fatal(err)
	}
	a.Close()
	if err := <-served; err != nil && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatal(err)
	}
}

func TestHandshakeRefusesOtherFirstFrame(t *testing.T) {
	var in bytes.Buffer
	pw := wire.NewWriter(&in, 0)
	pw.Write(&wire.Want{Req: 1, CID: chunkID})
	pw.Flush()
	var out bytes.Buffer
	_, err := wire.Handshake(wire.NewReader(&in, 0), wire.NewWriter(&out, 0), 0)
	if !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
}

func TestFrameLimits(t *testing.T) {
	if got := wire.FrameLimitFor(chunker.DefaultParams.Max); got != wire.MinFrameLimit {
		t.Errorf("FrameLimitFor(256 KiB) = %d, want MinFrameLimit", got)
	}
	if got := wire.FrameLimitFor(chunker.MaxChunkCeil); got != wire.MaxFrameLimit {
		t.Errorf("FrameLimitFor(MaxChunkCeil) = %d, want MaxFrameLimit", got)
	}
	// The largest Have fits the smallest limit, and the largest Block of a
	// chunk of maxChunk bytes fits FrameLimitFor(maxChunk).
	full := make([]byte, wire.BitmapLen(wire.MaxChunks))
	f, err := wire.AppendFrame(nil, &wire.Have{Index: indexID, Count: wire.MaxChunks, Bitmap: full})
	if err != nil || len(f)-wire.HeaderSize > wire.MinFrameLimit {
		t.Errorf("largest have: %d bytes (%v), limit %d", len(f)-wire.HeaderSize, err, wire.MinFrameLimit)
	}
	long := cid.NewCidV1(cid.Raw, append([]byte{0x1e, 32}, make([]byte, 32)...))
	for _, m := range []int{64, 64 << 10, 1 << 20, 1<<20 + 1, 3 << 20, chunker.MaxChunkCeil} {
		obj := make([]byte, object.MaxSize(m))
		obj[0] = object.KindZstd
		f, err := wire.AppendFrame(nil, &wire.Block{Req: 1, CID: long, Object: obj})
		if err != nil || len(f)-wire.HeaderSize > wire.FrameLimitFor(m) {
			t.Errorf("block of a %d-byte chunk: frame of %d bytes (%v), limit %d", m, len(f)-wire.HeaderSize, err, wire.FrameLimitFor(m))
		}
	}
}

func TestWriterRefusesAbovePeerLimit(t *testing.T) {
	var buf bytes.Buffer
	w := wire.NewWriter(&buf, 0)
	big := &wire.Block{Req: 1, CID: chunkID, Object: make([]byte, wire.MinFrameLimit)}
	big.Object[0] = object.KindRaw
	if err := w.Write(big); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if w.Buffered() != 0 {
		t.Fatal("a refused frame was partly written")
	}
	// The writer is still usable.
	if err := w.Write(&wire.Cancel{Req: 1}); err != nil {
		t.Fatal(err)
	}
	w.SetMaxFrame(wire.MaxFrameLimit)
	if err := w.Write(big); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	r := wire.NewReader(&buf, wire.MaxFrameLimit)
	r.Read()
	if m, err := r.Read(); err != nil || len(m.(*wire.Block).Object) != len(big.Object) {
		t.Fatalf("big block after raising the limit: %v", err)
	}
}

func TestHaveHas(t *testing.T) {
	h := &wire.Have{Index: indexID, Count: 13, Bitmap: bitmap(13, 0, 7, 8, 12)}
	var got []int
	for i := -1; i <= 14; i++ {
		if h.Has(i) {
			got = append(got, i)
		}
	}
	if fmt.Sprint(got) != "[0 7 8 12]" {
		t.Errorf("Has: %v", got)
	}
	if err := h.Check(13); err != nil {
		t.Error(err)
	}
	for _, n := range []int{12, 14, 16, 0} {
		if err := h.Check(n); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("Check(%d) = %v, want ErrMalformed", n, err)
		}
	}
	d := &wire.HaveDelta{Index: indexID, Count: 13, Positions: []uint32{3}}
	if d.Check(13) != nil || !errors.Is(d.Check(14), wire.ErrMalformed) {
		t.Error("HaveDelta.Check")
	}
}

// TestDocFrames checks the frames docs/swarm.md spells out byte by byte.
func TestDocFrames(t *testing.T) {
	var digest [32]byte
	for i := range digest {
		digest[i] = 0xd0 + byte(i)
	}
	id := chunker.SHA256.ID(digest)
	for _, tc := range []struct {
		m    wire.Message
		want string
	}{
		{&wire.Cancel{Req: 42}, "00000005" + "07" + "0000002a"},
		{&wire.Want{Req: 1, CID: id}, "0000002f" + "04" + "00000001" + "24" + "01551220" + fmt.Sprintf("%x", digest[:]) + "00" + "00000000"},
	} {
		f, err := wire.AppendFrame(nil, tc.m)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%x", f); got != tc.want {
			t.Errorf("%v:\n got %s\nwant %s", tc.m.Kind(), got, tc.want)
		}
	}
}
