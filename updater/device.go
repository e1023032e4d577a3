package updater

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/updater/audit"
	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/fsys"
	"github.com/shoalnet/shoal/updater/state"
)

// Errors callers branch on.
var (
	// ErrBusy: the operation does not fit the update in flight (e.g. a new
	// apply while a flipped release waits for its boot check).
	ErrBusy = errors.New("updater: another update is in flight")
	// ErrNoArtifact: the release has no artifact for this device's slots.
	ErrNoArtifact = errors.New("updater: release has no artifact for the slots")
	// ErrRefused: the state machine refused the release (older than or
	// equal to the installed one, or one that already failed here).
	ErrRefused = errors.New("updater: release refused")
)

// Device is one device's updater: its config, slots, boot adapter,
// persisted state machine and audit log. Not safe for concurrent use; one
// process drives a device at a time.
type Device struct {
	Config *Config
	fs     fsys.FS
	boot   boot.Adapter
	sim    boot.Simulator
	m      *state.Machine
	audit  *audit.Log
	now    func() time.Time
	log    func(format string, args ...any)
	// refusal is the reason of the last refused release, for messages.
	refusal string
}

// Option configures Open.
type Option func(*Device)

// WithFS runs all state, slot and audit I/O through f (tests use a
// power-cut simulator).
func WithFS(f fsys.FS) Option { return func(d *Device) { d.fs = f } }

// WithClock sets the clock for audit timestamps.
func WithClock(now func() time.Time) Option { return func(d *Device) { d.now = now } }

// WithBoot replaces the boot adapter built from the config.
func WithBoot(a boot.Adapter, s boot.Simulator) Option {
	return func(d *Device) { d.boot, d.sim = a, s }
}

// WithLog receives progress messages meant for a person.
func WithLog(f func(format string, args ...any)) Option { return func(d *Device) { d.log = f } }

const stateFile = "update.json"

// Open loads the device's state, creating it on first use: a device with
// no state starts Idle on the slot its bootloader boots by default.
func Open(ctx context.Context, cfg *Config, opts ...Option) (*Device, error) {
	d := &Device{Config: cfg, fs: fsys.OS{}, now: time.Now, log: func(string, ...any) {}}
	for _, o := range opts {
		o(d)
	}
	if d.boot == nil {
		a, s, err := openBoot(cfg, d.fs)
		if err != nil {
			return nil, err
		}
		d.boot, d.sim = a, s
	}
	sdir := cfg.Path(cfg.State)
	if err := fsys.MkdirAllDurable(d.fs, sdir, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	var err error
	if d.audit, err = audit.Open(d.fs, filepath.Join(sdir, "audit"), d.now); err != nil {
		return nil, err
	}
	scfg := state.Config{Tries: cfg.Boot.Tries}
	b, err := d.fs.ReadFile(filepath.Join(sdir, stateFile))
	switch {
	case err == nil:
		st, perr := state.ParseState(b)
		if perr != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(sdir, stateFile), perr)
		}
		d.m, err = state.New(scfg, st)
	case errors.Is(err, fs.ErrNotExist):
		bs, serr := d.boot.Status(ctx)
		if serr != nil {
			return nil, serr
		}
		active := bs.Default
		if active == "" {
			active = state.SlotA
		}
		d.m, err = state.New(scfg, state.Initial(active, 0))
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

// openBoot builds the adapter the config names.
func openBoot(cfg *Config, f fsys.FS) (boot.Adapter, boot.Simulator, error) {
	var opts []boot.Option
	if cfg.Boot.Cmdline != "" {
		opts = append(opts, boot.WithCmdline(cfg.Path(cfg.Boot.Cmdline)))
	}
	opts = append(opts, boot.WithFS(f))
	p := cfg.Path(cfg.Boot.Path)
	switch cfg.Boot.Adapter {
	case "file":
		a, err := boot.OpenFile(p, opts...)
		return a, a, err
	case "grub":
		a, err := boot.OpenGRUB(p, opts...)
		return a, a, err
	case "bls":
		a, err := boot.OpenBLS(p, opts...)
		return a, a, err
	case "uboot":
		text, err := f.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		uc, err := boot.ParseFwEnvConfig(string(text))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", p, err)
		}
		a, err := boot.OpenUBoot(uc, opts...)
		return a, a, err
	}
	return nil, nil, fmt.Errorf("%w: boot adapter %q", ErrConfig, cfg.Boot.Adapter)
}

