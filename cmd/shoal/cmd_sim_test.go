package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// tinyScenario is a scenario that runs in well under a second: 2 sites of
// 3 devices, a 2 MiB fresh release.
const tinyScenario = `name = "tiny"
seeds = [1, 2]
limit = "1h"

[release]
size = "2MiB"
changed = 1.0
piece_size = "256KiB"

[topology]
sites = 2
devices_per_site = 3
device_up = "100Mbit"
device_down = "100Mbit"
lan = "1Gbit"
uplink_up = "20Mbit"
uplink_down = "20Mbit"
origin_egress = "1Gbit"
lan_latency = "0.1ms"
wan_latency = "10ms"
origin_latency = "10ms"
wan_peers = 2

[initial]
has_base = 0.0
`

var simRunOutputs = []string{"summary.json", "devices.csv", "sites.csv", "timeseries.csv",
	"completion_cdf.png", "completion_cdf.svg", "uplink_per_site.png", "uplink_per_site.svg", "origin_egress.png", "origin_egress.svg"}

func writeScenario(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSimRun: `shoal sim run --json` prints exactly summary.json, every
// device completes, and the outputs are all there.
func TestSimRun(t *testing.T) {
	dir := t.TempDir()
	sc := writeScenario(t, dir, "tiny.toml", tinyScenario)
	out := filepath.Join(dir, "out")
	stdout, stderr, code := runCLI(t, "sim", "run", sc, "-o", out, "--json", "--seed", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr without -v and no terminal: %q", stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if stdout != string(b) {
		t.Fatalf("--json is not summary.json:\n%s\n---\n%s", stdout, b)
	}
	var s struct {
		Devices, Sites, Completed int
		Seed                      int64
		Scenario                  string
		Completion                struct{ P50, P90, P99, Max float64 } `json:"completion_seconds"`
		LowerBound                float64                              `json:"lower_bound_seconds"`
		NewBytes                  []int64                              `json:"new_bytes_per_site"`
		UplinkBytes               []int64                              `json:"uplink_bytes_per_site"`
		UplinkRatio               float64                              `json:"uplink_ratio"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.Devices != 6 || s.Sites != 2 || s.Completed != 6 || s.Seed != 2 || s.Scenario != "tiny" {
		t.Fatalf("summary: %+v", s)
	}
	if s.LowerBound <= 0 || s.Completion.Max < s.LowerBound*0.999 || s.Completion.P50 > s.Completion.Max {
		t.Fatalf("completion %+v against the bound %g", s.Completion, s.LowerBound)
	}
	if len(s.NewBytes) != 2 || s.NewBytes[0] != 2<<20 || len(s.UplinkBytes) != 2 || s.UplinkRatio < 1 {
		t.Fatalf("bytes per site: new %v, uplink %v, ratio %g", s.NewBytes, s.UplinkBytes, s.UplinkRatio)
	}
	for _, f := range simRunOutputs {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	// The same seed gives the same simulated result.
	again := filepath.Join(dir, "again")
	if _, errs, code := runCLI(t, "sim", "run", sc, "-o", again, "--seed", "2"); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, f := range []string{"devices.csv", "sites.csv", "timeseries.csv"} {
		a, _ := os.ReadFile(filepath.Join(out, f))
		b, _ := os.ReadFile(filepath.Join(again, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs of the same seed", f)
		}
	}
}

// TestSimRunText: the plain output names the main numbers; -v prints
// progress lines on a stderr that is not a terminal.
func TestSimRunText(t *testing.T) {
	dir := t.TempDir()
	sc := writeScenario(t, dir, "tiny.toml", tinyScenario)
	stdout, stderr, code := runCLI(t, "sim", "run", sc, "-o", filepath.Join(dir, "out"), "-v")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"tiny (seed 1)", "6 completed", "lower bound", "uplink ratio", "outputs in"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "sim: 6 of 6 devices done") {
		t.Errorf("-v progress: %q", stderr)
	}
}

// TestSimSweep: every combination times every seed, a directory each,
// sweep.csv with one row per run, the plot.
func TestSimSweep(t *testing.T) {
	dir := t.TempDir()
	sc := writeScenario(t, dir, "sweep.toml", tinyScenario+`
[sweep]
"topology.uplink_down" = ["10Mbit", "40Mbit"]
"strategy.split" = [true, false]
`)
	out := filepath.Join(dir, "out")
	stdout, stderr, code := runCLI(t, "sim", "sweep", sc, "-o", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var js struct {
		Scenario string
		Runs     []struct {
			Run       int
			Seed      int64
			Completed int
			Params    map[string]string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &js); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if js.Scenario != "tiny" || len(js.Runs) != 8 {
		t.Fatalf("%+v", js)
	}
	if r := js.Runs[5]; r.Run != 5 || r.Seed != 2 || r.Params["topology.uplink_down"] != "40Mbit" || r.Params["strategy.split"] != "true" || r.Completed != 6 {
		t.Fatalf("run 5: %+v", r)
	}
	f, err := os.Open(filepath.Join(out, "sweep.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 9 || rows[0][2] != "topology.uplink_down" || rows[6][2] != "40Mbit" {
		t.Fatalf("sweep.csv: %v %v", rows, err)
	}
	for i := range 8 {
		if _, err := os.Stat(filepath.Join(out, "run-000"+string(rune('0'+i)), "summary.json")); err != nil {
			t.Error(err)
		}
	}
	for _, p := range []string{"sweep.png", "sweep.svg"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Error(err)
		}
	}
}

// TestSimUsage: scenario errors and a bad -o are usage errors (exit 2)
// that say what is wrong and where, and nothing runs.
func TestSimUsage(t *testing.T) {
	dir := t.TempDir()
	good := writeScenario(t, dir, "tiny.toml", tinyScenario)
	bad := writeScenario(t, dir, "bad.toml", strings.Replace(tinyScenario, `uplink_up = "20Mbit"`, "uplink_up = \"0Mbit\"\nuplnk = 3", 1))
	swept := writeScenario(t, dir, "swept.toml", tinyScenario+"[sweep]\n\"strategy.split\" = [true, false]\n")
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"sim", "run", bad, "-o", filepath.Join(dir, "o1")}, 2, []string{"bad.toml:16: topology.uplink_up:", "bad.toml:17: topology.uplnk: unknown key"}},
		{[]string{"sim", "sweep", bad, "-o", filepath.Join(dir, "o1")}, 2, []string{"bad.toml:16: topology.uplink_up:"}},
		{[]string{"sim", "run", good}, 2, []string{"missing -o"}},
		{[]string{"sim", "run", good, "-o", file}, 2, []string{"is a regular file"}},
		{[]string{"sim", "run", good, "-o", fifo}, 2, []string{"is a named pipe"}},
		{[]string{"sim", "sweep", good, "-o", fifo}, 2, []string{"is a named pipe"}},
		{[]string{"sim", "run", swept, "-o", filepath.Join(dir, "o2")}, 2, []string{"sim sweep"}},
		{[]string{"sim", "run", good, "extra", "-o", dir}, 2, []string{"accepts 1 arg"}},
		{[]string{"sim", "run", fifo, "-o", filepath.Join(dir, "o3")}, 1, []string{"not a regular file"}},
		{[]string{"sim", "run", filepath.Join(dir, "none.toml"), "-o", filepath.Join(dir, "o3")}, 1, []string{"no such file"}},
	} {
		_, stderr, code := runCLI(t, c.args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d: %s", c.args[1:], code, c.code, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%v: %q lacks %q", c.args[1:], stderr, w)
			}
		}
	}
	for _, d := range []string{"o1", "o2", "o3"} {
		if _, err := os.Stat(filepath.Join(dir, d)); err == nil {
			t.Errorf("%s was created by a refused command", d)
		}
	}
}

// TestSimHelp: both commands have examples that name the example
// scenarios.
func TestSimHelp(t *testing.T) {
	for _, sub := range []string{"run", "sweep"} {
		stdout, _, code := runCLI(t, "sim", sub, "--help")
		if code != 0 || !strings.Contains(stdout, "Examples:") || !strings.Contains(stdout, "shoal sim "+sub+" sim/scenarios/") {
			t.Errorf("sim %s --help:\n%s", sub, stdout)
		}
	}
}
