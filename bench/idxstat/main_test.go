package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/internal/testtool"
)

// encodeCaibx writes an index in casync's layout, for tests.
func encodeCaibx(min, avg, max uint64, sizes []uint64, ids [][32]byte) []byte {
	le := binary.LittleEndian
	var b []byte
	for _, v := range []uint64{indexHeaderSize, caFormatIndex, 0x2000000000000000, min, avg, max, ^uint64(0), caFormatTable} {
		b = le.AppendUint64(b, v)
	}
	var end uint64
	for i, s := range sizes {
		end += s
		b = le.AppendUint64(b, end)
		b = append(b, ids[i][:]...)
	}
	for _, v := range []uint64{0, 0, indexHeaderSize, uint64(tableHeaderSize + itemSize*(len(sizes)+1)), caFormatTableTail} {
		b = le.AppendUint64(b, v)
	}
	return b
}

func id(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestParseCaibxRoundTrip(t *testing.T) {
	sizes := []uint64{20000, 70000, 262144, 5}
	ids := [][32]byte{id("a"), id("b"), id("a"), id("c")}
	ix, err := parseCaibx(encodeCaibx(16384, 65536, 262144, sizes, ids))
	if err != nil {
		t.Fatal(err)
	}
	if ix.min != 16384 || ix.avg != 65536 || ix.max != 262144 {
		t.Errorf("params %d/%d/%d", ix.min, ix.avg, ix.max)
	}
	if len(ix.chunks) != len(sizes) || ix.size != 20000+70000+262144+5 {
		t.Fatalf("%d chunks, %d bytes", len(ix.chunks), ix.size)
	}
	for i, c := range ix.chunks {
		if c.size != sizes[i] || c.id != ids[i] {
			t.Errorf("chunk %d: size %d, want %d (or wrong ID)", i, c.size, sizes[i])
		}
	}
	s := statsOf(ix)
	if s.Distinct != 3 || s.AtMax != 1 || s.Smallest != 5 || s.Largest != 262144 || s.Tool != "casync" {
		t.Errorf("stats %+v", s)
	}
}

func TestParseCaibxRejectsMalformed(t *testing.T) {
	good := encodeCaibx(16384, 65536, 262144, []uint64{100, 200}, [][32]byte{id("a"), id("b")})
	le := binary.LittleEndian
	cases := map[string]func([]byte) []byte{
		"truncated":       func(b []byte) []byte { return b[:len(b)-1] },
		"empty":           func(b []byte) []byte { return nil },
		"header magic":    func(b []byte) []byte { b[8] ^= 1; return b },
		"table magic":     func(b []byte) []byte { b[indexHeaderSize+8] ^= 1; return b },
		"tail marker":     func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
		"tail table size": func(b []byte) []byte { le.PutUint64(b[len(b)-16:], 7); return b },
		"offsets go back": func(b []byte) []byte {
			le.PutUint64(b[indexHeaderSize+tableHeaderSize+itemSize:], 50)
			return b
		},
		"zero-size chunk": func(b []byte) []byte {
			le.PutUint64(b[indexHeaderSize+tableHeaderSize+itemSize:], 100)
			return b
		},
	}
	for name, mangle := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parseCaibx(mangle(bytes.Clone(good)))
			if !errors.Is(err, errMalformed) {
				t.Fatalf("got %v, want errMalformed", err)
			}
		})
	}
}

func TestDiffCountsEachNewChunkOnce(t *testing.T) {
	old := &index{chunks: []chunk{{id("a"), 10}, {id("b"), 20}}, size: 30}
	nw := &index{chunks: []chunk{{id("a"), 10}, {id("x"), 7}, {id("x"), 7}, {id("y"), 3}, {id("b"), 20}}, size: 47}
	d := diffOf(old, nw)
	want := diff{TotalChunks: 5, TotalBytes: 47, NewChunks: 2, NewBytes: 10, ReusedBytes: 30}
	if d != want {
		t.Errorf("diff %+v, want %+v", d, want)
	}
}

func TestRuns(t *testing.T) {
	old := &index{chunks: []chunk{{id("a"), 100}, {id("b"), 100}, {id("c"), 100}}}
	// New: a [x y] b [z] c — two runs; the changed bytes are 120..170 and 310..320.
	nw := &index{tool: "t", chunks: []chunk{{id("a"), 100}, {id("x"), 50}, {id("y"), 60}, {id("b"), 100}, {id("z"), 30}, {id("c"), 100}}}
	r := runsOf(old, nw, []span{{120, 170}, {310, 320}})
	if r.NewChunks != 3 || r.NewBytes != 140 || r.Runs != 2 || r.MaxRunChunks != 2 || r.RunBytesMax != 110 {
		t.Fatalf("runs %+v", r)
	}
	// Run 1 is 100..210 (110 bytes, 50 changed), run 2 is 310..340 (30, 10 changed).
	if r.ChangedBytes != 60 || r.Overhead != 60+20 || r.OverheadMax != 60 || r.RunsOver256K != 0 {
		t.Fatalf("overhead %+v", r)
	}
}

