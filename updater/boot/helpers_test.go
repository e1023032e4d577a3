package boot_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/boot/boottest"
	"github.com/shoalnet/shoal/updater/fsys"
)

var ctx = context.Background()

// run runs a command and returns its stdout, failing the test on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// lines splits command output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// noTempFiles checks that an atomic replace left nothing behind in dir.
func noTempFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("files in %s: %v, want %v", dir, got, want)
	}
}

// repoFile is a path relative to the repository root.
func repoFile(rel string) string { return filepath.Join("..", "..", rel) }

// openOS provisions dev in dir on the real filesystem, if it is not
// already, and opens it.
func openOS(t *testing.T, dev boottest.Device, dir string) (boot.Adapter, boot.Simulator) {
	t.Helper()
	if err := dev.Init(fsys.OS{}, dir); err != nil {
		t.Fatalf("Init: %v", err)
	}
	a, s, err := dev.Open(fsys.OS{}, dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return a, s
}

// sweep runs the crash sweep for dev and logs how many crash points it
// covered (go test -v -run CrashSweep shows them).
func sweep(t *testing.T, dev boottest.Device, o boottest.SweepOptions) {
	t.Helper()
	res := boottest.CrashSweep(t, dev, o)
	t.Logf("%d crash points, %d crashed runs checked", res.Points, res.Runs)
}
