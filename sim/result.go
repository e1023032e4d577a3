package sim

// Result is what one run measured. Its JSON form is summary.json and what
// `shoal sim run --json` prints; the field names are a contract that scripts
// rely on (add freely, never rename).
type Result struct {
	Devices int `json:"devices"`
	Sites   int `json:"sites"`
	// Completed counts devices that ended holding the whole release.
	Completed int `json:"completed"`
	// Completion is over completed devices, in simulated seconds from the
	// announcement.
	Completion Quantiles `json:"completion_seconds"`
	// LowerBound is the Kumar–Ross bound extended to sites behind
	// uplinks, for this topology, these capacities and start times
	// (docs/simulator-model.md): a bound on the last device's completion
	// (Completion.Max). Devices that start early or have fast links may
	// complete before it; each device's own bound is in DeviceRows.
	LowerBound float64 `json:"lower_bound_seconds"`
	// OriginEgressBytes is what the origin sent.
	OriginEgressBytes int64 `json:"origin_egress_bytes"`
	// NewBytesPerSite is, per site, the bytes of the release that no
	// device of the site held at the start; UplinkBytesPerSite is what
	// entered the site over its uplink (payload: the model has no headers).
	NewBytesPerSite    []int64 `json:"new_bytes_per_site"`
	UplinkBytesPerSite []int64 `json:"uplink_bytes_per_site"`
	// UplinkUpBytesPerSite is what left each site over its uplink.
	UplinkUpBytesPerSite []int64 `json:"uplink_up_bytes_per_site"`
	// BytesBySource splits what devices received by where it came from.
	BytesBySource BySource `json:"bytes_by_source"`
	// Events is how many events the engine processed; EventsPerSecond
	// divides it by WallSeconds.
	Events          int64   `json:"events"`
	EventsPerSecond float64 `json:"events_per_second"`
	WallSeconds     float64 `json:"wall_seconds"`
	// SimSeconds is the simulated time at which the run ended.
	SimSeconds float64 `json:"sim_seconds"`
	Seed       int64   `json:"seed"`
	// Engine counts the engine's work (decisions, ticks, rate
	// recomputations).
	Engine EngineStats `json:"engine"`

	// Per-device and per-site rows and the time series, for the CSV files
	// (not in summary.json).
	DeviceRows []DeviceRow `json:"-"`
	SiteRows   []SiteRow   `json:"-"`
	Series     []Sample    `json:"-"`
}

// Quantiles of a distribution of seconds.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// BySource is bytes received by devices, by the class of their source.
type BySource struct {
	LAN    int64 `json:"lan"`
	WAN    int64 `json:"wan"`
	Origin int64 `json:"origin"`
}

// DeviceRow is one device's outcome (devices.csv).
type DeviceRow struct {
	Device int
	Site   int
	// Completion in simulated seconds, or -1 when it did not complete.
	Completion float64
	// LowerBound is the least time in which this device could have held
	// the release (DeviceBounds): its own start and links, and its site's
	// uplink for what the site lacked. Completion is never below it.
	LowerBound float64
	// Received bytes by source class; Sent bytes to peers.
	Received BySource
	Sent     int64
	// HadBase: it held the base release at the start.
	HadBase   bool
	PowerCuts int
	Sleeps    int
}

// SiteRow is one site's outcome (sites.csv).
type SiteRow struct {
	Site       int
	Devices    int
	NewBytes   int64
	UplinkDown int64
	UplinkUp   int64
	// Completion of the site's last device (-1 when one did not complete).
	Completion float64
}

// Sample is one point of the time series (timeseries.csv), every
// scenario.Scenario.SampleEvery of simulated time.
type Sample struct {
	Seconds           float64
	Completed         int
	OriginEgressBytes int64
	// UplinkBytes sums UplinkBytesPerSite over the sites so far.
	UplinkBytes int64
	LANBytes    int64
	ActiveFlows int
}
