package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
	"github.com/shoalnet/shoal/swarm"
	"github.com/shoalnet/shoal/swarm/announce"
)

type pubRepo struct {
	t    *testing.T
	dir  string
	keys *manifest.Keyring
	repo string
	// logged: each publish appends to the repository's transparency log.
	logged bool
}

func newPubRepo(t *testing.T) *pubRepo {
	dir := t.TempDir()
	keys, err := manifest.InitKeys(filepath.Join(dir, "keys"), manifest.KeysOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &pubRepo{t: t, dir: dir, keys: keys, repo: filepath.Join(dir, "repo")}
}

func (p *pubRepo) publish(version uint64, hardware ...string) []byte {
	img := filepath.Join(p.dir, "img")
	b := make([]byte, 100<<10)
	rand.Read(b)
	os.WriteFile(img, b, 0o644)
	o := manifest.PublishOptions{Repo: p.repo, Keys: p.keys, Channel: "stable",
		Version: version, Hardware: hardware, Artifacts: []manifest.ArtifactInput{{Name: "rootfs", Path: img}},
		Params: chunker.Params{Min: 1024, Avg: 4096, Max: 16384}}
	if p.logged {
		o.Log = p.keys.TargetsLog()
	}
	if _, err := manifest.Publish(context.Background(), o); err != nil {
		p.t.Fatal(err)
	}
	a, err := announce.Collect(context.Background(), fetch.Dir(p.repo), "fleet-1", "stable")
	if err != nil {
		p.t.Fatal(err)
	}
	enc, err := a.Encode()
	if err != nil {
		p.t.Fatal(err)
	}
	return enc
}

func (p *pubRepo) validator(now func() time.Time, hw string) (*validator, *[]Verdict) {
	v, got, _ := p.validatorWith(now, hw, false)
	return v, got
}

// validatorWith is validator, requiring the log when requireLog (with
// the witness it returns).
func (p *pubRepo) validatorWith(now func() time.Time, hw string, requireLog bool) (*validator, *[]Verdict, *manifest.LogWitness) {
	root, err := os.ReadFile(filepath.Join(p.dir, "keys", "root.json"))
	if err != nil {
		p.t.Fatal(err)
	}
	trust := &manifest.Trust{Root: root, State: &manifest.MemState{}}
	if requireLog {
		trust.LogKeys = []string{p.keys.LogVerifierKey()}
		if trust.Witness, err = manifest.NewLogWitness(trust.LogKeys, trust.State); err != nil {
			p.t.Fatal(err)
		}
	}
	var got []Verdict
	v, err := newValidator("fleet-1", "stable", trust, now,
		func() manifest.Device { return manifest.Device{ID: "n1", Channel: "stable", Hardware: hw} }, nil,
		slog.New(slog.DiscardHandler), func(v Verdict) { got = append(got, v) })
	if err != nil {
		p.t.Fatal(err)
	}
	return v, &got, trust.Witness
}

// TestValidator: forged, malformed and foreign announcements are rejected
// at the first hop; stale, replayed and not-for-us ones are ignored; only
// a verified current one is accepted and handed on.
func TestValidator(t *testing.T) {
	p := newPubRepo(t)
	ctx := context.Background()
	v1 := p.publish(1)
	v2 := p.publish(2)
	val, accepted := p.validator(time.Now, "")

	if r := val.Validate(ctx, "peer-a", v2); r != swarm.Accept {
		t.Fatalf("current announcement: %v", r)
	}
	if len(*accepted) != 1 || (*accepted)[0].Verified.Release.Version != 2 {
		t.Fatalf("accepted: %+v", *accepted)
	}
	// The same again (a re-announcement) is still the current release.
	if r := val.Validate(ctx, "peer-a", v2); r != swarm.Accept {
		t.Fatalf("re-announcement: %v", r)
	}
	// A replay of the older state is stale: ignored, not relayed.
	if r := val.Validate(ctx, "peer-b", v1); r != swarm.Ignore {
		t.Fatalf("replayed v1: %v", r)
	}
	// Forged: targets edited after signing.
	a, _ := announce.Decode(v2)
	for path, b := range a.Files {
		if strings.HasSuffix(path, ".targets.json") {
			a.Files[path] = bytes.Replace(b, []byte(`"rootfs"`), []byte(`"rootfz"`), 1)
		}
	}
	forged, _ := a.Encode()
	if r := val.Validate(ctx, "peer-c", forged); r != swarm.Reject {
		t.Fatalf("forged: %v", r)
	}
	if r := val.Validate(ctx, "peer-c", []byte("not an announcement")); r != swarm.Reject {
		t.Fatalf("garbage: %v", r)
	}
	b, _ := announce.Decode(v2)
	b.Channel = "beta"
	foreign, _ := b.Encode()
	if r := val.Validate(ctx, "peer-c", foreign); r != swarm.Reject {
		t.Fatalf("foreign channel: %v", r)
	}
	if len(*accepted) != 2 {
		t.Fatalf("only the two current announcements may pass: %d", len(*accepted))
	}
}

func TestValidatorStaleAndNotForUs(t *testing.T) {
	p := newPubRepo(t)
	ctx := context.Background()
	ann := p.publish(1, "board-a")
	// Years later, the metadata has expired: stale.
	late, _ := p.validator(func() time.Time { return time.Now().Add(20 * 365 * 24 * time.Hour) }, "board-a")
	if r := late.Validate(ctx, "peer-a", ann); r != swarm.Ignore {
		t.Fatalf("expired: %v", r)
	}
	// A release for other hardware is genuine but not ours.
	other, _ := p.validator(time.Now, "board-b")
	if r := other.Validate(ctx, "peer-a", ann); r != swarm.Ignore {
		t.Fatalf("other hardware: %v", r)
	}
}

// logVariants are announcements of the repository's current release
// whose log slice is tampered with, made from good; old is an earlier
// announcement of the same repository.
func logVariants(t *testing.T, good, old []byte) map[string][]byte {
	t.Helper()
	edit := func(f func(a *announce.Announcement)) []byte {
		a, err := announce.Decode(good)
		if err != nil {
			t.Fatal(err)
		}
		f(a)
		b, err := a.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	strip := func(a *announce.Announcement) {
		for p := range a.Files {
			if strings.HasPrefix(p, "log/") {
				delete(a.Files, p)
			}
		}
	}
	prev, err := announce.Decode(old)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"stripped": edit(strip),
		// The slice of the earlier announcement: its checkpoint is genuine
		// but stale, its tree does not hold these targets.
		"stale": edit(func(a *announce.Announcement) {
			strip(a)
			for p, b := range prev.Files {
				if strings.HasPrefix(p, "log/") {
					a.Files[p] = b
				}
			}
		}),
		// The same tree, signed by a key the fleet does not trust.
		"forged checkpoint": edit(func(a *announce.Announcement) {
			a.Files["log/checkpoint"] = forgeCheckpoint(t, a.Files["log/checkpoint"])
		}),
		"extra log file": edit(func(a *announce.Announcement) {
			a.Files["log/tile/8/0/000.p/1"] = prev.Files["log/tile/8/0/000.p/1"]
		}),
	}
}

// forgeCheckpoint signs the tree cp states with a key of its own.
func forgeCheckpoint(t *testing.T, cp []byte) []byte {
	t.Helper()
	tree, err := manifest.UnverifiedCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := tlog.GenerateKey("shoal-log")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	b, err := note.Sign(&note.Note{Text: string(sumtlog.FormatTree(tree))}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestValidatorLogSlice: a node that requires the log accepts the
// announcement of a logged release from its slice alone; it rejects a
// slice that does not prove the targets (stale, with an extra file),
// which no honest peer relays since every validator checks the slice's
// shape; and it ignores what only the log key and its memory can fault
// (no slice, a checkpoint signed by another key, a forked log), which a
// peer that does not require the log relays in good faith. Each refusal
// says what was wrong. A node that does not require the log accepts a
// stripped announcement and still rejects a malformed slice.
func TestValidatorLogSlice(t *testing.T) {
	p := newPubRepo(t)
	p.logged = true
	ctx := context.Background()
	v1 := p.publish(1)
	v2 := p.publish(2)
	bad := logVariants(t, v2, v1)

	// A forked log, signed by the fleet's own log key: its only entry is
	// v2's targets record, where the log the node saw has v1's.
	a2, _ := announce.Decode(v2)
	tv, tb, _ := a2.Targets()
	rec, err := tlog.TargetsOf("", tv, tb).Record()
	if err != nil {
		t.Fatal(err)
	}
	fork := filepath.Join(t.TempDir(), "fork")
	if _, err := tlog.Append(ctx, filepath.Join(fork, tlog.RepoDir), p.keys.LogSigner(), rec); err != nil {
		t.Fatal(err)
	}
	ls, err := manifest.CollectLog(ctx, fetch.Dir(fork), tv, tb, announce.MaxLogEntries)
	if err != nil {
		t.Fatal(err)
	}
	for p := range a2.Files {
		if strings.HasPrefix(p, "log/") {
			delete(a2.Files, p)
		}
	}
	for p, b := range ls.Files {
		a2.Files[p] = b
	}
	forked, _ := a2.Encode()

	val, accepted, witness := p.validatorWith(time.Now, "", true)
	if r := val.Validate(ctx, "peer-a", v1); r != swarm.Accept {
		t.Fatalf("v1: %v", r)
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		result swarm.ValidationResult
		reason string
	}{
		{"stripped", bad["stripped"], swarm.Ignore, "carries no transparency-log files"},
		{"forged checkpoint", bad["forged checkpoint"], swarm.Ignore, "log/checkpoint: tlog: invalid checkpoint"},
		{"stale", bad["stale"], swarm.Reject, "do not prove the targets"},
		{"forked log", forked, swarm.Ignore, "split view"},
	} {
		verdict := val.check(ctx, "peer-b", tc.data)
		if verdict.Result != tc.result || verdict.Err == nil || !strings.Contains(verdict.Err.Error(), tc.reason) {
			t.Errorf("%s: %v (%v), want %v with %q", tc.name, verdict.Result, verdict.Err, tc.result, tc.reason)
		}
		t.Logf("%s: %v: %v", tc.name, verdict.Result, verdict.Err)
	}
	if r := val.Validate(ctx, "peer-a", v2); r != swarm.Accept {
		t.Fatalf("v2: %v", r)
	}
	if r := val.Validate(ctx, "peer-b", bad["extra log file"]); r != swarm.Reject {
		t.Fatalf("extra log file: %v", r)
	}
	if len(*accepted) != 2 {
		t.Fatalf("accepted %d announcements, want v1 and v2", len(*accepted))
	}
	if cp, err := witness.Remembered(); err != nil || cp.Tree.N != 2 {
		t.Fatalf("remembered log: %+v %v", cp.Tree, err)
	}

	// Without the log required.
	plain, _ := p.validator(time.Now, "")
	for name, want := range map[string]swarm.ValidationResult{"stripped": swarm.Accept, "stale": swarm.Reject, "extra log file": swarm.Reject} {
		if verdict := plain.check(ctx, "peer-c", bad[name]); verdict.Result != want {
			t.Errorf("not requiring the log, %s: %v (%v), want %v", name, verdict.Result, verdict.Err, want)
		}
	}
}
