package boot_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/boot/boottest"
	"github.com/shoalnet/shoal/updater/fsys"
)

// blsDevice keeps its boot partition in dir/efi. OpenBLS provisions an
// empty partition, so Open checks first that Init's files are there.
func blsDevice(opts ...boot.Option) boottest.Device {
	open := func(f fsys.FS, dir string) (*boot.BLS, error) {
		return boot.OpenBLS(filepath.Join(dir, "efi"), append(opts, boot.WithFS(f), boot.WithCmdline(boottest.Cmdline(dir)))...)
	}
	return boottest.Device{
		Init: func(f fsys.FS, dir string) error {
			_, err := open(f, dir)
			return err
		},
		Open: func(f fsys.FS, dir string) (boot.Adapter, boot.Simulator, error) {
			root := filepath.Join(dir, "efi")
			if _, err := f.Stat(filepath.Join(root, "loader", "loader.conf")); err != nil {
				return nil, nil, err
			}
			if des, err := f.ReadDir(filepath.Join(root, "loader", "entries")); err != nil || len(des) == 0 {
				return nil, nil, fmt.Errorf("no entries in %s: %v", root, err)
			}
			b, err := open(f, dir)
			return b, b, err
		},
	}
}

func blsOpener(opts ...boot.Option) func(t *testing.T, dir string) (boot.Adapter, boot.Simulator) {
	return func(t *testing.T, dir string) (boot.Adapter, boot.Simulator) {
		t.Helper()
		return openOS(t, blsDevice(opts...), dir)
	}
}

func TestBLSConformance(t *testing.T) {
	t.Run("DefaultPrefix", func(t *testing.T) { boottest.Run(t, blsDevice()) })
	// A prefix with '+' and '-' must not confuse the counter parser.
	t.Run("PrefixWithPlusAndMinus", func(t *testing.T) { boottest.Run(t, blsDevice(boot.WithEntryPrefix("os+v2-rc1"))) })
}

func TestBLSCrashSweep(t *testing.T) {
	t.Run("DefaultPrefix", func(t *testing.T) { sweep(t, blsDevice(), boottest.SweepOptions{}) })
	t.Run("PrefixWithPlusAndMinus", func(t *testing.T) {
		sweep(t, blsDevice(boot.WithEntryPrefix("os+v2-rc1")), boottest.SweepOptions{})
	})
}

func entryNames(t *testing.T, root string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(root, "loader", "entries"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func wantEntries(t *testing.T, root string, want ...string) {
	t.Helper()
	if got := entryNames(t, root); !slices.Equal(got, want) {
		t.Fatalf("entries %q, want %q", got, want)
	}
}

// TestBLSRenames follows the file names through an update, as
// systemd-boot and systemd-bless-boot would leave them.
func TestBLSRenames(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "efi")
	a, sim := blsOpener()(t, dir)
	wantEntries(t, root, "shoal-0-b.conf", "shoal-1-a.conf")
	if got := string(readAll(t, filepath.Join(root, "loader", "loader.conf"))); got != "default shoal-*\ntimeout 0\n" {
		t.Fatalf("loader.conf = %q", got)
	}
	content := readAll(t, filepath.Join(root, "loader", "entries", "shoal-0-b.conf"))
	steps := []struct {
		do   func() error
		want []string
	}{
		{func() error { return a.SetTentative(ctx, boot.SlotB, 3) }, []string{"shoal-1-a.conf", "shoal-2-b+3.conf"}},
		{power(sim), []string{"shoal-1-a.conf", "shoal-2-b+2-1.conf"}},
		{power(sim), []string{"shoal-1-a.conf", "shoal-2-b+1-2.conf"}},
		{func() error { return a.MarkGood(ctx, boot.SlotB) }, []string{"shoal-1-a.conf", "shoal-2-b.conf"}},
		{func() error { return a.SetTentative(ctx, boot.SlotA, 1) }, []string{"shoal-2-b.conf", "shoal-3-a+1.conf"}},
		{power(sim), []string{"shoal-2-b.conf", "shoal-3-a+0-1.conf"}},
		{power(sim), []string{"shoal-2-b.conf", "shoal-3-a+0-1.conf"}}, // fell back to B, A is bad
		{func() error { return a.MarkBad(ctx, boot.SlotA) }, []string{"shoal-2-b.conf", "shoal-3-a+0.conf"}},
		{func() error { return a.MarkBad(ctx, boot.SlotB) }, []string{"shoal-2-b+0.conf", "shoal-3-a.conf"}},
	}
	for i, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		wantEntries(t, root, s.want...)
	}
	// Renames only: the entry's contents are untouched.
	if got := readAll(t, filepath.Join(root, "loader", "entries", "shoal-2-b+0.conf")); string(got) != string(content) {
		t.Fatalf("entry contents changed: %q", got)
	}
}

func power(sim boot.Simulator) func() error {
	return func() error { _, err := sim.PowerOn(ctx); return err }
}

