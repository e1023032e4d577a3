package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
)

// MaxDeviceID bounds a device ID.
const MaxDeviceID = 256

// Device is what a device knows about itself.
type Device struct {
	// ID is the device's stable, unique identifier (e.g. its libp2p peer
	// ID or serial number); it decides the cohort. 1 to MaxDeviceID bytes.
	ID string
	// Hardware is the hardware model. When set it is the value of label
	// "hardware", over Labels["hardware"].
	Hardware string
	// Labels are the device's other attributes: region, tier, site, ...
	Labels map[string]string
	// Installed is the version of the release the device runs now.
	Installed uint64
}

// Label returns the device's value for key.
func (d Device) Label(key string) (string, bool) {
	if key == "hardware" && d.Hardware != "" {
		return d.Hardware, true
	}
	v, ok := d.Labels[key]
	return v, ok
}

// ReleaseRef names a release for cohort drawing. It must not change when
// the publisher widens the rollout (so it is not a metadata version or
// hash): the channel and the release version.
type ReleaseRef struct {
	Channel string
	Version uint64
}

// Reason says why a device is or is not eligible: stable strings, fit for
// logs and metric labels.
type Reason string

// Reasons. Eligible checks in this order and reports the first that fails.
const (
	ReasonEligible          Reason = "eligible"
	ReasonInvalidPolicy     Reason = "invalid-policy"
	ReasonInvalidDevice     Reason = "invalid-device"
	ReasonBelowMinInstalled Reason = "below-min-installed"
	ReasonLabelMissing      Reason = "label-missing"
	ReasonLabelMismatch     Reason = "label-mismatch"
	ReasonOutsideRollout    Reason = "outside-rollout"
)

// Decision is Eligible's verdict.
type Decision struct {
	Eligible bool
	Reason   Reason
	// Detail is a human-readable explanation naming the failing field.
	Detail string
	// Cohort is the device's place for this release, 0 to FullRollout-1:
	// it is eligible by percentage when Cohort < Policy.BasisPoints. Set
	// whenever the device ID is valid, whatever the verdict.
	Cohort uint32
}

// Eligible decides whether device d may install release under policy p.
// It is pure: the same arguments always give the same Decision.
func Eligible(p Policy, d Device, release ReleaseRef) Decision {
	if err := p.Validate(); err != nil {
		return Decision{Reason: ReasonInvalidPolicy, Detail: err.Error()}
	}
	if len(d.ID) == 0 || len(d.ID) > MaxDeviceID {
		return Decision{Reason: ReasonInvalidDevice, Detail: fmt.Sprintf("device ID must be 1 to %d bytes, got %d", MaxDeviceID, len(d.ID))}
	}
	dec := Decision{Cohort: Cohort(d.ID, release)}
	if d.Installed < p.MinInstalled {
		dec.Reason = ReasonBelowMinInstalled
		dec.Detail = fmt.Sprintf("installed version %d is below the minimum %d", d.Installed, p.MinInstalled)
		return dec
	}
	for i, r := range p.Selector {
		v, ok := d.Label(r.Key)
		if !ok {
			dec.Reason = ReasonLabelMissing
			dec.Detail = fmt.Sprintf("selector[%d] %s: device has no label %q", i, r, r.Key)
			return dec
		}
		if !r.Matches(v) {
			dec.Reason = ReasonLabelMismatch
			dec.Detail = fmt.Sprintf("selector[%d] %s: device has %s=%s", i, r, r.Key, v)
			return dec
		}
	}
	if dec.Cohort >= p.BasisPoints {
		dec.Reason = ReasonOutsideRollout
		dec.Detail = fmt.Sprintf("cohort %d is outside the first %d of %d", dec.Cohort, p.BasisPoints, FullRollout)
		return dec
	}
	dec.Eligible = true
	dec.Reason = ReasonEligible
	return dec
}

// Matches reports whether a present label value v meets r.
func (r Requirement) Matches(v string) bool {
	switch r.Op {
	case OpEq, OpIn:
		return slices.Contains(r.Values, v)
	case OpNe, OpNotIn:
		return !slices.Contains(r.Values, v)
	}
	return false
}

// cohortDomain separates cohort hashes from every other SHA-256 use; a new
// drawing scheme gets a new domain.
const cohortDomain = "shoal-rollout-cohort v1\x00"

// Cohort returns the device's place, 0 to FullRollout-1, for one release.
// It is SHA-256 over a domain string, the channel, the version and the
// device ID (each length-prefixed, so no two inputs collide), mapped onto
// the range by multiplying its first 64 bits by FullRollout and keeping the
// high word, which is uniform to within 2^-50. Each release draws afresh,
// so the same devices are not always first.
func Cohort(deviceID string, release ReleaseRef) uint32 {
	h := sha256.New()
	var buf [binary.MaxVarintLen64 + 8]byte
	h.Write([]byte(cohortDomain))
	h.Write(binary.AppendUvarint(buf[:0], uint64(len(release.Channel))))
	h.Write([]byte(release.Channel))
	h.Write(binary.BigEndian.AppendUint64(buf[:0], release.Version))
	h.Write(binary.AppendUvarint(buf[:0], uint64(len(deviceID))))
	h.Write([]byte(deviceID))
	var sum [sha256.Size]byte
	x := binary.BigEndian.Uint64(h.Sum(sum[:0]))
	hi, _ := bits.Mul64(x, FullRollout)
	return uint32(hi)
}
