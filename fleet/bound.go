package fleet

import "math"

// Capacities is what Bound needs to know of a fleet: K sites of M devices
// (plus H helpers each: cache nodes, which upload but need nothing), every
// rate in bytes per second, 0 meaning uncapped.
type Capacities struct {
	Sites, Devices, Helpers int
	// UplinkDown and UplinkUp are each site's uplink into and out of the
	// site.
	UplinkDown, UplinkUp float64
	// LANDown and LANUp are each node's link to its site's bridge, to the
	// node and from it.
	LANDown, LANUp float64
	// Origin is the origin's egress.
	Origin float64
}

// Symmetric returns capacities whose links carry the same rate both ways,
// as tbf caps them in the harness.
func Symmetric(sites, devices, helpers int, uplink, lan, origin float64) Capacities {
	return Capacities{Sites: sites, Devices: devices, Helpers: helpers,
		UplinkDown: uplink, UplinkUp: uplink, LANDown: lan, LANUp: lan, Origin: origin}
}

// The terms of the bound, named as Bound reports which one binds.
const (
	TermOrigin    = "origin"     // F / S
	TermUplink    = "uplink"     // F / C↓
	TermLAN       = "lan"        // F / L↓
	TermCrossSite = "cross-site" // K·F / (S + K·C↑)
	TermSite      = "site"       // M·F / (C↓ + (M+H)·L↑)
	TermAggregate = "aggregate"  // K·M·F / (S + K·(M+H)·L↑)
	TermUnbounded = "none"       // nothing capped: 0
)

// Bound returns the least time, in seconds, in which any distribution can
// bring newBytes (F) to every device of the fleet, and the term that sets
// it. It is Kumar and Ross's bound for one server and N peers,
//
//	T ≥ max{ F/u_s, F/d_min, N·F / (u_s + Σ u_i) },
//
// extended to K sites of M devices (and H helpers) behind uplinks of C↓
// into and C↑ out of each site, an origin of egress S and LAN links of L↓
// and L↑ (docs/fleet.md derives each term):
//
//	T ≥ max{ F/S, F/C↓, F/L↓, K·F/(S + K·C↑), M·F/(C↓ + (M+H)·L↑), K·M·F/(S + K·(M+H)·L↑) }
//
// An uncapped rate is infinite: its terms vanish. With nothing capped the
// bound is 0. With symmetric links the last three never exceed the first
// three.
func Bound(c Capacities, newBytes int64) (float64, string) {
	F := float64(newBytes)
	if F <= 0 || c.Sites <= 0 || c.Devices <= 0 {
		return 0, TermUnbounded
	}
	inf := func(r float64) float64 {
		if r <= 0 {
			return math.Inf(1)
		}
		return r
	}
	S, Cd, Cu, Ld, Lu := inf(c.Origin), inf(c.UplinkDown), inf(c.UplinkUp), inf(c.LANDown), inf(c.LANUp)
	K, M, H := float64(c.Sites), float64(c.Devices), float64(c.Helpers)
	best, term := 0.0, TermUnbounded
	for _, t := range []struct {
		name string
		v    float64
	}{
		{TermOrigin, F / S},
		{TermUplink, F / Cd},
		{TermLAN, F / Ld},
		{TermCrossSite, K * F / (S + K*Cu)},
		{TermSite, M * F / (Cd + (M+H)*Lu)},
		{TermAggregate, K * M * F / (S + K*(M+H)*Lu)},
	} {
		if t.v > best && !math.IsNaN(t.v) {
			best, term = t.v, t.name
		}
	}
	return best, term
}
