package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/shoalnet/shoal/sim"
	"github.com/shoalnet/shoal/sim/scenario"
)

// result builds a small Result by hand: 2 sites of 3 devices, one device
// that never completed.
func result(seed int64, scale float64) *sim.Result {
	r := &sim.Result{
		Devices: 6, Sites: 2, Completed: 5,
		Completion:           sim.Quantiles{P50: 10 * scale, P90: 14 * scale, P99: 15 * scale, Max: 15 * scale},
		LowerBound:           8,
		OriginEgressBytes:    3 << 20,
		NewBytesPerSite:      []int64{1 << 20, 2 << 20},
		UplinkBytesPerSite:   []int64{1 << 20, 2<<20 + 1<<19},
		UplinkUpBytesPerSite: []int64{0, 1 << 10},
		BytesBySource:        sim.BySource{LAN: 10 << 20, WAN: 1 << 19, Origin: 3 << 20},
		Events:               12345, EventsPerSecond: 1e6, WallSeconds: 0.012345, SimSeconds: 20, Seed: seed,
	}
	for i := range 6 {
		c := float64(8+i) * scale
		if i == 5 {
			c = -1
		}
		r.DeviceRows = append(r.DeviceRows, sim.DeviceRow{Device: i, Site: i / 3, Completion: c,
			Received: sim.BySource{LAN: int64(i) << 20, Origin: 1 << 19}, Sent: int64(i) << 10, HadBase: i%2 == 0, PowerCuts: i % 2, Sleeps: i})
	}
	r.SiteRows = []sim.SiteRow{
		{Site: 0, Devices: 3, NewBytes: 1 << 20, UplinkDown: 1 << 20, UplinkUp: 0, Completion: 10 * scale},
		{Site: 1, Devices: 3, NewBytes: 2 << 20, UplinkDown: 2<<20 + 1<<19, UplinkUp: 1 << 10, Completion: -1},
	}
	for i := range 21 {
		r.Series = append(r.Series, sim.Sample{Seconds: float64(i), Completed: min(i/3, 5), OriginEgressBytes: int64(i) * (3 << 20) / 20,
			UplinkBytes: int64(i) << 17, LANBytes: int64(i) << 19, ActiveFlows: 20 - i})
	}
	return r
}

func testRun(index int, seed int64, params ...scenario.Param) scenario.Run {
	return scenario.Run{Index: index, Seed: seed, Params: params, Scenario: &scenario.Scenario{Name: "tiny"}}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return recs
}

