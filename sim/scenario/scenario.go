// Package scenario describes one simulator study: the topology, the release,
// the devices' starting state, churn, failures, strategy knobs, seeds and
// sweep axes. Scenarios are TOML files (docs/simulator.md); Load reads one
// strictly and checks it before any run, so a typo or an impossible value is
// an error naming the file, the line and the key, never a silent default.
//
// Everything here is plain data in base units (bytes, bytes per second,
// time.Duration). The engine (package sim) turns a Scenario and a seed into a
// run; nothing in this package draws randomness except Dist.Sample, from the
// *rand.Rand it is given.
package scenario

import "time"

// Scenario is one parsed and validated scenario file.
type Scenario struct {
	// File is the path the scenario was read from (for messages and for
	// resolving index paths relative to it); empty for one built in code.
	File        string
	Name        string
	Description string
	// Seeds: one run per seed (per sweep combination). Default [1].
	Seeds []int64
	// Limit is the simulated time after which a run stops; devices not
	// done by then count as not completed. Default 24h.
	Limit time.Duration
	// SampleEvery is the period of the time series. Default 1s.
	SampleEvery time.Duration

	Release  Release
	Topology Topology
	Initial  Initial
	Churn    Churn
	Failures []Failure
	Strategy Strategy
	// Sweep axes in file order; Expand makes one run per combination of
	// their values and per seed.
	Sweep []Axis

	// tree is the decoded file and lines where its keys are written: Expand
	// applies a combination of sweep values to the tree and decodes it
	// again, so a swept value is checked exactly like a written one.
	tree  map[string]any
	lines map[string]int
}

// Release is what the devices download.
type Release struct {
	// Size of the new release in bytes (synthetic releases).
	Size int64
	// Changed is the fraction of the new release's bytes that devices
	// holding the base release lack (1 = a fresh release, nothing shared).
	Changed float64
	// ChunkSize is the mean chunk size of a synthetic release (default
	// 64 KiB); chunk sizes are drawn around it like FastCDC's.
	ChunkSize int64
	// PieceSize is the transfer granularity: consecutive chunks are grouped
	// into pieces of about this many bytes, each scheduled and transferred
	// as one (0: one piece per chunk). Large runs use a few MiB.
	PieceSize int64
	// OldIndex and NewIndex, when set, are real index files (shoal chunk)
	// of the base and the new release; they replace Size, Changed and
	// ChunkSize. NewIndex alone is a release of which devices hold
	// nothing. A relative path in a file is relative to the file's
	// directory; Parse stores it joined to that directory, so these
	// fields open as they are from any working directory.
	OldIndex, NewIndex string
}

// Topology is the network: sites are LANs behind an uplink each; the
// uplinks meet the origin across a WAN.
type Topology struct {
	Sites int
	// DevicesPerSite is drawn once per site and rounded (at least 1).
	DevicesPerSite Dist
	// DeviceUp and DeviceDown are each device's link capacities (bytes/s),
	// drawn once per device.
	DeviceUp, DeviceDown Dist
	// LAN is a site's switching capacity (bytes/s) shared by all transfers
	// inside the site, drawn once per site.
	LAN Dist
	// UplinkUp (site → WAN) and UplinkDown (WAN → site) are each site's
	// uplink capacities (bytes/s), drawn once per site.
	UplinkUp, UplinkDown Dist
	// OriginEgress is the origin's capacity (bytes/s).
	OriginEgress float64
	// WAN is the core's capacity shared by all transfers between sites
	// and from the origin (bytes/s); 0 means not a bottleneck.
	WAN float64
	// One-way latencies: inside a site, across the WAN between sites, and
	// from the origin to a site's uplink.
	LANLatency, WANLatency, OriginLatency time.Duration
	// WANPeers is how many devices of other sites each device knows and
	// may trade with (what the DHT would find); 0: none, sites trade only
	// inside themselves and with the origin.
	WANPeers int
	// InstallTime is how long a device takes, once it holds every piece,
	// to run the release (seconds, drawn per device): a real node's
	// fsync, re-verification of the slot and flip. The device serves its
	// peers meanwhile; it completes at the end. Zero value: at once.
	InstallTime Dist
}

