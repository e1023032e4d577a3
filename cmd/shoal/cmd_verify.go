package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/updater"
)

func newVerifyCmd() *cobra.Command {
	var (
		repos      []string
		trust      trustFlags
		dev        manifest.Device
		asJSON     bool
		labelFlags []string
		timeout    time.Duration
	)
	c := &cobra.Command{
		Use:   "verify --repo DIR|URL --root FILE",
		Short: "Check a repository's newest release the way a device does before installing",
		Long: `verify does everything a device does before it installs a release: it walks
the TUF chain from the trusted root (root rotations one version at a time,
then timestamp, snapshot and targets, each size-bounded, threshold-signed,
unexpired and not older than what --state remembers), remembers the newly
trusted metadata in --state (a directory of its own: a device's state is
changed only by the device's commands, which hold its lock), picks the newest release on --channel, checks
it against the device (installed version, hardware, arch, minimum installed
version), fetches every artifact's index and checks its hash and Merkle
root.

Give --repo more than once for mirrors: the newest valid metadata wins, so
one stale or broken mirror cannot hold the device back. The exit code is 3
when metadata or an index does not verify, 1 when the release does not fit
the device, and the message names the file, field and reason.

With --require-log the targets metadata is trusted only when the
repository's transparency log proves it is included in a checkpoint signed
by the log key (--log-key, default log.pub next to --root), and that
checkpoint extends the one remembered in --state (then remembered in its
place). A release left out of the log, a forged checkpoint, or a log that
forked from the remembered one (a split view) exits with 3.`,
		Example: `  shoal verify --repo repo/ --root keys/root.json --state ./trust
  shoal verify --repo http://origin:8080/ --root root.json --channel beta --hardware rpi4 --arch arm64
  shoal verify --repo http://a/ --repo http://b/ --root root.json --installed-version 3 --json
  shoal verify --repo repo/ --root keys/root.json --state trust/ --require-log`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(repos) == 0 {
				return usageError{fmt.Errorf("missing --repo")}
			}
			if trust.logKey != "" && !trust.requireLog {
				return usageError{fmt.Errorf("--log-key is used with --require-log")}
			}
			tr, err := trust.load()
			if err != nil {
				return err
			}
			var mirrors []fetch.Fetcher
			for _, r := range repos {
				f, err := fetch.New(r)
				if err != nil {
					return err
				}
				mirrors = append(mirrors, f)
			}
			if dev.ID == "" {
				dev.ID, _ = os.Hostname()
			}
			labels := map[string]string{}
			for _, l := range labelFlags {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					return usageError{fmt.Errorf("--label %q: want KEY=VALUE", l)}
				}
				labels[k] = v
			}
			cfg := tr.ClientConfig(mirrors...)
			cfg.Rollout = updater.RolloutCheck(labels)
			client, err := manifest.NewClient(cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", trust.root, err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			v, err := client.Verify(ctx, dev)
			if err != nil {
				return err
			}
			witness := tr.Witness
			var lp *manifest.LogProof
			if witness != nil {
				if p, ok := witness.Proof(v.TargetsVersion, v.Targets); ok {
					lp = &p
				}
			}
			return printVerified(cmd.OutOrStdout(), asJSON, v, lp, repos)
		},
	}
	f := c.Flags()
	f.StringArrayVar(&repos, "repo", nil, "repository directory or http(s) URL (repeat for mirrors)")
	trust.add(f, "trusted root.json the device was provisioned with", "directory where the device remembers trusted metadata (default: none)")
	f.StringVar(&dev.Channel, "channel", "stable", "the device's release channel")
	f.StringVar(&dev.Hardware, "hardware", "", "the device's hardware name")
	f.StringVar(&dev.Arch, "arch", "", "the device's architecture")
	f.Uint64Var(&dev.Installed, "installed-version", 0, "release version the device runs (0: none)")
	f.StringVar(&dev.ID, "device-id", "", "the device's identity, which places it in a rollout (default: host name)")
	f.StringArrayVar(&labelFlags, "label", nil, "a device label for rollout selectors, as KEY=VALUE (repeatable)")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	f.BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}

type verifiedArtifact struct {
	Name   string `json:"name"`
	Slot   string `json:"slot"`
	Size   int64  `json:"size"`
	Root   string `json:"root"`
	Chunks int    `json:"chunks"`
	Index  string `json:"index"`
	Hash   string `json:"hash"`
	Params string `json:"params"`
}

type verifyResult struct {
	Channel          string             `json:"channel"`
	Version          uint64             `json:"version"`
	UpToDate         bool               `json:"up_to_date"`
	Artifacts        []verifiedArtifact `json:"artifacts"`
	Hardware         []string           `json:"hardware,omitempty"`
	Arch             []string           `json:"arch,omitempty"`
	MinInstalled     uint64             `json:"min_installed,omitempty"`
	RootVersion      int64              `json:"root_version"`
	TimestampVersion int64              `json:"timestamp_version"`
	SnapshotVersion  int64              `json:"snapshot_version"`
	TargetsVersion   int64              `json:"targets_version"`
	Mirror           string             `json:"mirror"`
	// Log is set when --require-log checked the log.
	Log *logJSON `json:"log,omitempty"`
}

func printVerified(w io.Writer, asJSON bool, v *manifest.Verified, lp *manifest.LogProof, repos []string) error {
	r := v.Release
	out := verifyResult{
		Channel: r.Channel, Version: r.Version, UpToDate: v.UpToDate,
		Hardware: r.Hardware, Arch: r.Arch, MinInstalled: r.MinInstalled,
		RootVersion: v.RootVersion, TimestampVersion: v.TimestampVersion,
		SnapshotVersion: v.SnapshotVersion, TargetsVersion: v.TargetsVersion,
		Mirror: repos[v.Mirror], Log: logInfo(lp),
	}
	for i, a := range r.Artifacts {
		out.Artifacts = append(out.Artifacts, verifiedArtifact{
			Name: a.Name, Slot: a.Slot, Size: a.Size, Root: a.Root.String(), Chunks: len(v.Indexes[i].Chunks),
			Index: a.Index.String(), Hash: a.Hash.String(), Params: a.Params.String(),
		})
	}
	if asJSON {
		return writeJSON(w, out)
	}
	state := "newer than installed"
	if v.UpToDate {
		state = "already installed"
	}
	fmt.Fprintf(w, "verified %s/%d (%s) from %s\n", out.Channel, out.Version, state, out.Mirror)
	for _, a := range out.Artifacts {
		fmt.Fprintf(w, "  %-10s -> slot %-8s %s, %d chunks, root %s\n", a.Name, a.Slot, humanBytes(a.Size), a.Chunks, a.Root)
	}
	fmt.Fprintf(w, "metadata: root v%d, timestamp v%d, snapshot v%d, targets v%d\n",
		out.RootVersion, out.TimestampVersion, out.SnapshotVersion, out.TargetsVersion)
	if out.Log != nil {
		fmt.Fprintf(w, "log: targets v%d is entry %d of a signed tree of %d entries (root hash %s), consistent with the remembered log\n",
			out.TargetsVersion, out.Log.Entry, out.Log.TreeSize, out.Log.RootHash)
	}
	return nil
}
