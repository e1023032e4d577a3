package sim

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/shoalnet/shoal/sim/flow"
)

type site struct {
	first, n int32 // its devices are first..first+n-1
	lan      flow.LinkID
	upUp     flow.LinkID // site → WAN
	upDown   flow.LinkID // WAN → site
	lanCap   float64
	upCap    float64
	downCap  float64

	newBytes   int64
	uplinkDown int64
	uplinkUp   int64
}

// maxDevices bounds a run (and a site: sched tracks at most 65535 peers).
const (
	maxDevices     = 10_000_000
	maxSiteDevices = 60_000
)

// build draws the topology: sites, devices, their links and WAN peers.
func (e *engine) build() error {
	sc := e.sc
	t := sc.Topology
	switch {
	case t.Sites < 1:
		return fmt.Errorf("%w: %d sites", ErrInvalid, t.Sites)
	case !(t.OriginEgress > 0) || math.IsInf(t.OriginEgress, 0):
		return fmt.Errorf("%w: origin egress %v", ErrInvalid, t.OriginEgress)
	case !(t.WAN >= 0) || math.IsInf(t.WAN, 0):
		return fmt.Errorf("%w: WAN capacity %v", ErrInvalid, t.WAN)
	case t.LANLatency < 0 || t.WANLatency < 0 || t.OriginLatency < 0:
		return fmt.Errorf("%w: a negative latency", ErrInvalid)
	case t.WANPeers < 0:
		return fmt.Errorf("%w: %d WAN peers", ErrInvalid, t.WANPeers)
	}
	n := flow.New()
	if err := n.SetPrecision(e.sc.Strategy.RatePrecision); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	e.net = n
	e.sites = make([]site, t.Sites)
	total := 0
	for k := range e.sites {
		rng := stream(e.seed, streamSite, k)
		m, err := drawPositive(fmt.Sprintf("site %d devices", k), t.DevicesPerSite, rng)
		if err != nil {
			return err
		}
		cnt := max(1, int(math.Round(m)))
		if cnt > maxSiteDevices || total+cnt > maxDevices {
			return fmt.Errorf("%w: too many devices (site %d draws %d)", ErrInvalid, k, cnt)
		}
		s := &e.sites[k]
		s.first, s.n = int32(total), int32(cnt)
		total += cnt
		if s.lanCap, err = drawPositive(fmt.Sprintf("site %d LAN", k), t.LAN, rng); err != nil {
			return err
		}
		if s.upCap, err = drawPositive(fmt.Sprintf("site %d uplink up", k), t.UplinkUp, rng); err != nil {
			return err
		}
		if s.downCap, err = drawPositive(fmt.Sprintf("site %d uplink down", k), t.UplinkDown, rng); err != nil {
			return err
		}
	}
	e.devs = make([]device, total)
	var sumDown float64
	for k := range e.sites {
		s := &e.sites[k]
		var sumUp float64
		for i := s.first; i < s.first+s.n; i++ {
			d := &e.devs[i]
			d.id = "d" + strconv.Itoa(int(i))
			d.site = int32(k)
			rng := stream(e.seed, streamDevice, int(i))
			var err error
			if d.upCap, err = drawPositive(fmt.Sprintf("device %d up", i), t.DeviceUp, rng); err != nil {
				return err
			}
			if d.downCap, err = drawPositive(fmt.Sprintf("device %d down", i), t.DeviceDown, rng); err != nil {
				return err
			}
			d.hasBase = rng.Float64() < e.hasBase
			st, err := draw(sc.Initial.Stagger, rng)
			if err != nil {
				return fmt.Errorf("stagger: %w", err)
			}
			if !(st >= 0) || st > 1e9 {
				return fmt.Errorf("%w: device %d stagger %v s", ErrInvalid, i, st)
			}
			d.start = int64(st * 1e9)
			// Drawn last, so the draws above are the same with or without it.
			in, err := draw(t.InstallTime, rng)
			if err != nil {
				return fmt.Errorf("install time: %w", err)
			}
			if !(in >= 0) || in > 1e9 {
				return fmt.Errorf("%w: device %d install time %v s", ErrInvalid, i, in)
			}
			d.install = int64(in * 1e9)
			if d.up, err = n.AddLink(d.upCap); err != nil {
				return err
			}
			if d.down, err = n.AddLink(d.downCap); err != nil {
				return err
			}
			sumUp += d.upCap
		}
		// A link that can never fill is left out of the paths: every
		// transfer inside a site leaves one of its devices' up links, so a
		// LAN at least as fast as their sum never limits anything.
		s.lan = -1
		if s.lanCap < sumUp {
			var err error
			if s.lan, err = n.AddLink(s.lanCap); err != nil {
				return err
			}
		}
		var err error
		if s.upUp, err = n.AddLink(s.upCap); err != nil {
			return err
		}
		if s.upDown, err = n.AddLink(s.downCap); err != nil {
			return err
		}
		sumDown += s.downCap
	}
	// Everything from the origin or across the WAN enters some site through
	// its uplink: the same reasoning leaves out an origin or a WAN core at
	// least as fast as all uplinks together.
	e.originLink, e.wanLink = -1, -1
	if t.OriginEgress < sumDown {
		var err error
		if e.originLink, err = n.AddLink(t.OriginEgress); err != nil {
			return err
		}
	}
	if t.WAN > 0 && t.WAN < sumDown {
		var err error
		if e.wanLink, err = n.AddLink(t.WAN); err != nil {
			return err
		}
	}
	e.lat = [3]int64{int64(t.LANLatency), int64(t.WANLatency), int64(t.OriginLatency)}
	return e.pickWANPeers()
}

