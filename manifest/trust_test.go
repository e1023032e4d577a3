package manifest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/manifest/tlog"
)

func TestReadLogKeyFile(t *testing.T) {
	dir := t.TempDir()
	_, vkey, err := tlog.GenerateKey("fleet.test/log")
	if err != nil {
		t.Fatal(err)
	}
	_, vkey2, err := tlog.GenerateKey("fleet.test/log2")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "log.pub")
	write(t, p, []byte("# the fleet's log key\n\n  "+vkey+"  \r\n#"+vkey2+"\n"+vkey2+"\n"))
	keys, err := ReadLogKeyFile(p)
	if err != nil || len(keys) != 2 || keys[0] != vkey || keys[1] != vkey2 {
		t.Fatalf("got %q, %v; want both keys, comments skipped", keys, err)
	}
	write(t, p, []byte("# only a comment\n\n"))
	if _, err := ReadLogKeyFile(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("no key: %v, want an error naming the file", err)
	}
	write(t, p, make([]byte, 65<<10))
	if _, err := ReadLogKeyFile(p); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge file: %v, want ErrTooLarge", err)
	}
	if _, err := ReadLogKeyFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// O_NONBLOCK: this returns instead of waiting for a writer.
	if _, err := ReadLogKeyFile(fifo); !errors.Is(err, fetch.ErrNotRegular) {
		t.Fatalf("fifo: %v, want fetch.ErrNotRegular", err)
	}
}

func TestTrustOptions(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("stable", 1, 1, f.logged)
	root := filepath.Join(f.keys.Dir(), "roots", "1.root.json")
	logKey := filepath.Join(f.keys.Dir(), LogPubFile)
	ctx := context.Background()

	tr, err := TrustOptions{Root: root, LogKey: logKey, RequireLog: true, StateDir: f.state}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if tr.Witness == nil || tr.State != DirState(f.state) || len(tr.LogKeys) != 1 {
		t.Fatalf("loaded %+v", tr)
	}
	cfg := tr.ClientConfig(fetch.Dir(f.repo))
	cfg.Now = clock(0)
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Verify(ctx, stableDevice)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.Witness.Proof(v.TargetsVersion, v.Targets); !ok {
		t.Fatal("the witness proved nothing")
	}
	// The witness remembered its checkpoint in the same state.
	if _, err := os.Stat(filepath.Join(f.state, LogStateFile)); err != nil {
		t.Fatal(err)
	}

	// Without RequireLog there is no witness: a ClientConfig without one.
	tr, err = TrustOptions{Root: root, LogKey: logKey}.Load()
	if err != nil || tr.Witness != nil || tr.ClientConfig().Witness != nil || tr.State != nil {
		t.Fatalf("without RequireLog: %+v, %v", tr, err)
	}

	garbage := filepath.Join(t.TempDir(), "garbage.json")
	write(t, garbage, []byte("{"))
	badKey := filepath.Join(t.TempDir(), "bad.pub")
	write(t, badKey, []byte("not a key\n"))
	for name, tc := range map[string]struct {
		o     TrustOptions
		names string
	}{
		"no root":              {TrustOptions{}, "root"},
		"missing root":         {TrustOptions{Root: root + ".missing"}, root + ".missing"},
		"garbage root":         {TrustOptions{Root: garbage}, garbage},
		"log key is no root":   {TrustOptions{Root: logKey}, logKey},
		"require without key":  {TrustOptions{Root: root, RequireLog: true}, "key"},
		"bad log key":          {TrustOptions{Root: root, LogKey: badKey, RequireLog: true}, badKey},
		"missing log key":      {TrustOptions{Root: root, LogKey: logKey + ".missing"}, logKey + ".missing"},
		"state dir and store":  {TrustOptions{Root: root, StateDir: f.state, State: &MemState{}}, "state"},
		"root is a directory":  {TrustOptions{Root: f.dir}, f.dir},
		"log key is the root?": {TrustOptions{Root: root, LogKey: root}, root},
	} {
		if _, err := tc.o.Load(); err == nil || !strings.Contains(err.Error(), tc.names) {
			t.Errorf("%s: %v, want an error naming %q", name, err, tc.names)
		}
	}
}
