package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/delta"
	"github.com/shoalnet/shoal/internal/progress"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/rollout"
)

func newPublishCmd() *cobra.Command {
	var (
		repo, keysDir, channel string
		version                uint64
		expires                time.Duration
		hardware, arch, slots  []string
		minInstalled           uint64
		rolloutText            string
		sbom, provenance       string
		p                      = chunker.DefaultParams
		hashName               string
		asJSON                 bool
		deltaFrom              []string
		deltaImages            []string
		deltaMaxRef            = delta.DefaultMaxRef
		deltaLevel             = "best"
	)
	c := &cobra.Command{
		Use:   "publish --repo DIR --keys DIR --channel C --version N NAME=IMAGE...",
		Short: "Chunk images and publish them as a signed release",
		Long: `publish cuts each IMAGE into content-defined chunks, stores the chunks the
repository does not have yet (zstd, sharded by chunk ID), writes each index,
and signs new targets, snapshot and timestamp metadata that add the release
to its channel. Other channels' releases stay listed. The repository is a
plain directory that any static web server (or 'shoal serve') can serve; a
reader never sees a half-written release, because timestamp.json is
replaced last. It is a standard TUF repository too: each index is also
linked as REPO/targets/<dir>/<sha256>.<name>, so a stock TUF client given
REPO/metadata/ and REPO/targets/ can download and verify every target.
When the key directory has a log key ('keys init' makes one), the new
targets version is appended to the repository's transparency log
(REPO/log) first, with a checkpoint signed by that key, so a device that
demands the log ('verify --require-log') can prove the release is there.

The release version must be above the channel's last one. NAME is the
artifact name (e.g. rootfs); --slot NAME=SLOT says where devices install it
(default: NAME).

--delta-from N[,M...] also computes delta objects of the new chunks against
each named release of the channel (docs/deltas.md): a device whose active slot
holds release N then downloads small zstd deltas against its own slot instead
of whole chunks. The objects go to REPO/deltas/, and each (base, artifact)
pair's delta index is a signed target of its own,
releases/CHANNEL/VERSION/ARTIFACT.delta/N. The base image is rebuilt from the
repository's chunks (each checked against its ID) unless --delta-base-image
N=PATH (or N:ARTIFACT=PATH) gives it; a given image must match its index.`,
		Example: `  shoal publish --repo repo/ --keys keys/ --channel stable --version 1 rootfs=v1.img
  shoal publish --repo repo/ --keys keys/ --channel stable --version 2 \
      --hardware rpi4 --arch arm64 --rollout 'percent=10, region=eu' --sbom sbom.json \
      rootfs=v2.img boot=boot.img --slot boot=bootfs
  shoal publish ... --json | jq .new_bytes
  shoal publish --repo repo/ --keys keys/ --channel stable --version 3 --delta-from 2,1 \
      --delta-base-image 2=v2.img rootfs=v3.img`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{fmt.Errorf("no images: give NAME=IMAGE")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range []struct{ name, v string }{{"--repo", repo}, {"--keys", keysDir}, {"--channel", channel}} {
				if f.v == "" {
					return usageError{fmt.Errorf("missing %s", f.name)}
				}
			}
			if version == 0 {
				return usageError{fmt.Errorf("missing --version (a number above the channel's last release)")}
			}
			h, err := chunker.ParseHash(hashName)
			if err != nil {
				return usageError{err}
			}
			slotOf := map[string]string{}
			for _, s := range slots {
				name, slot, ok := strings.Cut(s, "=")
				if !ok {
					return usageError{fmt.Errorf("--slot %q: want NAME=SLOT", s)}
				}
				slotOf[name] = slot
			}
			o := manifest.PublishOptions{
				Repo: repo, Channel: channel, Version: version, Expires: expires,
				Hardware: hardware, Arch: arch, MinInstalled: minInstalled,
				Params: p, Hash: h,
			}
			for _, a := range args {
				name, path, ok := strings.Cut(a, "=")
				if !ok || name == "" || path == "" {
					return usageError{fmt.Errorf("%q: want NAME=IMAGE, e.g. rootfs=v2.img", a)}
				}
				o.Artifacts = append(o.Artifacts, manifest.ArtifactInput{Name: name, Slot: slotOf[name], Path: path})
				delete(slotOf, name)
			}
			for name := range slotOf {
				return usageError{fmt.Errorf("--slot %s=...: no image named %s", name, name)}
			}
			if o.DeltaFrom, err = parseDeltaFrom(deltaFrom, deltaImages, o.Artifacts); err != nil {
				return usageError{err}
			}
			if len(o.DeltaFrom) > 0 {
				ok, level := zstd.EncoderLevelFromString(deltaLevel)
				if !ok {
					return usageError{fmt.Errorf("--delta-level %q: want fastest, default, better or best", deltaLevel)}
				}
				if deltaMaxRef < 1 || deltaMaxRef > delta.RefCeil {
					return usageError{fmt.Errorf("--delta-max-ref %d: want 1 to %d bytes", deltaMaxRef, delta.RefCeil)}
				}
				o.DeltaOptions = delta.Options{MaxRef: deltaMaxRef, Level: level}
			}
			if o.Rollout, err = readRollout(rolloutText); err != nil {
				return usageError{err}
			}
			if o.SBOM, err = fileDigest(sbom); err != nil {
				return err
			}
			if o.Provenance, err = fileDigest(provenance); err != nil {
				return err
			}
			if o.Keys, err = manifest.LoadKeys(keysDir); err != nil {
				return err
			}
			// With a log key every targets version goes into the log
			// before timestamp.json makes it current.
			rl := o.Keys.TargetsLog()
			if rl != nil {
				o.Log = rl
			}
			// The total is the inputs' size: Publish reports bytes read.
			var total int64
			for _, a := range o.Artifacts {
				if st, err := os.Stat(a.Path); err == nil {
					total += st.Size()
				}
			}
			bar := progress.Start("publish")
			o.Progress = func(done, _ int64) { bar.Report(done, total) }
			start := time.Now()
			res, err := manifest.Publish(cmd.Context(), o)
			bar.End(err)
			if err != nil {
				return err
			}
			var lp *manifest.LogProof
			if rl != nil {
				lp = rl.Last()
			}
			return printPublish(cmd.OutOrStdout(), asJSON, res, lp, time.Since(start).Seconds())
		},
	}
	f := c.Flags()
	f.StringVar(&repo, "repo", "", "repository directory (created if missing)")
	f.StringVar(&keysDir, "keys", "", "key directory made by 'shoal keys init'")
	f.StringVar(&channel, "channel", "", "release channel, e.g. stable")
	f.Uint64Var(&version, "version", 0, "release version, above the channel's last")
	f.DurationVar(&expires, "expires", 720*time.Hour, "lifetime of the targets, snapshot and timestamp metadata")
	f.StringSliceVar(&hardware, "hardware", nil, "hardware the release is for (repeatable; default: any)")
	f.StringSliceVar(&arch, "arch", nil, "architectures the release is for (repeatable; default: any)")
	f.StringArrayVar(&slots, "slot", nil, "install slot of an artifact, as NAME=SLOT (default: NAME)")
	f.Uint64Var(&minInstalled, "min-installed", 0, "oldest installed version that may update directly")
	f.StringVar(&rolloutText, "rollout", "", "rollout policy, e.g. 'percent=10, region in (eu,uk)', a JSON object, or @FILE (docs/rollout.md)")
	f.StringVar(&sbom, "sbom", "", "SBOM file; its sha256 is signed with the release")
	f.StringVar(&provenance, "provenance", "", "provenance file; its sha256 is signed with the release")
	f.Var(sizeFlag{&p.Min}, "min", "minimum chunk size")
	f.Var(sizeFlag{&p.Avg}, "avg", "average chunk size")
	f.Var(sizeFlag{&p.Max}, "max", "maximum chunk size")
	f.StringVar(&hashName, "hash", "sha2-256", "chunk hash function: sha2-256 or blake3")
	f.BoolVar(&asJSON, "json", false, "print one JSON object on stdout")
	f.StringSliceVar(&deltaFrom, "delta-from", nil, "also compute deltas against these releases of the channel (N[,M...])")
	f.StringArrayVar(&deltaImages, "delta-base-image", nil, "image of a delta base, as N=PATH or N:ARTIFACT=PATH (default: rebuilt from the repository)")
	f.Var(sizeFlag{&deltaMaxRef}, "delta-max-ref", "reference bytes per delta at most (what a device reads from its slot per delta)")
	f.StringVar(&deltaLevel, "delta-level", deltaLevel, "zstd level of the deltas (fastest, default, better, best)")
	return c
}

