package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

var rel = ReleaseRef{Channel: "stable", Version: 42}

// findDevice returns a device ID whose cohort for rel satisfies want.
func findDevice(t *testing.T, want func(uint32) bool) string {
	t.Helper()
	for i := range 100000 {
		id := fmt.Sprintf("dev-%d", i)
		if want(Cohort(id, rel)) {
			return id
		}
	}
	t.Fatal("no such device")
	return ""
}

func TestEligibleReasons(t *testing.T) {
	low := findDevice(t, func(c uint32) bool { return c < 500 })
	high := findDevice(t, func(c uint32) bool { return c >= 9500 })
	eu := map[string]string{"region": "eu", "tier": "canary"}
	sel := func(s string) []Requirement {
		p, err := ParsePolicy(s)
		if err != nil {
			t.Fatal(err)
		}
		return p.Selector
	}
	cases := []struct {
		name   string
		p      Policy
		d      Device
		reason Reason
	}{
		{"everyone", Policy{BasisPoints: FullRollout}, Device{ID: high}, ReasonEligible},
		{"inside 10%", Policy{BasisPoints: 1000}, Device{ID: low}, ReasonEligible},
		{"outside 10%", Policy{BasisPoints: 1000}, Device{ID: high}, ReasonOutsideRollout},
		{"zero policy admits nobody", Policy{}, Device{ID: low}, ReasonOutsideRollout},
		{"at minimum", Policy{BasisPoints: FullRollout, MinInstalled: 41}, Device{ID: low, Installed: 41}, ReasonEligible},
		{"below minimum", Policy{BasisPoints: FullRollout, MinInstalled: 41}, Device{ID: low, Installed: 40}, ReasonBelowMinInstalled},
		{"= matches", Policy{BasisPoints: FullRollout, Selector: sel("region=eu")}, Device{ID: low, Labels: eu}, ReasonEligible},
		{"= mismatch", Policy{BasisPoints: FullRollout, Selector: sel("region=us")}, Device{ID: low, Labels: eu}, ReasonLabelMismatch},
		{"= missing", Policy{BasisPoints: FullRollout, Selector: sel("site=berlin")}, Device{ID: low, Labels: eu}, ReasonLabelMissing},
		{"!= matches", Policy{BasisPoints: FullRollout, Selector: sel("region!=us")}, Device{ID: low, Labels: eu}, ReasonEligible},
		{"!= mismatch", Policy{BasisPoints: FullRollout, Selector: sel("region!=eu")}, Device{ID: low, Labels: eu}, ReasonLabelMismatch},
		{"!= missing", Policy{BasisPoints: FullRollout, Selector: sel("region!=us")}, Device{ID: low}, ReasonLabelMissing},
		{"in matches", Policy{BasisPoints: FullRollout, Selector: sel("tier in (beta, canary)")}, Device{ID: low, Labels: eu}, ReasonEligible},
		{"in mismatch", Policy{BasisPoints: FullRollout, Selector: sel("tier in (beta,ga)")}, Device{ID: low, Labels: eu}, ReasonLabelMismatch},
		{"in missing", Policy{BasisPoints: FullRollout, Selector: sel("tier in (beta)")}, Device{ID: low}, ReasonLabelMissing},
		{"notin matches", Policy{BasisPoints: FullRollout, Selector: sel("tier notin (lab)")}, Device{ID: low, Labels: eu}, ReasonEligible},
		{"notin mismatch", Policy{BasisPoints: FullRollout, Selector: sel("tier notin (lab,canary)")}, Device{ID: low, Labels: eu}, ReasonLabelMismatch},
		{"notin missing", Policy{BasisPoints: FullRollout, Selector: sel("tier notin (lab)")}, Device{ID: low}, ReasonLabelMissing},
		{"hardware field", Policy{BasisPoints: FullRollout, Selector: sel("hardware in (rpi4,rpi5)")}, Device{ID: low, Hardware: "rpi5"}, ReasonEligible},
		{"hardware field wins", Policy{BasisPoints: FullRollout, Selector: sel("hardware=rpi4")}, Device{ID: low, Hardware: "rpi5", Labels: map[string]string{"hardware": "rpi4"}}, ReasonLabelMismatch},
		{"hardware label", Policy{BasisPoints: FullRollout, Selector: sel("hardware=rpi4")}, Device{ID: low, Labels: map[string]string{"hardware": "rpi4"}}, ReasonEligible},
		{"all requirements", Policy{BasisPoints: FullRollout, Selector: sel("region=eu,tier=beta")}, Device{ID: low, Labels: eu}, ReasonLabelMismatch},
		{"minimum before labels", Policy{BasisPoints: FullRollout, MinInstalled: 5, Selector: sel("region=us")}, Device{ID: low, Labels: eu}, ReasonBelowMinInstalled},
		{"labels before percentage", Policy{BasisPoints: 1, Selector: sel("region=us")}, Device{ID: high, Labels: eu}, ReasonLabelMismatch},
		{"empty device ID", Policy{BasisPoints: FullRollout}, Device{}, ReasonInvalidDevice},
		{"long device ID", Policy{BasisPoints: FullRollout}, Device{ID: strings.Repeat("x", MaxDeviceID+1)}, ReasonInvalidDevice},
		{"over 100%", Policy{BasisPoints: FullRollout + 1}, Device{ID: low}, ReasonInvalidPolicy},
		{"bad operator", Policy{BasisPoints: FullRollout, Selector: []Requirement{{Key: "a", Op: "~", Values: []string{"b"}}}}, Device{ID: low}, ReasonInvalidPolicy},
	}
	for _, c := range cases {
		d := Eligible(c.p, c.d, rel)
		if d.Reason != c.reason || d.Eligible != (c.reason == ReasonEligible) {
			t.Errorf("%s: %+v, want %s", c.name, d, c.reason)
		}
		if c.reason != ReasonEligible && d.Detail == "" {
			t.Errorf("%s: no detail", c.name)
		}
		if c.reason != ReasonInvalidPolicy && c.reason != ReasonInvalidDevice && d.Cohort != Cohort(c.d.ID, rel) {
			t.Errorf("%s: cohort %d not reported", c.name, d.Cohort)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Requirement{Key: "region", Op: OpEq, Values: []string{"eu"}}
	many := make([]Requirement, MaxRequirements+1)
	for i := range many {
		many[i] = ok
	}
	vals := make([]string, MaxValues+1)
	for i := range vals {
		vals[i] = fmt.Sprint("v", i)
	}
	bad := map[string]Policy{
		"over 100%":          {BasisPoints: 10001},
		"too many terms":     {Selector: many},
		"empty key":          {Selector: []Requirement{{Key: "", Op: OpEq, Values: []string{"x"}}}},
		"key with space":     {Selector: []Requirement{{Key: "re gion", Op: OpEq, Values: []string{"x"}}}},
		"key starts with -":  {Selector: []Requirement{{Key: "-x", Op: OpEq, Values: []string{"x"}}}},
		"long key":           {Selector: []Requirement{{Key: strings.Repeat("k", MaxNameLen+1), Op: OpEq, Values: []string{"x"}}}},
		"reserved key":       {Selector: []Requirement{{Key: "percent", Op: OpEq, Values: []string{"5"}}}},
		"unknown op":         {Selector: []Requirement{{Key: "a", Op: "==", Values: []string{"x"}}}},
		"= with two values":  {Selector: []Requirement{{Key: "a", Op: OpEq, Values: []string{"x", "y"}}}},
		"!= with no value":   {Selector: []Requirement{{Key: "a", Op: OpNe}}},
		"in with no values":  {Selector: []Requirement{{Key: "a", Op: OpIn}}},
		"in with too many":   {Selector: []Requirement{{Key: "a", Op: OpIn, Values: vals}}},
		"repeated value":     {Selector: []Requirement{{Key: "a", Op: OpNotIn, Values: []string{"x", "x"}}}},
		"empty value":        {Selector: []Requirement{{Key: "a", Op: OpIn, Values: []string{""}}}},
		"value with comma":   {Selector: []Requirement{{Key: "a", Op: OpEq, Values: []string{"x,y"}}}},
		"value with newline": {Selector: []Requirement{{Key: "a", Op: OpEq, Values: []string{"x\n"}}}},
	}
	for name, p := range bad {
		if err := p.Validate(); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%s: %v, want ErrInvalidPolicy", name, err)
		}
	}
	good := Policy{BasisPoints: 0, Selector: []Requirement{ok, {Key: "shoal.io/tier", Op: OpIn, Values: vals[:MaxValues]}}, MinInstalled: 3}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParsePolicy(t *testing.T) {
	cases := []struct {
		in   string
		want Policy
		str  string
	}{
		{"", Policy{BasisPoints: 10000}, "percent=100"},
		{"percent=10", Policy{BasisPoints: 1000}, "percent=10"},
		{" percent = 12.5 ", Policy{BasisPoints: 1250}, "percent=12.5"},
		{"percent=0.01", Policy{BasisPoints: 1}, "percent=0.01"},
		{"percent=100.00", Policy{BasisPoints: 10000}, "percent=100"},
		{"percent=0", Policy{BasisPoints: 0}, "percent=0"},
		{"region=eu, tier in (canary,beta), region!=us, site notin(lab), min-installed=41, percent=5",
			Policy{BasisPoints: 500, MinInstalled: 41, Selector: []Requirement{
				{Key: "region", Op: OpEq, Values: []string{"eu"}},
				{Key: "tier", Op: OpIn, Values: []string{"canary", "beta"}},
				{Key: "region", Op: OpNe, Values: []string{"us"}},
				{Key: "site", Op: OpNotIn, Values: []string{"lab"}},
			}},
			"percent=5,min-installed=41,region=eu,tier in (canary,beta),region!=us,site notin (lab)"},
		{"in in ( in )", Policy{BasisPoints: 10000, Selector: []Requirement{{Key: "in", Op: OpIn, Values: []string{"in"}}}}, "percent=100,in in (in)"},
	}
	for _, c := range cases {
		got, err := ParsePolicy(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: %+v, want %+v", c.in, got, c.want)
		}
		if got.String() != c.str {
			t.Errorf("%q: String %q, want %q", c.in, got.String(), c.str)
		}
	}
	for _, in := range []string{
		",", "percent", "percent=", "percent=101", "percent=100.01", "percent=12.345", "percent=1e2",
		"percent=-1", "percent=.5", "percent=5.", "percent=10,percent=20", "percent!=10", "percent in (1)",
		"min-installed=x", "min-installed=1,min-installed=2", "min-installed=18446744073709551616",
		"region", "region=", "region==eu", "region=eu,", "region=eu;tier=x", "region in eu", "region in ()",
		"region in (eu", "region in (eu,)", "region in (eu eu)", "region in (eu,eu)", "region ~ eu", "-region=eu",
		"region=eu tier=beta", "région=eu", strings.Repeat("a", MaxPolicyText+1),
	} {
		if p, err := ParsePolicy(in); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%q: parsed as %+v (%v)", in, p, err)
		}
	}
}

func TestPolicyJSON(t *testing.T) {
	p, err := ParsePolicy("percent=2.5,region in (eu,uk),min-installed=7")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"basis_points":250,"selector":[{"key":"region","op":"in","values":["eu","uk"]}],"min_installed":7}`
	if string(b) != want {
		t.Fatalf("JSON %s, want %s", b, want)
	}
	var q Policy
	if err := json.Unmarshal(b, &q); err != nil || !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip: %+v, %v", q, err)
	}
	for name, s := range map[string]string{
		"missing basis_points":   `{"selector":[]}`,
		"unknown field":          `{"basis_points":1,"not_before":"2030-01-01"}`,
		"unknown selector field": `{"basis_points":1,"selector":[{"key":"a","op":"=","values":["b"],"weight":2}]}`,
		"over 100%":              `{"basis_points":10001}`,
		"negative":               `{"basis_points":-1}`,
		"invalid requirement":    `{"basis_points":1,"selector":[{"key":"a","op":"=","values":[]}]}`,
		"trailing data":          `{"basis_points":1} {}`,
		"not an object":          `[1]`,
	} {
		var q Policy
		if err := json.Unmarshal([]byte(s), &q); err == nil {
			t.Errorf("%s: accepted as %+v", name, q)
		}
	}
	// A policy inside other metadata decodes through the same rules.
	var meta struct {
		Rollout *Policy `json:"rollout"`
	}
	if err := json.Unmarshal([]byte(`{"rollout":{"basis_points":10000}}`), &meta); err != nil || meta.Rollout.BasisPoints != FullRollout {
		t.Fatalf("embedded: %+v, %v", meta.Rollout, err)
	}
	if err := json.Unmarshal([]byte(`{"rollout":{"basis_points":10000,"x":1}}`), &meta); err == nil {
		t.Fatal("embedded unknown field accepted")
	}
}

// TestCohortUniform draws 100,000 devices and checks that a 10% rollout
// takes 10% of them to within 4 standard deviations, that cohorts spread
// evenly over 100 buckets (chi-square), and that two releases draw nearly
// independent cohorts (10% of 10% overlap).
func TestCohortUniform(t *testing.T) {
	const n = 100000
	const bp = 1000
	p := Policy{BasisPoints: bp}
	next := ReleaseRef{Channel: "stable", Version: 43}
	var in, both int
	var buckets [100]int
	for i := range n {
		d := Device{ID: fmt.Sprintf("device-%06d", i)}
		a := Eligible(p, d, rel)
		if a.Eligible {
			in++
			if Eligible(p, d, next).Eligible {
				both++
			}
		}
		buckets[a.Cohort/100]++
	}
	sd := math.Sqrt(n * 0.1 * 0.9)
	if math.Abs(float64(in)-n*0.1) > 4*sd {
		t.Errorf("10%% rollout took %d of %d devices, want %d ± %.0f", in, n, n/10, 4*sd)
	}
	var chi2 float64
	for _, c := range buckets {
		d := float64(c) - n/100
		chi2 += d * d / (n / 100)
	}
	// 99 degrees of freedom: P(chi2 > 148.2) = 0.001.
	if chi2 > 148.2 {
		t.Errorf("cohort buckets chi-square %.1f > 148.2: %v", chi2, buckets)
	}
	sdBoth := math.Sqrt(n * 0.01 * 0.99)
	if math.Abs(float64(both)-n*0.01) > 4*sdBoth {
		t.Errorf("%d devices in both releases' 10%%, want %d ± %.0f", both, n/100, 4*sdBoth)
	}
	t.Logf("10%%: %d of %d; chi-square %.1f; in both releases: %d", in, n, chi2, both)
}

// TestCohortVector pins the cohort function: devices in the field and the
// publisher's preview must agree across versions of shoal. The values were
// computed independently (Python hashlib) from the documented construction.
func TestCohortVector(t *testing.T) {
	got := []uint32{
		Cohort("device-000000", rel),
		Cohort("device-000001", rel),
		Cohort("device-000000", ReleaseRef{Channel: "stable", Version: 43}),
		Cohort("device-000000", ReleaseRef{Channel: "beta", Version: 42}),
	}
	want := []uint32{4133, 8015, 5096, 3017}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("cohorts %v, want %v", got, want)
	}
}
