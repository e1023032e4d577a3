// Package boottest is the conformance suite every boot.Adapter passes,
// run against the adapter's own bootloader simulation: what the contract
// in package boot promises, checked by powering the simulated device on.
package boottest

import (
	"context"
	"errors"
	"testing"

	"github.com/shoalnet/shoal/updater/boot"
)

// Opener opens the adapter (and its simulator) whose state lives in dir.
// The first call for a dir starts from a fresh device (slot A the
// default); later calls must reopen the same state from its files.
type Opener func(t *testing.T, dir string) (boot.Adapter, boot.Simulator)

// Run runs the suite, each case on a fresh device in its own directory.
func Run(t *testing.T, open Opener) {
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
			dir := t.TempDir()
			a, s := open(t, dir)
			c.fn(t, &device{t: t, dir: dir, open: open, a: a, s: s})
		})
	}
}

// device is a simulated device under test.
type device struct {
	t    *testing.T
	dir  string
	open Opener
	a    boot.Adapter
	s    boot.Simulator
}

func (d *device) reopen() {
	d.t.Helper()
	d.a, d.s = d.open(d.t, d.dir)
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
