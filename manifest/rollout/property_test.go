package rollout

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

var (
	genName = rapid.StringMatching(`[a-z0-9][a-z0-9._-]{0,8}`)
	genRef  = rapid.Custom(func(t *rapid.T) ReleaseRef {
		return ReleaseRef{Channel: rapid.SampledFrom([]string{"stable", "beta", "fleet/canary"}).Draw(t, "channel"), Version: rapid.Uint64().Draw(t, "version")}
	})
	genRequirement = rapid.Custom(func(t *rapid.T) Requirement {
		op := rapid.SampledFrom([]Op{OpEq, OpNe, OpIn, OpNotIn}).Draw(t, "op")
		n := 1
		if op == OpIn || op == OpNotIn {
			n = rapid.IntRange(1, 4).Draw(t, "n")
		}
		vals := rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"eu", "us", "uk", "canary", "beta", "rpi4", "x86"}), n, n, rapid.ID[string]).Draw(t, "values")
		return Requirement{Key: rapid.SampledFrom([]string{"region", "tier", "hardware", "site"}).Draw(t, "key"), Op: op, Values: vals}
	})
	genPolicy = rapid.Custom(func(t *rapid.T) Policy {
		p := Policy{
			BasisPoints:  rapid.Uint32Range(0, FullRollout).Draw(t, "bp"),
			MinInstalled: rapid.Uint64Range(0, 5).Draw(t, "min"),
		}
		if sel := rapid.SliceOfN(genRequirement, 0, 4).Draw(t, "selector"); len(sel) > 0 {
			p.Selector = sel
		}
		return p
	})
	genDevice = rapid.Custom(func(t *rapid.T) Device {
		d := Device{ID: rapid.StringN(1, 40, -1).Draw(t, "id"), Installed: rapid.Uint64Range(0, 6).Draw(t, "installed")}
		d.Labels = rapid.MapOfN(rapid.SampledFrom([]string{"region", "tier", "site"}), rapid.SampledFrom([]string{"eu", "us", "uk", "canary", "beta"}), 0, 3).Draw(t, "labels")
		d.Hardware = rapid.SampledFrom([]string{"", "rpi4", "x86"}).Draw(t, "hardware")
		return d
	})
)

// Raising the percentage only ever adds devices, and never changes who is
// in for any other reason.
func TestPropertyMonotonic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p, d, r := genPolicy.Draw(t, "policy"), genDevice.Draw(t, "device"), genRef.Draw(t, "release")
		wider := p
		wider.BasisPoints = rapid.Uint32Range(p.BasisPoints, FullRollout).Draw(t, "wider")
		a, b := Eligible(p, d, r), Eligible(wider, d, r)
		if a.Eligible && !b.Eligible {
			t.Fatalf("in at %d bp (%+v), out at %d bp (%+v)", p.BasisPoints, a, wider.BasisPoints, b)
		}
		if a.Cohort != b.Cohort {
			t.Fatalf("cohort moved from %d to %d", a.Cohort, b.Cohort)
		}
		if a.Reason != ReasonOutsideRollout && a.Reason != b.Reason {
			t.Fatalf("reason %s became %s though only the percentage changed", a.Reason, b.Reason)
		}
	})
}

// Over a population of devices, the set admitted at a smaller percentage
// is a subset of the set admitted at a larger one, and its size tracks the
// percentage.
func TestPropertyMonotonicPopulation(t *testing.T) {
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%d", i)
	}
	rapid.Check(t, func(t *rapid.T) {
		r := genRef.Draw(t, "release")
		a := rapid.Uint32Range(0, FullRollout).Draw(t, "a")
		b := rapid.Uint32Range(a, FullRollout).Draw(t, "b")
		for _, id := range ids {
			d := Device{ID: id}
			if Eligible(Policy{BasisPoints: a}, d, r).Eligible && !Eligible(Policy{BasisPoints: b}, d, r).Eligible {
				t.Fatalf("%s in at %d bp, out at %d bp", id, a, b)
			}
		}
	})
}

// Eligible agrees with a naive restatement of the rules.
func TestPropertyNaiveModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p, d, r := genPolicy.Draw(t, "policy"), genDevice.Draw(t, "device"), genRef.Draw(t, "release")
		want := d.Installed >= p.MinInstalled && Cohort(d.ID, r) < p.BasisPoints
		for _, req := range p.Selector {
			v, ok := d.Labels[req.Key]
			if req.Key == "hardware" && d.Hardware != "" {
				v, ok = d.Hardware, true
			}
			member := false
			for _, x := range req.Values {
				member = member || x == v
			}
			switch req.Op {
			case OpEq, OpIn:
				want = want && ok && member
			case OpNe, OpNotIn:
				want = want && ok && !member
			}
		}
		got := Eligible(p, d, r)
		if got.Eligible != want {
			t.Fatalf("Eligible = %+v, naive model says %v", got, want)
		}
		if got.Cohort >= FullRollout {
			t.Fatalf("cohort %d out of range", got.Cohort)
		}
		if again := Eligible(p, d, r); !reflect.DeepEqual(again, got) {
			t.Fatalf("not deterministic: %+v then %+v", got, again)
		}
	})
}

// Every valid policy survives String/ParsePolicy and JSON unchanged.
func TestPropertyRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := genPolicy.Draw(t, "policy")
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		q, err := ParsePolicy(p.String())
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("%q parsed to %+v, %v; want %+v", p.String(), q, err, p)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var j Policy
		if err := json.Unmarshal(b, &j); err != nil || !reflect.DeepEqual(p, j) {
			t.Fatalf("JSON %s decoded to %+v, %v", b, j, err)
		}
	})
}

// The selector is a conjunction: adding a requirement never admits more.
func TestPropertySelectorNarrows(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p, d, r := genPolicy.Draw(t, "policy"), genDevice.Draw(t, "device"), genRef.Draw(t, "release")
		if len(p.Selector) == MaxRequirements {
			return
		}
		q := p
		q.Selector = append(slices.Clone(p.Selector), genRequirement.Draw(t, "extra"))
		if Eligible(q, d, r).Eligible && !Eligible(p, d, r).Eligible {
			t.Fatalf("extra requirement %v admitted a device", q.Selector[len(q.Selector)-1])
		}
	})
}
