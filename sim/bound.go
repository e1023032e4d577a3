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

// BoundDevice is one device: its links, the bytes it needs, and when it
// hears of the release (seconds).
type BoundDevice struct {
	Down, Up float64
	Need     int64
	Start    float64
}

// LowerBound returns the least time in which any distribution can bring
// every device what it needs: Kumar and Ross's bound extended to sites
// behind uplinks (docs/fleet.md, "The lower bound"), generalised to
// capacities and needs that differ by site and by device. With F_i the
// bytes device i needs, s_i when it starts, N_k the bytes site k lacks, S
// the origin, W the WAN core, C↓_k and C↑_k site k's uplink, Λ_k its LAN,
// d_i and u_i device i's links, and F₀ the most any site lacks:
//
//	T ≥ max{ F₀/S, F₀/W, N_k/C↓_k, s_i + F_i/d_i, ΣN_k/(S + ΣC↑_k), ΣN_k/W,
//	         Σ_{i∈k} F_i/(C↓_k + Σ_{i∈k} u_i), Σ_{i∈k} F_i/(C↓_k + Λ_k),
//	         Σ_i F_i/(S + Σ_i u_i) }
//
// The origin sends every byte some site lacks at least once; each site's
// uplink brings in what the site lacks; each device receives what it
// needs, after it starts; what enters the sites comes from the origin or
// leaves another site; what a site's devices receive comes through its
// uplink or from its own devices (over its LAN); and all the bytes
// devices receive come from the origin or some device's upload. With one
// value per term it is fleet.Bound's (no helpers), which a test checks.
// Churn, power cuts, outages and latency are not in it: it is the bound of
// the topology and the capacities.
func LowerBound(in BoundInput) float64 {
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
	minN := math.Inf(1)
	for _, s := range in.Sites {
		n := float64(s.New)
		minN = math.Min(minN, n)
		sumN += n
		sumUpC += s.Up
		up(div(n, s.Down))
		var fk, uk float64
		for _, d := range s.Devices {
			f := float64(d.Need)
			up(d.Start + div(f, d.Down))
			fk += f
			uk += d.Up
		}
		up(div(fk, s.Down+uk))
		if s.LAN > 0 {
			up(div(fk, s.Down+s.LAN))
		}
		sumF += fk
		sumU += uk
	}
	up(div(minN, in.Origin))
	up(div(sumN, in.Origin+sumUpC))
	up(div(sumF, in.Origin+sumU))
	if in.WAN > 0 {
		up(div(minN, in.WAN))
		up(div(sumN, in.WAN))
	}
	return best
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
			bs.Devices = append(bs.Devices, BoundDevice{Down: d.downCap, Up: d.upCap, Need: d.need, Start: seconds(d.start)})
		}
		in.Sites[k] = bs
	}
	return in
}

func (e *engine) lowerBound() float64 { return LowerBound(e.boundInput()) }
