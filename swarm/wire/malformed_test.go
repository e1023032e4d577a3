package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/swarm/wire"
)

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// frame builds a frame of kind k from body parts, with a correct length.
func frame(k byte, parts ...[]byte) []byte {
	b := []byte{k}
	for _, p := range parts {
		b = append(b, p...)
	}
	return append(u32(uint32(len(b))), b...)
}

// cf is a CID field: length byte, then the CID's bytes.
func cf(c cid.Cid) []byte { return append([]byte{byte(c.ByteLen())}, c.Bytes()...) }

// rawField is a CID field of arbitrary bytes.
func rawField(b []byte) []byte { return append([]byte{byte(len(b))}, b...) }

func mhCID(codec uint64, code uint64, digest []byte) []byte {
	m, err := mh.Encode(digest, code)
	if err != nil {
		panic(err)
	}
	return cid.NewCidV1(codec, m).Bytes()
}

var sentinels = []error{wire.ErrFrameTooLarge, wire.ErrMalformed, wire.ErrUnknownKind, wire.ErrBadBlock, io.ErrUnexpectedEOF, io.EOF}

// malformedCases are inputs a receiver must refuse, with the error it
// gives. Each is one frame (or the start of one).
var malformedCases = []struct {
	name string
	in   []byte
	is   error
}{
	// Frames.
	{"empty frame", u32(0), wire.ErrMalformed},
	{"length one above the limit", u32(wire.DefaultMaxFrame + 1), wire.ErrFrameTooLarge},
	{"length of 4 GiB", u32(1<<32 - 1), wire.ErrFrameTooLarge},
	{"kind 0", frame(0, u32(1)), wire.ErrUnknownKind},
	{"kind 8", frame(8, u32(1)), wire.ErrUnknownKind},
	{"kind 255", frame(255), wire.ErrUnknownKind},
	{"header cut", []byte{0, 0, 1}, io.ErrUnexpectedEOF},
	{"body cut", append(u32(10), 7, 0, 0), io.ErrUnexpectedEOF},

	// Hello.
	{"hello short", frame(1, []byte{1}, u32(0), []byte{0, 0x10}), wire.ErrMalformed},
	{"hello trailing byte", frame(1, []byte{1}, u32(0), u32(wire.MinFrameLimit), []byte{0}), wire.ErrMalformed},
	{"hello version 0", frame(1, []byte{0}, u32(0), u32(wire.MinFrameLimit)), wire.ErrMalformed},
	{"hello frame limit below minimum", frame(1, []byte{1}, u32(0), u32(wire.MinFrameLimit-1)), wire.ErrMalformed},
	{"hello frame limit above maximum", frame(1, []byte{1}, u32(0), u32(wire.MaxFrameLimit+1)), wire.ErrMalformed},

	// CID fields (in a Want).
	{"cid empty", frame(4, u32(1), []byte{0}, []byte{0}, u32(0)), wire.ErrMalformed},
	{"cid length above 64", frame(4, u32(1), rawField(make([]byte, 65)), []byte{0}, u32(0)), wire.ErrMalformed},
	{"cid overruns body", frame(4, u32(1), []byte{36}, chunkID.Bytes()[:20]), wire.ErrMalformed},
	{"cid body ends before length", frame(4, u32(1)), wire.ErrMalformed},
	{"cid garbage", frame(4, u32(1), rawField(bytes.Repeat([]byte{0xff}, 36)), []byte{0}, u32(0)), wire.ErrMalformed},
	{"cid v0", frame(4, u32(1), rawField(append([]byte{0x12, 0x20}, make([]byte, 32)...)), []byte{0}, u32(0)), wire.ErrMalformed},
	{"cid dag-pb codec", frame(4, u32(1), rawField(mhCID(cid.DagProtobuf, mh.SHA2_256, make([]byte, 32))), []byte{0}, u32(0)), wire.ErrMalformed},
	{"cid sha1", frame(4, u32(1), rawField(mhCID(cid.Raw, mh.SHA1, make([]byte, 20))), []byte{0}, u32(0)), wire.ErrMalformed},
	{"cid short sha256 digest", frame(4, u32(1), rawField(mhCID(cid.Raw, mh.SHA2_256, make([]byte, 16))), []byte{0}, u32(0)), wire.ErrMalformed},
	{"cid length includes a stray byte", frame(4, u32(1), rawField(append(chunkID.Bytes(), 0)), []byte{0}, u32(0)), wire.ErrMalformed},
	{"cid non-minimal varint", frame(4, u32(1), rawField(append([]byte{0x81, 0x00}, chunkID.Bytes()[1:]...)), []byte{0}, u32(0)), wire.ErrMalformed},
	{"cid in index field garbage", frame(4, u32(1), cf(chunkID), rawField([]byte{1, 2, 3}), u32(0)), wire.ErrMalformed},

	// Have.
	{"have count above MaxChunks", frame(2, cf(indexID), u32(wire.MaxChunks+1), make([]byte, 16)), wire.ErrMalformed},
	{"have bitmap short", frame(2, cf(indexID), u32(17), []byte{0, 0}), wire.ErrMalformed},
	{"have bitmap long (trailing garbage)", frame(2, cf(indexID), u32(16), []byte{0, 0, 0}), wire.ErrMalformed},
	{"have bitmap for 4 GiB positions", frame(2, cf(indexID), u32(1<<32-1)), wire.ErrMalformed},
	{"have padding bit set", frame(2, cf(indexID), u32(13), []byte{0, 0x04}), wire.ErrMalformed},
	{"have cut before count", frame(2, cf(indexID), []byte{0, 0}), wire.ErrMalformed},
	{"have no index", frame(2, []byte{0}, u32(0)), wire.ErrMalformed},

	// HaveDelta.
	{"have-delta no positions", frame(3, cf(indexID), u32(10)), wire.ErrMalformed},
	{"have-delta count 0", frame(3, cf(indexID), u32(0), u32(0)), wire.ErrMalformed},
	{"have-delta count above MaxChunks", frame(3, cf(indexID), u32(wire.MaxChunks+1), u32(0)), wire.ErrMalformed},
	{"have-delta ragged positions", frame(3, cf(indexID), u32(10), u32(1), []byte{0, 2}), wire.ErrMalformed},
	{"have-delta decreasing", frame(3, cf(indexID), u32(10), u32(5), u32(4)), wire.ErrMalformed},
	{"have-delta duplicate", frame(3, cf(indexID), u32(10), u32(5), u32(5)), wire.ErrMalformed},
	{"have-delta position at count", frame(3, cf(indexID), u32(10), u32(1), u32(10)), wire.ErrMalformed},
	{"have-delta more positions than chunks", frame(3, cf(indexID), u32(1), u32(0), u32(1)), wire.ErrMalformed},

	// Want.
	{"want position without index", frame(4, u32(1), cf(chunkID), []byte{0}, u32(3)), wire.ErrMalformed},
	{"want position above MaxChunks", frame(4, u32(1), cf(chunkID), cf(indexID), u32(wire.MaxChunks)), wire.ErrMalformed},
	{"want trailing byte", frame(4, u32(1), cf(chunkID), []byte{0}, u32(0), []byte{0}), wire.ErrMalformed},
	{"want cut before position", frame(4, u32(1), cf(chunkID), []byte{0}, []byte{0, 0}), wire.ErrMalformed},
	{"want cut before index", frame(4, u32(1), cf(chunkID)), wire.ErrMalformed},

	// Block.
	{"block empty object", frame(5, u32(1), cf(chunkID)), wire.ErrMalformed},
	{"block object kind 0", frame(5, u32(1), cf(chunkID), []byte{0, 1, 2}), wire.ErrUnknownKind},
	{"block object kind 3 (delta, not offered)", frame(5, u32(1), cf(chunkID), []byte{3, 1, 2}), wire.ErrUnknownKind},
	{"block cut in request id", frame(5, []byte{0, 0, 1}), wire.ErrMalformed},

	// DontHave, Cancel.
	{"dont-have trailing byte", frame(6, u32(1), cf(chunkID), []byte{9}), wire.ErrMalformed},
	{"dont-have no cid", frame(6, u32(1)), wire.ErrMalformed},
	{"cancel short", frame(7, []byte{0, 0, 1}), wire.ErrMalformed},
	{"cancel trailing byte", frame(7, u32(1), []byte{0}), wire.ErrMalformed},
	{"cancel empty", frame(7), wire.ErrMalformed},
}

