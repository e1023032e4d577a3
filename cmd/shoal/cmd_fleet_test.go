package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoalnet/shoal/fleet"
	"github.com/shoalnet/shoal/fleet/harness"
	"github.com/shoalnet/shoal/internal/testtool"
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
	if r.NewBytes != 8<<20 || len(r.UplinkBytes) != 2 || r.Backend != "loopback" || r.Counters != "node" || r.Mode != "swarm" {
		t.Fatalf("result: %+v", r)
	}
	for _, site := range r.Final {
		for _, d := range site {
			if d.Slot != "B" || d.Version != 1 || !d.Committed {
				t.Errorf("%s ended on slot %s v%d (committed %v)", d.Name, d.Slot, d.Version, d.Committed)
			}
		}
	}
	for i, b := range r.UplinkBytes {
		if float64(b) > 1.2*float64(r.NewBytes) {
			t.Errorf("site %d took %d bytes from outside for %d new bytes (> 1.2×)", i+1, b, r.NewBytes)
		}
	}
	checkNothingLeft(t, "")
}

// TestFleetLoopbackDeltas: v2 published with deltas against v1 reaches
// every device as deltas, and each site takes from outside what one device
// needs (issue 11: at most 1.10 × delta_bytes, here by the nodes' count).
func TestFleetLoopbackDeltas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts daemons")
	}
	r := fleetResult(t, "--loopback", "--sites", "2", "--devices", "3", "--size", "8M", "--changed", "0.1", "--deltas", "--timeout", "3m")
	if r.Devices != 6 || r.Committed != 6 {
		t.Fatalf("%d of %d devices committed", r.Committed, r.Devices)
	}
	if !r.Deltas || r.DeltaObjects == 0 || r.DeltaBytes <= 0 || r.DeltaBytes >= r.NewBytes || len(r.UplinkDeltaRatio) != 2 {
		t.Fatalf("result: %+v", r)
	}
	for i, b := range r.UplinkBytes {
		if float64(b) > 1.10*float64(r.DeltaBytes) {
			t.Errorf("site %d took %d bytes from outside for %d delta bytes (> 1.10×)", i+1, b, r.DeltaBytes)
		}
	}
	// What the devices verified came as deltas: a site's origin bytes
	// are its delta bytes, not its new bytes.
	for i, by := range r.SiteBytesBySource {
		if by["origin"] >= r.NewBytes {
			t.Errorf("site %d took %d bytes from the origin, the whole new chunks' %d", i+1, by["origin"], r.NewBytes)
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
		{"--loopback", "--cut-uplink", "2s:5s"},
		{"--loopback", "--power-off", "2s"},
		{"--loopback", "--kill", "2"},
		{"--loopback", "--baseline", "ftp"},
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
		testtool.Need(t, tool)
	}
}

// TestFleetCutUplink: site 1's uplink drops everything for 5 s from 2 s
// after the announcement (issue 9 item 3). While it is down the site's
// devices trade what the LAN holds — each ends the cut holding at least
// what the best of them held when it began — and when it returns they
// fetch the rest; every device commits.
func TestFleetCutUplink(t *testing.T) {
	requireFleetRoot(t)
	r := fleetResult(t, "--sites", "2", "--devices", "2", "--size", "12M", "--uplink", "20mbit", "--cut-uplink", "2s:5s", "--timeout", "4m")
	if r.Devices != 4 || r.Committed != 4 {
		t.Fatalf("%d of %d devices committed", r.Committed, r.Devices)
	}
	c := r.Cut
	if c == nil || c.Site != 1 || c.DownAt < 2 || c.UpAt < 7 || len(c.HeldAtCut) != 2 || len(c.HeldAtRestore) != 2 {
		t.Fatalf("cut report: %+v", c)
	}
	best := slices.Max(c.HeldAtCut)
	if best <= 0 || best >= c.Positions {
		t.Fatalf("the cut did not fall mid-transfer: held %v of %d positions", c.HeldAtCut, c.Positions)
	}
	for i, h := range c.HeldAtRestore {
		if h < best {
			t.Errorf("s1-d%d held %d positions when the uplink came back; its LAN held %d when it went down", i+1, h, best)
		}
	}
	// Only what sat in the uplink's queue (100 ms of 20 Mbit/s) crosses it.
	if c.UplinkBytesDuring > 1<<20 {
		t.Errorf("%d bytes crossed the cut uplink", c.UplinkBytesDuring)
	}
	checkNothingLeft(t, r.Run)
}

