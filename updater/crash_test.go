package updater_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/updater"
	"github.com/shoalnet/shoal/updater/fsys"
	"github.com/shoalnet/shoal/updater/state"
)

// crashRelease is one release of the crash sweep: image, index, and the
// verified metadata a manifest.Client would hand the updater.
type crashRelease struct {
	version uint64
	img     []byte
	ix      *chunker.Index
}

func (r crashRelease) verified() *manifest.Verified {
	return &manifest.Verified{
		Release: &manifest.Release{Channel: "stable", Version: r.version, Artifacts: []manifest.Artifact{{
			Name: "rootfs", Slot: "rootfs", Size: r.ix.Size, Root: r.ix.Root(), Hash: r.ix.Hash,
			Params: r.ix.Params, Chunks: len(r.ix.Chunks), Index: r.ix.CID(),
		}}},
		Indexes: []*chunker.Index{r.ix},
	}
}

type chunkMap map[cid.Cid][]byte

func (m chunkMap) Get(_ context.Context, id cid.Cid) ([]byte, error) {
	b, ok := m[id]
	if !ok {
		return nil, fmt.Errorf("no chunk %s", id)
	}
	return bytes.Clone(b), nil
}

type sweep struct {
	cfg      *updater.Config
	releases []crashRelease // releases[0] is installed at the factory in slot A
	chunks   chunkMap
	slotSize int
}

func newSweep(t *testing.T, size int, n int, tries int) *sweep {
	r := rand.New(rand.NewPCG(uint64(size), 5))
	img := make([]byte, size)
	for i := range img {
		img[i] = byte(r.Uint32())
	}
	s := &sweep{chunks: chunkMap{}, slotSize: size + 64<<10}
	for v := 1; v <= n; v++ {
		if v > 1 {
			img = bytes.Clone(img)
			for e := 0; e < 4; e++ {
				at := r.IntN(size - 100)
				for j := 0; j < 100; j++ {
					img[at+j] = byte(r.Uint32())
				}
			}
		}
		ix, err := chunker.Split(context.Background(), bytes.NewReader(img), chunker.Options{Params: smallParams})
		if err != nil {
			t.Fatal(err)
		}
		off := ix.Offsets()
		for i := range ix.Chunks {
			s.chunks[ix.ID(i)] = img[off[i]:off[i+1]]
		}
		s.releases = append(s.releases, crashRelease{uint64(v), img, ix})
	}
	text := `state = "/dev/state"
[device]
id = "crash-1"
channel = "stable"
[trust]
root = "/dev/root.json"
[slots]
a = "/dev/slot-a"
b = "/dev/slot-b"
[boot]
adapter = "file"
path = "/dev/boot.json"
cmdline = "/dev/cmdline"
virtual = true
tries = ` + fmt.Sprint(tries) + `
`
	cfg, err := updater.ParseConfig([]byte(text), "/dev")
	if err != nil {
		t.Fatal(err)
	}
	s.cfg = cfg
	return s
}

// factory lays out a device whose slot A holds release 1, committed.
func (s *sweep) factory() *fsys.Crash {
	c := fsys.NewCrash(fsys.CrashOptions{})
	a := make([]byte, s.slotSize)
	copy(a, s.releases[0].img)
	c.WriteFile("/dev/slot-a", a)
	c.WriteFile("/dev/slot-b", make([]byte, s.slotSize))
	c.WriteFile("/dev/state/slot-A.idx", s.releases[0].ix.Encode())
	st, _ := state.New(state.Config{}, state.Initial("A", 1))
	b, _ := json.Marshal(st.State())
	c.WriteFile("/dev/state/update.json", b)
	return c
}

// step is one operation of the workload; each opens the device afresh
// from the filesystem, as separate processes and boots do.
func (s *sweep) apply(ctx context.Context, f fsys.FS, r crashRelease) error {
	return s.applyWith(ctx, f, r, false)
}

// applyWith may retry a release that failed: with a single boot try, a
// power cut during the trial boot legitimately fails the release (the
// bootloader falls back), and the operator retries it.
func (s *sweep) applyWith(ctx context.Context, f fsys.FS, r crashRelease, retry bool) error {
	d, err := updater.Open(ctx, s.cfg, updater.WithFS(f))
	if err != nil {
		return err
	}
	defer d.Close()
	_, err = d.Offer(ctx, r.verified(), s.chunks, updater.OfferOptions{RetryFailed: retry})
	return err
}

func (s *sweep) boot(ctx context.Context, f fsys.FS) error {
	d, err := updater.Open(ctx, s.cfg, updater.WithFS(f))
	if err != nil {
		return err
	}
	_, err = d.PowerOn(ctx)
	d.Close()
	if err != nil {
		return err
	}
	d, err = updater.Open(ctx, s.cfg, updater.WithFS(f))
	if err != nil {
		return err
	}
	defer d.Close()
	_, err = d.BootCheck(ctx)
	return err
}

