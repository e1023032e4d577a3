package sim

import (
	"testing"
	"time"

	"github.com/shoalnet/shoal/sim/scenario"
)

// The bound with start times: every term starts at the earliest start of
// the devices it is about, and each device has its own bound.
func TestBoundStarts(t *testing.T) {
	// Two sites of one device behind 1 MB/s uplinks, 10 MB each, devices
	// of 10 MB/s; site 1's device starts at 5 s.
	in := BoundInput{Origin: 100e6, Sites: []BoundSite{
		{Down: 1e6, Up: 1e6, New: 10e6, Devices: []BoundDevice{{Down: 10e6, Up: 10e6, Need: 10e6}}},
		{Down: 1e6, Up: 1e6, New: 10e6, Devices: []BoundDevice{{Down: 10e6, Up: 10e6, Need: 10e6, Start: 5}}},
	}}
	if got := LowerBound(in); got != 15 {
		t.Errorf("bound %v, want 5 + 10 (site 1's uplink after its start)", got)
	}
	dev := DeviceBounds(in)
	if dev[0][0] != 10 || dev[1][0] != 15 {
		t.Errorf("device bounds %v, want [[10] [15]]", dev)
	}
	// A device that needs less than its site lacks (it holds the base,
	// another does not) is bound by what it needs.
	in.Sites[0].Devices = append(in.Sites[0].Devices, BoundDevice{Down: 10e6, Up: 10e6, Need: 4e6, Start: 1})
	dev = DeviceBounds(in)
	if dev[0][1] != 4 {
		t.Errorf("device bound %v, want 0 + 4e6/1e6 (its site's uplink from the site's first start)", dev[0][1])
	}
}

// No device completes before its own bound, and the last no sooner than
// the fleet's, with staggered announcements and capacities drawn from
// distributions (the lan-edge example: a uniform stagger over 10 s, links
// drawn from a choice; and a small fleet with lognormal links, a normal
// stagger, install times from a uniform and devices without the base).
func TestNoDeviceBeforeItsBound(t *testing.T) {
	edge, err := scenario.Load("scenarios/lan-edge.toml")
	if err != nil {
		t.Fatal(err)
	}
	mixed := sites()
	mixed.Initial.Stagger = scenario.Dist{Kind: "normal", Mean: 3, Stddev: 2, HasMin: true}
	mixed.Topology.DeviceDown = scenario.Dist{Kind: "lognormal", Mean: 6e6, Stddev: 4e6, Min: 0.5e6}
	mixed.Topology.InstallTime = scenario.Dist{Kind: "uniform", Min: 0.5, Max: 2}
	for _, tc := range []struct {
		name string
		sc   *scenario.Scenario
		seed int64
	}{{"lan-edge", edge, 1}, {"mixed", mixed, 1}, {"mixed", mixed, 2}, {"mixed, no WAN peers", func() *scenario.Scenario {
		sc := *mixed
		sc.Topology.WANPeers = 0
		sc.Strategy.Tick = time.Second
		return &sc
	}(), 3}} {
		r := run(t, tc.sc, tc.seed)
		early, binds := 0, 0
		for _, d := range r.DeviceRows {
			if d.Completion < d.LowerBound*(1-1e-9) {
				t.Errorf("%s seed %d: device %d completed at %.4f s, before its bound %.4f s", tc.name, tc.seed, d.Device, d.Completion, d.LowerBound)
			}
			if d.Completion < r.LowerBound {
				early++
			}
			if d.Completion < d.LowerBound*1.1 {
				binds++
			}
		}
		if r.Completion.Max < r.LowerBound {
			t.Errorf("%s seed %d: the last device completed at %.4f s, before the bound %.4f s", tc.name, tc.seed, r.Completion.Max, r.LowerBound)
		}
		t.Logf("%s seed %d: p50 %.2f max %.2f s, bound %.2f s; %d of %d devices before the fleet's bound, %d within 10%% of their own",
			tc.name, tc.seed, r.Completion.P50, r.Completion.Max, r.LowerBound, early, r.Devices, binds)
	}
}

// An install time shifts each device's completion by exactly its value
// (the download is the same: a device serves its peers while it
// installs), and the bound with it.
func TestInstallTime(t *testing.T) {
	sc := sites()
	a := run(t, sc, 1)
	sc.Topology.InstallTime = fixed(1.5)
	b := run(t, sc, 1)
	for i := range a.DeviceRows {
		da, db := a.DeviceRows[i], b.DeviceRows[i]
		if !near(db.Completion, da.Completion+1.5, 1e-12) || db.Received != da.Received || db.Sent != da.Sent {
			t.Errorf("device %d: completed at %v and received %+v without, %v and %+v with 1.5 s to install", i, da.Completion, da.Received, db.Completion, db.Received)
		}
		if !near(db.LowerBound, da.LowerBound+1.5, 1e-12) {
			t.Errorf("device %d: bound %v without, %v with", i, da.LowerBound, db.LowerBound)
		}
	}
	if !near(b.LowerBound, a.LowerBound+1.5, 1e-12) || b.OriginEgressBytes != a.OriginEgressBytes {
		t.Errorf("bound %v, origin %d without; %v, %d with", a.LowerBound, a.OriginEgressBytes, b.LowerBound, b.OriginEgressBytes)
	}
}
