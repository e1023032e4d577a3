package fleet

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrRate is a rate that does not parse.
var ErrRate = errors.New("fleet: bad rate")

// rateUnits are tc(8)'s rate units: a bare number and "bit" are bits per
// second, "bps" is bytes per second (not bits), SI prefixes are powers of
// 1000 and IEC ones (kibit, mibps) powers of 1024.
var rateUnits = map[string]float64{
	"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
	"kibit": 1 << 10, "mibit": 1 << 20, "gibit": 1 << 30, "tibit": 1 << 40,
	"bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
	"kibps": 8 << 10, "mibps": 8 << 20, "gibps": 8 << 30, "tibps": 8 << 40,
}

// ParseRate reads a link rate as tc(8) writes it ("20mbit", "1.5gbit",
// "500kbps", case-insensitive, an optional "/s") and returns bits per
// second. "0", "" and "unlimited" are no cap (0).
func ParseRate(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "/s")
	if t == "" || t == "unlimited" {
		return 0, nil
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	mult, ok := rateUnits[unit]
	v, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || v < 0 || math.IsInf(v*mult, 0) || v*mult >= 1<<62 {
		return 0, fmt.Errorf("%w %q (want e.g. 20mbit, 1gbit, 500kbps: tc units, bps is bytes)", ErrRate, s)
	}
	bits := int64(math.Round(v * mult))
	if v > 0 && bits < 8 {
		return 0, fmt.Errorf("%w %q: below one byte per second", ErrRate, s)
	}
	return bits, nil
}

// FormatRate writes bits per second for people: "20 Mbit/s", "uncapped".
func FormatRate(bits int64) string {
	switch {
	case bits <= 0:
		return "uncapped"
	case bits >= 1e9 && bits%1e7 == 0:
		return strconv.FormatFloat(float64(bits)/1e9, 'f', -1, 64) + " Gbit/s"
	case bits >= 1e6 && bits%1e4 == 0:
		return strconv.FormatFloat(float64(bits)/1e6, 'f', -1, 64) + " Mbit/s"
	case bits >= 1e3 && bits%10 == 0:
		return strconv.FormatFloat(float64(bits)/1e3, 'f', -1, 64) + " kbit/s"
	}
	return strconv.FormatInt(bits, 10) + " bit/s"
}
