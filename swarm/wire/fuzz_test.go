package wire_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/swarm/wire"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus in testdata/fuzz")

// sentinelOf names the one sentinel an error wraps, "" for none.
func sentinelOf(err error) string {
	var found []string
	for _, s := range sentinels {
		if errors.Is(err, s) {
			found = append(found, s.Error())
		}
	}
	if len(found) != 1 {
		return fmt.Sprint(found)
	}
	return found[0]
}

// decodeSeeds are the FuzzDecode seeds: every sample frame, a stream of
// all of them, and every malformed case.
func decodeSeeds() [][]byte {
	var seeds [][]byte
	var all []byte
	for _, m := range samples() {
		f, err := wire.AppendFrame(nil, m)
		if err != nil {
			panic(err)
		}
		if len(f) > 4<<10 {
			continue // keep the committed corpus small
		}
		seeds = append(seeds, f)
		all = append(all, f...)
	}
	seeds = append(seeds, all)
	for _, tc := range malformedCases {
		seeds = append(seeds, tc.in)
	}
	return seeds
}

// FuzzDecode feeds arbitrary bytes to the decoder, as a peer can. It
// checks that nothing panics; that every error wraps exactly one
// sentinel (or is the end of the input); that every frame that decodes
// re-encodes to exactly its bytes (the encoding is canonical); that the
// Reader and DecodeFrame agree; and that DecodeBlock accepts only bytes
// that hash to the block's CID.
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := wire.NewReader(bytes.NewReader(in), 0)
		rest := in
		for {
			m, n, err := wire.DecodeFrame(rest, 0)
			rm, rerr := r.Read()
			if err != nil {
				if rerr == nil {
					t.Fatalf("DecodeFrame: %v; Reader decoded %v", err, rm.Kind())
				}
				if err == io.EOF {
					if rerr != io.EOF {
						t.Fatalf("DecodeFrame at end; Reader: %v", rerr)
					}
					return
				}
				if s := sentinelOf(err); s != sentinelOf(rerr) || s == "[]" || len(s) > 0 && s[0] == '[' {
					t.Fatalf("DecodeFrame: %v; Reader: %v", err, rerr)
				}
				return
			}
			if rerr != nil {
				t.Fatalf("Reader: %v; DecodeFrame decoded %v", rerr, m.Kind())
			}
			if !reflect.DeepEqual(clone(m), clone(rm)) {
				t.Fatalf("DecodeFrame %+v, Reader %+v", m, rm)
			}
			again, err := wire.AppendFrame(nil, m)
			if err != nil {
				t.Fatalf("decoded %+v does not encode: %v", m, err)
			}
			if !bytes.Equal(again, rest[:n]) {
				t.Fatalf("%v frame re-encodes differently:\n got %x\nwant %x", m.Kind(), again, rest[:n])
			}
			if b, ok := m.(*wire.Block); ok {
				data, err := wire.DecodeBlock(nil, b, b.CID, 64<<10)
				if err != nil && !errors.Is(err, wire.ErrBadBlock) {
					t.Fatalf("DecodeBlock: %v", err)
				}
				if err == nil {
					if _, ok, _ := chunker.SumID(b.CID, data); !ok {
						t.Fatal("DecodeBlock accepted bytes that do not hash to the CID")
					}
				}
			}
			rest = rest[n:]
		}
	})
}

// FuzzRoundTrip builds a valid message of every kind from fuzzed fields
// and checks that it encodes, decodes to itself through DecodeFrame and
// through a Writer and Reader, and that a Block's chunk comes back from
// DecodeBlock.
func FuzzRoundTrip(f *testing.F) {
	for k := uint32(0); k < 7; k++ {
		f.Add(k, uint32(12345), uint32(300), uint32(77), []byte("some chunk bytes, some chunk bytes, some chunk bytes"), true)
		f.Add(k, uint32(0), uint32(0), uint32(0), []byte{}, false)
	}
	f.Fuzz(func(t *testing.T, kind, a, b, c uint32, data []byte, flag bool) {
		m := build(kind, a, b, c, data, flag)
		fr, err := wire.AppendFrame(nil, m)
		if err != nil {
			t.Fatalf("valid %+v does not encode: %v", m, err)
		}
		got, n, err := wire.DecodeFrame(fr, wire.MaxFrameLimit)
		if err != nil || n != len(fr) {
			t.Fatalf("decoding %+v: %v (took %d of %d bytes)", m, err, n, len(fr))
		}
		if !reflect.DeepEqual(clone(got), clone(m)) {
			t.Fatalf("got %+v, want %+v", got, m)
		}
		var buf bytes.Buffer
		w := wire.NewWriter(&buf, wire.MaxFrameLimit)
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), fr) {
			t.Fatal("Writer and AppendFrame encode differently")
		}
		rm, err := wire.NewReader(&buf, wire.MaxFrameLimit).Read()
		if err != nil || !reflect.DeepEqual(clone(rm), clone(m)) {
			t.Fatalf("Reader: %+v, %v", rm, err)
		}
		if blk, ok := rm.(*wire.Block); ok {
			out, err := wire.DecodeBlock(nil, blk, blk.CID, 64<<10)
			if err != nil || !bytes.Equal(out, data) {
				t.Fatalf("DecodeBlock: %v", err)
			}
		}
	})
}