// State returns the persisted update state.
func (d *Device) State() state.State { return d.m.State() }

// Boot returns the boot adapter.
func (d *Device) Boot() boot.Adapter { return d.boot }

// Simulator returns the bootloader simulation, or nil for a real device.
func (d *Device) Simulator() boot.Simulator {
	if !d.Config.Boot.Virtual {
		return nil
	}
	return d.sim
}

func (d *Device) statePath(name string) string {
	return filepath.Join(d.Config.Path(d.Config.State), name)
}

// slotIndexPath is where the index of the release a slot holds (or is
// being filled with) is kept, so its chunks can be copied locally later.
func (d *Device) slotIndexPath(slot string) string { return d.statePath("slot-" + slot + ".idx") }

// step feeds one event to the machine, persists the new state, then
// carries out the actions in order (duty 4 in updater/state's docs).
// Actions that need the caller's input (fetching, health checks) are
// returned as pending for the caller to run.
func (d *Device) step(ctx context.Context, ev state.Event, run func(state.Action) (state.Event, error)) error {
	actions, err := d.m.Step(ev)
	if err != nil {
		return err
	}
	b, err := jsonState(d.m.State())
	if err != nil {
		return err
	}
	if err := fsys.WriteFileAtomic(d.fs, d.statePath(stateFile), b, 0o644); err != nil {
		return err
	}
	for _, a := range actions {
		next, err := d.act(ctx, a, run)
		if err != nil {
			return err
		}
		if next != nil {
			if err := d.step(ctx, next, run); err != nil {
				return err
			}
		}
	}
	return nil
}

// act performs the actions the device can do by itself and hands the rest
// to run.
func (d *Device) act(ctx context.Context, a state.Action, run func(state.Action) (state.Event, error)) (state.Event, error) {
	switch a := a.(type) {
	case state.RecordAudit:
		if a.Verdict == state.VerdictRefused {
			d.refusal = a.Reason
		}
		_, err := d.audit.Append(audit.Entry{Verdict: string(a.Verdict), Version: a.Version, Reason: a.Reason})
		if errors.Is(err, audit.ErrHeadNotUpdated) {
			err = nil // the entry is recorded; only the head lags
		}
		return nil, err
	case state.FlipTentative:
		if err := d.boot.SetTentative(ctx, a.Slot, a.Tries); err != nil {
			return nil, err
		}
		d.record("flipped", a.Slot, "")
		return state.Flipped{}, nil
	case state.MarkGood:
		st, err := d.boot.Status(ctx)
		if err != nil {
			return nil, err
		}
		if st.Default == a.Slot && st.Trial == "" {
			// Already so: keep the audit log free of repeats.
			return state.MarkedGood{Slot: a.Slot}, nil
		}
		if err := d.boot.MarkGood(ctx, a.Slot); err != nil {
			return nil, err
		}
		d.record("marked-good", a.Slot, "")
		return state.MarkedGood{Slot: a.Slot}, nil
	case state.MarkBad:
		st, err := d.boot.Status(ctx)
		if err != nil {
			return nil, err
		}
		if st.Default != a.Slot && st.Trial != a.Slot {
			return nil, nil // already so
		}
		if err := d.boot.MarkBad(ctx, a.Slot); err != nil {
			return nil, err
		}
		d.record("marked-bad", a.Slot, "")
		return nil, nil
	}
	if run == nil {
		return nil, nil
	}
	return run(a)
}

func (d *Device) record(verdict, slot, reason string) {
	var v uint64
	if r := d.m.State().Release; r != nil {
		v = r.Version
	}
	// Audit failures surface on the next append; a lost secondary record
	// must not stop a boot-critical step.
	_, _ = d.audit.Append(audit.Entry{Verdict: verdict, Version: v, Slot: slot, Reason: reason})
}

