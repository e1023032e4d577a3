package rollout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// ErrInvalidPolicy is wrapped by every validation and parse error.
var ErrInvalidPolicy = errors.New("rollout: invalid policy")

// FullRollout is 100% in basis points.
const FullRollout = 10000

// Limits that keep a policy small enough to read and cheap to evaluate.
const (
	MaxRequirements = 16 // requirements in one selector
	MaxValues       = 32 // values in one in/notin set
	MaxNameLen      = 63 // bytes in a label key or value
)

// Policy says which devices may install a release.
//
// The zero Policy admits nobody (0%); a release that should reach everyone
// carries BasisPoints: FullRollout, or no policy at all.
type Policy struct {
	// BasisPoints is the share of devices in the rollout, in hundredths of
	// a percent: 0 to FullRollout (10000). Required in JSON.
	BasisPoints uint32 `json:"basis_points"`
	// Selector lists label requirements a device must all meet.
	Selector []Requirement `json:"selector,omitempty"`
	// MinInstalled is the lowest installed version that may take the
	// release (0: any), for releases that need a migration step shipped in
	// an earlier one.
	MinInstalled uint64 `json:"min_installed,omitempty"`
}

// Op is a label requirement operator.
type Op string

// Operators. Every operator requires the device to have the label: a device
// that does not say where it is is not taken to be outside the US.
const (
	OpEq    Op = "="     // label equals the one value
	OpNe    Op = "!="    // label is present and differs from the one value
	OpIn    Op = "in"    // label is one of the values
	OpNotIn Op = "notin" // label is present and none of the values
)

// Requirement is one label condition.
type Requirement struct {
	Key    string   `json:"key"`
	Op     Op       `json:"op"`
	Values []string `json:"values"`
}

// Validate reports whether p is well formed; errors wrap ErrInvalidPolicy
// and name the requirement and field at fault.
func (p Policy) Validate() error {
	if p.BasisPoints > FullRollout {
		return fmt.Errorf("%w: basis_points %d > %d", ErrInvalidPolicy, p.BasisPoints, FullRollout)
	}
	if len(p.Selector) > MaxRequirements {
		return fmt.Errorf("%w: %d selector requirements, limit %d", ErrInvalidPolicy, len(p.Selector), MaxRequirements)
	}
	for i, r := range p.Selector {
		if err := r.validate(); err != nil {
			return fmt.Errorf("%w: selector[%d]: %w", ErrInvalidPolicy, i, err)
		}
	}
	return nil
}

func (r Requirement) validate() error {
	if err := checkName(r.Key); err != nil {
		return fmt.Errorf("key: %w", err)
	}
	if r.Key == keyPercent || r.Key == keyMinInstalled {
		return fmt.Errorf("key %q is reserved", r.Key)
	}
	switch r.Op {
	case OpEq, OpNe:
		if len(r.Values) != 1 {
			return fmt.Errorf("%s %s: want exactly 1 value, got %d", r.Key, r.Op, len(r.Values))
		}
	case OpIn, OpNotIn:
		if len(r.Values) == 0 || len(r.Values) > MaxValues {
			return fmt.Errorf("%s %s: want 1 to %d values, got %d", r.Key, r.Op, MaxValues, len(r.Values))
		}
	default:
		return fmt.Errorf("%s: unknown operator %q", r.Key, r.Op)
	}
	for j, v := range r.Values {
		if err := checkName(v); err != nil {
			return fmt.Errorf("%s value %d: %w", r.Key, j, err)
		}
		if slices.Contains(r.Values[:j], v) {
			return fmt.Errorf("%s: value %q repeated", r.Key, v)
		}
	}
	return nil
}

// checkName accepts label keys and values: 1 to MaxNameLen bytes, starting
// with a letter or digit, then letters, digits and . _ - (and / in keys, for
// prefixes like "shoal.io/tier", which values share for simplicity).
func checkName(s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return fmt.Errorf("%q: want 1 to %d bytes", s, MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i], i == 0) {
			return fmt.Errorf("%q: byte %d (%q) not allowed", s, i, s[i])
		}
	}
	return nil
}

func nameByte(b byte, first bool) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		return true
	case first:
		return false
	}
	return b == '.' || b == '_' || b == '-' || b == '/'
}

// policyJSON mirrors Policy with basis_points as a pointer, so that a
// missing field can be told from 0%.
type policyJSON struct {
	BasisPoints  *uint32       `json:"basis_points"`
	Selector     []Requirement `json:"selector,omitempty"`
	MinInstalled uint64        `json:"min_installed,omitempty"`
}

// UnmarshalJSON decodes a policy strictly: basis_points is required,
// unknown fields are rejected (an old device must not silently ignore a
// restriction it does not understand), and the result must Validate.
func (p *Policy) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j policyJSON
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPolicy, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the policy object", ErrInvalidPolicy)
	}
	if j.BasisPoints == nil {
		return fmt.Errorf("%w: basis_points missing", ErrInvalidPolicy)
	}
	q := Policy{BasisPoints: *j.BasisPoints, Selector: j.Selector, MinInstalled: j.MinInstalled}
	if err := q.Validate(); err != nil {
		return err
	}
	*p = q
	return nil
}

// UnmarshalJSON rejects unknown fields in a requirement, for the same
// reason as Policy.UnmarshalJSON.
func (r *Requirement) UnmarshalJSON(b []byte) error {
	type plain Requirement
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var q plain
	if err := dec.Decode(&q); err != nil {
		return err
	}
	*r = Requirement(q)
	return nil
}