// build makes a valid message of kind k%7+1 out of arbitrary values.
func build(k, a, b, c uint32, data []byte, flag bool) wire.Message {
	hash := chunker.SHA256
	if flag {
		hash = chunker.BLAKE3
	}
	id := idOf(hash, data)
	if len(data) > 64<<10 {
		data = data[:64<<10]
	}
	switch wire.Kind(k%7 + 1) {
	case wire.KindHello:
		return &wire.Hello{Version: uint8(max(a%256, 1)), Features: b,
			MaxFrame: wire.MinFrameLimit + c%(wire.MaxFrameLimit-wire.MinFrameLimit+1)}
	case wire.KindHave:
		n := int(a % (1 << 16))
		bm := make([]byte, wire.BitmapLen(n))
		for i := range bm {
			if len(data) > 0 {
				bm[i] = data[i%len(data)]
			}
		}
		if r := n % 8; r != 0 {
			bm[len(bm)-1] &^= 0xff >> r
		}
		return &wire.Have{Index: id, Count: n, Bitmap: bm}
	case wire.KindHaveDelta:
		n := 1 + int(a%wire.MaxChunks)
		ps := []uint32{b % uint32(n)}
		for i := 0; i+4 <= len(data); i += 4 {
			ps = append(ps, (uint32(data[i])<<24|uint32(data[i+1])<<16|uint32(data[i+2])<<8|uint32(data[i+3]))%uint32(n))
		}
		slices.Sort(ps)
		return &wire.HaveDelta{Index: id, Count: n, Positions: slices.Compact(ps)}
	case wire.KindWant:
		w := &wire.Want{Req: wire.RequestID(a), CID: id}
		if b%2 == 1 {
			w.Index, w.Position = idOf(chunker.SHA256, []byte(fmt.Sprint(b))), int(c%wire.MaxChunks)
		}
		return w
	case wire.KindBlock:
		obj := object.Encode(nil, data)
		if b%2 == 1 {
			obj = append([]byte{object.KindRaw}, data...)
		}
		return &wire.Block{Req: wire.RequestID(a), CID: idOf(hash, data), Object: obj}
	case wire.KindDontHave:
		return &wire.DontHave{Req: wire.RequestID(a), CID: id}
	default:
		return &wire.Cancel{Req: wire.RequestID(a)}
	}
}

// TestSeedCorpus keeps testdata/fuzz in step with the seeds above: run
// with -update-corpus to rewrite it.
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	seeds := decodeSeeds()
	if *updateCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%03d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		rt := filepath.Join("testdata", "fuzz", "FuzzRoundTrip")
		if err := os.MkdirAll(rt, 0o755); err != nil {
			t.Fatal(err)
		}
		for k := range 7 {
			body := fmt.Sprintf("go test fuzz v1\nuint32(%d)\nuint32(%d)\nuint32(%d)\nuint32(%d)\n[]byte(%q)\nbool(%v)\n",
				k, 4000000000+k, 1000+k, 3*k+1, bytes.Repeat([]byte{byte('a' + k)}, 100*k), k%2 == 0)
			if err := os.WriteFile(filepath.Join(rt, fmt.Sprintf("seed-%d", k)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("seed corpus missing (go test -run TestSeedCorpus -update-corpus): %v", err)
	}
	n := 0
	for _, e := range entries {
		if len(e.Name()) > 5 && e.Name()[:5] == "seed-" {
			n++
		}
	}
	if n != len(seeds) {
		t.Errorf("%s has %d seeds, the test defines %d: run with -update-corpus", dir, n, len(seeds))
	}
}
