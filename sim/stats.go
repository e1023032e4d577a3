package sim

// EngineStats counts the engine's own work, for performance notes.
type EngineStats struct {
	// Decisions is how many times a device's scheduler was asked what to
	// do next (sched.Session.Next); Ticks how many session ticks ran.
	Decisions int64 `json:"decisions"`
	Ticks     int64 `json:"ticks"`
	// RateRecomputations is how many instants recomputed rates;
	// FlowsRecomputed sums the flows each recomputed.
	RateRecomputations int64 `json:"rate_recomputations"`
	FlowsRecomputed    int64 `json:"flows_recomputed"`
}
