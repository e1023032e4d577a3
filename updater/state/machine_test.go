package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestTranscripts runs the scripts in testdata/*.txt: each command is an
// event (or init/state/json), and the expected output is the actions and
// the resulting state. Regenerate with `go test -run TestTranscripts
// -rewrite` and review the diff.
func TestTranscripts(t *testing.T) {
	paths, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no transcripts in testdata: %v", err)
	}
	for _, path := range paths {
		runTranscript(t, path)
	}
}

func runTranscript(t *testing.T, path string) {
	t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
		var m *Machine
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "init":
				cfg := Config{
					Tries:            intArg(t, d, "tries", 0),
					HealthDeadline:   intArg(t, d, "deadline", 0),
					MaxFetchFailures: intArg(t, d, "max-fetch-failures", 0),
				}
				active := SlotA
				d.MaybeScanArgs(t, "active", &active)
				var err error
				m, err = New(cfg, Initial(active, uint64(intArg(t, d, "installed", 0))))
				if err != nil {
					return "error: " + err.Error() + "\n"
				}
				return formatState(m.State()) + "\n"
			case "state":
				return formatState(m.State()) + "\n"
			case "json":
				b, err := json.Marshal(m.State())
				if err != nil {
					t.Fatal(err)
				}
				back, err := ParseState(b)
				if err != nil || !back.Equal(m.State()) {
					t.Fatalf("round trip of %s: %v, got %+v", b, err, back)
				}
				return string(b) + "\n"
			}
			if m == nil {
				d.Fatalf(t, "%s before init", d.Cmd)
			}
			ev := parseEvent(t, d)
			before := m.State()
			acts, err := m.Step(ev)
			// "tick n=K" steps K ticks and prints the actions of them all.
			for range intArg(t, d, "n", 1) - 1 {
				if err != nil {
					break
				}
				var more []Action
				more, err = m.Step(ev)
				acts = append(acts, more...)
			}
			var b strings.Builder
			if err != nil {
				fmt.Fprintf(&b, "error: %v\n", err)
				if !m.State().Equal(before) {
					t.Errorf("%s: failed step changed the state from %+v to %+v", d.Pos, before, m.State())
				}
				b.WriteString("(state unchanged)\n")
				return b.String()
			}
			for _, a := range acts {
				fmt.Fprintf(&b, "%v\n", a)
			}
			if err := m.State().Validate(); err != nil {
				t.Errorf("%s: step left an invalid state: %v", d.Pos, err)
			}
			fmt.Fprintf(&b, "→ %s\n", formatState(m.State()))
			return b.String()
		})
	})
}

func intArg(t *testing.T, d *datadriven.TestData, key string, def int) int {
	v := def
	d.MaybeScanArgs(t, key, &v)
	return v
}

func strArg(t *testing.T, d *datadriven.TestData, key string) string {
	a, ok := d.Arg(key)
	if !ok {
		return ""
	}
	return strings.Join(a.Vals, ", ")
}

func parseEvent(t *testing.T, d *datadriven.TestData) Event {
	switch d.Cmd {
	case "offer":
		r := Release{Channel: strArg(t, d, "channel"), Version: uint64(intArg(t, d, "version", 0))}
		if a, ok := d.Arg("roots"); ok {
			r.Roots = map[string]string{}
			for _, v := range a.Vals {
				name, root, _ := strings.Cut(v, ":")
				r.Roots[name] = root
			}
		}
		return ReleaseOffered{r}
	case "written":
		return ChunksWritten{Done: int64(intArg(t, d, "done", 0)), Total: int64(intArg(t, d, "total", 0))}
	case "fetch-failed":
		return FetchFailed{Reason: strArg(t, d, "reason")}
	case "verified":
		return Verified{OK: d.HasArg("ok"), Reason: strArg(t, d, "reason")}
	case "flipped":
		return Flipped{}
	case "booted":
		return Booted{Slot: strArg(t, d, "slot")}
	case "health-ok":
		return HealthOK{}
	case "marked-good":
		return MarkedGood{Slot: strArg(t, d, "slot")}
	case "health-failed":
		return HealthFailed{Reason: strArg(t, d, "reason")}
	case "tick":
		return Tick{}
	case "health-pending":
		return HealthPending{Reason: strArg(t, d, "reason")}
	case "rollback":
		return RollbackRequested{Reason: strArg(t, d, "reason")}
	case "commit":
		return CommitRequested{}
	case "reset":
		return Reset{Active: strArg(t, d, "active"), Installed: uint64(intArg(t, d, "installed", 0))}
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return nil
}

// formatState prints the fields that matter in s's phase, compactly.
func formatState(s State) string {
	f := []string{s.Phase.String(), "active=" + s.Active, "installed=" + strconv.FormatUint(s.Installed, 10)}
	if s.Target != "" {
		f = append(f, "target="+s.Target)
	}
	if s.Release != nil {
		f = append(f, "release=("+s.Release.String()+")")
	}
	if s.Total > 0 {
		f = append(f, fmt.Sprintf("written=%d/%d", s.Written, s.Total))
	}
	if s.Booted {
		f = append(f, "booted")
	}
	if s.Healthy {
		f = append(f, "healthy")
		if s.CommitNote != "" {
			f = append(f, fmt.Sprintf("note=%q", s.CommitNote))
		}
	}
	if s.TriesLeft > 0 {
		f = append(f, fmt.Sprintf("tries-left=%d", s.TriesLeft))
	}
	if s.Failures > 0 {
		f = append(f, fmt.Sprintf("failures=%d last-error=%q", s.Failures, s.LastError))
	}
	if s.Reason != "" {
		f = append(f, fmt.Sprintf("reason=%q", s.Reason))
	}
	if s.FailedVersion != 0 {
		f = append(f, fmt.Sprintf("failed=v%d", s.FailedVersion))
	}
	return strings.Join(f, " ")
}

// eventKinds is one event of every kind, with the slot-dependent ones
// filled in for state s: booted into the active slot and into the other.
func eventKinds(s State) map[string]Event {
	return map[string]Event{
		"offer":              ReleaseOffered{Release{Version: s.Installed + 10}},
		"written":            ChunksWritten{Done: 1, Total: 1},
		"fetch-failed":       FetchFailed{Reason: "x"},
		"verified":           Verified{OK: true},
		"verified-bad":       Verified{Reason: "x"},
		"flipped":            Flipped{},
		"booted-active":      Booted{Slot: s.Active},
		"booted-other":       Booted{Slot: Other(s.Active)},
		"health-ok":          HealthOK{},
		"marked-good-active": MarkedGood{Slot: s.Active},
		"marked-good-other":  MarkedGood{Slot: Other(s.Active)},
		"health-failed":      HealthFailed{Reason: "x"},
		"tick":               Tick{},
		"health-pending":     HealthPending{Reason: "x"},
		"rollback":           RollbackRequested{Reason: "x"},
		"commit":             CommitRequested{},
		"reset":              Reset{Active: SlotA, Installed: 1},
	}
}

// situations drives a machine from Initial into every phase (Tentative
// twice: before and after the target booted; Fetching twice: with all
// chunks written or not) and lists the events valid there. Everything not
// listed must be refused.
var situations = []struct {
	name  string
	steps []Event
	valid []string
}{
	{"idle", nil,
		[]string{"tick", "offer", "booted-active", "marked-good-active", "reset"}},
	{"fetching-partial", []Event{offer(5)},
		[]string{"tick", "offer", "written", "fetch-failed", "booted-active", "rollback", "reset"}},
	{"fetching-written", []Event{offer(5), ChunksWritten{3, 3}},
		[]string{"tick", "offer", "written", "fetch-failed", "verified", "verified-bad", "booted-active", "rollback", "reset"}},
	{"staged", []Event{offer(5), ChunksWritten{3, 3}, Verified{OK: true}},
		[]string{"tick", "flipped", "booted-active", "booted-other", "rollback"}},
	{"tentative-flipped", []Event{offer(5), ChunksWritten{3, 3}, Verified{OK: true}, Flipped{}},
		[]string{"tick", "booted-active", "booted-other", "rollback"}},
	{"tentative-booted", []Event{offer(5), ChunksWritten{3, 3}, Verified{OK: true}, Flipped{}, Booted{SlotB}},
		[]string{"booted-active", "booted-other", "rollback", "health-ok", "health-failed", "health-pending", "tick", "commit"}},
	{"tentative-healthy", []Event{offer(5), ChunksWritten{3, 3}, Verified{OK: true}, Flipped{}, Booted{SlotB}, HealthOK{}},
		[]string{"booted-active", "booted-other", "rollback", "health-ok", "health-failed", "tick", "commit", "marked-good-other"}},
	{"committed", []Event{offer(5), ChunksWritten{3, 3}, Verified{OK: true}, Flipped{}, Booted{SlotB}, HealthOK{}, MarkedGood{SlotB}},
		[]string{"tick", "offer", "booted-active", "marked-good-active", "reset"}},
	{"rolled-back", []Event{offer(5), ChunksWritten{3, 3}, Verified{OK: true}, Flipped{}, Booted{SlotB}, HealthFailed{"x"}},
		[]string{"tick", "offer", "booted-active", "booted-other", "marked-good-active", "reset"}},
}

func offer(v uint64) Event { return ReleaseOffered{Release{Channel: "stable", Version: v}} }

// TestEveryPhaseEventPair checks every (phase, event) pair: valid ones
// succeed, invalid ones fail with ErrInvalidEvent and change nothing.
func TestEveryPhaseEventPair(t *testing.T) {
	phasesSeen := map[Phase]bool{}
	for _, sit := range situations {
		valid := map[string]bool{}
		for _, v := range sit.valid {
			valid[v] = true
		}
		setup := func(t *testing.T) *Machine {
			m, err := New(Config{}, Initial(SlotA, 1))
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range sit.steps {
				if _, err := m.Step(ev); err != nil {
					t.Fatalf("setup %v: %v", ev, err)
				}
			}
			return m
		}
		phasesSeen[setup(t).State().Phase] = true
		for name, ev := range eventKinds(setup(t).State()) {
			t.Run(sit.name+"/"+name, func(t *testing.T) {
				m := setup(t)
				before := m.State()
				_, err := m.Step(ev)
				switch {
				case valid[name] && err != nil:
					t.Fatalf("%v in %s: unexpected error %v", ev, before.Phase, err)
				case !valid[name] && !errors.Is(err, ErrInvalidEvent):
					t.Fatalf("%v in %s: got error %v, want ErrInvalidEvent", ev, before.Phase, err)
				case !valid[name] && !m.State().Equal(before):
					t.Fatalf("%v in %s: invalid event changed the state", ev, before.Phase)
				case !valid[name] && !strings.Contains(err.Error(), before.Phase.String()):
					t.Fatalf("error %q does not name the phase", err)
				}
			})
		}
	}
	for p := Idle; p <= RolledBack; p++ {
		if !phasesSeen[p] {
			t.Errorf("no situation reaches phase %s", p)
		}
	}
}

func TestMalformedEvents(t *testing.T) {
	for _, ev := range []Event{
		nil,
		ReleaseOffered{},
		ChunksWritten{Done: 2, Total: 1},
		ChunksWritten{Done: -1, Total: 1},
		ChunksWritten{},
		Booted{Slot: "C"},
		Booted{},
		Reset{Active: "a"},
	} {
		m, _ := New(Config{}, Initial(SlotA, 1))
		_, err := m.Step(offer(2))
		if err != nil {
			t.Fatal(err)
		}
		before := m.State()
		if _, err := m.Step(ev); !errors.Is(err, ErrMalformedEvent) {
			t.Errorf("%v: got %v, want ErrMalformedEvent", ev, err)
		}
		if !m.State().Equal(before) {
			t.Errorf("%v: malformed event changed the state", ev)
		}
	}
}

func TestConfig(t *testing.T) {
	m, err := New(Config{}, Initial(SlotB, 0))
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Config(); c.Tries != 3 || c.HealthDeadline != 300 || c.MaxFetchFailures != 5 {
		t.Errorf("defaults: %+v", c)
	}
	for _, c := range []Config{{Tries: -1}, {HealthDeadline: -5}, {MaxFetchFailures: -1}} {
		if _, err := New(c, Initial(SlotA, 0)); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: got %v, want ErrBadConfig", c, err)
		}
	}
	if _, err := New(Config{}, Initial("C", 0)); !errors.Is(err, ErrBadState) {
		t.Errorf("slot C: got %v, want ErrBadState", err)
	}
}

// TestStateIsACopy checks that callers cannot reach into the machine.
func TestStateIsACopy(t *testing.T) {
	m, _ := New(Config{}, Initial(SlotA, 1))
	if _, err := m.Step(ReleaseOffered{Release{Version: 2, Roots: map[string]string{"rootfs": "aa"}}}); err != nil {
		t.Fatal(err)
	}
	s := m.State()
	s.Release.Roots["rootfs"] = "bb"
	s.Release.Version = 9
	if got := m.State().Release; got.Roots["rootfs"] != "aa" || got.Version != 2 {
		t.Errorf("changing a returned state changed the machine: %+v", got)
	}
}

// TestJSONRoundTrip persists the machine in every situation, reads it back
// and checks it continues identically.
func TestJSONRoundTrip(t *testing.T) {
	for _, sit := range situations {
		m, _ := New(Config{}, Initial(SlotA, 1))
		for _, ev := range append(sit.steps, ReleaseOffered{Release{Channel: "c", Version: 40, Roots: map[string]string{"a": "1", "b": "2"}}}) {
			m.Step(ev)
		}
		b, err := json.Marshal(m.State())
		if err != nil {
			t.Fatal(err)
		}
		st, err := ParseState(b)
		if err != nil {
			t.Fatalf("%s: %s: %v", sit.name, b, err)
		}
		if !st.Equal(m.State()) {
			t.Fatalf("%s: round trip changed %+v into %+v", sit.name, m.State(), st)
		}
		m2, err := New(Config{}, st)
		if err != nil {
			t.Fatal(err)
		}
		a1, e1 := m.Step(Booted{SlotA})
		a2, e2 := m2.Step(Booted{SlotA})
		if fmt.Sprint(a1, e1) != fmt.Sprint(a2, e2) || !m.State().Equal(m2.State()) {
			t.Fatalf("%s: restored machine diverged: %v %v vs %v %v", sit.name, a1, e1, a2, e2)
		}
	}
}

func TestParseStateRejects(t *testing.T) {
	for _, in := range []string{
		``,
		`{}`,
		`{"phase":"idle","active":"A","installed":1} {}`,
		`{"phase":"idle","active":"A","installed":1}}`,
		`{"phase":"idle","active":"A","bogus":1}`,
		`{"phase":"sleeping","active":"A"}`,
		`{"phase":"idle","active":"C"}`,
		`{"phase":"fetching","active":"A","installed":1}`,
		`{"phase":"fetching","active":"A","target":"A","installed":1,"release":{"version":2}}`,
		`{"phase":"fetching","active":"A","target":"B","installed":3,"release":{"version":2}}`,
		`{"phase":"staged","active":"A","target":"B","installed":1,"release":{"version":2},"written":1,"total":2}`,
		`{"phase":"committed","active":"A","installed":1,"release":{"version":2}}`,
		`{"phase":"rolled-back","active":"A","target":"B","installed":1,"release":{"version":2}}`,
		`{"phase":"idle","active":"A","booted":true}`,
		`{"phase":"idle","active":"A","target":"B"}`,
		`{"phase":"fetching","active":"A","target":"B","installed":1,"release":{"version":2},"written":3,"total":2}`,
	} {
		if _, err := ParseState([]byte(in)); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: got %v, want ErrBadState", in, err)
		}
	}
}

// FuzzParseState feeds arbitrary bytes to ParseState: it must not panic,
// and whatever it accepts must survive a round trip and drive a machine.
func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"phase":"idle","active":"A","installed":1}`))
	f.Add([]byte(`{"phase":"tentative","active":"A","installed":1,"target":"B","release":{"channel":"stable","version":2,"roots":{"rootfs":"ab"}},"written":3,"total":3,"booted":true,"tries_left":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseState(b)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("error %v does not wrap ErrBadState", err)
			}
			return
		}
		out, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseState(out)
		if err != nil || !back.Equal(st) {
			t.Fatalf("round trip of %s: %v", out, err)
		}
		m, err := New(Config{}, st)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range eventKinds(st) {
			m.Step(ev)
			if err := m.State().Validate(); err != nil {
				t.Fatalf("after %v: %v", ev, err)
			}
		}
	})
}
