// Package atomicfile writes files so that a reader (or a machine that loses
// power) sees either the old content or the new, never a mix: data goes to a
// temporary file in the same directory, is fsynced, renamed over the target,
// and the directory is fsynced.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// WriteFile atomically replaces path with data.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := renameio.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(path)
}

// syncDir makes the rename of path durable: renameio fsyncs the file but
// not the directory holding the new name.
func syncDir(path string) error {
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory of %s: %w", path, err)
	}
	return nil
}

// Write atomically replaces path with what fill writes. When fill fails,
// the temporary file is removed and path is left as it was.
func Write(path string, perm os.FileMode, fill func(w io.Writer) error) error {
	return WriteAt(path, perm, func(f File) error { return fill(f) })
}

// File is the temporary file Write and WriteAt hand out: written in order
// or at offsets, and read back before it replaces the target.
type File interface {
	io.Writer
	io.WriterAt
	io.ReaderAt
}

// WriteAt is Write for content produced out of order (a header filled in
// last): fill writes into the temporary file at any offsets.
func WriteAt(path string, perm os.FileMode, fill func(f File) error) error {
	t, err := renameio.NewPendingFile(path, renameio.WithPermissions(perm))
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	defer t.Cleanup()
	if err := fill(t); err != nil {
		return err
	}
	if err := t.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return syncDir(path)
}
