package updater_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
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
	// lastPublish is what the last publish reported.
	lastPublish *manifest.PublishResult
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
	res, err := manifest.Publish(context.Background(), o)
	if err != nil {
		w.t.Fatal(err)
	}
	w.lastPublish = res
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

var (
	openMu sync.Mutex
	opened = map[*testing.T]*updater.Device{}
)

// open opens the device as a new command would. The device the test
// opened before is closed first, as the process that ran it has exited:
// each holds the device's lock.
func open(t *testing.T, cfg *updater.Config) *updater.Device {
	t.Helper()
	openMu.Lock()
	defer openMu.Unlock()
	if d := opened[t]; d != nil {
		d.Close()
	} else {
		t.Cleanup(func() {
			openMu.Lock()
			defer openMu.Unlock()
			if d := opened[t]; d != nil {
				d.Close()
			}
			delete(opened, t)
		})
	}
	d, err := updater.Open(context.Background(), cfg, updater.WithLock(t.Name(), 0))
	if err != nil {
		t.Fatal(err)
	}
	opened[t] = d
	return d
}

func readFile(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Error(err)
	}
	return b
}

// release closes the device open(t, ...) opened last.
func release(t *testing.T) {
	openMu.Lock()
	defer openMu.Unlock()
	if d := opened[t]; d != nil {
		d.Close()
	}
}

