// Package harness runs a fleet that package fleet planned: real `shoal
// node run` processes, one per device, in network namespaces behind tbf
// capped uplinks (or on loopback), a real `shoal serve` origin, a release
// announced once; it measures what the release cost the uplinks and the
// origin and how long it took, and removes everything it created
// (docs/fleet.md).
package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fleet"
)

// Options are how Run runs the fleet.
type Options struct {
	// Shoal is the shoal binary's argv prefix, run for every node, the
	// origin and every setup step.
	Shoal []string
	// Env is every process's environment (nil: this process's).
	Env []string
	// Dir is where the work directory is made (""; the system's temporary
	// directory). Keep leaves it in place; otherwise Run removes it.
	Dir  string
	Keep bool
	// Timeout bounds the whole run, setup included (0: 30 minutes).
	Timeout time.Duration
	// Progress, if set, hears one line at each step and every few seconds
	// while the release travels.
	Progress io.Writer
	// Seed makes the images (0: 7).
	Seed uint64
	// AfterStart, if set, is called once every node runs (tests use it to
	// interrupt a run there).
	AfterStart func()
}

const channel = "stable"

type run struct {
	t   *fleet.Topology
	o   Options
	dir string

	mu       sync.Mutex
	procs    []*proc
	stopping bool

	origin  *proc
	nodes   []*nodeRun
	repoURL string
	version uint64
	index   string // the new release's index CID
	// newChunks is the release's chunks the devices lack (NewBytes').
	newChunks int
	faults    *faultRun
	fetched   []int64 // the baseline's bytes fetched, per device
	sampler   *sampler
	startedAt [][]float64 // per site, when each device's transfer showed
	fetchedAt [][]float64 // per site, when it held every position
	// heldAt are the polls about a second apart at which held was read:
	// each device's positions held (-1: unknown, the node down or slow).
	heldAt []float64
	held   [][]int
	next   *chunker.Index
}

// nodeRun is one node of the running fleet.
type nodeRun struct {
	fleet.Node
	dir    string // its directory: node.toml, store/, device/
	proc   *proc
	api    *client
	peerID string
	addr   string // its multiaddr with /p2p/, to bootstrap from
	config string // its node.toml
	// down is set while its node is killed or powered off; carried holds
	// the chunk bytes by source its killed processes had verified.
	down    bool
	carried map[string]int64
}

func (n *nodeRun) deviceConfig() string { return filepath.Join(n.dir, "device", "shoal.toml") }

