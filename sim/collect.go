package sim

import (
	"math"
	"slices"
)

// result gathers what the run measured.
func (e *engine) result() *Result {
	r := e.res
	r.Devices, r.Sites, r.Completed = len(e.devs), len(e.sites), e.completed
	r.SimSeconds = seconds(e.now)
	r.Events = e.nev
	var times []float64
	var dev []float64
	r.LowerBound, dev = e.lowerBounds()
	r.DeviceRows = make([]DeviceRow, len(e.devs))
	for i := range e.devs {
		d := &e.devs[i]
		row := d.row
		row.Device, row.Site, row.HadBase, row.LowerBound = i, int(d.site), d.hasBase, dev[i]
		row.Completion = -1
		if d.complete >= 0 {
			row.Completion = seconds(d.complete)
			times = append(times, row.Completion)
		}
		r.BytesBySource.LAN += row.Received.LAN
		r.BytesBySource.WAN += row.Received.WAN
		r.BytesBySource.Origin += row.Received.Origin
		r.DeviceRows[i] = row
	}
	slices.Sort(times)
	r.Completion = Quantiles{P50: quantile(times, 0.5), P90: quantile(times, 0.9), P99: quantile(times, 0.99)}
	if len(times) > 0 {
		r.Completion.Max = times[len(times)-1]
	}
	r.NewBytesPerSite = make([]int64, len(e.sites))
	r.UplinkBytesPerSite = make([]int64, len(e.sites))
	r.UplinkUpBytesPerSite = make([]int64, len(e.sites))
	r.SiteRows = make([]SiteRow, len(e.sites))
	for k := range e.sites {
		s := &e.sites[k]
		r.NewBytesPerSite[k] = s.newBytes
		r.UplinkBytesPerSite[k] = s.uplinkDown
		r.UplinkUpBytesPerSite[k] = s.uplinkUp
		last := 0.0
		for i := s.first; i < s.first+s.n; i++ {
			c := r.DeviceRows[i].Completion
			if c < 0 {
				last = -1
				break
			}
			last = math.Max(last, c)
		}
		r.SiteRows[k] = SiteRow{Site: k, Devices: int(s.n), NewBytes: s.newBytes,
			UplinkDown: s.uplinkDown, UplinkUp: s.uplinkUp, Completion: last}
	}
	fs := e.net.Stats()
	r.Engine.RateRecomputations, r.Engine.FlowsRecomputed = fs.Settles, fs.Recomputed
	r.Engine.LevelsHeld, r.Engine.LevelsForced = fs.Held, fs.Forced
	if e.progress != nil {
		e.progress(e.completed, len(e.devs))
	}
	return r
}

// quantile is the nearest-rank quantile of sorted values (0 for none).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}