// TestFleetKill: half of site 1's devices (one of two) are killed with
// SIGKILL once they have a third of the release, and restarted 2 s later
// (issue 9 item 3). Everyone commits, and the restarted node fetches at
// most the chunks its slot did not hold verified when it died
// (docs/fleet.md, "Faults": the harness hashes the slot after the kill).
func TestFleetKill(t *testing.T) {
	requireFleetRoot(t)
	r := fleetResult(t, "--sites", "2", "--devices", "2", "--size", "12M", "--uplink", "20mbit", "--kill", "0.5", "--timeout", "4m")
	if r.Devices != 4 || r.Committed != 4 {
		t.Fatalf("%d of %d devices committed", r.Committed, r.Devices)
	}
	k := r.Kill
	if k == nil || len(k.Devices) != 1 || k.Devices[0].Name != "s1-d2" {
		t.Fatalf("kill report: %+v", k)
	}
	d := k.Devices[0]
	if d.Restarted < d.KilledAt || d.PlacedAtKill <= 0 || d.PlacedAtKill >= d.Positions {
		t.Fatalf("the kill did not fall mid-transfer: %+v", d)
	}
	if after := fleet.Sum(d.ChunksAfter); !k.NoRefetch || after > d.MostAfter {
		t.Errorf("the restarted node fetched %d chunks; its slot held %d of %d positions: at most %d", after, d.PlacedAtKill, d.Positions, d.MostAfter)
	}
	checkNothingLeft(t, r.Run)
}

// TestFleetPowerOff: the last device of site 2 is powered off 1 s after
// the announcement and on again once every other device has flipped and
// rebooted into the release (issue 9 item 3). It commits, and everything
// it fetches after the power-on comes from its LAN: its site's uplink
// carries nothing more for it than control traffic.
func TestFleetPowerOff(t *testing.T) {
	requireFleetRoot(t)
	r := fleetResult(t, "--sites", "2", "--devices", "2", "--size", "12M", "--uplink", "20mbit", "--power-off", "1s:done", "--timeout", "4m")
	if r.Devices != 4 || r.Committed != 4 {
		t.Fatalf("%d of %d devices committed", r.Committed, r.Devices)
	}
	p := r.PowerOff
	if p == nil || p.Device != "s2-d2" || p.OffAt < 1 || p.OnAt < p.OthersDoneAt || p.FlippedAt < p.OnAt || p.PlacedAtOff >= p.Positions {
		t.Fatalf("power-off report: %+v", p)
	}
	if p.BytesAfterOn["lan"] <= 0 || p.BytesAfterOn["wan"] != 0 || p.BytesAfterOn["origin"] != 0 {
		t.Errorf("after the power-on it fetched %v (want LAN only)", p.BytesAfterOn)
	}
	if p.SiteUplinkBytesAfterOn > r.NewBytes/20 {
		t.Errorf("site 2's uplink carried %d bytes while it caught up (new bytes %d)", p.SiteUplinkBytesAfterOn, r.NewBytes)
	}
	checkNothingLeft(t, r.Run)
}

// TestFleetBaselineHTTP: the plain-HTTP baseline on the same harness
// (issue 9's targets): no nodes, every device fetches the whole release
// from the origin, so each site's uplink carries it once per device.
func TestFleetBaselineHTTP(t *testing.T) {
	requireFleetRoot(t)
	r := fleetResult(t, "--sites", "2", "--devices", "2", "--size", "8M", "--uplink", "20mbit", "--baseline", "http", "--timeout", "4m")
	if r.Devices != 4 || r.Committed != 4 || r.Mode != "http" {
		t.Fatalf("%d of %d devices committed (mode %q)", r.Committed, r.Devices, r.Mode)
	}
	for i, b := range r.UplinkBytes {
		if float64(b) < 2*float64(r.NewBytes) {
			t.Errorf("site %d's uplink carried %d bytes for 2 devices × %d new bytes", i+1, b, r.NewBytes)
		}
	}
	if r.BytesBySource["origin"] != 4*r.NewBytes || r.BytesBySource["lan"] != 0 {
		t.Errorf("bytes by source %v, want %d from the origin", r.BytesBySource, 4*r.NewBytes)
	}
	checkNothingLeft(t, r.Run)
}