// workload: install each later release: apply, reboot, boot-check (which
// commits, as there are no health checks).
func (s *sweep) workload(ctx context.Context, f fsys.FS) error {
	for _, r := range s.releases[1:] {
		if err := s.apply(ctx, f, r); err != nil {
			return err
		}
		if err := s.boot(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// check is run after a crash: power on, and the slot the bootloader boots
// must hold a complete release that verifies; state and audit log must
// parse; then the update must complete.
func (s *sweep) check(t *testing.T, f *fsys.Crash, label string) {
	ctx := context.Background()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: %s\n%s", label, fmt.Sprintf(format, args...), f.Dump())
	}
	d, err := updater.Open(ctx, s.cfg, updater.WithFS(f))
	if err != nil {
		fail("open after crash: %v", err)
	}
	slot, err := d.PowerOn(ctx)
	d.Close()
	if err != nil {
		fail("power on: %v", err)
	}
	if err := s.holdsARelease(f, slot); err != nil {
		fail("bootloader boots slot %s, which does not hold a verified release: %v", slot, err)
	}
	d, err = updater.Open(ctx, s.cfg, updater.WithFS(f))
	if err != nil {
		fail("reopen: %v", err)
	}
	if _, err := d.VerifyAudit(); err != nil {
		fail("audit log: %v", err)
	}
	if _, err := d.BootCheck(ctx); err != nil {
		fail("boot-check after crash: %v", err)
	}
	d.Close()
	// Drive to the last release.
	last := s.releases[len(s.releases)-1]
	for round := 0; round < 6; round++ {
		d, err := updater.Open(ctx, s.cfg, updater.WithFS(f))
		if err != nil {
			fail("open: %v", err)
		}
		st := d.State()
		d.Close()
		if st.Installed == last.version && st.Phase == state.Committed {
			if err := s.holdsRelease(f, st.Active, last); err != nil {
				fail("final slot: %v", err)
			}
			return
		}
		switch st.Phase {
		case state.Staged, state.Tentative:
			err = s.boot(ctx, f)
		default:
			next := s.releases[len(s.releases)-1]
			for _, r := range s.releases {
				if r.version > st.Installed {
					next = r
					break
				}
			}
			if err = s.applyWith(ctx, f, next, true); err == nil {
				err = s.boot(ctx, f)
			}
		}
		if err != nil {
			fail("resume round %d from %s: %v", round, st.Phase, err)
		}
	}
	fail("update did not complete")
}

// holdsARelease checks that slot's bytes match one of the releases.
func (s *sweep) holdsARelease(f fsys.FS, slot string) error {
	var errs []error
	for _, r := range s.releases {
		err := s.holdsRelease(f, slot, r)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *sweep) holdsRelease(f fsys.FS, slot string, r crashRelease) error {
	b, err := f.ReadFile(s.cfg.SlotPath(slot))
	if err != nil {
		return err
	}
	if len(b) < len(r.img) {
		return fmt.Errorf("slot %s is %d bytes", slot, len(b))
	}
	return chunker.Verify(context.Background(), bytes.NewReader(b[:len(r.img)]), r.ix)
}

func runSweep(t *testing.T, s *sweep, points []int) int {
	ctx := context.Background()
	swept := 0
	for _, k := range points {
		for _, tear := range []bool{false, true} {
			c := s.factory()
			c.Reset(fsys.CrashOptions{CrashAt: k, TearLastWrite: tear, Seed: uint64(k)})
			err := s.workload(ctx, c)
			// The power cut ends the run whatever the workload returned (a
			// best-effort write may have swallowed it).
			if !c.Crashed() || (err != nil && !errors.Is(err, fsys.ErrCrashed)) {
				t.Fatalf("crash point %d: workload ended with %v, crashed %v", k, err, c.Crashed())
			}
			s.check(t, c.AfterCrash(), fmt.Sprintf("crash point %d (tear %v)", k, tear))
			swept++
		}
	}
	return swept
}

func countOps(t *testing.T, s *sweep) int {
	c := s.factory()
	if err := s.workload(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	n := c.Ops()
	s.check(t, c, "no crash")
	return n
}

// TestCrashSweepEveryPoint cuts the power at every filesystem operation of
// two full updates (apply, flip, reboot, boot-check, commit) on a small
// image and checks that the device always boots a verified release and
// finishes the update afterwards.
func TestCrashSweepEveryPoint(t *testing.T) {
	for _, tries := range []int{3, 1} {
		s := newSweep(t, 96<<10, 3, tries)
		n := countOps(t, s)
		points := make([]int, n)
		for i := range points {
			points[i] = i + 1
		}
		swept := runSweep(t, s, points)
		t.Logf("tries=%d: swept all %d crash points x 2 (drop / tear last write) = %d outcomes, 0 unbootable or unverified", tries, n, swept)
	}
}

// TestCrashSweepSampleLarge samples crash points of an update of a larger
// image.
func TestCrashSweepSampleLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s := newSweep(t, 4<<20, 2, 3)
	n := countOps(t, s)
	r := rand.New(rand.NewPCG(42, 42))
	var points []int
	for range 40 {
		points = append(points, 1+r.IntN(n))
	}
	swept := runSweep(t, s, points)
	t.Logf("sampled %d of %d crash points x 2 = %d outcomes", len(points), n, swept)
}

// TestCrashSweepTrustState cuts the power at every filesystem operation of
// a verification that remembers new trusted metadata (and the log
// checkpoint): afterwards the remembered state must load, the release
// must verify again, and an older repository replayed to the device must
// still be refused whenever the newer state had become durable.
func TestCrashSweepTrustState(t *testing.T) {
	w := newWorld(t)
	w.publish("stable", 1, nil)
	old := filepath.Join(w.dir, "old-repo")
	if err := os.CopyFS(old, os.DirFS(w.repo)); err != nil {
		t.Fatal(err)
	}
	w.publish("stable", 2, nil)
	text := `state = "/dev/state"
[device]
id = "crash-trust"
channel = "stable"
[trust]
root = "` + filepath.Join(w.dir, "keys", "root.json") + `"
[slots]
a = "/dev/slot-a"
b = "/dev/slot-b"
[boot]
adapter = "file"
path = "/dev/boot.json"
`
	cfg, err := updater.ParseConfig([]byte(text), "/dev")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	factory := func() *fsys.Crash {
		c := fsys.NewCrash(fsys.CrashOptions{})
		c.WriteFile("/dev/slot-a", make([]byte, 4096))
		c.WriteFile("/dev/slot-b", make([]byte, 4096))
		return c
	}
	verify := func(f fsys.FS, repo string) (*manifest.Verified, error) {
		d, err := updater.Open(ctx, cfg, updater.WithFS(f))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		return d.Verify(ctx, []fetch.Fetcher{fetch.Dir(repo)})
	}
	// The device first trusted release 1; then release 2 arrives.
	prepare := func() *fsys.Crash {
		c := factory()
		if _, err := verify(c, old); err != nil {
			t.Fatal(err)
		}
		return c
	}
	newTS, err := os.ReadFile(filepath.Join(w.repo, "metadata", "timestamp.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := prepare()
	c.Reset(fsys.CrashOptions{})
	if v, err := verify(c, w.repo); err != nil || v.Release.Version != 2 {
		t.Fatalf("verify without a crash: %v", err)
	}
	n := c.Ops()
	if _, err := verify(c, old); !errors.Is(err, manifest.ErrRollback) {
		t.Fatalf("replay of the old repository: %v", err)
	}
	for k := 1; k <= n; k++ {
		for _, tear := range []bool{false, true} {
			c := prepare()
			c.Reset(fsys.CrashOptions{CrashAt: k, TearLastWrite: tear, Seed: uint64(k)})
			_, err := verify(c, w.repo)
			if !c.Crashed() || (err != nil && !errors.Is(err, fsys.ErrCrashed)) {
				t.Fatalf("crash point %d: %v", k, err)
			}
			after := c.AfterCrash()
			// The remembered state is old or new file by file, never
			// garbage. Once the new timestamp is durable, the old
			// repository is a replay and must be refused at once; before,
			// it verifies, or is refused as a rollback because a newer
			// targets or snapshot file is remembered already.
			remembered, _ := after.ReadFile("/dev/state/trust/timestamp.json")
			renewed := bytes.Equal(remembered, newTS)
			_, oldErr := verify(after, old)
			switch {
			case renewed && !errors.Is(oldErr, manifest.ErrRollback):
				t.Fatalf("crash point %d (tear %v): the new timestamp is remembered, yet the replay gives %v", k, tear, oldErr)
			case oldErr != nil && !errors.Is(oldErr, manifest.ErrRollback):
				t.Fatalf("crash point %d (tear %v): state after the crash does not load: %v", k, tear, oldErr)
			}
			if v, err := verify(after, w.repo); err != nil || v.Release.Version != 2 {
				t.Fatalf("crash point %d (tear %v): verify after the crash: %v", k, tear, err)
			}
			if _, err := verify(after, old); !errors.Is(err, manifest.ErrRollback) {
				t.Fatalf("crash point %d (tear %v): replay after the state was renewed: %v", k, tear, err)
			}
		}
	}
	t.Logf("swept %d crash points x 2 of remembering trusted metadata", n)
}
