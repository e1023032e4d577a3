package inputfile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRegularFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, open := range []func(string) (*os.File, int64, error){
		func(p string) (*os.File, int64, error) { f, err := Open(p); return f, 5, err },
		OpenImage,
	} {
		f, size, err := open(p)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 10)
		n, _ := f.Read(b)
		f.Close()
		if size != 5 || string(b[:n]) != "hello" {
			t.Fatalf("size %d, read %q", size, b[:n])
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// A named pipe with no writer is refused at once, not waited on, and so
// are the other kinds that never end or cannot be read as a file.
func TestRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cases := map[string]string{
		fifo:        "a named pipe (FIFO)",
		"/dev/zero": "a character device",
		dir:         "a directory",
	}
	for p, kind := range cases {
		for name, open := range map[string]func(string) error{
			"Open":      func(p string) error { _, err := Open(p); return err },
			"OpenImage": func(p string) error { _, _, err := OpenImage(p); return err },
		} {
			done := make(chan error, 1)
			go func() { done <- open(p) }()
			select {
			case err := <-done:
				if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), kind) {
					t.Errorf("%s(%s): %v, want ErrNotRegular naming the path and %q", name, p, err, kind)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s(%s) still blocked after 5s", name, p)
			}
		}
	}
	// A socket cannot be opened at all; the OS error says so.
	if _, err := Open(sock); err == nil {
		t.Error("socket opened")
	}
}

// A block device is an image (a slot); its size is where it ends.
func TestBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a block device node needs root")
	}
	dev := filepath.Join(t.TempDir(), "loop")
	// An unattached loop device: opens, holds zero bytes.
	if err := syscall.Mknod(dev, syscall.S_IFBLK|0o600, 7<<8|7); err != nil {
		t.Skipf("mknod: %v", err)
	}
	f, size, err := OpenImage(dev)
	if err != nil {
		t.Skipf("open loop device: %v", err) // no loop driver here
	}
	f.Close()
	if size != 0 {
		t.Fatalf("unattached loop device: size %d", size)
	}
	if _, err := Open(dev); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "a block device") {
		t.Fatalf("Open(block device): %v", err)
	}
}
