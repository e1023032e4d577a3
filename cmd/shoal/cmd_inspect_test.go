package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
)

// testIndex builds a valid index of n chunks of parameters p (every chunk
// p.Min bytes but the last, which is shorter) without chunking anything.
func testIndex(p chunker.Params, h chunker.Hash, n int) *chunker.Index {
	ix := &chunker.Index{Params: p, Hash: h, Chunks: make([]chunker.Entry, n)}
	for i := range ix.Chunks {
		e := &ix.Chunks[i]
		e.Size = uint32(p.Min)
		if i == n-1 {
			e.Size = uint32(p.Min/2 + 1)
		}
		binary.BigEndian.PutUint64(e.Digest[:], uint64(i%1000)) // repeats, as real images do
		e.Digest[31] = byte(n)
		ix.Size += int64(e.Size)
	}
	return ix
}

// decodeIndexFile reads path through indexFile into a whole Index, for
// comparing with chunker.DecodeIndex.
func decodeIndexFile(path string) (*chunker.Index, indexSummary, error) {
	x, err := openIndexFile(path)
	if err != nil {
		return nil, indexSummary{}, err
	}
	defer x.Close()
	ix := &chunker.Index{Params: x.params, Hash: x.hash, Size: x.size}
	var at int64
	s, err := x.scan(context.Background(), func(i, off int64, e chunker.Entry) error {
		if i != int64(len(ix.Chunks)) || off != at {
			return fmt.Errorf("entry %d at offset %d, want entry %d at %d", i, off, len(ix.Chunks), at)
		}
		ix.Chunks = append(ix.Chunks, e)
		at += int64(e.Size)
		return nil
	})
	return ix, s, err
}

// sameAsDecodeIndex checks that the streaming reader accepts exactly what
// chunker.DecodeIndex accepts, with the same error (after the path), the
// same chunks, root and ID.
func sameAsDecodeIndex(t *testing.T, dir string, b []byte) {
	t.Helper()
	p := filepath.Join(dir, "x.idx")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	want, werr := chunker.DecodeIndex(b)
	got, s, gerr := decodeIndexFile(p)
	switch {
	case werr != nil && gerr == nil:
		t.Fatalf("%x: DecodeIndex: %v; streamed: accepted", b[:min(len(b), 64)], werr)
	case werr == nil && gerr != nil:
		t.Fatalf("%x: DecodeIndex accepted; streamed: %v", b[:min(len(b), 64)], gerr)
	case werr != nil:
		if gerr.Error() != p+": "+werr.Error() {
			t.Fatalf("streamed: %v\nDecodeIndex: %v", gerr, werr)
		}
		return
	}
	if got.Params != want.Params || got.Hash != want.Hash || got.Size != want.Size || len(got.Chunks) != len(want.Chunks) {
		t.Fatalf("streamed %v %v %d %d chunks, DecodeIndex %v %v %d %d chunks", got.Params, got.Hash, got.Size, len(got.Chunks), want.Params, want.Hash, want.Size, len(want.Chunks))
	}
	for i := range want.Chunks {
		if got.Chunks[i] != want.Chunks[i] {
			t.Fatalf("chunk %d differs", i)
		}
	}
	if s.root != want.Root() || !s.id.Equals(want.CID()) {
		t.Fatalf("root %v id %v, DecodeIndex gives %v %v", s.root, s.id, want.Root(), want.CID())
	}
}

func TestIndexFileMatchesDecodeIndex(t *testing.T) {
	dir := t.TempDir()
	small := chunker.Params{Min: 64, Avg: 128, Max: 256}
	var inputs [][]byte
	for _, ix := range []*chunker.Index{
		testIndex(chunker.DefaultParams, chunker.SHA256, 0),
		testIndex(chunker.DefaultParams, chunker.SHA256, 1),
		testIndex(small, chunker.BLAKE3, 3),
		testIndex(small, chunker.SHA256, idxBatch+5), // more than one batch
	} {
		inputs = append(inputs, ix.Encode())
	}
	// Every truncation, every byte changed three ways, and trailing bytes,
	// of a small valid index.
	base := testIndex(small, chunker.SHA256, 3).Encode()
	for n := range base {
		inputs = append(inputs, base[:n])
	}
	for i := range base {
		for _, v := range []byte{0, 0xff, base[i] + 1} {
			b := bytes.Clone(base)
			b[i] = v
			inputs = append(inputs, b)
		}
	}
	inputs = append(inputs, append(bytes.Clone(base), 0), append(bytes.Clone(base), make([]byte, idxEntrySize)...))
	// Header fields that are consistent with each other but not with the
	// chunks: a huge count, a huge size, sizes that do not add up.
	for _, f := range []struct {
		off int
		v   uint64
	}{{40, 1 << 61}, {40, 1 << 40}, {40, 2}, {32, 1 << 63}, {32, 1}} {
		b := bytes.Clone(base)
		binary.BigEndian.PutUint64(b[f.off:], f.v)
		inputs = append(inputs, b)
	}
	// The chunker's own fuzz corpus for DecodeIndex.
	corpus, _ := filepath.Glob("../../chunker/testdata/fuzz/FuzzDecodeIndex/*")
	if len(corpus) == 0 {
		t.Fatal("no chunker fuzz corpus found")
	}
	for _, p := range corpus {
		inputs = append(inputs, readCorpusBytes(t, p))
	}
	for _, b := range inputs {
		sameAsDecodeIndex(t, dir, b)
	}
}