// ApplyOptions configure Apply.
type ApplyOptions struct {
	// Mirrors serve the repository (directory, HTTP origin or bundle).
	Mirrors []manifest.Fetcher
	// Chunks serves chunk bytes; default: chunk objects from Mirrors[0].
	Chunks ChunkSource
	// SourceName names the source in messages.
	SourceName string
	// Verify overrides metadata verification (tests); default: a
	// manifest.Client over Mirrors with the provisioned root.
	Verify func(ctx context.Context, dev manifest.Device) (*manifest.Verified, error)
	// Progress reports installation progress in bytes.
	Progress func(done, total int64)
	// Rollout, if set, decides whether this device takes the release now.
	Rollout func(r *manifest.Release, d manifest.Device) error
	// RetryFailed lets an operator retry a release that rolled back on
	// this device before (normally refused): the machine is reset on the
	// active slot first, which the audit log records.
	RetryFailed bool
	// Fetchers is the number of concurrent chunk requests (default 4). An
	// interrupted apply loses at most this many chunks in flight.
	Fetchers int
}

// ApplyResult says what Apply did.
type ApplyResult struct {
	Version  uint64       `json:"version"`
	Channel  string       `json:"channel"`
	Slot     string       `json:"slot"`
	UpToDate bool         `json:"up_to_date"`
	Stats    InstallStats `json:"stats"`
	State    string       `json:"state"`
	// Reboot is true when the release is flipped and waits for a reboot.
	Reboot bool `json:"reboot"`
}

// Apply verifies the newest release for this device, installs it into the
// inactive slot and flips the bootloader to try it. An apply interrupted
// by a crash, a kill or a network failure resumes from what the slot holds
// when called again. A failure is kept for `update status` (last_error).
func (d *Device) Apply(ctx context.Context, o ApplyOptions) (*ApplyResult, error) {
	res, err := d.apply(ctx, o)
	d.noteError(err)
	return res, err
}

const lastErrorFile = "last-error"

// noteError remembers the last failed apply for Status, or forgets it
// after a success. Best effort: it must not mask the real outcome.
func (d *Device) noteError(err error) {
	p := d.statePath(lastErrorFile)
	if err == nil {
		if _, serr := d.fs.Stat(p); serr == nil {
			_ = d.fs.Remove(p)
		}
		return
	}
	msg := d.now().UTC().Format(time.RFC3339) + " " + err.Error()
	_ = fsys.WriteFileAtomic(d.fs, p, []byte(msg), 0o644)
}