// Initial is the devices' state when the release is announced.
type Initial struct {
	// HasBase is the fraction of devices that hold the base release (the
	// rest hold nothing of the new one). Default 1.
	HasBase float64
	// Stagger: each device hears the announcement after a delay drawn from
	// this distribution (seconds); zero value: all at once.
	Stagger Dist
}

// Churn is devices coming and going during the transfer.
type Churn struct {
	// Awake and Asleep are session lengths in seconds, drawn per session;
	// a zero Awake means devices never sleep. An asleep device serves and
	// fetches nothing and keeps what it has.
	Awake, Asleep Dist
	// PowerCut is the probability that a device loses power once, at a
	// uniformly random moment of its transfer; it loses what it had not
	// yet written (its outstanding pieces) and is back after PowerOff
	// seconds.
	PowerCut float64
	PowerOff Dist
}

// FailureKind names what a failure takes away.
type FailureKind string

const (
	// FailUplink cuts a site's uplink (both directions).
	FailUplink FailureKind = "uplink"
	// FailOrigin takes the origin away.
	FailOrigin FailureKind = "origin"
)

// Failure is an outage window.
type Failure struct {
	Kind FailureKind
	// Site is the site an uplink failure cuts, or -1 for every site.
	Site    int
	At, For time.Duration
}

// Strategy holds the knobs a study compares. They map onto sched.Config.
type Strategy struct {
	// Split is the site uplink split (default true).
	Split bool
	// Rarity is "rarest" (default) or "random".
	Rarity string
	// OriginFirst: pieces no LAN peer holds come from the origin while it
	// is up, before WAN peers (default true, as on devices).
	OriginFirst bool
	// Endgame (default true).
	Endgame bool
	// Windows as in sched.Config; 0 takes the device defaults.
	Window, OriginWindow, SiteOriginWindow int
	// Tick is the scheduler tick (default 100ms, as on devices).
	Tick time.Duration
	// RatePrecision is the flow network's precision (flow.SetPrecision):
	// 0 (the default) computes max-min fair rates exactly; ε in (0, 0.1]
	// lets a link that is the bottleneck of at least 1/ε flows (an origin
	// shared by a large fleet) keep their rate while its load stays
	// within ε of its capacity, for speed at scale.
	RatePrecision float64
}

// Axis is one swept key and the values it takes.
type Axis struct {
	// Key is the dotted TOML key it overrides, e.g. "topology.uplink_down".
	Key string
	// Values as written in the file, one run per value (strings, numbers,
	// booleans).
	Values []any
}

// Dist is a value drawn per device, per site or per session: fixed, or from
// a distribution. The zero Dist is the fixed value 0.
type Dist struct {
	// Kind: "fixed" (Value), "uniform" (Min..Max), "normal" (Mean,
	// Stddev), "lognormal" (Mean and Stddev of the value itself, not of
	// its log), "exp" (Mean), or "choice" (Choices, with Weights or
	// equally likely). Draws are clamped to Min..Max when those are set.
	Kind             string
	Value            float64
	Min, Max         float64
	Mean, Stddev     float64
	Choices, Weights []float64
	// HasMin and HasMax say that Min or Max was written, so that a bound
	// of 0 clamps too ({dist = "normal", mean = 5, stddev = 3, min = 0}).
	HasMin, HasMax bool
}

// Run is one run of a study: the scenario with one combination of sweep
// values applied, and one seed.
type Run struct {
	// Index numbers runs from 0 in a fixed order: sweep combinations in
	// file order (the last axis varying fastest), then seeds.
	Index int
	Seed  int64
	// Params are the swept keys and the values this run takes, in axis
	// order, as written in the file.
	Params   []Param
	Scenario *Scenario
}

// Param is one swept key's value in a run.
type Param struct {
	Key   string
	Value string
}
