package boot_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"maps"
	"math/rand/v2"
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

const envSize = 0x2000

// redundantConfig places two copies in two files of dir, and writes the
// fw_env.config for fw_printenv/fw_setenv next to them.
func redundantConfig(t *testing.T, dir string) (boot.UBootConfig, string) {
	t.Helper()
	cfg := boot.UBootConfig{Copies: []boot.UBootCopy{
		{Path: filepath.Join(dir, "env0"), Size: envSize},
		{Path: filepath.Join(dir, "env1"), Size: envSize},
	}}
	return cfg, writeFwConfig(t, dir, cfg)
}

func writeFwConfig(t *testing.T, dir string, cfg boot.UBootConfig) string {
	t.Helper()
	path := filepath.Join(dir, "fw_env.config")
	if err := os.WriteFile(path, []byte(cfg.FwEnvConfig()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var defaultUBootEnv = boot.UBootEnv{"shoal_slot": "A", "bootlimit": "3", "upgrade_available": "0", "bootcount": "0", "bootdelay": "2"}

// boardUBootEnv is what the devices of the conformance suite and the
// crash sweep start with: shoal's variables behind a board's own, which
// run to kilobytes of scripts (board_setup stands in for them). Stored
// sorted by name, they put shoal's counters past the first 512-byte
// sector, so that a torn save can cut between a copy's header and them.
var boardUBootEnv = func() boot.UBootEnv {
	env := maps.Clone(defaultUBootEnv)
	var setup strings.Builder
	for i := range 40 {
		fmt.Fprintf(&setup, "setenv board_var%02d %d; ", i, i*i)
	}
	env["board_setup"] = setup.String()
	return env
}()

// uBootDevice places the environment as layout says. Init writes the
// board's environment unless a copy already holds a valid one.
func uBootDevice(layout func(dir string) boot.UBootConfig) boottest.Device {
	return boottest.Device{
		Init: func(f fsys.FS, dir string) error {
			err := boot.CreateUBootEnv(layout(dir), boardUBootEnv, boot.WithFS(f))
			if errors.Is(err, fs.ErrExist) {
				return nil
			}
			return err
		},
		Open: func(f fsys.FS, dir string) (boot.Adapter, boot.Simulator, error) {
			u, err := boot.OpenUBoot(layout(dir), boot.WithFS(f), boot.WithCmdline(boottest.Cmdline(dir)))
			return u, u, err
		},
	}
}

// The layouts the tests run on: two copies in two files (with the
// fw_printenv lock), two copies in one device, one copy.
var (
	uBootRedundant = uBootDevice(func(dir string) boot.UBootConfig {
		return boot.UBootConfig{Copies: []boot.UBootCopy{
			{Path: filepath.Join(dir, "env0"), Size: envSize},
			{Path: filepath.Join(dir, "env1"), Size: envSize},
		}, LockFile: filepath.Join(dir, "lock")}
	})
	uBootRedundantOneDevice = uBootDevice(func(dir string) boot.UBootConfig {
		dev := filepath.Join(dir, "mmcblk0boot1")
		return boot.UBootConfig{Copies: []boot.UBootCopy{
			{Path: dev, Offset: 0x3000, Size: 0x1000},
			{Path: dev, Offset: 0x5000, Size: 0x1000},
		}}
	})
	uBootSingle = uBootDevice(func(dir string) boot.UBootConfig {
		return boot.UBootConfig{Copies: []boot.UBootCopy{{Path: filepath.Join(dir, "env"), Offset: 512, Size: 0x4000}}}
	})
)

func TestUBootConformance(t *testing.T) {
	t.Run("Redundant", func(t *testing.T) { boottest.Run(t, uBootRedundant) })
	t.Run("RedundantOneDevice", func(t *testing.T) { boottest.Run(t, uBootRedundantOneDevice) })
	t.Run("Single", func(t *testing.T) { boottest.Run(t, uBootSingle) })
}

// TestUBootCrashSweep: with two copies, a torn write hits only the copy
// not in use, so every crash point is swept with and without tearing.
// A single copy is rewritten in place, and a torn write may leave it with
// a bad CRC, as it may under U-Boot itself (the reason for redundant
// environments): that layout is swept without tearing only.
func TestUBootCrashSweep(t *testing.T) {
	t.Run("Redundant", func(t *testing.T) { sweep(t, uBootRedundant, boottest.SweepOptions{}) })
	t.Run("RedundantOneDevice", func(t *testing.T) { sweep(t, uBootRedundantOneDevice, boottest.SweepOptions{}) })
	t.Run("Single", func(t *testing.T) { sweep(t, uBootSingle, boottest.SweepOptions{SkipTear: true}) })
}

// fwPrintenv returns fw_printenv's variables.
func fwPrintenv(t *testing.T, config string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, l := range lines(run(t, testtool.Need(t, "fw_printenv"), "-c", config)) {
		k, v, _ := strings.Cut(l, "=")
		vars[k] = v
	}
	return vars
}

func wantVars(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}

// TestFwPrintenvReadsShoal: fw_printenv reads every state shoal writes,
// including after the flags counter wraps past 255.
func TestFwPrintenvReadsShoal(t *testing.T) {
	testtool.Need(t, "fw_printenv")
	for _, layout := range []string{"redundant", "single"} {
		t.Run(layout, func(t *testing.T) {
			dir := t.TempDir()
			cfg, config := redundantConfig(t, dir)
			if layout == "single" {
				cfg.Copies = cfg.Copies[:1]
				config = writeFwConfig(t, dir, cfg)
			}
			if err := boot.CreateUBootEnv(cfg, defaultUBootEnv); err != nil {
				t.Fatal(err)
			}
			wantVars(t, fwPrintenv(t, config), defaultUBootEnv)
			u, err := boot.OpenUBoot(cfg, boot.WithCmdline(filepath.Join(dir, "cmdline")))
			if err != nil {
				t.Fatal(err)
			}
			if err := u.SetTentative(ctx, boot.SlotB, 2); err != nil {
				t.Fatal(err)
			}
			wantVars(t, fwPrintenv(t, config), map[string]string{
				"shoal_slot": "B", "upgrade_available": "1", "bootcount": "0", "bootlimit": "2", "bootdelay": "2"})
			if _, err := u.PowerOn(ctx); err != nil {
				t.Fatal(err)
			}
			wantVars(t, fwPrintenv(t, config), map[string]string{"shoal_slot": "B", "bootcount": "1"})
			if _, err := u.PowerOn(ctx); err != nil {
				t.Fatal(err)
			}
			if slot, err := u.PowerOn(ctx); err != nil || slot != boot.SlotA {
				t.Fatalf("third PowerOn = %s, %v; want the fallback to A", slot, err)
			}
			wantVars(t, fwPrintenv(t, config), map[string]string{"shoal_slot": "A", "upgrade_available": "0", "bootcount": "3"})
			// Enough writes to wrap the one-byte counter of a redundant env.
			for i := range 300 {
				slot := []string{boot.SlotA, boot.SlotB}[i%2]
				if err := u.MarkGood(ctx, slot); err != nil {
					t.Fatal(err)
				}
				if i%97 == 0 || i >= 298 {
					wantVars(t, fwPrintenv(t, config), map[string]string{"shoal_slot": slot})
				}
			}
		})
	}
}

// TestShoalReadsFwSetenv: shoal reads what fw_setenv writes, and the two
// can take turns without losing each other's changes.
func TestShoalReadsFwSetenv(t *testing.T) {
	setenv := testtool.Need(t, "fw_setenv")
	dir := t.TempDir()
	cfg, config := redundantConfig(t, dir)
	for _, cp := range cfg.Copies {
		if err := os.WriteFile(cp.Path, make([]byte, cp.Size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	defaults := filepath.Join(dir, "defaults.txt")
	if err := os.WriteFile(defaults, []byte("bootdelay=2\nbaudrate=115200\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Blank storage: no valid copy, so shoal refuses to guess.
	if _, err := boot.OpenUBoot(cfg); !errors.Is(err, boot.ErrCorrupt) {
		t.Fatalf("OpenUBoot on blank storage: %v", err)
	}
	run(t, setenv, "-c", config, "-f", defaults, "shoal_slot", "B")
	u, err := boot.OpenUBoot(cfg, boot.WithCmdline(filepath.Join(dir, "cmdline")))
	if err != nil {
		t.Fatal(err)
	}
	st, err := u.Status(ctx)
	if err != nil || st != (boot.Status{Default: boot.SlotB}) {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	run(t, setenv, "-c", config, "upgrade_available", "1")
	run(t, setenv, "-c", config, "bootlimit", "3")
	run(t, setenv, "-c", config, "bootcount", "1")
	st, err = u.Status(ctx)
	if err != nil || st != (boot.Status{Default: boot.SlotA, Trial: boot.SlotB, TriesLeft: 2}) {
		t.Fatalf("Status after fw_setenv = %+v, %v", st, err)
	}
	for i := range 20 {
		if err := u.MarkGood(ctx, boot.SlotB); err != nil {
			t.Fatal(err)
		}
		run(t, setenv, "-c", config, "counter", fmt.Sprint(i))
		if err := u.SetTentative(ctx, boot.SlotA, 2); err != nil {
			t.Fatal(err)
		}
	}
	wantVars(t, fwPrintenv(t, config), map[string]string{
		"shoal_slot": "A", "upgrade_available": "1", "bootlimit": "2", "counter": "19", "baudrate": "115200"})
}

// torn simulates a power cut in the middle of writing a copy: the first n
// bytes of the copy are new, the rest is what was there before.
func torn(t *testing.T, cp boot.UBootCopy, before []byte, n int) {
	t.Helper()
	after := copyBytes(t, cp)
	img := append(slices.Clone(after[:n]), before[n:]...)
	writeCopyBytes(t, cp, img)
}

func copyBytes(t *testing.T, cp boot.UBootCopy) []byte {
	t.Helper()
	f, err := os.Open(cp.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, cp.Size)
	if _, err := f.ReadAt(b, cp.Offset); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeCopyBytes(t *testing.T, cp boot.UBootCopy, b []byte) {
	t.Helper()
	f, err := os.OpenFile(cp.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, cp.Offset); err != nil {
		t.Fatal(err)
	}
}

// newestCopy is the copy a write just went to: the one that changed.
func changedCopy(t *testing.T, cfg boot.UBootConfig, before [2][]byte) int {
	t.Helper()
	for i, cp := range cfg.Copies {
		if string(copyBytes(t, cp)) != string(before[i]) {
			return i
		}
	}
	t.Fatal("no copy changed")
	return -1
}

// TestUBootTornWrite cuts the power in the middle of a save, by shoal and
// by fw_setenv: shoal and fw_printenv both fall back to the other copy,
// and the next save repairs the torn one.
func TestUBootTornWrite(t *testing.T) {
	testtool.Need(t, "fw_printenv")
	setenv := testtool.Need(t, "fw_setenv")
	rng := rand.New(rand.NewPCG(1, 2))
	for _, writer := range []string{"shoal", "fw_setenv"} {
		// Where the write stops, as a fraction of the bytes that change:
		// in the CRC, in the flags byte, in the data, at the last byte.
		for _, cut := range []float64{0.01, 0.3, 0.6, 1} {
			t.Run(fmt.Sprintf("%s/cut%.0f%%", writer, cut*100), func(t *testing.T) {
				dir := t.TempDir()
				cfg, config := redundantConfig(t, dir)
				if err := boot.CreateUBootEnv(cfg, defaultUBootEnv); err != nil {
					t.Fatal(err)
				}
				u, err := boot.OpenUBoot(cfg, boot.WithCmdline(filepath.Join(dir, "cmdline")))
				if err != nil {
					t.Fatal(err)
				}
				if err := u.SetTentative(ctx, boot.SlotB, 3); err != nil {
					t.Fatal(err)
				}
				before := [2][]byte{copyBytes(t, cfg.Copies[0]), copyBytes(t, cfg.Copies[1])}
				if writer == "shoal" {
					err = u.MarkGood(ctx, boot.SlotB)
				} else {
					run(t, setenv, "-c", config, "upgrade_available", "0")
				}
				if err != nil {
					t.Fatal(err)
				}
				c := changedCopy(t, cfg, before)
				after := copyBytes(t, cfg.Copies[c])
				last := len(after) - 1
				for after[last] == before[c][last] {
					last--
				}
				torn(t, cfg.Copies[c], before[c], max(1, int(cut*float64(last))))

				wantVars(t, fwPrintenv(t, config), map[string]string{"shoal_slot": "B", "upgrade_available": "1"})
				st, err := u.Status(ctx)
				if err != nil || st.Trial != boot.SlotB {
					t.Fatalf("Status after a torn write = %+v, %v; want the trial still set", st, err)
				}
				// The next save goes to the torn copy and makes it whole.
				if err := u.MarkGood(ctx, boot.SlotB); err != nil {
					t.Fatal(err)
				}
				if _, _, err := boot.DecodeUBootImage(copyBytes(t, cfg.Copies[c]), true); err != nil {
					t.Fatalf("torn copy not repaired: %v", err)
				}
				wantVars(t, fwPrintenv(t, config), map[string]string{"shoal_slot": "B", "upgrade_available": "0"})
			})
		}
	}
	t.Run("garbled", func(t *testing.T) {
		dir := t.TempDir()
		cfg, config := redundantConfig(t, dir)
		if err := boot.CreateUBootEnv(cfg, defaultUBootEnv); err != nil {
			t.Fatal(err)
		}
		u, err := boot.OpenUBoot(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := u.SetTentative(ctx, boot.SlotB, 3); err != nil {
			t.Fatal(err)
		}
		before := [2][]byte{copyBytes(t, cfg.Copies[0]), copyBytes(t, cfg.Copies[1])}
		if err := u.MarkGood(ctx, boot.SlotB); err != nil {
			t.Fatal(err)
		}
		c := changedCopy(t, cfg, before)
		junk := make([]byte, envSize)
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		writeCopyBytes(t, cfg.Copies[c], junk)
		wantVars(t, fwPrintenv(t, config), map[string]string{"shoal_slot": "B", "upgrade_available": "1"})
		if st, err := u.Status(ctx); err != nil || st.Trial != boot.SlotB {
			t.Fatalf("Status = %+v, %v", st, err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		// A copy in its own file cut short: shoal reads the other copy.
		// (fw_printenv treats a short read as an I/O error, so it is not
		// asked here.)
		dir := t.TempDir()
		cfg, _ := redundantConfig(t, dir)
		if err := boot.CreateUBootEnv(cfg, defaultUBootEnv); err != nil {
			t.Fatal(err)
		}
		u, err := boot.OpenUBoot(cfg)
		if err != nil {
			t.Fatal(err)
		}
		before := [2][]byte{copyBytes(t, cfg.Copies[0]), copyBytes(t, cfg.Copies[1])}
		if err := u.SetTentative(ctx, boot.SlotB, 3); err != nil {
			t.Fatal(err)
		}
		c := changedCopy(t, cfg, before)
		if err := os.Truncate(cfg.Copies[c].Path, 100); err != nil {
			t.Fatal(err)
		}
		if st, err := u.Status(ctx); err != nil || st != (boot.Status{Default: boot.SlotA}) {
			t.Fatalf("Status = %+v, %v; want the state before the cut", st, err)
		}
	})
}

// TestUBootScriptFile applies packaging/uboot/shoal-env.txt with the real
// fw_setenv -s and checks that shoal reads the result as a fresh device.
func TestUBootScriptFile(t *testing.T) {
	setenv := testtool.Need(t, "fw_setenv")
	dir := t.TempDir()
	cfg, config := redundantConfig(t, dir)
	if err := boot.CreateUBootEnv(cfg, boot.UBootEnv{"bootdelay": "0"}); err != nil {
		t.Fatal(err)
	}
	run(t, setenv, "-c", config, "-s", repoFile("packaging/uboot/shoal-env.txt"))
	vars := fwPrintenv(t, config)
	wantVars(t, vars, map[string]string{"shoal_slot": "A", "upgrade_available": "0", "bootlimit": "3", "bootcmd": "run shoal_boot"})
	for _, v := range []string{"altbootcmd", "shoal_boot"} {
		if !strings.Contains(vars[v], `test "${shoal_slot}" = "B"`) {
			t.Errorf("%s does not choose by shoal_slot: %q", v, vars[v])
		}
	}
	if !strings.Contains(vars["shoal_boot"], "shoal.slot=${shoal_slot}") {
		t.Errorf("shoal_boot does not pass shoal.slot=: %q", vars["shoal_boot"])
	}
	u, err := boot.OpenUBoot(cfg, boot.WithCmdline(filepath.Join(dir, "cmdline")))
	if err != nil {
		t.Fatal(err)
	}
	if slot, err := u.PowerOn(ctx); err != nil || slot != boot.SlotA {
		t.Fatalf("PowerOn = %s, %v", slot, err)
	}
	if st, err := u.Status(ctx); err != nil || st != (boot.Status{Booted: boot.SlotA, Default: boot.SlotA}) {
		t.Fatalf("Status = %+v, %v", st, err)
	}
}

func TestUBootTooLarge(t *testing.T) {
	dir := t.TempDir()
	cfg := boot.UBootConfig{Copies: []boot.UBootCopy{
		{Path: filepath.Join(dir, "env0"), Size: 256},
		{Path: filepath.Join(dir, "env1"), Size: 256},
	}}
	env := boot.UBootEnv{"filler": strings.Repeat("x", 200)}
	if err := boot.CreateUBootEnv(cfg, env); err != nil {
		t.Fatal(err)
	}
	u, err := boot.OpenUBoot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := [2][]byte{copyBytes(t, cfg.Copies[0]), copyBytes(t, cfg.Copies[1])}
	if err := u.SetTentative(ctx, boot.SlotB, 3); !errors.Is(err, boot.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	for i, cp := range cfg.Copies {
		if string(copyBytes(t, cp)) != string(before[i]) {
			t.Fatalf("copy %d changed by a refused save", i)
		}
	}
	if err := boot.CreateUBootEnv(cfg, env); !errors.Is(err, os.ErrExist) {
		t.Fatalf("CreateUBootEnv over a valid environment: %v", err)
	}
}

func TestUBootImage(t *testing.T) {
	env := boot.UBootEnv{"b": "2", "a": "x=y", "empty": ""}
	for _, redundant := range []bool{false, true} {
		img, err := boot.EncodeUBootImage(env, 64, redundant, 7)
		if err != nil {
			t.Fatal(err)
		}
		got, flags, err := boot.DecodeUBootImage(img, redundant)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(env) || (redundant && flags != 7) {
			t.Fatalf("round trip: %v flags %d", got, flags)
		}
		data := img[4:]
		if redundant {
			data = img[5:]
		}
		if want := "a=x=y\x00b=2\x00empty=\x00\x00"; !strings.HasPrefix(string(data), want) {
			t.Fatalf("data area %q, want sorted entries %q", data, want)
		}
		img[len(img)-1] ^= 1
		if _, _, err := boot.DecodeUBootImage(img, redundant); !errors.Is(err, boot.ErrCorrupt) {
			t.Fatalf("flipped bit: %v", err)
		}
	}
	if _, err := boot.EncodeUBootImage(boot.UBootEnv{"a=b": "c"}, 64, true, 0); err == nil {
		t.Fatal("name with '=' accepted")
	}
	if _, err := boot.EncodeUBootImage(boot.UBootEnv{"a": strings.Repeat("v", 60)}, 64, true, 0); !errors.Is(err, boot.ErrTooLarge) {
		t.Fatalf("overlong env: %v", err)
	}
	// Valid CRC around broken contents.
	for _, data := range []string{"noequals\x00\x00", "=v\x00\x00", "a=b\x00c=d"} {
		img := make([]byte, 4+len(data))
		copy(img[4:], data)
		fixCRC(img, 4)
		if _, _, err := boot.DecodeUBootImage(img, false); !errors.Is(err, boot.ErrCorrupt) {
			t.Errorf("%q: got %v, want ErrCorrupt", data, err)
		}
	}
}

func TestParseFwEnvConfig(t *testing.T) {
	cfg, err := boot.ParseFwEnvConfig("# comment\n/dev/mtd1 0x0 0x20000 0x10000\n\n/dev/mtd2 4096 20000\n/dev/mtd3 0 1000\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []boot.UBootCopy{{Path: "/dev/mtd1", Offset: 0, Size: 0x20000}, {Path: "/dev/mtd2", Offset: 4096, Size: 0x20000}}
	if !slices.Equal(cfg.Copies, want) {
		t.Fatalf("copies %+v, want %+v", cfg.Copies, want)
	}
	for _, in := range []string{"", "/dev/x 0", "/dev/x -1 100", "/dev/x 0 zz", "/dev/x 0 0", "/dev/a 0 100\n/dev/b 0 200"} {
		if _, err := boot.ParseFwEnvConfig(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// fixCRC sets the CRC of an image whose data area starts at h.
func fixCRC(img []byte, h int) {
	binary.LittleEndian.PutUint32(img, crc32.ChecksumIEEE(img[h:]))
}

// TestBoardEnvSpansSectors keeps the crash sweep's torn writes meaningful:
// in a save, shoal's counters lie past the first sector.
func TestBoardEnvSpansSectors(t *testing.T) {
	img, err := boot.EncodeUBootImage(boardUBootEnv, envSize, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.Index(string(img), "bootcount="); i < 512 {
		t.Fatalf("bootcount at byte %d, in the first sector", i)
	}
}
