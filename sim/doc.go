// Package sim is shoal's swarm simulator: a single-threaded, deterministic,
// flow-level discrete-event engine that runs the devices' real scheduler
// (swarm/sched) over a model of sites behind uplinks and an origin, so
// researchers can ask "what if" of fleets far bigger than a lab
// (docs/simulator.md).
package sim
