package scenario

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/internal/inputfile"
)

// base is a small valid scenario; tests edit it line by line.
const base = `name = "t"
seeds = [7, 8]
limit = "1h"

[release]
size = "16MiB"
changed = 0.5
chunk_size = "64KiB"
piece_size = "256KiB"

[topology]
sites = 3
devices_per_site = 4
device_up = "20Mbit"
device_down = "50Mbit"
lan = "1Gbit"
uplink_up = "10Mbit"
uplink_down = "12.5MB/s"
origin_egress = "1Gbit"
lan_latency = "0.5ms"
wan_latency = "20ms"
origin_latency = 0.03
wan_peers = 2

[[failure]]
kind = "uplink"
site = 1
at = "1m"
for = "2m"

[[failure]]
kind = "origin"
at = "10s"
for = "5s"

[strategy]
rarity = "random"
`

func parse(t *testing.T, src string) *Scenario {
	t.Helper()
	s, err := Parse("t.toml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func TestParse(t *testing.T) {
	s := parse(t, base)
	if s.Name != "t" || len(s.Seeds) != 2 || s.Seeds[1] != 8 || s.Limit != time.Hour || s.SampleEvery != time.Second {
		t.Fatalf("top level: %+v", s)
	}
	r := s.Release
	if r.Size != 16<<20 || r.Changed != 0.5 || r.ChunkSize != 64<<10 || r.PieceSize != 256<<10 {
		t.Fatalf("release: %+v", r)
	}
	tp := s.Topology
	if tp.Sites != 3 || tp.DevicesPerSite.String() != Fixed(4).String() || tp.DeviceUp.String() != Fixed(2.5e6).String() || tp.DeviceDown.String() != Fixed(50e6/8).String() ||
		tp.UplinkDown.String() != Fixed(12.5e6).String() || tp.OriginEgress != 125e6 || tp.WAN != 0 ||
		tp.LANLatency != 500*time.Microsecond || tp.OriginLatency != 30*time.Millisecond || tp.WANPeers != 2 {
		t.Fatalf("topology: %+v", tp)
	}
	if s.Initial.HasBase != 1 || !s.Initial.Stagger.IsZero() || !s.Churn.Awake.IsZero() {
		t.Fatalf("defaults: %+v %+v", s.Initial, s.Churn)
	}
	if len(s.Failures) != 2 || s.Failures[0] != (Failure{Kind: FailUplink, Site: 1, At: time.Minute, For: 2 * time.Minute}) ||
		s.Failures[1] != (Failure{Kind: FailOrigin, Site: -1, At: 10 * time.Second, For: 5 * time.Second}) {
		t.Fatalf("failures: %+v", s.Failures)
	}
	st := s.Strategy
	if !st.Split || st.Rarity != RarityRandom || !st.OriginFirst || !st.Endgame || st.Tick != DefaultTick || st.Window != 0 {
		t.Fatalf("strategy: %+v", st)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestUnits(t *testing.T) {
	for _, c := range []struct {
		in   any
		u    unit
		want float64
	}{
		{"20Mbit", unitRate, 2.5e6}, {"20mbit/s", unitRate, 2.5e6}, {"1Gbit", unitRate, 125e6}, {"12.5MB/s", unitRate, 12.5e6},
		{"64KiB/s", unitRate, 65536}, {"8bit", unitRate, 1}, {"1Mibit", unitRate, 1 << 17}, {int64(1000), unitRate, 1000},
		{"64KiB", unitBytes, 65536}, {"1GiB", unitBytes, 1 << 30}, {"12.5MB", unitBytes, 12.5e6}, {"64M", unitBytes, 64 << 20},
		{"1.5KiB", unitBytes, 1536}, {"100", unitBytes, 100}, {int64(4096), unitBytes, 4096},
		{"30s", unitSeconds, 30}, {"2h", unitSeconds, 7200}, {"0.1ms", unitSeconds, 1e-4}, {"1h30m", unitSeconds, 5400},
		{2.5, unitSeconds, 2.5}, {"45", unitSeconds, 45},
		{"25%", unitFraction, 0.25}, {0.3, unitFraction, 0.3}, {int64(1), unitFraction, 1},
	} {
		got, err := number(c.in, c.u)
		if err != nil || math.Abs(got-c.want) > 1e-9*math.Abs(c.want) {
			t.Errorf("number(%v, %v) = %v, %v; want %v", c.in, c.u, got, err, c.want)
		}
	}
	for _, c := range []struct {
		in   any
		u    unit
		want string
	}{
		{"20Mb", unitRate, "ambiguous"}, {"20Mbps", unitRate, "ambiguous"}, {"20mb/s", unitRate, "ambiguous"},
		{"12MB", unitRate, "per second"}, {"fast", unitRate, "no number"}, {"1e400Mbit", unitRate, "not a number"},
		{"64mb", unitBytes, "bad unit"}, {"1Gbit", unitBytes, "bad unit"}, {"soon", unitSeconds, "bad unit"},
		{"5 parsecs", unitSeconds, "bad unit"}, {true, unitRate, "boolean"}, {math.Inf(1), unitBytes, "+Inf"},
		{math.NaN(), unitFraction, "NaN"}, {"half", unitFraction, "not a fraction"}, {[]any{}, unitCount, "array"},
	} {
		_, err := number(c.in, c.u)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("number(%v, %v): %v; want an error saying %q", c.in, c.u, err, c.want)
		}
	}
}

// TestBadInput: each edit of the base file is rejected with the file, the
// line and the key it is about.
func TestBadInput(t *testing.T) {
	for _, c := range []struct {
		name, old, new string
		line           int
		key, msg       string
	}{
		{"unknown top key", `name = "t"`, `nmae = "t"`, 1, "nmae", "unknown key"},
		{"unknown table key", `sites = 3`, "sites = 3\nsitez = 4", 13, "topology.sitez", "unknown key"},
		{"unknown table", `[strategy]`, `[strategi]`, 36, "strategi", "unknown key"},
		{"zero capacity", `uplink_up = "10Mbit"`, `uplink_up = "0Mbit"`, 17, "topology.uplink_up", "must be above 0"},
		{"negative capacity", `device_up = "20Mbit"`, `device_up = "-20Mbit"`, 14, "topology.device_up", "must be above 0"},
		{"zero origin", `origin_egress = "1Gbit"`, `origin_egress = 0`, 19, "topology.origin_egress", "above 0"},
		{"zero size", `size = "16MiB"`, `size = 0`, 6, "release.size", "above 0"},
		{"fraction", `changed = 0.5`, `changed = 1.5`, 7, "release.changed", "[0, 1]"},
		{"no sites", `sites = 3`, `sites = 0`, 12, "topology.sites", "must be 1"},
		{"sites float", `sites = 3`, `sites = 3.5`, 12, "topology.sites", "want an integer"},
		{"wan peers 9", `wan_peers = 2`, `wan_peers = 9`, 23, "topology.wan_peers", "only 8"},
		{"piece below chunk", `piece_size = "256KiB"`, `piece_size = "16KiB"`, 9, "release.piece_size", "smaller than release.chunk_size"},
		{"failure past limit", `for = "2m"`, `for = "59m30s"`, 29, "failure.0.for", "past limit"},
		{"site out of range", `site = 1`, `site = 3`, 27, "failure.0.site", "does not exist"},
		{"origin with site", `kind = "origin"`, "kind = \"origin\"\nsite = 0", 33, "failure.1.site", "no site"},
		{"failure kind", `kind = "origin"`, `kind = "dns"`, 32, "failure.1.kind", "unknown failure kind"},
		{"failure key", `kind = "origin"`, "kind = \"origin\"\nwhen = 1", 33, "failure.1.when", "unknown key"},
		{"unknown dist", `lan = "1Gbit"`, `lan = {dist = "zipf", mean = "1Gbit"}`, 16, "topology.lan", "unknown dist"},
		{"dist key", `lan = "1Gbit"`, `lan = {dist = "uniform", min = "1Gbit", max = "2Gbit", mean = 3}`, 16, "topology.lan", "not \"mean\""},
		{"dist missing", `lan = "1Gbit"`, `lan = {dist = "uniform", min = "1Gbit"}`, 16, "topology.lan", "needs max"},
		{"weights", `lan = "1Gbit"`, `lan = {dist = "choice", choices = ["1Gbit", "2Gbit"], weights = [1]}`, 16, "topology.lan", "1 weights for 2 choices"},
		{"normal unclamped", `lan = "1Gbit"`, `lan = {dist = "normal", mean = "1Gbit", stddev = "100Mbit"}`, 16, "topology.lan", "set min"},
		{"uniform down to 0", `lan = "1Gbit"`, `lan = {dist = "uniform", min = 0, max = "1Gbit"}`, 16, "topology.lan", "can be 0bit"},
		{"min above max", `lan = "1Gbit"`, `lan = {dist = "uniform", min = "2Gbit", max = "1Gbit"}`, 16, "topology.lan", "above max"},
		{"no devices", `devices_per_site = 4`, `devices_per_site = 0`, 13, "topology.devices_per_site", "no device"},
		{"missing key", `device_down = "50Mbit"`, ``, 11, "topology.device_down", "missing"},
		{"bad type", `split_placeholder`, ``, 0, "", ""}, // replaced below
		{"rarity", `rarity = "random"`, `rarity = "rarer"`, 37, "strategy.rarity", "want \"rarest\" or \"random\""},
		{"tick", `rarity = "random"`, "tick = \"0s\"", 37, "strategy.tick", "above 0"},
		{"rate precision", `rarity = "random"`, "rate_precision = 0.5", 37, "strategy.rate_precision", "0 (exact) to 0.1"},
		{"seed twice", `seeds = [7, 8]`, `seeds = [7, 7]`, 2, "seeds", "listed twice"},
		{"no seeds", `seeds = [7, 8]`, `seeds = []`, 2, "seeds", "no seeds"},
		{"bad unit", `uplink_down = "12.5MB/s"`, `uplink_down = "100Mbps"`, 18, "topology.uplink_down", "ambiguous"},
		{"has_base", `[strategy]`, "[initial]\nhas_base = \"120%\"\n[strategy]", 37, "initial.has_base", "[0, 1]"},
		{"power cut", `[strategy]`, "[churn]\npower_cut = -0.1\n[strategy]", 37, "churn.power_cut", "[0, 1]"},
		{"awake zero", `[strategy]`, "[churn]\nawake = {dist = \"uniform\", min = 0, max = \"1m\"}\nasleep = \"1m\"\n[strategy]", 37, "churn.awake", "above 0"},
		{"index conflict", `chunk_size = "64KiB"`, `new_index = "x.idx"`, 6, "release.size", "conflicts"},
		{"table as value", `name = "t"`, "name = \"t\"\ninitial = 3", 2, "initial", "want a table"},
		{"sample_every", `limit = "1h"`, "limit = \"1h\"\nsample_every = \"1ns\"", 4, "sample_every", "samples"},
	} {
		if c.old == "split_placeholder" {
			c.old, c.new, c.line, c.key, c.msg = `rarity = "random"`, `split = "yes"`, 37, "strategy.split", "want true or false"
		}
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(base, c.old) {
				t.Fatalf("base has no %q", c.old)
			}
			src := strings.Replace(base, c.old, c.new, 1)
			_, err := Parse("t.toml", []byte(src))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse: %v, want ErrInvalid", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("no *Error in %v", err)
			}
			if e.File != "t.toml" || e.Line != c.line || e.Key != c.key || !strings.Contains(e.Msg, c.msg) {
				t.Errorf("got %q (line %d, key %q)\nwant line %d, key %q, message containing %q", err, e.Line, e.Key, c.line, c.key, c.msg)
			}
			if want := "t.toml:" + strconv.Itoa(c.line) + ": " + c.key + ": "; c.line > 0 && !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%q does not start with %q", err, want)
			}
		})
	}
}