// pickWANPeers gives each device WANPeers random devices of other sites;
// a connection serves both ends, so a device trades with those it picked
// and those that picked it.
func (e *engine) pickWANPeers() error {
	k := e.sc.Topology.WANPeers
	if k == 0 || len(e.sites) < 2 {
		return nil
	}
	nd := len(e.devs)
	type edge struct{ a, b int32 }
	var edges []edge
	for i := range e.devs {
		d := &e.devs[i]
		s := &e.sites[d.site]
		others := nd - int(s.n)
		rng := stream(e.seed, streamWAN, i)
		for range min(k, others) {
			j := rng.IntN(others)
			if j >= int(s.first) {
				j += int(s.n)
			}
			a, b := int32(i), int32(j)
			edges = append(edges, edge{min(a, b), max(a, b)})
		}
	}
	slices.SortFunc(edges, func(x, y edge) int {
		if x.a != y.a {
			return int(x.a - y.a)
		}
		return int(x.b - y.b)
	})
	edges = slices.Compact(edges)
	for _, ed := range edges {
		e.devs[ed.a].wan = append(e.devs[ed.a].wan, ed.b)
		e.devs[ed.b].wan = append(e.devs[ed.b].wan, ed.a)
	}
	for i := range e.devs {
		if len(e.devs[i].wan) > maxSiteDevices {
			return fmt.Errorf("%w: device %d has %d WAN peers", ErrInvalid, i, len(e.devs[i].wan))
		}
	}
	return nil
}

// path returns the links a transfer from src (-1: the origin) to dst
// crosses, and its class.
func (e *engine) path(buf []flow.LinkID, src, dst int32) []flow.LinkID {
	buf = buf[:0]
	dd := &e.devs[dst]
	ds := &e.sites[dd.site]
	if src < 0 {
		if e.originLink >= 0 {
			buf = append(buf, e.originLink)
		}
		if e.wanLink >= 0 {
			buf = append(buf, e.wanLink)
		}
		return append(buf, ds.upDown, dd.down)
	}
	sd := &e.devs[src]
	buf = append(buf, sd.up)
	if sd.site == dd.site {
		if ds.lan >= 0 {
			buf = append(buf, ds.lan)
		}
		return append(buf, dd.down)
	}
	buf = append(buf, e.sites[sd.site].upUp)
	if e.wanLink >= 0 {
		buf = append(buf, e.wanLink)
	}
	return append(buf, ds.upDown, dd.down)
}

func seconds(ns int64) float64 { return float64(ns) / 1e9 }
