package updater

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/updater/fsys"
	"github.com/shoalnet/shoal/updater/state"
)

// ErrNothingInstalled: the running slot holds no release installed by
// shoal, so there is no verified index to serve it by.
var ErrNothingInstalled = errors.New("updater: the running slot holds no verified release")

// RunningSlot is the slot the device runs, opened read-only, with the
// index it was verified against when it was installed: the swarm serves
// chunks of the running release straight from it, at the index's offsets,
// without a second copy. Close it when done.
type RunningSlot struct {
	Slot    string
	Version uint64
	Index   *chunker.Index
	f       fsys.File
}

// ReadAt reads the slot's bytes.
func (r *RunningSlot) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }

// Close closes the slot.
func (r *RunningSlot) Close() error { return r.f.Close() }

// Running opens the running slot for reading. The running slot is the
// booted one when the bootloader says, else the active one; the updater
// never writes it (a release is only ever fetched into the other slot).
// Its index is the one kept for the slot, which the install checked
// against the signed Merkle root before the slot was flipped.
func (d *Device) Running() (*RunningSlot, error) {
	st := d.m.State()
	slot, version := st.Active, st.Installed
	if st.Running != "" && st.Running != st.Active {
		// A trial boot of the target, or a rolled-back target still
		// running: only the former holds a release that verified.
		if st.Phase != state.Tentative || !st.Booted {
			return nil, fmt.Errorf("%w: slot %s runs a release that was rolled back", ErrNothingInstalled, st.Running)
		}
		slot, version = st.Running, st.Release.Version
	}
	ix, err := d.readSlotIndex(slot)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no index kept for slot %s", ErrNothingInstalled, slot)
	}
	if err != nil {
		return nil, fmt.Errorf("index of slot %s: %w", slot, err)
	}
	if version == 0 {
		return nil, fmt.Errorf("%w: slot %s has no installed version", ErrNothingInstalled, slot)
	}
	f, err := d.fs.OpenFile(d.Config.SlotPath(slot), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	return &RunningSlot{Slot: slot, Version: version, Index: ix, f: f}, nil
}

// Filling opens the slot a release is being installed into (Fetching) or
// waits in for its trial (Staged, or Tentative before the reboot), with the
// release's index, for reading. Only positions an install reported through
// OfferOptions.Placed hold verified bytes; the rest may hold anything.
func (d *Device) Filling() (*RunningSlot, error) {
	st := d.m.State()
	switch {
	case st.Phase == state.Fetching, st.Phase == state.Staged, st.Phase == state.Tentative && !st.Booted:
	default:
		return nil, fmt.Errorf("%w: no release is being installed (%s)", ErrNothingInstalled, st.Phase)
	}
	ix, err := d.readSlotIndex(st.Target)
	if err != nil {
		return nil, fmt.Errorf("index of slot %s: %w", st.Target, err)
	}
	f, err := d.fs.OpenFile(d.Config.SlotPath(st.Target), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	return &RunningSlot{Slot: st.Target, Version: st.Release.Version, Index: ix, f: f}, nil
}
