package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/internal/progress"
	"github.com/shoalnet/shoal/manifest/bundle"
	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/updater"
)

func newUpdateCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "update",
		Short: "Install releases on this device: apply, boot-check, status, commit, rollback",
		Long: `update drives the device side. 'apply' verifies the newest signed release for
the device, installs it into the inactive slot and flips the bootloader to try
it; after the reboot, 'boot-check' runs the health checks and commits the new
slot or rolls back to the old one.`,
	}
	c.PersistentFlags().String("config", "/etc/shoal/shoal.toml", "device config")
	c.PersistentFlags().Duration("lock-wait", updater.DefaultLockWait, "how long to wait while another shoal process changes the device")
	c.AddCommand(newUpdateApplyCmd(), newUpdateBootCheckCmd(), newUpdateStatusCmd(),
		newUpdateCommitCmd(), newUpdateRollbackCmd(), newUpdateLogCmd())
	return c
}

// openDevice opens the device of --config (or cfgPath), taking its lock
// unless readOnly: a second command changing the same device waits up to
// --lock-wait, then says who holds it.
func openDevice(cmd *cobra.Command, cfgPath string, readOnly bool) (*updater.Device, error) {
	if cfgPath == "" {
		cfgPath, _ = cmd.Flags().GetString("config")
	}
	if cfgPath == "" {
		return nil, usageError{fmt.Errorf("--config is required")}
	}
	cfg, err := updater.LoadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	opts := []updater.Option{updater.WithLog(func(format string, args ...any) {
		fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...)
	})}
	if readOnly {
		opts = append(opts, updater.ReadOnly())
	} else {
		wait := updater.DefaultLockWait
		if f := cmd.Flags().Lookup("lock-wait"); f != nil {
			wait, _ = cmd.Flags().GetDuration("lock-wait")
		}
		opts = append(opts, updater.WithLock(cmd.CommandPath(), wait))
	}
	return updater.Open(cmd.Context(), cfg, opts...)
}

func newUpdateApplyCmd() *cobra.Command {
	var (
		source   string
		channel  string
		asJSON   bool
		reboot   bool
		fetchers int
		retry    bool
		timeout  time.Duration
	)
	c := &cobra.Command{
		Use:   "apply --source DIR|URL|FILE",
		Short: "Verify, install into the inactive slot, and flip the bootloader to try it",
		Long: `apply does everything before the reboot: it walks the TUF chain from the
provisioned root, checks the newest release on the device's channel (version,
hardware, rollout), installs it into the inactive slot — copying chunks the
active slot already holds, fetching the rest from the source — then fsyncs,
re-reads and checks every chunk against the signed Merkle root, and only then
tells the bootloader to try the new slot. Interrupted, it resumes from what the
slot already holds. When the repository lists a delta index from the release
the active slot holds ('publish --delta-from'), the chunks it covers are built
from small zstd deltas against the active slot instead (docs/deltas.md); a
delta that fails its checks is refused, named, and its chunk fetched whole.`,
		Example: `  shoal update apply --config /etc/shoal/shoal.toml --source https://updates.example/repo
  shoal update apply --config dev/shoal.toml --source ./repo --json
  shoal update apply --config dev/shoal.toml --source release-42.tar   # offline bundle
  shoal update apply --config /etc/shoal/shoal.toml   # a node (apply = "manual") fetched it: install now`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if source == "" {
				// A node with apply = "manual" holds the device and has
				// fetched the release: ask it to install.
				return applyThroughNode(cmd, asJSON, retry)
			}
			d, err := openDevice(cmd, "", false)
			if err != nil {
				return err
			}
			defer d.Close()
			if channel != "" {
				d.Config.Device.Channel = channel
			}
			var httpOpts []fetch.HTTPOption
			if r := d.Config.Update.MinRate; r > 0 {
				httpOpts = append(httpOpts, fetch.WithMinRate(r, fetch.DefaultRateWindow))
			}
			f, src, err := bundle.OpenSource(source, httpOpts...)
			if err != nil {
				return err
			}
			defer src.Close()
			if err := deltaBundleFits(f, source, d.State().Installed); err != nil {
				return err
			}
			limit := "--timeout"
			if timeout <= 0 {
				timeout, limit = d.Config.ApplyTimeout(), "[update] timeout"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			bar := progress.Start("install")
			start := time.Now()
			res, err := d.Apply(ctx, updater.ApplyOptions{
				Mirrors: []fetch.Fetcher{f},
				OfferOptions: updater.OfferOptions{SourceName: source, Fetchers: fetchers, RetryFailed: retry,
					Progress: bar.Report},
			})
			bar.End(err)
			if err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("%w (%s %v; run apply again to resume)", err, limit, timeout)
				}
				return err
			}
			out := struct {
				*updater.ApplyResult
				Seconds float64 `json:"seconds"`
			}{res, time.Since(start).Seconds()}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
				return rebootIf(cmd, d, reboot && res.Reboot)
			}
			w := cmd.OutOrStdout()
			if res.UpToDate {
				fmt.Fprintf(w, "up to date: %s v%d is installed\n", res.Channel, res.Version)
				return nil
			}
			s := res.Stats
			fmt.Fprintf(w, "installed %s v%d into slot %s in %.1fs: %s copied locally, %s downloaded (%d chunks), %s already in place\n",
				res.Channel, res.Version, res.Slot, out.Seconds, humanBytes(s.LocalBytes), humanBytes(s.FetchedBytes), s.FetchedChunks, humanBytes(s.InPlaceBytes))
			if s.DeltaChunks > 0 || s.DeltaFailed > 0 {
				fmt.Fprintf(w, "deltas against v%d: %d chunks (%s) built from %s of deltas; %d refused and fetched whole\n",
					s.DeltaBase, s.DeltaChunks, humanBytes(s.DeltaRawBytes), humanBytes(s.DeltaBytes+s.DeltaIndexBytes), s.DeltaFailed)
			}
			fmt.Fprintf(w, "slot %s verified against the signed Merkle root; bootloader will try it next boot (%s)\n", res.Slot, res.State)
			return rebootIf(cmd, d, reboot && res.Reboot)
		},
	}
	f := c.Flags()
	f.StringVar(&source, "source", "", "repository directory, HTTP origin URL, or bundle file (none: ask the device's running node)")
	f.StringVar(&channel, "channel", "", "override the device's channel")
	f.BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	f.BoolVar(&reboot, "reboot", false, "run [boot] reboot_command after a successful flip")
	f.IntVar(&fetchers, "fetchers", 4, "concurrent chunk requests")
	f.BoolVar(&retry, "retry-failed", false, "retry a release that rolled back on this device before")
	f.DurationVar(&timeout, "timeout", 0, "give up after this long; a later apply resumes (default: [update] timeout, or 12h)")
	return c
}

