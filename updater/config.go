package updater

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/shoalnet/shoal/internal/tomlstrict"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/state"
)

// Config is a device's shoal.toml. Relative paths are relative to the
// directory holding the file.
type Config struct {
	Device DeviceConfig `toml:"device"`
	Trust  TrustConfig  `toml:"trust"`
	// State is the directory for update state, slot indexes, trusted
	// metadata and the audit log.
	State  string       `toml:"state"`
	Slots  SlotsConfig  `toml:"slots"`
	Boot   BootConfig   `toml:"boot"`
	Health HealthConfig `toml:"health,omitempty"`
	Update UpdateConfig `toml:"update,omitempty"`

	dir string // directory of the config file
}

// DeviceConfig says what the device is, for release and rollout checks.
type DeviceConfig struct {
	ID       string `toml:"id"`
	Channel  string `toml:"channel"`
	Hardware string `toml:"hardware,omitempty"`
	Arch     string `toml:"arch,omitempty"`
	// Labels are the device's other attributes (region, tier, site, ...)
	// that rollout selectors match.
	Labels map[string]string `toml:"labels,omitempty"`
}

// TrustConfig names the provisioned TUF root and, optionally, the
// transparency log's verifier key.
type TrustConfig struct {
	Root string `toml:"root"`
	// LogKey is the log's verifier key file (log.pub from `shoal keys
	// init`: one key a line).
	LogKey string `toml:"log_key,omitempty"`
	// RequireLog: install only releases whose targets metadata the log
	// proves, in a checkpoint consistent with the one remembered in the
	// state directory (manifest.LogWitness). Needs LogKey.
	RequireLog bool `toml:"require_log,omitempty"`
}

// SlotsConfig names the two slots: image files or block devices.
type SlotsConfig struct {
	A string `toml:"a"`
	B string `toml:"b"`
	// Artifact is the release artifact installed into the slots, matched
	// against each artifact's slot field, then its name (default
	// "rootfs"; a release with a single artifact needs no match).
	Artifact string `toml:"artifact,omitempty"`
}

// BootConfig selects the boot adapter.
type BootConfig struct {
	// Adapter is file, grub, uboot or bls.
	Adapter string `toml:"adapter"`
	// Path is the adapter's state: the JSON file (file), the GRUB
	// environment block (grub), the fw_env.config-style file naming the
	// environment copies (uboot), or the ESP directory holding
	// loader/entries (bls).
	Path string `toml:"path"`
	// Tries is how many boots a new slot gets before the bootloader falls
	// back (default 3).
	Tries int `toml:"tries,omitempty"`
	// Cmdline is where the booted slot is read from (shoal.slot=X);
	// default /proc/cmdline. A virtual device points it at a file that
	// `shoal device reboot` writes.
	Cmdline string `toml:"cmdline,omitempty"`
	// RebootCommand is run when an update asks for a reboot and the
	// caller allows it (e.g. "systemctl reboot").
	RebootCommand string `toml:"reboot_command,omitempty"`
	// Virtual marks a file-backed virtual device: `shoal device reboot`
	// simulates the bootloader.
	Virtual bool `toml:"virtual,omitempty"`
}

// UpdateConfig is the [update] table: bounds on one update.
type UpdateConfig struct {
	// Timeout bounds one `update apply` from start to end: verification,
	// download, install and flip (default DefaultApplyTimeout). An apply
	// cut off by it resumes where it stopped the next time.
	Timeout Duration `toml:"timeout,omitempty"`
	// MinRate is the transfer rate in bytes per second below which an
	// HTTP source counts as stalled and is dropped (default: the fetch
	// package's).
	MinRate int64 `toml:"min_rate,omitempty"`
}

// DefaultApplyTimeout bounds an apply when [update] timeout is not set:
// enough for a multi-GiB image over a thin link, finite so that a stuck
// source cannot keep a device busy forever.
const DefaultApplyTimeout = 12 * time.Hour

// ApplyTimeout is the configured bound of one apply.
func (c *Config) ApplyTimeout() time.Duration {
	if c.Update.Timeout.Duration > 0 {
		return c.Update.Timeout.Duration
	}
	return DefaultApplyTimeout
}

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("updater: bad configuration")

// LoadConfig reads and checks a config file. Unknown keys are errors that
// name the key, so a typo does not silently disable a health check.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses a config; dir resolves relative paths.
func ParseConfig(b []byte, dir string) (*Config, error) {
	var c Config
	if err := tomlstrict.Decode(b, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	c.dir, _ = filepath.Abs(dir)
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Device.Channel == "":
		return bad("[device] channel is required")
	case c.Trust.Root == "":
		return bad("[trust] root is required (the provisioned root.json)")
	case c.Trust.RequireLog && c.Trust.LogKey == "":
		return bad("[trust] require_log needs log_key (the log's verifier key, log.pub)")
	case c.State == "":
		return bad("state (directory) is required")
	case c.Slots.A == "" || c.Slots.B == "":
		return bad("[slots] a and b are required")
	case c.Slots.A == c.Slots.B:
		return bad("[slots] a and b are the same")
	}
	switch c.Boot.Adapter {
	case "file", "grub", "uboot", "bls":
	case "":
		return bad("[boot] adapter is required (file, grub, uboot or bls)")
	default:
		return bad("[boot] adapter %q is not file, grub, uboot or bls", c.Boot.Adapter)
	}
	if c.Boot.Path == "" {
		return bad("[boot] path is required")
	}
	if c.Update.MinRate < 0 {
		return bad("[update] min_rate %d is negative", c.Update.MinRate)
	}
	if c.Boot.Tries == 0 {
		c.Boot.Tries = state.DefaultTries
	}
	if c.Boot.Tries < 1 || c.Boot.Tries > boot.MaxTries {
		return bad("[boot] tries %d not in 1..%d", c.Boot.Tries, boot.MaxTries)
	}
	if c.Slots.Artifact == "" {
		c.Slots.Artifact = "rootfs"
	}
	if c.Device.ID == "" {
		h, _ := os.Hostname()
		c.Device.ID = h
	}
	return nil
}

// TrustOptions is [trust] with paths resolved, as every verifying command
// takes it. The state is the caller's to set.
func (c *Config) TrustOptions() manifest.TrustOptions {
	return manifest.TrustOptions{Root: c.Path(c.Trust.Root), LogKey: c.Path(c.Trust.LogKey), RequireLog: c.Trust.RequireLog}
}

// Path resolves p relative to the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// SlotPath returns the path of slot "A" or "B".
func (c *Config) SlotPath(slot string) string {
	if slot == "B" {
		return c.Path(c.Slots.B)
	}
	return c.Path(c.Slots.A)
}

// Encode writes the config as TOML, in the form ParseConfig reads.
func (c *Config) Encode() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# shoal device configuration; see docs/device.md\n")
	if err := toml.NewEncoder(&buf).Encode(c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
