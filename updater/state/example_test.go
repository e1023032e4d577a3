package state_test

import (
	"fmt"

	"github.com/shoalnet/shoal/updater/state"
)

// A device on slot A installs release 2 into slot B and commits it.
func Example() {
	m, err := state.New(state.Config{Tries: 2, HealthDeadline: 60}, state.Initial(state.SlotA, 1))
	if err != nil {
		panic(err)
	}
	for _, ev := range []state.Event{
		state.ReleaseOffered{Release: state.Release{Channel: "stable", Version: 2}},
		state.ChunksWritten{Done: 12, Total: 12},
		state.Verified{OK: true},
		state.Flipped{},
		state.Booted{Slot: state.SlotB},
		state.HealthOK{},
		state.MarkedGood{Slot: state.SlotB},
	} {
		acts, err := m.Step(ev)
		fmt.Println(ev, "→", acts, err)
	}
	fmt.Println(m.State().Phase, m.State().Active, m.State().Installed)
	// Output:
	// ReleaseOffered{stable/v2} → [RecordAudit{accepted v2} StartFetch{B v2}] <nil>
	// ChunksWritten{12/12} → [VerifySlot{B v2}] <nil>
	// Verified{ok} → [FlipTentative{B tries=2}] <nil>
	// Flipped → [Reboot] <nil>
	// Booted{B} → [RunHealthChecks{B deadline=60}] <nil>
	// HealthOK → [MarkGood{B}] <nil>
	// MarkedGood{B} → [RecordAudit{committed v2}] <nil>
	// committed B 2
}