// Run builds the fleet t describes, sends one release through it and
// measures it. It always removes what it created (unless o.Keep: then the
// work directory stays) before it returns, also when ctx ends; the result
// it returns with an error holds what was measured until then.
func Run(ctx context.Context, t *fleet.Topology, o Options) (res *fleet.Result, err error) {
	if len(o.Shoal) == 0 {
		return nil, errors.New("harness: no shoal binary")
	}
	if o.Env == nil {
		o.Env = os.Environ()
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Minute
	}
	if o.Seed == 0 {
		o.Seed = 7
	}
	r := &run{t: t, o: o}
	r.dir, err = os.MkdirTemp(o.Dir, "shoal-fleet-"+t.Prefix+"-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if terr := r.teardown(); terr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
		}
		if res != nil && o.Keep {
			res.WorkDir = r.dir
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	return r.run(ctx)
}

func (r *run) progress(format string, args ...any) {
	if r.o.Progress != nil {
		fmt.Fprintf(r.o.Progress, "fleet: "+format+"\n", args...)
	}
}

// teardown stops every process, removes the namespaces and, unless Keep,
// the work directory. It runs whatever happened before, with a context of
// its own.
func (r *run) teardown() error {
	r.mu.Lock()
	r.stopping = true
	ps := r.procs
	r.mu.Unlock()
	for _, n := range r.nodes {
		if n.api != nil {
			n.api.close()
		}
	}
	errs := []error{stopAll(ps, 15*time.Second)}
	if !r.t.Loopback {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		errs = append(errs, removeNamespaces(ctx, r.t.Prefix))
		cancel()
	}
	if !r.o.Keep {
		errs = append(errs, os.RemoveAll(r.dir))
	}
	return joinErrs(errs)
}

func (r *run) run(ctx context.Context) (*fleet.Result, error) {
	t := r.t
	setupStart := time.Now()
	res := &fleet.Result{Run: t.Prefix, Devices: t.DeviceCount(), Backend: "netns", Counters: "interface", Sites: t.Config.Sites,
		DevicesPerSite: t.Devices, CacheNode: t.CacheNode, Size: t.Size, Changed: t.Changed,
		UplinkRate: t.Uplink, LANRate: t.LAN, OriginRate: t.Origin, BytesBySource: map[string]int64{}}
	if t.Fresh() {
		res.Changed = 1
	}
	if t.Loopback {
		res.Backend, res.Counters = "loopback", "node"
	}
	res.Mode = "swarm"
	if t.Baseline != "" {
		res.Mode = t.Baseline
	}

	// The release: images, keys, v1, and v2 when the run changes v1.
	r.progress("preparing the release in %s", r.dir)
	repo, keys := filepath.Join(r.dir, "repo"), filepath.Join(r.dir, "keys")
	v1, err := r.image("v1.img", 0)
	if err != nil {
		return nil, err
	}
	if _, err := r.shoal(ctx, "keys", "init", keys); err != nil {
		return nil, err
	}
	if _, err := r.shoal(ctx, "publish", "--repo", repo, "--keys", keys, "--channel", channel, "--version", "1", "rootfs="+v1.path); err != nil {
		return nil, err
	}
	r.version = 1
	if err := r.makeNodes(ctx, filepath.Join(keys, "root.json")); err != nil {
		return nil, err
	}
	next, held := v1, (*chunker.Index)(nil)
	if !t.Fresh() {
		r.progress("installing v1 on every device (not measured)")
		if err := r.installV1(ctx, repo, filepath.Join(keys, "root.json")); err != nil {
			return nil, err
		}
		if next, err = r.image("v2.img", t.Changed); err != nil {
			return nil, err
		}
		args := []string{"publish", "--repo", repo, "--keys", keys, "--channel", channel, "--version", "2", "--json"}
		if t.Deltas {
			args = append(args, "--delta-from", "1", "--delta-base-image", "1="+v1.path)
		}
		out, err := r.shoal(ctx, append(args, "rootfs="+next.path)...)
		if err != nil {
			return nil, err
		}
		if t.Deltas {
			if err := readDeltas(out, res); err != nil {
				return nil, err
			}
		}
		r.version, held = 2, v1.index
	}
	res.NewBytes, res.NewChunks = fleet.NewBytes(held, next.index)
	r.newChunks, r.next = res.NewChunks, next.index
	r.index = next.index.CID().String()
	need := res.NewBytes
	if res.Deltas {
		need = res.DeltaBytes
	}
	res.LowerBoundSeconds, res.BoundTerm = fleet.Bound(t.Capacities(), need)

	// The network, the origin and the nodes.
	if !t.Loopback {
		r.progress("building %d network namespaces", len(t.Namespaces()))
		for _, c := range t.SetupCommands() {
			if err := ipCommand(ctx, c); err != nil {
				return nil, err
			}
		}
	}
	if err := r.startOrigin(ctx, repo); err != nil {
		return nil, err
	}
	if t.Baseline == "" {
		if err := r.startNodes(ctx); err != nil {
			return nil, err
		}
	}
	if r.o.AfterStart != nil {
		r.o.AfterStart()
	}
	if t.Baseline == "" {
		res.LANPeers = r.waitMeshed(ctx)
	}

	// The measured part: announce, wait for every device's flip.
	before, err := r.readCounters(ctx)
	if err != nil {
		return nil, err
	}
	res.SetupSec = time.Since(setupStart).Seconds()
	var (
		flips   [][]float64
		last    float64
		waitErr error
	)
	if t.Baseline != "" {
		r.progress("every device fetches v%d (%s new) from the origin over HTTP; lower bound %.1f s", r.version, fleet.MiB(res.NewBytes), res.LowerBoundSeconds)
		flips, last, waitErr = r.applyAll(ctx)
	} else {
		r.progress("announcing v%d (%s new per site); lower bound %.1f s", r.version, fleet.MiB(res.NewBytes), res.LowerBoundSeconds)
		r.faults = newFaultRun(r, res)
		flips, last, waitErr = r.waitFlips(ctx)
	}
	res.DeviceSeconds = flips
	res.CompletionSeconds = last
	if errors.Is(ctx.Err(), context.Canceled) {
		return res, waitErr // interrupted: straight to the teardown
	}
	after, err := r.readCounters(context.WithoutCancel(ctx))
	if err != nil {
		return res, errors.Join(waitErr, err)
	}
	r.account(res, before, after)
	res.UplinkPerSecond, res.UplinkSampleSeconds = r.sampler.finish()

	// Every device reboots into the new slot and must commit.
	stopErr := r.stopNodes()
	res.Committed, res.Final, err = r.commitAll(context.WithoutCancel(ctx))
	res.Finish()
	if err := errors.Join(waitErr, stopErr, err); err != nil {
		res.Errors = append(res.Errors, err.Error())
		return res, err
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}

// readDeltas takes what publish --json says of v2's deltas against v1.
func readDeltas(out []byte, res *fleet.Result) error {
	var pub struct {
		Deltas []struct {
			BaseVersion uint64 `json:"base_version"`
			Target      string `json:"target"`
			IndexBytes  int64  `json:"delta_index_bytes"`
			DeltaBytes  int64  `json:"delta_bytes"`
			Deltas      int    `json:"deltas"`
		} `json:"deltas"`
	}
	if err := json.Unmarshal(out, &pub); err != nil {
		return fmt.Errorf("publish --json: %w", err)
	}
	for _, d := range pub.Deltas {
		if d.BaseVersion == 1 && d.Target != "" {
			res.Deltas, res.DeltaBytes, res.DeltaObjects = true, d.DeltaBytes+d.IndexBytes, d.Deltas
			return nil
		}
	}
	return fmt.Errorf("publish kept no delta of v2 against v1: %s", out)
}

type image struct {
	path  string
	index *chunker.Index
}

// image writes an image of the run (changed 0: the base) and chunks it
// with publish's defaults.
func (r *run) image(name string, changed float64) (*image, error) {
	p := filepath.Join(r.dir, name)
	f, err := os.Create(p)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := fleet.Image(w, r.t.Size, r.o.Seed, changed); err != nil {
		f.Close()
		return nil, err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	ix, err := chunker.Split(context.Background(), bufio.NewReaderSize(f, 1<<20), chunker.Options{})
	f.Close()
	if err != nil {
		return nil, err
	}
	return &image{path: p, index: ix}, nil
}

// makeNodes makes each node's directory: a virtual device for a device
// node (slots a MiB larger than the image, sparse).
func (r *run) makeNodes(ctx context.Context, root string) error {
	slot := (r.t.Size+(1<<20)-1)&^(1<<20-1) + 1<<20
	for _, n := range r.t.Nodes() {
		r.nodes = append(r.nodes, &nodeRun{Node: n, dir: filepath.Join(r.dir, "nodes", n.Name)})
	}
	return parallel(len(r.nodes), 4, func(i int) error {
		n := r.nodes[i]
		n.api = newClient(n.Namespace, filepath.Join(n.dir, "store"))
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return err
		}
		if n.Cache {
			return nil
		}
		_, err := r.shoal(ctx, "device", "init", filepath.Join(n.dir, "device"), "--slot-size", fmt.Sprint(slot),
			"--root", root, "--channel", channel)
		return err
	})
}

// installV1 installs v1 on every device from the repository directory,
// reboots it and commits: the fleet's starting point, not measured.
func (r *run) installV1(ctx context.Context, repo, root string) error {
	// A site's cache node kept v1 too, as it would have when v1 went out:
	// a bundle of v1 imported into its store.
	var caches []*nodeRun
	for _, n := range r.nodes {
		if n.Cache {
			caches = append(caches, n)
		}
	}
	if len(caches) > 0 {
		b := filepath.Join(r.dir, "v1-bundle.tar")
		if _, err := r.shoal(ctx, "bundle", "create", "--repo", repo, "--channel", channel, "-o", b); err != nil {
			return err
		}
		for _, n := range caches {
			if _, err := r.shoal(ctx, "bundle", "import", b, "--store", filepath.Join(n.dir, "store", "chunks"), "--root", root); err != nil {
				return fmt.Errorf("%s: v1: %w", n.Name, err)
			}
		}
	}
	devs := r.devices()
	return parallel(len(devs), 2, func(i int) error {
		cfg := devs[i].deviceConfig()
		for _, args := range [][]string{
			{"update", "apply", "--config", cfg, "--source", repo},
			{"device", "reboot", "--config", cfg},
			{"update", "boot-check", "--config", cfg},
		} {
			if _, err := r.shoal(ctx, args...); err != nil {
				return fmt.Errorf("%s: v1: %w", devs[i].Name, err)
			}
		}
		return nil
	})
}

func (r *run) devices() []*nodeRun {
	var d []*nodeRun
	for _, n := range r.nodes {
		if !n.Cache {
			d = append(d, n)
		}
	}
	return d
}

// startOrigin runs `shoal serve` in the origin's namespace and learns its
// URL from its first line.
func (r *run) startOrigin(ctx context.Context, repo string) error {
	pr, pw := io.Pipe()
	p, err := r.spawn("origin", r.t.OriginNS, pw, "serve", "--repo", repo, "--listen", fmt.Sprintf("%s:%d", r.t.OriginIP, r.t.OriginPort))
	if err != nil {
		return err
	}
	r.origin = p
	go func() { <-p.done; pw.Close() }()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, pr)
	}()
	select {
	case l, ok := <-line:
		i := strings.Index(l, "http://")
		if !ok || i < 0 {
			return fmt.Errorf("origin: %q: %s", l, p.tail())
		}
		r.repoURL = l[i:]
	case <-time.After(30 * time.Second):
		return errors.New("origin: shoal serve said nothing in 30 s")
	case <-ctx.Done():
		return ctx.Err()
	}
	r.progress("origin serving at %s", r.repoURL)
	return nil
}

