// Package report writes what a simulator run measured into an output
// directory: summary.json (the sim.Result with the run's parameters and
// seed), devices.csv, sites.csv, timeseries.csv, and plots as PNG and SVG;
// and for a sweep, one subdirectory per run plus sweep.csv and a plot of the
// swept metrics. docs/simulator.md describes every file and column.
//
// Every file is written to a temporary name and renamed into place, and
// summary.json is written last: a directory with a summary.json holds a
// complete run, whatever happened to the process meanwhile.
package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/shoalnet/shoal/internal/atomicfile"
	"github.com/shoalnet/shoal/internal/inputfile"
	"github.com/shoalnet/shoal/sim"
	"github.com/shoalnet/shoal/sim/scenario"
)

// ErrOutput is wrapped when the output path cannot be used as a directory
// (it is a file, a FIFO, a device).
var ErrOutput = errors.New("report: output is not a directory")

// Summary is the object in summary.json and what `shoal sim run --json`
// prints: every field of sim.Result, then the run it came from.
type Summary struct {
	*sim.Result
	// Scenario is the scenario's name; Run its index in the study.
	Scenario string `json:"scenario"`
	Run      int    `json:"run"`
	// Params are the swept keys and this run's values (empty without a
	// sweep), as written in the scenario.
	Params map[string]string `json:"params"`
	// UplinkRatio is Σ uplink bytes / Σ new bytes over the sites, and
	// UplinkRatioMax the largest per-site ratio: 1 means every new byte
	// crossed each site's uplink exactly once (the bound).
	UplinkRatio    float64 `json:"uplink_ratio"`
	UplinkRatioMax float64 `json:"uplink_ratio_max"`
	// BoundRatio is completion_seconds.max / lower_bound_seconds (0 when
	// either is 0 or devices did not all complete).
	BoundRatio float64 `json:"bound_ratio"`
}

// NewSummary builds the summary of one run.
func NewSummary(run scenario.Run, res *sim.Result) Summary {
	s := Summary{Result: res, Run: run.Index, Params: map[string]string{}}
	if run.Scenario != nil {
		s.Scenario = run.Scenario.Name
	}
	for _, p := range run.Params {
		s.Params[p.Key] = p.Value
	}
	s.UplinkRatio, s.UplinkRatioMax = uplinkRatios(res)
	if res.LowerBound > 0 && res.Completed == res.Devices && res.Completion.Max > 0 {
		s.BoundRatio = res.Completion.Max / res.LowerBound
	}
	return s
}

// uplinkRatios compares what entered each site with what it had to.
func uplinkRatios(res *sim.Result) (total, worst float64) {
	var up, nb int64
	for i, n := range res.NewBytesPerSite {
		if i >= len(res.UplinkBytesPerSite) {
			break
		}
		u := res.UplinkBytesPerSite[i]
		up += u
		nb += n
		if n > 0 {
			worst = max(worst, float64(u)/float64(n))
		}
	}
	if nb > 0 {
		total = float64(up) / float64(nb)
	}
	return total, worst
}

// SummaryJSON is summary.json's content: indented, one object, a newline.
func SummaryJSON(run scenario.Run, res *sim.Result) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(NewSummary(run, res)); err != nil {
		return nil, fmt.Errorf("summary.json: %w", err)
	}
	return b.Bytes(), nil
}

// PrepareDir makes dir (and its parents) if missing and checks that it is
// a directory; a path that is a file, a FIFO or a device is refused with
// ErrOutput before any run starts.
func PrepareDir(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("output directory: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("output directory: %w", err)
	case !st.IsDir():
		return fmt.Errorf("%w: %s is %s", ErrOutput, dir, inputfile.Kind(st.Mode()))
	}
	return nil
}

// Write writes one run's outputs into dir. summary.json goes last, so its
// presence means the directory is complete. An existing summary.json is
// removed first: a run that fails halfway must not leave the previous
// run's summary presented as this one's.
func Write(dir string, run scenario.Run, res *sim.Result) error {
	if res == nil {
		return errors.New("report: no result")
	}
	if err := PrepareDir(dir); err != nil {
		return err
	}
	summary := filepath.Join(dir, "summary.json")
	if err := os.Remove(summary); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, f := range []struct {
		name string
		fill func(io.Writer) error
	}{
		{"devices.csv", func(w io.Writer) error { return writeDevices(w, res) }},
		{"sites.csv", func(w io.Writer) error { return writeSites(w, res) }},
		{"timeseries.csv", func(w io.Writer) error { return writeSeries(w, res) }},
	} {
		if err := atomicfile.Write(filepath.Join(dir, f.name), 0o644, f.fill); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	name := ""
	if run.Scenario != nil {
		name = run.Scenario.Name
	}
	if err := writePlots(dir, name, res); err != nil {
		return err
	}
	b, err := SummaryJSON(run, res)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(summary, b, 0o644)
}
