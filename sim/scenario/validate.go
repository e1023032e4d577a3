package scenario

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/shoalnet/shoal/chunker"
)

// Rarity values.
const (
	RarityRarest = "rarest"
	RarityRandom = "random"
)

// Bounds that keep one scenario runnable on one machine; beyond them a
// scenario is almost certainly a typo (a size in bits, a missing unit).
const (
	MaxDevices = 10_000_000
	MaxSites   = 1_000_000
	MaxRuns    = 10_000
	maxSamples = 10_000_000
	maxChunks  = 1 << 27
	maxWindow  = 1 << 20
)

// Validate checks a Scenario built in code the way Parse checks a file
// (without filling defaults: every field means what it says). The error
// wraps ErrInvalid.
func (s *Scenario) Validate() error {
	d := &decoder{file: s.File, lines: s.lines}
	validate(s, d)
	if len(d.errs) > 0 {
		return joinErrs(d.errs)
	}
	return nil
}

// validate checks ranges and the consistency of values, reporting each
// problem against its key.
func validate(s *Scenario, d *decoder) {
	if len(s.Seeds) == 0 {
		d.fail("seeds", "no seeds: want at least one")
	}
	seen := map[int64]bool{}
	for _, x := range s.Seeds {
		if seen[x] {
			d.fail("seeds", "seed %d is listed twice (the runs would be identical)", x)
		}
		seen[x] = true
	}
	if s.Limit <= 0 {
		d.fail("limit", "must be above 0, not %v", s.Limit)
	}
	if s.SampleEvery <= 0 {
		d.fail("sample_every", "must be above 0, not %v", s.SampleEvery)
	} else if s.Limit > 0 && s.Limit/s.SampleEvery > maxSamples {
		d.fail("sample_every", "%v over a limit of %v is more than %d samples", s.SampleEvery, s.Limit, maxSamples)
	}

	r := s.Release
	if r.NewIndex != "" || r.OldIndex != "" {
		checkIndexes(s, d)
	} else {
		if r.Size <= 0 {
			d.fail("release.size", "must be above 0, not %d", r.Size)
		}
		if !(r.Changed >= 0 && r.Changed <= 1) {
			d.fail("release.changed", "must be a fraction in [0, 1], not %g", r.Changed)
		}
		if r.ChunkSize <= 0 {
			d.fail("release.chunk_size", "must be above 0, not %d", r.ChunkSize)
		} else if r.Size > 0 && r.Size/r.ChunkSize > maxChunks {
			d.fail("release.chunk_size", "%d-byte chunks make %d chunks of a %d-byte release; more than %d", r.ChunkSize, r.Size/r.ChunkSize, r.Size, maxChunks)
		}
	}
	if r.PieceSize < 0 {
		d.fail("release.piece_size", "must be 0 (one piece per chunk) or a size, not %d", r.PieceSize)
	} else if r.PieceSize > 0 && r.ChunkSize > 0 && r.NewIndex == "" && r.PieceSize < r.ChunkSize {
		d.fail("release.piece_size", "%d is smaller than release.chunk_size %d: a piece groups whole chunks", r.PieceSize, r.ChunkSize)
	}

	t := s.Topology
	if t.Sites < 1 || t.Sites > MaxSites {
		d.fail("topology.sites", "must be 1 to %d, not %d", MaxSites, t.Sites)
	}
	checkDevices(s, d)
	for _, c := range []struct {
		key  string
		dist Dist
	}{
		{"topology.device_up", t.DeviceUp}, {"topology.device_down", t.DeviceDown}, {"topology.lan", t.LAN},
		{"topology.uplink_up", t.UplinkUp}, {"topology.uplink_down", t.UplinkDown},
	} {
		checkDist(d, c.key, c.dist, true, "a capacity", unitRate)
	}
	if !(t.OriginEgress > 0) || math.IsInf(t.OriginEgress, 0) {
		d.fail("topology.origin_egress", "must be above 0, not %g", t.OriginEgress)
	}
	if !(t.WAN >= 0) || math.IsInf(t.WAN, 0) {
		d.fail("topology.wan", "must be above 0, or 0 for no limit; not %g", t.WAN)
	}
	for _, l := range []struct {
		key string
		v   time.Duration
	}{{"topology.lan_latency", t.LANLatency}, {"topology.wan_latency", t.WANLatency}, {"topology.origin_latency", t.OriginLatency}} {
		if l.v < 0 {
			d.fail(l.key, "must not be negative, not %v", l.v)
		}
	}

	checkDist(d, "topology.install_time", t.InstallTime, false, "an install time", unitSeconds)

	in := s.Initial
	if !(in.HasBase >= 0 && in.HasBase <= 1) {
		d.fail("initial.has_base", "must be a fraction in [0, 1], not %g", in.HasBase)
	}
	checkDist(d, "initial.stagger", in.Stagger, false, "a delay", unitSeconds)

	c := s.Churn
	if !c.Awake.IsZero() {
		checkDist(d, "churn.awake", c.Awake, true, "an awake session", unitSeconds)
	}
	checkDist(d, "churn.asleep", c.Asleep, false, "a sleep", unitSeconds)
	if !(c.PowerCut >= 0 && c.PowerCut <= 1) {
		d.fail("churn.power_cut", "must be a probability in [0, 1], not %g", c.PowerCut)
	}
	checkDist(d, "churn.power_off", c.PowerOff, false, "a power-off time", unitSeconds)

	for i, f := range s.Failures {
		key := "failure." + strconv.Itoa(i)
		switch f.Kind {
		case FailUplink:
			if t.Sites >= 1 && (f.Site < -1 || f.Site >= t.Sites) {
				d.fail(key+".site", "site %d does not exist: sites are numbered 0 to %d (topology.sites = %d), or \"all\"", f.Site, t.Sites-1, t.Sites)
			}
		case FailOrigin:
		default:
			d.fail(key+".kind", "unknown failure kind %q", f.Kind)
		}
		if f.At < 0 {
			d.fail(key+".at", "must not be negative, not %v", f.At)
		}
		if f.For <= 0 {
			d.fail(key+".for", "must be above 0, not %v", f.For)
		}
		if f.At >= 0 && f.For > 0 && s.Limit > 0 && f.At+f.For > s.Limit {
			d.fail(key+".for", "the outage %v + %v ends past limit = %v", f.At, f.For, s.Limit)
		}
	}

	st := s.Strategy
	if st.Rarity != RarityRarest && st.Rarity != RarityRandom {
		d.fail("strategy.rarity", "want %q or %q, not %q", RarityRarest, RarityRandom, st.Rarity)
	}
	for _, w := range []struct {
		key string
		v   int
	}{{"strategy.window", st.Window}, {"strategy.origin_window", st.OriginWindow}, {"strategy.site_origin_window", st.SiteOriginWindow}} {
		if w.v < 0 || w.v > maxWindow {
			d.fail(w.key, "must be 0 (the device default) to %d, not %d", maxWindow, w.v)
		}
	}
	if !(st.RatePrecision >= 0 && st.RatePrecision <= MaxRatePrecision) {
		d.fail("strategy.rate_precision", "must be 0 (exact) to %v, not %v", MaxRatePrecision, st.RatePrecision)
	}
	if st.Tick <= 0 {
		d.fail("strategy.tick", "must be above 0, not %v", st.Tick)
	} else if s.Limit > 0 && s.Limit/st.Tick > 1<<40 {
		d.fail("strategy.tick", "%v is too small for limit = %v", st.Tick, s.Limit)
	}
}

