// Package inputfile opens the files a command reads its input from, and
// refuses, before reading a byte, the kinds that would wait forever or never
// end: named pipes (opening one with no writer blocks), sockets, character
// devices such as /dev/zero, directories.
package inputfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrNotRegular is wrapped when a path names a kind of file the caller does
// not accept.
var ErrNotRegular = errors.New("not a regular file")

// Open opens path for reading if it is a regular file.
func Open(path string) (*os.File, error) {
	f, _, err := open(path, false)
	return f, err
}

// OpenImage opens path for reading if it is a regular file or a block
// device (a disk or partition holding an image), and returns its size.
func OpenImage(path string) (*os.File, int64, error) {
	return open(path, true)
}

func open(path string, blockOK bool) (*os.File, int64, error) {
	// O_NONBLOCK: opening a named pipe must not wait for a writer; the
	// check below then refuses it. Regular files and block devices ignore
	// the flag, and it is cleared before returning anyway.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err // *PathError names the path and the OS error
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	m := st.Mode()
	size := st.Size()
	switch {
	case m.IsRegular():
	case blockOK && IsBlockDevice(m):
		// A block device's size is where it ends, not what stat says.
		if size, err = f.Seek(0, io.SeekEnd); err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("%s: size of block device: %w", path, err)
		}
	default:
		f.Close()
		want := "a regular file"
		if blockOK {
			want = "a regular file or a block device"
		}
		return nil, 0, fmt.Errorf("%s: %w: it is %s, want %s", path, ErrNotRegular, Kind(m), want)
	}
	if err := clearNonblock(f); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %w", path, err)
	}
	return f, size, nil
}

func clearNonblock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	return serr
}

// IsBlockDevice reports whether m is a block device's mode.
func IsBlockDevice(m fs.FileMode) bool {
	return m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0
}

// Kind names the kind of file m describes, with an article, for errors.
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "a special file"
}

// Same reports whether two stats name the same file: the same device and
// inode, or, for block devices, the same device number (two device nodes,
// or a /dev/disk/by-* link, of one partition). Stats without system data
// (a simulated filesystem) are the same only when their paths are.
func Same(a, b fs.FileInfo, pathA, pathB string) bool {
	sa, oka := a.Sys().(*syscall.Stat_t)
	sb, okb := b.Sys().(*syscall.Stat_t)
	if !oka || !okb {
		return filepath.Clean(pathA) == filepath.Clean(pathB)
	}
	if IsBlockDevice(a.Mode()) && IsBlockDevice(b.Mode()) && sa.Rdev == sb.Rdev {
		return true
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}
