package updater_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/updater"
	"github.com/shoalnet/shoal/updater/audit"
	"github.com/shoalnet/shoal/updater/fsys"
	"github.com/shoalnet/shoal/updater/state"
)

var smallParams = chunker.Params{Min: 1024, Avg: 4096, Max: 16384}

// world is a publisher with keys and a repository, and images to publish.
type world struct {
	t    *testing.T
	dir  string
	keys *manifest.Keyring
	repo string
	base []byte
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	keys, err := manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 9))
	base := make([]byte, 600<<10)
	for i := range base {
		base[i] = byte(r.Uint32())
	}
	return &world{t: t, dir: dir, keys: keys, repo: filepath.Join(dir, "repo"), base: base}
}

// image returns the base image with version-dependent edits.
func (w *world) image(version uint64) []byte {
	b := append([]byte(nil), w.base...)
	r := rand.New(rand.NewPCG(version, 1))
	for e := 0; e < 3; e++ {
		at := r.IntN(len(b) - 64)
		for j := 0; j < 64; j++ {
			b[at+j] = byte(r.Uint32())
		}
	}
	return b
}

func (w *world) publish(channel string, version uint64, mod func(*manifest.PublishOptions)) []byte {
	w.t.Helper()
	img := w.image(version)
	p := filepath.Join(w.dir, "img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		w.t.Fatal(err)
	}
	o := manifest.PublishOptions{Repo: w.repo, Keys: w.keys, Channel: channel, Version: version,
		Artifacts: []manifest.ArtifactInput{{Name: "rootfs", Path: p}}, Params: smallParams}
	if mod != nil {
		mod(&o)
	}
	if _, err := manifest.Publish(context.Background(), o); err != nil {
		w.t.Fatal(err)
	}
	return img
}

// device creates a virtual device with the file boot adapter.
func (w *world) device(slotSize int, health string) *updater.Config {
	w.t.Helper()
	dir := filepath.Join(w.dir, "dev")
	os.MkdirAll(dir, 0o755)
	root, _ := os.ReadFile(filepath.Join(w.dir, "keys", "root.json"))
	os.WriteFile(filepath.Join(dir, "root.json"), root, 0o644)
	for _, s := range []string{"a.img", "b.img"} {
		os.WriteFile(filepath.Join(dir, s), make([]byte, slotSize), 0o644)
	}
	text := `state = "state"
[device]
id = "dev-1"
channel = "stable"
hardware = "board-x"
[trust]
root = "root.json"
[slots]
a = "a.img"
b = "b.img"
[boot]
adapter = "file"
path = "boot.json"
cmdline = "cmdline"
virtual = true
tries = 2
[health]
commands = [` + `"` + health + `"` + `]
deadline = "300ms"
interval = "50ms"
`
	cfg, err := updater.ParseConfig([]byte(text), dir)
	if err != nil {
		w.t.Fatal(err)
	}
	return cfg
}

func open(t *testing.T, cfg *updater.Config) *updater.Device {
	t.Helper()
	d, err := updater.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (w *world) apply(d *updater.Device) (*updater.ApplyResult, error) {
	f, err := manifest.NewFetcher(w.repo)
	if err != nil {
		w.t.Fatal(err)
	}
	return d.Apply(context.Background(), updater.ApplyOptions{Mirrors: []manifest.Fetcher{f}})
}

func slotHolds(t *testing.T, cfg *updater.Config, slot string, img []byte) bool {
	t.Helper()
	b, err := os.ReadFile(cfg.SlotPath(slot))
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:len(img)]) == string(img)
}