func (d *Device) apply(ctx context.Context, o ApplyOptions) (*ApplyResult, error) {
	st := d.m.State()
	dev := manifest.Device{ID: d.Config.Device.ID, Channel: d.Config.Device.Channel,
		Hardware: d.Config.Device.Hardware, Arch: d.Config.Device.Arch, Installed: st.Installed}
	verify := o.Verify
	if verify == nil {
		root, err := d.fs.ReadFile(d.Config.Path(d.Config.Trust.Root))
		if err != nil {
			return nil, fmt.Errorf("trusted root: %w", err)
		}
		ccfg := manifest.ClientConfig{
			TrustedRoot: root, StateDir: d.statePath("trust"), Mirrors: o.Mirrors,
			Now: d.now, Rollout: o.Rollout,
		}
		if d.Config.Trust.RequireLog {
			// The log checkpoint is remembered next to the TUF state.
			p := d.Config.Path(d.Config.Trust.LogKey)
			kb, err := d.fs.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("log key: %w", err)
			}
			w, err := manifest.NewLogWitness(manifest.ParseLogKeys(kb), d.statePath("trust"))
			if err != nil {
				return nil, fmt.Errorf("log key %s: %w", p, err)
			}
			ccfg.Witness = w
		}
		client, err := manifest.NewClient(ccfg)
		if err != nil {
			return nil, err
		}
		verify = client.Verify
	}
	v, err := verify(ctx, dev)
	if err != nil {
		d.record("rejected", "", err.Error())
		return nil, err
	}
	res := &ApplyResult{Version: v.Release.Version, Channel: v.Release.Channel}
	if st.Phase == state.Staged || st.Phase == state.Tentative {
		if st.Release.Version != v.Release.Version {
			return nil, fmt.Errorf("%w: release v%d is %s; reboot and run boot-check, or roll back first", ErrBusy, st.Release.Version, st.Phase)
		}
		// This release is verified already. An apply killed between the
		// verification and the flip left it Staged: flip it now (the
		// machine asks for the flip again when told the old slot runs).
		if st.Phase == state.Staged {
			if err := d.step(ctx, state.Booted{Slot: st.Active}, nil); err != nil {
				return nil, err
			}
		}
		after := d.m.State()
		res.Slot, res.State, res.Reboot = after.Target, after.Phase.String(), after.Phase == state.Tentative
		return res, nil
	}
	// Never write the slot that runs: after a rollback the failed target
	// runs until the device reboots.
	bs, err := d.boot.Status(ctx)
	if err != nil {
		return nil, err
	}
	if bs.Booted != "" && bs.Booted != st.Active {
		return nil, fmt.Errorf("%w: slot %s is running but slot %s is active; reboot first", ErrBusy, bs.Booted, st.Active)
	}
	if o.RetryFailed && st.Phase == state.RolledBack && st.FailedVersion == v.Release.Version {
		if err := d.step(ctx, state.Reset{Active: st.Active, Installed: st.Installed}, nil); err != nil {
			return nil, err
		}
		st = d.m.State()
	}
	if v.UpToDate {
		res.UpToDate, res.State = true, st.Phase.String()
		return res, nil
	}
	art, ix, err := d.pickArtifact(v)
	if err != nil {
		return nil, err
	}
	rel := state.Release{Channel: v.Release.Channel, Version: v.Release.Version,
		Roots: map[string]string{art.Name: art.Root.String()}}

	chunks := o.Chunks
	if chunks == nil {
		if len(o.Mirrors) == 0 {
			return nil, fmt.Errorf("updater: no source for chunks")
		}
		chunks = RepoChunks{Fetcher: o.Mirrors[0], MaxChunk: ix.Params.Max}
	}
	var installErr error
	fetched := false
	run := func(a state.Action) (state.Event, error) {
		switch a := a.(type) {
		case state.StartFetch:
			if fetched {
				// The machine retries after FetchFailed; the caller is
				// to back off, so the retry waits for the next apply.
				return nil, nil
			}
			fetched = true
			res.Slot = a.Slot
			stats, err := d.install(ctx, a.Slot, ix, chunks, o)
			res.Stats = stats
			if err != nil {
				installErr = err
				if ctx.Err() != nil {
					return nil, err // interrupted: resume next time
				}
				return state.FetchFailed{Reason: err.Error()}, nil
			}
			n := int64(len(ix.Chunks))
			return state.ChunksWritten{Done: n, Total: n}, nil
		case state.VerifySlot:
			// Install re-read and checked every chunk after its fsync;
			// here the index it checked against is matched to the signed
			// root once more, from the copy kept on disk.
			if err := d.checkSlotIndex(a.Slot, art.Root); err != nil {
				return state.Verified{OK: false, Reason: err.Error()}, nil
			}
			return state.Verified{OK: true}, nil
		case state.Reboot:
			res.Reboot = true
			return nil, nil
		}
		return nil, nil
	}
	if st.Phase == state.Fetching && st.Release != nil && st.Release.Version == rel.Version && maps.Equal(st.Release.Roots, rel.Roots) {
		// Resume the fetch in flight: the machine re-issues StartFetch on
		// Booted, but an apply without a reboot resumes directly.
		ev, err := run(state.StartFetch{Slot: st.Target, Version: rel.Version})
		if err != nil {
			return res, err
		}
		if err := d.step(ctx, ev, run); err != nil {
			return res, err
		}
	} else {
		if err := d.step(ctx, state.ReleaseOffered{Release: rel}, run); err != nil {
			if errors.Is(err, state.ErrInvalidEvent) {
				return res, fmt.Errorf("%w: %v", ErrBusy, err)
			}
			return res, err
		}
	}
	after := d.m.State()
	res.State = after.Phase.String()
	if installErr != nil {
		return res, installErr
	}
	if after.Phase != state.Tentative && after.Phase != state.Staged {
		reason := after.LastError
		if after.Reason != "" {
			reason = after.Reason
		}
		if d.refusal != "" {
			reason = d.refusal
		}
		return res, fmt.Errorf("%w: v%d ends %s: %s", ErrRefused, rel.Version, after.Phase, reason)
	}
	return res, nil
}