func TestManyErrors(t *testing.T) {
	src := strings.NewReplacer(`nmae`, `x`, `sites = 3`, `sites = 0`, `size = "16MiB"`, `size = "16mb"`, `rarity = "random"`, `rarity = 3`).Replace(base)
	_, err := Parse("t.toml", []byte(src))
	for _, want := range []string{"t.toml:12: topology.sites", "t.toml:6: release.size: bad unit", "t.toml:37: strategy.rarity: want a string"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	// release.size did not decode: no second complaint that it is 0.
	if strings.Count(err.Error(), "release.size") != 1 {
		t.Errorf("release.size reported twice:\n%v", err)
	}
}

func TestTOMLSyntax(t *testing.T) {
	_, err := Parse("t.toml", []byte("name = \"t\"\n[topology\nsites = 3\n"))
	var e *Error
	if !errors.As(err, &e) || e.Line < 2 || e.Line > 3 || !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "t.toml:") {
		t.Fatalf("%v", err)
	}
}

func TestSweep(t *testing.T) {
	src := base + `
[sweep]
"topology.uplink_up" = ["5Mbit", "10Mbit", "20Mbit"]
strategy.split = [true, false]
`
	s := parse(t, src)
	if len(s.Sweep) != 2 || s.Sweep[0].Key != "topology.uplink_up" || s.Sweep[1].Key != "strategy.split" {
		t.Fatalf("axes: %+v", s.Sweep)
	}
	if s.Runs() != 12 {
		t.Fatalf("Runs() = %d", s.Runs())
	}
	runs, err := s.Expand()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 12 {
		t.Fatalf("%d runs", len(runs))
	}
	// The last axis fastest, then seeds.
	r := runs[3]
	if r.Index != 3 || r.Seed != 8 || r.Params[0] != (Param{"topology.uplink_up", "5Mbit"}) || r.Params[1] != (Param{"strategy.split", "false"}) {
		t.Fatalf("run 3: %+v", r)
	}
	if r.Scenario.Topology.UplinkUp.String() != Fixed(5e6/8).String() || r.Scenario.Strategy.Split || len(r.Scenario.Seeds) != 1 || r.Scenario.Seeds[0] != 8 || r.Scenario.Sweep != nil {
		t.Fatalf("run 3's scenario: %+v", r.Scenario)
	}
	last := runs[11]
	if last.Seed != 8 || last.Params[0].Value != "20Mbit" || last.Scenario.Topology.UplinkUp.String() != Fixed(2.5e6).String() || last.Scenario.Strategy.Split {
		t.Fatalf("last run: %+v", last)
	}
	// Deep copies: changing one run's scenario leaves the others alone.
	runs[0].Scenario.Failures[0].Site = 2
	runs[0].Scenario.Seeds[0] = 99
	if runs[1].Scenario.Failures[0].Site != 1 || s.Failures[0].Site != 1 || s.Seeds[0] != 7 {
		t.Fatal("runs share slices")
	}
	// Expanding twice gives the same runs.
	again, _ := s.Expand()
	if again[5].Scenario.Topology.UplinkUp.String() != runs[5].Scenario.Topology.UplinkUp.String() || again[5].Params[1] != runs[5].Params[1] {
		t.Fatal("Expand is not deterministic")
	}
	// A run without a sweep is its scenario with one seed.
	plain := parse(t, base)
	pr, err := plain.Expand()
	if err != nil || len(pr) != 2 || pr[1].Seed != 8 || len(pr[1].Params) != 0 {
		t.Fatalf("plain runs: %+v, %v", pr, err)
	}
}

