package exchange_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/swarm/exchange"
	"github.com/shoalnet/shoal/swarm/sched"
)

// Two in-memory nodes move a 64 MiB release (default chunker parameters):
// every block read from the seed's slot, encoded, framed, verified and
// written to the other's slot.
func BenchmarkTwoNodes64MiB(b *testing.B) {
	for _, raw := range []bool{false, true} {
		name := "zstd"
		if raw {
			name = "raw" // LAN default
		}
		b.Run(name, func(b *testing.B) {
			rl := makeRelease(b, 64<<20, 9, chunker.DefaultParams)
			want := rl.unique()
			b.SetBytes(int64(len(rl.data)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				s := newNode(b, "seed", exchange.Config{CompressLAN: !raw})
				s.prov.Add(exchange.NewSlotProvider(byteReader(rl.data), rl.ix, nil))
				if _, err := s.e.Serve(ctx, rl.ix); err != nil {
					b.Fatal(err)
				}
				v := newNode(b, "v", exchange.Config{})
				connect(v, s, sched.LAN)
				d, dl := v.prepare(b, rl, exchange.DownloadConfig{Sched: sched.Config{Window: 16}})
				announced(b, v, rl.id, 1)
				var mu sync.Mutex
				if err := d.FetchAll(ctx, want, func(id cid.Cid, data []byte) error {
					mu.Lock()
					defer mu.Unlock()
					return dl.deliver(rl)(id, data)
				}); err != nil {
					b.Fatal(err)
				}
				cancel()
				v.e.Close()
				s.e.Close()
			}
		})
	}
}

type byteReader []byte

func (r byteReader) ReadAt(p []byte, off int64) (int, error) { return copy(p, r[off:]), nil }
