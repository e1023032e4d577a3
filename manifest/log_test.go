package manifest

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	sumtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest/tlog"
)

// logged makes a publish append to the key directory's log.
func (f *fixture) logged(o *PublishOptions) { o.Log = f.keys.TargetsLog() }

// witness returns a log witness trusting the fixture's log key, with the
// fixture's state directory.
func (f *fixture) witness() *LogWitness {
	f.t.Helper()
	w, err := NewLogWitness([]string{f.keys.LogVerifierKey()}, StateIn(f.state))
	if err != nil {
		f.t.Fatal(err)
	}
	return w
}

// logClient is f.client with a witness.
func (f *fixture) logClient(w TargetsWitness, mirrors ...fetch.Fetcher) *Client {
	f.t.Helper()
	if len(mirrors) == 0 {
		mirrors = []fetch.Fetcher{fetch.Dir(f.repo)}
	}
	root, err := os.ReadFile(filepath.Join(f.keys.Dir(), "roots", "1.root.json"))
	if err != nil {
		f.t.Fatal(err)
	}
	c, err := NewClient(ClientConfig{TrustedRoot: root, StateDir: f.state, Mirrors: mirrors, Now: clock(0), Witness: w})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func TestKeysLogKey(t *testing.T) {
	dir := t.TempDir()
	k, err := InitKeys(filepath.Join(dir, "keys"), KeysOptions{Now: clock(0), LogName: "fleet.test/log"})
	if err != nil {
		t.Fatal(err)
	}
	if k.LogSigner() == nil || k.LogSigner().Name() != "fleet.test/log" || !strings.HasPrefix(k.LogVerifierKey(), "fleet.test/log+") {
		t.Fatalf("log key: signer %v, verifier %q", k.LogSigner(), k.LogVerifierKey())
	}
	skey := filepath.Join(k.Dir(), "private", "log.skey")
	st, err := os.Stat(skey)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signer key file: %v %v", st, err)
	}
	pub, err := os.ReadFile(filepath.Join(k.Dir(), LogPubFile))
	if err != nil || string(pub) != k.LogVerifierKey()+"\n" {
		t.Fatalf("log.pub: %q %v", pub, err)
	}

	// Loading gives the same key; the TUF keys are unaffected by the log
	// key's file next to them.
	k2, err := LoadKeys(k.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if k2.LogVerifierKey() != k.LogVerifierKey() || k2.LogSigner().KeyHash() != k.LogSigner().KeyHash() || len(k2.keys) != len(k.keys) {
		t.Fatalf("reloaded: %q, %d TUF keys (want %d)", k2.LogVerifierKey(), len(k2.keys), len(k.keys))
	}

	// No log: no files, no signer, no TargetsLog.
	k3, err := InitKeys(filepath.Join(dir, "nolog"), KeysOptions{Now: clock(0), NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	if k3.LogSigner() != nil || k3.TargetsLog() != nil {
		t.Fatal("NoLog keyring has a log")
	}
	if _, err := os.Stat(filepath.Join(k3.Dir(), LogPubFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("NoLog wrote log.pub: %v", err)
	}
	if k3, err = LoadKeys(k3.Dir()); err != nil || k3.LogSigner() != nil {
		t.Fatalf("load NoLog keyring: %v", err)
	}

	// Bad pairs: mode, one half missing, halves of two keys.
	os.Chmod(skey, 0o644)
	if _, err := LoadKeys(k.Dir()); !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable log key: %v", err)
	}
	os.Chmod(skey, 0o600)
	other, _, _ := tlog.GenerateKey("fleet.test/log")
	good, _ := os.ReadFile(skey)
	os.WriteFile(skey, []byte(other+"\n"), 0o600)
	if _, err := LoadKeys(k.Dir()); !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("mismatched log key pair: %v", err)
	}
	os.Remove(skey)
	if _, err := LoadKeys(k.Dir()); !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), "log.skey") {
		t.Fatalf("log.pub without signer: %v", err)
	}
	os.WriteFile(skey, good, 0o600)
	os.Remove(filepath.Join(k.Dir(), LogPubFile))
	if _, err := LoadKeys(k.Dir()); !errors.Is(err, ErrKeys) || !strings.Contains(err.Error(), "log.pub") {
		t.Fatalf("signer without log.pub: %v", err)
	}
	if _, err := InitKeys(filepath.Join(dir, "badname"), KeysOptions{LogName: "has space"}); !errors.Is(err, ErrKeys) {
		t.Fatalf("log name with a space: %v", err)
	}
}

