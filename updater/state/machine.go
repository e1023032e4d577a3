package state

import (
	"errors"
	"fmt"
)

// Errors Step returns, wrapped with the phase and the event.
var (
	// ErrInvalidEvent: the event cannot happen in the current phase.
	ErrInvalidEvent = errors.New("state: invalid event")
	// ErrMalformedEvent: the event's fields are wrong whatever the phase.
	ErrMalformedEvent = errors.New("state: malformed event")
	// ErrBadConfig: a Config field is out of range.
	ErrBadConfig = errors.New("state: bad config")
)

// DefaultTries is how many times a bootloader tries a new slot unless the
// device's config says otherwise ([boot] tries).
const DefaultTries = 3

// Config is the device's update policy. Zero fields take defaults.
type Config struct {
	// Tries is how many times the bootloader tries a new slot before it
	// falls back (default DefaultTries). Its upper bound is the boot adapter's
	// (updater/boot.MaxTries), checked where the adapter is chosen.
	Tries int
	// HealthDeadline is how many ticks the health checks get after the
	// new slot boots (default 300; the caller decides what a tick is).
	HealthDeadline int
	// MaxFetchFailures is how many FetchFailed events an update survives
	// before it is abandoned (default 5).
	MaxFetchFailures int
}

func (c *Config) validate() error {
	if c.Tries == 0 {
		c.Tries = DefaultTries
	}
	if c.HealthDeadline == 0 {
		c.HealthDeadline = 300
	}
	if c.MaxFetchFailures == 0 {
		c.MaxFetchFailures = 5
	}
	switch {
	case c.Tries < 1:
		return fmt.Errorf("%w: tries %d", ErrBadConfig, c.Tries)
	case c.HealthDeadline < 1:
		return fmt.Errorf("%w: health deadline %d ticks", ErrBadConfig, c.HealthDeadline)
	case c.MaxFetchFailures < 1:
		return fmt.Errorf("%w: max fetch failures %d", ErrBadConfig, c.MaxFetchFailures)
	}
	return nil
}

// Machine is the update state machine. It is not safe for concurrent use;
// the updater steps it from one goroutine.
type Machine struct {
	cfg Config
	st  State
}

// New returns a machine in state st (Initial for a fresh device).
func New(cfg Config, st State) (*Machine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := st.Validate(); err != nil {
		return nil, err
	}
	return &Machine{cfg: cfg, st: st.clone()}, nil
}

// State returns a copy of the current state, for persisting or display.
func (m *Machine) State() State { return m.st.clone() }

// Config returns the policy in force, defaults filled in.
func (m *Machine) Config() Config { return m.cfg }

// Step applies ev and returns the actions to take. On error the state is
// unchanged and there is nothing to do.
func (m *Machine) Step(ev Event) ([]Action, error) {
	if _, ok := ev.(Tick); ok {
		return m.tick(), nil
	}
	if err := checkEvent(ev); err != nil {
		return nil, fmt.Errorf("%w: %v in phase %s: %w", ErrMalformedEvent, ev, m.st.Phase, err)
	}
	next := m.st.clone()
	acts, why := step(&next, m.cfg, ev)
	if why != "" {
		return nil, fmt.Errorf("%w: %v in phase %s: %s", ErrInvalidEvent, ev, m.st.Phase, why)
	}
	if b, ok := ev.(Booted); ok {
		next.Running = b.Slot
	}
	m.st = next
	return acts, nil
}

// tick counts a tick of a trial boot's health checks and rolls back when
// the deadline has passed. Every other phase ignores time.
func (m *Machine) tick() []Action {
	s := &m.st
	if s.Phase != Tentative || !s.Booted || s.Healthy {
		return nil
	}
	s.HealthTicks++
	if s.HealthTicks < m.cfg.HealthDeadline {
		return nil
	}
	reason := fmt.Sprintf("health checks did not pass within %d ticks", m.cfg.HealthDeadline)
	if s.LastError != "" {
		reason = fmt.Sprintf("health check failed: %s (still failing after %d ticks)", s.LastError, m.cfg.HealthDeadline)
	}
	return rollBack(s, reason, true, true)
}

// step moves s by ev. A non-empty why means the event is invalid here; the
// caller then throws s away, so step may have changed it.
func step(s *State, cfg Config, ev Event) (acts []Action, why string) {
	switch s.Phase {
	case Idle, Committed, RolledBack:
		return stepAtRest(s, ev)
	case Fetching:
		return stepFetching(s, cfg, ev)
	case Staged:
		return stepStaged(s, cfg, ev)
	case Tentative:
		return stepTentative(s, cfg, ev)
	}
	return nil, "unknown phase"
}

