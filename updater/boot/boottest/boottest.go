// Package boottest is the conformance suite every boot.Adapter passes,
// run against the adapter's own bootloader simulation: what the contract
// in package boot promises, checked by powering the simulated device on.
// The suite runs on the real filesystem and on an fsys.Crash, and
// CrashSweep cuts the power at every write, rename and sync of an update
// cycle to check that each change is atomic and durable.
package boottest

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/fsys"
)

// Device says how to set up and open one adapter whose boot state lives in
// a directory of a filesystem. Both functions must do all their I/O
// through the filesystem they are given (boot.WithFS), and Open must point
// the simulator's kernel command line at Cmdline(dir) (the file adapter,
// which has none, excepted).
type Device struct {
	// Init provisions a fresh device in dir, slot A the default, as a
	// factory or a first boot would. After a power cut in the middle of
	// it, calling it again must finish the job.
	Init func(f fsys.FS, dir string) error
	// Open opens the adapter and its simulator on the state Init left in
	// dir. It must not provision: a device whose state is gone is an
	// error, not a fresh device.
	Open func(f fsys.FS, dir string) (boot.Adapter, boot.Simulator, error)
}

// Cmdline is where Device.Open points the simulated kernel command line.
func Cmdline(dir string) string { return filepath.Join(dir, "cmdline") }

// crashDir is where a device's state lives on a simulated filesystem.
const crashDir = "/boot-state"

// newCrash returns a simulated filesystem holding a durable, empty
// crashDir, with o armed.
func newCrash(t *testing.T, o fsys.CrashOptions) *fsys.Crash {
	t.Helper()
	c := fsys.NewCrash(fsys.CrashOptions{})
	if err := fsys.MkdirAllDurable(c, crashDir, 0o755); err != nil {
		t.Fatal(err)
	}
	c.Reset(o)
	return c
}

// Run runs the suite twice, on the real filesystem and on an fsys.Crash
// with no crash point (where a reopen is a power cycle that keeps only
// what was made durable), each case on a fresh device.
func Run(t *testing.T, dev Device) {
	t.Run("OS", func(t *testing.T) {
		run(t, dev, func(t *testing.T) (fsys.FS, string, func(fsys.FS) fsys.FS) {
			return fsys.OS{}, t.TempDir(), func(f fsys.FS) fsys.FS { return f }
		})
	})
	t.Run("Crash", func(t *testing.T) {
		run(t, dev, func(t *testing.T) (fsys.FS, string, func(fsys.FS) fsys.FS) {
			return newCrash(t, fsys.CrashOptions{}), crashDir, func(f fsys.FS) fsys.FS { return f.(*fsys.Crash).AfterCrash() }
		})
	})
}

// run runs every case; setup gives the filesystem, the directory and what
// a reopen does to the filesystem.
func run(t *testing.T, dev Device, setup func(*testing.T) (fsys.FS, string, func(fsys.FS) fsys.FS)) {
	cases := []struct {
		name string
		fn   func(*testing.T, *device)
	}{
		{"FreshBootsDefault", testFreshBootsDefault},
		{"TrialCountsDownThenFallsBack", testTrialCountsDown},
		{"MaxTries", testMaxTries},
		{"MarkGoodMakesTrialPermanent", testMarkGood},
		{"MarkBadDuringTrial", testMarkBadDuringTrial},
		{"MarkBadDefault", testMarkBadDefault},
		{"MarkGoodEndsPendingTrial", testMarkGoodEndsPendingTrial},
		{"UpdateCycleBothWays", testUpdateCycle},
		{"Idempotent", testIdempotent},
		{"SurvivesReopen", testReopen},
		{"RejectsBadArguments", testRejects},
		{"CanceledContext", testCanceled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, dir, cycle := setup(t)
			if err := dev.Init(f, dir); err != nil {
				t.Fatalf("Init: %v", err)
			}
			d := &device{t: t, dev: dev, fs: f, dir: dir, cycle: cycle}
			d.open()
			c.fn(t, d)
		})
	}
}

// device is a simulated device under test.
type device struct {
	t     *testing.T
	dev   Device
	fs    fsys.FS
	dir   string
	cycle func(fsys.FS) fsys.FS
	a     boot.Adapter
	s     boot.Simulator
}

