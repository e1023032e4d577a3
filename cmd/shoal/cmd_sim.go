package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/internal/progress"
	"github.com/shoalnet/shoal/sim"
	"github.com/shoalnet/shoal/sim/report"
	"github.com/shoalnet/shoal/sim/scenario"
)

func newSimCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a release spreading through a large fleet (scenarios, sweeps, plots)",
		Long: `sim runs shoal's swarm simulator: a deterministic, flow-level discrete-event
model of sites behind uplinks, an origin and a WAN, in which every device runs
the real scheduler (swarm/sched). A scenario file (TOML) describes the
topology, the release, churn, failures, the strategy and the sweep axes; a
run writes summary.json, CSV files and plots into an output directory.
See docs/simulator.md for the scenario keys and the outputs, and
docs/simulator-model.md for the model and its assumptions.`,
	}
	c.AddCommand(newSimRunCmd(), newSimSweepCmd())
	return c
}

// simFlags are the flags both subcommands take.
type simFlags struct {
	out     string
	json    bool
	verbose bool
}

func (f *simFlags) add(c *cobra.Command) {
	c.Flags().StringVarP(&f.out, "output", "o", "", "output directory (created if missing)")
	c.Flags().BoolVar(&f.json, "json", false, "print the result as JSON on stdout")
	c.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "progress lines on stderr when it is not a terminal")
}

// loadScenario loads a scenario and sorts its errors: a scenario that says
// something wrong is a usage error (exit 2); a file that cannot be read is
// not.
func loadScenario(path string) (*scenario.Scenario, error) {
	s, err := scenario.Load(path)
	if errors.Is(err, scenario.ErrInvalid) {
		return nil, usageError{err}
	}
	return s, err
}

// prepareOut checks -o before any run starts.
func prepareOut(dir string) error {
	if dir == "" {
		return usageError{errors.New("missing -o DIR: the output directory")}
	}
	if err := report.PrepareDir(dir); err != nil {
		if errors.Is(err, report.ErrOutput) {
			return usageError{fmt.Errorf("-o: %w", err)}
		}
		return err
	}
	return nil
}

// runSim runs one simulation; an engine that refuses the scenario is a
// usage error like a scenario that does not load.
func runSim(ctx context.Context, run scenario.Run, progress func(completed, devices int)) (*sim.Result, error) {
	res, err := sim.Run(ctx, run, progress)
	if errors.Is(err, sim.ErrInvalid) {
		return nil, usageError{err}
	}
	if err != nil {
		return nil, fmt.Errorf("run %d (seed %d): %w", run.Index, run.Seed, err)
	}
	return res, nil
}

func newSimRunCmd() *cobra.Command {
	var (
		f    simFlags
		seed int64
	)
	c := &cobra.Command{
		Use:   "run SCENARIO -o DIR",
		Short: "Run one simulation of a scenario and write its outputs",
		Long: `run loads SCENARIO, checks it (an unknown key, a zero capacity or an impossible
topology is an error naming the file, the line and the key; exit 2), runs it
once and writes into DIR: summary.json, devices.csv, sites.csv,
timeseries.csv, and the plots completion_cdf, uplink_per_site and
origin_egress, each as PNG and SVG. summary.json is written last: a DIR
with a summary.json holds a complete run.

It runs one seed: --seed N, or the scenario's first. A scenario with a
[sweep] table is run with 'shoal sim sweep'.

--json prints exactly the summary.json object. A progress bar of devices
completed is drawn on stderr when it is a terminal; -v prints progress
lines otherwise.`,
		Example: `  shoal sim run sim/scenarios/remote-sites.toml -o out
  shoal sim run sim/scenarios/fleet-2x5.toml -o out/fleet --seed 2 --json | jq .completion_seconds
  shoal sim run my.toml -o out -v 2>progress.log`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadScenario(args[0])
			if err != nil {
				return err
			}
			if len(s.Sweep) > 0 {
				return usageError{fmt.Errorf("%s has a [sweep] of %d runs: run it with 'shoal sim sweep'", args[0], s.Runs())}
			}
			if cmd.Flags().Changed("seed") {
				s.Seeds = []int64{seed}
			} else {
				s.Seeds = s.Seeds[:1]
			}
			runs, err := s.Expand()
			if err != nil {
				return usageError{err}
			}
			if err := prepareOut(f.out); err != nil {
				return err
			}
			run := runs[0]
			prog := newSimProgress(cmd.ErrOrStderr(), f.verbose, 0)
			res, err := runSim(cmd.Context(), run, prog.devices)
			prog.end(err)
			if err != nil {
				return err
			}
			if err := report.Write(f.out, run, res); err != nil {
				return err
			}
			if f.json {
				b, err := report.SummaryJSON(run, res)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			writeSimText(cmd.OutOrStdout(), report.NewSummary(run, res))
			fmt.Fprintf(cmd.OutOrStdout(), "outputs in %s\n", f.out)
			return nil
		},
	}
	f.add(c)
	c.Flags().Int64Var(&seed, "seed", 0, "run this seed instead of the scenario's first")
	return c
}

