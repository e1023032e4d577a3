package scenario

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// The kinds of Dist.
const (
	DistFixed     = "fixed"
	DistUniform   = "uniform"
	DistNormal    = "normal"
	DistLognormal = "lognormal"
	DistExp       = "exp"
	DistChoice    = "choice"
)

// Fixed is the Dist that always gives v.
func Fixed(v float64) Dist { return Dist{Kind: DistFixed, Value: v} }

// IsZero reports whether d is the zero value (fixed at 0): "not set" for
// the optional distributions (stagger, churn sessions).
func (d Dist) IsZero() bool {
	return (d.Kind == "" || d.Kind == DistFixed) && d.Value == 0
}

// Sample draws one value. It is deterministic given r's state, and draws
// nothing from r for a fixed Dist, so making one distribution fixed does
// not shift the values drawn for others from the same stream. Draws are
// clamped to Min and Max when those are set (a non-zero Min or Max, or
// HasMin/HasMax), which keeps a normal capacity from going negative.
func (d Dist) Sample(r *rand.Rand) float64 {
	var v float64
	switch d.Kind {
	case "", DistFixed:
		return d.Value
	case DistUniform:
		return d.Min + r.Float64()*(d.Max-d.Min)
	case DistNormal:
		v = d.Mean + d.Stddev*r.NormFloat64()
	case DistLognormal:
		mu, sigma := d.logParams()
		v = math.Exp(mu + sigma*r.NormFloat64())
	case DistExp:
		v = d.Mean * r.ExpFloat64()
	case DistChoice:
		v = d.choose(r)
	default:
		return d.Value
	}
	return d.clamp(v)
}

// logParams turns the mean and standard deviation of a lognormal value
// into those of its logarithm: σ² = ln(1 + s²/m²), μ = ln m − σ²/2.
func (d Dist) logParams() (mu, sigma float64) {
	if d.Mean <= 0 {
		return math.Inf(-1), 0
	}
	s2 := math.Log1p(d.Stddev * d.Stddev / (d.Mean * d.Mean))
	return math.Log(d.Mean) - s2/2, math.Sqrt(s2)
}

func (d Dist) choose(r *rand.Rand) float64 {
	if len(d.Choices) == 0 {
		return 0
	}
	if len(d.Weights) != len(d.Choices) {
		return d.Choices[r.IntN(len(d.Choices))]
	}
	var sum float64
	for _, w := range d.Weights {
		sum += w
	}
	x := r.Float64() * sum
	for i, w := range d.Weights {
		if x < w {
			return d.Choices[i]
		}
		x -= w
	}
	// Rounding left x at the very top: the last choice with weight.
	for i := len(d.Weights) - 1; i >= 0; i-- {
		if d.Weights[i] > 0 {
			return d.Choices[i]
		}
	}
	return d.Choices[len(d.Choices)-1]
}

func (d Dist) clamp(v float64) float64 {
	if (d.HasMin || d.Min != 0) && v < d.Min {
		v = d.Min
	}
	if (d.HasMax || d.Max != 0) && v > d.Max {
		v = d.Max
	}
	return v
}

// Range is the interval every draw falls in (possibly infinite), which
// validation checks against what a key allows.
func (d Dist) Range() (lo, hi float64) {
	switch d.Kind {
	case "", DistFixed:
		return d.Value, d.Value
	case DistUniform:
		return d.Min, d.Max
	case DistChoice:
		if len(d.Choices) == 0 {
			return 0, 0
		}
		lo, hi = math.Inf(1), math.Inf(-1)
		for i, c := range d.Choices {
			if len(d.Weights) == len(d.Choices) && d.Weights[i] == 0 {
				continue
			}
			lo, hi = min(lo, c), max(hi, c)
		}
		return d.clamp(lo), d.clamp(hi)
	case DistNormal:
		lo, hi = math.Inf(-1), math.Inf(1)
		if d.Stddev == 0 {
			lo, hi = d.Mean, d.Mean
		}
	case DistLognormal, DistExp:
		// Both are above 0 (exp can come arbitrarily close).
		lo, hi = 0, math.Inf(1)
		if d.Kind == DistLognormal && d.Stddev == 0 {
			lo, hi = d.Mean, d.Mean
		}
	}
	if d.HasMin || d.Min != 0 {
		lo = max(lo, d.Min)
	}
	if d.HasMax || d.Max != 0 {
		hi = min(hi, d.Max)
	}
	return lo, hi
}

// MeanValue is the distribution's mean before clamping (for bounds and
// summaries).
func (d Dist) MeanValue() float64 {
	switch d.Kind {
	case "", DistFixed:
		return d.Value
	case DistUniform:
		return (d.Min + d.Max) / 2
	case DistChoice:
		if len(d.Choices) == 0 {
			return 0
		}
		var s, w float64
		for i, c := range d.Choices {
			wi := 1.0
			if len(d.Weights) == len(d.Choices) {
				wi = d.Weights[i]
			}
			s += c * wi
			w += wi
		}
		if w == 0 {
			return 0
		}
		return s / w
	}
	return d.Mean
}

