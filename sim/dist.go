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

// draw takes one value from d with rng. The zero Dist is the fixed value
// 0. Draws are clamped to Min and Max where those are set (for "uniform"
// they are the range itself).
func draw(d scenario.Dist, rng *rand.Rand) (float64, error) {
	var v float64
	switch d.Kind {
	case "", "fixed":
		return d.Value, nil
	case "uniform":
		if d.Max < d.Min {
			return 0, fmt.Errorf("%w: uniform from %v to %v", ErrInvalid, d.Min, d.Max)
		}
		return d.Min + (d.Max-d.Min)*rng.Float64(), nil
	case "normal":
		v = d.Mean + d.Stddev*rng.NormFloat64()
	case "lognormal":
		if d.Mean <= 0 || d.Stddev < 0 {
			return 0, fmt.Errorf("%w: lognormal of mean %v and deviation %v", ErrInvalid, d.Mean, d.Stddev)
		}
		// Mean and Stddev are the value's; the underlying normal's follow.
		s2 := math.Log(1 + d.Stddev*d.Stddev/(d.Mean*d.Mean))
		v = math.Exp(math.Log(d.Mean) - s2/2 + math.Sqrt(s2)*rng.NormFloat64())
	case "exp":
		if d.Mean <= 0 {
			return 0, fmt.Errorf("%w: exponential of mean %v", ErrInvalid, d.Mean)
		}
		v = d.Mean * rng.ExpFloat64()
	case "choice":
		if len(d.Choices) == 0 || len(d.Weights) != 0 && len(d.Weights) != len(d.Choices) {
			return 0, fmt.Errorf("%w: %d choices with %d weights", ErrInvalid, len(d.Choices), len(d.Weights))
		}
		if len(d.Weights) == 0 {
			v = d.Choices[rng.IntN(len(d.Choices))]
			break
		}
		var sum float64
		for _, w := range d.Weights {
			if !(w >= 0) {
				return 0, fmt.Errorf("%w: weight %v", ErrInvalid, w)
			}
			sum += w
		}
		if !(sum > 0) {
			return 0, fmt.Errorf("%w: weights sum to %v", ErrInvalid, sum)
		}
		x := rng.Float64() * sum
		v = d.Choices[len(d.Choices)-1]
		for i, w := range d.Weights {
			if x < w {
				v = d.Choices[i]
				break
			}
			x -= w
		}
	default:
		return 0, fmt.Errorf("%w: distribution %q", ErrInvalid, d.Kind)
	}
	if d.Min != 0 || d.Max != 0 {
		if v < d.Min {
			v = d.Min
		}
		if d.Max > d.Min && v > d.Max {
			v = d.Max
		}
	}
	return v, nil
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