func TestSweepErrors(t *testing.T) {
	for _, c := range []struct {
		name, sweep string
		expand      bool
		line        int
		key, msg    string
	}{
		{"unknown key", `"topology.uplnk_up" = ["5Mbit"]`, false, 40, "topology.uplnk_up", "unknown key"},
		{"bad value", `"topology.uplink_up" = ["5Mbit", "0Mbit"]`, false, 40, "topology.uplink_up", "must be above 0"},
		{"bad unit", `topology.lan = ["5Mbit", "fast"]`, false, 40, "topology.lan", "no number"},
		{"not a list", `topology.lan = "5Mbit"`, false, 40, "sweep.topology.lan", "list of values"},
		{"empty", `topology.lan = []`, false, 40, "sweep.topology.lan", "no values"},
		{"seeds", `seeds = [1, 2]`, false, 40, "sweep.seeds", "cannot be swept"},
		{"failure", `"failure.0.at" = ["1s"]`, false, 40, "sweep.failure.0.at", "cannot be swept"},
		{"scalar parent", `"name.x" = [1]`, false, 40, "sweep.name.x", "not a table"},
		{"combination", "\"release.chunk_size\" = [\"64KiB\", \"256KiB\"]\n\"release.piece_size\" = [\"128KiB\", \"1MiB\"]", true, 41, "release.piece_size", "smaller than release.chunk_size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := base + "\n[sweep]\n" + c.sweep + "\n"
			s, err := Parse("t.toml", []byte(src))
			if c.expand {
				if err != nil {
					t.Fatal(err)
				}
				_, err = s.Expand()
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v", err)
			}
			if e.Line != c.line || e.Key != c.key || !strings.Contains(e.Msg, c.msg) {
				t.Errorf("got %q (line %d, key %q); want line %d, key %q, %q", err, e.Line, e.Key, c.line, c.key, c.msg)
			}
			if !strings.HasPrefix(e.Key, "sweep.") && e.Sweep == "" {
				t.Errorf("%q does not say which sweep value", err)
			}
		})
	}
}