// checkImages checks that base.png decodes as a PNG and base.svg parses as
// XML with an <svg> root.
func checkImages(t *testing.T, base string) {
	t.Helper()
	f, err := os.Open(base + ".png")
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatalf("%s.png: %v", base, err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Fatalf("%s.png is %v", base, b)
	}
	b, err := os.ReadFile(base + ".svg")
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s.svg: %v", base, err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("%s.svg: root element %q", base, root)
	}
}

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out", "run")
	run := testRun(3, 42, scenario.Param{Key: "topology.uplink_up", Value: "5Mbit"})
	res := result(42, 1)
	if err := Write(dir, run, res); err != nil {
		t.Fatal(err)
	}

	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := SummaryJSON(run, res)
	if !bytes.Equal(b, want) {
		t.Fatalf("summary.json is not SummaryJSON:\n%s\n%s", b, want)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"devices": 6.0, "sites": 2.0, "completed": 5.0, "lower_bound_seconds": 8.0,
		"origin_egress_bytes": float64(3 << 20), "events": 12345.0, "wall_seconds": 0.012345, "seed": 42.0,
		"scenario": "tiny", "run": 3.0, "uplink_ratio": 3.5 / 3, "uplink_ratio_max": 1.25, "bound_ratio": 0.0} {
		if m[k] != v {
			t.Errorf("summary.json %s = %v, want %v", k, m[k], v)
		}
	}
	if q := m["completion_seconds"].(map[string]any); q["p50"] != 10.0 || q["p90"] != 14.0 || q["p99"] != 15.0 || q["max"] != 15.0 {
		t.Errorf("completion_seconds %v", q)
	}
	if s := m["bytes_by_source"].(map[string]any); s["lan"] != float64(10<<20) || s["origin"] != float64(3<<20) {
		t.Errorf("bytes_by_source %v", s)
	}
	if a := m["uplink_bytes_per_site"].([]any); len(a) != 2 || a[1] != float64(2<<20+1<<19) {
		t.Errorf("uplink_bytes_per_site %v", a)
	}
	if p := m["params"].(map[string]any); p["topology.uplink_up"] != "5Mbit" {
		t.Errorf("params %v", p)
	}
	for _, k := range []string{"new_bytes_per_site", "events_per_second", "sim_seconds", "uplink_up_bytes_per_site"} {
		if _, ok := m[k]; !ok {
			t.Errorf("summary.json lacks %s", k)
		}
	}
	if _, ok := m["DeviceRows"]; ok {
		t.Error("summary.json holds the device rows")
	}

	dev := readCSV(t, filepath.Join(dir, "devices.csv"))
	if strings.Join(dev[0], ",") != "device,site,completion_seconds,received_lan_bytes,received_wan_bytes,received_origin_bytes,sent_bytes,had_base,power_cuts,sleeps,lower_bound_seconds" {
		t.Errorf("devices.csv header %v", dev[0])
	}
	if len(dev) != 7 || strings.Join(dev[5], ",") != "4,1,12.000000,4194304,0,524288,4096,true,0,4,0.000000" || dev[6][2] != "" {
		t.Errorf("devices.csv rows %v", dev[1:])
	}
	sites := readCSV(t, filepath.Join(dir, "sites.csv"))
	if len(sites) != 3 || strings.Join(sites[0], ",") != "site,devices,new_bytes,uplink_down_bytes,uplink_up_bytes,uplink_ratio,completion_seconds" ||
		strings.Join(sites[2], ",") != "1,3,2097152,2621440,1024,1.250000," {
		t.Errorf("sites.csv %v", sites)
	}
	ts := readCSV(t, filepath.Join(dir, "timeseries.csv"))
	if len(ts) != 22 || strings.Join(ts[0], ",") != "seconds,completed,origin_egress_bytes,uplink_bytes,lan_bytes,active_flows" ||
		strings.Join(ts[21], ",") != "20,5,3145728,2621440,10485760,0" {
		t.Errorf("timeseries.csv %v", ts[len(ts)-1])
	}
	for _, p := range []string{"completion_cdf", "uplink_per_site", "origin_egress"} {
		checkImages(t, filepath.Join(dir, p))
	}
	// Nothing but the outputs: no temporary files left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 10 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("files: %v", names)
	}
}

// TestWriteEdgeCases: a run where no device completed, with one site and
// no time series, still gives every file.
func TestWriteEdgeCases(t *testing.T) {
	dir := t.TempDir()
	res := &sim.Result{Devices: 2, Sites: 1, NewBytesPerSite: []int64{100}, UplinkBytesPerSite: []int64{0},
		DeviceRows: []sim.DeviceRow{{Device: 0, Completion: -1}, {Device: 1, Completion: -1}},
		SiteRows:   []sim.SiteRow{{Site: 0, Devices: 2, NewBytes: 100, Completion: -1}}}
	if err := Write(dir, testRun(0, 1), res); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"completion_cdf", "uplink_per_site", "origin_egress"} {
		checkImages(t, filepath.Join(dir, p))
	}
	var s Summary
	b, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err := json.Unmarshal(b, &s); err != nil || s.BoundRatio != 0 || s.UplinkRatio != 0 || s.Params == nil {
		t.Fatalf("%+v %v", s, err)
	}
}

// TestWriteFailureLeavesNoSummary: when a file cannot be written, the
// earlier summary.json is gone rather than presented as this run's.
func TestWriteFailureLeavesNoSummary(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "summary.json"), []byte(`{"devices": 1}`), 0o644)
	os.Mkdir(filepath.Join(dir, "sites.csv"), 0o755) // cannot be replaced by a file
	os.WriteFile(filepath.Join(dir, "sites.csv", "x"), nil, 0o644)
	if err := Write(dir, testRun(0, 1), result(1, 1)); err == nil {
		t.Fatal("Write succeeded over a directory named sites.csv")
	}
	if _, err := os.Stat(filepath.Join(dir, "summary.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("summary.json after a failed write: %v", err)
	}
}

func TestPrepareDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	fifo := filepath.Join(dir, "p")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{file: "is a regular file", fifo: "is a named pipe", "/dev/null": "is a character device"} {
		err := PrepareDir(path)
		if !errors.Is(err, ErrOutput) || !strings.Contains(err.Error(), want) {
			t.Errorf("PrepareDir(%s): %v", path, err)
		}
	}
	if err := PrepareDir(filepath.Join(file, "sub")); err == nil {
		t.Error("a directory under a file")
	}
	if err := PrepareDir(filepath.Join(dir, "a", "b")); err != nil {
		t.Error(err)
	}
	if err := PrepareDir(dir); err != nil {
		t.Error(err)
	}
}

func TestSweep(t *testing.T) {
	src := `name = "sw"
seeds = [1, 2]
[release]
size = "1MiB"
[topology]
sites = 2
devices_per_site = 3
device_up = "10Mbit"
device_down = "10Mbit"
lan = "1Gbit"
uplink_up = "5Mbit"
uplink_down = "5Mbit"
origin_egress = "1Gbit"
[sweep]
"topology.uplink_down" = ["5Mbit", "10Mbit", "20Mbit"]
"strategy.split" = [true, false]
`
	sc, err := scenario.Parse("sw.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	runs, err := sc.Expand()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "sweep.csv"), []byte("stale\n"), 0o644)
	w, err := NewSweep(dir, sc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sweep.csv")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a stale sweep.csv survived NewSweep")
	}
	for i, r := range runs {
		if err := w.Add(r, result(r.Seed, 1+float64(i)/10)); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if rows := readCSV(t, filepath.Join(dir, "sweep.csv")); len(rows) != 2 {
				t.Fatalf("sweep.csv after one run: %v", rows)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rows := readCSV(t, filepath.Join(dir, "sweep.csv"))
	if len(rows) != 13 {
		t.Fatalf("%d rows", len(rows))
	}
	if strings.Join(rows[0][:6], ",") != "run,dir,topology.uplink_down,strategy.split,seed,devices" || rows[0][len(rows[0])-1] != "sim_seconds" {
		t.Errorf("header %v", rows[0])
	}
	// Run 7: the second uplink value, split off, seed 2.
	if strings.Join(rows[8][:7], ",") != "7,run-0007,10Mbit,false,2,6,5" {
		t.Errorf("row 7: %v", rows[8])
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	if rows[8][col["completion_p50"]] != "17" || rows[8][col["uplink_ratio_max"]] != "1.25" {
		t.Errorf("row 7 metrics: %v", rows[8])
	}
	for _, r := range runs {
		if _, err := os.Stat(filepath.Join(dir, RunDir(r), "summary.json")); err != nil {
			t.Fatal(err)
		}
	}
	checkImages(t, filepath.Join(dir, "sweep"))
}

// TestSweepNumericAxis: plain numbers on the first axis are a numeric x
// axis; a scenario without axes plots against the seed.
func TestSweepNumericAxis(t *testing.T) {
	for _, src := range []string{"[sweep]\n\"topology.wan_peers\" = [0, 1, 3]\n", ""} {
		sc, err := scenario.Parse("n.toml", []byte(`seeds = [5, 6]
[release]
size = "1MiB"
[topology]
sites = 4
devices_per_site = 3
device_up = "10Mbit"
device_down = "10Mbit"
lan = "1Gbit"
uplink_up = "5Mbit"
uplink_down = "5Mbit"
origin_egress = "1Gbit"
`+src))
		if err != nil {
			t.Fatal(err)
		}
		runs, _ := sc.Expand()
		dir := t.TempDir()
		w, _ := NewSweep(dir, sc)
		for _, r := range runs {
			if err := w.Add(r, result(r.Seed, 1)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		checkImages(t, filepath.Join(dir, "sweep"))
	}
}
