package report

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/shoalnet/shoal/internal/atomicfile"
	"github.com/shoalnet/shoal/sim"
)

// Plot sizes: readable on a screen and in a paper column alike.
const (
	plotW = 16 * vg.Centimeter
	plotH = 10 * vg.Centimeter
)

// Formats every plot is written in: PNG to look at, SVG to put in a paper.
var formats = []string{"png", "svg"}

var (
	colorMain  = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	colorBound = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	palette    = []color.Color{colorMain, color.RGBA{R: 255, G: 127, B: 14, A: 255}, color.RGBA{R: 44, G: 160, B: 44, A: 255},
		colorBound, color.RGBA{R: 148, G: 103, B: 189, A: 255}, color.RGBA{R: 140, G: 86, B: 75, A: 255}}
)

const mib = 1 << 20

// writePlots writes the three plots of one run.
func writePlots(dir, name string, res *sim.Result) error {
	for _, p := range []struct {
		file string
		make func(string, *sim.Result) (*plot.Plot, error)
	}{
		{"completion_cdf", completionPlot},
		{"uplink_per_site", uplinkPlot},
		{"origin_egress", originPlot},
	} {
		pl, err := p.make(name, res)
		if err != nil {
			return fmt.Errorf("plot %s: %w", p.file, err)
		}
		if err := savePlot(filepath.Join(dir, p.file), pl); err != nil {
			return err
		}
	}
	return nil
}

