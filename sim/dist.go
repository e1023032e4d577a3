package sim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/shoalnet/shoal/sim/scenario"
)

// ErrInvalid: a scenario the engine cannot run (a capacity that is not
// positive, an impossible topology, a distribution it does not know). A
// scenario read by scenario.Load has been checked already; this catches
// one built in code, and draws that land out of range.
var ErrInvalid = errors.New("sim: invalid scenario")

// draw takes one value from d with rng: scenario.Dist.Sample, the one
// definition of every distribution (clamped to Min and Max where they are
// set, an explicit 0 included), after checking the parameters a scenario
// built in code may get wrong (scenario.Load has checked a file's). It
// draws from rng exactly what Sample draws, nothing for a fixed value, so
// each stream's draws are the same however the others are set.
func draw(d scenario.Dist, rng *rand.Rand) (float64, error) {
	if err := checkDist(d); err != nil {
		return 0, err
	}
	return d.Sample(rng), nil
}

// checkDist reports parameters Sample cannot draw from meaningfully.
func checkDist(d scenario.Dist) error {
	switch d.Kind {
	case "", scenario.DistFixed, scenario.DistNormal:
	case scenario.DistUniform:
		if !(d.Min <= d.Max) {
			return fmt.Errorf("%w: uniform from %v to %v", ErrInvalid, d.Min, d.Max)
		}
	case scenario.DistLognormal:
		if !(d.Mean > 0) || !(d.Stddev >= 0) {
			return fmt.Errorf("%w: lognormal of mean %v and deviation %v", ErrInvalid, d.Mean, d.Stddev)
		}
	case scenario.DistExp:
		if !(d.Mean > 0) {
			return fmt.Errorf("%w: exponential of mean %v", ErrInvalid, d.Mean)
		}
	case scenario.DistChoice:
		if len(d.Choices) == 0 || len(d.Weights) != 0 && len(d.Weights) != len(d.Choices) {
			return fmt.Errorf("%w: %d choices with %d weights", ErrInvalid, len(d.Choices), len(d.Weights))
		}
		var sum float64
		for _, w := range d.Weights {
			if !(w >= 0) {
				return fmt.Errorf("%w: weight %v", ErrInvalid, w)
			}
			sum += w
		}
		if len(d.Weights) > 0 && !(sum > 0 && !math.IsInf(sum, 0)) {
			return fmt.Errorf("%w: weights sum to %v", ErrInvalid, sum)
		}
	default:
		return fmt.Errorf("%w: distribution %q", ErrInvalid, d.Kind)
	}
	if (d.HasMin || d.Min != 0) && (d.HasMax || d.Max != 0) && d.Min > d.Max {
		return fmt.Errorf("%w: %s distribution with min %v above max %v", ErrInvalid, d.Kind, d.Min, d.Max)
	}
	return nil
}

// drawPositive draws a capacity or a count that must be above zero.
func drawPositive(what string, d scenario.Dist, rng *rand.Rand) (float64, error) {
	v, err := draw(d, rng)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if !(v > 0) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%w: %s drew %v (must be above 0)", ErrInvalid, what, v)
	}
	return v, nil
}

// Random streams. Every draw comes from a stream named by what it is for
// and whose it is, derived from the run's seed, so a device's draws do not
// depend on how many other devices drew before it, and nothing depends on
// map order.
const (
	streamRelease uint64 = iota + 1
	streamSite
	streamDevice
	streamSched
	streamWAN
	streamChurn
)

// stream returns the random stream of (kind, index) for seed.
func stream(seed int64, kind uint64, index int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), splitmix(kind<<40^uint64(index))))
}

// splitmix is SplitMix64's finalizer: distinct inputs, well-spread
// outputs.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
