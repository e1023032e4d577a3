package boot_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/internal/testtool"
	"github.com/shoalnet/shoal/updater/boot"
	"github.com/shoalnet/shoal/updater/boot/boottest"
	"github.com/shoalnet/shoal/updater/fsys"
)

// grubDevice keeps its environment block in dir/grubenv.
var grubDevice = boottest.Device{
	Init: func(f fsys.FS, dir string) error {
		path := filepath.Join(dir, "grubenv")
		_, err := f.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return boot.CreateGRUBEnv(path, boot.WithFS(f))
		}
		return err
	},
	Open: func(f fsys.FS, dir string) (boot.Adapter, boot.Simulator, error) {
		g, err := boot.OpenGRUB(filepath.Join(dir, "grubenv"), boot.WithFS(f), boot.WithCmdline(boottest.Cmdline(dir)))
		return g, g, err
	},
}

func openGRUB(t *testing.T, dir string) (boot.Adapter, boot.Simulator) {
	t.Helper()
	return openOS(t, grubDevice, dir)
}

func TestGRUBConformance(t *testing.T) { boottest.Run(t, grubDevice) }

func TestGRUBCrashSweep(t *testing.T) { sweep(t, grubDevice, boottest.SweepOptions{}) }

// TestGRUBEditenvReadsShoal: what shoal writes, grub-editenv lists, and
// the block stays 1024 bytes.
func TestGRUBEditenvReadsShoal(t *testing.T) {
	editenv := testtool.Need(t, "grub-editenv")
	dir := t.TempDir()
	a, sim := openGRUB(t, dir)
	path := filepath.Join(dir, "grubenv")
	if _, err := sim.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.SetTentative(ctx, boot.SlotB, 3); err != nil {
		t.Fatal(err)
	}
	want := []string{"shoal_default=A", "shoal_trial=B", "shoal_tries=3"}
	if got := lines(run(t, editenv, path, "list")); !slices.Equal(got, want) {
		t.Fatalf("grub-editenv list: %q, want %q", got, want)
	}
	if _, err := sim.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	want = []string{"shoal_default=A", "shoal_trial=B", "shoal_tries=2"}
	if got := lines(run(t, editenv, path, "list")); !slices.Equal(got, want) {
		t.Fatalf("grub-editenv list after a trial boot: %q, want %q", got, want)
	}
	if err := a.MarkGood(ctx, boot.SlotB); err != nil {
		t.Fatal(err)
	}
	want = []string{"shoal_default=B"}
	if got := lines(run(t, editenv, path, "list")); !slices.Equal(got, want) {
		t.Fatalf("grub-editenv list after MarkGood: %q, want %q", got, want)
	}
	if n := len(readAll(t, path)); n != boot.GRUBEnvSize {
		t.Fatalf("block is %d bytes", n)
	}

	// Escapes: backslashes and newlines in values.
	env, err := boot.ParseGRUBEnv(readAll(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Set("odd", "a\\b\nc=d"); err != nil {
		t.Fatal(err)
	}
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := run(t, editenv, path, "list"), "shoal_default=B\nodd=a\\b\nc=d\n"; got != want {
		t.Fatalf("grub-editenv list: %q, want %q", got, want)
	}
}

// TestShoalReadsGRUBEditenv: what grub-editenv writes, shoal reads, and
// shoal's changes keep grub-editenv's other variables.
func TestShoalReadsGRUBEditenv(t *testing.T) {
	editenv := testtool.Need(t, "grub-editenv")
	dir := t.TempDir()
	path := filepath.Join(dir, "grubenv")
	run(t, editenv, path, "create")
	run(t, editenv, path, "set", "saved_entry=gnulinux-advanced", "shoal_default=B", "shoal_trial=A", "shoal_tries=2",
		"odd=x\\y", "multi=one\ntwo")
	g, err := boot.OpenGRUB(path, boot.WithCmdline(filepath.Join(dir, "cmdline")))
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st != (boot.Status{Default: boot.SlotB, Trial: boot.SlotA, TriesLeft: 2}) {
		t.Fatalf("Status = %+v", st)
	}
	env, err := boot.ParseGRUBEnv(readAll(t, path))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"odd": "x\\y", "multi": "one\ntwo", "saved_entry": "gnulinux-advanced"} {
		if got, _ := env.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	// The bootloader takes a try; then the system marks A good.
	if slot, err := g.PowerOn(ctx); err != nil || slot != boot.SlotA {
		t.Fatalf("PowerOn = %s, %v", slot, err)
	}
	if got := run(t, editenv, path, "list"); !strings.Contains(got, "shoal_tries=1\n") {
		t.Fatalf("grub-editenv sees no decremented counter:\n%s", got)
	}
	if err := g.MarkGood(ctx, boot.SlotA); err != nil {
		t.Fatal(err)
	}
	want := []string{"saved_entry=gnulinux-advanced", "shoal_default=A", "odd=x\\y", "multi=one", "two"}
	if got := lines(run(t, editenv, path, "list")); !slices.Equal(got, want) {
		t.Fatalf("grub-editenv list: %q, want %q", got, want)
	}
	// And grub-editenv can keep editing what shoal wrote.
	run(t, editenv, path, "set", "shoal_trial=B", "shoal_tries=1")
	if st, err := g.Status(ctx); err != nil || st.Trial != boot.SlotB || st.TriesLeft != 1 {
		t.Fatalf("Status after grub-editenv set = %+v, %v", st, err)
	}
	if n := len(readAll(t, path)); n != boot.GRUBEnvSize {
		t.Fatalf("block is %d bytes", n)
	}
}

// TestGRUBAtomicReplace: each change replaces the file by rename (a new
// inode), leaves no temporary file, and a refused change leaves it as is.
func TestGRUBAtomicReplace(t *testing.T) {
	dir := t.TempDir()
	a, _ := openGRUB(t, dir)
	path := filepath.Join(dir, "grubenv")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetTentative(ctx, boot.SlotB, 2); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Fatal("the block was rewritten in place, not replaced")
	}
	if after.Size() != boot.GRUBEnvSize {
		t.Fatalf("block is %d bytes", after.Size())
	}
	noTempFiles(t, dir, "grubenv")

	// Unchanged state: no write at all.
	if err := a.SetTentative(ctx, boot.SlotB, 2); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.Stat(path); !os.SameFile(after, again) {
		t.Fatal("an idempotent call rewrote the block")
	}
}

// TestGRUBTooLarge: a change that does not fit the 1024-byte block is
// refused with ErrTooLarge and the block is left as it was.
func TestGRUBTooLarge(t *testing.T) {
	dir := t.TempDir()
	a, _ := openGRUB(t, dir)
	path := filepath.Join(dir, "grubenv")
	env, err := boot.ParseGRUBEnv(readAll(t, path))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Set("big", strings.Repeat("x", boot.GRUBEnvSize-len("# GRUB Environment Block\n")-len("big=\n")-20)); err != nil {
		t.Fatal(err)
	}
	full, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, full, 0o644); err != nil {
		t.Fatal(err)
	}
	err = a.SetTentative(ctx, boot.SlotB, 3)
	if !errors.Is(err, boot.ErrTooLarge) || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v, want ErrTooLarge naming %s", err, path)
	}
	if got := readAll(t, path); string(got) != string(full) {
		t.Fatal("a refused change modified the block")
	}
	if err := env.Set("more", strings.Repeat("y", 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Encode(); !errors.Is(err, boot.ErrTooLarge) {
		t.Fatalf("Encode of an overlong block: %v", err)
	}
}

// TestGRUBScript checks packaging/grub/shoal.cfg: GRUB's own checker
// accepts it, and it covers every tries value the adapter writes.
func TestGRUBScript(t *testing.T) {
	path := repoFile("packaging/grub/shoal.cfg")
	script := string(readAll(t, path))
	for _, want := range []string{
		"load_env --file \"${shoal_env}\" --skip-sig shoal_default shoal_trial shoal_tries",
		"save_env --file \"${shoal_env}\" shoal_trial shoal_tries",
		"shoal.slot=${shoal_slot}",
	} {
		if !strings.Contains(script, want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
	for n := 1; n <= boot.MaxTries; n++ {
		want := fmt.Sprintf("[ \"${shoal_tries}\" = \"%d\" ]; then\n    set shoal_tries=%d\n    set shoal_slot=\"${shoal_trial}\"", n, n-1)
		if !strings.Contains(script, want) {
			t.Errorf("%s does not count down from %d", path, n)
		}
	}
	check := testtool.Need(t, "grub-script-check")
	run(t, check, path)
}

func TestGRUBRefusesBadBlocks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "grubenv")
	if _, err := boot.OpenGRUB(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing block: %v", err)
	}
	bad := []byte("# GRUB Environment Block\nshoal_default\n" + strings.Repeat("#", 900))
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := boot.OpenGRUB(path); !errors.Is(err, boot.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt block: %v", err)
	}
	if err := boot.CreateGRUBEnv(path); !errors.Is(err, os.ErrExist) {
		t.Fatalf("CreateGRUBEnv over an existing file: %v", err)
	}
	if got := readAll(t, path); string(got) != string(bad) {
		t.Fatal("the corrupt block was modified")
	}
}

// TestPowerOnNeedsSimulatedCmdline: an adapter on the real /proc/cmdline
// must not play bootloader and count down real tries.
func TestPowerOnNeedsSimulatedCmdline(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "grubenv")
	if err := boot.CreateGRUBEnv(path); err != nil {
		t.Fatal(err)
	}
	g, err := boot.OpenGRUB(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetTentative(ctx, boot.SlotB, 3); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, path)
	if _, err := g.PowerOn(ctx); !errors.Is(err, boot.ErrNotSimulated) {
		t.Fatalf("PowerOn on /proc/cmdline: %v", err)
	}
	if string(readAll(t, path)) != string(before) {
		t.Fatal("a refused PowerOn changed the block")
	}
}

