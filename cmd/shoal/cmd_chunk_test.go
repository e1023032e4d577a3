package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chunk reads regular files and block devices only. A FIFO without a
// writer is refused at once instead of blocking in open (where SIGINT and
// SIGTERM could not stop it), and /dev/zero, which never ends, is refused
// too. The real binary is run, as a user would.
func TestChunkRefusesSpecialInputs(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{fifo: "a named pipe", "/dev/zero": "a character device", dir: "a directory"} {
		out := filepath.Join(dir, "out.idx")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "chunk", path, "-o", out)
		cmd.Env = append(os.Environ(), "SHOAL_TEST_RUN_MAIN=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("chunk %s: still running after 20s", path)
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
			t.Errorf("chunk %s: %v, want exit %d", path, err, exitFailure)
		}
		if s := stderr.String(); !strings.Contains(s, path) || !strings.Contains(s, kind) || !strings.Contains(s, "want a regular file or a block device") {
			t.Errorf("chunk %s: %q", path, s)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("chunk %s left %s behind", path, out)
		}
	}
}

// A block device is a legitimate input (an A/B slot).
func TestChunkBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a block device node needs root")
	}
	dir := t.TempDir()
	dev := filepath.Join(dir, "loop")
	if err := syscall.Mknod(dev, syscall.S_IFBLK|0o600, 7<<8|7); err != nil {
		t.Skipf("mknod: %v", err)
	}
	if f, err := os.Open(dev); err != nil {
		t.Skipf("no loop driver: %v", err)
	} else {
		f.Close()
	}
	// An unattached loop device holds no bytes: an empty index.
	out, errs, code := runCLI(t, "chunk", dev, "-o", filepath.Join(dir, "dev.idx"), "--json")
	if code != 0 || !strings.Contains(out, `"bytes": 0`) {
		t.Fatalf("chunk block device: exit %d %s %s", code, out, errs)
	}
}

// chunk X -o X would replace the image with its index. The output is
// compared with the input by what it resolves to, not by spelling.
func TestChunkRefusesOutputIsInput(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	img := filepath.Join(dir, "a.img")
	data := writeImage(t, img, 1<<20, 0)
	if err := os.Symlink(img, filepath.Join(dir, "link.img")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(img, filepath.Join(dir, "hard.img")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	for _, c := range [][2]string{
		{img, img},
		{"a.img", "./a.img"},
		{img, "sub/../a.img"},
		{"./a.img", filepath.Join(dir, "link.img")}, // a symlink to the input
		{"link.img", "a.img"},                       // the input through a symlink
		{"a.img", "hard.img"},                       // a hard link to it
	} {
		_, errs, code := runCLI(t, "chunk", c[0], "-o", c[1])
		if code != exitUsage || !strings.Contains(errs, "is the input") {
			t.Errorf("chunk %s -o %s: exit %d %q", c[0], c[1], code, errs)
		}
		if now, err := os.ReadFile(img); err != nil || !bytes.Equal(now, data) {
			t.Fatalf("chunk %s -o %s changed the image", c[0], c[1])
		}
		if st, err := os.Lstat(filepath.Join(dir, "link.img")); err != nil || st.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("chunk %s -o %s replaced the symlink", c[0], c[1])
		}
	}
	// A copy is another file: writing over it is fine.
	if err := os.WriteFile(filepath.Join(dir, "copy.img"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := runCLI(t, "chunk", "a.img", "-o", "copy.img"); code != 0 {
		t.Fatalf("chunk over a copy: exit %d %s", code, errs)
	}
}