// checkDevices checks devices_per_site and wan_peers, which only make
// sense together: a device can know at most the devices of other sites.
func checkDevices(s *Scenario, d *decoder) {
	t := s.Topology
	checkDist(d, "topology.devices_per_site", t.DevicesPerSite, false, "a device count", unitCount)
	lo, hi := t.DevicesPerSite.Range()
	if hi < 1 {
		d.fail("topology.devices_per_site", "every site would have no device (at most %g)", hi)
		return
	}
	if !math.IsInf(hi, 1) && t.Sites > 0 && float64(t.Sites)*math.Round(hi) > MaxDevices {
		d.fail("topology.devices_per_site", "%d sites × up to %g devices is more than %d devices", t.Sites, math.Round(hi), MaxDevices)
	}
	// The engine rounds a draw and takes at least 1.
	least := max(1, math.Round(lo))
	if math.IsInf(lo, 0) || math.IsNaN(lo) {
		least = 1
	}
	if t.WANPeers < 0 {
		d.fail("topology.wan_peers", "must not be negative, not %d", t.WANPeers)
	} else if t.Sites > 0 {
		others := float64(t.Sites-1) * least
		if float64(t.WANPeers) > others {
			d.fail("topology.wan_peers", "%d, but a device may have only %g devices in other sites (%d sites × at least %g devices, less its own site)",
				t.WANPeers, others, t.Sites, least)
		}
	}
}