// reboot power-cycles the virtual device and runs boot-check, as a
// booting device does; each step reopens the device from disk.
func reboot(t *testing.T, cfg *updater.Config) *updater.BootCheckResult {
	t.Helper()
	ctx := context.Background()
	if _, err := open(t, cfg).PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := open(t, cfg).BootCheck(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestDeviceUpdateCommitRollback(t *testing.T) {
	w := newWorld(t)
	flag := filepath.Join(w.dir, "broken")
	cfg := w.device(1<<20, "test ! -e "+flag)
	ctx := context.Background()

	// First boot of a fresh device: boots A, nothing installed.
	if r := reboot(t, cfg); r.Booted != "A" {
		t.Fatalf("first boot: %+v", r)
	}
	v1 := w.publish("stable", 1, nil)
	res, err := w.apply(open(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	if res.Slot != "B" || !res.Reboot || !slotHolds(t, cfg, "B", v1) {
		t.Fatalf("apply v1: %+v", res)
	}
	if r := reboot(t, cfg); !r.Committed || r.Booted != "B" {
		t.Fatalf("boot-check v1: %+v", r)
	}

	// v2 fails its health check: rolled back, and the bootloader returns
	// to B at the next boot.
	v2 := w.publish("stable", 2, nil)
	os.WriteFile(flag, nil, 0o644)
	res, err = w.apply(open(t, cfg))
	if err != nil {
		t.Fatal(err)
	}
	if res.Slot != "A" || !slotHolds(t, cfg, "A", v2) || res.Stats.LocalBytes == 0 || res.Stats.FetchedBytes >= int64(len(v2))/2 {
		t.Fatalf("apply v2 should copy most chunks from slot B: %+v", res.Stats)
	}
	r := reboot(t, cfg)
	if !r.RolledBack || !r.Reboot || !strings.Contains(r.Reason, "test ! -e") {
		t.Fatalf("boot-check v2: %+v", r)
	}
	if r := reboot(t, cfg); r.Booted != "B" {
		t.Fatalf("after rollback the device boots %s", r.Booted)
	}
	st, _ := open(t, cfg).Status(ctx)
	if st.ActiveSlot != "B" || st.ActiveVersion != 1 || st.State != "rolled-back" || !strings.Contains(st.LastError, "test ! -e") {
		t.Fatalf("status after rollback: %+v", st)
	}
	es, err := audit.Entries(fsys.OS{}, filepath.Join(cfg.Path("state"), "audit"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range es {
		if e.Verdict == string(state.VerdictRolledBack) && e.Version == 2 && strings.Contains(e.Reason, "test ! -e") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no rolled-back v2 entry with its reason in %+v", es)
	}

	// The failed release is not taken again.
	if _, err := w.apply(open(t, cfg)); !errors.Is(err, updater.ErrRefused) {
		t.Fatalf("re-apply of failed v2: %v", err)
	}
	// A fixed v3 with a passing check commits.
	os.Remove(flag)
	v3 := w.publish("stable", 3, nil)
	if _, err := w.apply(open(t, cfg)); err != nil {
		t.Fatal(err)
	}
	if r := reboot(t, cfg); !r.Committed || r.Booted != "A" || !slotHolds(t, cfg, "A", v3) {
		t.Fatalf("v3: %+v", r)
	}
	if n, err := open(t, cfg).VerifyAudit(); err != nil || n < 8 {
		t.Fatalf("audit: %d %v", n, err)
	}
}

func TestDeviceRejects(t *testing.T) {
	w := newWorld(t)
	cfg := w.device(1<<20, "true")
	// Wrong hardware.
	w.publish("stable", 1, func(o *manifest.PublishOptions) { o.Hardware = []string{"board-y"} })
	if _, err := w.apply(open(t, cfg)); !errors.Is(err, manifest.ErrWrongHardware) {
		t.Fatalf("wrong hardware: %v", err)
	}
	// Wrong channel: only beta has a fitting release.
	w.publish("beta", 1, nil)
	if _, err := w.apply(open(t, cfg)); !errors.Is(err, manifest.ErrWrongHardware) {
		t.Fatalf("stable still has only the wrong-hardware release: %v", err)
	}
	cfg2 := *cfg
	cfg2.Device.Channel = "nightly"
	if _, err := w.apply(open(t, &cfg2)); !errors.Is(err, manifest.ErrWrongChannel) {
		t.Fatalf("no release on channel: %v", err)
	}
	// Nothing was written to either slot.
	for _, s := range []string{"A", "B"} {
		if !slotHolds(t, cfg, s, make([]byte, 1<<20)) {
			t.Fatalf("slot %s written by a rejected release", s)
		}
	}
}

func TestDeviceSlotTooSmall(t *testing.T) {
	w := newWorld(t)
	cfg := w.device(100<<10, "true")
	w.publish("stable", 1, nil)
	_, err := w.apply(open(t, cfg))
	if !errors.Is(err, updater.ErrSlotTooSmall) {
		t.Fatalf("got %v", err)
	}
	st, _ := open(t, cfg).Status(context.Background())
	if st.ActiveSlot != "A" || st.StagedVersion != 0 {
		t.Fatalf("status: %+v", st)
	}
}

func TestDeviceOlderReleaseRefused(t *testing.T) {
	w := newWorld(t)
	cfg := w.device(1<<20, "true")
	w.publish("stable", 5, nil)
	if _, err := w.apply(open(t, cfg)); err != nil {
		t.Fatal(err)
	}
	reboot(t, cfg)
	// The repository now offers a release whose version is not newer.
	if res, err := w.apply(open(t, cfg)); err != nil || !res.UpToDate {
		t.Fatalf("same version: %+v %v", res, err)
	}
	// The device moves to a channel whose newest release is older than
	// the one installed.
	w.publish("lts", 2, nil)
	cfg.Device.Channel = "lts"
	_, err := w.apply(open(t, cfg))
	if !errors.Is(err, manifest.ErrRollback) {
		t.Fatalf("older release: %v", err)
	}
	if st := open(t, cfg).State(); st.Installed != 5 || st.Phase != state.Committed {
		t.Fatalf("state after refusing an older release: %+v", st)
	}
}

// TestDeviceDiskFull fills the filesystem holding the device state (a real
// tmpfs of 1 MiB) and applies: a clean error naming the cause, the
// running slot untouched, the state still readable; with space again, the
// same apply succeeds.
func TestDeviceDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	w := newWorld(t)
	cfg := w.device(1<<20, "true")
	sdir := cfg.Path("state")
	os.MkdirAll(sdir, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", sdir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", sdir).Run() })
	w.publish("stable", 1, nil)
	open(t, cfg) // initial state and audit log fit
	filler := filepath.Join(sdir, "filler")
	f, _ := os.Create(filler)
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	before, _ := os.ReadFile(cfg.SlotPath("A"))
	_, err := w.apply(open(t, cfg))
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("apply on a full disk: %v", err)
	}
	if after, _ := os.ReadFile(cfg.SlotPath("A")); string(after) != string(before) {
		t.Fatal("active slot changed")
	}
	d := open(t, cfg) // state still parses
	if st := d.State(); st.Active != "A" || st.Phase == state.Staged || st.Phase == state.Tentative {
		t.Fatalf("state after failed apply: %+v", st)
	}
	os.Remove(filler)
	if _, err := w.apply(open(t, cfg)); err != nil {
		t.Fatalf("apply with space again: %v", err)
	}
}