func checkSentinel(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Fatalf("%v wraps %v as well as %v", err, s, want)
		}
	}
}

func TestMalformed(t *testing.T) {
	for _, tc := range malformedCases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := wire.DecodeFrame(tc.in, 0)
			checkSentinel(t, err, tc.is)
			t.Log(err)

			r := wire.NewReader(bytes.NewReader(tc.in), 0)
			_, err = r.Read()
			checkSentinel(t, err, tc.is)
			if _, again := r.Read(); again != err {
				t.Fatalf("error not sticky: then %v", again)
			}
		})
	}
}

// A valid frame followed by a malformed one: the first still decodes.
func TestMalformedAfterValid(t *testing.T) {
	in := append(frame(7, u32(5)), frame(7, u32(5), []byte{1})...)
	r := wire.NewReader(bytes.NewReader(in), 0)
	if m, err := r.Read(); err != nil || m.(*wire.Cancel).Req != 5 {
		t.Fatalf("first frame: %v", err)
	}
	if _, err := r.Read(); !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("second frame: %v", err)
	}
}

// The encoder refuses what the decoder would.
func TestEncoderRefuses(t *testing.T) {
	obj := []byte{object.KindRaw, 1}
	for _, tc := range []struct {
		name string
		m    wire.Message
		is   error
	}{
		{"hello version 0", &wire.Hello{MaxFrame: wire.MinFrameLimit}, wire.ErrMalformed},
		{"hello limit 0", &wire.Hello{Version: 1}, wire.ErrMalformed},
		{"have no index", &wire.Have{Count: 0}, wire.ErrMalformed},
		{"have negative count", &wire.Have{Index: indexID, Count: -1}, wire.ErrMalformed},
		{"have count above MaxChunks", &wire.Have{Index: indexID, Count: wire.MaxChunks + 1, Bitmap: make([]byte, wire.BitmapLen(wire.MaxChunks+1))}, wire.ErrMalformed},
		{"have short bitmap", &wire.Have{Index: indexID, Count: 9, Bitmap: []byte{0}}, wire.ErrMalformed},
		{"have padding bit", &wire.Have{Index: indexID, Count: 9, Bitmap: []byte{0, 1}}, wire.ErrMalformed},
		{"have index not a chunk ID", &wire.Have{Index: cid.NewCidV0(mustMH(mh.SHA2_256, 32)), Count: 0}, wire.ErrMalformed},
		{"have-delta empty", &wire.HaveDelta{Index: indexID, Count: 3}, wire.ErrMalformed},
		{"have-delta unsorted", &wire.HaveDelta{Index: indexID, Count: 3, Positions: []uint32{2, 1}}, wire.ErrMalformed},
		{"have-delta out of range", &wire.HaveDelta{Index: indexID, Count: 3, Positions: []uint32{3}}, wire.ErrMalformed},
		{"want no cid", &wire.Want{Req: 1}, wire.ErrMalformed},
		{"want position without index", &wire.Want{Req: 1, CID: chunkID, Position: 1}, wire.ErrMalformed},
		{"want negative position", &wire.Want{Req: 1, CID: chunkID, Index: indexID, Position: -1}, wire.ErrMalformed},
		{"block no cid", &wire.Block{Req: 1, Object: obj}, wire.ErrMalformed},
		{"block empty object", &wire.Block{Req: 1, CID: chunkID}, wire.ErrMalformed},
		{"block unknown object kind", &wire.Block{Req: 1, CID: chunkID, Object: []byte{9}}, wire.ErrUnknownKind},
		{"block above MaxFrameLimit", &wire.Block{Req: 1, CID: chunkID, Object: append([]byte{object.KindRaw}, make([]byte, wire.MaxFrameLimit)...)}, wire.ErrFrameTooLarge},
		{"dont-have no cid", &wire.DontHave{Req: 1}, wire.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := wire.AppendFrame([]byte("x"), tc.m)
			checkSentinel(t, err, tc.is)
			if string(out) != "x" {
				t.Fatalf("refused frame left %q in dst", out)
			}
			var buf bytes.Buffer
			w := wire.NewWriter(&buf, wire.MaxFrameLimit)
			checkSentinel(t, w.Write(tc.m), tc.is)
			if w.Buffered() != 0 {
				t.Fatal("refused message was written")
			}
		})
	}
}

