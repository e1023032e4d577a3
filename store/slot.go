package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
)

// SlotSource serves the chunks of one artifact from a file or block device
// that holds it (an installed A/B slot), reading each chunk at its index
// offset. Nothing is copied into the database: on a device with little disk
// the running release is its own chunk cache.
//
// A slot can hold a torn or stale write (power cut during install, a slot
// reused for another release), so every chunk is hashed after it is read and
// a mismatch returns a [*CorruptError] instead of the bytes.
type SlotSource struct {
	r      io.ReaderAt
	path   string   // for messages: the slot's path, or "slot"
	file   *os.File // set when OpenSlot opened it, so Close closes it
	hash   chunker.Hash
	locs   map[chunker.Digest]slotLoc
	mu     sync.RWMutex // guards closed against Close racing with reads
	closed bool
}

// slotLoc is where a chunk's bytes start in the slot and how many there are.
type slotLoc struct {
	off  int64
	size uint32
}

var _ Source = (*SlotSource)(nil)

// NewSlotSource serves the chunks of ix from r, which must hold the
// artifact from offset 0. The caller keeps ownership of r; Close does not
// close it. A chunk that occurs more than once is read from its first
// offset.
func NewSlotSource(r io.ReaderAt, ix *chunker.Index) (*SlotSource, error) {
	return newSlot(r, "slot", ix)
}

func newSlot(r io.ReaderAt, path string, ix *chunker.Index) (*SlotSource, error) {
	if ix == nil {
		return nil, fmt.Errorf("store: slot %s: nil index", path)
	}
	if !ix.Hash.Valid() {
		return nil, fmt.Errorf("store: slot %s: index uses %v: %w", path, ix.Hash, chunker.ErrUnknownHash)
	}
	s := &SlotSource{r: r, path: path, hash: ix.Hash, locs: make(map[chunker.Digest]slotLoc, len(ix.Chunks))}
	var off int64
	for i, e := range ix.Chunks {
		if e.Size == 0 {
			return nil, fmt.Errorf("store: slot %s: index chunk %d has size 0: %w", path, i, chunker.ErrMalformedIndex)
		}
		if _, dup := s.locs[e.Digest]; !dup {
			s.locs[e.Digest] = slotLoc{off: off, size: e.Size}
		}
		off += int64(e.Size)
	}
	if off != ix.Size {
		return nil, fmt.Errorf("store: slot %s: index chunks add up to %d bytes, header says %d: %w",
			path, off, ix.Size, chunker.ErrMalformedIndex)
	}
	return s, nil
}

// OpenSlot opens the file or block device at path read-only and serves the
// chunks of ix from it. The device must be at least ix.Size bytes long (a
// partition may be longer than the image it holds). Close closes the file.
func OpenSlot(path string, ix *chunker.Index) (*SlotSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("store: open slot: %w", err)
	}
	// Stat reports 0 for block devices; seeking to the end works for both.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: slot %s: find size: %w", path, err)
	}
	if ix != nil && size < ix.Size {
		f.Close()
		return nil, fmt.Errorf("store: slot %s is %d bytes, the index describes %d", path, size, ix.Size)
	}
	s, err := newSlot(f, path, ix)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.file = f
	return s, nil
}

// Get reads the chunk at its offset and returns it only if it hashes to id.
func (s *SlotSource) Get(ctx context.Context, id cid.Cid) ([]byte, error) {
	if err := ctxErr(ctx, "get", id); err != nil {
		return nil, err
	}
	loc, want, ok := s.lookup(id)
	if !ok {
		return nil, notFound(id)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("store: slot %s: get %s: %w", s.path, id, ErrClosed)
	}
	buf := make([]byte, loc.size)
	n, err := s.r.ReadAt(buf, loc.off)
	if n < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("store: slot %s: read chunk %s (%d bytes at offset %d): %w",
			s.path, id, loc.size, loc.off, err)
	}
	if d := s.hash.Sum(buf); d != want {
		return nil, &CorruptError{ID: id, Got: s.hash.ID(d), Where: s.path, Offset: loc.off}
	}
	return buf, nil
}

// Has reports whether the index lists the chunk. It does not read the slot:
// a chunk listed but corrupt on disk is found by Get.
func (s *SlotSource) Has(ctx context.Context, id cid.Cid) (bool, error) {
	if err := ctxErr(ctx, "has", id); err != nil {
		return false, err
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return false, fmt.Errorf("store: slot %s: has %s: %w", s.path, id, ErrClosed)
	}
	_, _, ok := s.lookup(id)
	return ok, nil
}

// Offset returns where the chunk starts in the slot and its size, for
// callers that copy chunks between slots without going through Get.
func (s *SlotSource) Offset(id cid.Cid) (off int64, size uint32, ok bool) {
	loc, _, ok := s.lookup(id)
	return loc.off, loc.size, ok
}

// Close releases the file opened by OpenSlot. Later calls fail with
// ErrClosed.
func (s *SlotSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.file != nil {
		if err := s.file.Close(); err != nil {
			return fmt.Errorf("store: close slot %s: %w", s.path, err)
		}
	}
	return nil
}

// lookup finds a chunk by ID; IDs of another hash function than the
// index's, or that are not chunk IDs, are simply not held.
func (s *SlotSource) lookup(id cid.Cid) (slotLoc, chunker.Digest, bool) {
	h, d, err := chunker.ParseID(id)
	if err != nil || h != s.hash {
		return slotLoc{}, d, false
	}
	loc, ok := s.locs[d]
	return loc, d, ok
}
