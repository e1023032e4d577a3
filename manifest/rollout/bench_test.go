package rollout

import "testing"

var benchSink int

// BenchmarkEligible is a device's cost for one decision under a policy
// with three requirements.
func BenchmarkEligible(b *testing.B) {
	p, err := ParsePolicy("percent=12.5, region=eu, tier in (canary,beta), site notin (lab), min-installed=41")
	if err != nil {
		b.Fatal(err)
	}
	d := Device{ID: "12D3KooWQxLrGZQv4C4yPjcZfXPnkfPf6Yb7sPmvDNhRzNBmU8Qk", Installed: 41, Labels: map[string]string{"region": "eu", "tier": "beta", "site": "berlin"}}
	r := ReleaseRef{Channel: "stable", Version: 42}
	n := 0
	for b.Loop() {
		if Eligible(p, d, r).Eligible {
			n++
		}
	}
	benchSink = n
}
