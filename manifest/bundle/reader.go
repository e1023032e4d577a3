package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
)

// maxEntries is MaxEntries; tests lower it.
var maxEntries = MaxEntries

// entry locates one entry's data in the bundle file.
type entry struct {
	off, size int64
	kind      kind
}

// Reader serves a bundle's entries by repository path. It implements
// fetch.Fetcher (its transparency log is fetch.Sub(r, tlog.RepoDir)) and
// is safe for concurrent use.
type Reader struct {
	ra      io.ReaderAt
	closer  io.Closer
	name    string
	size    int64
	info    Info
	entries map[string]entry
	paths   []string // every entry but bundle.json, in bundle order (sorted)
}

var _ fetch.Fetcher = (*Reader)(nil)

// Open opens and parses the bundle at path. The file stays open until
// Close. A bundle is a regular file: a named pipe, device or directory is
// refused (an error wrapping fetch.ErrNotRegular) without ever blocking,
// so a FIFO given by mistake (or planted on a stick) cannot hang a device.
func Open(path string) (*Reader, error) {
	f, err := fetch.OpenFile(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	r, err := NewReader(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// NewReader parses a bundle of size bytes read through ra; name is used
// in errors. It reads the tar headers only (one block per entry), checking
// each against the bounds of the format before trusting any length.
func NewReader(ra io.ReaderAt, size int64, name string) (*Reader, error) {
	r := &Reader{ra: ra, name: name, size: size, entries: map[string]entry{}}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("bundle %s: %w: %s", name, ErrMalformed, fmt.Sprintf(format, args...))
	}
	var counts Counts
	block := make([]byte, blockSize)
	var off int64
	for n := 0; ; n++ {
		if off+blockSize > size {
			return nil, bad("truncated: no end-of-archive marker (header %d would start at offset %d, file has %d bytes)", n, off, size)
		}
		if err := r.readAt(block, off); err != nil {
			return nil, err
		}
		if allZero(block) {
			if n == 0 {
				return nil, bad("empty archive: no %s", InfoPath)
			}
			if err := r.checkEnd(off); err != nil {
				return nil, err
			}
			break
		}
		if n > maxEntries {
			return nil, bad("more than %d entries", maxEntries)
		}
		h, err := parseHeader(block)
		if err != nil {
			return nil, bad("header %d at offset %d: %v", n, off, err)
		}
		var e entry
		limit := int64(maxInfoSize)
		if n == 0 {
			if h.name != InfoPath {
				return nil, bad("first entry is %q, want %s", h.name, InfoPath)
			}
		} else {
			if h.name == InfoPath {
				return nil, bad("entry %d: a second %s", n, InfoPath)
			}
			if e.kind, limit, err = classify(h.name); err != nil {
				return nil, bad("entry %d at offset %d: %v", n, off, err)
			}
		}
		if h.size > limit {
			return nil, bad("entry %s: %d bytes, more than the %d allowed for it", h.name, h.size, limit)
		}
		e.off, e.size = off+blockSize, h.size
		if e.off+e.size > size {
			return nil, bad("truncated: entry %s needs %d bytes at offset %d, file has %d", h.name, e.size, e.off, size)
		}
		if _, dup := r.entries[h.name]; dup {
			return nil, bad("duplicate entry %s", h.name)
		}
		if n > 1 && h.name <= r.paths[len(r.paths)-1] {
			return nil, bad("entry %s after %s: entries must be sorted by path", h.name, r.paths[len(r.paths)-1])
		}
		r.entries[h.name] = e
		if n == 0 {
			b := make([]byte, e.size)
			if err := r.readAt(b, e.off); err != nil {
				return nil, err
			}
			if r.info, err = parseInfo(b); err != nil {
				return nil, bad("%v", err)
			}
		} else {
			r.paths = append(r.paths, h.name)
			switch e.kind {
			case kindMetadata:
				counts.Metadata++
			case kindLog:
				counts.Log++
			case kindIndex:
				counts.Index++
			case kindChunk:
				counts.Chunks++
			case kindDeltaIndex:
				counts.DeltaIndexes++
			case kindDelta:
				counts.Deltas++
			}
		}
		off = e.off + (e.size+blockSize-1)/blockSize*blockSize
	}
	if counts != r.info.Counts {
		return nil, bad("%s counts %+v, the bundle holds %+v", InfoPath, r.info.Counts, counts)
	}
	delete(r.entries, InfoPath)
	return r, nil
}

// checkEnd checks the end-of-archive marker at off: two zero blocks, then
// at most maxTrailer zero bytes of padding.
func (r *Reader) checkEnd(off int64) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("bundle %s: %w: %s", r.name, ErrMalformed, fmt.Sprintf(format, args...))
	}
	if off+2*blockSize > r.size {
		return bad("truncated: end-of-archive marker at offset %d is cut short", off)
	}
	rest := r.size - off - blockSize
	if rest > blockSize+maxTrailer {
		return bad("%d bytes after the end-of-archive marker at offset %d", rest-blockSize, off)
	}
	b := make([]byte, rest)
	if err := r.readAt(b, off+blockSize); err != nil {
		return err
	}
	if !allZero(b) {
		return bad("data after the end-of-archive marker at offset %d", off)
	}
	return nil
}