// checkDist checks that every draw of dist is allowed: above 0 when
// positive, else not negative. Kinds with an unbounded tail must be clamped
// with min where the tail would cross the limit.
func checkDist(d *decoder, key string, dist Dist, positive bool, what string, u unit) {
	if _, ok := distKeys[dist.Kind]; !ok && dist.Kind != "" {
		d.fail(key, "unknown dist %q: want one of %s", dist.Kind, kindList())
		return
	}
	if dist.Kind == DistChoice && len(dist.Weights) > 0 && len(dist.Weights) != len(dist.Choices) {
		d.fail(key, "%d weights for %d choices", len(dist.Weights), len(dist.Choices))
		return
	}
	lo, _ := dist.Range()
	// exp and lognormal draw above 0 even though their range starts at 0.
	open := (dist.Kind == DistExp || dist.Kind == DistLognormal) && lo == 0 && !(dist.HasMin || dist.Min != 0)
	switch {
	case math.IsInf(lo, -1):
		d.fail(key, "a %s can draw any value, including negative ones: set min (%s must be %s 0)", dist.Kind, what, map[bool]string{true: "above", false: "at least"}[positive])
	case positive && lo <= 0 && !open:
		d.fail(key, "can be %s: %s must be above 0", formatUnit(lo, u), what)
	case !positive && lo < 0:
		d.fail(key, "can be %s: %s must not be negative", formatUnit(lo, u), what)
	}
}

// checkIndexes checks that the index files exist and decode, so a typo in
// a path fails before a sweep of a hundred runs starts.
func checkIndexes(s *Scenario, d *decoder) {
	var chunk int64
	for _, p := range []struct{ key, path string }{{"release.old_index", s.Release.OldIndex}, {"release.new_index", s.Release.NewIndex}} {
		if p.path == "" {
			continue
		}
		b, err := readIndex(p.path)
		if err != nil {
			d.fail(p.key, "%v", err)
			continue
		}
		idx, err := chunker.DecodeIndex(b)
		if err != nil {
			d.fail(p.key, "%s: %v", p.path, err)
			continue
		}
		if p.key == "release.new_index" && len(idx.Chunks) > 0 {
			chunk = idx.Size / int64(len(idx.Chunks))
		}
	}
	if s.Release.PieceSize > 0 && chunk > 0 && s.Release.PieceSize < chunk {
		d.fail("release.piece_size", "%d is smaller than the new index's mean chunk size %d: a piece groups whole chunks", s.Release.PieceSize, chunk)
	}
}

// maxIndexSize bounds an index file read for checking (a 1 TiB image in
// 64 KiB chunks has an index of about 600 MB; scenarios use far less).
const maxIndexSize = 1 << 30

func readIndex(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > maxIndexSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxIndexSize)
	}
	return os.ReadFile(path)
}
