package manifest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/internal/atomicfile"
)

// StateStore keeps what a device remembers about trust between runs: the
// TUF metadata it verified last (root.json, timestamp.json,
// snapshot.json, targets.json) and the transparency log checkpoint
// ([LogStateFile]). Names are plain file names, never paths.
//
// A [Client] and a [LogWitness] read and write their state only through
// it, so a device can keep it wherever it keeps the rest of its state
// (the updater routes it through its filesystem interface, whose
// simulator cuts the power at every write). Implementations must be safe
// for concurrent use.
type StateStore interface {
	// ReadFile returns the named file, at most max bytes (a longer file is
	// an error wrapping ErrTooLarge). A file never written returns an
	// error wrapping fs.ErrNotExist; any other error is a failure to read
	// what was remembered, which callers never take for "nothing".
	ReadFile(name string, max int64) ([]byte, error)
	// WriteFile replaces the named file with data, atomically and
	// durably: after a crash ReadFile returns the old content or the new,
	// never a mix, and once WriteFile has returned, the new.
	WriteFile(name string, data []byte) error
}

// DirState is a StateStore in a directory, created with mode 0700 at the
// first write. Files are replaced with atomicfile (temporary file, fsync,
// rename, fsync of the directory) and read without blocking (a named pipe
// planted in the directory is an error, not a hang).
type DirState string

var _ StateStore = DirState("")

// StateIn returns DirState(dir), or nil (nothing remembered) for an empty
// dir: the convenience for optional state directories.
func StateIn(dir string) StateStore {
	if dir == "" {
		return nil
	}
	return DirState(dir)
}

// Path returns the file that holds name.
func (d DirState) Path(name string) string { return filepath.Join(string(d), name) }

// ReadFile implements StateStore.
func (d DirState) ReadFile(name string, max int64) ([]byte, error) {
	if err := checkStateName(name); err != nil {
		return nil, err
	}
	return fetch.ReadFile(d.Path(name), max)
}

// WriteFile implements StateStore.
func (d DirState) WriteFile(name string, data []byte) error {
	if err := checkStateName(name); err != nil {
		return err
	}
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("trust state: %w", err)
	}
	return atomicfile.WriteFile(d.Path(name), data, 0o644)
}

func checkStateName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("trust state: %q is not a file name", name)
	}
	return nil
}

// MemState is a StateStore in memory, for tests and for a witness or
// client that remembers only for its own lifetime. The zero value is
// empty and ready.
type MemState struct {
	mu    sync.Mutex
	files map[string][]byte
}

var _ StateStore = (*MemState)(nil)

// ReadFile implements StateStore.
func (m *MemState) ReadFile(name string, max int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("trust state %s: %w: %d bytes, at most %d", name, ErrTooLarge, len(b), max)
	}
	return append([]byte(nil), b...), nil
}

// WriteFile implements StateStore.
func (m *MemState) WriteFile(name string, data []byte) error {
	if err := checkStateName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.files == nil {
		m.files = map[string][]byte{}
	}
	m.files[name] = append([]byte(nil), data...)
	return nil
}

// stateName names a state file in errors: its path for a DirState.
func stateName(s StateStore, name string) string {
	if p, ok := s.(interface{ Path(string) string }); ok {
		return p.Path(name)
	}
	return "trust state " + name
}