// parseDeltaFrom turns --delta-from and --delta-base-image into the
// publish's delta bases. N=PATH names the image of the only artifact;
// with several artifacts each needs N:ARTIFACT=PATH.
func parseDeltaFrom(from, images []string, arts []manifest.ArtifactInput) ([]manifest.DeltaBase, error) {
	var out []manifest.DeltaBase
	at := map[uint64]int{}
	for _, s := range from {
		v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("--delta-from %q: want release versions N[,M...]", s)
		}
		if _, dup := at[v]; dup {
			return nil, fmt.Errorf("--delta-from: version %d given twice", v)
		}
		at[v] = len(out)
		out = append(out, manifest.DeltaBase{Version: v})
	}
	for _, s := range images {
		key, path, ok := strings.Cut(s, "=")
		ver, art, named := strings.Cut(key, ":")
		v, err := strconv.ParseUint(ver, 10, 64)
		if !ok || path == "" || err != nil {
			return nil, fmt.Errorf("--delta-base-image %q: want N=PATH or N:ARTIFACT=PATH", s)
		}
		i, listed := at[v]
		if !listed {
			return nil, fmt.Errorf("--delta-base-image %q: version %d is not in --delta-from", s, v)
		}
		if !named {
			if len(arts) != 1 {
				return nil, fmt.Errorf("--delta-base-image %q: the release has %d artifacts; say which, as N:ARTIFACT=PATH", s, len(arts))
			}
			art = arts[0].Name
		}
		if out[i].Images == nil {
			out[i].Images = map[string]string{}
		}
		if _, dup := out[i].Images[art]; dup {
			return nil, fmt.Errorf("--delta-base-image: two images for %s of version %d", art, v)
		}
		out[i].Images[art] = path
	}
	return out, nil
}

