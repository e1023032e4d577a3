package sim

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/shoalnet/shoal/sim/scenario"
)

// bigScenario is the scale target's fleet: sites of equal size behind
// 50 Mbit/s uplinks, devices on 100 Mbit/s links, a non-blocking LAN
// switch (10 Gbit/s: not a limit for 100 devices, so left out of the paths),
// an origin of 10 Gbit/s, a 1 GiB release of which 10% changed (spread
// over the image, as the fleet harness changes it), every device holding
// the base. piece is the transfer granularity (0: chunks of 64 KiB).
func bigScenario(devices, sites int, piece int64, tick time.Duration) *scenario.Scenario {
	return &scenario.Scenario{
		Release: scenario.Release{Size: 1 << 30, Changed: 0.1, ChunkSize: 64 << 10, PieceSize: piece},
		Topology: scenario.Topology{
			Sites: sites, DevicesPerSite: fixed(float64(devices / sites)),
			DeviceUp: fixed(12.5e6), DeviceDown: fixed(12.5e6), LAN: fixed(1.25e9),
			UplinkUp: fixed(6.25e6), UplinkDown: fixed(6.25e6), OriginEgress: 1.25e9,
			LANLatency: time.Millisecond, WANLatency: 40 * time.Millisecond, OriginLatency: 40 * time.Millisecond,
		},
		Initial:  scenario.Initial{HasBase: 1},
		Strategy: scenario.Strategy{Split: true, OriginFirst: true, Endgame: true, Tick: tick},
	}
}

// TestBig runs a scale scenario when SHOAL_SIM_BIG names it: "100k" (the
// 100,000-device target), "10k" (10,000 devices at 64 KiB chunks), or
// DEVICES,SITES,PIECE_BYTES,TICK_MS[,LIMIT_S]. It reports; it asserts
// only that the run completes (speed is for docs/simulator-model.md, not
// a test). With a LIMIT_S it stops there and reports the heap
// (SHOAL_SIM_HEAPPROFILE=FILE writes a heap profile then).
// SHOAL_SIM_SITE0=1 reports every second how busy site 0's uploads were.
// SHOAL_SIM_PRECISION=ε runs with strategy.rate_precision ε (default 0,
// exact).
func TestBig(t *testing.T) {
	spec := os.Getenv("SHOAL_SIM_BIG")
	if spec == "" {
		t.Skip("set SHOAL_SIM_BIG=100k, 10k or DEVICES,SITES,PIECE,TICK_MS[,LIMIT_S]")
	}
	var sc *scenario.Scenario
	var limit int64
	switch spec {
	case "100k":
		sc = bigScenario(100_000, 1000, 4<<20, time.Second)
	case "10k":
		sc = bigScenario(10_000, 1000, 0, time.Second)
	default:
		var v [5]int64
		f := splitComma(spec)
		for i := range v {
			if i < len(f) {
				v[i], _ = strconv.ParseInt(f[i], 10, 64)
			}
		}
		sc = bigScenario(int(v[0]), int(v[1]), v[2], time.Duration(v[3])*time.Millisecond)
		limit = v[4]
	}
	if limit > 0 {
		sc.Limit = time.Duration(limit) * time.Second
	}
	if p := os.Getenv("SHOAL_SIM_PRECISION"); p != "" {
		eps, err := strconv.ParseFloat(p, 64)
		if err != nil {
			t.Fatal(err)
		}
		sc.Strategy.RatePrecision = eps
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	h0 := heap()
	start := time.Now()
	e, err := newEngine(context.Background(), scenario.Run{Seed: 1, Scenario: sc})
	if err != nil {
		t.Fatal(err)
	}
	built := heap() - h0
	t.Logf("built in %.1f s: %d devices, %d sites, %d pieces; engine heap %.1f MiB, %.0f bytes per device",
		time.Since(start).Seconds(), len(e.devs), len(e.sites), len(e.rel.full), float64(built)/(1<<20), float64(built)/float64(len(e.devs)))
	var peak uint64
	site0 := os.Getenv("SHOAL_SIM_SITE0") != ""
	sent := make([]int64, e.sites[0].n)
	e.progress = func(done, n int) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		if site0 {
			// How busy site 0's devices' uploads were over the last
			// second: where the LAN's work is.
			busy, idle := 0, 0
			for i := range sent {
				d := &e.devs[i]
				r := float64(d.row.Sent-sent[i]) / d.upCap
				sent[i] = d.row.Sent
				if r > 0.8 {
					busy++
				} else if r < 0.1 {
					idle++
				}
			}
			t.Logf("  %5.1f s: site 0: %d uploads over 80%%, %d under 10%%, %d devices done", seconds(e.now), busy, idle, done)
		}
		if done == n || done%(n/10+1) == 0 {
			t.Logf("  %6.1f s wall, %6.1f s simulated: %d of %d done; heap in use %.2f GiB", time.Since(start).Seconds(), seconds(e.now), done, n, float64(ms.HeapInuse)/(1<<30))
		}
	}
	if err := e.loop(); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start).Seconds()
	if limit > 0 {
		live := heap() - h0
		t.Logf("at %v simulated: %d of %d done, live heap %.2f GiB (%.0f bytes per device); sessions live %d",
			sc.Limit, e.completed, len(e.devs), float64(live)/(1<<30), float64(live)/float64(len(e.devs)), e.sessions())
		if p := os.Getenv("SHOAL_SIM_HEAPPROFILE"); p != "" {
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := pprof.WriteHeapProfile(f); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		return
	}
	r := e.result()
	r.WallSeconds = wall
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("%s: %d devices, %d sites: completed %d; completion p50 %.1f p99 %.1f max %.1f s (bound %.1f s); sim %.1f s",
		spec, r.Devices, r.Sites, r.Completed, r.Completion.P50, r.Completion.P99, r.Completion.Max, r.LowerBound, r.SimSeconds)
	t.Logf("wall %.1f s, %d events, %.0f events/s; peak heap in use %.2f GiB, sys %.2f GiB; uplink/new bytes %.4f",
		wall, r.Events, float64(r.Events)/wall, float64(peak)/(1<<30), float64(ms.Sys)/(1<<30), uplinkRatio(r))
	t.Logf("engine: %+v", r.Engine)
	if r.Completed != r.Devices {
		t.Errorf("%d of %d completed", r.Completed, r.Devices)
	}
}

// sessions counts the devices with a session open.
func (e *engine) sessions() int {
	n := 0
	for i := range e.devs {
		if e.devs[i].sess != nil {
			n++
		}
	}
	return n
}

func splitComma(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != ',' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}