func TestDistSample(t *testing.T) {
	dists := map[string]Dist{
		"uniform":   {Kind: DistUniform, Min: 5, Max: 10},
		"normal":    {Kind: DistNormal, Mean: 1, Stddev: 5, Min: 0, HasMin: true},
		"lognormal": {Kind: DistLognormal, Mean: 20, Stddev: 10},
		"exp":       {Kind: DistExp, Mean: 3, Max: 4},
		"choice":    {Kind: DistChoice, Choices: []float64{1, 2, 3}, Weights: []float64{1, 0, 3}},
		"fixed":     Fixed(42),
	}
	for name, d := range dists {
		a, b := rand.New(rand.NewPCG(1, 2)), rand.New(rand.NewPCG(1, 2))
		var sum float64
		const n = 20000
		seen := map[float64]int{}
		for range n {
			x, y := d.Sample(a), d.Sample(b)
			if x != y {
				t.Fatalf("%s: not deterministic", name)
			}
			lo, hi := d.Range()
			if x < lo || x > hi || math.IsNaN(x) {
				t.Fatalf("%s: %g outside [%g, %g]", name, x, lo, hi)
			}
			sum += x
			seen[x]++
		}
		mean := sum / n
		switch name {
		case "uniform":
			if math.Abs(mean-7.5) > 0.1 {
				t.Errorf("uniform mean %g", mean)
			}
		case "lognormal":
			if math.Abs(mean-20) > 0.5 {
				t.Errorf("lognormal mean %g, want about 20", mean)
			}
		case "choice":
			if seen[2] != 0 || math.Abs(float64(seen[3])/n-0.75) > 0.02 {
				t.Errorf("choice counts %v", seen)
			}
		case "normal":
			if seen[0] < n/5 {
				t.Errorf("normal clamped at 0 only %d times", seen[0])
			}
		case "fixed":
			if len(seen) != 1 {
				t.Errorf("fixed drew %v", seen)
			}
		}
	}
	// A fixed Dist draws nothing from the stream.
	r := rand.New(rand.NewPCG(3, 4))
	Fixed(1).Sample(r)
	if r.Uint64() != rand.New(rand.NewPCG(3, 4)).Uint64() {
		t.Error("a fixed Dist consumed randomness")
	}
}

