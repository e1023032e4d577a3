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
	// params 16384/65536/262144: 53 chunks, root 3f99741e3dc575cbc8b79a0e2010b7d8f035cb096303cf16d6aaaa9fe8775ccf
	//   0  72686 a8adff78be8b6ecc
	//   1  46729 b9f29e06c64e6fe2
	//   2 207023 042765fef807905d
	//   3  73068 c570c91f3abe45a6
	//   4 131882 308c4cbdc2113d4e
	//   5  99183 f5bc8525211be746
	// params 2048/8192/65536: 472 chunks, root e0826f35f9c626260c6a7af4f5b8accdebcfc7bab1b54c0e5962e1f48450344f
	//   0  65536 de2f256064a0af79
	//   1   7357 e3d951178fae11cc
	//   2   5044 1b577e88bf123bb4
	//   3  15827 b18959bb1311ef47
	//   4   7405 3f153b6d3a5d8c66
	//   5   4458 23716611f4614a5b
	// blake3: chunk 0 bafkr4idnsrcyxbyd6q7q5fvsre4hr7w5adhsd43zdwyfak2gvl76g5reyy, index bafkr4igoyqfbbp5o7gubhqlxpxn4vvcu3nyzugm62cqmh4t567lmxiuafi
}