func TestLogWitnessPublishVerify(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	rl := f.keys.TargetsLog()
	f.publish("stable", 1, 1, func(o *PublishOptions) { o.Log = rl })
	if p := rl.Last(); p == nil || p.Tree.N != 1 || p.Entry != 0 {
		t.Fatalf("publisher's proof after the first publish: %+v", p)
	}

	w := f.witness()
	v, err := f.logClient(w).Verify(ctx, stableDevice)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := w.Proof(v.TargetsVersion, v.Targets)
	if !ok || p.Tree.N != 1 || p.Entry != 0 {
		t.Fatalf("proof %+v %v", p, ok)
	}
	// The checkpoint is remembered, as fetched.
	b, err := os.ReadFile(filepath.Join(f.state, LogStateFile))
	if err != nil || !bytes.Equal(b, p.Checkpoint) {
		t.Fatalf("remembered checkpoint: %v", err)
	}

	f.publish("stable", 2, 2, f.logged)
	f.publish("beta", 1, 3, f.logged)
	w = f.witness() // a new run of the device: memory from the state dir
	v, err = f.logClient(w).Verify(ctx, stableDevice)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := w.Proof(v.TargetsVersion, v.Targets); !ok || p.Tree.N != 3 || p.Entry != 2 || v.Release.Version != 2 {
		t.Fatalf("after three publishes: %+v, release %d", p, v.Release.Version)
	}
	if cp, err := w.Remembered(); err != nil || cp.Tree.N != 3 {
		t.Fatalf("remembered %+v %v", cp.Tree, err)
	}
	// The auditor agrees.
	vs, _ := tlog.NewVerifiers(f.keys.LogVerifierKey())
	if cp, err := tlog.NewReader(fetch.Dir(filepath.Join(f.repo, "log")), vs).Audit(ctx); err != nil || cp.Tree.N != 3 {
		t.Fatalf("audit: %v", err)
	}
}

func TestLogWitnessRejects(t *testing.T) {
	ctx := context.Background()

	t.Run("not logged", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, f.logged)
		f.publish("stable", 2, 2, nil) // the publisher forgot the log
		_, err := f.logClient(f.witness()).Verify(ctx, stableDevice)
		if !errors.Is(err, tlog.ErrNotFound) || !strings.Contains(err.Error(), "targets version 2") {
			t.Fatalf("got %v, want ErrNotFound for targets version 2", err)
		}
		// Nothing unlogged was remembered: neither the TUF state nor the log.
		if _, err := os.Stat(filepath.Join(f.state, "timestamp.json")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("state written for a rejected release: %v", err)
		}
	})

	t.Run("no log at all", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, nil)
		_, err := f.logClient(f.witness()).Verify(ctx, stableDevice)
		if !errors.Is(err, tlog.ErrNotFound) || !strings.Contains(err.Error(), "log/checkpoint") {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("forged checkpoint", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, f.logged)
		cpPath := filepath.Join(f.repo, "log", "checkpoint")
		good, _ := os.ReadFile(cpPath)

		// The tree size edited in place: the signature no longer holds.
		os.WriteFile(cpPath, bytes.Replace(good, []byte("\n1\n"), []byte("\n2\n"), 1), 0o644)
		_, err := f.logClient(f.witness()).Verify(ctx, stableDevice)
		if !errors.Is(err, tlog.ErrBadCheckpoint) || !strings.Contains(err.Error(), "log/checkpoint") {
			t.Fatalf("edited checkpoint: %v", err)
		}

		// A note signed by an attacker's key of the same name.
		skey, _, _ := tlog.GenerateKey(DefaultLogName)
		s, _ := note.NewSigner(skey)
		n, _ := note.Open(good, note.VerifierList(mustVerifier(t, f.keys.LogVerifierKey())))
		forged, _ := note.Sign(&note.Note{Text: n.Text}, s)
		os.WriteFile(cpPath, forged, 0o644)
		_, err = f.logClient(f.witness()).Verify(ctx, stableDevice)
		if !errors.Is(err, tlog.ErrBadCheckpoint) {
			t.Fatalf("checkpoint signed by another key: %v", err)
		}
	})

	t.Run("split view", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, f.logged)
		f.publish("stable", 2, 2, f.logged)
		if _, err := f.logClient(f.witness()).Verify(ctx, stableDevice); err != nil {
			t.Fatal(err)
		}
		remembered, _ := os.ReadFile(filepath.Join(f.state, LogStateFile))

		// The same keys keep a second log with another history (release
		// 1 built from other bytes), longer than the one the device saw.
		g := *f
		g.repo = filepath.Join(f.dir, "fork")
		g.publish("stable", 1, 11, g.logged)
		g.publish("stable", 2, 2, g.logged)
		g.publish("stable", 3, 3, g.logged)
		_, err := f.logClient(f.witness(), fetch.Dir(g.repo)).Verify(ctx, stableDevice)
		if !errors.Is(err, tlog.ErrInconsistent) || !strings.Contains(err.Error(), "split view") {
			t.Fatalf("forked log: %v", err)
		}
		if now, _ := os.ReadFile(filepath.Join(f.state, LogStateFile)); !bytes.Equal(now, remembered) {
			t.Fatal("the forked checkpoint replaced the remembered one")
		}

		// An honest mirror listed first does not make the fork acceptable:
		// two signed, diverging checkpoints stop the device.
		_, err = f.logClient(f.witness(), fetch.Dir(f.repo), fetch.Dir(g.repo)).Verify(ctx, stableDevice)
		if !errors.Is(err, tlog.ErrInconsistent) {
			t.Fatalf("honest and forked mirrors: %v", err)
		}
	})

	t.Run("remembered checkpoint damaged", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, f.logged)
		if _, err := f.logClient(f.witness()).Verify(ctx, stableDevice); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(f.state, LogStateFile)
		b, _ := os.ReadFile(p)
		// A bit of the root hash: the signature no longer matches.
		b[bytes.Index(b, []byte("\n\n"))-10] ^= 1
		os.WriteFile(p, b, 0o644)
		_, err := f.logClient(f.witness()).Verify(ctx, stableDevice)
		if !errors.Is(err, tlog.ErrBadCheckpoint) || !strings.Contains(err.Error(), "remembered") {
			t.Fatalf("damaged state: %v", err)
		}
	})

	t.Run("damaged tile", func(t *testing.T) {
		f := newFixture(t, nil)
		f.publish("stable", 1, 1, f.logged)
		f.publish("stable", 2, 2, f.logged)
		tile := filepath.Join(f.repo, "log", "tile", "8", "0", "000.p", "2")
		b, err := os.ReadFile(tile)
		if err != nil {
			t.Fatal(err)
		}
		b[0] ^= 1
		os.WriteFile(tile, b, 0o644)
		if _, err := f.logClient(f.witness()).Verify(ctx, stableDevice); !errors.Is(err, tlog.ErrCorrupt) {
			t.Fatalf("damaged tile: %v", err)
		}
	})
}

