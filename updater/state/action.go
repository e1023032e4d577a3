package state

import "fmt"

// Action is something the caller must do, in the order returned. Every
// action is safe to repeat: after a power cut the machine may ask again.
type Action interface {
	fmt.Stringer
	action()
}

// StartFetch: fetch (or resume fetching) Version into Slot. After a
// FetchFailed the caller waits (backs off) before doing it again.
type StartFetch struct {
	Slot    string
	Version uint64
}

// VerifySlot: re-hash Slot against the roots of Version and step Verified.
type VerifySlot struct {
	Slot    string
	Version uint64
}

// FlipTentative: tell the bootloader to try Slot on the next Tries boots
// (boot.Adapter.SetTentative), then step Flipped.
type FlipTentative struct {
	Slot  string
	Tries int
}

// Reboot the device.
type Reboot struct{}

// RunHealthChecks: run the health checks on Slot and step HealthOK or
// HealthFailed; meanwhile keep stepping Tick. After Deadline ticks without
// a verdict the machine rolls back by itself.
type RunHealthChecks struct {
	Slot     string
	Deadline int
}

// MarkGood: make Slot the bootloader's default (boot.Adapter.MarkGood),
// then step MarkedGood.
type MarkGood struct{ Slot string }

// MarkBad: never boot Slot again until it is flipped anew
// (boot.Adapter.MarkBad).
type MarkBad struct{ Slot string }

// Verdict is the kind of an audit record.
type Verdict string

// The verdicts the machine records.
const (
	VerdictAccepted    Verdict = "accepted"
	VerdictRefused     Verdict = "refused"
	VerdictFetchFailed Verdict = "fetch-failed"
	VerdictCommitted   Verdict = "committed"
	VerdictRolledBack  Verdict = "rolled-back"
	VerdictReset       Verdict = "reset"
)

// RecordAudit: append a verdict to the device's audit log.
type RecordAudit struct {
	Verdict Verdict
	Version uint64
	Reason  string
}

func (StartFetch) action()      {}
func (VerifySlot) action()      {}
func (FlipTentative) action()   {}
func (Reboot) action()          {}
func (RunHealthChecks) action() {}
func (MarkGood) action()        {}
func (MarkBad) action()         {}
func (RecordAudit) action()     {}

func (a StartFetch) String() string { return fmt.Sprintf("StartFetch{%s v%d}", a.Slot, a.Version) }
func (a VerifySlot) String() string { return fmt.Sprintf("VerifySlot{%s v%d}", a.Slot, a.Version) }
func (a FlipTentative) String() string {
	return fmt.Sprintf("FlipTentative{%s tries=%d}", a.Slot, a.Tries)
}
func (Reboot) String() string { return "Reboot" }
func (a RunHealthChecks) String() string {
	return fmt.Sprintf("RunHealthChecks{%s deadline=%d}", a.Slot, a.Deadline)
}
func (a MarkGood) String() string { return "MarkGood{" + a.Slot + "}" }
func (a MarkBad) String() string  { return "MarkBad{" + a.Slot + "}" }
func (a RecordAudit) String() string {
	if a.Reason == "" {
		return fmt.Sprintf("RecordAudit{%s v%d}", a.Verdict, a.Version)
	}
	return fmt.Sprintf("RecordAudit{%s v%d %q}", a.Verdict, a.Version, a.Reason)
}
