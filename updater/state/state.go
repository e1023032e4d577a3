package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
)

// The two slots. The machine names slots by these strings so that its
// actions map directly onto the boot adapters.
const (
	SlotA = "A"
	SlotB = "B"
)

// Other returns the slot that is not s.
func Other(s string) string {
	if s == SlotA {
		return SlotB
	}
	return SlotA
}

func validSlot(s string) bool { return s == SlotA || s == SlotB }

// Phase is where an update stands.
type Phase int

// The phases, in the order an update goes through them.
const (
	Idle Phase = iota
	Fetching
	Staged
	Tentative
	Committed
	RolledBack
)

var phaseNames = [...]string{"idle", "fetching", "staged", "tentative", "committed", "rolled-back"}

func (p Phase) String() string {
	if p < 0 || int(p) >= len(phaseNames) {
		return fmt.Sprintf("phase(%d)", int(p))
	}
	return phaseNames[p]
}

// MarshalText writes the phase by name, so persisted state stays readable
// and does not depend on the order of the constants.
func (p Phase) MarshalText() ([]byte, error) {
	if p < 0 || int(p) >= len(phaseNames) {
		return nil, fmt.Errorf("state: unknown phase %d", int(p))
	}
	return []byte(phaseNames[p]), nil
}

// UnmarshalText reads a phase written by MarshalText.
func (p *Phase) UnmarshalText(b []byte) error {
	for i, n := range phaseNames {
		if string(b) == n {
			*p = Phase(i)
			return nil
		}
	}
	return fmt.Errorf("state: unknown phase %q", b)
}

// Release is what the machine knows of a release: enough to name it in
// actions and audit records. The trust checks happen before it gets here.
type Release struct {
	Channel string `json:"channel,omitempty"`
	Version uint64 `json:"version"`
	// Roots maps each artifact name to its Merkle root, as opaque text.
	Roots map[string]string `json:"roots,omitempty"`
}

func (r *Release) clone() *Release {
	if r == nil {
		return nil
	}
	c := *r
	c.Roots = maps.Clone(r.Roots)
	return &c
}

// State is everything the machine remembers. All fields are exported so
// that the updater can persist it as JSON; read it back with ParseState.
type State struct {
	Phase Phase `json:"phase"`
	// Active is the slot the bootloader boots by default: the one holding
	// the installed release.
	Active string `json:"active"`
	// Installed is the version in Active (0 when unknown, e.g. factory).
	Installed uint64 `json:"installed"`
	// Target is the other slot while an update is in flight, and the slot
	// that failed in RolledBack. Empty otherwise.
	Target string `json:"target,omitempty"`
	// Release is the release in flight, the one committed (Committed), or
	// the one that failed (RolledBack).
	Release *Release `json:"release,omitempty"`
	// Written and Total count the target's chunks written so far (Fetching).
	Written int64 `json:"written,omitempty"`
	Total   int64 `json:"total,omitempty"`
	// Booted is set in Tentative once the target has booted.
	Booted bool `json:"booted,omitempty"`
	// Healthy is set in Tentative once the target passed its checks (or
	// an operator committed it) and MarkGood was issued; the commit
	// happens when the caller reports MarkedGood. CommitNote is the
	// reason recorded with the commit.
	Healthy    bool   `json:"healthy,omitempty"`
	CommitNote string `json:"commit_note,omitempty"`
	// Running is the slot of the last Booted event: the slot the device
	// runs until it reboots. No release is fetched into it.
	Running string `json:"running,omitempty"`
	// HealthTicks counts the Ticks since the target's health checks
	// started (Tentative, booted). It is not persisted: after a restart
	// the next Booted starts the checks, and the count, anew.
	HealthTicks int `json:"-"`
	// TriesLeft is what is left of the bootloader's tries for the target.
	TriesLeft int `json:"tries_left,omitempty"`
	// Failures counts fetch failures of the release in flight; LastError
	// is the most recent one, or on a trial boot the health check that
	// is failing now (HealthPending).
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Reason says why the last update was rolled back.
	Reason string `json:"reason,omitempty"`
	// FailedVersion is the last release that failed on this device after
	// it was verified or flipped; it is refused until Reset.
	FailedVersion uint64 `json:"failed_version,omitempty"`
}

