package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoalnet/shoal/fleet"
	"github.com/shoalnet/shoal/fleet/harness"
)

// fleetResult runs `shoal fleet run ... --json` in this process (its nodes
// are this test binary re-executed as shoal) and decodes the result.
func fleetResult(t *testing.T, args ...string) fleet.Result {
	t.Helper()
	t.Setenv("SHOAL_TEST_RUN_MAIN", "1") // the children run main()
	t.Setenv("TMPDIR", t.TempDir())      // the work directory, checked below
	out, errs, code := runCLI(t, append([]string{"fleet", "run", "--json"}, args...)...)
	var r fleet.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("fleet run %v: exit %d, %v\nstdout: %s\nstderr: %s", args, code, err, out, errs)
	}
	if code != 0 {
		t.Fatalf("fleet run %v: exit %d: %s\n%s", args, code, errs, out)
	}
	t.Logf("fleet run %v:\n%s", args, out)
	return r
}

// checkNothingLeft checks that a run left no namespace, no process and
// no work directory behind.
func checkNothingLeft(t *testing.T, prefix string) {
	t.Helper()
	if prefix != "" {
		ns, err := harness.Namespaces(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) > 0 {
			t.Errorf("namespaces left: %v", ns)
		}
	}
	tmp := os.Getenv("TMPDIR")
	if left, _ := filepath.Glob(filepath.Join(tmp, "shoal-fleet-*")); len(left) > 0 {
		t.Errorf("work directories left: %v", left)
	}
	// No process of ours still runs: none has the work directory (under
	// this test's TMPDIR) in its command line.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), tmp) {
			t.Errorf("a process is left: %s: %s", p, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}

// TestFleetLoopback: 2 sites × 3 devices on 127.0.0.0/8, no root needed;
// every device commits, each site's devices take the release from outside
// their site about once, and nothing is left.
func TestFleetLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("starts daemons")
	}
	r := fleetResult(t, "--loopback", "--sites", "2", "--devices", "3", "--size", "8M", "--timeout", "3m")
	if r.Devices != 6 || r.Committed != 6 {
		t.Fatalf("%d of %d devices committed", r.Committed, r.Devices)
	}
	if r.NewBytes != 8<<20 || len(r.UplinkBytes) != 2 || r.Backend != "loopback" || r.Counters != "node" {
		t.Fatalf("result: %+v", r)
	}
	for i, b := range r.UplinkBytes {
		if float64(b) > 1.2*float64(r.NewBytes) {
			t.Errorf("site %d took %d bytes from outside for %d new bytes (> 1.2×)", i+1, b, r.NewBytes)
		}
	}
	checkNothingLeft(t, "")
}

// TestFleetNamespaces: issue 9's invariant on small data, as root: a 2
// sites × 3 devices fleet in network namespaces behind 20 Mbit/s uplinks;
// every device commits and each site's uplink carries at most 1.2 × the
// release's new bytes, headers included. Nothing is left afterwards.
func TestFleetNamespaces(t *testing.T) {
	requireFleetRoot(t)
	r := fleetResult(t, "--sites", "2", "--devices", "3", "--size", "12M", "--uplink", "20mbit", "--timeout", "4m")
	if r.Devices != 6 || r.Committed != 6 {
		t.Fatalf("%d of %d devices committed", r.Committed, r.Devices)
	}
	if r.Backend != "netns" || r.Counters != "interface" || len(r.UplinkBytes) != 2 || r.LowerBoundSeconds <= 0 {
		t.Fatalf("result: %+v", r)
	}
	for i, b := range r.UplinkBytes {
		if float64(b) > 1.2*float64(r.NewBytes) {
			t.Errorf("site %d's uplink carried %d bytes for %d new bytes: %.2f× (want ≤ 1.2×)", i+1, b, r.NewBytes, float64(b)/float64(r.NewBytes))
		}
	}
	checkNothingLeft(t, r.Run)
}

// TestFleetInterrupted: a run cancelled once its nodes run (Ctrl-C)
// removes its namespaces, processes and work directory, and says it was
// interrupted.
func TestFleetInterrupted(t *testing.T) {
	requireFleetRoot(t)
	t.Setenv("SHOAL_TEST_RUN_MAIN", "1")
	t.Setenv("TMPDIR", t.TempDir())
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	topo, err := fleet.Plan(fleet.Config{Sites: 2, Devices: 2, Size: 4 << 20, Uplink: 1e6, Prefix: "shfint"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var during []string
	start := time.Now()
	_, err = harness.Run(ctx, topo, harness.Options{Shoal: []string{self}, Timeout: 3 * time.Minute, AfterStart: func() {
		during, _ = harness.Namespaces(context.Background(), "shfint")
		cancel()
	}})
	if err == nil || ctx.Err() == nil {
		t.Fatalf("an interrupted run: %v", err)
	}
	if len(during) != len(topo.Namespaces()) {
		t.Fatalf("namespaces while running: %v", during)
	}
	if d := time.Since(start); d > 2*time.Minute {
		t.Errorf("the interrupted run took %v", d)
	}
	checkNothingLeft(t, "shfint")
}

// TestFleetNeedsRoot: without root and without --loopback the command
// says so and exits 2.
func TestFleetNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as root")
	}
	_, errs, code := runCLI(t, "fleet", "run", "--sites", "1", "--devices", "1", "--size", "1M")
	if code != exitUsage || !strings.Contains(errs, "needs root") || !strings.Contains(errs, "--loopback") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

func TestFleetUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--loopback", "--uplink", "20mbit"},
		{"--loopback", "--sites", "0"},
		{"--loopback", "--uplink", "fast"},
		{"--loopback", "--size", "big"},
		{"--loopback", "--changed", "2"},
	} {
		if _, errs, code := runCLI(t, append([]string{"fleet", "run"}, args...)...); code != exitUsage {
			t.Errorf("%v: exit %d (%s), want %d", args, code, errs, exitUsage)
		}
	}
	out, _, code := runCLI(t, "fleet", "run", "--help")
	if code != 0 || !strings.Contains(out, "shoal fleet run --sites 2 --devices 4 --size 64M --uplink 20mbit") {
		t.Fatalf("--help: %d\n%s", code, out)
	}
}

// requireFleetRoot skips a namespace test unless it runs as root with
// ip(8) and tc(8).
func requireFleetRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts daemons in network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("fleet in network namespaces: needs root (TestFleetLoopback runs the same fleet on loopback)")
	}
	for _, tool := range []string{"ip", "tc", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found in PATH: apt-get install iproute2 procps", tool)
		}
	}
}
