package sim

import (
	"errors"
	"testing"

	"github.com/shoalnet/shoal/sim/scenario"
)

// The engine draws what scenario.Dist.Sample draws, from the same stream
// (one definition of every distribution), and refuses what Sample cannot
// draw from.
func TestDrawIsSample(t *testing.T) {
	for _, d := range []scenario.Dist{
		fixed(3),
		{Kind: "uniform", Min: 1, Max: 5},
		{Kind: "normal", Mean: 0, Stddev: 1, HasMin: true}, // an explicit min of 0 clamps
		{Kind: "normal", Mean: 10, Stddev: 4, Min: 8, Max: 11},
		{Kind: "lognormal", Mean: 5e6, Stddev: 2e6},
		{Kind: "exp", Mean: 2, Max: 3},
		{Kind: "choice", Choices: []float64{1, 2, 3}},
		{Kind: "choice", Choices: []float64{1, 2, 3}, Weights: []float64{0, 1, 3}},
	} {
		a, b := stream(9, streamDevice, 4), stream(9, streamDevice, 4)
		for k := range 200 {
			got, err := draw(d, a)
			if err != nil {
				t.Fatalf("%v: %v", d, err)
			}
			if want := d.Sample(b); got != want {
				t.Fatalf("%v: draw %d is %v, Sample's %v", d, k, got, want)
			}
			if d.HasMin && got < d.Min {
				t.Fatalf("%v: drew %v below min", d, got)
			}
		}
	}
	for _, d := range []scenario.Dist{
		{Kind: "pareto"},
		{Kind: "uniform", Min: 5, Max: 1},
		{Kind: "lognormal", Mean: 0, Stddev: 1},
		{Kind: "exp"},
		{Kind: "choice"},
		{Kind: "choice", Choices: []float64{1, 2}, Weights: []float64{1}},
		{Kind: "choice", Choices: []float64{1, 2}, Weights: []float64{0, 0}},
		{Kind: "normal", Mean: 1, Stddev: 1, HasMin: true, Min: 3, HasMax: true, Max: 2},
	} {
		if _, err := draw(d, stream(1, streamDevice, 0)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%v: %v, want ErrInvalid", d, err)
		}
	}
}

// A stagger drawn from a normal with an explicit min of 0 never starts a
// device before the announcement (an explicit 0 clamps, as in Sample).
func TestStaggerMinZero(t *testing.T) {
	sc := sites()
	sc.Initial.Stagger = scenario.Dist{Kind: "normal", Mean: 0, Stddev: 2, HasMin: true}
	r := run(t, sc, 1)
	if r.Completion.Max <= 0 {
		t.Fatalf("completion %v", r.Completion)
	}
}
