package chunker_test

import (
	"bytes"
	"context"
	"fmt"

	"github.com/shoalnet/shoal/chunker"
)

// vectorData is 4 MiB from splitmix64 seeded with 1, with every 7th
// 64 KiB block zeroed, written out here so the vectors depend on nothing but
// this file.
func vectorData() []byte {
	b := make([]byte, 4<<20)
	s := uint64(1)
	for i := 0; i < len(b); i += 8 {
		s += 0x9e3779b97f4a7c15
		z := s
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		for j := range 8 {
			b[i+j] = byte(z >> (8 * j))
		}
	}
	for blk := 0; blk < len(b); blk += 7 << 16 {
		clear(b[blk : blk+1<<16])
	}
	return b
}

// Known vectors: these boundaries and digests are part of the format. If
// this example's output changes, every index ever published is invalidated;
// see docs/formats.md.
func Example_knownVectors() {
	data := vectorData()
	for _, p := range []chunker.Params{chunker.DefaultParams, {Min: 2048, Avg: 8192, Max: 65536}} {
		ix, err := chunker.Split(context.Background(), bytes.NewReader(data), chunker.Options{Params: p})
		if err != nil {
			panic(err)
		}
		fmt.Printf("params %v: %d chunks, root %s\n", p, len(ix.Chunks), ix.Root())
		for i, e := range ix.Chunks[:6] {
			fmt.Printf("  %d %6d %s\n", i, e.Size, e.Digest.String()[:16])
		}
	}
	ix, _ := chunker.Split(context.Background(), bytes.NewReader(data), chunker.Options{Hash: chunker.BLAKE3})
	fmt.Printf("blake3: chunk 0 %s, index %s\n", ix.ID(0), ix.CID())
	// Output:
	// params 16384/65536/262144: 52 chunks, root 258995fe9f8b2de4525db6bf38dc8db0647703ab6982a1c8b6b78a235fa365cb
	//   0 146186 8bc76f47fe394a41
	//   1 128681 b130e05d12cd64d1
	//   2  77655 a89ba5be8b95e35f
	//   3  64361 ac077b3029de4481
	//   4 111960 f6ba37cf8dcd74cd
	//   5  81810 ee33d186d38e8e7a
	// params 2048/8192/65536: 451 chunks, root 0da48857a553a71ab3ba8cd49edb1457ea6ff3641d36e9485718ca3090975458
	//   0  65536 de2f256064a0af79
	//   1   7782 d96daa526e467650
	//   2  10192 245b4c3cb9dce40e
	//   3   7123 8207c3916f36329f
	//   4   6883 62376e8cb8529ed7
	//   5   7255 044ed5524e566450
	// blake3: chunk 0 bafkr4icehem2yvs3ylxuu6osio3qjsppokua673smma6vifptcmcpm4mey, index bafkr4idvjlv5sjoiv4sltuiqs3duxlie4awlt2uoc3hzl7afbtjdgttyqa
}
