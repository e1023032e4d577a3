package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

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
		trust    trustFlags
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
			if slotSize <= 0 || trust.root == "" || channel == "" {
				return usageError{fmt.Errorf("--slot-size, --root and --channel are required")}
			}
			if tries < 1 || tries > boot.MaxTries {
				return usageError{fmt.Errorf("--tries %d: want 1..%d", tries, boot.MaxTries)}
			}
			if !slices.Contains(boot.Adapters, adapter) {
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
			var hc updater.HealthConfig
			if len(health) > 0 {
				d, err := time.ParseDuration(deadline)
				if err != nil {
					return usageError{fmt.Errorf("--health-deadline: %w", err)}
				}
				hc = updater.HealthConfig{Commands: health, Deadline: updater.Duration{Duration: d},
					Interval: updater.Duration{Duration: time.Second}}
			}
			// The log key is copied when there is one, required or not.
			if trust.logKey == "" {
				trust.logKey = trust.defaultLogKey()
			}
			o, err := trust.options()
			if err != nil {
				return err
			}
			dir := args[0]
			cfg, err := updater.InitDevice(cmd.Context(), updater.InitOptions{
				Dir: dir, SlotSize: slotSize, Trust: o,
				Device:  updater.DeviceConfig{ID: id, Channel: channel, Hardware: hardware, Arch: arch, Labels: lab},
				Adapter: adapter, Tries: tries, Artifact: artifact, Health: hc,
			})
			if errors.Is(err, updater.ErrConfig) {
				// Options that do not make a valid config are a bad call;
				// nothing was written.
				return usageError{err}
			}
			if err != nil {
				return err
			}
			logNote := "no transparency log key"
			switch {
			case cfg.Trust.RequireLog:
				logNote = "requires the transparency log"
			case cfg.Trust.LogKey != "":
				logNote = "log key copied, log not required"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "virtual device in %s: slots of %s, boot adapter %s, channel %s, %s\nconfig %s\n",
				dir, humanBytes(slotSize), adapter, channel, logNote, filepath.Join(dir, updater.ConfigFile))
			return nil
		},
	}
	f := c.Flags()
	f.Var(int64SizeFlag{&slotSize}, "slot-size", "size of each slot image (e.g. 512M)")
	trust.add(f, "the trust root (root.json from 'shoal keys init')", "")
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
	return c
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
			d, err := openDevice(cmd, cfgPath, false)
			if err != nil {
				return err
			}
			defer d.Close()
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
	c.Flags().Duration("lock-wait", updater.DefaultLockWait, "how long to wait while another shoal process changes the device")
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
