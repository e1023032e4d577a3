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
	// With strategy.rate_precision: how many times a link's level was
	// held through a recomputation, and how many times one drifted past
	// the precision and was recomputed exactly (0 when exact).
	LevelsHeld   int64 `json:"levels_held,omitempty"`
	LevelsForced int64 `json:"levels_forced,omitempty"`
	// DontHaves counts requests that reached a peer lacking the piece,
	// answered dont-have. A device announces a piece only once it holds
	// it and never loses what it holds, so this stays 0; a session that
	// hears dont-have forgets that the peer holds the piece, which is how
	// real nodes lost pieces when they announced before writing.
	DontHaves int64 `json:"dont_haves"`
	// The sessions' scheduler counters (sched.Stats), summed over every
	// session when it ends: requests given up as stalled, LAN wanters
	// left out of the split for stalling on their share, peers dropped
	// for too many strikes, blocks that came for pieces already held.
	Stalled   int64 `json:"stalled"`
	Excluded  int64 `json:"excluded"`
	Dropped   int64 `json:"dropped"`
	Duplicate int64 `json:"duplicate"`
}
