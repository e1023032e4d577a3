package updater

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/fsys"
	"github.com/shoalnet/shoal/updater/state"
)

// ConfigFile is the name of a virtual device's config in its directory.
const ConfigFile = "shoal.toml"

// The files InitDevice creates in a virtual device's directory, named
// relative to it in the config so that the directory can be moved.
const (
	virtualSlotA   = "slot-a.img"
	virtualSlotB   = "slot-b.img"
	virtualRoot    = "root.json"
	virtualState   = "state"
	virtualCmdline = "cmdline"
)

// InitOptions describes a file-backed virtual device for InitDevice.
type InitOptions struct {
	// Dir is the device's directory; it is created when missing.
	Dir string
	// SlotSize is the size of each of the two slot images in bytes. The
	// images are sparse, so a large size costs no disk space up front.
	SlotSize int64
	// Trust names the root.json to provision and, optionally, the
	// transparency log's verifier key; both are checked and copied into
	// Dir. Its state fields are ignored: a new device remembers nothing.
	Trust manifest.TrustOptions
	// Device is the [device] table; an empty ID becomes Dir's base name.
	Device DeviceConfig
	// Adapter is the boot adapter (boot.Adapters) whose virtual boot
	// state is created in Dir.
	Adapter string
	// Tries is how many boots a new slot gets (1..boot.MaxTries; 0:
	// state.DefaultTries).
	Tries int
	// Artifact is the release artifact installed into the slots (default
	// "rootfs").
	Artifact string
	// Health is the [health] table; empty: none.
	Health HealthConfig
	// FS is where the device is created (default fsys.OS).
	FS fsys.FS
}

// InitDevice creates a virtual device in o.Dir: the config (ConfigFile,
// written with Config.Encode), two sparse slot images of o.SlotSize bytes,
// the boot adapter's state booting slot A (boot.InitVirtual) and copies of
// the trust files. It returns the config as LoadConfig would read it.
//
// Every option and the trust files are checked before the first write, so
// a mistake leaves nothing behind; option errors wrap ErrConfig. A
// directory that already holds a config, a slot image or boot state is
// refused (wrapping fs.ErrExist) rather than reused: an existing slot may
// be another device's, or a symlink to a slot of this one; so is a
// root.json or log.pub other than the files given. shoal.toml is written
// last, and a step that fails (a full disk, a missing grub-editenv)
// removes what the call made before it, so a retry starts clean.
func InitDevice(ctx context.Context, o InitOptions) (*Config, error) {
	f := o.FS
	if f == nil {
		f = fsys.OS{}
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if o.Tries == 0 {
		o.Tries = state.DefaultTries
	}
	switch {
	case o.Dir == "":
		return nil, bad("no device directory given")
	case o.SlotSize <= 0:
		return nil, bad("slot size %d: want more than 0 bytes", o.SlotSize)
	case o.Trust.Root == "":
		return nil, bad("no trust root (root.json) given")
	case o.Trust.RequireLog && o.Trust.LogKey == "":
		return nil, bad("requiring the transparency log needs its verifier key file")
	case o.Tries < 1 || o.Tries > boot.MaxTries:
		return nil, bad("tries %d not in 1..%d", o.Tries, boot.MaxTries)
	}
	bootPath, err := boot.VirtualPath(o.Adapter)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(o.Dir, ConfigFile)
	if err := absent(f, cfgPath); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%s already holds a device (%s exists): %w", o.Dir, ConfigFile, fs.ErrExist)
		}
		return nil, err
	}

	// Load the trust files as a device would, so that a root.json that is
	// no root or a log key that does not parse is refused here, not at
	// the device's first update.
	to := manifest.TrustOptions{Root: o.Trust.Root, LogKey: o.Trust.LogKey, RequireLog: o.Trust.RequireLog}
	tr, err := to.Load()
	if err != nil {
		return nil, err
	}
	var logBytes []byte
	if to.LogKey != "" {
		if logBytes, err = os.ReadFile(to.LogKey); err != nil {
			return nil, fmt.Errorf("log key: %w", err)
		}
	}

	dev := o.Device
	if dev.ID == "" {
		dev.ID = filepath.Base(filepath.Clean(o.Dir))
	}
	cfg := Config{
		State:  virtualState,
		Device: dev,
		Trust:  TrustConfig{Root: virtualRoot, RequireLog: o.Trust.RequireLog},
		Slots:  SlotsConfig{A: virtualSlotA, B: virtualSlotB, Artifact: o.Artifact},
		Boot:   BootConfig{Adapter: o.Adapter, Path: bootPath, Tries: o.Tries, Cmdline: virtualCmdline, Virtual: true},
		Health: o.Health,
	}
	if logBytes != nil {
		cfg.Trust.LogKey = manifest.LogPubFile
	}
	text, err := cfg.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	// The config is parsed back before anything is written: what the
	// device will read is what was checked.
	loaded, err := ParseConfig(text, o.Dir)
	if err != nil {
		return nil, err
	}
	for _, p := range []string{virtualSlotA, virtualSlotB, bootPath} {
		if err := absent(f, filepath.Join(o.Dir, p)); err != nil {
			return nil, fmt.Errorf("%s: %w", o.Dir, err)
		}
	}
	// The trust files are copied in, unless the one given is the very file
	// (a root.json already in DIR); any other file there is refused.
	copies := []struct {
		src, dst string
		data     []byte
	}{{to.Root, virtualRoot, tr.Root}}
	if logBytes != nil {
		copies = append(copies, struct {
			src, dst string
			data     []byte
		}{to.LogKey, manifest.LogPubFile, logBytes})
	}
	var write []int
	for i, c := range copies {
		dst := filepath.Join(o.Dir, c.dst)
		if same(c.src, dst) {
			continue
		}
		if err := absent(f, dst); err != nil {
			return nil, fmt.Errorf("%s: %w", o.Dir, err)
		}
		write = append(write, i)
	}

	// From here on a failure removes what this call made, so that a retry
	// is not refused for files of its own failed attempt.
	var made []string
	ok := false
	defer func() {
		if !ok {
			for _, p := range made {
				f.Remove(p) // best effort: the error returned is what matters
			}
		}
	}()
	if err := f.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := createSlots(ctx, f, loaded, o.SlotSize); err != nil {
		return nil, err
	}
	made = append(made, loaded.SlotPath("A"), loaded.SlotPath("B"))
	for _, i := range write {
		p := filepath.Join(o.Dir, copies[i].dst)
		if err := writeFile(f, p, copies[i].data, true); err != nil {
			return nil, err
		}
		made = append(made, p)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := boot.InitVirtual(o.Adapter, o.Dir, o.Tries, boot.WithFS(f)); err != nil {
		return nil, err
	}
	made = append(made, filepath.Join(o.Dir, bootPath))
	if err := writeFile(f, cfgPath, text, true); err != nil {
		return nil, err
	}
	made = append(made, cfgPath)
	if err := f.SyncDir(o.Dir); err != nil {
		return nil, err
	}
	ok = true
	return loaded, nil
}

