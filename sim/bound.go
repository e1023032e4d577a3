package sim

import "math"

// BoundInput is what the lower bound needs to know of a fleet: every
// rate in bytes per second, every size in bytes.
type BoundInput struct {
	// Origin is the origin's egress; WAN the core's capacity (0: not a
	// limit).
	Origin, WAN float64
	Sites       []BoundSite
}

// BoundSite is one site: its uplink (Down into the site, Up out of it),
// its LAN switch (0: not a limit), the bytes none of its devices holds at
// the start (New), and its devices.
type BoundSite struct {
	Down, Up, LAN float64
	New           int64
	Devices       []BoundDevice
}

// BoundDevice is one device: its links, the bytes it needs, when it hears
// of the release and how long it takes to install it (seconds).
type BoundDevice struct {
	Down, Up float64
	Need     int64
	Start    float64
	// Install is how long it takes, once it holds the release, to run it
	// (seconds).
	Install float64
}

// LowerBound returns the least time in which any distribution can bring
// every device what it needs, counted from the announcement: a bound on
// the last device's completion (completion_seconds.max), not on each
// device's (see DeviceBounds). It is Kumar and Ross's bound extended to
// sites behind uplinks (docs/fleet.md, "The lower bound"), generalised to
// capacities, needs and start times that differ by site and by device.
// With F_i the bytes device i needs, s_i when it hears of the release, s_k
// the earliest s_i of site k and s the earliest of all, N_k the bytes no
// device of site k holds, F₀ the least of them (with synthetic or real
// releases, what no device anywhere holds), S the origin, W the WAN core,
// C↓_k and C↑_k site k's uplink, Λ_k its LAN, d_i and u_i device i's
// links:
//
//	T ≥ max{ s + F₀/S, s + F₀/W, s_k + N_k/C↓_k, s_i + F_i/d_i,
//	         s + ΣN_k/(S + ΣC↑_k), s + ΣN_k/W,
//	         s_k + Σ_{i∈k} F_i/(C↓_k + Σ_{i∈k} u_i), s_k + Σ_{i∈k} F_i/(C↓_k + Λ_k),
//	         s + Σ_i F_i/(S + Σ_i u_i) }
//
// The origin sends every byte some site lacks at least once; each site's
// uplink brings in what the site lacks; each device receives what it
// needs; what enters the sites comes from the origin or leaves another
// site; what a site's devices receive comes through its uplink or from its
// own devices (over its LAN); and all the bytes devices receive come from
// the origin or some device's upload. Nothing moves before a device asks,
// so each term starts at the earliest start of the devices it is about;
// and a device completes its install time I_i after it holds the
// release, so each term ends with the shortest install of those devices
// (I_i for s_i + F_i/d_i, the site's least for a site's terms, the
// fleet's least for the fleet's). With one value per term, every device
// starting at 0 and installing at once it is fleet.Bound's (no helpers),
// which a test checks. Churn, power cuts, outages and latency are not in
// it: it is the bound of the topology, the capacities, the starts and
// the install times.
func LowerBound(in BoundInput) float64 {
	fleet, _ := bounds(in, false)
	return fleet
}

// DeviceBounds returns, per site and device, the least time in which that
// device could hold the release if the rest of the fleet did not compete
// with it: its own download after it starts, s_i + F_i/d_i; the bytes it
// needs that no device of its site holds, min(F_i, N_k), through the
// site's uplink (and the WAN core) after the site's first device starts;
// and those no device anywhere holds, min(F_i, F₀), from the origin after
// the fleet's first start; then its install time. No device can complete
// before its own bound;
// devices that start early or have fast links complete before LowerBound,
// which only the last must reach.
func DeviceBounds(in BoundInput) [][]float64 {
	_, dev := bounds(in, true)
	return dev
}

