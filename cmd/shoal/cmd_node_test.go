package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoalnet/shoal/node"
)

// waitAPI returns the API address a node started with api port 0 recorded
// in its store. (Picking a free port in the test instead races with the
// nodes' own libp2p listeners, which also take free ports.)
func waitAPI(t *testing.T, ctx context.Context, cfgPath string) string {
	t.Helper()
	cfg, err := node.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for {
		addr, err := cfg.APIAddr()
		if err == nil {
			return addr
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the node of %s never recorded its API address: %v", cfgPath, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startNode runs `shoal node run` as a process of its own.
func startNode(t *testing.T, cfg string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "node", "run", "--config", cfg, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "SHOAL_TEST_RUN_MAIN=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, &errb
}

func waitStatus(t *testing.T, ctx context.Context, api, what string, ok func(*node.Status) bool) *node.Status {
	t.Helper()
	for {
		s, err := node.ReadStatus(ctx, api)
		if err == nil && ok(s) {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s (last: %+v, %v)", what, s, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestNodeCLI: two `shoal node run` processes — a cache node and a device
// node that bootstraps from it, both with the origin — one `shoal node
// announce`: the device installs the release, shuts down cleanly on
// SIGTERM, and commits after its reboot.
func TestNodeCLI(t *testing.T) { nodeCLI(t, false) }

// TestNodeManualApply: with apply = "manual" the device node fetches the
// release and waits; `shoal update apply` without --source asks it to
// install.
func TestNodeManualApply(t *testing.T) { nodeCLI(t, true) }

func nodeCLI(t *testing.T, manual bool) {
	if testing.Short() {
		t.Skip("starts daemons")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		out, errs, code := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: %s", args, errs)
		}
		return out
	}
	keys, repo := filepath.Join(dir, "keys"), filepath.Join(dir, "repo")
	run("keys", "init", keys)
	img := filepath.Join(dir, "v1.img")
	data := writeImage(t, img, 2<<20, 7)
	run("publish", "--repo", repo, "--keys", keys, "--channel", "stable", "--version", "1", "rootfs="+img)
	dev := filepath.Join(dir, "dev")
	run("device", "init", dev, "--slot-size", "4M", "--root", filepath.Join(keys, "root.json"), "--channel", "stable")

	cacheCfg := filepath.Join(dir, "cache.toml")
	os.WriteFile(cacheCfg, []byte(fmt.Sprintf(`[node]
fleet = "cli-test"
store = "cache-store"
listen = ["/ip4/127.0.0.1/tcp/0"]
mdns = false
lan_prefixes = ["127.0.0.0/8"]
api = "127.0.0.1:0"
origin = [%q]
channels = ["stable"]
[trust]
root = %q
`, repo, filepath.Join(keys, "root.json"))), 0o644)
	cache, cacheLog := startNode(t, cacheCfg)
	cacheAPI := waitAPI(t, ctx, cacheCfg)
	st := waitStatus(t, ctx, cacheAPI, "the cache node's API", func(s *node.Status) bool { return len(s.Addrs) > 0 })
	devCfg := filepath.Join(dir, "dev.toml")
	os.WriteFile(devCfg, []byte(fmt.Sprintf(`[node]
fleet = "cli-test"
store = "dev-store"
listen = ["/ip4/127.0.0.1/tcp/0"]
bootstrap = [%q]
mdns = false
lan_prefixes = ["127.0.0.0/8"]
api = "127.0.0.1:0"
origin = [%q]
apply = %q
[device]
config = %q
`, st.Addrs[0], repo, map[bool]string{false: "auto", true: "manual"}[manual], filepath.Join(dev, "shoal.toml"))), 0o644)
	device, devLog := startNode(t, devCfg)
	devAPI := waitAPI(t, ctx, devCfg)
	waitStatus(t, ctx, devAPI, "the device node to see the cache node", func(s *node.Status) bool { return len(s.Peers) == 1 && s.Peers[0].Class == "lan" })
	time.Sleep(1500 * time.Millisecond) // the gossip mesh forms at the first heartbeat
	run("node", "announce", "--api", cacheAPI, "--repo", repo)
	if manual {
		waitStatus(t, ctx, devAPI, "the device node to fetch v1", func(s *node.Status) bool { return s.Pending == "stable/1" })
		if s, _ := node.ReadStatus(ctx, devAPI); s.Updater.State != "idle" {
			t.Fatalf("a manual node installed by itself: %+v", s.Updater)
		}
		if out := run("update", "apply", "--config", filepath.Join(dev, "shoal.toml")); !strings.Contains(out, "the node installed stable v1 into slot B") {
			t.Fatalf("update apply through the node: %s", out)
		}
		if _, errs, code := runCLI(t, "update", "apply", "--config", filepath.Join(dev, "shoal.toml")); code == 0 || !strings.Contains(errs, "no fetched release") {
			t.Fatalf("a second apply through the node: %d %s", code, errs)
		}
	}
	s := waitStatus(t, ctx, devAPI, "the device to install v1", func(s *node.Status) bool {
		return s.Updater != nil && s.Updater.State == "tentative"
	})
	if len(s.Releases) != 1 || !strings.HasPrefix(s.Releases[0].Name, "stable/1/") {
		t.Fatalf("device status: %+v", s)
	}
	out := run("node", "status", "--api", devAPI)
	if !strings.Contains(out, "updater  tentative") || !strings.Contains(out, "1 LAN") {
		t.Fatalf("node status:\n%s", out)
	}
	for _, p := range []*exec.Cmd{device, cache} {
		p.Process.Signal(syscall.SIGTERM)
	}
	if err := device.Wait(); err != nil {
		t.Fatalf("device node after SIGTERM: %v\n%s", err, devLog)
	}
	if err := cache.Wait(); err != nil {
		t.Fatalf("cache node after SIGTERM: %v\n%s", err, cacheLog)
	}
	cfg := filepath.Join(dev, "shoal.toml")
	run("device", "reboot", "--config", cfg)
	if out := run("update", "boot-check", "--config", cfg); !strings.Contains(out, "committed") {
		t.Fatalf("boot-check: %s", out)
	}
	slot, _ := os.ReadFile(filepath.Join(dev, "slot-b.img"))
	if !bytes.Equal(slot[:len(data)], data) {
		t.Fatal("slot B does not hold the release")
	}
}
