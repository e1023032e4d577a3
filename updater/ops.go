package updater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/updater/audit"
	"github.com/shoalnet/shoal/updater/state"
)

func jsonState(s state.State) ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// BootCheckResult says what boot-check decided.
type BootCheckResult struct {
	Booted     string `json:"booted"`
	Tentative  bool   `json:"tentative"`
	Healthy    bool   `json:"healthy"`
	Committed  bool   `json:"committed"`
	RolledBack bool   `json:"rolled_back"`
	Reason     string `json:"reason,omitempty"`
	State      string `json:"state"`
	// Reboot is true when the device must reboot (into the old slot).
	Reboot bool `json:"reboot"`
}

// BootCheck runs at every boot: it tells the state machine which slot
// booted, and on a tentative boot checks the slot against its index, then
// runs the health checks every [health] interval while it steps a Tick
// each TickPeriod, until they pass (the slot is marked good: commit) or
// the machine decides the deadline has passed or a check found the slot
// damaged (the slot is marked bad: roll back; the caller reboots when
// Reboot is set). Whatever a power cut interrupted before is repeated.
// When the slot no longer verifies, BootCheck rolls back and returns the
// result together with an error wrapping ErrVerifyFailed.
func (d *Device) BootCheck(ctx context.Context) (*BootCheckResult, error) {
	bs, err := d.boot.Status(ctx)
	if err != nil {
		return nil, err
	}
	booted := bs.Booted
	if booted == "" {
		if ph := d.m.State().Phase; ph == state.Staged || ph == state.Tentative {
			// Guessing here could mark a healthy trial bad, or worse.
			return nil, fmt.Errorf("updater: cannot tell which slot booted (no shoal.slot= on the kernel command line) while an update is %s", ph)
		}
		booted = bs.Default
	}
	res := &BootCheckResult{Booted: booted, Tentative: bs.Tentative()}
	check := ""
	run := func(a state.Action) (state.Event, error) {
		switch a := a.(type) {
		case state.RunHealthChecks:
			check = a.Slot
		case state.Reboot:
			res.Reboot = true
		}
		return nil, nil
	}
	before := d.m.State()
	if err := d.step(ctx, state.Booted{Slot: booted}, run); err != nil {
		return res, err
	}
	var verifyErr error
	if check != "" {
		err = d.healthChecks(ctx, check, res, run)
		if errors.Is(err, ErrVerifyFailed) {
			verifyErr, err = err, nil
		}
		if err != nil {
			return res, err
		}
	}
	if before.Phase == state.Tentative {
		d.noteError(nil) // a verdict supersedes an older apply failure
	}
	after := d.m.State()
	res.State = after.Phase.String()
	res.Committed = before.Phase == state.Tentative && after.Phase == state.Committed
	res.RolledBack = before.Phase != state.RolledBack && after.Phase == state.RolledBack
	if res.RolledBack {
		res.Reason = after.Reason
	}
	return res, verifyErr
}

// healthChecks runs the checks of a trial boot of slot until the machine
// has a verdict: HealthOK, HealthFailed (the slot no longer verifies), or
// the deadline it counts in ticks. A failing check is reported as
// HealthPending and retried every [health] interval.
func (d *Device) healthChecks(ctx context.Context, slot string, res *BootCheckResult, run func(state.Action) (state.Event, error)) error {
	ticks, stop := d.ticks()
	defer stop()
	h := d.Config.Health
	// tick steps one Tick and reports whether the machine has decided
	// (the deadline passed: it rolled back).
	tick := func() (decided bool, err error) {
		if err := d.step(ctx, state.Tick{}, run); err != nil {
			return false, err
		}
		st := d.m.State()
		return st.Phase != state.Tentative || !st.Booted, nil
	}
	type outcome struct {
		err    error
		verify bool // err is from re-verifying the slot
	}
	verified := false
	for {
		// Time runs on while an attempt runs (re-reading a large slot, a
		// slow probe), so the machine keeps getting ticks meanwhile.
		actx, cancel := context.WithCancel(ctx)
		done := make(chan outcome, 1)
		go func() {
			if !verified {
				if err := d.VerifySlot(actx, slot); err != nil {
					done <- outcome{err, true}
					return
				}
			}
			done <- outcome{CheckHealth(actx, h), false}
		}()
		var o outcome
	attempt:
		for {
			select {
			case o = <-done:
				break attempt
			case <-ticks:
				if decided, terr := tick(); terr != nil || decided {
					cancel()
					<-done
					return terr
				}
			}
		}
		cancel()
		if o.verify {
			if !slotDamaged(o.err) || ctx.Err() != nil {
				return o.err // I/O trouble or interrupted: no verdict
			}
			if err := d.step(ctx, state.HealthFailed{Reason: "slot no longer verifies: " + o.err.Error()}, run); err != nil {
				return err
			}
			// Rolled back; the caller still hears of the integrity failure.
			return fmt.Errorf("%w: slot %s: %w", ErrVerifyFailed, slot, o.err)
		}
		verified = true
		if o.err == nil {
			res.Healthy = true
			return d.step(ctx, state.HealthOK{}, run)
		}
		var he *HealthError
		if !errors.As(o.err, &he) {
			return o.err // interrupted: no verdict
		}
		if err := d.step(ctx, state.HealthPending{Reason: he.Detail}, run); err != nil {
			return err
		}
		d.log("health check failed, retrying: %s", he.Detail)
		for range h.intervalTicks() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-ticks:
			}
			if decided, err := tick(); err != nil || decided {
				return err
			}
		}
	}
}

