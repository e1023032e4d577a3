package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/internal/testtool"
)

// TestDeviceEveryBootAdapter runs a virtual device with each boot adapter
// through install, reboot, boot-check and commit, then a failed update
// and its rollback; for grub and uboot the real tools read the result.
func TestDeviceEveryBootAdapter(t *testing.T) {
	dir := t.TempDir()
	must := mustCLI(t)
	img2, keys, repo := publishV1(t, dir)

	flag := filepath.Join(dir, "healthy")
	os.WriteFile(flag, nil, 0o644)
	for _, adapter := range []string{"file", "grub", "uboot", "bls"} {
		t.Run(adapter, func(t *testing.T) {
			dev := filepath.Join(dir, "dev-"+adapter)
			cfg := filepath.Join(dev, "shoal.toml")
			must("device", "init", dev, "--slot-size", "3M", "--root", filepath.Join(keys, "root.json"),
				"--channel", "stable", "--boot", adapter, "--health-cmd", "test -e "+flag, "--health-deadline", "200ms")
			must("device", "reboot", "--config", cfg)
			must("update", "boot-check", "--config", cfg)
			must("update", "apply", "--config", cfg, "--source", repo)
			if out := must("device", "reboot", "--config", cfg, "--json"); !strings.Contains(out, `"B"`) {
				t.Fatalf("reboot after apply: %s", out)
			}
			var bc struct {
				Committed bool `json:"committed"`
			}
			json.Unmarshal([]byte(must("update", "boot-check", "--config", cfg, "--json")), &bc)
			if !bc.Committed {
				t.Fatal("v1 not committed")
			}
			// The real bootloader tools read what the adapter wrote. Each
			// check is its own subtest, so that without the tool only the
			// check skips and the device carries on (the rollback below
			// uses every device).
			switch adapter {
			case "grub":
				t.Run("grub-editenv", func(t *testing.T) {
					editenv := testtool.Need(t, "grub-editenv")
					if out, err := exec.Command(editenv, filepath.Join(dev, "grubenv"), "list").CombinedOutput(); err != nil || !strings.Contains(string(out), "=B") {
						t.Fatalf("grub-editenv: %v %s", err, out)
					}
				})
			case "uboot":
				t.Run("fw_printenv", func(t *testing.T) {
					printenv := testtool.Need(t, "fw_printenv")
					if out, err := exec.Command(printenv, "-c", filepath.Join(dev, "fw_env.config"), "shoal_slot").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "shoal_slot=B" {
						t.Fatalf("fw_printenv: %v %s", err, out)
					}
				})
			}
			var st struct {
				State         string `json:"state"`
				ActiveSlot    string `json:"active_slot"`
				ActiveVersion uint64 `json:"active_version"`
				LastError     string `json:"last_error"`
			}
			raw := must("update", "status", "--config", cfg, "--json")
			var keys map[string]any
			if err := json.Unmarshal([]byte(raw), &keys); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"state", "active_slot", "active_version", "tentative", "staged_version", "last_error"} {
				if _, ok := keys[k]; !ok {
					t.Errorf("update status --json lacks %q: %s", k, raw)
				}
			}
			json.Unmarshal([]byte(raw), &st)
			if st.State != "committed" || st.ActiveSlot != "B" || st.ActiveVersion != 1 {
				t.Fatalf("status: %+v", st)
			}
		})
	}

	// v2 fails its health check on every device: each rolls back to B.
	must("publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "2", "rootfs="+img2)
	os.Remove(flag)
	for _, adapter := range []string{"file", "grub", "uboot", "bls"} {
		cfg := filepath.Join(dir, "dev-"+adapter, "shoal.toml")
		must("update", "apply", "--config", cfg, "--source", repo)
		must("device", "reboot", "--config", cfg)
		out := must("update", "boot-check", "--config", cfg, "--json")
		if !strings.Contains(out, `"rolled_back": true`) {
			t.Fatalf("%s: boot-check of a failing v2: %s", adapter, out)
		}
		if out := must("device", "reboot", "--config", cfg); !strings.Contains(out, "slot B") {
			t.Fatalf("%s: after rollback boots %s", adapter, out)
		}
		if out := must("update", "log", "verify", "--config", cfg); !strings.Contains(out, "rolled-back") {
			t.Fatalf("%s: audit log lacks the rollback: %s", adapter, out)
		}
	}
}

// A typo in device init leaves nothing behind, so the corrected command
// succeeds.
func TestDeviceInitValidatesFirst(t *testing.T) {
	dir := t.TempDir()
	if _, errs, code := runCLI(t, "keys", "init", filepath.Join(dir, "keys")); code != 0 {
		t.Fatal(errs)
	}
	dev := filepath.Join(dir, "dev")
	base := []string{"device", "init", dev, "--slot-size", "1M", "--root", filepath.Join(dir, "keys", "root.json"), "--channel", "stable"}
	for _, bad := range [][]string{{"--boot", "grubb"}, {"--label", "region"}, {"--health-cmd", "true", "--health-deadline", "soon"}, {"--tries", "10"}} {
		if _, errs, code := runCLI(t, append(append([]string{}, base...), bad...)...); code != exitUsage {
			t.Fatalf("%v: exit %d (%s), want usage", bad, code, errs)
		}
		if _, err := os.Stat(dev); !os.IsNotExist(err) {
			t.Fatalf("%v: left %s behind", bad, dev)
		}
	}
	if _, errs, code := runCLI(t, base...); code != 0 {
		t.Fatal(errs)
	}
}