func newUpdateBootCheckCmd() *cobra.Command {
	var asJSON, reboot bool
	c := &cobra.Command{
		Use:   "boot-check",
		Short: "Run at boot: health-check a tentative boot, then commit or roll back",
		Long: `boot-check runs early at every boot (see packaging/systemd). On a tentative
boot it runs the [health] checks within their deadline; if they pass it marks
the new slot good, otherwise it marks it bad so the bootloader returns to the
old slot, records why in the audit log, and (with --reboot) reboots.`,
		Example: `  shoal update boot-check --config /etc/shoal/shoal.toml --reboot`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) (rerr error) {
			d, err := openDevice(cmd, "", false)
			if err != nil {
				return err
			}
			defer d.Close()
			res, err := d.BootCheck(cmd.Context())
			if err != nil && (res == nil || !errors.Is(err, updater.ErrVerifyFailed)) {
				return err
			}
			// A slot that no longer verifies is rolled back and reported,
			// and the command still fails as an integrity failure.
			defer func() {
				if rerr == nil {
					rerr = err
				}
			}()
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			} else {
				w := cmd.OutOrStdout()
				switch {
				case res.Committed:
					fmt.Fprintf(w, "slot %s is healthy: committed\n", res.Booted)
				case res.RolledBack:
					fmt.Fprintf(w, "slot %s failed: rolled back (%s)\n", res.Booted, res.Reason)
				default:
					fmt.Fprintf(w, "booted slot %s, %s\n", res.Booted, res.State)
				}
				if res.Reboot && !reboot {
					fmt.Fprintln(w, "reboot to return to the previous slot")
				}
			}
			if reboot && res.Reboot {
				return d.RebootCommand(cmd.Context())
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	c.Flags().BoolVar(&reboot, "reboot", false, "run [boot] reboot_command when a rollback needs a reboot")
	return c
}

func newUpdateStatusCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:     "status",
		Short:   "Show the update state and the bootloader's view",
		Example: `  shoal update status --config dev/shoal.toml --json`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openDevice(cmd, "", true)
			if err != nil {
				return err
			}
			s, err := d.Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "state      %s\nactive     slot %s, version %d (%s)\nbooted     slot %s\n", s.State, s.ActiveSlot, s.ActiveVersion, s.Channel, s.BootedSlot)
			if s.StagedVersion != 0 {
				fmt.Fprintf(w, "staged     version %d in slot %s (tentative %v, %d tries left)\n", s.StagedVersion, s.TargetSlot, s.Tentative, s.TriesLeft)
			}
			if s.LastError != "" {
				fmt.Fprintf(w, "last error %s\n", s.LastError)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}

func newUpdateCommitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "commit",
		Short: "Mark the tentatively booted release good without waiting for health checks",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openDevice(cmd, "", false)
			if err != nil {
				return err
			}
			defer d.Close()
			if err := d.Commit(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "committed: slot %s, version %d\n", d.State().Active, d.State().Installed)
			return nil
		},
	}
}

func newUpdateRollbackCmd() *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "rollback",
		Short: "Abandon the update in flight; the bootloader keeps or returns to the old slot",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openDevice(cmd, "", false)
			if err != nil {
				return err
			}
			defer d.Close()
			reboot, err := d.Rollback(cmd.Context(), reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rolled back; active slot %s, version %d\n", d.State().Active, d.State().Installed)
			if reboot {
				fmt.Fprintln(cmd.OutOrStdout(), "reboot to return to the previous slot")
			}
			return nil
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	return c
}

func newUpdateLogCmd() *cobra.Command {
	c := &cobra.Command{Use: "log", Short: "The device's hash-chained audit log"}
	var asJSON bool
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check that no audit log line was edited, removed or reordered",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openDevice(cmd, "", true)
			if err != nil {
				return err
			}
			es, err := d.AuditEntries()
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"entries": len(es), "ok": true, "log": es})
			}
			for _, e := range es {
				fmt.Fprintf(cmd.OutOrStdout(), "%3d %s %-12s v%-4d %s %s\n", e.Seq, e.Time, e.Verdict, e.Version, e.Slot, e.Reason)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit log verifies: %d entries\n", len(es))
			return nil
		},
	}
	verify.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	c.AddCommand(verify)
	return c
}

// rebootIf runs the configured reboot command when asked to; its failure
// is the command's failure.
func rebootIf(cmd *cobra.Command, d *updater.Device, do bool) error {
	if !do {
		return nil
	}
	return d.RebootCommand(cmd.Context())
}

// applyThroughNode asks the node that runs this device (it holds the
// device's lock and recorded its API address in the state directory) to
// install the release it fetched.
func applyThroughNode(cmd *cobra.Command, asJSON, retry bool) error {
	cfgPath, _ := cmd.Flags().GetString("config")
	cfg, err := updater.LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(node.APIFile(cfg))
	if errors.Is(err, fs.ErrNotExist) {
		return usageError{fmt.Errorf("--source is required (no shoal node runs this device)")}
	}
	if err != nil {
		return err
	}
	res, err := node.RequestApply(cmd.Context(), strings.TrimSpace(string(b)), retry)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(cmd.OutOrStdout(), res)
	}
	w := cmd.OutOrStdout()
	if res.UpToDate {
		fmt.Fprintf(w, "up to date: %s v%d is installed\n", res.Channel, res.Version)
		return nil
	}
	s := res.Stats
	fmt.Fprintf(w, "the node installed %s v%d into slot %s: %s copied locally, %s from its store, %s already in place\n",
		res.Channel, res.Version, res.Slot, humanBytes(s.LocalBytes), humanBytes(s.FetchedBytes), humanBytes(s.InPlaceBytes))
	fmt.Fprintf(w, "slot %s verified against the signed Merkle root; bootloader will try it next boot (%s)\n", res.Slot, res.State)
	return nil
}

// deltaBundleFits refuses, before anything is written, a bundle made with
// --from M that builds chunks from deltas against release M when the
// device runs another release: the bundle lacks those chunks whole, so the
// install could only fail halfway, after overwriting the inactive slot.
// (bundle.json is not signed; this only decides to stop early. What the
// install uses is verified as always.)
func deltaBundleFits(f fetch.Fetcher, source string, installed uint64) error {
	r, ok := f.(*bundle.Reader)
	if !ok {
		return nil
	}
	in := r.Info()
	if in.From == 0 || len(in.Deltas) == 0 || installed == in.From || installed == in.Version {
		return nil
	}
	running := fmt.Sprintf("runs release %d", installed)
	if installed == 0 {
		running = "has no release installed"
	}
	return fmt.Errorf("%w: %s was made with --from %d: it builds release %d from release %d's bytes, and this device %s; use a full bundle (no --from) or the repository",
		bundle.ErrNeedsFrom, source, in.From, in.Version, in.From, running)
}
