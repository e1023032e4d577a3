package delta_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
)

var testParams = chunker.Params{Min: 1 << 10, Avg: 4 << 10, Max: 16 << 10}

// text returns n bytes of seeded pseudo-text: compressible like a file
// system's contents, never repeating, so chunk boundaries vary.
func text(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	words := []string{"shoal", "chunk", "delta", "base", "target", "image", "slot", "device", "fleet", "swarm", "zstd", "range"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(8) == 0 {
			b.WriteString(string(rune('0' + r.IntN(10))))
		}
		b.WriteByte(" \n"[r.IntN(2)])
	}
	return b.Bytes()[:n]
}

// edit returns a copy of base with scattered small changes: overwrites,
// insertions and a deletion, as an upgrade of a few files does to an image.
func edit(base []byte, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	t := bytes.Clone(base)
	for range 12 { // overwrites
		at := r.IntN(len(t) - 64)
		for k := range 1 + r.IntN(40) {
			t[at+k] ^= byte(1 + r.IntN(255))
		}
	}
	for range 3 { // insertions
		at := r.IntN(len(t))
		t = append(t[:at], append(text(seed+uint64(at), 100+r.IntN(3000)), t[at:]...)...)
	}
	at := r.IntN(len(t) - 5000) // a deletion
	t = append(t[:at], t[at+2000+r.IntN(2000):]...)
	return t
}