func TestDistParse(t *testing.T) {
	src := strings.Replace(base, `device_up = "20Mbit"`, `device_up = {dist = "normal", mean = "20Mbit", stddev = "5Mbit", min = "1Mbit"}`, 1)
	src = strings.Replace(src, `devices_per_site = 4`, `devices_per_site = {dist = "choice", choices = [2, 4, 8], weights = [1, 2, 1]}`, 1)
	s := parse(t, src)
	want := Dist{Kind: DistNormal, Mean: 2.5e6, Stddev: 625e3, Min: 125e3, HasMin: true}
	if d := s.Topology.DeviceUp; d.Kind != want.Kind || d.Mean != want.Mean || d.Stddev != want.Stddev || d.Min != want.Min || !d.HasMin {
		t.Fatalf("device_up %+v", d)
	}
	if d := s.Topology.DevicesPerSite; len(d.Choices) != 3 || d.Weights[1] != 2 || d.MeanValue() != 4.5 {
		t.Fatalf("devices_per_site %+v", d)
	}
}

func TestKeyLines(t *testing.T) {
	src := `a = 1 # c
"q.k" = 2
description = """
x = 3
[not a table]
"""
arr = [
  {dist = "uniform", min = 1, max = 2},
  "[x]",
]
[t1]
b.c = 3 # [t2]
[[f]]
k = 1
[[f]]
k = 2
[ t2 . 'u' ]
z = 'a=b'
`
	got := keyLines([]byte(src))
	for k, want := range map[string]int{"a": 1, "q.k": 2, "description": 3, "arr": 7, "t1": 11, "t1.b.c": 12, "t1.b": 12,
		"f": 13, "f.0.k": 14, "f.1": 15, "f.1.k": 16, "t2.u": 17, "t2.u.z": 18} {
		if got[k] != want {
			t.Errorf("line of %s = %d, want %d", k, got[k], want)
		}
	}
	for _, k := range []string{"x", "not a table", "dist", "t2"} {
		if _, ok := got[k]; ok {
			t.Errorf("found %q at line %d", k, got[k])
		}
	}
}