// nodeConfig writes a node's node.toml.
func (r *run) nodeConfig(n *nodeRun, bootstrap []string, root string) (string, error) {
	listen := fmt.Sprintf("/ip4/%s/tcp/4101", n.IP)
	mdns := "true"
	if r.t.Loopback {
		listen = fmt.Sprintf("/ip4/%s/tcp/0", n.IP)
		mdns = "false" // no multicast on lo: lan_prefixes say who is LAN
	}
	dht := "client"
	if n.Seed || n.Cache {
		dht = "server"
	}
	q := func(ss []string) string {
		if len(ss) == 0 {
			return "[]"
		}
		b, _ := json.Marshal(ss) // a TOML array of basic strings
		return string(b)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[node]\nfleet = %q\nstore = %q\nlisten = %s\nbootstrap = %s\nmdns = %s\ndht = %q\n",
		r.t.Fleet, filepath.Join(n.dir, "store"), q([]string{listen}), q(bootstrap), mdns, dht)
	fmt.Fprintf(&b, "lan_prefixes = %s\napi = \"127.0.0.1:0\"\norigin = %s\n", q([]string{n.siteSubnet(r.t)}), q([]string{r.repoURL}))
	if n.Cache {
		fmt.Fprintf(&b, "channels = [%q]\n[trust]\nroot = %q\n", channel, root)
	} else {
		fmt.Fprintf(&b, "[device]\nconfig = %q\n", n.deviceConfig())
	}
	p := filepath.Join(n.dir, "node.toml")
	return p, os.WriteFile(p, []byte(b.String()), 0o644)
}

