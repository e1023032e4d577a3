package updater_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/tlog"
	"github.com/shoalnet/shoal/updater"
	"github.com/shoalnet/shoal/updater/audit"
	"github.com/shoalnet/shoal/updater/fsys"
)

// A device with require_log installs a logged release and refuses one the
// publisher left out of the log, before touching a slot.
func TestApplyRequireLog(t *testing.T) {
	w := newWorld(t)
	cfg := w.device(1<<20, "true")
	pub, err := os.ReadFile(filepath.Join(w.dir, "keys", manifest.LogPubFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "dev", "log.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Trust.LogKey, cfg.Trust.RequireLog = "log.pub", true
	logged := func(o *manifest.PublishOptions) { o.Log = w.keys.TargetsLog() }

	reboot(t, cfg)
	v1 := w.publish("stable", 1, logged)
	res, err := w.apply(open(t, cfg))
	if err != nil {
		t.Fatalf("apply a logged release: %v", err)
	}
	if res.Slot != "B" || !slotHolds(t, cfg, "B", v1) {
		t.Fatalf("apply v1: %+v", res)
	}
	if r := reboot(t, cfg); !r.Committed {
		t.Fatalf("boot-check v1: %+v", r)
	}
	remembered := filepath.Join(cfg.Path(cfg.State), "trust", manifest.LogStateFile)
	if _, err := os.Stat(remembered); err != nil {
		t.Fatalf("log checkpoint not remembered: %v", err)
	}

	// Release 2 is signed properly but never logged.
	slotA, _ := os.ReadFile(cfg.SlotPath("A"))
	w.publish("stable", 2, nil)
	_, err = w.apply(open(t, cfg))
	if !errors.Is(err, tlog.ErrNotFound) {
		t.Fatalf("apply an unlogged release: %v, want tlog.ErrNotFound", err)
	}
	if now, _ := os.ReadFile(cfg.SlotPath("A")); !bytes.Equal(now, slotA) {
		t.Fatal("the unlogged release was written into slot A")
	}
	st, err := open(t, cfg).Status(context.Background())
	if err != nil || st.ActiveVersion != 1 || st.StagedVersion != 0 {
		t.Fatalf("status after the refusal: %+v %v", st, err)
	}
	// The refusal is in the audit log, with its reason.
	es, err := audit.Entries(fsys.OS{}, filepath.Join(cfg.Path(cfg.State), "audit"))
	if err != nil {
		t.Fatal(err)
	}
	last := es[len(es)-1]
	if last.Verdict != "rejected" || !strings.Contains(last.Reason, "record not in log") {
		t.Fatalf("last audit entry %+v", last)
	}

	// Without require_log the same device takes it (the log is opt-in).
	cfg.Trust.RequireLog = false
	if _, err := w.apply(open(t, cfg)); err != nil {
		t.Fatalf("apply without require_log: %v", err)
	}
}

func TestConfigRequireLog(t *testing.T) {
	base := `state = "s"
[device]
channel = "stable"
[slots]
a = "a"
b = "b"
[boot]
adapter = "file"
path = "boot.json"
`
	if _, err := updater.ParseConfig([]byte(base+"[trust]\nroot = \"root.json\"\nrequire_log = true\n"), t.TempDir()); !errors.Is(err, updater.ErrConfig) || !strings.Contains(err.Error(), "log_key") {
		t.Fatalf("require_log without log_key: %v", err)
	}
	c, err := updater.ParseConfig([]byte(base+"[trust]\nroot = \"root.json\"\nlog_key = \"log.pub\"\nrequire_log = true\n"), t.TempDir())
	if err != nil || !c.Trust.RequireLog || c.Trust.LogKey != "log.pub" {
		t.Fatalf("%+v %v", c, err)
	}
	enc, err := c.Encode()
	if err != nil || !strings.Contains(string(enc), "require_log = true") || !strings.Contains(string(enc), `log_key = "log.pub"`) {
		t.Fatalf("encoded config:\n%s %v", enc, err)
	}
}
