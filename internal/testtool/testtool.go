// Package testtool is for tests that run an external program (a Debian
// tool such as grub-editenv or casync). Without the program such a test
// skips, naming the package to install; with SHOAL_REQUIRE_TOOLS=1 in the
// environment (.ci/run sets it after installing every package) it fails
// instead, so CI cannot silently skip what it meant to test.
package testtool

import (
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// RequireEnv names the environment variable that turns a missing tool
// from a skip into a failure.
const RequireEnv = "SHOAL_REQUIRE_TOOLS"

// packages maps every tool the tests run to the Debian package that
// provides it; .ci/run installs all of them.
var packages = map[string]string{
	"grub-editenv":      "grub-common",
	"grub-script-check": "grub-common",
	"fw_printenv":       "libubootenv-tool",
	"fw_setenv":         "libubootenv-tool",
	"casync":            "casync",
	"zstd":              "zstd",
	"mkfs.ext4":         "e2fsprogs",
	"ip":                "iproute2",
	"tc":                "iproute2",
	"sysctl":            "procps",
}

// Package returns the Debian package providing tool, or "" if the tool is
// not one the tests know.
func Package(tool string) string { return packages[tool] }

// Packages returns every Debian package the tests' tools come from,
// sorted, each once.
func Packages() []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range packages {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// Need returns the path of tool. When tool is not in PATH it skips t with
// a message naming the package to install, or fails t when RequireEnv is
// set to 1. A tool missing from the table above fails t: add it there.
func Need(t testing.TB, tool string) string {
	t.Helper()
	pkg, known := packages[tool]
	if !known {
		t.Fatalf("testtool: no Debian package known for %q; add it to internal/testtool", tool)
		return ""
	}
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	if Required() {
		t.Fatalf("%s not found in PATH, and %s=1 says every test tool is installed: apt-get install %s (.ci/run installs it)", tool, RequireEnv, pkg)
		return ""
	}
	t.Skipf("%s not found in PATH: apt-get install %s (or run .ci/run) to run this test", tool, pkg)
	return ""
}

// Required reports whether RequireEnv asks for every tool to be present.
func Required() bool { return strings.TrimSpace(os.Getenv(RequireEnv)) == "1" }