// readCorpusBytes reads a one-value []byte entry of a Go fuzz corpus file.
func readCorpusBytes(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	v := strings.TrimSuffix(strings.TrimPrefix(lines[len(lines)-1], "[]byte("), ")")
	s, err := strconv.Unquote(v)
	if len(lines) != 2 || err != nil {
		t.Fatalf("%s: not a []byte corpus entry: %v", p, err)
	}
	return []byte(s)
}

// FuzzIndexFile: the streaming reader agrees with chunker.DecodeIndex on
// every input.
func FuzzIndexFile(f *testing.F) {
	f.Add(testIndex(chunker.Params{Min: 64, Avg: 128, Max: 256}, chunker.SHA256, 3).Encode())
	f.Add(testIndex(chunker.DefaultParams, chunker.BLAKE3, 2).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		sameAsDecodeIndex(t, t.TempDir(), b)
	})
}

// inspect --json --chunks writes, entry by entry, what writeJSON writes for
// the whole object with its chunk list.
func TestInspectStreamedOutput(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 5} {
		ix := testIndex(chunker.Params{Min: 64, Avg: 128, Max: 256}, chunker.SHA256, n)
		p := filepath.Join(dir, fmt.Sprintf("%d.idx", n))
		if err := os.WriteFile(p, ix.Encode(), 0o644); err != nil {
			t.Fatal(err)
		}
		type withList struct {
			inspectInfo
			List []chunkInfo `json:"chunk_list,omitempty"`
		}
		want := withList{inspectInfo: inspectInfo{
			Version: chunker.IndexVersion, Hash: "sha2-256", Min: 64, Avg: 128, Max: 256,
			Bytes: ix.Size, Chunks: int64(n), Root: ix.Root().String(), IndexCID: ix.CID().String(),
		}}
		off := ix.Offsets()
		for i, e := range ix.Chunks {
			want.List = append(want.List, chunkInfo{off[i], e.Size, ix.ID(i).String()})
			want.Largest = max(want.Largest, e.Size)
			if i == 0 || e.Size < want.Smallest {
				want.Smallest = e.Size
			}
		}
		if n > 0 {
			want.AvgChunk = ix.Size / int64(n)
		}
		var wb bytes.Buffer
		writeJSON(&wb, want)
		out, errs, code := runCLI(t, "inspect", p, "--json", "--chunks")
		if code != 0 || out != wb.String() {
			t.Fatalf("%d chunks: exit %d %s\ngot:\n%s\nwant:\n%s", n, code, errs, out, wb.String())
		}
		var back withList
		if err := json.Unmarshal([]byte(out), &back); err != nil || len(back.List) != n {
			t.Fatalf("%d chunks: %v, %d listed", n, err, len(back.List))
		}
		out, _, code = runCLI(t, "inspect", p, "--chunks")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 5+n || (n > 0 && !strings.HasSuffix(lines[5+n-1], ix.ID(n-1).String())) {
			t.Fatalf("%d chunks: text --chunks:\n%s", n, out)
		}
	}
}