// Initial is the state of a device that has never been updated by shoal:
// active is the slot it runs, installed the version in it (0 if unknown).
func Initial(active string, installed uint64) State {
	return State{Phase: Idle, Active: active, Installed: installed}
}

func (s State) clone() State {
	s.Release = s.Release.clone()
	return s
}

// Equal reports whether two states are the same.
func (s State) Equal(o State) bool {
	a, b := s, o
	a.Release, b.Release = nil, nil
	if a != b || (s.Release == nil) != (o.Release == nil) {
		return false
	}
	if s.Release == nil {
		return true
	}
	return s.Release.Channel == o.Release.Channel && s.Release.Version == o.Release.Version &&
		maps.Equal(s.Release.Roots, o.Release.Roots)
}

// ErrBadState marks persisted state that breaks the machine's invariants.
var ErrBadState = errors.New("state: invalid state")

// Validate checks the invariants every reachable state satisfies, so that
// state read from disk cannot put the machine somewhere it could never get
// to by itself.
func (s State) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrBadState, s.Phase, fmt.Sprintf(format, args...))
	}
	if s.Phase < Idle || s.Phase > RolledBack {
		return fmt.Errorf("%w: unknown phase %d", ErrBadState, int(s.Phase))
	}
	if !validSlot(s.Active) {
		return bad("active slot %q is not A or B", s.Active)
	}
	if s.Written < 0 || s.Total < 0 || s.Written > s.Total {
		return bad("written %d of %d chunks", s.Written, s.Total)
	}
	if s.TriesLeft < 0 || s.Failures < 0 {
		return bad("negative counter (tries left %d, failures %d)", s.TriesLeft, s.Failures)
	}
	if s.Booted && s.Phase != Tentative {
		return bad("booted flag set outside tentative")
	}
	if s.Running != "" && !validSlot(s.Running) {
		return bad("running slot %q is not A or B", s.Running)
	}
	if s.Healthy && !s.Booted {
		return bad("healthy before booting the target")
	}
	inFlight := s.Phase == Fetching || s.Phase == Staged || s.Phase == Tentative
	switch {
	case inFlight || s.Phase == RolledBack:
		if s.Target != Other(s.Active) {
			return bad("target slot %q is not the inactive slot", s.Target)
		}
		if s.Release == nil {
			return bad("no release")
		}
	case s.Target != "":
		return bad("target slot %q set", s.Target)
	}
	if (inFlight || s.Phase == RolledBack) && s.Release.Version <= s.Installed {
		return bad("release %d is not newer than installed %d", s.Release.Version, s.Installed)
	}
	switch s.Phase {
	case Idle:
		if s.Release != nil {
			return bad("release set")
		}
	case Staged, Tentative:
		if s.Total == 0 || s.Written != s.Total {
			return bad("only %d of %d chunks written", s.Written, s.Total)
		}
	case Committed:
		if s.Release == nil || s.Release.Version != s.Installed {
			return bad("committed release is not the installed version %d", s.Installed)
		}
	case RolledBack:
		if s.Reason == "" {
			return bad("no reason")
		}
	}
	return nil
}

// ParseState reads state persisted as JSON. Unknown fields, trailing data
// and states that break the invariants are errors.
func ParseState(b []byte) (State, error) {
	var s State
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return State{}, fmt.Errorf("%w: %w", ErrBadState, err)
	}
	if err := d.Decode(&struct{}{}); err != io.EOF {
		return State{}, fmt.Errorf("%w: trailing data after the state object", ErrBadState)
	}
	if err := s.Validate(); err != nil {
		return State{}, err
	}
	return s, nil
}
