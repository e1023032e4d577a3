package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/updater"
	"github.com/shoalnet/shoal/updater/boot"
)

func newDeviceCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "device",
		Short: "Create and drive a file-backed virtual device (tests, demos)",
	}
	c.AddCommand(newDeviceInitCmd(), newDeviceRebootCmd())
	return c
}

func newDeviceInitCmd() *cobra.Command {
	var (
		slotSize int64
		root     string
		channel  string
		adapter  string
		health   []string
		hardware string
		arch     string
		id       string
		tries    int
		deadline string
		artifact string
		labels   []string
		logKey   string
		reqLog   bool
	)
	c := &cobra.Command{
		Use:   "init DIR --slot-size SIZE --root root.json --channel C",
		Short: "Create a virtual device: config, two slot files, boot state",
		Long: `init creates DIR/shoal.toml, two slot image files (sparse, SIZE bytes each),
the boot state of the chosen adapter and a copy of the trust root. The device
boots slot A first, with nothing installed. Use 'shoal device reboot' where a
real device would power-cycle.

The transparency log's verifier key (--log-key, default log.pub next to
--root when it exists) is copied next to root.json and named in the config;
with --require-log the device installs only releases the log proves
([trust] require_log).`,
		Example: `  shoal device init /tmp/dev --slot-size 512M --root keys/root.json --channel stable
  shoal device init /tmp/dev --slot-size 64M --root keys/root.json --channel stable \
      --boot grub --health-cmd 'test -e /tmp/dev/healthy'
  shoal device init /tmp/dev --slot-size 64M --root keys/root.json --channel stable --require-log`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if slotSize <= 0 || root == "" || channel == "" {
				return usageError{fmt.Errorf("--slot-size, --root and --channel are required")}
			}
			if tries < 1 || tries > boot.MaxTries {
				return usageError{fmt.Errorf("--tries %d: want 1..%d", tries, boot.MaxTries)}
			}
			dir := args[0]
			if _, err := os.Stat(filepath.Join(dir, "shoal.toml")); err == nil {
				return fmt.Errorf("%s already holds a device (shoal.toml exists)", dir)
			}
			rootBytes, err := os.ReadFile(root)
			if err != nil {
				return err
			}
			explicitKey := logKey != ""
			if !explicitKey {
				logKey = filepath.Join(filepath.Dir(root), manifest.LogPubFile)
			}
			logBytes, err := os.ReadFile(logKey)
			switch {
			case err == nil:
				if _, err := manifest.NewLogWitness(manifest.ParseLogKeys(logBytes), ""); err != nil {
					return fmt.Errorf("%s: %w", logKey, err)
				}
			case errors.Is(err, fs.ErrNotExist) && !explicitKey && !reqLog:
				logBytes = nil // a key directory without a log
			case errors.Is(err, fs.ErrNotExist) && !explicitKey:
				return usageError{fmt.Errorf("--require-log: no --log-key given and no %s next to --root", logKey)}
			default:
				return fmt.Errorf("--log-key: %w", err)
			}
			// Check every input before creating anything, so a typo leaves
			// nothing behind.
			bootPath, ok := bootPaths[adapter]
			if !ok {
				return usageError{fmt.Errorf("--boot %q: want file, grub, uboot or bls", adapter)}
			}
			lab := map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					return usageError{fmt.Errorf("--label %q: want key=value", l)}
				}
				lab[k] = v
			}
			if id == "" {
				id = filepath.Base(filepath.Clean(dir))
			}
			text := deviceTOML(id, channel, hardware, arch, lab, adapter, bootPath, tries, artifact, health, deadline,
				logBytes != nil, reqLog)
			if _, err := updater.ParseConfig([]byte(text), dir); err != nil {
				return usageError{err}
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "root.json"), rootBytes, 0o644); err != nil {
				return err
			}
			if logBytes != nil {
				if err := os.WriteFile(filepath.Join(dir, manifest.LogPubFile), logBytes, 0o644); err != nil {
					return err
				}
			}
			for _, s := range []string{"slot-a.img", "slot-b.img"} {
				f, err := os.OpenFile(filepath.Join(dir, s), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
				if err != nil {
					return err
				}
				err = f.Truncate(slotSize)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return err
				}
			}
			if err := initBootState(dir, adapter, tries); err != nil {
				return err
			}
			cfgPath := filepath.Join(dir, "shoal.toml")
			if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
				return err
			}
			logNote := "no transparency log key"
			switch {
			case reqLog:
				logNote = "requires the transparency log"
			case logBytes != nil:
				logNote = "log key copied, log not required"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "virtual device in %s: slots of %s, boot adapter %s, channel %s, %s\nconfig %s\n",
				dir, humanBytes(slotSize), adapter, channel, logNote, cfgPath)
			return nil
		},
	}
	f := c.Flags()
	f.Var(int64SizeFlag{&slotSize}, "slot-size", "size of each slot image (e.g. 512M)")
	f.StringVar(&root, "root", "", "the trust root (root.json from 'shoal keys init')")
	f.StringVar(&channel, "channel", "", "release channel the device follows")
	f.StringVar(&adapter, "boot", "file", "boot adapter: file, grub, uboot or bls")
	f.StringArrayVar(&health, "health-cmd", nil, "health check command (repeatable); none: no [health] table")
	f.StringVar(&deadline, "health-deadline", "30s", "time the health checks get after a tentative boot")
	f.StringVar(&hardware, "hardware", "", "hardware model the device reports")
	f.StringVar(&arch, "arch", "", "architecture the device reports")
	f.StringVar(&id, "id", "", "device ID (default: the directory name)")
	f.IntVar(&tries, "tries", 3, "boots a new slot gets before the bootloader falls back (1-9)")
	f.StringVar(&artifact, "artifact", "rootfs", "release artifact installed into the slots")
	f.StringArrayVar(&labels, "label", nil, "device label key=value for rollout selectors (repeatable)")
	f.StringVar(&logKey, "log-key", "", "the transparency log's verifier key (default: log.pub next to --root, if there)")
	f.BoolVar(&reqLog, "require-log", false, "install only releases the transparency log proves")
	return c
}