func (n *nodeRun) siteSubnet(t *fleet.Topology) string { return t.Sites[n.Site-1].Prefix }

// startNodes starts site 1's seed, then the other sites' seeds
// bootstrapping from it, then everyone else bootstrapping from their
// site's seed, and waits until each node's API answers.
func (r *run) startNodes(ctx context.Context) error {
	root := filepath.Join(r.dir, "keys", "root.json")
	seeds := map[int]*nodeRun{}
	var first, rest []*nodeRun
	for _, n := range r.nodes {
		switch {
		case n.Seed && n.Site == 1:
			first = append(first, n)
		case n.Seed:
			rest = append(rest, n)
		}
	}
	var others []*nodeRun
	for _, n := range r.nodes {
		if !n.Seed {
			others = append(others, n)
		}
	}
	groups := [][]*nodeRun{first, rest, others}
	if r.t.Loopback {
		// No mDNS on lo: each node bootstraps from every node of its site
		// started before it, so the site's LAN is a full mesh.
		groups = [][]*nodeRun{first, rest}
		for _, n := range others {
			groups = append(groups, []*nodeRun{n})
		}
	}
	up := map[int][]string{} // addresses of each site's nodes already up
	for _, group := range groups {
		for _, n := range group {
			var boot []string
			switch {
			case n.Seed && n.Site != 1:
				boot = []string{seeds[1].addr}
			case !n.Seed && r.t.Loopback:
				boot = up[n.Site]
			case !n.Seed:
				boot = []string{seeds[n.Site].addr}
			}
			var err error
			if n.config, err = r.nodeConfig(n, boot, root); err != nil {
				return err
			}
			if err := r.startNode(n); err != nil {
				return err
			}
		}
		for _, n := range group {
			if err := r.waitUp(ctx, n); err != nil {
				return err
			}
			if n.Seed {
				seeds[n.Site] = n
			}
			up[n.Site] = append(up[n.Site], n.addr)
		}
	}
	r.progress("%d nodes running", len(r.nodes))
	return nil
}

