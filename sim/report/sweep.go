package report

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/shoalnet/shoal/internal/atomicfile"
	"github.com/shoalnet/shoal/sim"
	"github.com/shoalnet/shoal/sim/scenario"
)

// Sweep collects the runs of a study into one directory: each run's
// outputs in its own subdirectory (RunDir), one row per run in sweep.csv,
// rewritten after every run so that a sweep stopped halfway keeps the rows
// of the runs it finished, and at Close the plot of the swept metrics
// (sweep.png, sweep.svg).
type Sweep struct {
	dir  string
	sc   *scenario.Scenario
	rows []row
}

type row struct {
	run scenario.Run
	dir string
	sum Summary
}

// NewSweep prepares dir for the runs of s.
func NewSweep(dir string, s *scenario.Scenario) (*Sweep, error) {
	if err := PrepareDir(dir); err != nil {
		return nil, err
	}
	// A sweep.csv of an earlier study in the same directory would mix with
	// this one's rows until the first run ends: start clean.
	if err := os.Remove(filepath.Join(dir, "sweep.csv")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return &Sweep{dir: dir, sc: s}, nil
}

// RunDir is the subdirectory of a sweep's directory that holds one run.
func RunDir(run scenario.Run) string { return fmt.Sprintf("run-%04d", run.Index) }

// Add writes one run's outputs into its subdirectory and its row into
// sweep.csv.
func (w *Sweep) Add(run scenario.Run, res *sim.Result) error {
	sub := RunDir(run)
	if err := Write(filepath.Join(w.dir, sub), run, res); err != nil {
		return err
	}
	w.rows = append(w.rows, row{run: run, dir: sub, sum: NewSummary(run, res)})
	return atomicfile.Write(filepath.Join(w.dir, "sweep.csv"), 0o644, w.writeCSV)
}

// Close writes the sweep's plot.
func (w *Sweep) Close() error {
	if len(w.rows) == 0 {
		return nil
	}
	return w.writePlot()
}

var sweepMetrics = []string{"seed", "devices", "completed", "completion_p50", "completion_p90", "completion_p99", "completion_max",
	"lower_bound_seconds", "bound_ratio", "origin_egress_bytes", "uplink_ratio", "uplink_ratio_max",
	"bytes_lan", "bytes_wan", "bytes_origin", "events", "events_per_second", "wall_seconds", "sim_seconds"}

func (w *Sweep) writeCSV(out io.Writer) error {
	header := []string{"run", "dir"}
	for _, a := range w.sc.Sweep {
		header = append(header, a.Key)
	}
	header = append(header, sweepMetrics...)
	return writeCSV(out, header, len(w.rows), func(i int) []string {
		r := w.rows[i]
		s := r.sum
		rec := []string{strconv.Itoa(r.run.Index), r.dir}
		for _, p := range r.run.Params {
			rec = append(rec, p.Value)
		}
		return append(rec, i64(s.Seed), strconv.Itoa(s.Devices), strconv.Itoa(s.Completed),
			f64(s.Completion.P50), f64(s.Completion.P90), f64(s.Completion.P99), f64(s.Completion.Max),
			f64(s.LowerBound), f64(s.BoundRatio), i64(s.OriginEgressBytes), f64(s.UplinkRatio), f64(s.UplinkRatioMax),
			i64(s.BytesBySource.LAN), i64(s.BytesBySource.WAN), i64(s.BytesBySource.Origin),
			i64(s.Events), f64(s.EventsPerSecond), f64(s.WallSeconds), f64(s.SimSeconds))
	})
}

// sweepPanels are the metrics of the sweep plot, one panel each.
var sweepPanels = []struct {
	title, unit string
	value       func(Summary) float64
}{
	{"completion p50", "s", func(s Summary) float64 { return s.Completion.P50 }},
	{"completion p90", "s", func(s Summary) float64 { return s.Completion.P90 }},
	{"completion max", "s", func(s Summary) float64 { return s.Completion.Max }},
	{"uplink ratio (1 = the bound)", "uplink bytes / new bytes", func(s Summary) float64 { return s.UplinkRatio }},
}

// writePlot draws each metric against the first axis's values (nominal,
// in the order the file lists them, unless they are all plain numbers),
// one line per combination of the other axes through the mean over seeds,
// with every run as a point.
func (w *Sweep) writePlot() error {
	xLabel, labels := "seed", []string(nil)
	xOf := func(r row) float64 { return float64(r.run.Seed) }
	numeric := true
	if len(w.sc.Sweep) > 0 {
		a := w.sc.Sweep[0]
		xLabel = a.Key
		pos := map[string]float64{}
		for i, v := range a.Values {
			s := scenario.FormatValue(v)
			labels = append(labels, s)
			pos[s] = float64(i)
			if _, err := strconv.ParseFloat(s, 64); err != nil {
				numeric = false
			}
		}
		xOf = func(r row) float64 {
			v := r.run.Params[0].Value
			if numeric {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
			return pos[v]
		}
	}
	// Groups: the values of the other axes, in order of first appearance.
	var groups []string
	members := map[string][]row{}
	for _, r := range w.rows {
		var parts []string
		for _, p := range r.run.Params[min(1, len(r.run.Params)):] {
			parts = append(parts, p.Key+"="+p.Value)
		}
		g := strings.Join(parts, ", ")
		if _, ok := members[g]; !ok {
			groups = append(groups, g)
		}
		members[g] = append(members[g], r)
	}
	plots := [][]*plot.Plot{make([]*plot.Plot, 2), make([]*plot.Plot, 2)}
	for i, m := range sweepPanels {
		p := plot.New()
		p.Title.Text = m.title
		p.X.Label.Text = xLabel
		p.Y.Label.Text = m.unit
		p.Legend.Top = true
		for gi, g := range groups {
			c := palette[gi%len(palette)]
			var pts plotter.XYs
			sum, count := map[float64]float64{}, map[float64]int{}
			var xs []float64
			for _, r := range members[g] {
				x, y := xOf(r), m.value(r.sum)
				pts = append(pts, plotter.XY{X: x, Y: y})
				if _, ok := count[x]; !ok {
					xs = append(xs, x)
				}
				sum[x] += y
				count[x]++
			}
			var mean plotter.XYs
			for _, x := range xs {
				mean = append(mean, plotter.XY{X: x, Y: sum[x] / float64(count[x])})
			}
			label := g
			if len(groups) == 1 {
				label = ""
			}
			if err := addLine(p, label, mean, c, false); err != nil {
				return err
			}
			if err := addPoints(p, "", pts, c); err != nil {
				return err
			}
		}
		if !numeric && labels != nil {
			p.NominalX(labels...)
		}
		p.Y.Min = 0
		if len(groups) > 1 {
			legendRoom(p)
		}
		plots[i/2][i%2] = p
	}
	for _, f := range formats {
		c, err := draw.NewFormattedCanvas(2*plotW, 2*plotH, f)
		if err != nil {
			return err
		}
		tiles := draw.Tiles{Rows: 2, Cols: 2, PadX: vg.Centimeter, PadY: vg.Centimeter,
			PadTop: vg.Centimeter / 2, PadBottom: vg.Centimeter / 2, PadLeft: vg.Centimeter / 2, PadRight: vg.Centimeter / 2}
		canvases := plot.Align(plots, tiles, draw.New(c))
		for j := range plots {
			for i := range plots[j] {
				plots[j][i].Draw(canvases[j][i])
			}
		}
		if err := atomicfile.Write(filepath.Join(w.dir, "sweep."+f), 0o644, func(out io.Writer) error {
			_, err := c.WriteTo(out)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}