// TestExamples loads every scenario in sim/scenarios and expands it.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../scenarios/*.toml")
	if len(files) < 4 {
		t.Fatalf("example scenarios: %v", files)
	}
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		runs, err := s.Expand()
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != s.Runs() || len(runs) == 0 {
			t.Fatalf("%s: %d runs, Runs() = %d", f, len(runs), s.Runs())
		}
		for _, r := range runs {
			if err := r.Scenario.Validate(); err != nil {
				t.Fatalf("%s run %d: %v", f, r.Index, err)
			}
		}
		if s.Description == "" || s.Name != strings.TrimSuffix(filepath.Base(f), ".toml") {
			t.Errorf("%s: name %q, description %q", f, s.Name, s.Description)
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(fifo); !errors.Is(err, inputfile.ErrNotRegular) {
		t.Errorf("FIFO: %v", err)
	}
	if _, err := Load(dir); !errors.Is(err, inputfile.ErrNotRegular) {
		t.Errorf("directory: %v", err)
	}
	big := filepath.Join(dir, "big.toml")
	os.WriteFile(big, []byte(strings.Repeat("# padding\n", MaxFileSize/10+1)), 0o644)
	if _, err := Load(big); !errors.Is(err, ErrInvalid) {
		t.Errorf("big file: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "none.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestValidateInCode(t *testing.T) {
	s := parse(t, base)
	c := s.clone()
	c.lines = nil
	c.Topology.UplinkUp = Dist{Kind: "zipf"}
	c.Failures = append(c.Failures, Failure{Kind: FailUplink, Site: 5, At: 0, For: time.Second})
	err := c.Validate()
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "topology.uplink_up: unknown dist") || !strings.Contains(err.Error(), "failure.2.site") {
		t.Fatalf("%v", err)
	}
	code := &Scenario{Seeds: []int64{3}, Limit: time.Hour, SampleEvery: time.Second,
		Release:  Release{Size: 1 << 20, Changed: 1, ChunkSize: 64 << 10},
		Topology: Topology{Sites: 1, DevicesPerSite: Fixed(2), DeviceUp: Fixed(1e6), DeviceDown: Fixed(1e6), LAN: Fixed(1e8), UplinkUp: Fixed(1e6), UplinkDown: Fixed(1e6), OriginEgress: 1e7},
		Strategy: Strategy{Rarity: RarityRarest, Tick: time.Millisecond * 100}}
	runs, err := code.Expand()
	if err != nil || len(runs) != 1 || runs[0].Seed != 3 || runs[0].Scenario == code {
		t.Fatalf("%+v %v", runs, err)
	}
}

func TestIndexes(t *testing.T) {
	dir := t.TempDir()
	src := strings.Replace(base, "size = \"16MiB\"\nchanged = 0.5\nchunk_size = \"64KiB\"\n", "old_index = \"v1.idx\"\nnew_index = \"v2.idx\"\n", 1)
	p := filepath.Join(dir, "s.toml")
	os.WriteFile(p, []byte(src), 0o644)
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "s.toml:6: release.old_index:") || !strings.Contains(err.Error(), "v1.idx") {
		t.Fatalf("missing index: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "v1.idx"), []byte("not an index"), 0o644)
	os.WriteFile(filepath.Join(dir, "v2.idx"), []byte("not an index"), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("bad index: %v", err)
	}
	// Real indexes: loaded from another working directory, the paths are
	// the scenario's directory's.
	img := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	for _, name := range []string{"v1.idx", "v2.idx"} {
		img[len(img)/2]++
		ix, err := chunker.Split(context.Background(), bytes.NewReader(img), chunker.Options{})
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), ix.Encode(), 0o644)
	}
	t.Chdir(t.TempDir())
	s, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Release.NewIndex != filepath.Join(dir, "v2.idx") || s.Release.OldIndex != filepath.Join(dir, "v1.idx") {
		t.Fatalf("index paths %q %q", s.Release.OldIndex, s.Release.NewIndex)
	}
	// piece_size below the index's chunks.
	os.WriteFile(p, []byte(strings.Replace(src, `piece_size = "256KiB"`, `piece_size = "4KiB"`, 1)), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "release.piece_size: 4096 is smaller than the new index's") {
		t.Fatalf("small pieces: %v", err)
	}
}

// TestRatePrecision: exact by default; a fraction or a percentage.
func TestRatePrecision(t *testing.T) {
	s, err := Parse("t.toml", []byte(base))
	if err != nil || s.Strategy.RatePrecision != 0 {
		t.Fatalf("default: %v, %v", s, err)
	}
	for _, v := range []string{"0.01", `"1%"`} {
		s, err := Parse("t.toml", []byte(strings.Replace(base, `rarity = "random"`, "rate_precision = "+v, 1)))
		if err != nil || s.Strategy.RatePrecision != 0.01 {
			t.Fatalf("rate_precision = %s: %v, %v", v, s, err)
		}
	}
}