// stepAtRest handles the phases with no update in flight.
func stepAtRest(s *State, ev Event) ([]Action, string) {
	switch e := ev.(type) {
	case ReleaseOffered:
		switch {
		case e.Version <= s.Installed:
			return []Action{RecordAudit{VerdictRefused, e.Version,
				fmt.Sprintf("not newer than installed version %d", s.Installed)}}, ""
		case e.Version == s.FailedVersion:
			return []Action{RecordAudit{VerdictRefused, e.Version, "rolled back on this device before"}}, ""
		case s.Running == Other(s.Active):
			// Rolled back but not rebooted yet: the target is the slot
			// that runs, and must not be written.
			return []Action{RecordAudit{VerdictRefused, e.Version,
				"slot " + s.Running + " is running; reboot into slot " + s.Active + " first"}}, ""
		}
		*s = State{
			Phase:         Fetching,
			Active:        s.Active,
			Installed:     s.Installed,
			Target:        Other(s.Active),
			Release:       e.Release.clone(),
			FailedVersion: s.FailedVersion,
			Running:       s.Running,
		}
		return []Action{
			RecordAudit{VerdictAccepted, e.Version, ""},
			StartFetch{s.Target, e.Version},
		}, ""
	case Booted:
		switch {
		case e.Slot == s.Active && s.Phase == RolledBack:
			// Repeat MarkBad: it may have been lost to a power cut.
			return []Action{MarkBad{s.Target}}, ""
		case e.Slot == s.Active:
			// Repeat MarkGood for the same reason after a commit; on an idle
			// device it pins the bootloader to the slot that runs.
			return []Action{MarkGood{s.Active}}, ""
		case s.Phase == RolledBack:
			// The bootloader chose the slot that failed: MarkBad did not
			// reach it. Never run that slot; try again.
			return []Action{
				MarkBad{s.Target},
				RecordAudit{VerdictRolledBack, s.Release.Version, "booted the rolled-back slot " + e.Slot + " again"},
				Reboot{},
			}, ""
		}
		return nil, fmt.Sprintf("booted slot %s but the active slot is %s", e.Slot, s.Active)
	case MarkedGood:
		if e.Slot == s.Active {
			return nil, "" // the repeated MarkGood of a boot
		}
		return nil, fmt.Sprintf("slot %s marked good but the active slot is %s", e.Slot, s.Active)
	case Reset:
		return reset(s, e), ""
	}
	return nil, "no update in flight"
}

func reset(s *State, e Reset) []Action {
	running := s.Running
	*s = Initial(e.Active, e.Installed)
	s.Running = running // an operator's word does not change what runs
	return []Action{RecordAudit{VerdictReset, e.Installed, "active slot " + e.Active}}
}

// rollBack ends the update in flight. failed marks the release as one not
// to take again (it was found broken, or an operator said no); reboot is
// set when the device is running the target and must leave it.
func rollBack(s *State, reason string, failed, reboot bool) []Action {
	v := s.Release.Version
	s.Phase = RolledBack
	s.Reason = reason
	s.Booted, s.Healthy, s.CommitNote = false, false, ""
	s.TriesLeft, s.HealthTicks = 0, 0
	if failed {
		s.FailedVersion = v
	}
	// The audit record goes before the reboot, which ends the process.
	acts := []Action{MarkBad{s.Target}, RecordAudit{VerdictRolledBack, v, reason}}
	if reboot {
		acts = append(acts, Reboot{})
	}
	return acts
}