func mustMH(code uint64, n int) mh.Multihash {
	m, err := mh.Encode(make([]byte, n), code)
	if err != nil {
		panic(err)
	}
	return m
}

// endless delivers the same byte forever and counts what was read.
type endless struct {
	b    byte
	read int64
}

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = e.b
	}
	e.read += int64(len(p))
	return len(p), nil
}

// A length prefix of 4 GiB from a peer that would deliver every byte of
// it: refused after reading the prefix (and one bufio fill), without
// allocating for the frame.
func TestHugeLengthRefusedBeforeAllocation(t *testing.T) {
	src := &endless{b: 0xff}
	var err error
	allocs := testing.AllocsPerRun(50, func() {
		r := wire.NewReader(src, wire.MaxFrameLimit)
		_, err = r.Read()
	})
	checkSentinel(t, err, wire.ErrFrameTooLarge)
	if src.read > 51*64<<10 {
		t.Errorf("read %d bytes from the peer for 51 refused frames", src.read)
	}
	// NewReader's bufio buffer and the error message are all it allocates.
	if allocs > 8 {
		t.Errorf("%v allocations per refused frame", allocs)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := wire.NewReader(src, wire.MaxFrameLimit)
	_, err = r.Read()
	runtime.ReadMemStats(&after)
	checkSentinel(t, err, wire.ErrFrameTooLarge)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Errorf("allocated %d bytes refusing a 4 GiB frame", n)
	}

	// DecodeFrame on a slice: only the error message is allocated.
	in := u32(1<<32 - 1)
	if a := testing.AllocsPerRun(100, func() { wire.DecodeFrame(in, 0) }); a > 6 {
		t.Errorf("DecodeFrame: %v allocations refusing a 4 GiB frame", a)
	}
}

