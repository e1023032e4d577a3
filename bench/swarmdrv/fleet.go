package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/shoalnet/shoal/node"
	"github.com/shoalnet/shoal/updater"
	"github.com/shoalnet/shoal/updater/boot"
)

type fleetResult struct {
	Downloaders int `json:"downloaders"`
	// Flipped devices reached "tentative": the release verified in the
	// inactive slot (fsynced, re-read and checked) and the boot flipped.
	Flipped int `json:"flipped"`
	// Committed devices then rebooted into the new slot and passed
	// boot-check (the release committed).
	Committed int `json:"committed"`
	// Announce is when the server was asked to announce; FirstFlip and
	// LastFlip are seconds after it.
	Announce      float64          `json:"announce"`
	FirstFlip     float64          `json:"first_flip_seconds"`
	LastFlip      float64          `json:"seconds"`
	BytesBySource map[string]int64 `json:"bytes_by_source"`
	Errors        []string         `json:"errors,omitempty"`
}

// runFleet starts N device nodes in this process, has the server announce
// the release, and waits until every device has flipped, then commits
// each.
func runFleet(args []string) error {
	fs := flag.NewFlagSet("fleet", flag.ExitOnError)
	n := fs.Int("n", 50, "device nodes")
	bootstrap := fs.String("bootstrap", "", "the server's multiaddr (with /p2p/ID)")
	api := fs.String("announce-api", "", "the server's API address")
	repo := fs.String("repo", "", "repository the server announces")
	root := fs.String("root", "", "the fleet's root.json")
	dir := fs.String("dir", "", "working directory (one subdirectory per device)")
	slot := fs.Int64("slot", 0, "slot size in bytes (sparse files)")
	fleet := fs.String("fleet", "bench", "fleet name")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	fs.Parse(args)
	if *bootstrap == "" || *api == "" || *repo == "" || *root == "" || *dir == "" || *slot <= 0 {
		return fmt.Errorf("fleet: -bootstrap, -announce-api, -repo, -root, -dir and -slot are required")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	*dir = abs
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	nodes := make([]*node.Node, *n)
	devCfgs := make([]string, *n)
	for i := range nodes {
		d := filepath.Join(*dir, fmt.Sprintf("dev%03d", i))
		dcfg, err := virtualDevice(filepath.Join(d, "device"), *root, *slot)
		if err != nil {
			return err
		}
		devCfgs[i] = dcfg
		text := fmt.Sprintf(`[node]
fleet = %q
store = %q
listen = ["/ip4/127.0.0.1/tcp/0"]
bootstrap = [%q]
mdns = false
dht = "client"
lan_prefixes = ["127.0.0.0/8"]
[device]
config = %q
`, *fleet, filepath.Join(d, "store"), *bootstrap, dcfg)
		cfg, err := node.ParseConfig([]byte(text), d)
		if err != nil {
			return err
		}
		if nodes[i], err = node.New(ctx, cfg, node.WithLogger(log.With("dev", i))); err != nil {
			return fmt.Errorf("device %d: %w", i, err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, nd := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); nd.Run(runCtx) }()
	}
	closeAll := func() {
		stop()
		wg.Wait()
		for i, nd := range nodes {
			if nd != nil {
				nd.Close()
				nodes[i] = nil
			}
		}
	}
	defer closeAll()

	// Every device connected to the server, then the gossip mesh forms.
	for {
		ready := 0
		for _, nd := range nodes {
			if len(nd.Host().Peers()) > 0 {
				ready++
			}
		}
		if ready == len(nodes) {
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("%d of %d devices connected", ready, len(nodes))
		}
	}
	fmt.Fprintf(os.Stderr, "swarmdrv: %d devices connected; announcing in 2 s\n", len(nodes))
	sleep(ctx, 2*time.Second)

	res := fleetResult{Downloaders: *n, BytesBySource: map[string]int64{}}
	t0 := time.Now()
	res.Announce = unix(t0)
	if err := node.RequestAnnounce(ctx, *api, *repo); err != nil {
		return err
	}
	flipped := make([]time.Duration, len(nodes))
	for {
		left := 0
		for i, nd := range nodes {
			if flipped[i] != 0 {
				continue
			}
			st := nd.Status()
			if st.Updater != nil && st.Updater.State == "tentative" {
				flipped[i] = time.Since(t0)
				for _, tr := range st.Transfers {
					for k, v := range tr.Bytes {
						res.BytesBySource[k] += v
					}
				}
				continue
			}
			left++
		}
		if left == 0 {
			break
		}
		if sleep(ctx, 50*time.Millisecond) != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("%d devices had not flipped when the driver gave up", left))
			break
		}
	}
	for _, d := range flipped {
		if d == 0 {
			continue
		}
		res.Flipped++
		s := d.Seconds()
		if res.FirstFlip == 0 || s < res.FirstFlip {
			res.FirstFlip = s
		}
		res.LastFlip = max(res.LastFlip, s)
	}
	fmt.Fprintf(os.Stderr, "swarmdrv: %d of %d flipped, last after %.2f s; rebooting and committing\n", res.Flipped, *n, res.LastFlip)
	closeAll()

	// Each device reboots into its new slot and commits it.
	for i, p := range devCfgs {
		if flipped[i] == 0 {
			continue
		}
		if err := commit(ctx, p); err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("device %d: %v", i, err))
			continue
		}
		res.Committed++
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func commit(ctx context.Context, cfgPath string) error {
	cfg, err := updater.LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	dev, err := updater.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer dev.Close()
	if _, err := dev.PowerOn(ctx); err != nil {
		return err
	}
	r, err := dev.BootCheck(ctx)
	if err != nil {
		return err
	}
	if !r.Committed {
		return fmt.Errorf("boot-check did not commit: %+v", r)
	}
	return nil
}

// virtualDevice makes a file-backed device (sparse slots, the file boot
// adapter) trusting root and returns its shoal.toml, as `shoal device
// init` does.
func virtualDevice(dir, root string, slot int64) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := os.ReadFile(root)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "root.json"), b, 0o644); err != nil {
		return "", err
	}
	for _, s := range []string{"a.img", "b.img"} {
		f, err := os.Create(filepath.Join(dir, s))
		if err != nil {
			return "", err
		}
		err = f.Truncate(slot)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	bootPath, err := boot.InitVirtual("file", dir, 2)
	if err != nil {
		return "", err
	}
	cfg := updater.Config{State: "state",
		Device: updater.DeviceConfig{ID: filepath.Base(filepath.Dir(dir)), Channel: "stable"},
		Trust:  updater.TrustConfig{Root: "root.json"},
		Slots:  updater.SlotsConfig{A: "a.img", B: "b.img"},
		Boot:   updater.BootConfig{Adapter: "file", Path: bootPath, Tries: 2, Cmdline: "cmdline", Virtual: true}}
	text, err := cfg.Encode()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "shoal.toml")
	return p, os.WriteFile(p, text, 0o644)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