// readRollout turns --rollout into the policy JSON signed with the
// release: the command-line syntax of docs/rollout.md ("percent=10,
// region=eu"), a JSON object, or @FILE holding either. The policy is
// checked here, so a publish never signs one that devices would refuse.
func readRollout(s string) (json.RawMessage, error) {
	if s == "" {
		return nil, nil
	}
	if name, ok := strings.CutPrefix(s, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("--rollout: %w", err)
		}
		s = strings.TrimSpace(string(b))
	}
	var p rollout.Policy
	if strings.HasPrefix(strings.TrimSpace(s), "{") {
		if err := json.Unmarshal([]byte(s), &p); err != nil {
			return nil, fmt.Errorf("--rollout: %w", err)
		}
	} else {
		var err error
		if p, err = rollout.ParsePolicy(s); err != nil {
			return nil, fmt.Errorf("--rollout: %w", err)
		}
	}
	return json.Marshal(p)
}

// fileDigest returns "sha256:<hex>" of a file, or "" for no file.
func fileDigest(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

type publishArtifact struct {
	Name      string `json:"name"`
	Index     string `json:"index"`
	Size      int64  `json:"size"`
	Root      string `json:"root"`
	Chunks    int    `json:"chunks"`
	NewChunks int    `json:"new_chunks"`
	NewBytes  int64  `json:"new_bytes"`
}

// publishDelta reports the deltas of one artifact against one base.
type publishDelta struct {
	Artifact       string `json:"artifact"`
	BaseVersion    uint64 `json:"base_version"`
	Target         string `json:"target,omitempty"` // empty: no delta kept, no target
	DeltaIndex     string `json:"delta_index,omitempty"`
	IndexBytes     int    `json:"delta_index_bytes"`
	Rebuilt        bool   `json:"base_rebuilt"`
	NewChunks      int    `json:"new_chunks"`
	NewBytes       int64  `json:"new_bytes"`
	WholeBytes     int64  `json:"whole_compressed_bytes"`
	DeltaBytes     int64  `json:"delta_bytes"`
	Deltas         int    `json:"deltas"`
	KeptWhole      int    `json:"kept_whole"`
	ObjectBytes    int64  `json:"delta_object_bytes"`
	NewObjects     int    `json:"new_delta_objects"`
	ReferenceBytes int64  `json:"reference_bytes"`
}

type publishResult struct {
	Channel          string            `json:"channel"`
	Version          uint64            `json:"version"`
	RootVersion      int64             `json:"root_version"`
	TargetsVersion   int64             `json:"targets_version"`
	SnapshotVersion  int64             `json:"snapshot_version"`
	TimestampVersion int64             `json:"timestamp_version"`
	Artifacts        []publishArtifact `json:"artifacts"`
	Bytes            int64             `json:"bytes"`
	Chunks           int               `json:"chunks"`
	NewChunks        int               `json:"new_chunks"`
	NewBytes         int64             `json:"new_bytes"`
	NewRawBytes      int64             `json:"new_raw_bytes"`
	Seconds          float64           `json:"seconds"`
	MBPerSec         float64           `json:"mb_per_s"`
	Log              *logJSON          `json:"log,omitempty"`
	Deltas           []publishDelta    `json:"deltas,omitempty"`
}

// logJSON is where a targets version sits in the transparency log.
type logJSON struct {
	TreeSize   int64  `json:"tree_size"`
	Entry      int64  `json:"entry"`
	RootHash   string `json:"root_hash"`
	Checkpoint string `json:"checkpoint,omitempty"`
}

func logInfo(p *manifest.LogProof) *logJSON {
	if p == nil {
		return nil
	}
	return &logJSON{TreeSize: p.Tree.N, Entry: p.Entry, RootHash: p.Tree.Hash.String(), Checkpoint: string(p.Checkpoint)}
}

func printPublish(w io.Writer, asJSON bool, res *manifest.PublishResult, lp *manifest.LogProof, secs float64) error {
	r := publishResult{
		Channel: res.Channel, Version: res.Version, RootVersion: res.RootVersion,
		TargetsVersion: res.TargetsVersion, SnapshotVersion: res.SnapshotVersion, TimestampVersion: res.TimestampVersion,
		Bytes: res.Bytes, Chunks: res.Chunks, NewChunks: res.NewChunks, NewBytes: res.NewBytes, NewRawBytes: res.NewRawBytes,
		Seconds: secs, Log: logInfo(lp),
	}
	if secs > 0 {
		r.MBPerSec = float64(res.Bytes) / 1e6 / secs
	}
	for _, a := range res.Artifacts {
		r.Artifacts = append(r.Artifacts, publishArtifact{a.Name, a.Index, a.Size, a.Root, a.Chunks, a.NewChunks, a.NewBytes})
	}
	for _, d := range res.Deltas {
		st := d.Stats
		r.Deltas = append(r.Deltas, publishDelta{Artifact: d.Artifact, BaseVersion: d.BaseVersion, Target: d.Target,
			DeltaIndex: d.DeltaIndex, IndexBytes: d.IndexBytes, Rebuilt: d.Rebuilt, NewChunks: st.NewChunks, NewBytes: st.NewBytes,
			WholeBytes: st.WholeBytes, DeltaBytes: st.DeltaBytes, Deltas: st.Deltas, KeptWhole: st.KeptWhole,
			ObjectBytes: st.ObjectBytes, NewObjects: d.NewObjects, ReferenceBytes: st.RefBytes})
	}
	if asJSON {
		return writeJSON(w, r)
	}
	fmt.Fprintf(w, "published %s/%d: %d artifact(s), %s in %d chunks, %.2fs (%.0f MB/s)\n",
		r.Channel, r.Version, len(r.Artifacts), humanBytes(r.Bytes), r.Chunks, secs, r.MBPerSec)
	for _, a := range r.Artifacts {
		fmt.Fprintf(w, "  %-10s %s, %d chunks, root %s\n", a.Name, humanBytes(a.Size), a.Chunks, a.Root)
	}
	fmt.Fprintf(w, "wrote %d new chunks, %s (%s before compression)\n", r.NewChunks, humanBytes(r.NewBytes), humanBytes(r.NewRawBytes))
	for _, d := range r.Deltas {
		from := "its image"
		if d.Rebuilt {
			from = "rebuilt from the repository"
		}
		if d.Target == "" {
			fmt.Fprintf(w, "deltas %s from v%d (%s): none worth keeping for %d new chunks; devices fetch them whole\n", d.Artifact, d.BaseVersion, from, d.NewChunks)
			continue
		}
		fmt.Fprintf(w, "deltas %s from v%d (%s): %s for a device on v%d instead of %s whole (%d deltas, %d chunks whole, delta index %s)\n",
			d.Artifact, d.BaseVersion, from, humanBytes(d.DeltaBytes+int64(d.IndexBytes)), d.BaseVersion, humanBytes(d.WholeBytes), d.Deltas, d.KeptWhole, humanBytes(int64(d.IndexBytes)))
	}
	fmt.Fprintf(w, "metadata: targets v%d, snapshot v%d, timestamp v%d, root v%d\n", r.TargetsVersion, r.SnapshotVersion, r.TimestampVersion, r.RootVersion)
	if r.Log != nil {
		fmt.Fprintf(w, "log: targets v%d is entry %d; checkpoint: %d entries, root hash %s\n", r.TargetsVersion, r.Log.Entry, r.Log.TreeSize, r.Log.RootHash)
	} else {
		fmt.Fprintln(w, "log: none (the key directory has no log key)")
	}
	return nil
}
