package boottest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/fsys"
)

// SweepOptions configure CrashSweep.
type SweepOptions struct {
	// SkipTear leaves out the torn-write mode. Only for a store that a
	// torn write may legitimately corrupt: a U-Boot environment with a
	// single copy, rewritten in place, is as exposed to one as it is
	// under U-Boot itself.
	SkipTear bool
}

// SweepResult says how many crash points a sweep covered.
type SweepResult struct {
	// Points is the number of mutating operations in the script, each a
	// crash point.
	Points int
	// Runs is the number of crashed runs checked: Points, twice when torn
	// writes were swept too.
	Runs int
}

// step is one call of the sweep's script.
type step struct {
	name string
	do   func(ctx context.Context, a boot.Adapter, s boot.Simulator) error
}

func powerOn(ctx context.Context, _ boot.Adapter, s boot.Simulator) error {
	_, err := s.PowerOn(ctx)
	return err
}

// script is an update to B that is committed, then an update to A that is
// abandoned. Init comes before it.
var script = []step{
	{"SetTentative(B, 3)", func(ctx context.Context, a boot.Adapter, _ boot.Simulator) error {
		return a.SetTentative(ctx, boot.SlotB, 3)
	}},
	{"PowerOn", powerOn},
	{"PowerOn", powerOn},
	{"MarkGood(B)", func(ctx context.Context, a boot.Adapter, _ boot.Simulator) error { return a.MarkGood(ctx, boot.SlotB) }},
	{"SetTentative(A, 2)", func(ctx context.Context, a boot.Adapter, _ boot.Simulator) error {
		return a.SetTentative(ctx, boot.SlotA, 2)
	}},
	{"PowerOn", powerOn},
	{"MarkBad(A)", func(ctx context.Context, a boot.Adapter, _ boot.Simulator) error { return a.MarkBad(ctx, boot.SlotA) }},
	{"PowerOn", powerOn},
}

// wantViews is what the bootloader finds at power-on after init and after
// each step of the script (Booted aside: see powerOnView).
var wantViews = []boot.Status{
	{Default: a},
	{Default: a, Trial: b, TriesLeft: 3},
	{Default: a, Trial: b, TriesLeft: 2},
	{Default: a, Trial: b, TriesLeft: 1},
	{Default: b},
	{Default: b, Trial: a, TriesLeft: 2},
	{Default: b, Trial: a, TriesLeft: 1},
	{Default: b},
	{Default: b},
}

// stepName names step i, counting init as step 0.
func stepName(i int) string {
	if i == 0 {
		return "Init"
	}
	return script[i-1].name
}

// runScript runs init and the script on f, calling after(i) once step i
// has returned. It returns how many steps returned and the error that
// stopped it.
func runScript(ctx context.Context, dev Device, f fsys.FS, after func(i int)) (int, error) {
	if err := dev.Init(f, crashDir); err != nil {
		return 0, fmt.Errorf("Init: %w", err)
	}
	ad, sim, err := dev.Open(f, crashDir)
	if err != nil {
		return 0, fmt.Errorf("Open after Init: %w", err)
	}
	after(0)
	for i, s := range script {
		if err := s.do(ctx, ad, sim); err != nil {
			return i + 1, fmt.Errorf("%s: %w", s.name, err)
		}
		after(i + 1)
	}
	return len(script) + 1, nil
}