// startNode starts n's node process on its config; a restarted node
// appends to its log.
func (r *run) startNode(n *nodeRun) error {
	p, err := r.spawn(n.Name, n.Namespace, nil, "node", "run", "--config", n.config, "--log-level", "warn")
	if err != nil {
		return err
	}
	n.proc = p
	return nil
}

// waitUp waits until n's API answers with its listen address.
func (r *run) waitUp(ctx context.Context, n *nodeRun) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		if n.proc.exited() {
			return fmt.Errorf("%s exited: %v: %s", n.Name, n.proc.err, n.proc.tail())
		}
		s, err := n.api.status(ctx)
		if err == nil {
			for _, a := range s.Addrs {
				if strings.HasPrefix(a, "/ip4/"+n.IP+"/tcp/") {
					n.peerID, n.addr = s.PeerID, a
					if !strings.Contains(a, "/p2p/") {
						n.addr += "/p2p/" + s.PeerID
					}
					return nil
				}
			}
			err = fmt.Errorf("no /ip4/%s/tcp address in %v", n.IP, s.Addrs)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not come up: %v", n.Name, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitMeshed waits (at most 30 s) until every node has each other node of
// its site as a LAN peer, then 2 s more for the gossip mesh to form at its
// heartbeat; it returns each device's LAN peers.
func (r *run) waitMeshed(ctx context.Context) []int {
	deadline := time.Now().Add(30 * time.Second)
	lan := make([]int, len(r.nodes))
	for {
		ok := true
		for i, n := range r.nodes {
			want := len(r.t.Sites[n.Site-1].Nodes) - 1
			if s, err := n.api.status(ctx); err == nil {
				lan[i] = s.lanPeers()
			}
			ok = ok && lan[i] >= want
		}
		if ok || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleep(ctx, 200*time.Millisecond)
	}
	if !sleep(ctx, 2*time.Second) {
		return nil
	}
	var out []int
	for i, n := range r.nodes {
		if !n.Cache {
			out = append(out, lan[i])
		}
	}
	r.progress("LAN peers per device: %v", out)
	return out
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// reannounce is how long the harness waits for a device to start the
// transfer before it announces again (a node outside the gossip mesh at
// the first announcement hears the second).
const reannounce = 5 * time.Second

// waitFlips announces the release through every site's seed, then polls
// every device until each has flipped to it ("tentative"), staging the
// run's faults as it goes; it returns each device's time from the first
// announcement, by site, and the last.
func (r *run) waitFlips(ctx context.Context) ([][]float64, float64, error) {
	devs := r.devices()
	flipped := make([]float64, len(devs))
	started := make([]bool, len(devs))
	sts := make([]*status, len(devs))
	startedAt, fetchedAt := make([]float64, len(devs)), make([]float64, len(devs))
	for i := range flipped {
		flipped[i], startedAt[i], fetchedAt[i] = -1, -1, -1
	}
	t0 := time.Now()
	announce := func() error {
		for _, n := range r.nodes {
			if n.Seed && !n.down {
				if err := n.api.announce(ctx, r.repoURL); err != nil {
					return fmt.Errorf("%s: announce: %w", n.Name, err)
				}
			}
		}
		return nil
	}
	r.sampler = r.startSampler(ctx, t0)
	err := announce()
	lastAnnounce, lastProgress := time.Now(), time.Now()
	left := len(devs)
	for err == nil && left > 0 {
		if !sleep(ctx, 100*time.Millisecond) {
			err = fmt.Errorf("%d of %d devices flipped: %w", len(devs)-left, len(devs), ctx.Err())
			break
		}
		// Every device at once (a few at a time), so a flip is seen
		// within about one poll however large the fleet.
		parallel(len(devs), 8, func(i int) error {
			sts[i] = nil
			if n := devs[i]; flipped[i] < 0 && !n.down {
				sts[i], _ = n.api.status(ctx)
			}
			return nil
		})
		now := time.Since(t0).Seconds()
		allStarted := true
		for i, n := range devs {
			if flipped[i] >= 0 || n.down {
				continue
			}
			if n.proc.exited() {
				err = fmt.Errorf("%s exited: %v: %s", n.Name, n.proc.err, n.proc.tail())
				break
			}
			s := sts[i]
			if s == nil {
				continue
			}
			if tr, ok := s.transfer(r.index); ok {
				if !started[i] {
					startedAt[i] = now
				}
				started[i] = true
				if fetchedAt[i] < 0 && (tr.Done || tr.Total > 0 && tr.Held == tr.Total) {
					fetchedAt[i] = now
				}
			}
			if u := s.Updater; u != nil && u.State == "tentative" && u.StagedVersion == r.version {
				flipped[i] = now
				left--
				continue
			}
			allStarted = allStarted && started[i]
		}
		if err != nil {
			break
		}
		if err = r.faults.step(ctx, time.Since(t0).Seconds(), devs, sts, flipped); err != nil {
			break
		}
		if len(r.heldAt) == 0 || now >= r.heldAt[len(r.heldAt)-1]+1 {
			r.heldAt = append(r.heldAt, now)
			r.held = append(r.held, make([]int, len(devs)))
			for i := range devs {
				r.held[len(r.held)-1][i] = r.faults.held(i, sts, flipped)
			}
		}
		if !allStarted && time.Since(lastAnnounce) > reannounce {
			err = announce()
			lastAnnounce = time.Now()
		}
		if time.Since(lastProgress) > 2*time.Second {
			r.progress("%d/%d devices flipped, %.1f s", len(devs)-left, len(devs), now)
			lastProgress = time.Now()
		}
	}
	r.faults.end(ctx, time.Since(t0).Seconds(), devs, flipped)
	r.sampler.finish()
	bySite := make([][]float64, len(r.t.Sites))
	r.startedAt = make([][]float64, len(r.t.Sites))
	r.fetchedAt = make([][]float64, len(r.t.Sites))
	last := 0.0
	for i, n := range devs {
		bySite[n.Site-1] = append(bySite[n.Site-1], flipped[i])
		r.startedAt[n.Site-1] = append(r.startedAt[n.Site-1], startedAt[i])
		r.fetchedAt[n.Site-1] = append(r.fetchedAt[n.Site-1], fetchedAt[i])
		last = max(last, flipped[i])
	}
	if err == nil {
		r.progress("every device flipped in %.1f s", last)
	}
	return bySite, last, err
}

// counterSet is one reading of the counters the result needs.
type counterSet struct {
	upIn, upOut               []int64
	upInFrames                []int64
	origin, originFrames      int64
	originSegs, originRetrans int64
	devDup                    int64 // duplicate segments the devices received
}

// readCounters reads each site's uplink (the router's end: rx is what
// entered the site) and the origin's egress. On loopback there are no
// interfaces: zero.
func (r *run) readCounters(ctx context.Context) (counterSet, error) {
	c := counterSet{upIn: make([]int64, len(r.t.Sites)), upOut: make([]int64, len(r.t.Sites)), upInFrames: make([]int64, len(r.t.Sites))}
	if r.t.Loopback {
		return c, nil
	}
	for i, s := range r.t.Sites {
		rx, tx, err := counters(ctx, s.Router, fleet.IfUplink)
		if err != nil {
			return c, err
		}
		c.upIn[i], c.upOut[i] = rx, tx
		if c.upInFrames[i], _, err = frames(ctx, s.Router, fleet.IfUplink); err != nil {
			return c, err
		}
	}
	_, tx, err := counters(ctx, r.t.OriginNS, fleet.IfOrigin)
	if err != nil {
		return c, err
	}
	c.origin = tx
	if _, c.originFrames, err = frames(ctx, r.t.OriginNS, fleet.IfOrigin); err != nil {
		return c, err
	}
	if c.originSegs, c.originRetrans, _, err = tcpSegments(ctx, r.t.OriginNS); err != nil {
		return c, err
	}
	for _, n := range r.nodes {
		_, _, dup, err := tcpSegments(ctx, n.Namespace)
		if err != nil {
			return c, err
		}
		c.devDup += dup
	}
	return c, nil
}

// account fills the byte fields of res: the counters' differences, and
// the nodes' own counts of where their chunks came from (on loopback,
// those are the only counts).
func (r *run) account(res *fleet.Result, before, after counterSet) {
	res.UplinkBytes = make([]int64, len(r.t.Sites))
	for i := range r.t.Sites {
		res.UplinkBytes[i] = after.upIn[i] - before.upIn[i]
	}
	if !r.t.Loopback {
		res.UplinkOutBytes = make([]int64, len(r.t.Sites))
		for i := range r.t.Sites {
			res.UplinkOutBytes[i] = after.upOut[i] - before.upOut[i]
		}
		res.OriginEgressBytes = after.origin - before.origin
		res.UplinkPayloadBytes = make([]int64, len(r.t.Sites))
		for i := range r.t.Sites {
			res.UplinkPayloadBytes[i] = res.UplinkBytes[i] - fleet.FrameHeaderBytes*(after.upInFrames[i]-before.upInFrames[i])
		}
		res.OriginPayloadBytes = res.OriginEgressBytes - fleet.FrameHeaderBytes*(after.originFrames-before.originFrames)
		res.OriginTCPSegments = after.originSegs - before.originSegs
		res.OriginTCPRetransmits = after.originRetrans - before.originRetrans
		res.NodeTCPDuplicates = after.devDup - before.devDup
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r.t.Baseline != "" {
		r.accountHTTP(res)
		return
	}
	final := map[string]transferStatus{}
	res.DeviceStartSeconds, res.DeviceFetchedSeconds = r.startedAt, r.fetchedAt
	res.HeldSampleSeconds, res.HeldSamples = r.heldAt, r.held
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscan(string(b), &res.LoadAverage)
	}
	res.DeviceBytesBySource = make([][]map[string]int64, len(r.t.Sites))
	res.DeviceSched = make([][]map[string]int, len(r.t.Sites))
	res.SiteBytesBySource = make([]map[string]int64, len(r.t.Sites))
	for i := range res.SiteBytesBySource {
		res.SiteBytesBySource[i] = map[string]int64{}
	}
	for _, n := range r.nodes {
		by := map[string]int64{}
		for k, v := range n.carried {
			by[k] += v
		}
		s, err := n.api.status(ctx)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("%s: status: %v", n.Name, err))
			s = &status{}
		}
		// The release's index and its deltas count as its bytes: they
		// crossed with, or instead of, its chunks.
		for k, v := range s.pieceBytes(r.index) {
			by[k] += v
		}
		if tr, ok := s.transfer(r.index); ok {
			final[n.Name] = tr
			if !n.Cache {
				res.DeviceSched[n.Site-1] = append(res.DeviceSched[n.Site-1], map[string]int{
					"requested_origin": tr.Requested["origin"], "requested_lan": tr.Requested["lan"],
					"requested_wan": tr.Requested["wan"], "duplicate": tr.Duplicate,
					"stalled": tr.Stalled, "excluded": tr.Excluded})
			}
			for k, v := range tr.Bytes {
				by[k] += v
			}
		}
		for k, v := range by {
			if !n.Cache {
				res.BytesBySource[k] += v
				res.SiteBytesBySource[n.Site-1][k] += v
			}
		}
		if !n.Cache {
			res.DeviceBytesBySource[n.Site-1] = append(res.DeviceBytesBySource[n.Site-1], by)
		}
		if r.t.Loopback {
			res.UplinkBytes[n.Site-1] += by["wan"] + by["origin"]
			res.OriginEgressBytes += by["origin"]
		}
	}
	r.faults.account(final)
}