func split(t *testing.T, data []byte) *chunker.Index {
	t.Helper()
	ix, err := chunker.Split(context.Background(), bytes.NewReader(data), chunker.Options{Params: testParams})
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

type pair struct {
	base, target     []byte
	baseIx, targetIx *chunker.Index
}

func newPair(t *testing.T, seed uint64, size int) pair {
	base := text(seed, size)
	target := edit(base, seed)
	return pair{base, target, split(t, base), split(t, target)}
}

func (p pair) images() (delta.Image, delta.Image) {
	return delta.Image{Index: p.baseIx, Data: bytes.NewReader(p.base)},
		delta.Image{Index: p.targetIx, Data: bytes.NewReader(p.target)}
}

// Every delta the planner keeps expands, from the base alone, to its chunk;
// the delta index round-trips and fits its pair; deltas are much smaller
// than the chunks' own objects.
func TestPlanRoundTrip(t *testing.T) {
	p := newPair(t, 1, 1<<20)
	base, target := p.images()
	objs := map[int64][]byte{}
	ix, st, err := delta.Plan(context.Background(), base, target, delta.Options{
		MaxRef: 256 << 10,
		Objects: func(e delta.Entry, obj []byte) error {
			objs[e.Pos] = bytes.Clone(obj)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)
	if st.NewChunks == 0 || st.Deltas == 0 {
		t.Fatalf("no deltas planned: %+v", st)
	}
	if st.Deltas+st.KeptWhole != st.NewChunks || len(ix.Entries) != st.Deltas || len(objs) != st.Deltas {
		t.Fatalf("counts disagree: %+v, %d entries, %d objects", st, len(ix.Entries), len(objs))
	}
	// Scattered small edits: deltas should cost a small fraction of the
	// whole objects.
	if st.DeltaBytes*3 > st.WholeBytes {
		t.Errorf("deltas save too little: %d bytes with deltas, %d whole", st.DeltaBytes, st.WholeBytes)
	}
	if err := ix.Check(p.baseIx, p.targetIx); err != nil {
		t.Fatal(err)
	}
	enc := ix.Encode()
	dec, err := delta.DecodeIndex(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dec.Encode(), enc) {
		t.Fatal("delta index does not round-trip")
	}
	toff := p.targetIx.Offsets()
	for _, e := range dec.Entries {
		obj := objs[e.Pos]
		if len(obj) != e.Size || dec.Hash.Sum(obj) != e.Digest {
			t.Fatalf("entry %d: object does not match its size or digest", e.Pos)
		}
		h, _, err := delta.ParseHeader(obj, dec.Limits())
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Ranges) != len(e.Ranges) || h.Ranges[0] != e.Ranges[0] {
			t.Fatalf("entry %d: header ranges %v, index %v", e.Pos, h.Ranges, e.Ranges)
		}
		got, err := delta.ExpandFrom(nil, nil, p.targetIx.ID(int(e.Pos)), obj, bytes.NewReader(p.base), dec.Limits())
		if err != nil {
			t.Fatal(err)
		}
		if want := p.target[toff[e.Pos]:toff[e.Pos+1]]; !bytes.Equal(got, want) {
			t.Fatalf("entry %d expands to other bytes", e.Pos)
		}
	}
}

// The plan does not depend on the number of workers.
func TestPlanDeterministic(t *testing.T) {
	p := newPair(t, 2, 1<<20)
	var encs [][]byte
	for _, w := range []int{1, 2, 3} {
		base, target := p.images()
		ix, _, err := delta.Plan(context.Background(), base, target, delta.Options{Workers: w, MaxRef: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		encs = append(encs, ix.Encode())
	}
	for i := 1; i < len(encs); i++ {
		if !bytes.Equal(encs[0], encs[i]) {
			t.Fatalf("plan with %d workers differs from the plan with 1", i+1)
		}
	}
}

// Identical releases need no delta; a base with nothing in common gives a
// reference anyway (the whole base is a window) but no crash.
func TestPlanEdgeCases(t *testing.T) {
	data := text(3, 200<<10)
	ix := split(t, data)
	img := delta.Image{Index: ix, Data: bytes.NewReader(data)}
	dix, st, err := delta.Plan(context.Background(), img, img, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.NewChunks != 0 || len(dix.Entries) != 0 {
		t.Fatalf("self plan: %+v", st)
	}

	other := text(4, 100<<10)
	oix := split(t, other)
	_, st, err = delta.Plan(context.Background(), img, delta.Image{Index: oix, Data: bytes.NewReader(other)}, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.NewChunks != len(oix.Chunks) {
		t.Fatalf("unrelated plan: %+v", st)
	}

	empty := split(t, nil)
	_, st, err = delta.Plan(context.Background(), delta.Image{Index: empty, Data: bytes.NewReader(nil)}, delta.Image{Index: oix, Data: bytes.NewReader(other)}, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Deltas != 0 || st.KeptWhole != len(oix.Chunks) {
		t.Fatalf("plan against an empty base: %+v", st)
	}
}

// Images that do not match their indexes are refused, naming the image.
func TestPlanImageMismatch(t *testing.T) {
	p := newPair(t, 5, 512<<10)
	for _, tc := range []struct {
		name   string
		mutate func(p *pair)
		want   string
	}{
		{"target byte", func(p *pair) {
			// Change a byte inside a new chunk: it is read and hashed.
			toff := p.targetIx.Offsets()
			in := map[chunker.Digest]bool{}
			for _, e := range p.baseIx.Chunks {
				in[e.Digest] = true
			}
			for i, e := range p.targetIx.Chunks {
				if !in[e.Digest] {
					p.target[toff[i]+1] ^= 0xff
					return
				}
			}
		}, "target image"},
		{"target short", func(p *pair) { p.target = p.target[:len(p.target)-10] }, "target image"},
		{"base byte", func(p *pair) {
			for i := range p.base {
				p.base[i] ^= 0x55 // every reference touches a changed chunk
			}
		}, "base image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := pair{bytes.Clone(p.base), bytes.Clone(p.target), p.baseIx, p.targetIx}
			tc.mutate(&q)
			base, target := q.images()
			_, _, err := delta.Plan(context.Background(), base, target, delta.Options{})
			if !errors.Is(err, delta.ErrImageMismatch) {
				t.Fatalf("got %v, want ErrImageMismatch", err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Errorf("error %q does not name the %s", err, tc.want)
			}
		})
	}
}

func TestPlanOptions(t *testing.T) {
	p := newPair(t, 6, 256<<10)
	base, target := p.images()
	for _, o := range []delta.Options{{MaxRef: delta.RefCeil + 1}, {MaxRef: -1}, {MinSaving: 1}, {MinSaving: -0.5}} {
		if _, _, err := delta.Plan(context.Background(), base, target, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	other := *p.targetIx
	other.Hash = chunker.BLAKE3
	if _, _, err := delta.Plan(context.Background(), base, delta.Image{Index: &other, Data: target.Data}, delta.Options{}); err == nil {
		t.Error("indexes with different hash functions accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := delta.Plan(ctx, base, target, delta.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled plan: %v", err)
	}
}

// makeDelta encodes chunk against the given ranges of base.
func makeDelta(t testing.TB, base, chunk []byte, ranges []delta.Range) []byte {
	t.Helper()
	e, err := delta.NewEncoder(zstd.SpeedDefault, 64<<10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ref, err := delta.ReadReference(nil, bytes.NewReader(base), ranges)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetReference(ref, ranges); err != nil {
		t.Fatal(err)
	}
	return e.Encode(nil, chunk)
}

func TestExpandRefuses(t *testing.T) {
	base := text(7, 256<<10)
	chunk := bytes.Clone(base[100<<10 : 140<<10])
	chunk[5] ^= 1
	id := chunker.SHA256.ID(chunker.SHA256.Sum(chunk))
	ranges := []delta.Range{{Off: 64 << 10, Len: 128 << 10}}
	good := makeDelta(t, base, chunk, ranges)
	lim := delta.Limits{MaxChunk: 64 << 10, MaxRef: 1 << 20, BaseSize: int64(len(base))}
	got, err := delta.ExpandFrom(nil, nil, id, good, bytes.NewReader(base), lim)
	if err != nil || !bytes.Equal(got, chunk) {
		t.Fatalf("good delta: %v", err)
	}
	if len(good) > 200 {
		t.Errorf("a one-byte change costs a %d-byte delta", len(good))
	}

	set := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	otherBase := bytes.Clone(base)
	otherBase[100<<10+1000] ^= 1
	for _, tc := range []struct {
		name string
		obj  []byte
		base []byte
		lim  delta.Limits
		is   error
	}{
		{"empty", nil, base, lim, delta.ErrCorrupt},
		{"chunk object kind", set(func(b []byte) { b[0] = 1 }), base, lim, delta.ErrCorrupt},
		{"no ranges", set(func(b []byte) { b[1] = 0 }), base, lim, delta.ErrCorrupt},
		{"too many ranges", set(func(b []byte) { b[1] = delta.MaxRanges + 1 }), base, lim, delta.ErrCorrupt},
		{"zero size", set(func(b []byte) { binary.BigEndian.PutUint32(b[2:], 0) }), base, lim, delta.ErrCorrupt},
		{"size above max chunk", set(func(b []byte) { binary.BigEndian.PutUint32(b[2:], 64<<10+1) }), base, lim, delta.ErrTooLarge},
		{"size other than the frame's", set(func(b []byte) { binary.BigEndian.PutUint32(b[2:], uint32(len(chunk)-1)) }), base, lim, delta.ErrCorrupt},
		{"range outside base", set(func(b []byte) { binary.BigEndian.PutUint64(b[6:], uint64(len(base))-100) }), base, lim, delta.ErrBadRange},
		{"range offset overflow", set(func(b []byte) { binary.BigEndian.PutUint64(b[6:], ^uint64(0)) }), base, lim, delta.ErrBadRange},
		{"reference above cap", good, base, delta.Limits{MaxChunk: 64 << 10, MaxRef: 64 << 10, BaseSize: int64(len(base))}, delta.ErrTooLarge},
		{"empty range", set(func(b []byte) { binary.BigEndian.PutUint32(b[14:], 0) }), base, lim, delta.ErrCorrupt},
		{"truncated header", good[:10], base, lim, delta.ErrCorrupt},
		{"truncated frame", good[:len(good)-4], base, lim, delta.ErrCorrupt},
		{"object too large", append(bytes.Clone(good), make([]byte, delta.MaxObjectSize(64<<10))...), base, lim, delta.ErrTooLarge},
		{"other reference bytes", good, otherBase, lim, delta.ErrCorrupt},
		{"base shorter than it claims", good, base[:150<<10], lim, delta.ErrBadRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := delta.ExpandFrom(nil, nil, id, tc.obj, bytes.NewReader(tc.base), tc.lim)
			if !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want %v", err, tc.is)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(id.String())) {
				t.Errorf("error %q does not name the chunk", err)
			}
		})
	}
	for _, l := range []delta.Limits{{MaxChunk: 0, MaxRef: 1, BaseSize: 1}, {MaxChunk: 1, MaxRef: delta.RefCeil + 1, BaseSize: 1}, {MaxChunk: chunker.MaxChunkCeil + 1, MaxRef: 1}} {
		if _, err := delta.ExpandFrom(nil, nil, id, good, bytes.NewReader(base), l); err == nil {
			t.Errorf("limits %+v accepted", l)
		}
	}
	// A reference of the wrong length is the caller's mistake, not the
	// object's: refused without decoding.
	if _, err := delta.Expand(nil, id, good, base[:10], lim); err == nil {
		t.Error("reference of the wrong length accepted")
	}
}

// A delta whose frame does not declare its size and expands far beyond
// the header's size is cut off at the header's size: the decoder never
// allocates more than that.
func TestExpandUndeclaredBomb(t *testing.T) {
	var frame bytes.Buffer
	w, err := zstd.NewWriter(&frame, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for range 16 {
		w.Write(zero)
	}
	w.Close()
	base := make([]byte, 4096)
	ranges := []delta.Range{{Off: 0, Len: 4096}}
	obj := []byte{delta.KindDelta, 1}
	obj = binary.BigEndian.AppendUint32(obj, 1000)
	obj = binary.BigEndian.AppendUint64(obj, 0)
	obj = binary.BigEndian.AppendUint32(obj, 4096)
	obj = append(obj, frame.Bytes()...)
	id := chunker.SHA256.ID(chunker.SHA256.Sum(make([]byte, 1000)))
	lim := delta.Limits{MaxChunk: 64 << 10, MaxRef: 1 << 20, BaseSize: 4096}
	ref, _ := delta.ReadReference(nil, bytes.NewReader(base), ranges)
	delta.Expand(nil, id, obj, ref, lim) // warm the decoder pool
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = delta.Expand(nil, id, obj, ref, lim)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, delta.ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("allocated %d bytes refusing a 16 MiB expansion of a 1000-byte chunk", n)
	}
}

// Expanding reuses the caller's buffers.
func TestExpandReusesBuffers(t *testing.T) {
	base := text(8, 128<<10)
	chunk := bytes.Clone(base[10<<10 : 30<<10])
	chunk[0] ^= 1
	ranges := []delta.Range{{Off: 0, Len: 64 << 10}}
	obj := makeDelta(t, base, chunk, ranges)
	id := chunker.SHA256.ID(chunker.SHA256.Sum(chunk))
	dst, refBuf := make([]byte, 64<<10), make([]byte, 64<<10)
	got, err := delta.ExpandFrom(dst, refBuf, id, obj, bytes.NewReader(base), delta.Limits{MaxChunk: 64 << 10, MaxRef: 64 << 10, BaseSize: int64(len(base))})
	if err != nil {
		t.Fatal(err)
	}
	if &got[0] != &dst[0] {
		t.Error("not expanded into dst")
	}
	ref, _ := delta.ReadReference(refBuf, bytes.NewReader(base), ranges)
	if &ref[0] != &refBuf[0] {
		t.Error("reference not read into the buffer given")
	}
}