func (d *device) open() {
	d.t.Helper()
	a, s, err := d.dev.Open(d.fs, d.dir)
	if err != nil {
		d.t.Fatalf("Open: %v", err)
	}
	d.a, d.s = a, s
}

// reopen opens the adapter again on its files (after a power cycle, on a
// simulated filesystem).
func (d *device) reopen() {
	d.t.Helper()
	d.fs = d.cycle(d.fs)
	d.open()
}

// powerOn boots the device and checks the slot it chose.
func (d *device) powerOn(want string) {
	d.t.Helper()
	got, err := d.s.PowerOn(context.Background())
	if err != nil {
		d.t.Fatalf("PowerOn: %v", err)
	}
	if got != want {
		d.t.Fatalf("PowerOn booted slot %s, want %s", got, want)
	}
}

func (d *device) status() boot.Status {
	d.t.Helper()
	st, err := d.a.Status(context.Background())
	if err != nil {
		d.t.Fatalf("Status: %v", err)
	}
	return st
}

func (d *device) wantStatus(want boot.Status) {
	d.t.Helper()
	if got := d.status(); got != want {
		d.t.Fatalf("Status = %+v, want %+v", got, want)
	}
}

func (d *device) do(what string, err error) {
	d.t.Helper()
	if err != nil {
		d.t.Fatalf("%s: %v", what, err)
	}
}

func (d *device) setTentative(slot string, tries int) {
	d.t.Helper()
	d.do("SetTentative "+slot, d.a.SetTentative(context.Background(), slot, tries))
}

func (d *device) markGood(slot string) {
	d.t.Helper()
	d.do("MarkGood "+slot, d.a.MarkGood(context.Background(), slot))
}

func (d *device) markBad(slot string) {
	d.t.Helper()
	d.do("MarkBad "+slot, d.a.MarkBad(context.Background(), slot))
}

const a, b = boot.SlotA, boot.SlotB

func testFreshBootsDefault(t *testing.T, d *device) {
	d.powerOn(a)
	d.wantStatus(boot.Status{Booted: a, Default: a})
	d.powerOn(a)
	d.wantStatus(boot.Status{Booted: a, Default: a})
}

func testTrialCountsDown(t *testing.T, d *device) {
	d.powerOn(a)
	d.setTentative(b, 3)
	st := d.status()
	if st != (boot.Status{Booted: a, Default: a, Trial: b, TriesLeft: 3}) || st.Tentative() {
		t.Fatalf("after SetTentative(B, 3): %+v (tentative %v)", st, st.Tentative())
	}
	for left := 2; left >= 0; left-- {
		d.powerOn(b)
		st := d.status()
		if st != (boot.Status{Booted: b, Default: a, Trial: b, TriesLeft: left}) || !st.Tentative() {
			t.Fatalf("trial boot with %d tries left: %+v (tentative %v)", left, st, st.Tentative())
		}
	}
	d.powerOn(a) // tries used up: fall back
	d.wantStatus(boot.Status{Booted: a, Default: a})
	d.powerOn(a)
}

func testMaxTries(t *testing.T, d *device) {
	d.powerOn(a)
	d.setTentative(b, boot.MaxTries)
	for range boot.MaxTries {
		d.powerOn(b)
	}
	d.powerOn(a)
}

func testMarkGood(t *testing.T, d *device) {
	d.powerOn(a)
	d.setTentative(b, 3)
	d.powerOn(b)
	d.markGood(b)
	st := d.status()
	if st != (boot.Status{Booted: b, Default: b}) || st.Tentative() {
		t.Fatalf("after MarkGood(B): %+v", st)
	}
	for range 5 { // more than the tries: the trial is over
		d.powerOn(b)
	}
	d.wantStatus(boot.Status{Booted: b, Default: b})
}

func testMarkBadDuringTrial(t *testing.T, d *device) {
	d.powerOn(a)
	d.setTentative(b, 3)
	d.powerOn(b)
	d.markBad(b)
	d.wantStatus(boot.Status{Booted: b, Default: a})
	d.powerOn(a)
	d.wantStatus(boot.Status{Booted: a, Default: a})
	d.powerOn(a)
	// A new trial of the slot marked bad is allowed.
	d.setTentative(b, 1)
	d.powerOn(b)
	d.powerOn(a)
}