func mustVerifier(t *testing.T, vkey string) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// failAfterLog logs, then fails as a crash between the log append and
// timestamp.json would.
type failAfterLog struct{ *RepoLog }

func (l failAfterLog) Append(ctx context.Context, repo string, version int64, targets []byte) error {
	if err := l.RepoLog.Append(ctx, repo, version, targets); err != nil {
		return err
	}
	return errors.New("power cut")
}

func TestPublishAfterLoggedCrash(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	img := writeImage(t, f.dir, "img", 300<<10, 1)
	o := PublishOptions{Repo: f.repo, Keys: f.keys, Channel: "stable", Version: 1,
		Artifacts: []ArtifactInput{{Name: "rootfs", Path: img}}, Params: testParams, Now: clock(0),
		Log: failAfterLog{f.keys.TargetsLog()}}
	if _, err := Publish(ctx, o); err == nil || !strings.Contains(err.Error(), "power cut") {
		t.Fatalf("publish with a crash after logging: %v", err)
	}
	// Targets version 1 is in the log but was never made current. The
	// retry must not log other bytes (a new expiry) as version 1 again.
	o.Log = f.keys.TargetsLog()
	o.Now = clock(1)
	res, err := Publish(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.TargetsVersion != 2 {
		t.Fatalf("retry published targets version %d, want 2 (1 is taken in the log)", res.TargetsVersion)
	}
	vs, _ := tlog.NewVerifiers(f.keys.LogVerifierKey())
	if _, err := tlog.NewReader(fetch.Dir(filepath.Join(f.repo, "log")), vs).Audit(ctx); err != nil {
		t.Fatalf("audit after the retry: %v", err)
	}
	if _, err := f.logClient(f.witness()).Verify(ctx, stableDevice); err != nil {
		t.Fatal(err)
	}
}

func TestUnverifiedCheckpoint(t *testing.T) {
	skey, _, _ := tlog.GenerateKey("a.test/log")
	s, _ := note.NewSigner(skey)
	tree := sumtlog.Tree{N: 5, Hash: sumtlog.RecordHash([]byte("x"))}
	msg, _ := note.Sign(&note.Note{Text: string(sumtlog.FormatTree(tree))}, s)
	got, err := UnverifiedCheckpoint(msg)
	if err != nil || got != tree {
		t.Fatalf("got %+v %v", got, err)
	}
	extra, _ := note.Sign(&note.Note{Text: string(sumtlog.FormatTree(tree)) + "more\n"}, s)
	for name, b := range map[string][]byte{
		"extra line": extra,
		"no sig":     sumtlog.FormatTree(tree),
		"huge":       bytes.Repeat([]byte("a"), tlog.MaxCheckpointSize+1),
		"empty":      nil,
	} {
		if _, err := UnverifiedCheckpoint(b); !errors.Is(err, tlog.ErrBadCheckpoint) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseLogKeys(t *testing.T) {
	got := ParseLogKeys([]byte("# fleet log\n\n  a+1+x  \r\nb+2+y\n"))
	if len(got) != 2 || got[0] != "a+1+x" || got[1] != "b+2+y" {
		t.Fatalf("%q", got)
	}
}

func TestServeLogNotCached(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, f.logged)
	srv := httptest.NewServer(Handler(f.repo))
	defer srv.Close()
	for p, want := range map[string]string{"log/checkpoint": "no-cache", "log/tile/8/0/000.p/1": "immutable"} {
		resp, err := srv.Client().Get(srv.URL + "/" + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), want) {
			t.Errorf("%s: %s, Cache-Control %q, want %q", p, resp.Status, resp.Header.Get("Cache-Control"), want)
		}
	}
	// And a device requiring the log verifies over HTTP.
	hf, err := fetch.NewHTTP(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.logClient(f.witness(), hf).Verify(context.Background(), stableDevice); err != nil {
		t.Fatal(err)
	}
}
