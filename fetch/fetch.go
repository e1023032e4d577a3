package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shoalnet/shoal/internal/inputfile"
)

// Fetcher reads files of a repository by their slash-separated path
// relative to the repository's top (e.g. "metadata/timestamp.json").
//
// Fetch returns at most maxBytes bytes: a longer file is an error wrapping
// ErrTooLarge, and a missing one wraps ErrNotFound. The returned slice
// belongs to the caller. Implementations must be safe for concurrent use.
type Fetcher interface {
	Fetch(ctx context.Context, path string, maxBytes int64) ([]byte, error)
}

// Sentinel errors; callers branch on them with errors.Is. Each returned
// error wraps one of them together with the path or URL concerned.
var (
	// ErrNotFound: the source has no such file (HTTP 404 or 410, no such
	// file in the directory or bundle).
	ErrNotFound = errors.New("fetch: not found")
	// ErrTooLarge: the file is longer than the bound the caller gave.
	ErrTooLarge = errors.New("fetch: exceeds its size bound")
	// ErrStalled: the source delivered less than the minimum transfer
	// rate over a whole window (see WithMinRate).
	ErrStalled = errors.New("fetch: transfer stalled")
	// ErrNotRegular: a local path names a named pipe, device, socket or
	// directory where a regular file belongs.
	ErrNotRegular = inputfile.ErrNotRegular
)

// CheckPath rejects repository paths that could leave the repository:
// absolute paths, "..", empty or dot segments, backslashes and NUL bytes.
func CheckPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return fmt.Errorf("repository path %q: not a relative slash path", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("repository path %q: bad segment %q", p, seg)
		}
	}
	return nil
}

// ReadAll reads r to the end, failing with an error wrapping ErrTooLarge
// as soon as it has seen more than max bytes: the buffer never grows past
// max+1 bytes. name (a path or URL) is used in errors.
func ReadAll(r io.Reader, name string, max int64) ([]byte, error) {
	if max < 0 {
		max = 0
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", name, ErrTooLarge, max)
	}
	return b, nil
}

// New returns an HTTP fetcher (with opts) for an http(s) URL and a Dir
// for a directory; anything else is an error.
func New(src string, opts ...HTTPOption) (Fetcher, error) {
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		return NewHTTP(src, opts...)
	}
	st, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", src, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("repository %s: not a directory or an http(s) URL", src)
	}
	return Dir(src), nil
}

// Sub returns a Fetcher for the subdirectory dir (a slash path) of f:
// Fetch(ctx, p, n) reads dir/p from f. p is checked before it is joined,
// so it cannot climb out of dir.
func Sub(f Fetcher, dir string) Fetcher {
	return sub{f: f, prefix: strings.TrimSuffix(dir, "/") + "/"}
}

type sub struct {
	f      Fetcher
	prefix string
}

func (s sub) Fetch(ctx context.Context, p string, maxBytes int64) ([]byte, error) {
	if err := CheckPath(p); err != nil {
		return nil, err
	}
	return s.f.Fetch(ctx, s.prefix+p, maxBytes)
}
