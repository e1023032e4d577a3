package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoalnet/shoal/fleet"
	"github.com/shoalnet/shoal/fleet/harness"
)

func newFleetCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "fleet",
		Short: "Run a test fleet of real nodes in network namespaces and measure a release",
		Long: `fleet builds a fleet of shoal nodes on this machine — sites of devices behind
thin uplinks, a WAN, an origin — sends a release through it, and reports what
each site's uplink and the origin carried and how close the fleet came to the
fastest possible distribution. See docs/fleet.md.`,
	}
	c.AddCommand(newFleetRunCmd())
	return c
}

func newFleetRunCmd() *cobra.Command {
	var (
		sites, devices                  int
		size, uplink, lan, originRate   string
		cut, powerOff, baseline         string
		changed, kill                   float64
		cacheNode, loopback, keep, json bool
		deltas                          bool
		timeout                         time.Duration
	)
	c := &cobra.Command{
		Use:   "run --sites K --devices M --size SIZE",
		Short: "Build a fleet, send one release through it, measure, remove everything",
		Long: `run builds K sites of M devices. As root, in network namespaces: a bridge per
site, a router per site whose uplink to a WAN namespace is capped in both
directions with tc tbf at --uplink (LAN links at --lan), and an origin
namespace serving the repository with ` + "`shoal serve`" + ` (egress capped at
--origin-rate). With --loopback, the same fleet on 127.0.0.0/8 without
namespaces or caps (no root needed). Every device is a real ` + "`shoal node run`" + `
process with a virtual device (sparse slot files).

It publishes one fresh release (a deterministic random image of --size
bytes), or with --changed F < 1 first installs v1 on every device (not
measured) and then publishes v2, which rewrites a fraction F of v1's bytes
spread over the image; with --deltas, v2 is published with delta objects
against v1 (publish --delta-from 1), which the devices trade through the
swarm instead of whole new chunks, and the result reports delta_bytes (what
one device downloads: delta objects, the chunks kept whole, the delta index)
and each site's uplink over it (uplink_delta_ratio). It announces the release, waits until every device
has flipped to it, reads each site's uplink and the origin's interface byte
counters (L2 frames: headers included), records each device's time from the
announcement, then reboots every device and runs its boot check: committed
counts the devices that ended on the new release with a verified slot.

The lower bound is Kumar and Ross's (2006) extended to sites behind uplinks
(docs/fleet.md). Rates take tc's units: 20mbit, 1gbit, 500kbps (bytes).

Faults, staged while the release travels (times from the announcement):
--cut-uplink AT:FOR drops everything across site 1's uplink from AT for
FOR; --kill F kills (SIGKILL) a fraction F of site 1's device nodes once
they have fetched a third of the release, and starts them again 2 s later;
--power-off AT:FOR (or AT:done) powers the last site's last device off at
AT and on again after FOR (done: once every other device has flipped).
The result says what each did (cut_uplink, kill, power_off).

--baseline http runs no nodes: every device fetches the release from the
origin with ` + "`shoal update apply --source URL`" + `, measured the same way.

Everything the run creates (namespaces, processes, its work directory unless
--keep) is removed when it ends, fails, or is interrupted.`,
		Example: `  sudo shoal fleet run --sites 2 --devices 4 --size 64M --uplink 20mbit
  sudo shoal fleet run --sites 2 --devices 4 --size 64M --uplink 20mbit --changed 0.1 --json
  sudo shoal fleet run --sites 2 --devices 5 --size 64M --uplink 20mbit --changed 0.1 --deltas
  sudo shoal fleet run --sites 4 --devices 10 --size 256M --uplink 50mbit --lan 1gbit --origin-rate 100mbit --cache-node
  sudo shoal fleet run --sites 2 --devices 3 --size 16M --uplink 20mbit --cut-uplink 2s:6s
  sudo shoal fleet run --sites 2 --devices 4 --size 16M --uplink 20mbit --kill 0.5 --power-off 1s:done
  sudo shoal fleet run --sites 2 --devices 4 --size 64M --uplink 20mbit --baseline http
  shoal fleet run --loopback --sites 2 --devices 3 --size 16M`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			sz, err := parseSize(size)
			if err != nil {
				return usageError{fmt.Errorf("--size: %w", err)}
			}
			cfg := fleet.Config{Sites: sites, Devices: devices, Size: sz, Changed: changed, Deltas: deltas, CacheNode: cacheNode, Loopback: loopback,
				Baseline: baseline, Faults: fleet.Faults{Kill: kill}}
			for _, w := range []struct {
				flag, v string
				done    bool
				dst     **fleet.Window
			}{{"--cut-uplink", cut, false, &cfg.Faults.Cut}, {"--power-off", powerOff, true, &cfg.Faults.PowerOff}} {
				if w.v == "" {
					continue
				}
				win, err := fleet.ParseWindow(w.v, w.done)
				if err != nil {
					return usageError{fmt.Errorf("%s: %w", w.flag, err)}
				}
				*w.dst = &win
			}
			for _, r := range []struct {
				flag, v string
				dst     *int64
			}{{"--uplink", uplink, &cfg.Uplink}, {"--lan", lan, &cfg.LAN}, {"--origin-rate", originRate, &cfg.Origin}} {
				if *r.dst, err = fleet.ParseRate(r.v); err != nil {
					return usageError{fmt.Errorf("%s: %w", r.flag, err)}
				}
			}
			if !loopback {
				if os.Geteuid() != 0 {
					return usageError{errors.New("fleet run builds network namespaces and needs root; run it as root, or add --loopback for the same fleet on 127.0.0.0/8 without caps")}
				}
				for _, tool := range []string{"ip", "tc", "sysctl"} {
					if _, err := exec.LookPath(tool); err != nil {
						return fmt.Errorf("%s not found in PATH: apt-get install iproute2 procps", tool)
					}
				}
			}
			var b [4]byte
			rand.Read(b[:])
			cfg.Prefix = "shf" + hex.EncodeToString(b[:])[:7]
			n, _ := rand.Int(rand.Reader, big.NewInt(250))
			cfg.Net = int(n.Int64()) + 1
			topo, err := fleet.Plan(cfg)
			if err != nil {
				return usageError{err}
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			res, err := harness.Run(cmd.Context(), topo, harness.Options{
				Shoal: []string{self}, Keep: keep, Timeout: timeout, Progress: cmd.ErrOrStderr(),
			})
			if res != nil {
				if json {
					if werr := writeJSON(cmd.OutOrStdout(), res); werr != nil {
						return errors.Join(err, werr)
					}
				} else {
					res.WriteText(cmd.OutOrStdout())
				}
			}
			return err
		},
	}
	f := c.Flags()
	f.IntVar(&sites, "sites", 2, "sites (K), each a LAN behind one uplink")
	f.IntVar(&devices, "devices", 3, "devices per site (M)")
	f.StringVar(&size, "size", "16M", "release image size (65536, 64M, 1G)")
	f.Float64Var(&changed, "changed", 1, "fraction of v1's bytes v2 rewrites; 1: one fresh release on empty devices")
	f.BoolVar(&deltas, "deltas", false, "publish v2 with deltas against v1 (needs --changed F < 1)")
	f.StringVar(&uplink, "uplink", "", "each site's uplink rate, both directions (tc units: 20mbit); default uncapped")
	f.StringVar(&lan, "lan", "", "each node's LAN link rate; default uncapped")
	f.StringVar(&originRate, "origin-rate", "", "the origin's egress rate; default uncapped")
	f.BoolVar(&cacheNode, "cache-node", false, "give each site one slotless cache node")
	f.BoolVar(&loopback, "loopback", false, "run on 127.0.0.0/8 without namespaces or caps (no root needed)")
	f.StringVar(&cut, "cut-uplink", "", "AT:FOR: cut site 1's uplink AT after the announcement, for FOR (3s:5s)")
	f.Float64Var(&kill, "kill", 0, "kill -9 this fraction of site 1's device nodes mid-transfer and restart them")
	f.StringVar(&powerOff, "power-off", "", "AT:FOR or AT:done: power the last device off at AT, on after FOR (done: once every other device flipped)")
	f.StringVar(&baseline, "baseline", "", "http: no swarm, every device fetches the release from the origin (update apply --source)")
	f.BoolVar(&keep, "keep", false, "keep the work directory (logs, configs, stores, repository)")
	f.BoolVar(&json, "json", false, "print one JSON object on stdout")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long (setup included); everything is removed")
	return c
}