// bootPaths is each adapter's state path in a virtual device's directory.
var bootPaths = map[string]string{"file": "boot.json", "grub": "grubenv", "bls": "esp", "uboot": "fw_env.config"}

// initBootState creates the adapter's state files in dir.
func initBootState(dir, adapter string, tries int) error {
	switch adapter {
	case "file":
		return nil // the adapter creates it on first open
	case "grub":
		// As `grub-editenv grubenv create` would.
		return boot.CreateGRUBEnv(filepath.Join(dir, "grubenv"))
	case "bls":
		return os.MkdirAll(filepath.Join(dir, "esp", "loader", "entries"), 0o755)
	case "uboot":
		// Two redundant environment copies of 16 KiB, as fw_env.config names them.
		abs, _ := filepath.Abs(dir)
		text := fmt.Sprintf("# device offset size\n%s 0x0 0x4000\n%s 0x0 0x4000\n",
			filepath.Join(abs, "uboot-env-1.bin"), filepath.Join(abs, "uboot-env-2.bin"))
		if err := os.WriteFile(filepath.Join(dir, "fw_env.config"), []byte(text), 0o644); err != nil {
			return err
		}
		cfg, err := boot.ParseFwEnvConfig(text)
		if err != nil {
			return err
		}
		// The board's default environment (see packaging/uboot/shoal-env.txt).
		env := boot.UBootEnv{"shoal_slot": "A", "upgrade_available": "0", "bootcount": "0", "bootlimit": strconv.Itoa(tries)}
		return boot.CreateUBootEnv(cfg, env)
	}
	return usageError{fmt.Errorf("--boot %q: want file, grub, uboot or bls", adapter)}
}

func deviceTOML(id, channel, hardware, arch string, labels map[string]string, adapter, bootPath string, tries int, artifact string, health []string, deadline string, logKey, requireLog bool) string {
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "# shoal virtual device; see docs/device.md\nstate = \"state\"\n\n")
	fmt.Fprintf(&b, "[device]\nid = %s\nchannel = %s\n", q(id), q(channel))
	if hardware != "" {
		fmt.Fprintf(&b, "hardware = %s\n", q(hardware))
	}
	if arch != "" {
		fmt.Fprintf(&b, "arch = %s\n", q(arch))
	}
	if len(labels) > 0 {
		b.WriteString("[device.labels]\n")
		for k, v := range labels {
			fmt.Fprintf(&b, "%s = %s\n", q(k), q(v))
		}
	}
	fmt.Fprintf(&b, "\n[trust]\nroot = \"root.json\"\n")
	if logKey {
		fmt.Fprintf(&b, "log_key = %s\n", q(manifest.LogPubFile))
	}
	if requireLog {
		b.WriteString("require_log = true\n")
	}
	fmt.Fprintf(&b, "\n[slots]\na = \"slot-a.img\"\nb = \"slot-b.img\"\nartifact = %s\n", q(artifact))
	fmt.Fprintf(&b, "\n[boot]\nadapter = %s\npath = %s\ntries = %d\ncmdline = \"cmdline\"\nvirtual = true\n", q(adapter), q(bootPath), tries)
	if len(health) > 0 {
		b.WriteString("\n[health]\ncommands = [")
		for i, h := range health {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(q(h))
		}
		fmt.Fprintf(&b, "]\ndeadline = %s\ninterval = \"1s\"\n", q(deadline))
	}
	return b.String()
}

func newDeviceRebootCmd() *cobra.Command {
	var cfgPath string
	var asJSON bool
	c := &cobra.Command{
		Use:   "reboot --config DIR/shoal.toml",
		Short: "Power-cycle a virtual device: the bootloader picks and counts the slot",
		Long: `reboot does what the bootloader does at power-on: choose the slot from the
boot state, count a trial boot down, and fall back to the other slot when the
tries are used up. Run 'shoal update boot-check' after it, as a booting device
would.`,
		Example: `  shoal device reboot --config /tmp/dev/shoal.toml`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openDevice(cmd, cfgPath)
			if err != nil {
				return err
			}
			slot, err := d.PowerOn(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]string{"booted": slot})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "booted slot %s\n", slot)
			return nil
		},
	}
	c.Flags().StringVar(&cfgPath, "config", "", "device config (shoal.toml)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}

// int64SizeFlag is a pflag.Value for byte sizes that may exceed 2 GiB.
type int64SizeFlag struct{ v *int64 }

func (f int64SizeFlag) String() string { return strconv.FormatInt(*f.v, 10) }
func (f int64SizeFlag) Type() string   { return "size" }
func (f int64SizeFlag) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	*f.v = v
	return nil
}