func (d *Device) pickArtifact(v *manifest.Verified) (manifest.Artifact, *chunker.Index, error) {
	arts := v.Release.Artifacts
	want := d.Config.Slots.Artifact
	for i, a := range arts {
		if a.Slot == want || (a.Slot == "" && a.Name == want) || len(arts) == 1 {
			return a, v.Indexes[i], nil
		}
	}
	names := make([]string, len(arts))
	for i, a := range arts {
		names[i] = a.Name + " (slot " + a.Slot + ")"
	}
	return manifest.Artifact{}, nil, fmt.Errorf("%w: want slot %q, release v%d has %v", ErrNoArtifact, want, v.Release.Version, names)
}

// install writes ix into slot, copying what the active slot holds.
func (d *Device) install(ctx context.Context, slot string, ix *chunker.Index, chunks ChunkSource, o ApplyOptions) (InstallStats, error) {
	target := d.Config.SlotPath(slot)
	idxPath := d.slotIndexPath(slot)
	// Chunks already in place (an interrupted install of this or an
	// earlier index, or a retry of a release that rolled back) are kept:
	// the slot is hashed first, so nothing verified is fetched twice.
	if old, err := d.fs.ReadFile(idxPath); err != nil || string(old) != string(ix.Encode()) {
		// Record what the slot is about to hold before writing it, so an
		// interrupted install resumes instead of starting over.
		if err := fsys.WriteFileAtomic(d.fs, idxPath, ix.Encode(), 0o644); err != nil {
			return InstallStats{}, err
		}
	}
	f, err := d.fs.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		return InstallStats{}, fmt.Errorf("open slot %s: %w", slot, err)
	}
	defer f.Close()
	size, err := slotSize(d.fs, target, f)
	if err != nil {
		return InstallStats{}, err
	}
	plan := InstallPlan{Target: f, TargetSize: size, Index: ix, Source: chunks, Resume: true,
		Progress: o.Progress, SourceName: o.SourceName, Fetchers: o.Fetchers}
	active := state.Other(slot)
	if aix, err := d.readSlotIndex(active); err == nil {
		if af, err := d.fs.OpenFile(d.Config.SlotPath(active), os.O_RDONLY, 0); err == nil {
			defer af.Close()
			plan.Local = append(plan.Local, LocalCopy{File: af, Index: aix})
		}
	}
	d.log("installing %d chunks (%d bytes) into slot %s (%s)", len(ix.Chunks), ix.Size, slot, target)
	return Install(ctx, plan)
}

func (d *Device) readSlotIndex(slot string) (*chunker.Index, error) {
	b, err := d.fs.ReadFile(d.slotIndexPath(slot))
	if err != nil {
		return nil, err
	}
	return chunker.DecodeIndex(b)
}

// checkSlotIndex confirms the index kept for slot has the signed root.
func (d *Device) checkSlotIndex(slot string, root chunker.Digest) error {
	ix, err := d.readSlotIndex(slot)
	if err != nil {
		return fmt.Errorf("index of slot %s: %w", slot, err)
	}
	if got := ix.Root(); got != root {
		return fmt.Errorf("slot %s index has Merkle root %s, release says %s", slot, got, root)
	}
	return nil
}

// slotSize is a slot's capacity: the file size, or for a block device its
// size from seeking to the end.
func slotSize(f fsys.FS, path string, file fsys.File) (int64, error) {
	st, err := file.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode()&fs.ModeDevice == 0 {
		return st.Size(), nil
	}
	if s, ok := file.(io.Seeker); ok {
		n, err := s.Seek(0, io.SeekEnd)
		if err != nil {
			return 0, fmt.Errorf("size of %s: %w", path, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("size of block device %s: not seekable", path)
}

// VerifySlot re-reads a slot and checks it against the index kept for it.
func (d *Device) VerifySlot(ctx context.Context, slot string) error {
	ix, err := d.readSlotIndex(slot)
	if err != nil {
		return fmt.Errorf("index of slot %s: %w", slot, err)
	}
	f, err := d.fs.OpenFile(d.Config.SlotPath(slot), os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return chunker.Verify(ctx, io.NewSectionReader(f, 0, ix.Size), ix)
}

// RepoChunks serves chunks from a repository (directory, HTTP origin or
// bundle) through a manifest.Fetcher.
type RepoChunks struct {
	Fetcher  manifest.Fetcher
	MaxChunk int
}

// Get implements ChunkSource.
func (r RepoChunks) Get(ctx context.Context, id cid.Cid) ([]byte, error) {
	return manifest.FetchChunk(ctx, r.Fetcher, id, r.MaxChunk)
}
