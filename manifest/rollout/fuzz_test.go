package rollout

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"", "percent=10", "percent=12.5,region=eu,tier in (canary,beta),region!=us,min-installed=41",
		"site notin (lab, test)", "hardware=rpi4 , percent = 0.01", "region in (eu", "percent=101",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("error %v does not wrap ErrInvalidPolicy", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("%q parsed to an invalid policy: %v", s, err)
		}
		q, err := ParsePolicy(p.String())
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("%q: String %q parses to %+v, %v; want %+v", s, p.String(), q, err, p)
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var j Policy
		if err := json.Unmarshal(b, &j); err != nil || !reflect.DeepEqual(p, j) {
			t.Fatalf("%q: JSON %s decodes to %+v, %v", s, b, j, err)
		}
	})
}

func FuzzPolicyJSON(f *testing.F) {
	f.Add([]byte(`{"basis_points":250,"selector":[{"key":"region","op":"in","values":["eu","uk"]}],"min_installed":7}`))
	f.Add([]byte(`{"basis_points":0}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Policy
		if err := json.Unmarshal(b, &p); err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("%s decoded to an invalid policy: %v", b, err)
		}
		q, err := ParsePolicy(p.String())
		if err != nil || !reflect.DeepEqual(normal(p), normal(q)) {
			t.Fatalf("%s: String %q parses to %+v, %v", b, p.String(), q, err)
		}
	})
}

// normal makes an empty selector nil, the one difference JSON allows.
func normal(p Policy) Policy {
	if len(p.Selector) == 0 {
		p.Selector = nil
	}
	return p
}
