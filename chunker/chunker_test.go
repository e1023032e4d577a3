package chunker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// seeded returns n deterministic pseudo-random bytes (splitmix64), the same
// on every platform and Go version.
func seeded(seed uint64, n int) []byte {
	b := make([]byte, n)
	s := seed
	for i := 0; i < n; i += 8 {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(z >> (8 * j))
		}
	}
	return b
}

// imageLike mixes random runs, zero runs and repeated runs, as disk images do.
func imageLike(seed uint64, n int) []byte {
	b := seeded(seed, n)
	if n == 0 {
		return b
	}
	r := seeded(seed+1, 1024)
	for i := 0; i < 512; i += 2 {
		start := (int(r[i])<<16 | int(r[i+1])<<8 | int(r[i+2])) % n
		l := int(r[i+3]) << 10
		end := min(start+l, n)
		if i%4 == 0 {
			clear(b[start:end])
		} else if start+2*l < n {
			copy(b[start+l:], b[start:end])
		}
	}
	return b
}

func splitBytes(t testing.TB, data []byte, o Options) *Index {
	t.Helper()
	ix, err := Split(context.Background(), bytes.NewReader(data), o)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestCutMatchesReference(t *testing.T) {
	for _, p := range []Params{DefaultParams, {Min: 64, Avg: 256, Max: 1024}, {Min: 100, Avg: 1000, Max: 5000}, {Min: 2048, Avg: 8192, Max: 65536}} {
		c := newCutter(p)
		for seed := uint64(0); seed < 4; seed++ {
			data := imageLike(seed, 3<<20)
			for pos := 0; pos < len(data); {
				got, want := c.cut(data[pos:]), c.cutRef(data[pos:])
				if got != want {
					t.Fatalf("params %v seed %d pos %d: cut %d, reference %d", p, seed, pos, got, want)
				}
				pos += got
			}
			// Odd and short tails.
			for n := 0; n < 3*p.Min && n < len(data); n += 7 {
				if got, want := c.cut(data[:n]), c.cutRef(data[:n]); got != want {
					t.Fatalf("params %v len %d: cut %d, reference %d", p, n, got, want)
				}
			}
		}
	}
}

func TestSplitInvariants(t *testing.T) {
	for _, p := range []Params{DefaultParams, {Min: 64, Avg: 256, Max: 1024}} {
		for _, n := range []int{0, 1, p.Min - 1, p.Min, p.Max, p.Max + 1, 5<<20 + 3, 9 << 20} {
			data := imageLike(uint64(n), n)
			ix := splitBytes(t, data, Options{Params: p})
			if ix.Size != int64(n) {
				t.Fatalf("n=%d: size %d", n, ix.Size)
			}
			off := ix.Offsets()
			for i, e := range ix.Chunks {
				if int(e.Size) > p.Max || (int(e.Size) < p.Min && i != len(ix.Chunks)-1) {
					t.Fatalf("n=%d chunk %d: size %d outside %v", n, i, e.Size, p)
				}
				if got := SHA256.Sum(data[off[i]:off[i+1]]); got != e.Digest {
					t.Fatalf("n=%d chunk %d: digest mismatch", n, i)
				}
			}
			// The pipeline agrees with cutting the whole slice directly.
			c := newCutter(p)
			pos := 0
			for i := 0; pos < n; i++ {
				l := c.cut(data[pos:])
				if l != int(ix.Chunks[i].Size) {
					t.Fatalf("n=%d chunk %d: pipeline %d, direct %d", n, i, ix.Chunks[i].Size, l)
				}
				pos += l
			}
		}
	}
}

func TestSplitReaderShapeDoesNotMatter(t *testing.T) {
	data := imageLike(7, 6<<20)
	want := splitBytes(t, data, Options{})
	for name, r := range map[string]io.Reader{
		"onebyte": iotest.OneByteReader(bytes.NewReader(data[:1<<20])),
		"half":    iotest.HalfReader(bytes.NewReader(data)),
		"dataerr": iotest.DataErrReader(bytes.NewReader(data)),
	} {
		ix, err := Split(context.Background(), r, Options{Workers: 3})
		if err != nil {
			t.Fatal(name, err)
		}
		ref := want
		if name == "onebyte" {
			ref = splitBytes(t, data[:1<<20], Options{})
		}
		if !bytes.Equal(ix.Encode(), ref.Encode()) {
			t.Fatalf("%s: index differs from bytes.Reader's", name)
		}
	}
}

func TestSplitReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader(seeded(1, 5<<20)), iotest.ErrReader(boom))
	if _, err := Split(context.Background(), r, Options{}); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
}

func TestSplitWorkErrorStops(t *testing.T) {
	boom := errors.New("boom")
	data := seeded(2, 8<<20)
	_, err := Split(context.Background(), bytes.NewReader(data), Options{Work: func(c Chunk, _ []byte) error {
		if c.Index == 10 {
			return boom
		}
		return nil
	}})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
}

func TestSplitCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Split(ctx, bytes.NewReader(seeded(3, 8<<20)), Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestSplitEmitInOrder(t *testing.T) {
	data := imageLike(9, 10<<20)
	var next int
	var off int64
	ix, err := Split(context.Background(), bytes.NewReader(data), Options{Emit: func(c Chunk) error {
		if c.Index != next || c.Offset != off {
			t.Fatalf("emit %d at %d, want %d at %d", c.Index, c.Offset, next, off)
		}
		next++
		off += int64(c.Size)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if next != len(ix.Chunks) {
		t.Fatalf("emitted %d of %d", next, len(ix.Chunks))
	}
}

func TestBLAKE3(t *testing.T) {
	data := seeded(4, 1<<20)
	a := splitBytes(t, data, Options{Hash: SHA256})
	b := splitBytes(t, data, Options{Hash: BLAKE3})
	if len(a.Chunks) != len(b.Chunks) || a.Root() == b.Root() {
		t.Fatal("blake3 should cut the same boundaries with different digests")
	}
	if err := Verify(context.Background(), bytes.NewReader(data), b); err != nil {
		t.Fatal(err)
	}
	h, d, err := ParseID(b.ID(0))
	if err != nil || h != BLAKE3 || d != b.Chunks[0].Digest {
		t.Fatalf("ParseID: %v %v %v", h, d, err)
	}
}

func TestVerify(t *testing.T) {
	data := imageLike(5, 7<<20)
	ix := splitBytes(t, data, Options{})
	ctx := context.Background()
	if err := Verify(ctx, bytes.NewReader(data), ix); err != nil {
		t.Fatal(err)
	}
	off := ix.Offsets()
	check := func(name string, r io.Reader, wantIndex int) {
		t.Helper()
		err := Verify(ctx, r, ix)
		var ce *ChunkError
		if !errors.As(err, &ce) || !errors.Is(err, ErrMismatch) {
			t.Fatalf("%s: got %v, want ChunkError", name, err)
		}
		if ce.Index != wantIndex || ce.Offset != off[min(wantIndex, len(ix.Chunks))] {
			t.Fatalf("%s: error names chunk %d at %d, want %d: %v", name, ce.Index, ce.Offset, wantIndex, err)
		}
	}
	// Two corruptions: the first one is reported.
	bad := bytes.Clone(data)
	bad[off[40]+5] ^= 1
	bad[off[3]+100] ^= 0x80
	check("flip", bytes.NewReader(bad), 3)
	check("truncated", bytes.NewReader(data[:off[20]+10]), 20)
	check("short at boundary", bytes.NewReader(data[:off[20]]), 20)
	check("extra", bytes.NewReader(append(bytes.Clone(data), 1, 2, 3)), len(ix.Chunks))
}

func TestMerkleMatchesRecursiveDefinition(t *testing.T) {
	var ref func(h Hash, leaves []Digest) Digest
	ref = func(h Hash, leaves []Digest) Digest {
		if len(leaves) == 1 {
			return leaves[0]
		}
		k := 1
		for k*2 < len(leaves) {
			k *= 2
		}
		l, r := ref(h, leaves[:k]), ref(h, leaves[k:])
		return h.sumParts([]byte{1}, l[:], r[:])
	}
	for n := 0; n <= 70; n++ {
		ix := &Index{Params: DefaultParams, Hash: SHA256}
		var leaves []Digest
		for i := 0; i < n; i++ {
			e := Entry{Size: uint32(1000 + i), Digest: SHA256.Sum([]byte{byte(i)})}
			ix.Chunks = append(ix.Chunks, e)
			var sz [8]byte
			sz[6], sz[7] = byte(e.Size>>8), byte(e.Size)
			leaves = append(leaves, SHA256.sumParts([]byte{0}, sz[:], e.Digest[:]))
		}
		want := SHA256.Sum(nil)
		if n > 0 {
			want = ref(SHA256, leaves)
		}
		if got := ix.Root(); got != want {
			t.Fatalf("n=%d: root %v, want %v", n, got, want)
		}
	}
}

func TestRootBindsSizes(t *testing.T) {
	a := &Index{Params: DefaultParams, Hash: SHA256, Chunks: []Entry{{Size: 5}, {Size: 7}}}
	b := &Index{Params: DefaultParams, Hash: SHA256, Chunks: []Entry{{Size: 6}, {Size: 6}}}
	if a.Root() == b.Root() {
		t.Fatal("roots must differ when boundaries differ")
	}
}

func TestSumID(t *testing.T) {
	id := SHA256.ID(SHA256.Sum([]byte("hello")))
	if _, ok, err := SumID(id, []byte("hello")); !ok || err != nil {
		t.Fatal(ok, err)
	}
	got, ok, err := SumID(id, []byte("hellO"))
	if ok || err != nil || got == id {
		t.Fatal(ok, err)
	}
}

// Zero runs take a shortcut in cut; it must give exactly the reference's
// boundaries wherever the run starts and ends relative to min and normal.
func TestCutZeroRunsMatchReference(t *testing.T) {
	for _, p := range []Params{DefaultParams, {Min: 64, Avg: 256, Max: 1024}} {
		c := newCutter(p)
		if !c.zeroSkip {
			t.Fatalf("%v: zero skipping disabled; the test would prove nothing", p)
		}
		noise := seeded(99, 4*p.Max)
		for _, zeros := range []int{0, 1, 63, 64, 65, p.Min - 7, p.Min, p.Min + 5, p.Min + 64, c.normal - 3, c.normal + 9, p.Max - 1, p.Max, 2 * p.Max} {
			for _, lead := range []int{0, 3, p.Min - 1, p.Min + 1} {
				data := append(append(bytes.Clone(noise[:lead]), make([]byte, zeros)...), noise[lead:]...)
				for pos := 0; pos < len(data); {
					got, want := c.cut(data[pos:]), c.cutRef(data[pos:])
					if got != want {
						t.Fatalf("%v zeros %d lead %d pos %d: cut %d, reference %d", p, zeros, lead, pos, got, want)
					}
					pos += got
				}
			}
		}
	}
}
