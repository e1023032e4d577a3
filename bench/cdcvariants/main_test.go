package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/shoalnet/shoal/chunker"
)

// imageLike is random data with zero runs, so that chunks end both at
// boundaries and at the maximum size.
func imageLike(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := 0; i < n; {
		l := min(n-i, 1+r.IntN(1<<20))
		if r.IntN(4) != 0 {
			for j := i; j < i+l; j++ {
				b[j] = byte(r.Uint32())
			}
		}
		i += l
	}
	return b
}

// TestDefaultsCutWhereChunkerCuts: with no flags, cdcvariants' cutter and
// its split loop must produce chunker.Split's chunks exactly, for several
// chunk sizes, so that the figures for other settings differ from the
// shipped chunker's only by the setting.
func TestDefaultsCutWhereChunkerCuts(t *testing.T) {
	data := imageLike(1, 24<<20)
	for _, p := range []chunker.Params{chunker.DefaultParams, {Min: 2048, Avg: 8192, Max: 65536}, {Min: 4096, Avg: 48 << 10, Max: 1 << 20}} {
		ix, err := chunker.Split(context.Background(), bytes.NewReader(data), chunker.Options{Params: p})
		if err != nil {
			t.Fatal(err)
		}
		c := config{min: p.Min, avg: p.Avg, max: p.Max, normal: -1, strict: -1, loose: -1}
		if err := c.fill(); err != nil {
			t.Fatal(err)
		}
		if c.strict != 16 && p == chunker.DefaultParams {
			t.Fatalf("default strict bits %d, want 16", c.strict)
		}
		ct, err := c.cutter()
		if err != nil {
			t.Fatal(err)
		}
		got := split(ct, data)
		if len(got) != len(ix.Chunks) {
			t.Fatalf("params %v: %d chunks, chunker has %d", p, len(got), len(ix.Chunks))
		}
		for i, e := range ix.Chunks {
			if got[i].size != int(e.Size) || got[i].sum != [32]byte(e.Digest) {
				t.Fatalf("params %v: chunk %d differs (size %d, chunker %d)", p, i, got[i].size, e.Size)
			}
		}
	}
}

func TestNewBytes(t *testing.T) {
	data := imageLike(2, 4<<20)
	c := config{min: 16 << 10, avg: 64 << 10, max: 256 << 10, normal: -1, strict: -1, loose: -1}
	if err := c.fill(); err != nil {
		t.Fatal(err)
	}
	ct, err := c.cutter()
	if err != nil {
		t.Fatal(err)
	}
	if nb, n := newBytes(split(ct, data), split(ct, data)); nb != 0 || n != 0 {
		t.Fatalf("identical data: %d new bytes in %d chunks", nb, n)
	}
	edited := bytes.Clone(data)
	copy(edited[2<<20:], bytes.Repeat([]byte{0xa5}, 100))
	nb, n := newBytes(split(ct, data), split(ct, edited))
	if n == 0 || nb < 100 || nb > 2*c.max {
		t.Fatalf("a 100-byte edit cost %d bytes in %d chunks", nb, n)
	}
}

func TestFillRejectsBadSizes(t *testing.T) {
	for _, c := range []config{{min: 10, avg: 20, max: 30}, {min: 100, avg: 100, max: 300}, {min: 100, avg: 200, max: 150}} {
		c.normal, c.strict, c.loose = -1, -1, -1
		if err := c.fill(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	// Normalizations the chunker cannot run.
	for _, c := range []config{
		{min: 100, avg: 200, max: 300, normal: 50, strict: -1, loose: -1},
		{min: 100, avg: 200, max: 300, normal: -1, strict: 0, loose: -1},
		{min: 100, avg: 200, max: 300, normal: -1, strict: -1, loose: 99},
	} {
		if err := c.fill(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
