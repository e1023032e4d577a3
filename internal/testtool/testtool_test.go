package testtool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeT records Skipf and Fatalf instead of stopping the test.
type fakeT struct {
	testing.TB
	skipped, failed string
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Skipf(format string, args ...any)  { f.skipped = fmtS(format, args) }
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = fmtS(format, args) }

func fmtS(format string, args []any) string { return fmt.Sprintf(format, args...) }

// withPath puts only a directory holding the given fake tools on PATH.
func withPath(t *testing.T, tools ...string) string {
	dir := t.TempDir()
	for _, tool := range tools {
		if err := os.WriteFile(filepath.Join(dir, tool), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
	return dir
}

func TestNeedFindsTool(t *testing.T) {
	dir := withPath(t, "grub-editenv")
	for _, req := range []string{"", "1"} {
		t.Setenv(RequireEnv, req)
		f := &fakeT{TB: t}
		if p := Need(f, "grub-editenv"); p != filepath.Join(dir, "grub-editenv") || f.skipped != "" || f.failed != "" {
			t.Fatalf("require %q: path %q, skipped %q, failed %q", req, p, f.skipped, f.failed)
		}
	}
}

func TestNeedMissingSkipsNamingPackage(t *testing.T) {
	withPath(t)
	t.Setenv(RequireEnv, "")
	f := &fakeT{TB: t}
	if p := Need(f, "fw_printenv"); p != "" || f.failed != "" || !strings.Contains(f.skipped, "fw_printenv") || !strings.Contains(f.skipped, "apt-get install libubootenv-tool") {
		t.Fatalf("path %q, skipped %q, failed %q", p, f.skipped, f.failed)
	}
}

func TestNeedMissingFailsWhenRequired(t *testing.T) {
	withPath(t)
	t.Setenv(RequireEnv, "1")
	f := &fakeT{TB: t}
	if p := Need(f, "casync"); p != "" || f.skipped != "" || !strings.Contains(f.failed, "casync") || !strings.Contains(f.failed, "apt-get install casync") || !strings.Contains(f.failed, RequireEnv) {
		t.Fatalf("path %q, skipped %q, failed %q", p, f.skipped, f.failed)
	}
}

func TestNeedUnknownToolFails(t *testing.T) {
	withPath(t, "mystery")
	f := &fakeT{TB: t}
	if Need(f, "mystery"); !strings.Contains(f.failed, "no Debian package known") {
		t.Fatalf("unknown tool: failed %q", f.failed)
	}
}

// Every package named here is one .ci/run installs, so that a test that
// needs it runs in CI.
func TestCIInstallsEveryPackage(t *testing.T) {
	b, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Packages() {
		if !strings.Contains(string(b), "\n  "+p+" ") {
			t.Errorf(".ci/run does not install %s", p)
		}
	}
	if !strings.Contains(string(b), RequireEnv+"=1") {
		t.Errorf(".ci/run does not set %s=1", RequireEnv)
	}
}