// powerOnView is what the bootloader finds on f at the next power-on: the
// kernel command line of the system that lost power is gone (it lived in
// /proc), so the state is judged from the bootloader's files alone.
func powerOnView(ctx context.Context, dev Device, f fsys.FS) (boot.Adapter, boot.Simulator, boot.Status, error) {
	if err := f.Remove(Cmdline(crashDir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, boot.Status{}, err
	}
	ad, sim, err := dev.Open(f, crashDir)
	if err != nil {
		return nil, nil, boot.Status{}, fmt.Errorf("Open: %w", err)
	}
	st, err := ad.Status(ctx)
	if err != nil {
		return nil, nil, boot.Status{}, fmt.Errorf("Status: %w", err)
	}
	return ad, sim, st, nil
}

// CrashSweep runs init and an update cycle (SetTentative(B,3), PowerOn,
// PowerOn, MarkGood(B), SetTentative(A,2), PowerOn, MarkBad(A), PowerOn) on
// an fsys.Crash, once to record the state after each call and count the
// operations, then once per crash point k, cutting the power at operation
// k, with and without tearing the last write. At the next power-on the
// adapter must open, its Status must be the state before or after the
// call that was cut short (never older than the last call that returned),
// and PowerOn must boot the slot that state says: the trial while it has
// tries, else the default. A cut in Init is followed by Init again, as a
// device that lost power while being provisioned would be.
func CrashSweep(t *testing.T, dev Device, o SweepOptions) SweepResult {
	t.Helper()
	ctx := context.Background()

	// The clean run: the state each returned call leaves on disk.
	clean := newCrash(t, fsys.CrashOptions{})
	var states []boot.Status
	_, err := runScript(ctx, dev, clean, func(i int) {
		_, _, st, err := powerOnView(ctx, dev, clean.AfterCrash())
		if err != nil {
			t.Fatalf("after %s, at the next power-on: %v", stepName(i), err)
		}
		view := st
		view.Booted = "" // the file adapter stores it; judged apart
		if view != wantViews[i] {
			t.Fatalf("after %s, at the next power-on: %+v, want %+v", stepName(i), view, wantViews[i])
		}
		states = append(states, st)
	})
	if err != nil {
		t.Fatalf("clean run: %v", err)
	}
	res := SweepResult{Points: clean.Ops()}
	if res.Points == 0 {
		t.Fatal("the script did no I/O through the filesystem it was given")
	}

	tears := []bool{false, true}
	if o.SkipTear {
		tears = tears[:1]
	}
	for _, tear := range tears {
		for k := 1; k <= res.Points; k++ {
			res.Runs++
			c := newCrash(t, fsys.CrashOptions{CrashAt: k, TearLastWrite: tear, Seed: uint64(k)})
			returned, err := runScript(ctx, dev, c, func(int) {})
			where := fmt.Sprintf("crash at operation %d of %d (tear %v) in %s", k, res.Points, tear, stepName(returned))
			if !errors.Is(err, fsys.ErrCrashed) || !c.Crashed() {
				t.Fatalf("%s: the run did not stop at the crash point: %v", where, err)
			}
			after := c.AfterCrash()
			allowed := []boot.Status{states[0]}
			if returned == 0 {
				if err := dev.Init(after, crashDir); err != nil {
					t.Fatalf("%s: Init again: %v\n%s", where, err, after.Dump())
				}
			} else {
				allowed = []boot.Status{states[returned-1], states[returned]}
			}
			ad, sim, st, err := powerOnView(ctx, dev, after)
			if err != nil {
				t.Fatalf("%s: %v\n%s", where, err, after.Dump())
			}
			if st != allowed[0] && st != allowed[len(allowed)-1] {
				t.Fatalf("%s: state %+v, want the state before (%+v) or after (%+v)\n%s",
					where, st, allowed[0], allowed[len(allowed)-1], after.Dump())
			}
			want := st.Default
			if st.Trial != "" && st.TriesLeft > 0 {
				want = st.Trial
			}
			slot, err := sim.PowerOn(ctx)
			if err != nil {
				t.Fatalf("%s: PowerOn: %v\n%s", where, err, after.Dump())
			}
			if slot != want {
				t.Fatalf("%s: PowerOn booted %s from %+v, want %s", where, slot, st, want)
			}
			if st, err := ad.Status(ctx); err != nil || st.Booted != slot {
				t.Fatalf("%s: Status after PowerOn: %+v, %v; want booted %s", where, st, err, slot)
			}
		}
	}
	return res
}
