package updater

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/internal/inputfile"
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
	// ErrReadOnly: the device was opened ReadOnly (without its lock) and
	// must not be changed.
	ErrReadOnly = errors.New("updater: device opened read-only")
	// ErrRefused: the state machine refused the release (older than or
	// equal to the installed one, or one that already failed here).
	ErrRefused = errors.New("updater: release refused")
)

// Device is one device's updater: its config, slots, boot adapter,
// persisted state machine, trust and audit log. Open takes the device's
// lock, so one process (a CLI command or the daemon) drives a device at a
// time; Close releases it. Not safe for concurrent use within a process:
// the daemon calls it from one goroutine.
type Device struct {
	Config *Config
	fs     fsys.FS
	boot   boot.Adapter
	sim    boot.Simulator
	m      *state.Machine
	audit  *audit.Log
	trust  trust
	now    func() time.Time
	log    func(format string, args ...any)
	ticks  func() (<-chan time.Time, func())
	// persisted is the state as last written, so a step that changes
	// nothing (a tick outside a health check) writes nothing.
	persisted []byte
	unlock    func() error
	// refusal is the reason of the last refused release, for messages.
	refusal string

	readOnly bool
	lockWait time.Duration
	holder   string
}

// Option configures Open.
type Option func(*Device)

// WithFS runs all state, slot and audit I/O through f (tests use a
// power-cut simulator).
func WithFS(f fsys.FS) Option { return func(d *Device) { d.fs = f } }

// WithClock sets the clock for audit timestamps and expiry checks.
func WithClock(now func() time.Time) Option { return func(d *Device) { d.now = now } }

// WithBoot replaces the boot adapter built from the config.
func WithBoot(a boot.Adapter, s boot.Simulator) Option {
	return func(d *Device) { d.boot, d.sim = a, s }
}

// WithLog receives progress messages meant for a person.
func WithLog(f func(format string, args ...any)) Option { return func(d *Device) { d.log = f } }

// WithTicks replaces the ticker that times BootCheck's health checks:
// each value received is one tick (TickPeriod). Tests feed ticks by hand.
func WithTicks(ch <-chan time.Time) Option {
	return func(d *Device) { d.ticks = func() (<-chan time.Time, func()) { return ch, func() {} } }
}

// ReadOnly opens the device without its lock, for commands that only
// look (status, audit log). Such a Device must not be changed.
func ReadOnly() Option { return func(d *Device) { d.readOnly = true } }

// WithLock sets who takes the device's lock (for the message a second
// caller gets, e.g. "shoal update apply") and how long Open waits for
// another holder (default DefaultLockWait).
func WithLock(holder string, wait time.Duration) Option {
	return func(d *Device) { d.holder, d.lockWait = holder, wait }
}

// TickPeriod is the length of one tick of the state machine on a real
// device: the health deadline is counted in these.
const TickPeriod = time.Second

const stateFile = "update.json"

// Open loads the device's state, creating it on first use: a device with
// no state starts Idle on the slot its bootloader boots by default. It
// checks that the slots are two distinct files, takes the device's lock
// (unless ReadOnly) and loads what the device trusts (root, log key).
func Open(ctx context.Context, cfg *Config, opts ...Option) (d *Device, err error) {
	d = &Device{Config: cfg, fs: fsys.OS{}, now: time.Now, log: func(string, ...any) {},
		lockWait: DefaultLockWait, holder: "shoal"}
	d.ticks = func() (<-chan time.Time, func()) {
		t := time.NewTicker(TickPeriod)
		return t.C, t.Stop
	}
	for _, o := range opts {
		o(d)
	}
	if err := cfg.CheckSlots(d.fs); err != nil {
		return nil, err
	}
	sdir := cfg.Path(cfg.State)
	if !d.readOnly {
		if err := fsys.MkdirAllDurable(d.fs, sdir, 0o755); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
		unlock, err := lockState(ctx, d.fs, sdir, d.holder, d.lockWait)
		if err != nil {
			return nil, err
		}
		d.unlock = unlock
		defer func() {
			if err != nil {
				unlock()
			}
		}()
	}
	if d.boot == nil {
		a, s, err := openBoot(cfg, d.fs)
		if err != nil {
			return nil, err
		}
		d.boot, d.sim = a, s
	}
	// A read-only device never opens the audit log for writing: opening
	// cuts a torn last line, which must only happen under the lock.
	if !d.readOnly {
		if d.audit, err = audit.Open(d.fs, filepath.Join(sdir, "audit"), d.now); err != nil {
			return nil, err
		}
	}
	scfg := state.Config{Tries: cfg.Boot.Tries, HealthDeadline: cfg.Health.deadlineTicks()}
	b, err := d.fs.ReadFile(filepath.Join(sdir, stateFile))
	switch {
	case err == nil:
		st, perr := state.ParseState(b)
		if perr != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(sdir, stateFile), perr)
		}
		d.m, err = state.New(scfg, st)
		d.persisted = b
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
	d.trust = loadTrust(d)
	return d, nil
}

