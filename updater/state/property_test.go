package state

import (
	"encoding/json"
	"errors"
	"testing"

	"pgregory.net/rapid"
)

func genEvent() *rapid.Generator[Event] {
	slot := rapid.SampledFrom([]string{SlotA, SlotB, SlotA, SlotB, "C"})
	reason := rapid.SampledFrom([]string{"", "x", "disk full"})
	return rapid.OneOf(
		rapid.Custom(func(t *rapid.T) Event {
			return ReleaseOffered{Release{Version: rapid.Uint64Range(0, 9).Draw(t, "version")}}
		}),
		rapid.Custom(func(t *rapid.T) Event {
			return ChunksWritten{Done: rapid.Int64Range(-1, 4).Draw(t, "done"), Total: rapid.Int64Range(0, 4).Draw(t, "total")}
		}),
		rapid.Custom(func(t *rapid.T) Event { return FetchFailed{reason.Draw(t, "reason")} }),
		rapid.Custom(func(t *rapid.T) Event {
			return Verified{OK: rapid.Bool().Draw(t, "ok"), Reason: reason.Draw(t, "reason")}
		}),
		rapid.Just[Event](Flipped{}),
		rapid.Custom(func(t *rapid.T) Event { return Booted{slot.Draw(t, "slot")} }),
		rapid.Custom(func(t *rapid.T) Event { return Booted{slot.Draw(t, "slot")} }),
		rapid.Custom(func(t *rapid.T) Event { return MarkedGood{slot.Draw(t, "slot")} }),
		rapid.Just[Event](HealthOK{}),
		rapid.Custom(func(t *rapid.T) Event { return HealthFailed{reason.Draw(t, "reason")} }),
		rapid.Just[Event](Tick{}),
		rapid.Custom(func(t *rapid.T) Event { return HealthPending{reason.Draw(t, "reason")} }),
		rapid.Custom(func(t *rapid.T) Event { return RollbackRequested{reason.Draw(t, "reason")} }),
		rapid.Just[Event](CommitRequested{}),
		rapid.Custom(func(t *rapid.T) Event {
			return Reset{Active: slot.Draw(t, "active"), Installed: rapid.Uint64Range(0, 3).Draw(t, "installed")}
		}),
	)
}

// TestProperties steps random event sequences and checks what must hold
// whatever the order: no panics; refused events change nothing; the state
// always validates and survives JSON; the running slot is never written,
// verified or flipped; only verified slots are flipped or marked good; an
// idle or committed device runs a verified slot; the active slot and the
// installed version change only at commit or reset.
func TestProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := Config{
			Tries:            rapid.IntRange(1, 9).Draw(t, "tries"),
			MaxFetchFailures: rapid.IntRange(1, 4).Draw(t, "maxFetchFailures"),
		}
		active := rapid.SampledFrom([]string{SlotA, SlotB}).Draw(t, "active")
		m, err := New(cfg, Initial(active, rapid.Uint64Range(0, 3).Draw(t, "installed")))
		if err != nil {
			t.Fatal(err)
		}
		// verified tracks which slots hold bytes checked against their root
		// (the factory slot counts as verified).
		verified := map[string]bool{active: true}
		running := ""
		for range rapid.IntRange(0, 60).Draw(t, "steps") {
			ev := genEvent().Draw(t, "event")
			before := m.State()
			acts, err := m.Step(ev)
			after := m.State()
			if err != nil {
				if !errors.Is(err, ErrInvalidEvent) && !errors.Is(err, ErrMalformedEvent) {
					t.Fatalf("%v: error %v wraps neither sentinel", ev, err)
				}
				if acts != nil || !after.Equal(before) {
					t.Fatalf("%v: refused event changed the state or returned actions", ev)
				}
				continue
			}
			if err := after.Validate(); err != nil {
				t.Fatalf("%v: %v", ev, err)
			}
			// HealthTicks is not persisted (a restart starts the checks anew).
			b, _ := json.Marshal(after)
			persisted := after
			persisted.HealthTicks = 0
			if back, err := ParseState(b); err != nil || !back.Equal(persisted) {
				t.Fatalf("%v: JSON round trip: %v", ev, err)
			}
			_, isReset := ev.(Reset)
			if isReset {
				verified = map[string]bool{after.Active: true}
			}
			if v, ok := ev.(Verified); ok && v.OK && after.Phase == Staged {
				verified[after.Target] = true
			}
			// running is the slot the device runs: the last Booted the
			// machine accepted (unknown before the first).
			if b, ok := ev.(Booted); ok {
				running = b.Slot
			}
			for _, a := range acts {
				switch a := a.(type) {
				case StartFetch:
					if a.Slot == before.Active || a.Slot == running {
						t.Fatalf("%v: fetch into slot %s (active %s, running %s)", ev, a.Slot, before.Active, running)
					}
					verified[a.Slot] = false
				case VerifySlot:
					if a.Slot == before.Active || a.Slot == running {
						t.Fatalf("%v: verify of the running slot", ev)
					}
				case FlipTentative:
					if a.Slot == before.Active || a.Slot == running || !verified[a.Slot] {
						t.Fatalf("%v: flip to slot %s (active %s, verified %v)", ev, a.Slot, before.Active, verified[a.Slot])
					}
					if a.Tries != cfg.Tries {
						t.Fatalf("%v: flip with %d tries, config says %d", ev, a.Tries, cfg.Tries)
					}
				case MarkGood:
					// Either the active slot (re-asserted at boot) or the
					// target once it booted and passed its checks.
					target := after.Phase == Tentative && after.Healthy && a.Slot == after.Target
					if (a.Slot != after.Active && !target) || !verified[a.Slot] {
						t.Fatalf("%v: MarkGood of slot %s (active %s)", ev, a.Slot, after.Active)
					}
				case MarkBad:
					if a.Slot == after.Active {
						t.Fatalf("%v: MarkBad of the active slot", ev)
					}
				}
			}
			if (after.Phase == Idle || after.Phase == Committed) && !verified[after.Active] {
				t.Fatalf("%v: %s on unverified slot %s", ev, after.Phase, after.Active)
			}
			committed := after.Phase == Committed && before.Phase == Tentative
			if committed && !before.Booted {
				t.Fatalf("%v: committed a slot that never booted", ev)
			}
			if committed && (!before.Healthy || ev != Event(MarkedGood{before.Target})) {
				t.Fatalf("%v: committed before the bootloader confirmed MarkGood", ev)
			}
			if !committed && !isReset {
				if after.Active != before.Active {
					t.Fatalf("%v: active slot changed from %s to %s in %s", ev, before.Active, after.Active, after.Phase)
				}
				if after.Installed != before.Installed {
					t.Fatalf("%v: installed version changed outside a commit", ev)
				}
			}
			if committed && after.Installed <= before.Installed {
				t.Fatalf("%v: commit did not raise the installed version", ev)
			}
		}
	})
}
