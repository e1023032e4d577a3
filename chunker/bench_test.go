package chunker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"runtime"
	"sync"
	"testing"
)

const benchSize = 64 << 20

var benchData = sync.OnceValue(func() []byte { return imageLike(42, benchSize) })

// BenchmarkBoundaries measures boundary detection alone, on one core.
func BenchmarkBoundaries(b *testing.B) {
	data := benchData()
	c := newCutter(DefaultParams)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for pos := 0; pos < len(data); {
			pos += c.cut(data[pos:])
		}
	}
}

// BenchmarkBoundariesReference is the one-byte-per-step definition, for
// comparison with the eight-byte loop (roll8).
func BenchmarkBoundariesReference(b *testing.B) {
	data := benchData()
	c := newCutter(DefaultParams)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for pos := 0; pos < len(data); {
			pos += c.cutRef(data[pos:])
		}
	}
}

// BenchmarkHashOnly is the ceiling for the pipeline: SHA-256 over the same
// bytes in 4 MiB blocks on every core, no chunking.
func BenchmarkHashOnly(b *testing.B) {
	for _, h := range []Hash{SHA256, BLAKE3} {
		b.Run(h.String(), func(b *testing.B) {
			data := benchData()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var wg sync.WaitGroup
				n := runtime.GOMAXPROCS(0)
				block := 4 << 20
				for w := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for off := w * block; off < len(data); off += n * block {
							h.Sum(data[off:min(off+block, len(data))])
						}
					}()
				}
				wg.Wait()
			}
		})
	}
}

// BenchmarkHashOneCore is SHA-256 on one core, for reference.
func BenchmarkHashOneCore(b *testing.B) {
	data := benchData()[:8<<20]
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		sha256.Sum256(data)
	}
}

// BenchmarkSplit measures the whole pipeline: read, cut, hash on every core.
func BenchmarkSplit(b *testing.B) {
	for _, h := range []Hash{SHA256, BLAKE3} {
		b.Run(h.String(), func(b *testing.B) {
			data := benchData()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := Split(context.Background(), bytes.NewReader(data), Options{Hash: h}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	data := benchData()
	ix := splitBytes(b, data, Options{})
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Verify(context.Background(), bytes.NewReader(data), ix); err != nil {
			b.Fatal(err)
		}
	}
}

func benchIndex(b *testing.B) *Index {
	ix := &Index{Params: DefaultParams, Hash: SHA256}
	for i := range 65000 {
		ix.Chunks = append(ix.Chunks, Entry{Size: 65536, Digest: SHA256.Sum([]byte{byte(i), byte(i >> 8)})})
		ix.Size += 65536
	}
	return ix
}

func BenchmarkIndexEncode(b *testing.B) {
	ix := benchIndex(b)
	b.SetBytes(int64(len(ix.Encode())))
	for b.Loop() {
		ix.Encode()
	}
}

func BenchmarkIndexDecode(b *testing.B) {
	enc := benchIndex(b).Encode()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := DecodeIndex(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRoot65k(b *testing.B) {
	ix := benchIndex(b)
	for b.Loop() {
		ix.Root()
	}
}