func testMarkBadDefault(t *testing.T, d *device) {
	d.powerOn(a)
	d.setTentative(b, 2)
	d.powerOn(b)
	d.markGood(b)
	d.powerOn(b)
	d.markBad(b) // e.g. a late health failure: go back to A for good
	d.wantStatus(boot.Status{Booted: b, Default: a})
	d.powerOn(a)
	d.powerOn(a)
}

func testMarkGoodEndsPendingTrial(t *testing.T, d *device) {
	d.powerOn(a)
	d.setTentative(b, 3)
	d.markGood(a) // changed our mind before rebooting
	d.wantStatus(boot.Status{Booted: a, Default: a})
	d.powerOn(a)
}

func testUpdateCycle(t *testing.T, d *device) {
	d.powerOn(a)
	d.setTentative(b, 2)
	d.powerOn(b)
	d.markGood(b)
	d.powerOn(b)
	d.setTentative(a, 2)
	d.wantStatus(boot.Status{Booted: b, Default: b, Trial: a, TriesLeft: 2})
	d.powerOn(a)
	d.wantStatus(boot.Status{Booted: a, Default: b, Trial: a, TriesLeft: 1})
	d.markGood(a)
	d.powerOn(a)
	d.setTentative(b, 2)
	d.powerOn(b)
	d.powerOn(b)
	d.powerOn(a)
	d.wantStatus(boot.Status{Booted: a, Default: a})
}

func testIdempotent(t *testing.T, d *device) {
	d.powerOn(a)
	d.setTentative(b, 3)
	d.powerOn(b)
	d.setTentative(b, 3) // again: the count starts over
	d.wantStatus(boot.Status{Booted: b, Default: a, Trial: b, TriesLeft: 3})
	d.markGood(b)
	d.markGood(b)
	d.wantStatus(boot.Status{Booted: b, Default: b})
	d.markBad(b)
	d.markBad(b)
	d.wantStatus(boot.Status{Booted: b, Default: a})
	d.powerOn(a)
}

func testReopen(t *testing.T, d *device) {
	d.powerOn(a)
	d.setTentative(b, 3)
	d.powerOn(b)
	d.reopen()
	d.wantStatus(boot.Status{Booted: b, Default: a, Trial: b, TriesLeft: 2})
	d.powerOn(b)
	d.reopen()
	d.wantStatus(boot.Status{Booted: b, Default: a, Trial: b, TriesLeft: 1})
	d.markGood(b)
	d.reopen()
	d.wantStatus(boot.Status{Booted: b, Default: b})
	d.powerOn(b)
}

func testRejects(t *testing.T, d *device) {
	ctx := context.Background()
	d.powerOn(a)
	before := d.status()
	for _, c := range []struct {
		what string
		err  error
		want error
	}{
		{"SetTentative(C, 1)", d.a.SetTentative(ctx, "C", 1), boot.ErrBadSlot},
		{"SetTentative(b, 1)", d.a.SetTentative(ctx, "b", 1), boot.ErrBadSlot},
		{"SetTentative(B, 0)", d.a.SetTentative(ctx, b, 0), boot.ErrBadTries},
		{"SetTentative(B, MaxTries+1)", d.a.SetTentative(ctx, b, boot.MaxTries+1), boot.ErrBadTries},
		{"SetTentative(A, 3) with A the default", d.a.SetTentative(ctx, a, 3), boot.ErrTrialOfDefault},
		{"MarkGood(\"\")", d.a.MarkGood(ctx, ""), boot.ErrBadSlot},
		{"MarkBad(AB)", d.a.MarkBad(ctx, "AB"), boot.ErrBadSlot},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want %v", c.what, c.err, c.want)
		}
	}
	if after := d.status(); after != before {
		t.Fatalf("rejected calls changed the state: %+v, then %+v", before, after)
	}
	d.powerOn(a)
}

func testCanceled(t *testing.T, d *device) {
	d.powerOn(a)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for what, err := range map[string]error{
		"SetTentative": d.a.SetTentative(ctx, b, 3),
		"MarkGood":     d.a.MarkGood(ctx, b),
		"MarkBad":      d.a.MarkBad(ctx, a),
	} {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: got %v", what, err)
		}
	}
	if _, err := d.a.Status(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Status with a canceled context: got %v", err)
	}
	if _, err := d.s.PowerOn(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("PowerOn with a canceled context: got %v", err)
	}
	d.wantStatus(boot.Status{Booted: a, Default: a})
	d.powerOn(a)
}