func TestParseGRUBEnv(t *testing.T) {
	pad := func(s string) string { return s + strings.Repeat("#", boot.GRUBEnvSize-len(s)) }
	good := pad("# GRUB Environment Block\n# a comment\nk=v\nesc=a\\\\b\\\nc\nempty=\nk=w\n")
	env, err := boot.ParseGRUBEnv([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := env.Vars(), []string{"k=v", "esc=a\\b\nc", "empty=", "k=w"}; !slices.Equal(got, want) {
		t.Fatalf("Vars = %q, want %q", got, want)
	}
	if v, _ := env.Get("k"); v != "w" {
		t.Fatalf("duplicate k: got %q, want the last one", v)
	}
	out, err := env.Encode()
	if err != nil || string(out) != good {
		t.Fatalf("unchanged block does not re-encode byte for byte: %v", err)
	}
	if err := env.Set("k", "x"); err != nil {
		t.Fatal(err)
	}
	if got, want := env.Vars(), []string{"k=x", "esc=a\\b\nc", "empty="}; !slices.Equal(got, want) {
		t.Fatalf("after Set: %q, want %q", got, want)
	}
	for _, name := range []string{"", "#x", "a=b", "a\nb", "a\x00"} {
		if err := env.Set(name, "v"); err == nil {
			t.Errorf("Set(%q) accepted", name)
		}
	}
	for _, in := range []string{
		"",
		"# GRUB Environment Bloc",
		"# Grub Environment Block\n" + strings.Repeat("#", 999),
		pad("# GRUB Environment Block\nnoequals\n"),
		pad("# GRUB Environment Block\n=v\n"),
		"# GRUB Environment Block\nk=unterminated",
		"# GRUB Environment Block\nk=v\\",
		pad("# GRUB Environment Block\nk=v\x00\n"),
		"# GRUB Environment Block\n###x##",
	} {
		if _, err := boot.ParseGRUBEnv([]byte(in)); !errors.Is(err, boot.ErrCorrupt) {
			t.Errorf("%q: got %v, want ErrCorrupt", in, err)
		}
	}
}
