package state

import (
	"fmt"
	"sort"
	"strings"
)

// Event is something that happened, stepped into the machine.
type Event interface {
	fmt.Stringer
	event()
}

// ReleaseOffered: a verified release for this device was announced.
type ReleaseOffered struct{ Release }

// ChunksWritten: Done of the target's Total chunks are written and synced.
type ChunksWritten struct{ Done, Total int64 }

// FetchFailed: fetching stopped on an error worth retrying (no peer, no
// origin, disk full); the machine retries a bounded number of times.
type FetchFailed struct{ Reason string }

// Verified: the caller re-hashed the target slot against the release's
// roots; OK false carries what did not match.
type Verified struct {
	OK     bool
	Reason string
}

// Flipped: the bootloader now tries the target first (FlipTentative done).
type Flipped struct{}

// Booted: the device came up from Slot, as the bootloader reports it.
type Booted struct{ Slot string }

// MarkedGood: the bootloader now boots Slot by default (MarkGood done).
type MarkedGood struct{ Slot string }

// HealthOK: every health check passed on the target.
type HealthOK struct{}

// HealthFailed: a health check failed on the target.
type HealthFailed struct{ Reason string }

// HealthPending: a health check failed on the target and is retried until
// the deadline (a service may still be coming up); Reason is kept and
// named in the verdict if the deadline passes.
type HealthPending struct{ Reason string }

// Tick: one unit of the caller's time has passed. The machine counts
// ticks while health checks run on a trial boot and rolls back once
// Config.HealthDeadline of them have gone by without a verdict. Ticks are
// valid in every phase (a daemon ticks all the time); outside a health
// check they change nothing.
type Tick struct{}

// RollbackRequested: an operator abandons the update in flight.
type RollbackRequested struct{ Reason string }

// CommitRequested: an operator commits a tentatively booted target without
// waiting for the health checks.
type CommitRequested struct{}

// Reset: forget everything and start over as Idle on Active with version
// Installed, e.g. after an operator re-imaged the device. Not allowed while
// a flip may be pending or on trial (Staged, Tentative): roll back first.
type Reset struct {
	Active    string
	Installed uint64
}

func (ReleaseOffered) event()    {}
func (ChunksWritten) event()     {}
func (FetchFailed) event()       {}
func (Verified) event()          {}
func (Flipped) event()           {}
func (Booted) event()            {}
func (HealthOK) event()          {}
func (MarkedGood) event()        {}
func (HealthFailed) event()      {}
func (Tick) event()              {}
func (HealthPending) event()     {}
func (RollbackRequested) event() {}
func (CommitRequested) event()   {}
func (Reset) event()             {}

func (e ReleaseOffered) String() string { return "ReleaseOffered{" + e.Release.String() + "}" }
func (e ChunksWritten) String() string {
	return fmt.Sprintf("ChunksWritten{%d/%d}", e.Done, e.Total)
}
func (e FetchFailed) String() string { return fmt.Sprintf("FetchFailed{%q}", e.Reason) }
func (e Verified) String() string {
	if e.OK {
		return "Verified{ok}"
	}
	return fmt.Sprintf("Verified{failed %q}", e.Reason)
}
func (Flipped) String() string         { return "Flipped" }
func (e Booted) String() string        { return "Booted{" + e.Slot + "}" }
func (HealthOK) String() string        { return "HealthOK" }
func (e MarkedGood) String() string    { return "MarkedGood{" + e.Slot + "}" }
func (e HealthFailed) String() string  { return fmt.Sprintf("HealthFailed{%q}", e.Reason) }
func (Tick) String() string            { return "Tick" }
func (e HealthPending) String() string { return fmt.Sprintf("HealthPending{%q}", e.Reason) }
func (CommitRequested) String() string { return "CommitRequested" }
func (e RollbackRequested) String() string {
	return fmt.Sprintf("RollbackRequested{%q}", e.Reason)
}
func (e Reset) String() string { return fmt.Sprintf("Reset{%s v%d}", e.Active, e.Installed) }

// String names a release as channel/version with its roots in name order.
func (r Release) String() string {
	var b strings.Builder
	if r.Channel != "" {
		b.WriteString(r.Channel)
		b.WriteByte('/')
	}
	fmt.Fprintf(&b, "v%d", r.Version)
	names := make([]string, 0, len(r.Roots))
	for n := range r.Roots {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, " %s=%s", n, r.Roots[n])
	}
	return b.String()
}

// checkEvent rejects events whose fields make no sense in any phase.
func checkEvent(ev Event) error {
	switch e := ev.(type) {
	case nil:
		return fmt.Errorf("nil event")
	case ReleaseOffered:
		if e.Version == 0 {
			return fmt.Errorf("release version 0")
		}
	case ChunksWritten:
		if e.Total <= 0 || e.Done < 0 || e.Done > e.Total {
			return fmt.Errorf("%d of %d chunks written", e.Done, e.Total)
		}
	case Booted:
		if !validSlot(e.Slot) {
			return fmt.Errorf("slot %q is not A or B", e.Slot)
		}
	case MarkedGood:
		if !validSlot(e.Slot) {
			return fmt.Errorf("slot %q is not A or B", e.Slot)
		}
	case Reset:
		if !validSlot(e.Active) {
			return fmt.Errorf("slot %q is not A or B", e.Active)
		}
	}
	return nil
}