func stepFetching(s *State, cfg Config, ev Event) ([]Action, string) {
	v := s.Release.Version
	switch e := ev.(type) {
	case ReleaseOffered:
		if e.Version <= v {
			return []Action{RecordAudit{VerdictRefused, e.Version,
				fmt.Sprintf("not newer than release %d in flight", v)}}, ""
		}
		if e.Version == s.FailedVersion {
			return []Action{RecordAudit{VerdictRefused, e.Version, "rolled back on this device before"}}, ""
		}
		// A newer release supersedes the one being fetched: nothing of the
		// old one was flipped, and chunks already in the target still count
		// when the fetcher compares the slot against the new index.
		s.Release = e.Release.clone()
		s.Written, s.Total, s.Failures, s.LastError = 0, 0, 0, ""
		return []Action{
			RecordAudit{VerdictAccepted, e.Version, fmt.Sprintf("supersedes release %d", v)},
			StartFetch{s.Target, e.Version},
		}, ""
	case ChunksWritten:
		s.Written, s.Total = e.Done, e.Total
		if e.Done == e.Total {
			return []Action{VerifySlot{s.Target, v}}, ""
		}
		return nil, ""
	case FetchFailed:
		s.Failures++
		s.LastError = e.Reason
		if s.Failures >= cfg.MaxFetchFailures {
			// Not marked failed: the release may be fine and the network not.
			return rollBack(s, fmt.Sprintf("fetch failed %d times: %s", s.Failures, e.Reason), false, false), ""
		}
		return []Action{RecordAudit{VerdictFetchFailed, v, e.Reason}, StartFetch{s.Target, v}}, ""
	case Verified:
		if s.Total == 0 || s.Written != s.Total {
			return nil, fmt.Sprintf("only %d of %d chunks written", s.Written, s.Total)
		}
		if !e.OK {
			return rollBack(s, "verification failed: "+e.Reason, true, false), ""
		}
		s.Phase = Staged
		return []Action{FlipTentative{s.Target, cfg.Tries}}, ""
	case Booted:
		if e.Slot == s.Active {
			return []Action{StartFetch{s.Target, v}}, ""
		}
		return nil, fmt.Sprintf("booted slot %s, which is being written", e.Slot)
	case RollbackRequested:
		return rollBack(s, "cancelled by operator: "+e.Reason, true, false), ""
	case Reset:
		return reset(s, e), ""
	}
	return nil, "fetch in progress"
}

func stepStaged(s *State, cfg Config, ev Event) ([]Action, string) {
	switch e := ev.(type) {
	case Flipped:
		s.Phase = Tentative
		s.TriesLeft = cfg.Tries
		return []Action{Reboot{}}, ""
	case Booted:
		if e.Slot == s.Active {
			// The flip may or may not have happened before a power cut.
			return []Action{FlipTentative{s.Target, cfg.Tries}}, ""
		}
		// The flip happened and so did a reboot before Flipped was stepped.
		s.Phase = Tentative
		s.Booted = true
		s.HealthTicks = 0
		s.TriesLeft = cfg.Tries - 1
		return []Action{RunHealthChecks{s.Target, cfg.HealthDeadline}}, ""
	case RollbackRequested:
		// The flip may have happened: MarkBad undoes it.
		return rollBack(s, "cancelled by operator: "+e.Reason, true, false), ""
	}
	return nil, "verified, waiting for the flip"
}

func stepTentative(s *State, cfg Config, ev Event) ([]Action, string) {
	switch e := ev.(type) {
	case Booted:
		if e.Slot == s.Active {
			return rollBack(s, "boot fell back: tries exhausted", true, false), ""
		}
		s.Booted = true
		s.Healthy, s.CommitNote, s.LastError = false, "", ""
		s.HealthTicks = 0
		s.TriesLeft = max(s.TriesLeft-1, 0)
		return []Action{RunHealthChecks{s.Target, cfg.HealthDeadline}}, ""
	case RollbackRequested:
		return rollBack(s, "rolled back by operator: "+e.Reason, true, s.Booted), ""
	}
	if !s.Booted {
		return nil, "slot " + s.Target + " has not booted yet"
	}
	switch e := ev.(type) {
	case HealthOK:
		return markGood(s, ""), ""
	case CommitRequested:
		return markGood(s, "committed by operator"), ""
	case MarkedGood:
		if !s.Healthy || e.Slot != s.Target {
			return nil, "MarkGood was not asked for " + e.Slot
		}
		return commit(s, s.CommitNote), ""
	case HealthFailed:
		return rollBack(s, "health check failed: "+e.Reason, true, true), ""
	case HealthPending:
		if s.Healthy {
			return nil, "slot " + s.Target + " already passed its checks"
		}
		s.LastError = e.Reason
		return nil, ""
	}
	return nil, "slot " + s.Target + " on trial"
}

// markGood asks the bootloader to keep the target. The commit waits for
// MarkedGood: until then the old slot stays Active, so a power cut that
// loses MarkGood makes the device fall back to a slot the state still
// calls active, never the other way round.
func markGood(s *State, note string) []Action {
	s.Healthy, s.CommitNote = true, note
	return []Action{MarkGood{s.Target}}
}

func commit(s *State, reason string) []Action {
	slot, rel := s.Target, s.Release
	*s = State{
		Phase:         Committed,
		Active:        slot,
		Installed:     rel.Version,
		Release:       rel,
		FailedVersion: s.FailedVersion,
		Running:       s.Running,
	}
	return []Action{RecordAudit{VerdictCommitted, rel.Version, reason}}
}