// TestBLSCounterForms: entries written by other tools in the fixed-width
// and the older (no DONE) forms are read and bumped as systemd-boot does.
func TestBLSCounterForms(t *testing.T) {
	for _, c := range []struct {
		b, next string
		left    int
	}{
		{"shoal-5-b+03-00.conf", "shoal-5-b+2-1.conf", 3},
		{"shoal-5-b+2.conf", "shoal-5-b+1-1.conf", 2},
		{"shoal-5-b+1-7.conf", "shoal-5-b+0-8.conf", 1},
		{"shoal-5-B+2.CONF", "shoal-5-B+1-1.conf", 2},
	} {
		t.Run(c.b, func(t *testing.T) {
			dir := t.TempDir()
			root := filepath.Join(dir, "efi")
			entries := filepath.Join(root, "loader", "entries")
			if err := os.MkdirAll(entries, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, slot := range map[string]string{"shoal-4-a.conf": "A", c.b: "B", "debian-6.1.0.conf": ""} {
				body := "title x\nlinux /vmlinuz\noptions\troot=/dev/sda2 shoal.slot=" + slot + "\n"
				if err := os.WriteFile(filepath.Join(entries, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a, sim := blsOpener()(t, dir)
			st, err := a.Status(ctx)
			if err != nil || st != (boot.Status{Default: boot.SlotA, Trial: boot.SlotB, TriesLeft: c.left}) {
				t.Fatalf("Status = %+v, %v", st, err)
			}
			if slot, err := sim.PowerOn(ctx); err != nil || slot != boot.SlotB {
				t.Fatalf("PowerOn = %s, %v", slot, err)
			}
			wantEntries(t, root, "debian-6.1.0.conf", "shoal-4-a.conf", c.next)
			if got := string(readAll(t, filepath.Join(dir, "cmdline"))); got != "root=/dev/sda2 shoal.slot=B\n" {
				t.Fatalf("command line %q", got)
			}
		})
	}
}

func TestBLSRefuses(t *testing.T) {
	setup := func(t *testing.T, loaderConf string, entries map[string]string) string {
		root := filepath.Join(t.TempDir(), "efi")
		dir := filepath.Join(root, "loader", "entries")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "loader", "loader.conf"), []byte(loaderConf), 0o644); err != nil {
			t.Fatal(err)
		}
		for name, body := range entries {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	good := map[string]string{"shoal-1-a.conf": "options shoal.slot=A\n", "shoal-0-b.conf": "options shoal.slot=B\n"}
	for _, c := range []struct {
		name       string
		loaderConf string
		entries    map[string]string
		want       error
	}{
		{"other default", "default debian-*\n", good, boot.ErrUnsupported},
		{"no default", "timeout 3\n", good, boot.ErrUnsupported},
		{"sort-key", "default shoal-*\n", map[string]string{"shoal-1-a.conf": "sort-key shoal\n", "shoal-0-b.conf": ""}, boot.ErrUnsupported},
		{"two entries for B", "default shoal-*\n", map[string]string{"shoal-1-a.conf": "", "shoal-0-b.conf": "", "shoal-3-b+1.conf": ""}, boot.ErrCorrupt},
		{"no entry for A", "default shoal-*\n", map[string]string{"shoal-0-b.conf": "", "shoal-x-a.conf": ""}, boot.ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := setup(t, c.loaderConf, c.entries)
			before := entryNames(t, root)
			if _, err := boot.OpenBLS(root); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if after := entryNames(t, root); !slices.Equal(before, after) {
				t.Fatalf("a refused open changed the entries: %q", after)
			}
		})
	}
}

func TestParseBLSEntryName(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		want boot.BLSEntryName
	}{
		{"foo.conf", true, boot.BLSEntryName{Base: "foo"}},
		{"foo+3.conf", true, boot.BLSEntryName{Base: "foo", Counted: true, Left: 3}},
		{"foo+4-0.conf", true, boot.BLSEntryName{Base: "foo", Counted: true, Left: 4, HasDone: true}},
		{"foo+03-00.conf", true, boot.BLSEntryName{Base: "foo", Counted: true, Left: 3, HasDone: true}},
		{"foo+0-12.CONF", true, boot.BLSEntryName{Base: "foo", Counted: true, Left: 0, Done: 12, HasDone: true}},
		{"a-1+b-2+3-1.conf", true, boot.BLSEntryName{Base: "a-1+b-2", Counted: true, Left: 3, Done: 1, HasDone: true}},
		{"foo+bar.conf", true, boot.BLSEntryName{Base: "foo+bar"}},
		{"foo+3x.conf", true, boot.BLSEntryName{Base: "foo+3x"}},
		{"foo+3-.conf", true, boot.BLSEntryName{Base: "foo+3-"}},
		{"foo+-1.conf", true, boot.BLSEntryName{Base: "foo+-1"}},
		{"foo+3-1-2.conf", true, boot.BLSEntryName{Base: "foo+3-1-2"}},
		{"foo+2147483648.conf", true, boot.BLSEntryName{Base: "foo+2147483648"}},
		{"foo+2147483647.conf", true, boot.BLSEntryName{Base: "foo", Counted: true, Left: 2147483647}},
		{"+3.conf", true, boot.BLSEntryName{Base: "", Counted: true, Left: 3}},
		{".hidden.conf", false, boot.BLSEntryName{}},
		{"auto-windows.conf", false, boot.BLSEntryName{}},
		{"foo+3.conf.bak", false, boot.BLSEntryName{}},
		{"conf", false, boot.BLSEntryName{}},
		{"", false, boot.BLSEntryName{}},
	} {
		got, ok := boot.ParseBLSEntryName(c.in)
		if ok != c.ok || got != c.want {
			t.Errorf("%q: got %+v %v, want %+v %v", c.in, got, ok, c.want, c.ok)
		}
	}
	// The series systemd-boot documents for its counters.
	n, _ := boot.ParseBLSEntryName("foobar+3.conf")
	var series []string
	for range 5 {
		series = append(series, n.String())
		n = n.Tried()
	}
	if want := []string{"foobar+3.conf", "foobar+2-1.conf", "foobar+1-2.conf", "foobar+0-3.conf", "foobar+0-4.conf"}; !slices.Equal(series, want) {
		t.Fatalf("series %q, want %q", series, want)
	}
}
