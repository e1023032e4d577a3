package sim

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/shoalnet/shoal/sim/scenario"
)

func fixed(v float64) scenario.Dist { return scenario.Dist{Kind: "fixed", Value: v} }

// base is a small scenario the tests change: one site of one device, a
// fresh release of 16 MiB in 256 KiB chunks, links of 10 MB/s, a tick of
// 1 ms so the origin delay (3 ticks) is negligible, no latency.
func base() *scenario.Scenario {
	return &scenario.Scenario{
		Release: scenario.Release{Size: 16 << 20, Changed: 1, ChunkSize: 256 << 10},
		Topology: scenario.Topology{
			Sites: 1, DevicesPerSite: fixed(1),
			DeviceUp: fixed(10e6), DeviceDown: fixed(10e6), LAN: fixed(1e12),
			UplinkUp: fixed(1e12), UplinkDown: fixed(1e12), OriginEgress: 10e6,
		},
		Initial:  scenario.Initial{HasBase: 1},
		Strategy: scenario.Strategy{Split: true, OriginFirst: true, Endgame: true, Tick: time.Millisecond},
	}
}

func run(t *testing.T, sc *scenario.Scenario, seed int64) *Result {
	t.Helper()
	r, err := Run(context.Background(), scenario.Run{Seed: seed, Scenario: sc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Completed != r.Devices {
		t.Fatalf("%d of %d devices completed by %v s", r.Completed, r.Devices, r.SimSeconds)
	}
	// Devices announce only what they hold and never lose it: no request
	// may find its peer without the piece.
	if r.Engine.DontHaves != 0 {
		t.Errorf("%d requests answered dont-have", r.Engine.DontHaves)
	}
	return r
}

// within fails unless got is within tol (a fraction) above want and not
// below it by more than 1e-6: the simulator may be slower than a closed
// form, never faster.
func within(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if got < want*(1-1e-6) || got > want*(1+tol) {
		t.Errorf("%s: %.4f s, want %.4f s (+%.1f%%): %+.2f%%", what, got, want, 100*tol, 100*(got/want-1))
	} else {
		t.Logf("%s: %.4f s against %.4f s: %+.3f%%", what, got, want, 100*(got/want-1))
	}
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(math.Abs(a), math.Abs(b)) }
