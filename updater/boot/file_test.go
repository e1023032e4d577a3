package boot_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/boot/boottest"
	"github.com/shoalnet/shoal/updater/fsys"
)

// fileDevice keeps its state in dir/boot.json. OpenFile creates a missing
// file, so Open checks first that Init's file is there.
var fileDevice = boottest.Device{
	Init: func(f fsys.FS, dir string) error {
		_, err := boot.OpenFile(filepath.Join(dir, "boot.json"), boot.WithFS(f))
		return err
	},
	Open: func(f fsys.FS, dir string) (boot.Adapter, boot.Simulator, error) {
		path := filepath.Join(dir, "boot.json")
		if _, err := f.Stat(path); err != nil {
			return nil, nil, err
		}
		a, err := boot.OpenFile(path, boot.WithFS(f))
		return a, a, err
	},
}

func openFile(t *testing.T, dir string) (boot.Adapter, boot.Simulator) {
	t.Helper()
	return openOS(t, fileDevice, dir)
}

func TestFileConformance(t *testing.T) { boottest.Run(t, fileDevice) }

func TestFileCrashSweep(t *testing.T) { sweep(t, fileDevice, boottest.SweepOptions{}) }

func TestFileFormat(t *testing.T) {
	dir := t.TempDir()
	a, sim := openFile(t, dir)
	path := filepath.Join(dir, "boot.json")
	if got := string(readAll(t, path)); got != "{\n  \"default\": \"A\"\n}\n" {
		t.Fatalf("fresh file %q", got)
	}
	if err := a.SetTentative(ctx, boot.SlotB, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"default\": \"A\",\n  \"trial\": \"B\",\n  \"tries_left\": 1,\n  \"booted\": \"B\"\n}\n"
	if got := string(readAll(t, path)); got != want {
		t.Fatalf("file %q, want %q", got, want)
	}
	noTempFiles(t, dir, "boot.json")
}

// TestFileCorrupt: a file that does not parse is reported and left alone.
func TestFileCorrupt(t *testing.T) {
	for _, in := range []string{
		``,
		`{"default":"C"}`,
		`{"default":"A","trial":"A","tries_left":2}`,
		`{"default":"A","tries_left":2}`,
		`{"default":"A","trial":"B","tries_left":10}`,
		`{"default":"A","booted":"x"}`,
		`{"default":"A","extra":1}`,
		`{"default":"A"} {}`,
		`{"default":"A"}}`,
	} {
		if _, err := boot.ParseFileState([]byte(in)); !errors.Is(err, boot.ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", in, err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "boot.json")
	if err := os.WriteFile(path, []byte(`{"default":"Z"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := boot.OpenFile(path); !errors.Is(err, boot.ErrCorrupt) {
		t.Fatalf("OpenFile on a corrupt file: %v", err)
	}
	if got := string(readAll(t, path)); got != `{"default":"Z"}` {
		t.Fatal("corrupt file was overwritten")
	}
}