// A large index is streamed: inspect and diff allocate far less than the
// file holds.
func TestInspectDiffMemoryFlat(t *testing.T) {
	dir := t.TempDir()
	ix := testIndex(chunker.Params{Min: 64, Avg: 128, Max: 256}, chunker.SHA256, 300_000) // 10.8 MB
	p := filepath.Join(dir, "big.idx")
	if err := os.WriteFile(p, ix.Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	fileSize := int64(idxHeaderSize + 300_000*idxEntrySize)
	measure := func(args ...string) (uint64, string) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		out, errs, code := runCLI(t, args...)
		runtime.ReadMemStats(&after)
		if code != 0 {
			t.Fatalf("%v: exit %d %s", args, code, errs)
		}
		return after.TotalAlloc - before.TotalAlloc, out
	}
	alloc, out := measure("inspect", p, "--json")
	if !strings.Contains(out, ix.Root().String()) {
		t.Fatalf("inspect: %s", out)
	}
	if alloc > uint64(fileSize/8) {
		t.Errorf("inspect of a %d-byte index allocated %d bytes", fileSize, alloc)
	}
	// diff holds OLD's distinct digests (1000 here), not its entries.
	alloc, out = measure("diff", p, p, "--json")
	var d diffResult
	if json.Unmarshal([]byte(out), &d) != nil || d.NewBytes != 0 || d.ReusedBytes != ix.Size {
		t.Fatalf("diff: %s", out)
	}
	if alloc > uint64(fileSize/8) {
		t.Errorf("diff of two %d-byte indexes allocated %d bytes", fileSize, alloc)
	}
}

// A file larger than its header allows, or a header claiming more than the
// file holds, is refused from the header and the file size, before any
// entry is read or anything is allocated for them.
func TestInspectTooLarge(t *testing.T) {
	dir := t.TempDir()
	base := testIndex(chunker.Params{Min: 64, Avg: 128, Max: 256}, chunker.SHA256, 3).Encode()

	trailing := filepath.Join(dir, "trailing.idx")
	if err := os.WriteFile(trailing, base, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(trailing, 64<<30); err != nil { // sparse: 64 GiB of trailing zeros
		t.Fatal(err)
	}
	claims := filepath.Join(dir, "claims.idx")
	b := bytes.Clone(base)
	binary.BigEndian.PutUint64(b[40:], 1<<40) // a trillion chunks in 156 bytes
	if err := os.WriteFile(claims, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// A sparse file exactly as long as its (huge) count says: the first
	// entry is read, found bad, and nothing more.
	huge := filepath.Join(dir, "huge.idx")
	b = bytes.Clone(base[:idxHeaderSize])
	const hugeCount = 1 << 30
	binary.BigEndian.PutUint64(b[40:], hugeCount)
	binary.BigEndian.PutUint64(b[32:], hugeCount*64)
	if err := os.WriteFile(huge, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, idxHeaderSize+hugeCount*idxEntrySize); err != nil {
		t.Fatal(err)
	}
	ok := filepath.Join(dir, "ok.idx")
	if err := os.WriteFile(ok, base, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{trailing, "trailing bytes after 3 chunks"},
		{claims, "truncated: count says 1099511627776 chunks"},
		{huge, "chunks[0].size): zero-length chunk"},
	} {
		for _, args := range [][]string{{"inspect", c.path}, {"diff", c.path, ok}, {"diff", ok, c.path}} {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, errs, code := runCLI(t, args...)
			runtime.ReadMemStats(&after)
			if code != exitIntegrity || !strings.Contains(errs, c.path) || !strings.Contains(errs, c.want) {
				t.Errorf("%v: exit %d %q, want integrity error containing %q", args, code, errs, c.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("%v took %v", args, d)
			}
			if a := after.TotalAlloc - before.TotalAlloc; a > 8<<20 {
				t.Errorf("%v allocated %d bytes", args, a)
			}
		}
	}
}

// inspect and diff refuse what is not a regular file, at once, naming the
// path and what it is: /dev/zero never ends, a FIFO without a writer
// would block in open.
func TestInspectDiffRefuseSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.idx")
	if err := os.WriteFile(good, testIndex(chunker.DefaultParams, chunker.SHA256, 2).Encode(), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.idx")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{"/dev/zero": "character device", fifo: "named pipe", dir: "directory"} {
		for _, args := range [][]string{{"inspect", path}, {"diff", path, good}, {"diff", good, path}} {
			type result struct {
				errs string
				code int
			}
			done := make(chan result, 1)
			go func() {
				_, errs, code := runCLI(t, args...)
				done <- result{errs, code}
			}()
			select {
			case r := <-done:
				if r.code != exitFailure || !strings.Contains(r.errs, path) || !strings.Contains(r.errs, kind) || !strings.Contains(r.errs, "not a regular file") {
					t.Errorf("%v: exit %d %q", args, r.code, r.errs)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%v: still running after 10s", args)
			}
		}
	}
}