func (w *world) apply(d *updater.Device) (*updater.ApplyResult, error) {
	f, err := fetch.New(w.repo)
	if err != nil {
		w.t.Fatal(err)
	}
	return d.Apply(context.Background(), updater.ApplyOptions{Mirrors: []fetch.Fetcher{f}})
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
	if _, err := open(t, cfg).Verify(context.Background(), nil); !errors.Is(err, manifest.ErrNoMirror) {
		t.Fatalf("verify from nothing: %v", err)
	}
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
	before, err := os.ReadFile(cfg.SlotPath("A"))
	if err != nil || len(before) != 1<<20 {
		t.Fatalf("read slot A: %d bytes, %v", len(before), err)
	}
	_, err = w.apply(open(t, cfg))
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("apply on a full disk: %v", err)
	}
	after, err := os.ReadFile(cfg.SlotPath("A"))
	if err != nil {
		t.Fatalf("read slot A after the failed apply: %v", err)
	}
	if !bytes.Equal(after, before) {
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

// feedTicks sends ticks on ch until stop closes, counting them; before
// tick n it calls before(n), then waits pace.
func feedTicks(ch chan time.Time, stop chan struct{}, pace time.Duration, before, after func(n int)) *atomic.Int64 {
	var n atomic.Int64
	go func() {
		for {
			before(int(n.Load()) + 1)
			time.Sleep(pace)
			select {
			case ch <- time.Time{}:
				after(int(n.Add(1)))
			case <-stop:
				return
			}
		}
	}()
	return &n
}

// TestBootCheckDeadlineInTicks: the state machine, not a wall clock,
// decides that the health deadline has passed, from the ticks the device
// feeds it; the verdict carries the last failure.
func TestBootCheckDeadlineInTicks(t *testing.T) {
	w := newWorld(t)
	flag := filepath.Join(w.dir, "ready")
	cfg := w.device(1<<20, "test -e "+flag)
	ctx := context.Background()
	w.publish("stable", 1, nil)
	if _, err := w.apply(open(t, cfg)); err != nil {
		t.Fatal(err)
	}
	bootWithTicks := func(deadline time.Duration, pace time.Duration, before, after func(int)) (*updater.BootCheckResult, int) {
		t.Helper()
		if _, err := open(t, cfg).PowerOn(ctx); err != nil {
			t.Fatal(err)
		}
		release(t)
		c := *cfg
		c.Health.Deadline, c.Health.Interval = updater.Duration{Duration: deadline}, updater.Duration{Duration: time.Second}
		ch, stop := make(chan time.Time), make(chan struct{})
		n := feedTicks(ch, stop, pace, before, after)
		d, err := updater.Open(ctx, &c, updater.WithTicks(ch), updater.WithLock(t.Name(), time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		res, err := d.BootCheck(ctx)
		close(stop)
		if err != nil {
			t.Fatal(err)
		}
		return res, int(n.Load())
	}
	// The check never passes: rolled back after exactly 5 ticks of 1 s,
	// however fast they come. The first tick waits for the first failed
	// attempt (persisted as the failing check), so the verdict can name it.
	failing := func(n int) {
		for end := time.Now().Add(10 * time.Second); n == 1 && time.Now().Before(end); time.Sleep(time.Millisecond) {
			if bytes.Contains(readFile(t, filepath.Join(cfg.Path("state"), "update.json")), []byte(`"last_error"`)) {
				return
			}
		}
	}
	res, ticks := bootWithTicks(5*time.Second, 0, failing, func(int) {})
	if !res.RolledBack || ticks != 5 || !strings.Contains(res.Reason, "after 5 ticks") || !strings.Contains(res.Reason, "test -e") {
		t.Fatalf("after %d ticks: %+v", ticks, res)
	}
	// v2 recovers after two ticks, long before its deadline: committed.
	w.publish("stable", 2, nil)
	if r := reboot(t, cfg); r.Booted != "A" {
		t.Fatalf("after the rollback: %+v", r)
	}
	if _, err := w.apply(open(t, cfg)); err != nil {
		t.Fatal(err)
	}
	res, ticks = bootWithTicks(100000*time.Second, time.Millisecond, func(int) {}, func(n int) {
		if n == 2 {
			os.WriteFile(flag, nil, 0o644)
		}
	})
	if !res.Committed || !res.Healthy || ticks < 2 {
		t.Fatalf("after %d ticks: %+v", ticks, res)
	}
}

// TestDeviceLock: a second process changing the device waits, then says
// who holds it; a read-only look needs no lock.
func TestDeviceLock(t *testing.T) {
	w := newWorld(t)
	cfg := w.device(1<<20, "true")
	ctx := context.Background()
	first, err := updater.Open(ctx, cfg, updater.WithLock("shoal update apply", 0))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = updater.Open(ctx, cfg, updater.WithLock("shoal update rollback", 200*time.Millisecond))
	if !errors.Is(err, updater.ErrLocked) || !strings.Contains(err.Error(), "shoal update apply") || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second open: %v", err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("gave up after %v, before the wait", waited)
	}
	ro, err := updater.Open(ctx, cfg, updater.ReadOnly())
	if err != nil {
		t.Fatalf("read-only open while locked: %v", err)
	}
	if _, err := ro.Rollback(ctx, "x"); !errors.Is(err, updater.ErrReadOnly) {
		t.Fatalf("a read-only device took a rollback: %v", err)
	}
	if _, err := ro.Verify(ctx, nil); !errors.Is(err, updater.ErrReadOnly) {
		t.Fatalf("a read-only device verified: %v", err)
	}
	// A waiting second caller gets the lock once the first lets go.
	go func() {
		time.Sleep(100 * time.Millisecond)
		first.Close()
	}()
	second, err := updater.Open(ctx, cfg, updater.WithLock("shoal update rollback", 5*time.Second))
	if err != nil {
		t.Fatalf("open after the holder closed: %v", err)
	}
	second.Close()
}

// TestDeviceConcurrentApplies runs two applies of the same device at once
// (two processes would): the lock serializes them, so the audit log chain
// holds and the flipped slot holds one whole release.
func TestDeviceConcurrentApplies(t *testing.T) {
	w := newWorld(t)
	cfg := w.device(1<<20, "true")
	ctx := context.Background()
	v1 := w.publish("stable", 1, nil)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			d, err := updater.Open(ctx, cfg, updater.WithLock("apply", 30*time.Second))
			if err != nil {
				errs <- err
				return
			}
			f, _ := fetch.New(w.repo)
			_, err = d.Apply(ctx, updater.ApplyOptions{Mirrors: []fetch.Fetcher{f}})
			d.Close() // before reporting: the test opens the device next
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if !slotHolds(t, cfg, "B", v1) {
		t.Fatal("slot B does not hold v1")
	}
	if n, err := open(t, cfg).VerifyAudit(); err != nil {
		t.Fatalf("audit log after concurrent applies (%d entries): %v", n, err)
	}
	if r := reboot(t, cfg); !r.Committed {
		t.Fatalf("boot-check: %+v", r)
	}
}

// TestSlotAliases: slot A given as another spelling of slot B's file is
// refused before anything is written, whatever the spelling.
func TestSlotAliases(t *testing.T) {
	w := newWorld(t)
	cfg := w.device(1<<20, "true")
	dir := filepath.Dir(cfg.SlotPath("B"))
	os.Symlink(cfg.SlotPath("B"), filepath.Join(dir, "link-to-b.img"))
	os.Link(cfg.SlotPath("B"), filepath.Join(dir, "hard-b.img"))
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.Mkdir(filepath.Join(dir, "adir"), 0o755)
	for _, a := range []string{"link-to-b.img", "./b.img", "sub/../b.img", "hard-b.img", filepath.Join(dir, "b.img"), "adir"} {
		c := *cfg
		c.Slots.A = a
		_, err := updater.Open(context.Background(), &c)
		if !errors.Is(err, updater.ErrConfig) {
			t.Errorf("slot a = %q, b = b.img: %v, want ErrConfig", a, err)
		}
	}
	if err := cfg.CheckSlots(fsys.OS{}); err != nil {
		t.Fatalf("distinct slots refused: %v", err)
	}
}

// TestApplyAfterRollbackReboot: after a rollback and the reboot back into
// the old slot, apply works without a boot-check in between (it notes the
// boot itself) instead of claiming the failed slot still runs.
func TestApplyAfterRollbackReboot(t *testing.T) {
	w := newWorld(t)
	flag := filepath.Join(w.dir, "broken")
	cfg := w.device(1<<20, "test ! -e "+flag)
	ctx := context.Background()
	w.publish("stable", 1, nil)
	if _, err := w.apply(open(t, cfg)); err != nil {
		t.Fatal(err)
	}
	reboot(t, cfg) // commits v1 in B
	w.publish("stable", 2, nil)
	os.WriteFile(flag, nil, 0o644)
	if _, err := w.apply(open(t, cfg)); err != nil {
		t.Fatal(err)
	}
	if r := reboot(t, cfg); !r.RolledBack {
		t.Fatalf("v2 should roll back: %+v", r)
	}
	// Back on B without boot-check; a fixed v3 arrives.
	if _, err := open(t, cfg).PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	os.Remove(flag)
	w.publish("stable", 3, nil)
	res, err := w.apply(open(t, cfg))
	if err != nil {
		t.Fatalf("apply after the reboot into the old slot: %v", err)
	}
	if res.Slot != "A" || !res.Reboot {
		t.Fatalf("apply v3: %+v", res)
	}
	if r := reboot(t, cfg); !r.Committed {
		t.Fatalf("boot-check v3: %+v", r)
	}
}

// TestRunning serves the running slot's bytes with its verified index.
func TestRunning(t *testing.T) {
	w := newWorld(t)
	cfg := w.device(1<<20, "true")
	if _, err := open(t, cfg).Running(); !errors.Is(err, updater.ErrNothingInstalled) {
		t.Fatalf("fresh device: %v", err)
	}
	v1 := w.publish("stable", 1, nil)
	if _, err := w.apply(open(t, cfg)); err != nil {
		t.Fatal(err)
	}
	// Flipped but not booted: slot A (nothing installed) still runs, and
	// slot B is the one filled.
	if _, err := open(t, cfg).Running(); !errors.Is(err, updater.ErrNothingInstalled) {
		t.Fatalf("before the reboot: %v", err)
	}
	fl, err := open(t, cfg).Filling()
	if err != nil {
		t.Fatal(err)
	}
	if fl.Slot != "B" || fl.Version != 1 || chunker.Verify(context.Background(), io.NewSectionReader(fl, 0, fl.Index.Size), fl.Index) != nil {
		t.Fatalf("filling: slot %s v%d", fl.Slot, fl.Version)
	}
	fl.Close()
	reboot(t, cfg)
	if _, err := open(t, cfg).Filling(); !errors.Is(err, updater.ErrNothingInstalled) {
		t.Fatalf("filling after the commit: %v", err)
	}
	r, err := open(t, cfg).Running()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Slot != "B" || r.Version != 1 || r.Index.Size != int64(len(v1)) {
		t.Fatalf("running: slot %s v%d, %d bytes", r.Slot, r.Version, r.Index.Size)
	}
	if err := chunker.Verify(context.Background(), io.NewSectionReader(r, 0, r.Index.Size), r.Index); err != nil {
		t.Fatalf("running slot against its index: %v", err)
	}
}

// TestDeviceRollout: the device judges a release's rollout from its own
// labels, whether it verifies the release itself (Apply) or is offered one
// verified elsewhere (Offer).
func TestDeviceRollout(t *testing.T) {
	w := newWorld(t)
	cfg := w.device(1<<20, "true")
	ctx := context.Background()
	w.publish("stable", 1, func(o *manifest.PublishOptions) {
		o.Rollout = []byte(`{"basis_points":10000,"selector":[{"key":"region","op":"=","values":["eu"]}]}`)
	})
	cfg.Device.Labels = map[string]string{"region": "us"}
	if _, err := w.apply(open(t, cfg)); !errors.Is(err, updater.ErrNotEligible) {
		t.Fatalf("apply outside the rollout: %v", err)
	}
	// The same release, verified by a device that is in the rollout, then
	// offered to this one.
	in := *cfg
	in.Device.Labels = map[string]string{"region": "eu"}
	d := open(t, &in)
	f, _ := fetch.New(w.repo)
	v, err := d.Verify(ctx, []fetch.Fetcher{f})
	if err != nil {
		t.Fatal(err)
	}
	release(t)
	out := open(t, cfg)
	if _, err := out.Offer(ctx, v, updater.RepoChunks{Fetcher: f, MaxChunk: smallParams.Max}, updater.OfferOptions{}); !errors.Is(err, updater.ErrNotEligible) {
		t.Fatalf("offer outside the rollout: %v", err)
	}
	if _, err := out.Offer(ctx, &manifest.Verified{Release: v.Release}, nil, updater.OfferOptions{}); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("offer without indexes: %v", err)
	}
	if st := out.State(); st.Phase != state.Idle {
		t.Fatalf("state after refused offers: %+v", st)
	}
	if res, err := open(t, &in).Offer(ctx, v, updater.RepoChunks{Fetcher: f, MaxChunk: smallParams.Max}, updater.OfferOptions{}); err != nil || res.Slot != "B" {
		t.Fatalf("offer inside the rollout: %+v %v", res, err)
	}
}

// TestBootCheckMissingIndex: a trial slot whose kept index is gone cannot
// be proven, so it is rolled back rather than left on trial forever.
func TestBootCheckMissingIndex(t *testing.T) {
	w := newWorld(t)
	cfg := w.device(1<<20, "true")
	ctx := context.Background()
	w.publish("stable", 1, nil)
	if _, err := w.apply(open(t, cfg)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(cfg.Path("state"), "slot-B.idx"))
	if _, err := open(t, cfg).PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := open(t, cfg).BootCheck(ctx)
	if !errors.Is(err, updater.ErrVerifyFailed) || res == nil || !res.RolledBack {
		t.Fatalf("boot-check without the slot's index: %+v %v", res, err)
	}
}

// TestSlotRepointedAfterOpen: a slot path that resolves to the other slot
// by the time the install opens it is refused, even though it was
// distinct when the device was opened.
func TestSlotRepointedAfterOpen(t *testing.T) {
	w := newWorld(t)
	cfg := w.device(1<<20, "true")
	dir := filepath.Dir(cfg.SlotPath("A"))
	link := filepath.Join(dir, "active-link.img")
	if err := os.Symlink(cfg.SlotPath("A"), link); err != nil {
		t.Fatal(err)
	}
	cfg.Slots.A = "active-link.img"
	w.publish("stable", 1, nil)
	d := open(t, cfg)
	os.Remove(link)
	os.Symlink(cfg.SlotPath("B"), link)
	if _, err := w.apply(d); !errors.Is(err, updater.ErrConfig) || !strings.Contains(err.Error(), "same file") {
		t.Fatalf("apply into a slot re-pointed at the active one: %v", err)
	}
}

// TestUpdateConfig: [update] bounds.
func TestUpdateConfig(t *testing.T) {
	base := "state = \"s\"\n[device]\nchannel = \"c\"\n[trust]\nroot = \"r\"\n[slots]\na = \"a\"\nb = \"b\"\n[boot]\nadapter = \"file\"\npath = \"p\"\n"
	c, err := updater.ParseConfig([]byte(base), t.TempDir())
	if err != nil || c.ApplyTimeout() != updater.DefaultApplyTimeout {
		t.Fatalf("default: %v %v", c, err)
	}
	c, err = updater.ParseConfig([]byte(base+"[update]\ntimeout = \"90m\"\nmin_rate = 4096\n"), t.TempDir())
	if err != nil || c.ApplyTimeout() != 90*time.Minute || c.Update.MinRate != 4096 {
		t.Fatalf("set: %+v %v", c, err)
	}
	if _, err := updater.ParseConfig([]byte(base+"[update]\nmin_rate = -1\n"), t.TempDir()); !errors.Is(err, updater.ErrConfig) {
		t.Fatalf("negative rate: %v", err)
	}
}