// A peer that announces a frame at the limit and sends a little of it
// costs about what it sent, not the limit.
func TestLargeFrameGrowsWithData(t *testing.T) {
	in := append(u32(wire.MaxFrameLimit), byte(wire.KindBlock))
	in = append(in, make([]byte, 100<<10)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := wire.NewReader(bytes.NewReader(in), wire.MaxFrameLimit)
	_, err := r.Read()
	runtime.ReadMemStats(&after)
	checkSentinel(t, err, io.ErrUnexpectedEOF)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("allocated %d bytes for 100 KiB of a 16 MiB frame", n)
	}
}

func TestReaderEOF(t *testing.T) {
	r := wire.NewReader(bytes.NewReader(nil), 0)
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
	if _, _, err := wire.DecodeFrame(nil, 0); err != io.EOF {
		t.Fatalf("empty slice: %v, want io.EOF", err)
	}
}

// A stream error that is not EOF is passed through unchanged.
func TestReaderPassesStreamErrors(t *testing.T) {
	boom := errors.New("stream reset")
	r := wire.NewReader(io.MultiReader(bytes.NewReader(frame(7, u32(1))[:6]), errReader{boom}), 0)
	_, err := r.Read()
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want the stream's error", err)
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			t.Fatalf("stream error wraps %v", s)
		}
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
