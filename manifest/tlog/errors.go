package tlog

import (
	"errors"
	"fmt"

	"github.com/shoalnet/shoal/fetch"
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrNotFound: the record is not in the log (or not in the tree asked
	// about). A device that requires the log must refuse the release.
	ErrNotFound = errors.New("tlog: record not in log")
	// ErrBadCheckpoint: a checkpoint is malformed, too large, or not signed
	// by a trusted key.
	ErrBadCheckpoint = errors.New("tlog: invalid checkpoint")
	// ErrInconsistent: two trees cannot both be views of one append-only
	// log (a split view or a rewritten history).
	ErrInconsistent = errors.New("tlog: trees are inconsistent")
	// ErrCorrupt: stored log data (an entry bundle, tile or lookup shard)
	// is malformed or does not match what the entries and the checkpoint
	// imply. Audit wraps it in a *AuditError naming the place.
	ErrCorrupt = errors.New("tlog: log data corrupt")
	// ErrDuplicate: the record is already in the log.
	ErrDuplicate = errors.New("tlog: record already in log")
	// ErrEquivocation: two targets records name the same channel and
	// targets version with different bytes.
	ErrEquivocation = errors.New("tlog: two different targets with one version")
	// ErrTooLarge: fetched data exceeds the bound for its kind. It is
	// fetch.ErrTooLarge itself (one value, two names), since the bound is
	// enforced by the fetcher.
	ErrTooLarge = fetch.ErrTooLarge
	// ErrMalformedRecord: a targets record is not in canonical form, or a
	// record to append is empty or too large.
	ErrMalformedRecord = errors.New("tlog: malformed record")
)

// AuditError names where Audit found stored data that
// does not match the log. It wraps ErrCorrupt, ErrDuplicate or
// ErrEquivocation.
type AuditError struct {
	// Path is the file inside the log directory, e.g. "tile/8/0/001".
	Path string
	// Index is the first entry whose data, hash or lookup line is wrong, or
	// -1 when the problem is not tied to one entry (the checkpoint).
	Index int64
	// Msg says what was wrong.
	Msg string
	// Err is the sentinel.
	Err error
}

func (e *AuditError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("%v: %s: %s", e.Err, e.Path, e.Msg)
	}
	return fmt.Sprintf("%v: %s: entry %d: %s", e.Err, e.Path, e.Index, e.Msg)
}

func (e *AuditError) Unwrap() error { return e.Err }