// savePlot writes base.png and base.svg, each atomically.
func savePlot(base string, p *plot.Plot) error {
	for _, f := range formats {
		wt, err := p.WriterTo(plotW, plotH, f)
		if err != nil {
			return fmt.Errorf("plot %s.%s: %w", base, f, err)
		}
		if err := atomicfile.Write(base+"."+f, 0o644, func(w io.Writer) error {
			_, err := wt.WriteTo(w)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

func title(name, what string) string {
	if name == "" {
		return what
	}
	return name + ": " + what
}

// finite drops points a line cannot draw.
func finite(xys plotter.XYs) plotter.XYs {
	return slices.DeleteFunc(xys, func(p plotter.XY) bool {
		return math.IsNaN(p.X) || math.IsInf(p.X, 0) || math.IsNaN(p.Y) || math.IsInf(p.Y, 0)
	})
}

func addLine(p *plot.Plot, label string, xys plotter.XYs, c color.Color, dashed bool) error {
	xys = finite(xys)
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = c
	l.Width = vg.Points(1.5)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	}
	p.Add(l)
	if label != "" {
		p.Legend.Add(label, l)
	}
	return nil
}

func addPoints(p *plot.Plot, label string, xys plotter.XYs, c color.Color) error {
	xys = finite(xys)
	if len(xys) == 0 {
		return nil
	}
	s, err := plotter.NewScatter(xys)
	if err != nil {
		return err
	}
	s.Color = c
	s.Radius = vg.Points(2)
	s.Shape = draw.CircleGlyph{}
	p.Add(s)
	if label != "" {
		p.Legend.Add(label, s)
	}
	return nil
}

// completionPlot: the fraction of all devices done by each time (it tops
// out below 1 when some never completed), against the lower bound.
func completionPlot(name string, res *sim.Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title(name, "completion CDF")
	p.X.Label.Text = "time since the announcement (s)"
	p.Y.Label.Text = "fraction of devices done"
	p.Y.Min, p.Y.Max = 0, 1
	p.Legend.Top, p.Legend.Left = true, true
	var done []float64
	for _, d := range res.DeviceRows {
		if d.Completion >= 0 {
			done = append(done, d.Completion)
		}
	}
	slices.Sort(done)
	n := max(res.Devices, len(res.DeviceRows), 1)
	// A step function: the count rises at each completion.
	xys := make(plotter.XYs, 0, 2*len(done)+1)
	xys = append(xys, plotter.XY{X: 0, Y: 0})
	for i, t := range done {
		xys = append(xys, plotter.XY{X: t, Y: float64(i) / float64(n)}, plotter.XY{X: t, Y: float64(i+1) / float64(n)})
	}
	if len(done) == 0 {
		p.Title.Text += " (no device completed)"
	}
	if err := addLine(p, fmt.Sprintf("devices (%d of %d done)", len(done), res.Devices), xys, colorMain, false); err != nil {
		return nil, err
	}
	if res.LowerBound > 0 {
		b := plotter.XYs{{X: res.LowerBound, Y: 0}, {X: res.LowerBound, Y: 1}}
		if err := addLine(p, fmt.Sprintf("lower bound %.1f s", res.LowerBound), b, colorBound, true); err != nil {
			return nil, err
		}
	}
	p.X.Min = 0
	return p, nil
}

// uplinkPlot: what entered each site over its uplink against the bound,
// the site's new bytes (each needed once).
func uplinkPlot(name string, res *sim.Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title(name, "bytes into each site over its uplink")
	p.X.Label.Text = "site"
	p.Y.Label.Text = "MiB"
	p.Legend.Top = true
	var up, bound plotter.XYs
	for i, b := range res.UplinkBytesPerSite {
		up = append(up, plotter.XY{X: float64(i), Y: float64(b) / mib})
	}
	// The bound as steps, flat across each site's slot: sites are
	// categories, and a line from one site's bound to the next would
	// suggest values in between.
	for i, b := range res.NewBytesPerSite {
		y := float64(b) / mib
		bound = append(bound, plotter.XY{X: float64(i) - 0.5, Y: y}, plotter.XY{X: float64(i) + 0.5, Y: y})
	}
	total, worst := uplinkRatios(res)
	// The bound is drawn over the points: where they sit on it, the
	// dashes still show.
	if err := addPoints(p, fmt.Sprintf("uplink, into the site (ratio %.3f, worst %.3f)", total, worst), up, colorMain); err != nil {
		return nil, err
	}
	if err := addLine(p, "bound: the site's new bytes", bound, colorBound, true); err != nil {
		return nil, err
	}
	p.Y.Min = 0
	p.X.Tick.Marker = integerTicks{}
	legendRoom(p)
	return p, nil
}

// legendRoom raises the top of the y axis so that a legend at the top
// does not cover the data.
func legendRoom(p *plot.Plot) {
	if p.Y.Max > p.Y.Min {
		p.Y.Max = p.Y.Min + (p.Y.Max-p.Y.Min)*1.35
	}
}

// integerTicks are the default ticks at whole numbers only (site numbers).
type integerTicks struct{}

func (integerTicks) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for _, t := range (plot.DefaultTicks{}).Ticks(lo, hi) {
		if t.Value == math.Trunc(t.Value) {
			out = append(out, t)
		}
	}
	labelled := 0
	for _, t := range out {
		if t.Label != "" {
			labelled++
		}
	}
	if labelled < 2 {
		// Few sites: the default labels fell between whole numbers.
		out = out[:0]
		for v := math.Ceil(lo); v <= hi && len(out) < 50; v++ {
			if v == 0 {
				v = 0 // not -0, which ceil(-0.5) is
			}
			out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', 0, 64)})
		}
	}
	return out
}

// originPlot: the origin's egress rate between samples.
func originPlot(name string, res *sim.Result) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title(name, "origin egress")
	p.X.Label.Text = "time since the announcement (s)"
	p.Y.Label.Text = "Mbit/s"
	var xys plotter.XYs
	var prevT float64
	var prevB int64
	for i, s := range res.Series {
		if i > 0 && s.Seconds > prevT {
			xys = append(xys, plotter.XY{X: s.Seconds, Y: float64(s.OriginEgressBytes-prevB) * 8 / 1e6 / (s.Seconds - prevT)})
		}
		prevT, prevB = s.Seconds, s.OriginEgressBytes
	}
	label := fmt.Sprintf("origin egress (%.1f MiB in all)", float64(res.OriginEgressBytes)/mib)
	if err := addLine(p, label, xys, colorMain, false); err != nil {
		return nil, err
	}
	if len(xys) == 0 {
		p.Title.Text += " (no samples)"
	}
	p.Y.Min, p.X.Min = 0, 0
	p.Legend.Top = true
	legendRoom(p)
	return p, nil
}