// TestLoadShoalIndex reads an index written by the chunker itself.
func TestLoadShoalIndex(t *testing.T) {
	data := randomBytes(3, 2<<20)
	six, err := chunker.Split(context.Background(), bytes.NewReader(data), chunker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.idx")
	if err := os.WriteFile(path, six.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	ix, err := load(path)
	if err != nil {
		t.Fatal(err)
	}
	if ix.tool != "shoal" || ix.size != uint64(len(data)) || len(ix.chunks) != len(six.Chunks) {
		t.Fatalf("tool %s, %d bytes, %d chunks; want shoal, %d, %d", ix.tool, ix.size, len(ix.chunks), len(data), len(six.Chunks))
	}
	for i, e := range six.Chunks {
		if ix.chunks[i].id != e.Digest || ix.chunks[i].size != uint64(e.Size) {
			t.Fatalf("chunk %d differs", i)
		}
	}
	if d := diffOf(ix, ix); d.NewBytes != 0 || d.ReusedBytes != uint64(len(data)) {
		t.Errorf("self diff %+v", d)
	}
}

func writeTar(t *testing.T, path string, files []struct {
	name string
	data []byte
}) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Format: tar.FormatGNU}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestChangedSpans: a changed member and an added one (with a long name, so
// an extension header precedes it) are exactly the changed extents.
func TestChangedSpans(t *testing.T) {
	dir := t.TempDir()
	long := string(bytes.Repeat([]byte("d/"), 80)) + "new"
	type file = struct {
		name string
		data []byte
	}
	a, b, c := randomBytes(1, 1000), randomBytes(2, 3000), randomBytes(3, 512)
	writeTar(t, filepath.Join(dir, "v1.tar"), []file{{"a", a}, {"b", b}, {"c", c}})
	b2 := bytes.Clone(b)
	b2[1500] ^= 1
	writeTar(t, filepath.Join(dir, "v2.tar"), []file{{"a", a}, {"b", b2}, {long, randomBytes(4, 10)}, {"c", c}})
	got, err := changedSpans(filepath.Join(dir, "v1.tar"), filepath.Join(dir, "v2.tar"))
	if err != nil {
		t.Fatal(err)
	}
	// v2: a = header 512 + 1024 data; b = 512 + 3072; long name = 512
	// (extension header) + 512 (name) + 512 (header) + 512 (data); c.
	bStart := uint64(512 + 1024)
	want := []span{{bStart, bStart + 512 + 3072 + 4*512}}
	if len(got) != 1 || got[0] != want[0] {
		t.Fatalf("changed spans %v, want %v", got, want)
	}
}

// TestParseCasyncIndex checks the parser against a real `casync make`:
// chunk sizes add up to the file, stay within the bounds, and the IDs are
// the names of the chunk files casync stored.
func TestParseCasyncIndex(t *testing.T) {
	casync := testtool.Need(t, "casync")
	dir := t.TempDir()
	data := randomBytes(5, 3<<20)
	in := filepath.Join(dir, "blob")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	out := filepath.Join(dir, "blob.caibx")
	cmd := exec.Command(casync, "make", "--chunk-size=16384:65536:262144", "--store="+store, out, in)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("casync make: %v\n%s", err, b)
	}
	ix, err := load(out)
	if err != nil {
		t.Fatal(err)
	}
	if ix.tool != "casync" || ix.size != uint64(len(data)) || ix.min != 16384 || ix.avg != 65536 || ix.max != 262144 {
		t.Fatalf("tool %s, size %d (want %d), params %d/%d/%d", ix.tool, ix.size, len(data), ix.min, ix.avg, ix.max)
	}
	if len(ix.chunks) < 10 {
		t.Fatalf("only %d chunks for 3 MiB", len(ix.chunks))
	}
	for i, c := range ix.chunks {
		if c.size > ix.max || (c.size < ix.min && i != len(ix.chunks)-1) {
			t.Errorf("chunk %d has size %d", i, c.size)
		}
		name := filepath.Join(store, hexOf(c.id[:2]), hexOf(c.id[:])+".cacnk")
		if _, err := os.Stat(name); err != nil {
			t.Errorf("chunk %d: %v", i, err)
		}
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	s := make([]byte, 0, 2*len(b))
	for _, v := range b {
		s = append(s, digits[v>>4], digits[v&15])
	}
	return string(s)
}

// FuzzParse: no input panics; whatever parses is self-consistent.
func FuzzParse(f *testing.F) {
	f.Add(encodeCaibx(16384, 65536, 262144, []uint64{100, 200}, [][32]byte{id("a"), id("b")}))
	f.Add(encodeCaibx(64, 256, 1024, nil, nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := parseCaibx(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v does not wrap errMalformed", err)
			}
			return
		}
		var sum uint64
		for _, c := range ix.chunks {
			if c.size == 0 {
				t.Fatal("zero-size chunk accepted")
			}
			sum += c.size
		}
		if sum != ix.size {
			t.Fatalf("sizes add to %d, index size %d", sum, ix.size)
		}
		statsOf(ix)
		diffOf(ix, ix)
		runsOf(ix, ix, nil)
	})
}

func TestBlocks(t *testing.T) {
	dir := t.TempDir()
	blk := func(s string) []byte { return bytes.Repeat([]byte(s), 8) } // 8-byte blocks
	oldData := bytes.Join([][]byte{blk("a"), blk("b"), blk("c"), blk("d")}, nil)
	// New: b, x, c, y, y, z, a, then a short tail "q": runs x | y y z | q.
	newData := bytes.Join([][]byte{blk("b"), blk("x"), blk("c"), blk("y"), blk("y"), blk("z"), blk("a"), []byte("q")}, nil)
	op, np := filepath.Join(dir, "old"), filepath.Join(dir, "new")
	if err := os.WriteFile(op, oldData, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(np, newData, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := blocksOf(op, np, 8)
	if err != nil {
		t.Fatal(err)
	}
	want := blocks{Block: 8, NewBlocks: 4, NewBytes: 25, Runs: 3, SingleBlocks: 2}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
