package sim

import (
	"testing"
	"time"

	"github.com/shoalnet/shoal/sim/scenario"
)

// TestRatePrecision: an origin that is the bottleneck of a fleet (20
// sites of 4 devices behind uplinks that could take 5 × the origin), run
// exactly and with strategy.rate_precision = 5%. The precision must hold
// the origin's level (and force it back now and then), move no more bytes
// across uplinks, and change completion by no more than a few ε.
func TestRatePrecision(t *testing.T) {
	sc := base()
	sc.Release = scenario.Release{Size: 8 << 20, Changed: 0.3, ChunkSize: 64 << 10}
	sc.Topology.Sites = 20
	sc.Topology.DevicesPerSite = fixed(4)
	sc.Topology.UplinkUp, sc.Topology.UplinkDown = fixed(2.5e6), fixed(2.5e6)
	sc.Topology.LANLatency, sc.Topology.OriginLatency = time.Millisecond, 20*time.Millisecond
	exact := run(t, sc, 1)
	sc.Strategy.RatePrecision = 0.05
	approx := run(t, sc, 1)
	t.Logf("exact: p50 %.3f max %.3f s, %+v", exact.Completion.P50, exact.Completion.Max, exact.Engine)
	t.Logf("ε 5%%: p50 %.3f max %.3f s, %+v", approx.Completion.P50, approx.Completion.Max, approx.Engine)
	if exact.Engine.LevelsHeld != 0 || approx.Engine.LevelsHeld == 0 || approx.Engine.LevelsForced == 0 {
		t.Fatalf("levels held %d (exact) and %d, forced %d", exact.Engine.LevelsHeld, approx.Engine.LevelsHeld, approx.Engine.LevelsForced)
	}
	if approx.Engine.FlowsRecomputed >= exact.Engine.FlowsRecomputed {
		t.Errorf("ε 5%% recomputed %d flows, exact %d", approx.Engine.FlowsRecomputed, exact.Engine.FlowsRecomputed)
	}
	if a, e := uplinkRatio(approx), uplinkRatio(exact); !near(a, e, 0.01) {
		t.Errorf("uplink/new bytes %.4f, exact %.4f", a, e)
	}
	for _, q := range []struct {
		name string
		a, e float64
	}{{"p50", approx.Completion.P50, exact.Completion.P50}, {"max", approx.Completion.Max, exact.Completion.Max}} {
		if !near(q.a, q.e, 0.1) {
			t.Errorf("completion %s %.3f s, exact %.3f s", q.name, q.a, q.e)
		}
	}
}
