package sim

import (
	"context"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/shoalnet/shoal/fleet"
	"github.com/shoalnet/shoal/sim/scenario"
)

// sites is a fleet of 3 sites of 4 devices behind 2.5 MB/s uplinks with
// WAN peers, a release of 8 MiB of which 30% changed.
func sites() *scenario.Scenario {
	sc := base()
	sc.Release = scenario.Release{Size: 8 << 20, Changed: 0.3, ChunkSize: 64 << 10}
	sc.Topology.Sites = 3
	sc.Topology.DevicesPerSite = scenario.Dist{Kind: "uniform", Min: 3, Max: 6}
	sc.Topology.DeviceUp = scenario.Dist{Kind: "lognormal", Mean: 5e6, Stddev: 2e6, Min: 1e6}
	sc.Topology.UplinkUp, sc.Topology.UplinkDown = fixed(2.5e6), fixed(2.5e6)
	sc.Topology.WANPeers = 2
	sc.Topology.LANLatency, sc.Topology.WANLatency, sc.Topology.OriginLatency = time.Millisecond, 20*time.Millisecond, 30*time.Millisecond
	sc.Strategy.Tick = 100 * time.Millisecond
	sc.Initial.HasBase = 0.8
	return sc
}

// stripWall zeroes what depends on the machine.
func stripWall(r *Result) *Result {
	c := *r
	c.WallSeconds, c.EventsPerSecond = 0, 0
	return &c
}

func TestDeterministic(t *testing.T) {
	sc := sites()
	sc.Churn = scenario.Churn{Awake: scenario.Dist{Kind: "exp", Mean: 20}, Asleep: fixed(3), PowerCut: 0.3, PowerOff: fixed(2)}
	a, b := run(t, sc, 7), run(t, sc, 7)
	if !reflect.DeepEqual(stripWall(a), stripWall(b)) {
		t.Fatalf("two runs of one seed differ:\n%+v\n%+v", a, b)
	}
	c := run(t, sc, 8)
	if reflect.DeepEqual(stripWall(a).DeviceRows, stripWall(c).DeviceRows) {
		t.Fatal("seeds 7 and 8 gave the same devices")
	}
	if a.Completion == c.Completion {
		t.Fatal("seeds 7 and 8 gave the same completion times")
	}
}

func TestChurnAndPowerCuts(t *testing.T) {
	sc := sites()
	calm := run(t, sc, 1)
	sc.Churn = scenario.Churn{Awake: scenario.Dist{Kind: "exp", Mean: 10}, Asleep: fixed(5), PowerCut: 1, PowerOff: fixed(10)}
	r := run(t, sc, 1)
	cuts, sleeps := 0, 0
	for _, d := range r.DeviceRows {
		cuts += d.PowerCuts
		sleeps += d.Sleeps
		if d.PowerCuts > 1 {
			t.Errorf("device %d lost power %d times", d.Device, d.PowerCuts)
		}
	}
	// Every device that needs bytes is cut once (some finish first: the
	// cut comes at a uniform fraction of its bytes, after a block).
	if cuts < r.Devices/2 || sleeps == 0 {
		t.Errorf("%d power cuts and %d sleeps among %d devices", cuts, sleeps, r.Devices)
	}
	if r.Completion.Max <= calm.Completion.Max {
		t.Errorf("churn and power cuts finished by %v s, no later than the calm run's %v s", r.Completion.Max, calm.Completion.Max)
	}
	t.Logf("calm %.1f s, churn %.1f s; %d cuts, %d sleeps", calm.Completion.Max, r.Completion.Max, cuts, sleeps)
}

func TestOutages(t *testing.T) {
	sc := sites()
	calm := run(t, sc, 1)
	sc.Failures = []scenario.Failure{{Kind: scenario.FailUplink, Site: 1, At: time.Second, For: 20 * time.Second}}
	cut := run(t, sc, 1)
	if got, want := cut.SiteRows[1].Completion, 21.0; got < want {
		t.Errorf("site 1 done at %v s, inside its uplink outage", got)
	}
	sc.Failures = []scenario.Failure{{Kind: scenario.FailOrigin, At: 0, For: 30 * time.Second}}
	sc.Topology.WANPeers = 0
	dark := run(t, sc, 1)
	// With the origin away and no WAN peers, no site can get the bytes
	// none of its devices holds: nothing completes before it is back.
	for _, d := range dark.DeviceRows {
		if d.Completion < 30 {
			t.Errorf("device %d done at %v s with the origin away", d.Device, d.Completion)
		}
	}
	t.Logf("calm %.1f s, site 1 uplink cut %.1f s, origin away 30 s: %.1f s", calm.Completion.Max, cut.Completion.Max, dark.Completion.Max)
}

// The bytes over each uplink: with the split on, about the site's new
// bytes; with it off, more.
func TestUplinkSplit(t *testing.T) {
	sc := sites()
	sc.Topology.WANPeers = 0
	sc.Topology.DevicesPerSite = fixed(6)
	on := run(t, sc, 1)
	sc.Strategy.Split = false
	off := run(t, sc, 1)
	var sOn, sOff, sNew int64
	for k := range on.UplinkBytesPerSite {
		sOn += on.UplinkBytesPerSite[k]
		sOff += off.UplinkBytesPerSite[k]
		sNew += on.NewBytesPerSite[k]
	}
	t.Logf("uplink bytes / new bytes: split on %.3f, off %.3f", float64(sOn)/float64(sNew), float64(sOff)/float64(sNew))
	if sOn < sNew || float64(sOn) > 1.25*float64(sNew) || sOff <= sOn {
		t.Errorf("uplink bytes: split on %d, off %d, new %d", sOn, sOff, sNew)
	}
}

