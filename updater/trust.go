package updater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/rollout"
	"github.com/shoalnet/shoal/updater/fsys"
)

// ErrNotEligible: the release's rollout policy does not include this
// device (yet).
var ErrNotEligible = errors.New("updater: device not in this release's rollout")

// trust is the device's trust client, built once by Open from [trust]
// (manifest.TrustOptions): the provisioned root, the log key, the witness
// when the log is required, and the device's rollout check, remembering
// their state in the state directory through the device's filesystem. A failure to load is
// kept and reported by every verification, so that commands that only
// look at the device still work without it.
type trust struct {
	client *manifest.Client
	err    error
}

func loadTrust(d *Device) trust {
	o := d.Config.TrustOptions()
	o.State = d.trustState()
	t, err := o.Load()
	if err != nil {
		return trust{err: err}
	}
	cfg := t.ClientConfig()
	cfg.Now, cfg.Rollout = d.now, d.rollout
	client, err := manifest.NewClient(cfg)
	return trust{client: client, err: err}
}

// Self is what the device says about itself when it checks a release:
// its identity, channel, hardware, architecture and installed version.
func (d *Device) Self() manifest.Device {
	c := d.Config.Device
	return manifest.Device{ID: c.ID, Channel: c.Channel, Hardware: c.Hardware, Arch: c.Arch,
		Installed: d.m.State().Installed}
}

// Eligible decides whether the device takes release r now: it must fit
// the device (channel, version, hardware, arch) and its rollout policy
// must include the device, judged from the device's own labels ([device]
// id, hardware and labels such as region or tier) and installed version.
// Errors wrap manifest's sentinels or ErrNotEligible.
func (d *Device) Eligible(r *manifest.Release) error {
	dev := d.Self()
	if err := r.Fits(dev); err != nil {
		return err
	}
	return d.rollout(r, dev)
}

// rollout evaluates r's rollout policy for dev with the device's labels.
func (d *Device) rollout(r *manifest.Release, dev manifest.Device) error {
	return RolloutCheck(d.Config.Device.Labels)(r, dev)
}

// RolloutCheck returns the rollout decision (manifest/rollout) for a
// device with these labels, in the form manifest.ClientConfig.Rollout
// takes: nil when the release's policy includes the device, else an error
// wrapping ErrNotEligible (or manifest.ErrBadMetadata for a policy that
// does not parse).
func RolloutCheck(labels map[string]string) func(*manifest.Release, manifest.Device) error {
	return func(r *manifest.Release, dev manifest.Device) error {
		if len(r.Rollout) == 0 {
			return nil
		}
		var p rollout.Policy
		if err := json.Unmarshal(r.Rollout, &p); err != nil {
			return fmt.Errorf("%w: rollout policy: %w", manifest.ErrBadMetadata, err)
		}
		dec := rollout.Eligible(p, rollout.Device{ID: dev.ID, Hardware: dev.Hardware, Labels: labels, Installed: dev.Installed},
			rollout.ReleaseRef{Channel: r.Channel, Version: r.Version})
		if !dec.Eligible {
			return fmt.Errorf("%w: %s: %s", ErrNotEligible, dec.Reason, dec.Detail)
		}
		return nil
	}
}

// Verify walks the TUF chain from what the device trusts over mirrors
// (directories, HTTP origins, bundles, or metadata a peer announced),
// remembers the newly trusted metadata in the state directory, and
// returns the newest release of the device's channel with its indexes,
// checked against the device and its rollout. A failure is recorded in
// the audit log.
func (d *Device) Verify(ctx context.Context, mirrors []fetch.Fetcher) (*manifest.Verified, error) {
	if d.readOnly {
		// Verifying remembers what the device trusts from now on.
		return nil, fmt.Errorf("%w: cannot verify", ErrReadOnly)
	}
	v, err := d.verify(ctx, mirrors)
	if err != nil {
		d.record("rejected", "", err.Error())
	}
	return v, err
}

func (d *Device) verify(ctx context.Context, mirrors []fetch.Fetcher) (*manifest.Verified, error) {
	if d.trust.err != nil {
		return nil, d.trust.err
	}
	return d.trust.client.VerifyFrom(ctx, d.Self(), mirrors)
}

// trustState keeps the trusted metadata and the log checkpoint in the
// state directory's trust/ through the device's filesystem, so the
// power-cut simulator covers those writes like every other.
func (d *Device) trustState() manifest.StateStore {
	return fsysState{fs: d.fs, dir: d.statePath("trust")}
}

type fsysState struct {
	fs  fsys.FS
	dir string
}

// Path names a state file in errors.
func (s fsysState) Path(name string) string { return filepath.Join(s.dir, name) }

func (s fsysState) ReadFile(name string, max int64) ([]byte, error) {
	p := s.Path(name)
	// O_NONBLOCK: a named pipe planted here is refused below, not waited on.
	f, err := s.fs.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", p, fetch.ErrNotRegular)
	}
	return fetch.ReadAll(f, p, max)
}

func (s fsysState) WriteFile(name string, data []byte) error {
	if err := fsys.MkdirAllDurable(s.fs, s.dir, 0o700); err != nil {
		return fmt.Errorf("trust state: %w", err)
	}
	return fsys.WriteFileAtomic(s.fs, s.Path(name), data, 0o644)
}
