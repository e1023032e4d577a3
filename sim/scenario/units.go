package scenario

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The units a scenario value can be written in. A plain number is always in
// the base unit (bytes, bytes per second, seconds); a string carries its
// unit. Unit names are case-sensitive where case changes the meaning: "Mb"
// could be megabits or megabytes, so it is refused and the message says
// what to write instead.
type unit int

const (
	unitCount    unit = iota // a plain number: devices, peers, windows
	unitBytes                // sizes: 65536, "64KiB", "1GiB", "12.5MB"
	unitRate                 // capacities in bytes/s: "20Mbit", "12.5MB/s"
	unitSeconds              // durations: 30, "30s", "2h", "0.1ms"
	unitFraction             // 0..1, or "10%"
)

func (u unit) String() string {
	switch u {
	case unitBytes:
		return "a size (65536, \"64KiB\", \"1GiB\", \"12.5MB\")"
	case unitRate:
		return "a rate (\"20Mbit\", \"1Gbit\", \"12.5MB/s\", or bytes/s as a number)"
	case unitSeconds:
		return "a duration (\"30s\", \"2h\", \"0.1ms\", or seconds as a number)"
	case unitFraction:
		return "a fraction (0.25 or \"25%\")"
	}
	return "a number"
}

var errUnit = errors.New("bad unit")

// sizeUnits are the multipliers of size suffixes. K, M, G and T alone are
// binary, as in the rest of the CLI (`--size 64M`); KB, MB, GB, TB are
// decimal; KiB, MiB, GiB, TiB binary.
var sizeUnits = map[string]float64{
	"": 1, "B": 1,
	"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
}

// rateUnits are the multipliers, to bytes per second, of rate suffixes:
// bits spelled "bit" (as tc writes them, any case), bytes spelled with a
// capital B and "/s".
var rateUnits = map[string]float64{
	"": 1, "B/s": 1,
	"bit": 1.0 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8, "tbit": 1e12 / 8,
	"kibit": 1024.0 / 8, "mibit": (1 << 20) / 8.0, "gibit": (1 << 30) / 8.0,
	"kB/s": 1e3, "KB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9, "TB/s": 1e12,
	"KiB/s": 1 << 10, "MiB/s": 1 << 20, "GiB/s": 1 << 30, "TiB/s": 1 << 40,
}

// splitNumber splits "12.5MB/s" into 12.5 and "MB/s".
func splitNumber(s string) (float64, string, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool {
		return (r < '0' || r > '9') && r != '.' && r != '-' && r != '+' && r != 'e' && r != 'E'
	})
	// An exponent's e must be followed by a digit or sign; otherwise it
	// belongs to the unit (there is no unit starting with e, but be exact).
	num, u := t, ""
	if i >= 0 {
		num, u = t[:i], strings.TrimSpace(t[i:])
	}
	if num == "" {
		return 0, "", fmt.Errorf("%q has no number", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, "", fmt.Errorf("%q is not a number", s)
	}
	return v, u, nil
}

// number reads a TOML value as a float64 in the base unit of u.
func number(v any, u unit) (float64, error) {
	var f float64
	switch x := v.(type) {
	case int64:
		f = float64(x)
	case float64:
		f = x
	case string:
		return parseUnit(x, u)
	default:
		return 0, fmt.Errorf("want %v, got %s", u, typeName(v))
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("want %v, got %v", u, f)
	}
	return f, nil
}

// parseUnit reads a string with a unit suffix.
func parseUnit(s string, u unit) (float64, error) {
	switch u {
	case unitSeconds:
		t := strings.TrimSpace(s)
		if d, err := time.ParseDuration(t); err == nil {
			return d.Seconds(), nil
		}
		v, rest, err := splitNumber(t)
		if err != nil || rest != "" {
			return 0, fmt.Errorf("%w: %q is not %v", errUnit, s, u)
		}
		return v, nil
	case unitFraction:
		t := strings.TrimSpace(s)
		if p, ok := strings.CutSuffix(t, "%"); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, fmt.Errorf("%q is not %v", s, u)
			}
			return v / 100, nil
		}
		v, err := strconv.ParseFloat(t, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("%q is not %v", s, u)
		}
		return v, nil
	case unitBytes:
		v, rest, err := splitNumber(s)
		if err != nil {
			return 0, err
		}
		m, ok := sizeUnits[rest]
		if !ok {
			return 0, fmt.Errorf("%w %q in %q: sizes take B, KiB, MiB, GiB, TiB (binary), KB, MB, GB, TB (decimal) or K, M, G, T (binary)", errUnit, rest, s)
		}
		return v * m, nil
	case unitRate:
		v, rest, err := splitNumber(s)
		if err != nil {
			return 0, err
		}
		if m, ok := rateUnits[rest]; ok {
			return v * m, nil
		}
		low := strings.ToLower(strings.TrimSuffix(rest, "/s"))
		if m, ok := rateUnits[low]; ok && strings.HasSuffix(low, "bit") {
			return v * m, nil
		}
		if strings.HasSuffix(rest, "b") || strings.HasSuffix(low, "bps") || strings.HasSuffix(rest, "b/s") {
			return 0, fmt.Errorf("%w %q in %q is ambiguous: write bits as Mbit (\"20Mbit\") or bytes as MB/s (\"2.5MB/s\")", errUnit, rest, s)
		}
		if strings.HasSuffix(rest, "B") {
			return 0, fmt.Errorf("%w %q in %q: a rate in bytes is written per second (\"%sB/s\")", errUnit, rest, s, strings.TrimSuffix(strings.TrimSpace(s), "B"))
		}
		return 0, fmt.Errorf("%w %q in %q: rates take bit, kbit, Mbit, Gbit (bits per second) or B/s, KB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s", errUnit, rest, s)
	}
	v, rest, err := splitNumber(s)
	if err != nil || rest != "" {
		return 0, fmt.Errorf("want %v, got %q", u, s)
	}
	return v, nil
}

// typeName names a decoded TOML value's type for messages.
func typeName(v any) string {
	switch v.(type) {
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("a %T", v)
}

// formatUnit writes a value in base units of u for messages.
func formatUnit(v float64, u unit) string {
	switch u {
	case unitRate:
		if v < 0 {
			return "-" + formatRate(-v)
		}
		return formatRate(v)
	case unitSeconds:
		return strconv.FormatFloat(v, 'g', -1, 64) + "s"
	case unitBytes:
		return strconv.FormatFloat(v, 'g', -1, 64) + " bytes"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// formatRate writes bytes/s the way a scenario would: in bits, with the
// largest unit that keeps the number at least 1.
func formatRate(bps float64) string {
	b := bps * 8
	for _, u := range []struct {
		s string
		m float64
	}{{"Tbit", 1e12}, {"Gbit", 1e9}, {"Mbit", 1e6}, {"kbit", 1e3}} {
		if b >= u.m {
			return strconv.FormatFloat(b/u.m, 'g', 6, 64) + u.s
		}
	}
	return strconv.FormatFloat(b, 'g', 6, 64) + "bit"
}