func newSimSweepCmd() *cobra.Command {
	var f simFlags
	c := &cobra.Command{
		Use:   "sweep SCENARIO -o DIR",
		Short: "Run every combination of a scenario's sweep axes and seeds",
		Long: `sweep loads SCENARIO, expands its [sweep] table (one run per combination of
the axes' values, the last axis varying fastest, times each seed), checks
every combination before the first run starts, and runs them one after the
other. Each run's outputs go to DIR/run-NNNN (as 'shoal sim run' writes
them); DIR/sweep.csv gets one row per run (its parameters, seed and main
metrics) as soon as the run ends, and DIR/sweep.png and sweep.svg plot
completion p50, p90 and max and the uplink ratio against the first axis's
values, one line per combination of the other axes.

A scenario without a [sweep] runs once per seed. --json prints
{"scenario": NAME, "runs": [summary, ...]} with each run's summary.json
object. A progress bar of runs done (and the current run's devices) is
drawn on stderr when it is a terminal; -v prints progress lines otherwise.`,
		Example: `  shoal sim sweep sim/scenarios/split-sweep.toml -o out/split
  shoal sim sweep sim/scenarios/high-churn.toml -o out/churn --json | jq '.runs[].completion_seconds.p90'`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := loadScenario(args[0])
			if err != nil {
				return err
			}
			if n := s.Runs(); n > scenario.MaxRuns {
				return usageError{fmt.Errorf("%s: %d runs or more; at most %d", args[0], n, scenario.MaxRuns)}
			}
			runs, err := s.Expand()
			if err != nil {
				return usageError{err}
			}
			if err := prepareOut(f.out); err != nil {
				return err
			}
			w, err := report.NewSweep(f.out, s)
			if err != nil {
				return err
			}
			prog := newSimProgress(cmd.ErrOrStderr(), f.verbose, len(runs))
			var sums []report.Summary
			for _, run := range runs {
				prog.startRun(run)
				res, err := runSim(cmd.Context(), run, prog.devices)
				if err == nil {
					err = w.Add(run, res)
				}
				if err != nil {
					prog.end(err)
					// The runs that finished keep their rows and plot.
					return errors.Join(err, w.Close())
				}
				prog.runDone()
				sums = append(sums, report.NewSummary(run, res))
			}
			prog.end(nil)
			if err := w.Close(); err != nil {
				return err
			}
			if f.json {
				return writeJSON(cmd.OutOrStdout(), struct {
					Scenario string           `json:"scenario"`
					Runs     []report.Summary `json:"runs"`
				}{s.Name, sums})
			}
			writeSweepText(cmd.OutOrStdout(), s, sums)
			fmt.Fprintf(cmd.OutOrStdout(), "outputs in %s (sweep.csv, sweep.png, run-NNNN/)\n", f.out)
			return nil
		},
	}
	f.add(c)
	return c
}

// simProgress shows how a run or a sweep advances: bars on a terminal,
// plain lines with -v otherwise, nothing by default (scripts and --json
// stay clean).
type simProgress struct {
	w       io.Writer
	lines   bool
	runs    int // 0 for a single run
	done    int
	run     scenario.Run
	lastTen int
	bars    *progress.Group
	runBar  *progress.Counter
	devBar  *progress.Counter
}

func newSimProgress(w io.Writer, verbose bool, runs int) *simProgress {
	sp := &simProgress{w: w, runs: runs, lastTen: -1, bars: progress.NewGroup(w)}
	if sp.bars == nil {
		sp.lines = verbose
	} else if runs > 0 {
		sp.runBar = sp.bars.Count("runs   ", int64(runs))
	}
	return sp
}