// Close releases the device's lock. The Device must not be used after.
func (d *Device) Close() error {
	if d.unlock == nil {
		return nil
	}
	err := d.unlock()
	d.unlock = nil
	return err
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
	if d.readOnly {
		return fmt.Errorf("%w: cannot take %v", ErrReadOnly, ev)
	}
	actions, err := d.m.Step(ev)
	if err != nil {
		return err
	}
	b, err := jsonState(d.m.State())
	if err != nil {
		return err
	}
	if !bytes.Equal(b, d.persisted) {
		if err := fsys.WriteFileAtomic(d.fs, d.statePath(stateFile), b, 0o644); err != nil {
			return err
		}
		d.persisted = b
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
	if d.readOnly {
		return
	}
	var v uint64
	if r := d.m.State().Release; r != nil {
		v = r.Version
	}
	// Audit failures surface on the next append; a lost secondary record
	// must not stop a boot-critical step.
	_, _ = d.audit.Append(audit.Entry{Verdict: verdict, Version: v, Slot: slot, Reason: reason})
}

// PickArtifact is the artifact of a verified release that goes into
// slots configured for want ([slots] artifact): the one whose slot field
// is want, else whose name is, else the only one; with its index.
func PickArtifact(v *manifest.Verified, want string) (manifest.Artifact, *chunker.Index, error) {
	arts := v.Release.Artifacts
	for i, a := range arts {
		if a.Slot == want || (a.Slot == "" && a.Name == want) || len(arts) == 1 {
			return a, v.Indexes[i], nil
		}
	}
	names := make([]string, len(arts))
	for i, a := range arts {
		names[i] = a.Name + " (slot " + a.Slot + ")"
	}
	return manifest.Artifact{}, nil, fmt.Errorf("%w: want slot %q, release %s/%d has %v", ErrNoArtifact, want, v.Release.Channel, v.Release.Version, names)
}

// install writes ix into slot, copying what the active slot holds.
func (d *Device) install(ctx context.Context, slot string, v *manifest.Verified, art manifest.Artifact, ix *chunker.Index, chunks ChunkSource, o OfferOptions) (InstallStats, error) {
	target := d.Config.SlotPath(slot)
	idxPath := d.slotIndexPath(slot)
	// When the slot was being filled with this very index (an interrupted
	// install, or a retry of a release that rolled back), the chunks in
	// place are kept: the slot is hashed first, so nothing verified is
	// fetched twice. A fresh install skips that scan: hashing a slot full
	// of another release's bytes costs a full read and finds little, as
	// content-defined chunks rarely sit at the same offsets twice.
	old, err := d.fs.ReadFile(idxPath)
	resume := err == nil && bytes.Equal(old, ix.Encode())
	if !resume {
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
	// What was opened, not what the path said when the device was opened,
	// must not be the running slot (a /dev/disk/by-* link re-pointed since).
	if err := d.notActive(f, slot); err != nil {
		return InstallStats{}, err
	}
	size, err := slotSize(d.fs, target, f)
	if err != nil {
		return InstallStats{}, err
	}
	plan := InstallPlan{Target: f, TargetSize: size, Index: ix, Source: chunks, Resume: resume,
		Progress: o.Progress, SourceName: o.SourceName, Fetchers: o.Fetchers, Placed: o.Placed, Log: d.log}
	active := state.Other(slot)
	var base *LocalCopy
	if aix, err := d.readSlotIndex(active); err == nil {
		if af, err := d.fs.OpenFile(d.Config.SlotPath(active), os.O_RDONLY, 0); err == nil {
			defer af.Close()
			plan.Local = append(plan.Local, LocalCopy{File: af, Index: aix})
			base = &plan.Local[len(plan.Local)-1]
		}
	}
	var note InstallStats
	plan.Deltas = d.deltaPlan(ctx, v, art, ix, active, base, o, &note)
	if plan.Deltas != nil {
		d.log("installing %d chunks (%d bytes) into slot %s (%s), %d of them from deltas against v%d",
			len(ix.Chunks), ix.Size, slot, target, len(plan.Deltas.Index.Entries), note.DeltaBase)
	} else {
		d.log("installing %d chunks (%d bytes) into slot %s (%s)", len(ix.Chunks), ix.Size, slot, target)
	}
	st, err := Install(ctx, plan)
	st.DeltaBase, st.DeltaIndexBytes, st.DeltaNote = note.DeltaBase, note.DeltaIndexBytes, note.DeltaNote
	if plan.Deltas == nil {
		st.DeltaFailed += note.DeltaFailed
		st.DeltaRefusals = append(note.DeltaRefusals, st.DeltaRefusals...)
	}
	return st, err
}

// deltaPlan returns the deltas that build ix over the active slot, or nil
// (with the reason in note) when there are none to use: no fetcher for
// them, nothing installed in the active slot, no delta index from the
// installed release, or one that cannot be fetched or does not check.
// The active slot's index was checked against its signed Merkle root when
// it was installed, and the delta target names the base index it was made
// against; the two must be the same index.
func (d *Device) deltaPlan(ctx context.Context, v *manifest.Verified, art manifest.Artifact, ix *chunker.Index, active string, base *LocalCopy, o OfferOptions, note *InstallStats) *DeltaPlan {
	if o.Deltas == nil || v == nil {
		return nil
	}
	st := d.m.State()
	switch {
	case base == nil:
		note.DeltaNote = "no verified release in the active slot"
		return nil
	case st.Active != active || st.Installed == 0:
		note.DeltaNote = "the active slot's release is not known"
		return nil
	}
	dt, ok := v.Delta(art.Name, st.Installed)
	if !ok {
		note.DeltaNote = fmt.Sprintf("the repository lists no delta index from v%d", st.Installed)
		return nil
	}
	if !base.Index.CID().Equals(dt.BaseIndex) {
		note.DeltaNote = fmt.Sprintf("the active slot's index %s is not the delta base's %s", base.Index.CID(), dt.BaseIndex)
		return nil
	}
	name := o.DeltasName
	if name == "" {
		name = o.SourceName
	}
	dix, err := manifest.FetchDeltaIndex(ctx, o.Deltas, dt, 0)
	if err != nil {
		err = fmt.Errorf("delta index %s from %s: %w", dt.Path, name, err)
		d.log("%v; fetching whole chunks", err)
		if errors.Is(err, fetch.ErrNotFound) {
			// A source without deltas (a bundle made without --from, a
			// mirror that copied only chunks/) is no fault of the source.
			note.DeltaNote = "the source does not hold the delta index"
			return nil
		}
		note.noteDelta(err)
		note.DeltaNote = "the delta index was refused"
		return nil
	}
	note.DeltaBase, note.DeltaIndexBytes = dt.BaseVersion, dt.Length
	return &DeltaPlan{Index: dix, Base: *base, Fetcher: o.Deltas, SourceName: name}
}

// notActive checks that the opened target f is not the other slot's file.
func (d *Device) notActive(f fsys.File, slot string) error {
	other := d.Config.SlotPath(state.Other(slot))
	ti, err := f.Stat()
	if err != nil {
		return err
	}
	oi, err := d.fs.Stat(other)
	if err != nil {
		return fmt.Errorf("%w: [slots] %s: %w", ErrConfig, other, err)
	}
	if inputfile.Same(ti, oi, d.Config.SlotPath(slot), other) {
		return fmt.Errorf("%w: slot %s (%s) is now the same file as slot %s (%s); refusing to write it", ErrConfig, slot, d.Config.SlotPath(slot), state.Other(slot), other)
	}
	return nil
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
// bundle) through a fetch.Fetcher.
type RepoChunks struct {
	Fetcher  fetch.Fetcher
	MaxChunk int
}

// Get implements ChunkSource.
func (r RepoChunks) Get(ctx context.Context, id cid.Cid) ([]byte, error) {
	return manifest.FetchChunk(ctx, r.Fetcher, id, r.MaxChunk)
}
