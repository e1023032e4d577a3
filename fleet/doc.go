// Package fleet describes a test fleet of shoal nodes — sites of devices
// behind thin uplinks, a WAN, an origin — and what a release costs it,
// without running anything.
//
// It is the pure core of `shoal fleet run` (docs/fleet.md): Plan turns a
// Config into a Topology (names, addresses, the commands that build it in
// network namespaces), Bound computes the fastest any distribution could
// finish on it (Kumar and Ross, 2006, extended to sites behind uplinks),
// NewBytes what a release adds over what the devices hold, Image the
// deterministic release images, and Result the report. Package
// fleet/harness carries the plan out: it builds the namespaces or the
// loopback fleet, runs the processes, and measures.
//
// No clock, no goroutines and no I/O here, apart from Image writing to the
// writer it is given.
package fleet