func (sp *simProgress) startRun(run scenario.Run) {
	sp.run, sp.lastTen = run, -1
	if sp.lines {
		fmt.Fprintf(sp.w, "sim: run %d of %d: seed %d %s\n", run.Index+1, sp.runs, run.Seed, paramText(run.Params))
	}
	sp.devBar.Set(0)
}

// devices hears the engine's progress callback.
func (sp *simProgress) devices(completed, devices int) {
	if sp.bars != nil {
		// One bar for the devices of every run in turn: a sweep's runs
		// may differ in size, so its total follows the run.
		if sp.devBar == nil {
			sp.devBar = sp.bars.Count("devices", int64(devices))
		}
		sp.devBar.SetTotal(int64(devices))
		sp.devBar.Set(int64(completed))
		return
	}
	if !sp.lines || devices == 0 {
		return
	}
	// A line every tenth of the fleet, not every callback.
	if ten := completed * 10 / devices; ten != sp.lastTen {
		sp.lastTen = ten
		fmt.Fprintf(sp.w, "sim: %d of %d devices done\n", completed, devices)
	}
}

func (sp *simProgress) runDone() {
	sp.done++
	sp.runBar.Set(int64(sp.done))
	if sp.lines {
		fmt.Fprintf(sp.w, "sim: %d of %d runs done\n", sp.done, sp.runs)
	}
}

func (sp *simProgress) end(err error) { sp.bars.End(err) }

func paramText(ps []scenario.Param) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Key + "=" + p.Value
	}
	return strings.Join(s, " ")
}

func writeSimText(w io.Writer, s report.Summary) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario\t%s (seed %d)\n", s.Scenario, s.Seed)
	if len(s.Params) > 0 {
		var ps []string
		for _, k := range slices.Sorted(maps.Keys(s.Params)) {
			ps = append(ps, k+"="+s.Params[k])
		}
		fmt.Fprintf(tw, "params\t%s\n", strings.Join(ps, " "))
	}
	fmt.Fprintf(tw, "devices\t%d in %d sites, %d completed\n", s.Devices, s.Sites, s.Completed)
	fmt.Fprintf(tw, "completion\tp50 %.1f s, p90 %.1f s, p99 %.1f s, max %.1f s\n", s.Completion.P50, s.Completion.P90, s.Completion.P99, s.Completion.Max)
	bound := fmt.Sprintf("%.1f s", s.LowerBound)
	if s.BoundRatio > 0 {
		bound += fmt.Sprintf(" (max is %.2f × the bound)", s.BoundRatio)
	}
	fmt.Fprintf(tw, "lower bound\t%s\n", bound)
	fmt.Fprintf(tw, "uplink ratio\t%.3f over all sites, %.3f at the worst site (1 = each new byte once)\n", s.UplinkRatio, s.UplinkRatioMax)
	fmt.Fprintf(tw, "origin egress\t%.1f MiB\n", float64(s.OriginEgressBytes)/(1<<20))
	fmt.Fprintf(tw, "received from\tLAN %.1f MiB, WAN %.1f MiB, origin %.1f MiB\n",
		float64(s.BytesBySource.LAN)/(1<<20), float64(s.BytesBySource.WAN)/(1<<20), float64(s.BytesBySource.Origin)/(1<<20))
	fmt.Fprintf(tw, "engine\t%d events in %.2f s (%.0f events/s), %.1f simulated seconds\n", s.Events, s.WallSeconds, s.EventsPerSecond, s.SimSeconds)
	tw.Flush()
}

func writeSweepText(w io.Writer, s *scenario.Scenario, sums []report.Summary) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "run\t")
	for _, a := range s.Sweep {
		fmt.Fprintf(tw, "%s\t", a.Key)
	}
	fmt.Fprintln(tw, "seed\tcompleted\tp50 s\tp90 s\tmax s\tbound s\tuplink ratio\torigin MiB")
	for _, r := range sums {
		fmt.Fprintf(tw, "%d\t", r.Run)
		for _, a := range s.Sweep {
			fmt.Fprintf(tw, "%s\t", r.Params[a.Key])
		}
		fmt.Fprintf(tw, "%d\t%d/%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.3f\t%.1f\n", r.Seed, r.Completed, r.Devices,
			r.Completion.P50, r.Completion.P90, r.Completion.Max, r.LowerBound, r.UplinkRatio, float64(r.OriginEgressBytes)/(1<<20))
	}
	tw.Flush()
}
