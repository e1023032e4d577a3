package updater

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/updater/fsys"
	"github.com/shoalnet/shoal/updater/state"
)

// OfferOptions configure Offer.
type OfferOptions struct {
	// SourceName names the chunk source in messages.
	SourceName string
	// Progress reports installation progress in bytes.
	Progress func(done, total int64)
	// RetryFailed lets an operator retry a release that rolled back on
	// this device before (normally refused): the machine is reset on the
	// active slot first, which the audit log records.
	RetryFailed bool
	// Fetchers is the number of concurrent chunk requests (default 4). An
	// interrupted install loses at most this many chunks in flight. A
	// BulkSource chooses its own concurrency.
	Fetchers int
	// Placed, if set, hears which chunk positions of the release hold
	// verified bytes in the target slot as the install goes (see
	// InstallPlan.Placed): a node serves those to its peers meanwhile,
	// reading them through Filling.
	Placed func(positions []int)
	// Deltas serves the repository's delta indexes and delta objects (a
	// directory, an HTTP origin, a bundle). With it, a device whose active
	// slot holds a release the new one lists a delta index for builds the
	// chunks that index covers from deltas against that slot, and fetches
	// only the rest whole from the chunk source (docs/deltas.md). Nil: whole
	// chunks only. A node whose chunks come from the swarm may set its
	// origin here: deltas then cross the uplink once per device, not once
	// per site.
	Deltas fetch.Fetcher
	// DeltasName names Deltas in messages (default: SourceName).
	DeltasName string
}

// ApplyOptions configure Apply.
type ApplyOptions struct {
	// Mirrors serve the repository (directory, HTTP origin or bundle).
	Mirrors []fetch.Fetcher
	// Chunks serves chunk bytes; default: chunk objects from the mirror
	// whose metadata won, which then serves delta objects too (unless
	// Deltas is set).
	Chunks ChunkSource
	OfferOptions
}

// ApplyResult says what Apply or Offer did.
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

// Apply verifies the newest release for this device over o.Mirrors and
// offers it with o.Chunks (by default the chunk objects of the first
// mirror): the CLI's one-shot update. An apply interrupted by a crash, a
// kill or a network failure resumes from what the slot holds when called
// again. A failure is kept for `update status` (last_error).
func (d *Device) Apply(ctx context.Context, o ApplyOptions) (*ApplyResult, error) {
	res, err := d.applyOnce(ctx, o)
	d.noteError(err)
	return res, err
}

func (d *Device) applyOnce(ctx context.Context, o ApplyOptions) (*ApplyResult, error) {
	v, err := d.Verify(ctx, o.Mirrors)
	if err != nil {
		return nil, err
	}
	chunks := o.Chunks
	if chunks == nil {
		maxChunk := 0
		for _, ix := range v.Indexes {
			maxChunk = max(maxChunk, ix.Params.Max)
		}
		chunks = RepoChunks{Fetcher: o.Mirrors[v.Mirror], MaxChunk: maxChunk}
		if o.Deltas == nil {
			o.Deltas = o.Mirrors[v.Mirror]
		}
	}
	return d.offer(ctx, v, chunks, o.OfferOptions)
}

// Offer installs a release that was verified already — by Verify, or by
// a node's gossip validator from the signed metadata an announcement
// carries — taking the chunks it lacks from src (a repository, a bundle,
// the swarm; every chunk is checked against its ID, so src need not be
// trusted). It checks that the release fits this device and its rollout,
// installs it into the inactive slot, verifies the slot against the signed
// Merkle root and flips the bootloader to try it. Like Apply, an
// interrupted Offer resumes when called again, and a failure is kept for
// Status.
func (d *Device) Offer(ctx context.Context, v *manifest.Verified, src ChunkSource, o OfferOptions) (*ApplyResult, error) {
	res, err := d.offerChecked(ctx, v, src, o)
	d.noteError(err)
	return res, err
}

func (d *Device) offerChecked(ctx context.Context, v *manifest.Verified, src ChunkSource, o OfferOptions) (*ApplyResult, error) {
	if v == nil || v.Release == nil || len(v.Indexes) != len(v.Release.Artifacts) {
		return nil, fmt.Errorf("updater: offered release is incomplete (no release or indexes)")
	}
	if err := d.Eligible(v.Release); err != nil {
		d.record("rejected", "", err.Error())
		return nil, err
	}
	vv := *v
	vv.UpToDate = v.Release.Version == d.m.State().Installed
	return d.offer(ctx, &vv, src, o)
}

const lastErrorFile = "last-error"

// noteError remembers the last failed apply for Status, or forgets it
// after a success. Best effort: it must not mask the real outcome.
func (d *Device) noteError(err error) {
	if d.readOnly {
		return
	}
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

// noteBoot tells a machine at rest that the device came up on its active
// slot when no boot check has reported that boot yet (the device was
// rebooted after a rollback and `update boot-check` did not run): without
// it the machine still believes the failed slot runs and refuses every
// release. During an update only boot-check may report a boot, since a
// trial boot needs its health checks.
func (d *Device) noteBoot(ctx context.Context, booted string) error {
	st := d.m.State()
	atRest := st.Phase == state.Idle || st.Phase == state.Committed || st.Phase == state.RolledBack
	if !atRest || booted == "" || booted != st.Active || booted == st.Running {
		return nil
	}
	return d.step(ctx, state.Booted{Slot: booted}, nil)
}

func (d *Device) offer(ctx context.Context, v *manifest.Verified, chunks ChunkSource, o OfferOptions) (*ApplyResult, error) {
	bs, err := d.boot.Status(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.noteBoot(ctx, bs.Booted); err != nil {
		return nil, err
	}
	st := d.m.State()
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
	if bs.Booted != "" && bs.Booted != st.Active {
		return nil, fmt.Errorf("%w: slot %s is running but slot %s is active; reboot into slot %s first", ErrBusy, bs.Booted, st.Active, st.Active)
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
	art, ix, err := PickArtifact(v, d.Config.Slots.Artifact)
	if err != nil {
		return nil, err
	}
	rel := state.Release{Channel: v.Release.Channel, Version: v.Release.Version,
		Roots: map[string]string{art.Name: art.Root.String()}}
	if chunks == nil {
		return nil, fmt.Errorf("updater: no source for chunks")
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
			stats, err := d.install(ctx, a.Slot, v, art, ix, chunks, o)
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
			// A mismatch here means the copy on disk was damaged after
			// the install wrote it, not that the release is bad: no
			// verdict; the next apply rewrites the copy and verifies again.
			if err := d.checkSlotIndex(a.Slot, art.Root); err != nil {
				installErr = fmt.Errorf("%w: %w", ErrVerifyFailed, err)
				return nil, installErr
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
