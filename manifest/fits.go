package manifest

import (
	"fmt"
	"slices"
	"strings"
)

// Fits checks a release against a device: its channel, that it is not
// older than what the device runs, the minimum installed version, the
// hardware and the architecture. Rollout eligibility is the caller's
// (it needs the device's labels). A Client applies it to the release it
// picks; a node applies it to a release it heard of from its peers.
func (r *Release) Fits(dev Device) error {
	name := fmt.Sprintf("release %s/%d", r.Channel, r.Version)
	switch {
	case r.Channel != dev.Channel:
		return fmt.Errorf("%s: %w: device follows %q", name, ErrWrongChannel, dev.Channel)
	case r.Version < dev.Installed:
		return fmt.Errorf("%s: %w: device runs version %d", name, ErrRollback, dev.Installed)
	case r.Version > dev.Installed && r.MinInstalled > 0 && dev.Installed < r.MinInstalled:
		return fmt.Errorf("%s: %w: needs at least %d installed, device runs %d", name, ErrMinInstalled, r.MinInstalled, dev.Installed)
	case len(r.Hardware) > 0 && !slices.Contains(r.Hardware, dev.Hardware):
		return fmt.Errorf("%s: %w: made for %s, device hardware is %q", name, ErrWrongHardware, strings.Join(r.Hardware, ", "), dev.Hardware)
	case len(r.Arch) > 0 && !slices.Contains(r.Arch, dev.Arch):
		return fmt.Errorf("%s: %w: made for %s, device arch is %q", name, ErrWrongArch, strings.Join(r.Arch, ", "), dev.Arch)
	}
	return nil
}
