package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/internal/progress"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/bundle"
	"github.com/shoalnet/shoal/store"
)

func newBundleCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bundle",
		Short: "Pack a release into one file for offline sites, check it, import it",
		Long: `A bundle is one tar file holding a slice of a repository: the signed
metadata, the transparency log files that prove the targets version is
logged, the release's indexes and the chunk objects a device needs. Devices
and nodes read it exactly as they read a mirror, so everything that works
online works from a USB stick. 'tar -xf' of a bundle gives a repository
directory that 'shoal serve' can serve.`,
	}
	c.AddCommand(newBundleCreateCmd(), newBundleVerifyCmd(), newBundleImportCmd())
	return c
}

type bundleInfoJSON struct {
	Channel        string `json:"channel"`
	Version        uint64 `json:"version"`
	From           uint64 `json:"from,omitempty"`
	TargetsVersion int64  `json:"targets_version"`
}

func infoJSON(i bundle.Info) bundleInfoJSON {
	return bundleInfoJSON{i.Channel, i.Version, i.From, i.TargetsVersion}
}

func newBundleCreateCmd() *cobra.Command {
	var (
		o      bundle.CreateOptions
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "create --repo DIR|URL --channel C -o FILE",
		Short: "Write a channel's newest release into a bundle file",
		Long: `create copies from the repository every root version, the current
timestamp, snapshot and targets metadata, the transparency log files a device
needs (when the repository has a log), the release's indexes and its chunk
objects into one tar file. With --from M it leaves out every chunk that
release M already has, for sites whose devices run M (M's indexes stay in, so
the bundle can be checked on its own). When the repository has a delta index
from M ('publish --delta-from M'), the bundle carries it and its delta objects
instead of the whole chunks they build (--no-deltas: whole chunks). Such a
bundle installs only on devices whose active slot holds M: a delta that
cannot be used has no whole chunk in the bundle to fall back to.

Everything copied is checked on the way (metadata against the hashes its
parents sign, indexes against their targets, chunks against their IDs, log
tiles against the checkpoint); the signatures are checked by 'bundle verify'.
The same repository state always gives the same bytes. The file is replaced
atomically: a failed create leaves an existing FILE as it was.

A device always takes the newest release of its channel, so that is the one
a bundle carries; --version N only makes sure it is N.`,
		Example: `  shoal bundle create --repo repo/ --channel stable -o stable.tar
  shoal bundle create --repo http://origin:8080/ --channel stable --version 7 --from 6 -o stable-6-to-7.tar
  shoal bundle create --repo repo/ --channel stable --from 6 --no-deltas -o stable-6-whole.tar
  shoal bundle create --repo repo/ --channel beta -o beta.tar --json | jq .bytes`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range []struct{ name, v string }{{"--repo", o.Repo}, {"--channel", o.Channel}, {"-o", o.Out}} {
				if f.v == "" {
					return usageError{fmt.Errorf("missing %s", f.name)}
				}
			}
			if o.NoDeltas && o.From == 0 {
				return usageError{fmt.Errorf("--no-deltas needs --from")}
			}
			bar := progress.Start("bundle")
			o.Progress = bar.Report
			start := time.Now()
			res, err := bundle.Create(cmd.Context(), o)
			bar.End(err)
			if err != nil {
				return err
			}
			return printBundleCreate(cmd.OutOrStdout(), asJSON, res, time.Since(start).Seconds())
		},
	}
	f := c.Flags()
	f.StringVar(&o.Repo, "repo", "", "repository directory or http(s) URL")
	f.StringVar(&o.Channel, "channel", "", "release channel, e.g. stable")
	f.Uint64Var(&o.Version, "version", 0, "the release version expected (0: whatever is newest)")
	f.Uint64Var(&o.From, "from", 0, "leave out the chunks of this release (the one the devices run)")
	f.BoolVar(&o.NoDeltas, "no-deltas", false, "with --from: carry whole chunks, not the repository's deltas against that release")
	f.StringVarP(&o.Out, "output", "o", "", "bundle file to write")
	f.BoolVar(&o.NoLog, "no-log", false, "leave the transparency log out")
	f.IntVar(&o.Workers, "workers", 0, "chunks fetched and checked in parallel (0: 2 per core)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}

type bundleCreateJSON struct {
	bundleInfoJSON
	Path          string `json:"path"`
	Bytes         int64  `json:"bytes"`
	Chunks        int    `json:"chunks"`
	ChunkBytes    int64  `json:"chunk_bytes"`
	RawBytes      int64  `json:"raw_bytes"`
	ReleaseChunks int    `json:"release_chunks"`
	SkippedChunks int    `json:"skipped_chunks"`
	// Deltas (with --from, when the repository has them): the delta
	// indexes and objects carried, the raw bytes of the chunks they build,
	// and the chunks left out because of them.
	DeltaIndexes     int      `json:"delta_indexes"`
	DeltaIndexBytes  int64    `json:"delta_index_bytes"`
	DeltaObjects     int      `json:"delta_objects"`
	DeltaBytes       int64    `json:"delta_bytes"`
	DeltaRawBytes    int64    `json:"delta_raw_bytes"`
	ReplacedChunks   int      `json:"replaced_chunks"`
	ReplacedRawBytes int64    `json:"replaced_raw_bytes"`
	DeltaNotes       []string `json:"delta_notes,omitempty"`
	Indexes          int      `json:"indexes"`
	Metadata         int      `json:"metadata_files"`
	LogFiles         int      `json:"log_files"`
	LogTreeSize      int64    `json:"log_tree_size,omitempty"`
	Seconds          float64  `json:"seconds"`
}

func printBundleCreate(w io.Writer, asJSON bool, r *bundle.Result, secs float64) error {
	out := bundleCreateJSON{
		bundleInfoJSON: infoJSON(r.Info), Path: r.Path, Bytes: r.Bytes,
		Chunks: r.Chunks, ChunkBytes: r.ChunkBytes, RawBytes: r.RawBytes,
		ReleaseChunks: r.ReleaseChunks, SkippedChunks: r.SkippedChunks,
		DeltaIndexes: r.DeltaIndexes, DeltaIndexBytes: r.DeltaIndexBytes, DeltaObjects: r.Deltas, DeltaBytes: r.DeltaBytes,
		DeltaRawBytes: r.DeltaRawBytes, ReplacedChunks: r.ReplacedChunks, ReplacedRawBytes: r.ReplacedRawBytes, DeltaNotes: r.DeltaNotes,
		Indexes: r.IndexFiles, Metadata: r.MetadataFiles, LogFiles: r.LogFiles, LogTreeSize: r.LogTreeSize,
		Seconds: secs,
	}
	if asJSON {
		return writeJSON(w, out)
	}
	fmt.Fprintf(w, "wrote %s: %s/%d%s, %s\n", out.Path, out.Channel, out.Version, fromText(out.From), humanBytes(out.Bytes))
	fmt.Fprintf(w, "  %d of %d chunks (%s stored, %s raw)", out.Chunks, out.ReleaseChunks, humanBytes(out.ChunkBytes), humanBytes(out.RawBytes))
	if out.From != 0 {
		fmt.Fprintf(w, "; %d left out, release %d has them", out.SkippedChunks, out.From)
	}
	fmt.Fprintln(w)
	if out.DeltaIndexes > 0 {
		fmt.Fprintf(w, "  %d delta objects (%s) build %d more chunks (%s raw) against release %d; %d delta indexes (%s); only devices on release %d can install it\n",
			out.DeltaObjects, humanBytes(out.DeltaBytes), out.ReplacedChunks, humanBytes(out.ReplacedRawBytes), out.From, out.DeltaIndexes, humanBytes(out.DeltaIndexBytes), out.From)
	}
	for _, n := range out.DeltaNotes {
		fmt.Fprintf(w, "  no deltas for %s\n", n)
	}
	fmt.Fprintf(w, "  %d indexes, %d metadata files, ", out.Indexes, out.Metadata)
	if out.LogFiles > 0 {
		fmt.Fprintf(w, "%d log files (tree of %d entries)\n", out.LogFiles, out.LogTreeSize)
	} else {
		fmt.Fprintln(w, "no transparency log")
	}
	return nil
}

func fromText(from uint64) string {
	if from == 0 {
		return ""
	}
	return fmt.Sprintf(" (from %d)", from)
}

// bundleVerifyFlags are the flags verify and import share: the trust
// options, and the device the bundle is checked for.
type bundleVerifyFlags struct {
	trust trustFlags
	dev   manifest.Device
}

func (v *bundleVerifyFlags) add(c *cobra.Command) {
	f := c.Flags()
	v.trust.add(f, "trusted root.json the devices were provisioned with", "a device's trust state directory (default: none, a fresh device)")
	f.StringVar(&v.dev.Channel, "channel", "", "the device's channel (default: the bundle's)")
	f.StringVar(&v.dev.Hardware, "hardware", "", "the device's hardware (default: the first the release names)")
	f.StringVar(&v.dev.Arch, "arch", "", "the device's architecture (default: the first the release names)")
	f.Uint64Var(&v.dev.Installed, "installed-version", 0, "release the device runs (default: the bundle's --from release)")
	f.StringVar(&v.dev.ID, "device-id", "", "the device's identity")
}

func (v *bundleVerifyFlags) options() (bundle.VerifyOptions, error) {
	tr, err := v.trust.load()
	if err != nil {
		return bundle.VerifyOptions{}, err
	}
	return bundle.VerifyOptions{Root: tr.Root, State: tr.State, Device: v.dev, LogKeys: tr.LogKeys, RequireLog: v.trust.requireLog}, nil
}

func newBundleVerifyCmd() *cobra.Command {
	var (
		vf     bundleVerifyFlags
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "verify FILE --root FILE",
		Short: "Check a bundle completely, without network",
		Long: `verify checks a bundle the way a device uses it, and more: the TUF chain
from the trusted root through the bundle's metadata, the release against the
device (channel, hardware, arch, installed version), every index against its
signed target and Merkle root, the targets version's inclusion in the
transparency log (signature too with --log-key), and every chunk the release
needs beyond the --from release, decoded and hashed. An entry the release
does not need is an error too. The message names the first bad entry; the
exit code is 3 when bytes do not verify.

Without --hardware and --arch the device is one the release names; without
--installed-version it runs the bundle's --from release.`,
		Example: `  shoal bundle verify stable.tar --root keys/root.json
  shoal bundle verify stable-6-to-7.tar --root root.json --hardware rpi4 --log-key log.pub --require-log
  shoal bundle verify stable.tar --root root.json --json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := vf.options()
			if err != nil {
				return err
			}
			bar := progress.Start("verify")
			o.Progress = bar.Report
			start := time.Now()
			res, err := bundle.Verify(cmd.Context(), args[0], o)
			bar.End(err)
			if err != nil {
				return err
			}
			return printBundleVerify(cmd.OutOrStdout(), asJSON, args[0], res, time.Since(start).Seconds())
		},
	}
	vf.add(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}

type bundleVerifyJSON struct {
	bundleInfoJSON
	Path          string             `json:"path"`
	Entries       int                `json:"entries"`
	Chunks        int                `json:"chunks"`
	SkippedChunks int                `json:"skipped_chunks"`
	ChunkBytes    int64              `json:"chunk_bytes"`
	RawBytes      int64              `json:"raw_bytes"`
	DeltaObjects  int                `json:"delta_objects"`
	DeltaBytes    int64              `json:"delta_bytes"`
	DeltaRawBytes int64              `json:"delta_raw_bytes"`
	Replaced      int                `json:"replaced_chunks"`
	RootVersion   int64              `json:"root_version"`
	Hardware      string             `json:"hardware,omitempty"`
	Arch          string             `json:"arch,omitempty"`
	Installed     uint64             `json:"installed_version"`
	Log           *bundle.LogProof   `json:"log,omitempty"`
	Artifacts     []verifiedArtifact `json:"artifacts"`
	Seconds       float64            `json:"seconds"`
}

func printBundleVerify(w io.Writer, asJSON bool, path string, r *bundle.VerifyResult, secs float64) error {
	v := r.Verified
	out := bundleVerifyJSON{
		bundleInfoJSON: infoJSON(r.Info), Path: path, Entries: r.Entries,
		Chunks: r.Chunks, SkippedChunks: r.SkippedChunks, ChunkBytes: r.ChunkBytes, RawBytes: r.RawBytes,
		DeltaObjects: r.Deltas, DeltaBytes: r.DeltaBytes, DeltaRawBytes: r.DeltaRawBytes, Replaced: r.ReplacedChunks,
		RootVersion: v.RootVersion, Hardware: r.Device.Hardware, Arch: r.Device.Arch, Installed: r.Device.Installed,
		Log: r.Log, Seconds: secs,
	}
	for i, a := range v.Release.Artifacts {
		out.Artifacts = append(out.Artifacts, verifiedArtifact{
			Name: a.Name, Slot: a.Slot, Size: a.Size, Root: a.Root.String(), Chunks: len(v.Indexes[i].Chunks),
			Index: a.Index.String(), Hash: a.Hash.String(), Params: a.Params.String(),
		})
	}
	if asJSON {
		return writeJSON(w, out)
	}
	fmt.Fprintf(w, "verified %s: %s/%d%s, targets v%d, root v%d\n", path, out.Channel, out.Version, fromText(out.From), out.TargetsVersion, out.RootVersion)
	for _, a := range out.Artifacts {
		fmt.Fprintf(w, "  %-10s -> slot %-8s %s, %d chunks, root %s\n", a.Name, a.Slot, humanBytes(a.Size), a.Chunks, a.Root)
	}
	fmt.Fprintf(w, "  %d chunks checked (%s raw)", out.Chunks, humanBytes(out.RawBytes))
	if out.From != 0 {
		fmt.Fprintf(w, "; %d more come from release %d", out.SkippedChunks, out.From)
	}
	fmt.Fprintln(w)
	if out.DeltaObjects > 0 || out.Replaced > 0 {
		fmt.Fprintf(w, "  %d delta objects checked (%s), building %d chunks (%s raw) on devices on release %d\n",
			out.DeltaObjects, humanBytes(out.DeltaBytes), out.Replaced, humanBytes(out.DeltaRawBytes), out.From)
	}
	switch {
	case out.Log == nil:
		fmt.Fprintln(w, "  no transparency log in the bundle")
	case out.Log.Signed:
		fmt.Fprintf(w, "  log: entry %d of a signed tree of %d\n", out.Log.Entry, out.Log.TreeSize)
	default:
		fmt.Fprintf(w, "  log: entry %d of a tree of %d (checkpoint signature not checked: give --log-key)\n", out.Log.Entry, out.Log.TreeSize)
	}
	return nil
}

func newBundleImportCmd() *cobra.Command {
	var (
		storeDir string
		vf       bundleVerifyFlags
		asJSON   bool
	)
	c := &cobra.Command{
		Use:   "import FILE --store DIR --root root.json",
		Short: "Check a bundle, then put its chunks and indexes into a chunk store for a node to serve",
		Long: `import first checks the whole bundle as 'bundle verify' does, from the trusted
root (--root), so the pins it writes name a release the signed metadata really
offers. Then it decodes every chunk, checks it against its ID and puts it into
the chunk store at --store (created if missing), stores the indexes and pins
the release's as CHANNEL/VERSION/ARTIFACT, so that garbage collection keeps
its chunks and a node serves them to its LAN. A pin is written only after all
chunks are in. A node's chunk store is the directory "chunks" in its [node]
store; import while the node is stopped.

A bundle made with --from that carries deltas is refused: import keeps whole
releases (a node fetches the deltas it trades itself); make the bundle for a
node with --no-deltas.`,
		Example: `  shoal bundle import stable.tar --store /var/lib/shoal/store/chunks --root /etc/shoal/root.json
  shoal bundle import stable.tar --store store/ --root root.json --require-log --json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if storeDir == "" {
				return usageError{fmt.Errorf("missing --store")}
			}
			o, err := vf.options()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			start := time.Now()
			r, err := bundle.Open(args[0])
			if err != nil {
				return err
			}
			defer r.Close()
			verified, err := r.Verify(ctx, o)
			if err != nil {
				return err
			}
			if err := r.Importable(); err != nil {
				return err
			}
			db, err := store.Open(storeDir)
			if err != nil {
				return err
			}
			bar := progress.Start("import")
			res, err := bundle.Import(ctx, r, verified, db, bar.Report)
			bar.End(err)
			if cerr := db.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			out := importJSON{bundleInfoJSON: infoJSON(res.Info), Chunks: res.Chunks, RawBytes: res.RawBytes,
				Indexes: res.Indexes, Pins: res.Pins, Verified: true, Seconds: time.Since(start).Seconds()}
			if out.Pins == nil {
				out.Pins = []bundle.ImportPin{}
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "imported %s into %s: %d chunks (%s), %d indexes\n", args[0], storeDir, res.Chunks, humanBytes(res.RawBytes), res.Indexes)
			for _, p := range res.Pins {
				fmt.Fprintf(w, "  pinned %s -> %s\n", p.Name, p.Index)
			}
			return nil
		},
	}
	c.Flags().StringVar(&storeDir, "store", "", "chunk store directory")
	vf.add(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	return c
}

type importJSON struct {
	bundleInfoJSON
	Chunks   int                `json:"chunks"`
	RawBytes int64              `json:"raw_bytes"`
	Indexes  int                `json:"indexes"`
	Pins     []bundle.ImportPin `json:"pins"`
	Verified bool               `json:"verified"`
	Seconds  float64            `json:"seconds"`
}