func bounds(in BoundInput, perDevice bool) (float64, [][]float64) {
	var best float64
	up := func(v float64) {
		if v > best && !math.IsNaN(v) && !math.IsInf(v, 0) {
			best = v
		}
	}
	div := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return a / b
	}
	var sumN, sumUpC, sumF, sumU float64
	// The earliest start and the shortest install, per site (s_k, I_k) and
	// of the fleet (s, I).
	minN, s0, i0 := math.Inf(1), math.Inf(1), math.Inf(1)
	starts := make([]float64, len(in.Sites))
	installs := make([]float64, len(in.Sites))
	for k, s := range in.Sites {
		minN = math.Min(minN, float64(s.New))
		starts[k], installs[k] = math.Inf(1), math.Inf(1)
		for _, d := range s.Devices {
			starts[k] = math.Min(starts[k], d.Start)
			installs[k] = math.Min(installs[k], d.Install)
		}
		if len(s.Devices) == 0 {
			starts[k], installs[k] = 0, 0
		}
		s0 = math.Min(s0, starts[k])
		i0 = math.Min(i0, installs[k])
	}
	if len(in.Sites) == 0 {
		s0, i0, minN = 0, 0, 0
	}
	for k, s := range in.Sites {
		n := float64(s.New)
		sk, ik := starts[k], installs[k]
		sumN += n
		sumUpC += s.Up
		up(sk + div(n, s.Down) + ik)
		var fk, uk float64
		for _, d := range s.Devices {
			f := float64(d.Need)
			up(d.Start + div(f, d.Down) + d.Install)
			fk += f
			uk += d.Up
		}
		up(sk + div(fk, s.Down+uk) + ik)
		if s.LAN > 0 {
			up(sk + div(fk, s.Down+s.LAN) + ik)
		}
		sumF += fk
		sumU += uk
	}
	up(s0 + div(minN, in.Origin) + i0)
	up(s0 + div(sumN, in.Origin+sumUpC) + i0)
	up(s0 + div(sumF, in.Origin+sumU) + i0)
	if in.WAN > 0 {
		up(s0 + div(minN, in.WAN) + i0)
		up(s0 + div(sumN, in.WAN) + i0)
	}
	if !perDevice {
		return best, nil
	}
	dev := make([][]float64, len(in.Sites))
	for k, s := range in.Sites {
		dev[k] = make([]float64, len(s.Devices))
		for j, d := range s.Devices {
			f := float64(d.Need)
			site, all := math.Min(f, float64(s.New)), math.Min(f, minN)
			b := d.Start + div(f, d.Down)
			b = math.Max(b, starts[k]+div(site, s.Down))
			b = math.Max(b, s0+div(all, in.Origin))
			if in.WAN > 0 {
				b = math.Max(b, starts[k]+div(site, in.WAN))
			}
			dev[k][j] = b + d.Install
		}
	}
	return best, dev
}

// boundInput describes this run's fleet for LowerBound.
func (e *engine) boundInput() BoundInput {
	t := e.sc.Topology
	in := BoundInput{Origin: t.OriginEgress, WAN: t.WAN, Sites: make([]BoundSite, len(e.sites))}
	for k := range e.sites {
		s := &e.sites[k]
		bs := BoundSite{Down: s.downCap, Up: s.upCap, LAN: s.lanCap, New: s.newBytes}
		if t.WANPeers == 0 {
			bs.Up = 0 // sites do not trade: what a site lacks comes from the origin
		}
		for i := s.first; i < s.first+s.n; i++ {
			d := &e.devs[i]
			bs.Devices = append(bs.Devices, BoundDevice{Down: d.downCap, Up: d.upCap, Need: d.need, Start: seconds(d.start), Install: seconds(d.install)})
		}
		in.Sites[k] = bs
	}
	return in
}

// lowerBounds are this run's bound and every device's (by device index).
func (e *engine) lowerBounds() (float64, []float64) {
	fleet, per := bounds(e.boundInput(), true)
	dev := make([]float64, 0, len(e.devs))
	for _, site := range per {
		dev = append(dev, site...)
	}
	return fleet, dev
}
