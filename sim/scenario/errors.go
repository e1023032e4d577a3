package scenario

import (
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every error about a scenario's content: a TOML
// syntax error, an unknown key, a value of the wrong type or unit, a value
// out of range, an impossible combination. Callers branch on it (the CLI
// reports it as a usage error); the *Error it comes in names where.
var ErrInvalid = errors.New("scenario: invalid")

// Error is one thing wrong with a scenario, with where it is.
type Error struct {
	File string
	// Line is 1-based; 0 when the key is not written in the file (a
	// default that conflicts with a written value, a scenario built in
	// code).
	Line int
	// Key is the dotted key, e.g. "topology.uplink_up" or "failure.1.at"
	// (array-of-tables entries numbered from 0); empty for the file as a
	// whole.
	Key string
	Msg string
	// Sweep, when set, is the sweep axis whose value this error comes from
	// ("topology.uplink_up = \"0Mbit\"" from [sweep]); Line is then the
	// axis's line.
	Sweep string
}

func (e *Error) Error() string {
	s := e.File
	if s == "" {
		s = "scenario"
	}
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	s += ": "
	if e.Sweep != "" {
		s += "sweep " + e.Sweep + ": "
	}
	if e.Key != "" {
		s += e.Key + ": "
	}
	return s + e.Msg
}

func (e *Error) Unwrap() error { return ErrInvalid }

// maxErrors bounds how many problems one Parse reports: enough to fix a
// file in one go, not a wall of text for a file that is not TOML at all.
const maxErrors = 20
