package sim

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fleet"
)

// The calibration scenarios (sim/scenarios/fleet-2x5*.toml) use the
// indexes of the fleet harness's own images: `shoal fleet run --size 64M`
// makes v1 with fleet.Image(size, seed 7, 0) and, with --changed F, v2
// with fleet.Image(size, 7, F), both chunked with the defaults. They are
// in testdata; SHOAL_SIM_FLEET_INDEXES=1 makes them again and checks they
// are what is committed.
var fleetIndexes = []struct {
	file    string
	changed float64
}{{"fleet-64M-v1.idx", 0}, {"fleet-64M-v2-changed0.1.idx", 0.1}}

func fleetIndex(t *testing.T, file string) *chunker.Index {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := chunker.DecodeIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestFleetIndexes(t *testing.T) {
	if os.Getenv("SHOAL_SIM_FLEET_INDEXES") != "" {
		for _, x := range fleetIndexes {
			var img bytes.Buffer
			if err := fleet.Image(&img, 64<<20, 7, x.changed); err != nil {
				t.Fatal(err)
			}
			ix, err := chunker.Split(context.Background(), bufio.NewReader(&img), chunker.Options{})
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join("testdata", x.file)
			if old, _ := os.ReadFile(p); !bytes.Equal(old, ix.Encode()) {
				t.Errorf("%s differs from the fleet's image: rewritten", p)
				if err := os.WriteFile(p, ix.Encode(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	v1, v2 := fleetIndex(t, fleetIndexes[0].file), fleetIndex(t, fleetIndexes[1].file)
	// What the fleet's runs reported as new_bytes.
	if n, _ := fleet.NewBytes(nil, v1); n != 64<<20 {
		t.Errorf("v1: %d new bytes", n)
	}
	if n, _ := fleet.NewBytes(v1, v2); n != 9_231_794 {
		t.Errorf("v2 over v1: %d new bytes, the fleet's run had 9231794", n)
	}
}
