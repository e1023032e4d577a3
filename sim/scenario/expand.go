package scenario

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// readAxes reads the [sweep] table in file order. Its keys are dotted keys
// of the file, written dotted (topology.uplink_up = [...]) or quoted
// ("topology.uplink_up" = [...]), each with a list of values.
func readAxes(file string, md toml.MetaData, tree map[string]any, lines map[string]int) ([]Axis, []error) {
	sw, ok := tree["sweep"]
	if !ok {
		return nil, nil
	}
	fail := func(key, format string, args ...any) error {
		return &Error{File: file, Line: lines[key], Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if _, isMap := sw.(map[string]any); !isMap {
		return nil, []error{fail("sweep", "want a table [sweep] of key = [values], got %s", typeName(sw))}
	}
	var axes []Axis
	var errs []error
	seen := map[string]bool{}
	for _, k := range md.Keys() {
		if len(k) < 2 || k[0] != "sweep" {
			continue
		}
		v := lookup(tree, k)
		if _, isTable := v.(map[string]any); isTable {
			continue // a table of axes: its keys follow
		}
		key := strings.Join(k[1:], ".")
		full := "sweep." + key
		values, isList := v.([]any)
		switch {
		case !isList:
			errs = append(errs, fail(full, "a sweep axis takes a list of values, got %s", typeName(v)))
			continue
		case len(values) == 0:
			errs = append(errs, fail(full, "no values"))
			continue
		case seen[key]:
			errs = append(errs, fail(full, "swept twice"))
			continue
		}
		seen[key] = true
		first, _, _ := strings.Cut(key, ".")
		switch first {
		case "sweep", "seeds", "failure":
			errs = append(errs, fail(full, "%s cannot be swept (seeds are a dimension of their own; failures are a list of tables)", first))
			continue
		}
		axes = append(axes, Axis{Key: key, Values: values})
	}
	return axes, errs
}

// lookup walks a TOML key through a decoded tree; nil when it is not there.
func lookup(tree map[string]any, k toml.Key) any {
	var v any = tree
	for _, p := range k {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// override returns a copy of tree with the dotted key set to v. Only the
// tables on the key's path are copied: nothing else is modified.
func override(tree map[string]any, key string, v any) (map[string]any, error) {
	parts := strings.Split(key, ".")
	out := maps.Clone(tree)
	cur := out
	for i, p := range parts[:len(parts)-1] {
		next, ok := cur[p]
		switch m := next.(type) {
		case nil:
			if ok {
				return nil, fmt.Errorf("%s is not a table", strings.Join(parts[:i+1], "."))
			}
			nm := map[string]any{}
			cur[p] = nm
			cur = nm
		case map[string]any:
			nm := maps.Clone(m)
			cur[p] = nm
			cur = nm
		default:
			return nil, fmt.Errorf("%s is %s, not a table", strings.Join(parts[:i+1], "."), typeName(next))
		}
	}
	cur[parts[len(parts)-1]] = v
	return out, nil
}

// FormatValue writes a TOML value the way a sweep's Param shows it:
// strings bare ("20Mbit"), numbers and booleans as TOML writes them,
// tables inline with sorted keys.
func FormatValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	default:
		return formatTOML(v)
	}
}

func formatTOML(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		s := make([]string, len(x))
		for i, e := range x {
			s[i] = formatTOML(e)
		}
		return "[" + strings.Join(s, ", ") + "]"
	case map[string]any:
		keys := slices.Sorted(maps.Keys(x))
		s := make([]string, len(keys))
		for i, k := range keys {
			s[i] = k + " = " + formatTOML(x[k])
		}
		return "{" + strings.Join(s, ", ") + "}"
	}
	return fmt.Sprint(v)
}

// Runs is how many runs Expand makes: the product of the axes' lengths
// times the seeds.
func (s *Scenario) Runs() int {
	n := len(s.Seeds)
	for _, a := range s.Sweep {
		n *= len(a.Values)
		if n > MaxRuns {
			return MaxRuns + 1
		}
	}
	return n
}

// Expand makes the runs of the study: one per combination of sweep values
// (the last axis varying fastest) and per seed of s.Seeds. Each Run's
// Scenario is a deep copy holding only the run's seed and no sweep. With a
// sweep, each combination is applied to the file as decoded and decoded
// again, so it is checked exactly like the file itself, and a combination
// that is invalid (a piece size below a swept chunk size) is an error
// naming the values; fields changed in code after Parse are then not seen,
// except Seeds. Without a sweep the copy is of s as it is, validated.
func (s *Scenario) Expand() ([]Run, error) {
	if n := s.Runs(); n > MaxRuns {
		return nil, &Error{File: s.File, Line: s.lines["sweep"], Key: "sweep", Msg: fmt.Sprintf("more than %d runs", MaxRuns)}
	}
	if len(s.Sweep) > 0 && s.tree == nil {
		return nil, &Error{File: s.File, Key: "sweep", Msg: "a sweep needs a scenario parsed from TOML (Parse or Load)"}
	}
	combos := 1
	for _, a := range s.Sweep {
		combos *= len(a.Values)
	}
	var runs []Run
	idx := make([]int, len(s.Sweep))
	for c := range combos {
		// Mixed-radix digits of c, the last axis fastest.
		rest := c
		for i := len(s.Sweep) - 1; i >= 0; i-- {
			idx[i] = rest % len(s.Sweep[i].Values)
			rest /= len(s.Sweep[i].Values)
		}
		var base *Scenario
		params := make([]Param, len(s.Sweep))
		if len(s.Sweep) > 0 {
			tree := s.tree
			swept := map[string]string{}
			for i, a := range s.Sweep {
				v := a.Values[idx[i]]
				var err error
				if tree, err = override(tree, a.Key, v); err != nil {
					return nil, &Error{File: s.File, Line: s.lines["sweep."+a.Key], Key: "sweep." + a.Key, Msg: err.Error()}
				}
				params[i] = Param{Key: a.Key, Value: FormatValue(v)}
				swept[a.Key] = a.Key + " = " + FormatValue(v)
			}
			sc, errs := build(s.File, tree, s.lines, swept)
			if len(errs) > 0 {
				return nil, fmt.Errorf("sweep combination %s: %w", paramString(params), joinErrs(errs))
			}
			base = sc
		} else {
			if err := s.Validate(); err != nil {
				return nil, err
			}
			base = s
		}
		for _, seed := range s.Seeds {
			rs := base.clone()
			rs.Seeds = []int64{seed}
			rs.Sweep = nil
			rs.tree = nil
			runs = append(runs, Run{Index: len(runs), Seed: seed, Params: slices.Clone(params), Scenario: rs})
		}
	}
	return runs, nil
}

func paramString(ps []Param) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Key + "=" + p.Value
	}
	return strings.Join(s, " ")
}

// clone is a deep copy: no slice is shared with s.
func (s *Scenario) clone() *Scenario {
	c := *s
	c.Seeds = slices.Clone(s.Seeds)
	c.Failures = slices.Clone(s.Failures)
	c.Sweep = make([]Axis, len(s.Sweep))
	for i, a := range s.Sweep {
		c.Sweep[i] = Axis{Key: a.Key, Values: slices.Clone(a.Values)}
	}
	if s.Sweep == nil {
		c.Sweep = nil
	}
	for _, d := range []*Dist{&c.Topology.DevicesPerSite, &c.Topology.DeviceUp, &c.Topology.DeviceDown, &c.Topology.LAN,
		&c.Topology.UplinkUp, &c.Topology.UplinkDown, &c.Initial.Stagger, &c.Churn.Awake, &c.Churn.Asleep, &c.Churn.PowerOff} {
		d.Choices = slices.Clone(d.Choices)
		d.Weights = slices.Clone(d.Weights)
	}
	return &c
}
