package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/shoalnet/shoal/fetch"
)

// tamper rewrites a field of the signed part of metadata file p, leaving
// its signatures as they were.
func tamper(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["signed"].(map[string]any)["expires"] = "2099-01-01T00:00:00Z"
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	write(t, p, b)
}

// Damaged trust state is an error naming the file, never amnesia: after
// it, a replayed older repository must not verify.
func TestDamagedStateIsAnError(t *testing.T) {
	for _, name := range []string{"timestamp.json", "snapshot.json", "targets.json"} {
		for _, damage := range []string{"not json", "wrong type", "tampered", "empty"} {
			t.Run(name+"/"+damage, func(t *testing.T) {
				f := newFixture(t, nil)
				f.publish("stable", 1, 1, nil)
				old := filepath.Join(f.dir, "old")
				copyDir(t, f.repo, old)
				f.publish("stable", 2, 2, nil)
				mustAccept(t, f.client(0), stableDevice, 2)
				// Without damage the replay is refused as a rollback.
				mustReject(t, f.client(0, fetch.Dir(old)), stableDevice, ErrRollback)

				p := filepath.Join(f.state, name)
				switch damage {
				case "not json":
					write(t, p, []byte("{\"signed\": garbage"))
				case "empty":
					write(t, p, nil)
				case "wrong type":
					other := "snapshot.json"
					if name == "snapshot.json" {
						other = "timestamp.json"
					}
					b, err := os.ReadFile(filepath.Join(f.state, other))
					if err != nil {
						t.Fatal(err)
					}
					write(t, p, b)
				case "tampered":
					tamper(t, p)
				}
				for _, c := range []*Client{f.client(0), f.client(0, fetch.Dir(old))} {
					_, err := c.Verify(context.Background(), stableDevice)
					if !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), p) {
						t.Fatalf("got %v, want ErrBadState naming %s", err, p)
					}
				}
				// The damage was not papered over by a save.
				if b, _ := os.ReadFile(p); damage == "not json" && !bytes.Contains(b, []byte("garbage")) {
					t.Fatal("damaged state file was overwritten")
				}
			})
		}
	}
}

func TestDamagedRootStateIsAnError(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	mustAccept(t, f.client(0), stableDevice, 1)
	p := filepath.Join(f.state, "root.json")
	tamper(t, p)
	err := mustReject(t, f.client(0), stableDevice, ErrBadState)
	if !errors.Is(err, ErrThreshold) || !strings.Contains(err.Error(), p) {
		t.Fatalf("got %v, want ErrThreshold naming %s", err, p)
	}
}

// A state file that cannot be read (here: a named pipe) is an error, and
// reading it does not block.
func TestUnreadableStateIsAnError(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	mustAccept(t, f.client(0), stableDevice, 1)
	p := filepath.Join(f.state, "snapshot.json")
	os.Remove(p)
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	err := mustReject(t, f.client(0), stableDevice, ErrBadState)
	if !errors.Is(err, fetch.ErrNotRegular) {
		t.Fatalf("got %v, want fetch.ErrNotRegular", err)
	}
}

// A power cut between remembering a new root and remembering the
// timestamp leaves a timestamp signed by a key that root no longer
// trusts: stale, not damaged, so the device goes on.
func TestStaleStateAfterRotationIsNotAnError(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	mustAccept(t, f.client(0), stableDevice, 1)
	if err := f.keys.Rotate(metadata.TIMESTAMP, KeysOptions{Now: clock(0)}); err != nil {
		t.Fatal(err)
	}
	f.publish("stable", 2, 2, nil)
	b, err := os.ReadFile(filepath.Join(f.repo, "metadata", "2.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.state, "root.json"), b)
	v := mustAccept(t, f.client(0), stableDevice, 2)
	if v.RootVersion != 2 {
		t.Fatalf("root version %d", v.RootVersion)
	}
}

// The client reads and writes its state only through ClientConfig.State.
func TestClientUsesStateStore(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, nil)
	old := filepath.Join(f.dir, "old")
	copyDir(t, f.repo, old)
	f.publish("stable", 2, 2, nil)
	root, err := os.ReadFile(filepath.Join(f.keys.Dir(), "roots", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	store := &MemState{}
	client := func(repo string) *Client {
		c, err := NewClient(ClientConfig{TrustedRoot: root, State: store, Mirrors: []fetch.Fetcher{fetch.Dir(repo)}, Now: clock(0)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	mustAccept(t, client(f.repo), stableDevice, 2)
	for _, name := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json"} {
		if _, err := store.ReadFile(name, 1<<20); err != nil {
			t.Fatalf("%s not remembered: %v", name, err)
		}
	}
	mustReject(t, client(old), stableDevice, ErrRollback)
	if _, err := os.Stat(f.state); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("state directory touched: %v", err)
	}
	if _, err := NewClient(ClientConfig{TrustedRoot: root, State: store, StateDir: f.state, Mirrors: []fetch.Fetcher{fetch.Dir(f.repo)}}); err == nil {
		t.Fatal("State and StateDir both accepted")
	}
}

func TestStateStores(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	for name, s := range map[string]StateStore{"dir": DirState(dir), "mem": &MemState{}} {
		if _, err := s.ReadFile("timestamp.json", 10); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: read before write: %v", name, err)
		}
		if err := s.WriteFile("timestamp.json", []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if b, err := s.ReadFile("timestamp.json", 5); err != nil || string(b) != "hello" {
			t.Fatalf("%s: %q, %v", name, b, err)
		}
		if _, err := s.ReadFile("timestamp.json", 4); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: over bound: %v", name, err)
		}
		for _, bad := range []string{"", "..", "a/b", "../x"} {
			if err := s.WriteFile(bad, nil); err == nil {
				t.Errorf("%s: name %q accepted", name, bad)
			}
		}
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v, %v", st, err)
	}
	if StateIn("") != nil || StateIn(dir) != DirState(dir) {
		t.Fatal("StateIn")
	}
}