// slotDamaged tells a slot that cannot be proven from trouble reading it:
// bytes that do not match, a missing or malformed index, a slot or index
// cut short. Those are a verdict against the trial; other I/O errors and
// interruptions are not.
func slotDamaged(err error) bool {
	return errors.Is(err, chunker.ErrMismatch) || errors.Is(err, chunker.ErrMalformedIndex) ||
		errors.Is(err, fs.ErrNotExist) || errors.Is(err, io.ErrUnexpectedEOF)
}

// Tick tells the state machine that TickPeriod has passed. A daemon calls
// it on a timer (BootCheck ticks by itself while it runs the checks); it
// returns true when the machine rolled a trial back and the device must
// reboot.
func (d *Device) Tick(ctx context.Context) (reboot bool, err error) {
	err = d.step(ctx, state.Tick{}, func(a state.Action) (state.Event, error) {
		if _, ok := a.(state.Reboot); ok {
			reboot = true
		}
		return nil, nil
	})
	return reboot, err
}

// Commit marks a tentatively booted release good without waiting for the
// health checks.
func (d *Device) Commit(ctx context.Context) error {
	return d.step(ctx, state.CommitRequested{}, nil)
}

// Rollback abandons the update in flight: the bootloader keeps (or goes
// back to) the old slot.
func (d *Device) Rollback(ctx context.Context, reason string) (reboot bool, err error) {
	if reason == "" {
		reason = "operator requested rollback"
	}
	err = d.step(ctx, state.RollbackRequested{Reason: reason}, func(a state.Action) (state.Event, error) {
		if _, ok := a.(state.Reboot); ok {
			reboot = true
		}
		return nil, nil
	})
	return reboot, err
}

// Status is what `shoal update status --json` prints.
type Status struct {
	State         string `json:"state"`
	ActiveSlot    string `json:"active_slot"`
	ActiveVersion uint64 `json:"active_version"`
	Tentative     bool   `json:"tentative"`
	StagedVersion uint64 `json:"staged_version"`
	LastError     string `json:"last_error"`
	BootedSlot    string `json:"booted_slot"`
	TargetSlot    string `json:"target_slot,omitempty"`
	TriesLeft     int    `json:"tries_left,omitempty"`
	Reason        string `json:"reason,omitempty"`
	Channel       string `json:"channel"`
}

// Status reports the update state and the bootloader's view.
func (d *Device) Status(ctx context.Context) (*Status, error) {
	st := d.m.State()
	bs, err := d.boot.Status(ctx)
	if err != nil {
		return nil, err
	}
	s := &Status{State: st.Phase.String(), ActiveSlot: st.Active, ActiveVersion: st.Installed,
		Tentative: bs.Tentative(), LastError: st.LastError, BootedSlot: bs.Booted,
		TargetSlot: st.Target, TriesLeft: bs.TriesLeft, Reason: st.Reason, Channel: d.Config.Device.Channel}
	if (st.Phase == state.Staged || st.Phase == state.Tentative) && st.Release != nil {
		s.StagedVersion = st.Release.Version
	}
	if s.LastError == "" && st.Phase == state.RolledBack {
		s.LastError = st.Reason
	}
	if b, err := d.fs.ReadFile(d.statePath(lastErrorFile)); err == nil {
		s.LastError = string(b)
	}
	return s, nil
}

// AuditEntries returns the verified audit log.
func (d *Device) AuditEntries() ([]audit.Entry, error) {
	return audit.Entries(d.fs, d.statePath("audit"))
}

// VerifyAudit checks the audit log's chain.
func (d *Device) VerifyAudit() (int, error) { return audit.Verify(d.fs, d.statePath("audit")) }

// PowerOn simulates a reboot of a virtual device: the bootloader picks the
// slot, counting a trial down.
func (d *Device) PowerOn(ctx context.Context) (string, error) {
	if d.readOnly {
		return "", fmt.Errorf("%w: cannot power-cycle", ErrReadOnly)
	}
	sim := d.Simulator()
	if sim == nil {
		return "", fmt.Errorf("updater: not a virtual device; reboot it for real")
	}
	return sim.PowerOn(ctx)
}

// RebootCommand runs the configured reboot command.
func (d *Device) RebootCommand(ctx context.Context) error {
	c := d.Config.Boot.RebootCommand
	if c == "" {
		return fmt.Errorf("updater: no [boot] reboot_command configured")
	}
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", c).CombinedOutput()
	if err != nil {
		return fmt.Errorf("reboot command %q: %v: %s", c, err, out)
	}
	return nil
}
