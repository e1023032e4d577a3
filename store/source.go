package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
)

// Source is the read side of every chunk provider: the badger store, a
// slot on disk, memory, and later peers and the origin.
//
// Contract, for every implementation:
//   - Get returns exactly the bytes whose ID is id. Implementations that read
//     from storage that can rot or tear (disk, slots) hash what they read and
//     return an error wrapping [ErrCorrupt] instead of bad bytes.
//   - Get of an ID the source does not hold (including an ID that is not a
//     chunk ID at all) returns an error wrapping [ErrNotFound]; Has returns
//     false and no error.
//   - The slice Get returns belongs to the caller: the source keeps no
//     reference to it, so the caller may modify or retain it.
//   - Both methods are safe for concurrent use.
//   - A context that is already done makes both methods return an error
//     wrapping ctx.Err(); sources that block (disk, network) also stop
//     waiting when the context ends.
type Source interface {
	Get(ctx context.Context, id cid.Cid) ([]byte, error)
	Has(ctx context.Context, id cid.Cid) (bool, error)
}

// Sink is the write side of a chunk store.
//
// Contract: Put hashes data with the function id names and refuses bytes
// that do not match (an error wrapping [ErrMismatch] naming both IDs) and
// IDs that are not CIDv1 raw chunk IDs of a supported hash (an error
// wrapping [chunker.ErrBadID]); nothing is stored then. Put of a chunk the
// sink already holds succeeds. The sink does not retain data, so the caller
// may reuse the buffer once Put returns. Put is safe for concurrent use.
type Sink interface {
	Put(ctx context.Context, id cid.Cid, data []byte) error
}

// ReadWriter is a writable chunk store: what storetest.RunWritable checks.
type ReadWriter interface {
	Source
	Sink
}

var (
	// ErrNotFound means the source does not hold the chunk.
	ErrNotFound = errors.New("store: chunk not found")
	// ErrMismatch means bytes offered to Put do not hash to the claimed ID.
	ErrMismatch = errors.New("store: chunk does not match its ID")
	// ErrCorrupt means bytes read back from storage no longer hash to their
	// ID: a torn or stale slot write, or a damaged database.
	ErrCorrupt = errors.New("store: stored data is corrupt")
	// ErrCacheFull means a cache-mode [DB] cannot take an unpinned chunk:
	// the pinned data and the chunk together exceed its limit, and pinned
	// data is never evicted.
	ErrCacheFull = errors.New("store: cache full")
	// ErrNoIndex means the store does not hold the index asked for.
	ErrNoIndex = errors.New("store: index not found")
	// ErrNoPin means no pin has the given name.
	ErrNoPin = errors.New("store: no such pin")
	// ErrClosed is returned by every method of a closed [DB] or [SlotSource].
	ErrClosed = errors.New("store: closed")
)

// CorruptError reports stored bytes that do not hash to their ID.
type CorruptError struct {
	ID     cid.Cid // the ID the bytes were stored under
	Got    cid.Cid // the ID the bytes actually have
	Where  string  // the slot's or pack file's path, or "database"
	Offset int64   // byte offset in the slot or pack file; -1 when not known
}

func (e *CorruptError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("store: chunk %s in %s: bytes hash to %s", e.ID, e.Where, e.Got)
	}
	return fmt.Sprintf("store: chunk %s at offset %d of %s: bytes hash to %s (torn or stale write?)",
		e.ID, e.Offset, e.Where, e.Got)
}

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// checkPut is the verification every Sink runs before storing: the ID must
// be a chunk ID and the bytes must hash to it.
func checkPut(id cid.Cid, data []byte) error {
	got, ok, err := chunker.SumID(id, data)
	if err != nil {
		return fmt.Errorf("store: put: %w", err)
	}
	if !ok {
		return fmt.Errorf("store: put %s: bytes hash to %s: %w", id, got, ErrMismatch)
	}
	return nil
}

// notFound wraps ErrNotFound with the ID.
func notFound(id cid.Cid) error {
	return fmt.Errorf("store: chunk %s: %w", id, ErrNotFound)
}

// ctxErr reports a done context, naming what was being done.
func ctxErr(ctx context.Context, op string, id cid.Cid) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %s %s: %w", op, id, err)
	}
	return nil
}
