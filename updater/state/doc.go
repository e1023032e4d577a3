// Package state is the update state machine of a device: a plain value
// stepped by events, which answers with the actions its caller must take.
// It does no I/O, reads no clock and starts no goroutines, so the updater
// daemon, the simulator and the tests run exactly the same decisions.
//
// # Phases
//
//	Idle ──offer──▶ Fetching ──verified──▶ Staged ──flipped──▶ Tentative ──health ok──▶ Committed
//	                   │                      │                    │
//	                   └──────────────────────┴────────────────────┴──▶ RolledBack(reason)
//
// Idle is a device that has never installed a release through shoal;
// Committed is one whose last update succeeded; RolledBack is one whose
// last update failed, with the reason. All three accept a newer release.
// Fetching writes the release into the inactive slot (the target) and ends
// when the caller reports that the slot's bytes hash to the signed root.
// Staged means verified but not yet flipped; Tentative means the bootloader
// has been told to try the target a few times. Tentative ends in Committed
// once the health checks pass on the target, and in RolledBack when they
// fail, when their deadline passes, or when the bootloader falls back to the
// old slot by itself (its tries ran out before the updater came up).
//
// The active slot, the one the bootloader boots by default, changes only at
// commit: a failed update never touches the running release.
//
// # Driving it
//
// The caller's duties, in order:
//
//  1. Create the machine with [New] from a [Config] and the persisted
//     [State] (or [Initial] on a fresh device). Read persisted bytes with
//     [ParseState]; they are outside input and are checked.
//  2. After every boot, step [Booted] with the slot the bootloader chose.
//     This re-issues whatever the previous run may have lost to a power
//     cut (resume the fetch, redo the flip, mark the slot good or bad
//     again); every action is safe to repeat.
//  3. Feed the other events as they happen. [Machine.Step] returns the
//     actions, or an error wrapping [ErrInvalidEvent] (the event makes no
//     sense in this phase) or [ErrMalformedEvent] (its fields are wrong);
//     on error nothing changed.
//  4. Persist [Machine.State] before carrying out the actions, then carry
//     them out in order. If power fails in between, step 2 repairs it.
//  5. Time is the caller's: it steps [Tick] at a fixed period it chooses
//     (a daemon always, a boot check while its health checks run). The
//     machine counts the ticks of a trial boot's health checks and rolls
//     back when [Config.HealthDeadline] of them pass without a verdict, so
//     a device, a test and a simulated device decide the deadline alike.
package state
