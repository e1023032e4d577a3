package rollout_test

import (
	"fmt"
	"log"

	"github.com/shoalnet/shoal/manifest/rollout"
)

func Example() {
	// Publisher: 25% of EU canary and beta devices that already run 41 or
	// later, as typed on the command line.
	p, err := rollout.ParsePolicy("percent=25, region=eu, tier in (canary,beta), min-installed=41")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p)

	release := rollout.ReleaseRef{Channel: "stable", Version: 42}
	devices := []rollout.Device{
		{ID: "device-000000", Installed: 41, Labels: map[string]string{"region": "eu", "tier": "canary"}},
		{ID: "device-000001", Installed: 41, Labels: map[string]string{"region": "eu", "tier": "beta"}},
		{ID: "device-000002", Installed: 41, Labels: map[string]string{"region": "us", "tier": "beta"}},
		{ID: "device-000003", Installed: 40, Labels: map[string]string{"region": "eu", "tier": "beta"}},
		{ID: "device-000004", Installed: 41, Labels: map[string]string{"region": "eu"}},
		{ID: "device-000009", Installed: 43, Labels: map[string]string{"region": "eu", "tier": "canary"}},
	}
	// Device: each decides for itself, and all agree with the preview.
	for _, d := range devices {
		dec := rollout.Eligible(p, d, release)
		fmt.Printf("%s cohort %4d: %s\n", d.ID, dec.Cohort, dec.Reason)
	}
	// Output:
	// percent=25,min-installed=41,region=eu,tier in (canary,beta)
	// device-000000 cohort 4133: outside-rollout
	// device-000001 cohort 8015: outside-rollout
	// device-000002 cohort 5076: label-mismatch
	// device-000003 cohort 6063: below-min-installed
	// device-000004 cohort 6230: label-missing
	// device-000009 cohort  207: eligible
}
