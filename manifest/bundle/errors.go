package bundle

import "errors"

// Sentinel errors. Each returned error wraps one of them (or a manifest or
// tlog sentinel) together with the entry path or offset concerned.
var (
	// ErrMalformed: the file is not a well-formed bundle: a tar header that
	// does not parse, a truncated file, a path outside the repository
	// layout, a duplicate or out-of-order entry, an entry larger than its
	// kind allows, or a bundle.json that does not match the entries.
	ErrMalformed = errors.New("bundle: malformed bundle")
	// ErrMissing: an entry the release needs is not in the bundle.
	ErrMissing = errors.New("bundle: entry missing")
	// ErrExtra: the bundle holds an entry the release does not need.
	ErrExtra = errors.New("bundle: unexpected entry")
	// ErrNeedsFrom: a chunk a bundle made with --from M leaves out was
	// asked for, by a device not running release M (or one that refused
	// the delta that builds it).
	ErrNeedsFrom = errors.New("bundle: made for devices on its from release")
	// ErrDeltaImport: Import was given a bundle that carries deltas; a
	// chunk store holds whole chunks only.
	ErrDeltaImport = errors.New("bundle: a bundle with deltas cannot be imported into a chunk store")
)