// same reports whether a and b name one existing file.
func same(a, b string) bool {
	ai, err := os.Stat(a)
	if err != nil {
		return false
	}
	bi, err := os.Stat(b)
	return err == nil && os.SameFile(ai, bi)
}

// absent returns nil when nothing is at p, an error wrapping fs.ErrExist
// when something is, and the error of a Stat that could not tell.
func absent(f fsys.FS, p string) error {
	_, err := f.Stat(p)
	switch {
	case err == nil:
		return fmt.Errorf("%s: %w", filepath.Base(p), fs.ErrExist)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	}
	return err
}

// createSlots creates both slot images, refusing any existing file or
// symlink (O_EXCL), and removes the ones it made when it fails, so that
// a retry is not refused for files of its own failed attempt. The slots
// are then checked to be two files, as Open checks them.
func createSlots(ctx context.Context, f fsys.FS, c *Config, size int64) (err error) {
	var made []string
	defer func() {
		if err != nil {
			for _, p := range made {
				f.Remove(p) // best effort: the error that matters is err
			}
		}
	}()
	for _, slot := range []string{"A", "B"} {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := c.SlotPath(slot)
		sf, err := f.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("create slot %s: %w", slot, err)
		}
		made = append(made, p)
		err = sf.Truncate(size)
		if cerr := sf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("size slot %s: %w", slot, err)
		}
	}
	return c.CheckSlots(f)
}

// writeFile writes data to p and syncs it; excl refuses an existing p.
func writeFile(f fsys.FS, p string, data []byte, excl bool) error {
	flag := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if excl {
		flag |= os.O_EXCL
	}
	w, err := f.OpenFile(p, flag, 0o644)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
