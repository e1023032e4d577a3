package chunker

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// ErrMismatch is wrapped by every verification failure.
var ErrMismatch = errors.New("chunker: data does not match index")

// ChunkError names the first chunk of a stream that does not match its
// index.
type ChunkError struct {
	Index  int    // chunk number
	Offset int64  // byte offset of the chunk in the stream
	Want   Digest // digest from the index
	Got    Digest // digest of the bytes read (zero when Reason is about length)
	Reason string
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("chunker: chunk %d at offset %d: %s", e.Index, e.Offset, e.Reason)
}

func (e *ChunkError) Unwrap() error { return ErrMismatch }

// Verify reads r and checks it against ix chunk by chunk, hashing on every
// core. It returns nil only when r holds exactly the bytes ix describes;
// otherwise it returns the first failure in stream order: a *ChunkError
// for the first chunk that differs (or where the stream ends early or runs
// on past the index), or the read error if the reader failed before that
// chunk. A failure further on never hides an earlier bad chunk, whatever
// the timing. Chunks after the first bad one may or may not have been
// hashed.
func Verify(ctx context.Context, r io.Reader, ix *Index) error {
	return VerifyWith(ctx, r, ix, Options{})
}

// VerifyWith is Verify with control over workers, progress and per-chunk
// work (Options.Params and Options.Hash are taken from the index).
func VerifyWith(ctx context.Context, r io.Reader, ix *Index, o Options) error {
	o.Params, o.Hash = ix.Params, ix.Hash
	if err := o.fill(); err != nil {
		return err
	}
	// Mismatches are reported by the in-order collector, so the error names
	// the first bad chunk even when a later one was hashed sooner; the
	// caller's Work never sees a chunk that failed.
	work := o.Work
	o.Work = func(c Chunk, data []byte) error {
		if work == nil || c.Digest != ix.Chunks[c.Index].Digest {
			return nil
		}
		return work(c, data)
	}
	next := 0
	var offset int64
	err := run(ctx, r, o, o.Params.Max, func(data []byte, eof bool) (int, error) {
		if next >= len(ix.Chunks) {
			return 0, &ChunkError{Index: next, Offset: offset, Reason: fmt.Sprintf("stream continues past the index's %d bytes", ix.Size)}
		}
		size := int(ix.Chunks[next].Size)
		if len(data) < size {
			return 0, &ChunkError{Index: next, Offset: offset, Want: ix.Chunks[next].Digest,
				Reason: fmt.Sprintf("stream ends after %d of the chunk's %d bytes", len(data), size)}
		}
		next++
		offset += int64(size)
		return size, nil
	}, func(c Chunk) error {
		if want := ix.Chunks[c.Index].Digest; c.Digest != want {
			return &ChunkError{Index: c.Index, Offset: c.Offset, Want: want, Got: c.Digest,
				Reason: fmt.Sprintf("bytes hash to %s, index says %s", ix.Hash.ID(c.Digest), ix.Hash.ID(want))}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if next < len(ix.Chunks) {
		return &ChunkError{Index: next, Offset: offset, Want: ix.Chunks[next].Digest,
			Reason: fmt.Sprintf("stream ends at offset %d, index expects %d bytes", offset, ix.Size)}
	}
	return nil
}