func (r *Reader) readAt(b []byte, off int64) error {
	n, err := r.ra.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("bundle %s: read %d bytes at offset %d: %w", r.name, len(b), off, err)
}

// Close closes the bundle file (a Reader from NewReader has nothing to
// close).
func (r *Reader) Close() error {
	if r.closer == nil {
		return nil
	}
	return r.closer.Close()
}

// Info returns what bundle.json says. It is unsigned; Verify checks it.
func (r *Reader) Info() Info { return r.info }

// Paths returns the repository paths of every entry but bundle.json,
// sorted.
func (r *Reader) Paths() []string { return append([]string(nil), r.paths...) }

// Has reports whether the bundle holds path, and its size.
func (r *Reader) Has(path string) (int64, bool) {
	e, ok := r.entries[path]
	return e.size, ok
}

// Fetch implements fetch.Fetcher: it returns the entry at path (a
// repository path), failing with fetch.ErrNotFound when the bundle has no
// such entry and fetch.ErrTooLarge when it is longer than maxBytes.
func (r *Reader) Fetch(ctx context.Context, path string, maxBytes int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e, ok := r.entries[path]
	if !ok {
		return nil, r.notFound(path)
	}
	if e.size > maxBytes {
		return nil, fmt.Errorf("bundle %s: %s: %w: %d bytes, at most %d", r.name, path, fetch.ErrTooLarge, e.size, maxBytes)
	}
	b := make([]byte, e.size)
	if err := r.readAt(b, e.off); err != nil {
		return nil, err
	}
	return b, nil
}

// notFound is the error for an entry the bundle lacks. A chunk that a
// bundle made with --from leaves out is what a device not running that
// release fails on (or one whose delta was refused: the whole chunk is
// not in the bundle to fall back to), so the message says which devices
// the bundle is for and what to use instead. It wraps fetch.ErrNotFound,
// which callers branch on, and ErrNeedsFrom.
func (r *Reader) notFound(path string) error {
	if r.info.From == 0 || !strings.HasPrefix(path, "chunks/") {
		return fmt.Errorf("bundle %s: %s: %w", r.name, path, fetch.ErrNotFound)
	}
	m := strconv.FormatUint(r.info.From, 10)
	what := "every chunk release " + m + " holds"
	if len(r.info.Deltas) > 0 {
		what += " and every chunk its deltas against release " + m + " build (a delta the device cannot use has no whole chunk here to fall back to)"
	}
	return fmt.Errorf("bundle %s: %s: %w: %w: the bundle was made with --from %s and leaves out %s; it installs only on a device whose active slot holds release %s. Use a full bundle (bundle create without --from) or the repository",
		r.name, path, fetch.ErrNotFound, ErrNeedsFrom, m, what, m)
}

// Indexes calls fn for every index entry, in path order, with the index
// decoded strictly and checked against the ID its path names.
func (r *Reader) Indexes(ctx context.Context, fn func(id cid.Cid, ix *chunker.Index) error) error {
	for _, p := range r.paths {
		if r.entries[p].kind != kindIndex {
			continue
		}
		id, _ := parseID(strings.TrimPrefix(p, "index/")) // checked by classify
		b, err := r.Fetch(ctx, p, manifest.DefaultLimits.Index)
		if err != nil {
			return err
		}
		ix, err := chunker.DecodeIndex(b)
		if err != nil {
			return fmt.Errorf("bundle %s: %s: %w", r.name, p, err)
		}
		if got := ix.CID(); !got.Equals(id) {
			return fmt.Errorf("bundle %s: %s: %w: index content ID is %s", r.name, p, manifest.ErrIndexHash, got)
		}
		if err := fn(id, ix); err != nil {
			return err
		}
	}
	return nil
}

// Chunks calls fn for every chunk entry, in path order, with the chunk's
// ID and its stored object (manifest.DecodeChunk turns it into the
// verified chunk bytes). obj is fn's to keep.
func (r *Reader) Chunks(ctx context.Context, fn func(id cid.Cid, obj []byte) error) error {
	for _, p := range r.paths {
		if r.entries[p].kind != kindChunk {
			continue
		}
		id, _ := idOfChunkPath(p) // checked by classify
		obj, err := r.Fetch(ctx, p, manifest.MaxObjectSize(chunker.MaxChunkCeil))
		if err != nil {
			return err
		}
		if err := fn(id, obj); err != nil {
			return err
		}
	}
	return nil
}