// stopNodes stops every node (SIGTERM: they shut down cleanly) and the
// origin.
func (r *run) stopNodes() error {
	var ps []*proc
	for _, n := range r.nodes {
		if n.proc != nil {
			ps = append(ps, n.proc)
		}
	}
	if r.origin != nil {
		ps = append(ps, r.origin)
	}
	return stopAll(ps, 15*time.Second)
}

// commitAll reboots every device and runs its boot check: it counts those
// that committed the new release (the boot check verifies the slot), and
// returns where each device ended, by site.
func (r *run) commitAll(ctx context.Context) (int, [][]fleet.DeviceEnd, error) {
	devs := r.devices()
	ends := make([]fleet.DeviceEnd, len(devs))
	err := parallel(len(devs), 2, func(i int) error {
		cfg := devs[i].deviceConfig()
		ends[i].Name = devs[i].Name
		var bc struct {
			Committed bool `json:"committed"`
		}
		if _, err := r.shoal(ctx, "device", "reboot", "--config", cfg); err != nil {
			return err
		}
		out, err := r.shoal(ctx, "update", "boot-check", "--config", cfg, "--json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal(out, &bc); err != nil {
			return fmt.Errorf("%s: boot-check: %w", devs[i].Name, err)
		}
		out, err = r.shoal(ctx, "update", "status", "--config", cfg, "--json")
		if err != nil {
			return err
		}
		var st struct {
			ActiveSlot    string `json:"active_slot"`
			ActiveVersion uint64 `json:"active_version"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			return fmt.Errorf("%s: status: %w", devs[i].Name, err)
		}
		ends[i].Slot, ends[i].Version = st.ActiveSlot, st.ActiveVersion
		ends[i].Committed = bc.Committed && st.ActiveVersion == r.version
		return nil
	})
	n := 0
	bySite := make([][]fleet.DeviceEnd, len(r.t.Sites))
	for i, e := range ends {
		if e.Committed {
			n++
		}
		bySite[devs[i].Site-1] = append(bySite[devs[i].Site-1], e)
	}
	return n, bySite, err
}
