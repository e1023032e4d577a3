package fetch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"syscall"

	"github.com/shoalnet/shoal/internal/inputfile"
)

// Dir reads a repository from a local directory (a mounted USB stick, a
// local mirror). Paths are checked with CheckPath, symlinks that leave the
// directory are refused (os.Root), and files are opened without blocking:
// anything but a regular file fails with ErrNotRegular.
type Dir string

var _ Fetcher = Dir("")

// Fetch implements Fetcher.
func (d Dir) Fetch(ctx context.Context, p string, maxBytes int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := CheckPath(p); err != nil {
		return nil, err
	}
	name := path.Join(string(d), p)
	r, err := os.OpenRoot(string(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// No directory, so no file in it either (a repository
			// without a log has no log/ directory).
			return nil, fmt.Errorf("%s: %w (no directory %s)", name, ErrNotFound, d)
		}
		return nil, fmt.Errorf("repository %s: %w", d, err)
	}
	defer r.Close()
	// O_NONBLOCK: opening a named pipe must not wait for a writer; the
	// check below then refuses it. Regular files ignore the flag.
	f, err := r.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("fetch %s: %w", name, err)
	}
	defer f.Close()
	size, err := checkRegular(f, name)
	if err != nil {
		return nil, err
	}
	if size > maxBytes {
		return nil, fmt.Errorf("%s: %w: %d bytes, at most %d", name, ErrTooLarge, size, maxBytes)
	}
	return ReadAll(f, name, maxBytes)
}

// checkRegular returns the size of f, or an error wrapping ErrNotRegular
// when f is not a regular file.
func checkRegular(f *os.File, name string) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%s: %w (%s)", name, ErrNotRegular, inputfile.Kind(st.Mode()))
	}
	return st.Size(), nil
}

// OpenFile opens the local file name for reading without ever blocking:
// a named pipe, device, socket or directory is refused with an error
// wrapping ErrNotRegular. A missing file wraps fs.ErrNotExist. It follows
// symlinks (the caller named the file); use it for files given on a
// command line or configured, such as bundles, keys and trust state.
func OpenFile(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if _, err := checkRegular(f, name); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadFile reads the local regular file name, at most max bytes (an error
// wrapping ErrTooLarge otherwise), opening it as OpenFile does.
func ReadFile(name string, max int64) ([]byte, error) {
	f, err := OpenFile(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Size() > max {
		return nil, fmt.Errorf("%s: %w: %d bytes, at most %d", name, ErrTooLarge, st.Size(), max)
	}
	return ReadAll(f, name, max)
}