func TestBoundMatchesFleet(t *testing.T) {
	for _, c := range []fleet.Capacities{
		fleet.Symmetric(2, 4, 0, 2.5e6, 12.5e6, 100e6),
		{Sites: 3, Devices: 5, UplinkDown: 5e6, UplinkUp: 1e6, LANDown: 10e6, LANUp: 0.5e6, Origin: 2e6},
		{Sites: 10, Devices: 20, UplinkDown: 50e6, UplinkUp: 50e6, LANDown: 1e6, LANUp: 1e6, Origin: 1e9},
	} {
		const F = 64 << 20
		want, term := fleet.Bound(c, F)
		in := BoundInput{Origin: c.Origin}
		for range c.Sites {
			s := BoundSite{Down: c.UplinkDown, Up: c.UplinkUp, New: F}
			for range c.Devices {
				s.Devices = append(s.Devices, BoundDevice{Down: c.LANDown, Up: c.LANUp, Need: F})
			}
			in.Sites = append(in.Sites, s)
		}
		if got := LowerBound(in); !near(got, want, 1e-12) {
			t.Errorf("%+v: %v, fleet.Bound %v (%s)", c, got, want, term)
		}
	}
}

func TestBoundHeterogeneous(t *testing.T) {
	// One site, two devices: the slow one (1 MB/s down, starting at 2 s)
	// sets the bound at 2 + 10.
	in := BoundInput{Origin: 100e6, Sites: []BoundSite{{Down: 50e6, Up: 50e6, New: 10e6, Devices: []BoundDevice{
		{Down: 1e6, Up: 1e6, Need: 10e6, Start: 2}, {Down: 10e6, Up: 1e6, Need: 10e6}}}}}
	if got := LowerBound(in); got != 12 {
		t.Errorf("bound %v, want 12", got)
	}
}

func TestInvalid(t *testing.T) {
	for name, change := range map[string]func(*scenario.Scenario){
		"no sites":         func(s *scenario.Scenario) { s.Topology.Sites = 0 },
		"zero capacity":    func(s *scenario.Scenario) { s.Topology.DeviceUp = fixed(0) },
		"negative uplink":  func(s *scenario.Scenario) { s.Topology.UplinkDown = fixed(-1) },
		"normal below 0":   func(s *scenario.Scenario) { s.Topology.DeviceDown = scenario.Dist{Kind: "normal", Mean: -5, Stddev: 1} },
		"no origin":        func(s *scenario.Scenario) { s.Topology.OriginEgress = 0 },
		"empty release":    func(s *scenario.Scenario) { s.Release.Size = 0 },
		"changed above 1":  func(s *scenario.Scenario) { s.Release.Changed = 1.5 },
		"unknown dist":     func(s *scenario.Scenario) { s.Topology.LAN = scenario.Dist{Kind: "pareto"} },
		"unknown rarity":   func(s *scenario.Scenario) { s.Strategy.Rarity = "newest" },
		"negative window":  func(s *scenario.Scenario) { s.Strategy.Window = -2 },
		"failure off site": func(s *scenario.Scenario) { s.Failures = []scenario.Failure{{Kind: scenario.FailUplink, Site: 9}} },
		"failure kind":     func(s *scenario.Scenario) { s.Failures = []scenario.Failure{{Kind: "meteor"}} },
		"negative latency": func(s *scenario.Scenario) { s.Topology.LANLatency = -time.Second },
		"has base":         func(s *scenario.Scenario) { s.Initial.HasBase = math.NaN() },
		"missing index":    func(s *scenario.Scenario) { s.Release.NewIndex = "does-not-exist.idx" },
	} {
		sc := base()
		change(sc)
		_, err := Run(context.Background(), scenario.Run{Seed: 1, Scenario: sc}, nil)
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if name != "missing index" && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, not ErrInvalid", name, err)
		}
	}
	if _, err := Run(context.Background(), scenario.Run{}, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("no scenario: %v", err)
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, scenario.Run{Seed: 1, Scenario: sites()}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
}

func TestProgressAndSeries(t *testing.T) {
	sc := sites()
	var calls, last int
	r, err := Run(context.Background(), scenario.Run{Seed: 1, Scenario: sc}, func(done, n int) {
		calls++
		last = done
		if n != 0 && done > n {
			t.Errorf("progress %d of %d", done, n)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 || last != r.Devices {
		t.Errorf("progress called %d times, last with %d", calls, last)
	}
	if len(r.Series) < int(r.SimSeconds) {
		t.Errorf("%d samples over %v s", len(r.Series), r.SimSeconds)
	}
	for i := 1; i < len(r.Series); i++ {
		if r.Series[i].OriginEgressBytes < r.Series[i-1].OriginEgressBytes || r.Series[i].Completed < r.Series[i-1].Completed {
			t.Fatalf("series goes backwards at %d", i)
		}
	}
}
