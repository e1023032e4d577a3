package sim

import (
	"testing"
	"time"
)

// The scale runs' shape at chunk granularity, small: sites of 10 devices
// behind 50 Mbit/s uplinks, 64 KiB chunks, a release of which 10% changed,
// with the scheduler ticking every 100 ms (as devices do) and every 1 s
// (as the large runs do), and with an origin that is not a limit or one
// the sites share. Every device must complete within 1.15 × the bound: a
// coarse tick must only make stall detection coarser (it once kept the
// origin away for 3 ticks, 3 s, and declared stalls after 1 s), and the
// sites must neither stall on one another nor lose what their peers hold.
func TestChunksNearBound(t *testing.T) {
	const ratio = 1.15
	for _, tc := range []struct {
		name   string
		tick   time.Duration
		origin float64
	}{
		{"100ms", 100 * time.Millisecond, 1.25e9},
		{"1s", time.Second, 1.25e9},
		{"100ms, shared origin", 100 * time.Millisecond, 9e6},
		{"1s, shared origin", time.Second, 9e6},
	} {
		sc := bigScenario(30, 3, 0, tc.tick)
		sc.Release.Size = 512 << 20
		sc.Topology.OriginEgress = tc.origin
		r := run(t, sc, 1)
		t.Logf("%s: completion p50 %.2f max %.2f s, bound %.2f s: %.3f ×; uplink/new %.4f",
			tc.name, r.Completion.P50, r.Completion.Max, r.LowerBound, r.Completion.Max/r.LowerBound, uplinkRatio(r))
		// Nothing here is slow enough to stall: a stall or an exclusion
		// would be a tick converted wrongly.
		if x := r.Engine; x.Stalled != 0 || x.Excluded != 0 || x.Dropped != 0 {
			t.Errorf("%s: %d requests stalled, %d wanters excluded, %d peers dropped", tc.name, x.Stalled, x.Excluded, x.Dropped)
		}
		for _, d := range r.DeviceRows {
			if d.Completion > ratio*r.LowerBound {
				t.Errorf("%s: device %d completed at %.2f s, over %.2f × the bound %.2f s", tc.name, d.Device, d.Completion, ratio, r.LowerBound)
			}
		}
	}
}

func uplinkRatio(r *Result) float64 {
	var up, nw int64
	for k := range r.UplinkBytesPerSite {
		up += r.UplinkBytesPerSite[k]
		nw += r.NewBytesPerSite[k]
	}
	return float64(up) / float64(nw)
}
