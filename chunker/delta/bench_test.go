package delta_test

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
)

// BenchmarkExpand measures a device's side: expanding one 64 KiB chunk
// against a 1 MiB reference already read, hash check included (the
// issue's target: ≥ 300 MB/s of output on one core). The chunk is its
// reference's middle with a few scattered edits, as in an image update.
func BenchmarkExpand(b *testing.B) {
	for _, lv := range []zstd.EncoderLevel{zstd.SpeedBetterCompression, zstd.SpeedBestCompression} {
		b.Run(lv.String(), func(b *testing.B) {
			base := text(11, 1<<20)
			chunk := bytes.Clone(base[512<<10 : 576<<10])
			for i := 0; i < len(chunk); i += 4096 {
				chunk[i] ^= 0x20
			}
			ranges := []delta.Range{{Off: 0, Len: 1 << 20}}
			e, err := delta.NewEncoder(lv, 64<<10, 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			ref, _ := delta.ReadReference(nil, bytes.NewReader(base), ranges)
			e.SetReference(ref, ranges)
			obj := e.Encode(nil, chunk)
			id := chunker.SHA256.ID(chunker.SHA256.Sum(chunk))
			lim := delta.Limits{MaxChunk: 64 << 10, MaxRef: 1 << 20, BaseSize: int64(len(base))}
			dst := make([]byte, 64<<10)
			b.SetBytes(int64(len(chunk)))
			b.ReportMetric(float64(len(obj)), "delta-bytes")
			for b.Loop() {
				if _, err := delta.Expand(dst, id, obj, ref, lim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
