package rollout

import (
	"fmt"
	"strconv"
	"strings"
)

// Reserved keys of the command-line syntax.
const (
	keyPercent      = "percent"
	keyMinInstalled = "min-installed"
)

// MaxPolicyText bounds the text ParsePolicy accepts.
const MaxPolicyText = 4096

// ParsePolicy parses the command-line form of a policy: comma-separated
// terms, each one of
//
//	percent=P             share of devices, 0 to 100 with at most two
//	                      decimals (12.5 is 1250 basis points); default 100
//	min-installed=N       lowest installed version that may update
//	KEY=VALUE             label KEY equals VALUE
//	KEY!=VALUE            label KEY is present and not VALUE
//	KEY in (V1,V2,...)    label KEY is one of the values
//	KEY notin (V1,...)    label KEY is present and none of the values
//
// Blanks around terms, operators and values are ignored. Label terms keep
// their order; percent and min-installed may appear once each, anywhere.
// The empty string is 100% of all devices. Errors wrap ErrInvalidPolicy and
// give the byte offset.
func ParsePolicy(s string) (Policy, error) {
	if len(s) > MaxPolicyText {
		return Policy{}, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidPolicy, len(s), MaxPolicyText)
	}
	p := &parser{s: s}
	pol := Policy{BasisPoints: FullRollout}
	var sawPercent, sawMin bool
	p.blank()
	if p.done() {
		return pol, nil
	}
	for {
		start := p.i
		key := p.name()
		if key == "" {
			return Policy{}, p.errorf(start, "want a label key, percent or min-installed")
		}
		p.blank()
		op, err := p.op()
		if err != nil {
			return Policy{}, err
		}
		p.blank()
		switch {
		case key == keyPercent || key == keyMinInstalled:
			if op != OpEq {
				return Policy{}, p.errorf(start, "%s takes =", key)
			}
			vstart := p.i
			v := p.number()
			if key == keyPercent {
				if sawPercent {
					return Policy{}, p.errorf(start, "percent given twice")
				}
				sawPercent = true
				bp, err := parsePercent(v)
				if err != nil {
					return Policy{}, p.errorf(vstart, "%v", err)
				}
				pol.BasisPoints = bp
			} else {
				if sawMin {
					return Policy{}, p.errorf(start, "min-installed given twice")
				}
				sawMin = true
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return Policy{}, p.errorf(vstart, "min-installed %q is not a version number", v)
				}
				pol.MinInstalled = n
			}
		case op == OpEq || op == OpNe:
			vstart := p.i
			v := p.name()
			if v == "" {
				return Policy{}, p.errorf(vstart, "want a value after %s%s", key, op)
			}
			pol.Selector = append(pol.Selector, Requirement{Key: key, Op: op, Values: []string{v}})
		default:
			vals, err := p.set()
			if err != nil {
				return Policy{}, err
			}
			pol.Selector = append(pol.Selector, Requirement{Key: key, Op: op, Values: vals})
		}
		p.blank()
		if p.done() {
			break
		}
		if s[p.i] != ',' {
			return Policy{}, p.errorf(p.i, "want ',' between terms")
		}
		p.i++
		p.blank()
	}
	if err := pol.Validate(); err != nil {
		return Policy{}, err
	}
	return pol, nil
}

// String returns p in the syntax ParsePolicy reads: percent first, then
// min-installed when set, then the selector in order. For a valid policy,
// ParsePolicy(p.String()) gives p back.
func (p Policy) String() string {
	var b strings.Builder
	b.WriteString(keyPercent + "=" + formatPercent(p.BasisPoints))
	if p.MinInstalled > 0 {
		b.WriteString("," + keyMinInstalled + "=" + strconv.FormatUint(p.MinInstalled, 10))
	}
	for _, r := range p.Selector {
		b.WriteByte(',')
		b.WriteString(r.String())
	}
	return b.String()
}

// String returns r in ParsePolicy's syntax.
func (r Requirement) String() string {
	switch r.Op {
	case OpEq, OpNe:
		if len(r.Values) == 1 {
			return r.Key + string(r.Op) + r.Values[0]
		}
	}
	return r.Key + " " + string(r.Op) + " (" + strings.Join(r.Values, ",") + ")"
}

// parsePercent reads "12", "12.5" or "0.01" into basis points, with no
// floating point, so that the same text always gives the same cohort
// boundary.
func parsePercent(v string) (uint32, error) {
	whole, frac, hasDot := strings.Cut(v, ".")
	if whole == "" || len(whole) > 3 || (hasDot && (frac == "" || len(frac) > 2)) {
		return 0, fmt.Errorf("percent %q: want 0 to 100 with at most two decimals", v)
	}
	w, err := strconv.ParseUint(whole, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("percent %q: %w", v, err)
	}
	f := uint64(0)
	if hasDot {
		if f, err = strconv.ParseUint(frac, 10, 32); err != nil {
			return 0, fmt.Errorf("percent %q: %w", v, err)
		}
		if len(frac) == 1 {
			f *= 10
		}
	}
	bp := w*100 + f
	if bp > FullRollout {
		return 0, fmt.Errorf("percent %q is more than 100", v)
	}
	return uint32(bp), nil
}

func formatPercent(bp uint32) string {
	s := strconv.FormatUint(uint64(bp/100), 10)
	switch f := bp % 100; {
	case f == 0:
	case f%10 == 0:
		s += "." + strconv.FormatUint(uint64(f/10), 10)
	default:
		s += fmt.Sprintf(".%02d", f)
	}
	return s
}

type parser struct {
	s string
	i int
}

func (p *parser) done() bool { return p.i >= len(p.s) }

func (p *parser) blank() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// name reads a run of label-name bytes (it may be empty, or too long; the
// validator says so with the field's name).
func (p *parser) name() string {
	start := p.i
	for p.i < len(p.s) && nameByte(p.s[p.i], p.i == start) {
		p.i++
	}
	return p.s[start:p.i]
}

// number reads digits and dots, for percent and min-installed.
func (p *parser) number() string {
	start := p.i
	for p.i < len(p.s) && (p.s[p.i] >= '0' && p.s[p.i] <= '9' || p.s[p.i] == '.') {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *parser) op() (Op, error) {
	rest := p.s[p.i:]
	switch {
	case strings.HasPrefix(rest, "!="):
		p.i += 2
		return OpNe, nil
	case strings.HasPrefix(rest, "="):
		p.i++
		return OpEq, nil
	}
	start := p.i
	switch w := p.name(); w {
	case "in":
		return OpIn, nil
	case "notin":
		return OpNotIn, nil
	}
	return "", p.errorf(start, "want =, !=, in or notin")
}

// set reads "(v1, v2, ...)".
func (p *parser) set() ([]string, error) {
	if p.done() || p.s[p.i] != '(' {
		return nil, p.errorf(p.i, "want '(' to open the set")
	}
	p.i++
	var vals []string
	for {
		p.blank()
		start := p.i
		v := p.name()
		if v == "" {
			return nil, p.errorf(start, "want a value in the set")
		}
		if len(vals) == MaxValues {
			return nil, p.errorf(start, "more than %d values", MaxValues)
		}
		vals = append(vals, v)
		p.blank()
		if p.done() {
			return nil, p.errorf(p.i, "set not closed with ')'")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case ')':
			p.i++
			return vals, nil
		default:
			return nil, p.errorf(p.i, "want ',' or ')' in the set")
		}
	}
}

func (p *parser) errorf(at int, format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d of %q: %s", ErrInvalidPolicy, at, p.s, fmt.Sprintf(format, args...))
}
