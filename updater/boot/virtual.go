package boot

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// Adapters names the boot adapters, as a device config's [boot] adapter.
var Adapters = []string{"file", "grub", "uboot", "bls"}

// VirtualPath is where InitVirtual keeps an adapter's state inside a
// virtual device's directory: the value of [boot] path, relative to it.
func VirtualPath(adapter string) (string, error) {
	switch adapter {
	case "file":
		return "boot.json", nil
	case "grub":
		return "grubenv", nil
	case "bls":
		return "esp", nil
	case "uboot":
		return "fw_env.config", nil
	}
	return "", fmt.Errorf("boot: adapter %q is not file, grub, uboot or bls", adapter)
}

// InitVirtual creates the boot state of adapter in dir, as a board's
// firmware and installer would leave it on a fresh device booting slot A,
// and returns its path relative to dir (VirtualPath). The environments are
// the ones the real tools read: grub-editenv for GRUB, fw_printenv with
// the written fw_env.config for U-Boot (two redundant 16 KiB copies, and
// bootlimit = tries), a loader/entries directory for systemd-boot. Nothing
// existing is overwritten.
func InitVirtual(adapter, dir string, tries int, opts ...Option) (string, error) {
	rel, err := VirtualPath(adapter)
	if err != nil {
		return "", err
	}
	if err := checkTries(tries); err != nil {
		return "", err
	}
	o := buildOptions(opts)
	p := filepath.Join(dir, rel)
	switch adapter {
	case "file":
		_, err = OpenFile(p, opts...)
	case "grub":
		err = CreateGRUBEnv(p, opts...)
	case "bls":
		if err = o.fs.MkdirAll(filepath.Join(p, "loader", "entries"), 0o755); err == nil {
			_, err = OpenBLS(p, opts...)
		}
	case "uboot":
		abs, aerr := filepath.Abs(dir)
		if aerr != nil {
			return "", aerr
		}
		text := fmt.Sprintf("# device offset size\n%s 0x0 0x4000\n%s 0x0 0x4000\n",
			filepath.Join(abs, "uboot-env-1.bin"), filepath.Join(abs, "uboot-env-2.bin"))
		cfg, perr := ParseFwEnvConfig(text)
		if perr != nil {
			return "", perr
		}
		if ok, eerr := o.exists(p); eerr != nil || ok {
			if eerr == nil {
				eerr = fmt.Errorf("boot: %s exists", p)
			}
			return "", eerr
		}
		if err = o.replaceFile(p, []byte(text)); err != nil {
			return "", err
		}
		// The board's default environment (see packaging/uboot/shoal-env.txt).
		env := UBootEnv{"shoal_slot": SlotA, "upgrade_available": "0", "bootcount": "0", "bootlimit": strconv.Itoa(tries)}
		err = CreateUBootEnv(cfg, env, opts...)
	}
	if err != nil {
		return "", fmt.Errorf("boot: create %s environment in %s: %w", adapter, dir, err)
	}
	return rel, nil
}