// String writes d in the scenario syntax, in base units.
func (d Dist) String() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	var parts []string
	add := func(k string, v float64) { parts = append(parts, k+" = "+f(v)) }
	switch d.Kind {
	case "", DistFixed:
		return f(d.Value)
	case DistUniform:
		add("min", d.Min)
		add("max", d.Max)
	case DistNormal, DistLognormal:
		add("mean", d.Mean)
		add("stddev", d.Stddev)
	case DistExp:
		add("mean", d.Mean)
	case DistChoice:
		list := func(k string, vs []float64) {
			s := make([]string, len(vs))
			for i, v := range vs {
				s[i] = f(v)
			}
			parts = append(parts, k+" = ["+strings.Join(s, ", ")+"]")
		}
		list("choices", d.Choices)
		if len(d.Weights) > 0 {
			list("weights", d.Weights)
		}
	}
	if d.Kind != DistUniform {
		if d.HasMin || d.Min != 0 {
			add("min", d.Min)
		}
		if d.HasMax || d.Max != 0 {
			add("max", d.Max)
		}
	}
	return "{dist = " + strconv.Quote(d.Kind) + ", " + strings.Join(parts, ", ") + "}"
}

// distKeys are the keys an inline distribution table may have, by kind.
var distKeys = map[string][]string{
	DistFixed:     {"value"},
	DistUniform:   {"min", "max"},
	DistNormal:    {"mean", "stddev", "min", "max"},
	DistLognormal: {"mean", "stddev", "min", "max"},
	DistExp:       {"mean", "min", "max"},
	DistChoice:    {"choices", "weights", "min", "max"},
}

// parseDist reads a distribution written as a plain value (fixed) or an
// inline table {dist = KIND, ...}; numbers are in u. It checks the shape
// (kind known, keys that kind takes, parameters that make sense) but not
// the range a key allows; that is checkDist's job.
func parseDist(v any, u unit) (Dist, error) {
	m, ok := v.(map[string]any)
	if !ok {
		x, err := number(v, u)
		if err != nil {
			return Dist{}, err
		}
		return Fixed(x), nil
	}
	kv, ok := m["dist"]
	if !ok {
		return Dist{}, fmt.Errorf("a distribution table needs dist = one of %s", kindList())
	}
	kind, ok := kv.(string)
	allowed, known := distKeys[kind]
	if !ok || !known {
		return Dist{}, fmt.Errorf("unknown dist %v: want one of %s", kv, kindList())
	}
	d := Dist{Kind: kind}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "dist" {
			continue
		}
		if !slices.Contains(allowed, k) {
			return Dist{}, fmt.Errorf("dist %q takes %s, not %q", kind, strings.Join(allowed, ", "), k)
		}
		var err error
		switch k {
		case "value":
			d.Value, err = number(m[k], u)
		case "min":
			d.Min, err = number(m[k], u)
			d.HasMin = true
		case "max":
			d.Max, err = number(m[k], u)
			d.HasMax = true
		case "mean":
			d.Mean, err = number(m[k], u)
		case "stddev":
			d.Stddev, err = number(m[k], u)
		case "choices":
			d.Choices, err = numbers(m[k], u)
		case "weights":
			d.Weights, err = numbers(m[k], unitCount)
		}
		if err != nil {
			return Dist{}, fmt.Errorf("%s: %w", k, err)
		}
	}
	need := func(k string) error {
		if _, ok := m[k]; !ok {
			return fmt.Errorf("dist %q needs %s", kind, k)
		}
		return nil
	}
	var err error
	switch kind {
	case DistFixed:
		err = need("value")
	case DistUniform:
		if err = need("min"); err == nil {
			err = need("max")
		}
		if err == nil && d.Min > d.Max {
			err = fmt.Errorf("min %g is above max %g", d.Min, d.Max)
		}
	case DistNormal, DistLognormal:
		if err = need("mean"); err == nil {
			err = need("stddev")
		}
		if err == nil && d.Stddev < 0 {
			err = fmt.Errorf("stddev %g is negative", d.Stddev)
		}
		if err == nil && kind == DistLognormal && d.Mean <= 0 {
			err = fmt.Errorf("a lognormal's mean must be above 0, not %g", d.Mean)
		}
	case DistExp:
		if err = need("mean"); err == nil && d.Mean <= 0 {
			err = fmt.Errorf("an exp's mean must be above 0, not %g", d.Mean)
		}
	case DistChoice:
		switch {
		case len(d.Choices) == 0:
			err = fmt.Errorf("dist %q needs a non-empty choices list", kind)
		case len(d.Weights) > 0 && len(d.Weights) != len(d.Choices):
			err = fmt.Errorf("%d weights for %d choices", len(d.Weights), len(d.Choices))
		case len(d.Weights) > 0:
			var sum float64
			for _, w := range d.Weights {
				if w < 0 {
					return Dist{}, fmt.Errorf("weight %g is negative", w)
				}
				sum += w
			}
			if sum <= 0 || math.IsInf(sum, 0) {
				err = fmt.Errorf("weights sum to %g", sum)
			}
		}
	}
	if err == nil && d.HasMin && d.HasMax && d.Min > d.Max {
		err = fmt.Errorf("min %g is above max %g", d.Min, d.Max)
	}
	if err != nil {
		return Dist{}, err
	}
	return d, nil
}

func numbers(v any, u unit) ([]float64, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want an array, got %s", typeName(v))
	}
	out := make([]float64, len(l))
	for i, x := range l {
		f, err := number(x, u)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out[i] = f
	}
	return out, nil
}

func kindList() string {
	return strings.Join([]string{DistFixed, DistUniform, DistNormal, DistLognormal, DistExp, DistChoice}, ", ")
}
