package scenario

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: a scenario file is outside input. Parse never panics; it
// either fails with ErrInvalid or returns a scenario that validates, whose
// runs expand (when there are few) and whose distributions draw inside
// their ranges. The seed corpus is the example scenarios, the test base
// and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../scenarios/*.toml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(base))
	f.Add([]byte(base + "\n[sweep]\n\"topology.uplink_up\" = [\"5Mbit\", {dist = \"uniform\", min = \"1Mbit\", max = \"2Mbit\"}]\nstrategy.split = [true, false]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keyLines(b) // must not panic on anything
		s, err := Parse("fuzz.toml", b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
		r := rand.New(rand.NewPCG(1, 2))
		for _, d := range []Dist{s.Topology.DevicesPerSite, s.Topology.DeviceUp, s.Topology.LAN, s.Initial.Stagger, s.Churn.Awake} {
			lo, hi := d.Range()
			for range 10 {
				if x := d.Sample(r); x < lo || x > hi || x != x {
					t.Fatalf("%v drew %g outside [%g, %g]", d, x, lo, hi)
				}
			}
		}
		if s.Runs() > 64 {
			return
		}
		runs, err := s.Expand()
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Expand error without ErrInvalid: %v", err)
			}
			return
		}
		if len(runs) != s.Runs() {
			t.Fatalf("%d runs, Runs() = %d", len(runs), s.Runs())
		}
		for _, run := range runs {
			if err := run.Scenario.Validate(); err != nil {
				t.Fatalf("run %d does not validate: %v", run.Index, err)
			}
		}
	})
}
