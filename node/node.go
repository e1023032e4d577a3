package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/internal/atomicfile"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/manifest/bundle"
	"github.com/shoalnet/shoal/store"
	"github.com/shoalnet/shoal/swarm"
	"github.com/shoalnet/shoal/swarm/announce"
	"github.com/shoalnet/shoal/swarm/exchange"
	"github.com/shoalnet/shoal/swarm/sched"
	"github.com/shoalnet/shoal/swarm/wire"
	"github.com/shoalnet/shoal/updater"
	"github.com/shoalnet/shoal/updater/state"
)

// Node is a running shoal daemon: a swarm host, the chunk exchange, the
// store, and (unless it is a cache node) the device it updates. Make one
// with New, drive it with Run, and Close it.
type Node struct {
	cfg      *Config
	log      *slog.Logger
	host     *swarm.Host
	db       *store.DB
	engine   *exchange.Engine
	provs    *exchange.Providers
	origin   fetch.Fetcher // nil: no route to the origin
	trust    *manifest.Trust
	channels []string
	topics   []*swarm.Releases
	vals     []*validator // one per channel, as topics
	now      func() time.Time

	// dev is driven by Run's goroutine only (updater.Device is not safe
	// for concurrent use); devMu guards the reads the API makes.
	dev   *updater.Device
	devMu sync.Mutex

	accepted    chan Verdict
	closeOnce   sync.Once
	closeErr    error
	applyReq    chan applyRequest
	pending     *manifest.Verified // fetched, waiting for `shoal update apply` (apply = "manual")
	running     *exchange.SlotProvider
	runningSlot *updater.RunningSlot
	// installed serves the slot the last install filled and flipped to,
	// until the device reboots into it (then it is the running slot) or
	// the next install overwrites it. Guarded by devMu.
	installed *installedSlot

	smu       sync.Mutex
	finished  []finishedTransfer   // the last downloads, for status
	transfers map[cid.Cid]transfer // in progress, for status
	devStatus *updater.Status      // as of Run's last look
	held      map[string]cid.Cid   // channel/version/artifact → index, complete
	pieces    []cid.Cid            // piece lists served (indexes, deltas), newest last
	lastErr   string

	frameTimeout time.Duration
}

// Option configures New.
type Option func(*Node)

// WithLogger sets the node's logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(n *Node) { n.log = l } }

// WithOrigin replaces the origin [node] origin names (tests count what
// it serves).
func WithOrigin(f fetch.Fetcher) Option { return func(n *Node) { n.origin = f } }

// WithClock sets the clock for metadata expiry.
func WithClock(now func() time.Time) Option { return func(n *Node) { n.now = now } }

// WithFrameTimeout sets how long a frame from a peer may take beyond its
// length at the minimum rate (exchange.Config.FrameTimeout; default 30 s).
func WithFrameTimeout(d time.Duration) Option { return func(n *Node) { n.frameTimeout = d } }

// New starts a node from its config: it opens the store and, for a device
// node, the device (taking its lock, as every command that changes a
// device does), loads the trust, starts the swarm host, joins the release
// topics and serves what the node holds. Run then drives it.
func New(ctx context.Context, cfg *Config, opts ...Option) (_ *Node, err error) {
	n := &Node{cfg: cfg, log: slog.Default(), now: time.Now, accepted: make(chan Verdict, 16), applyReq: make(chan applyRequest),
		transfers: map[cid.Cid]transfer{}, held: map[string]cid.Cid{}}
	for _, o := range opts {
		o(n)
	}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	sdir := cfg.StoreDir()
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		return nil, fmt.Errorf("node store: %w", err)
	}
	if n.db, err = store.Open(filepath.Join(sdir, "chunks")); err != nil {
		return nil, err
	}
	var topts manifest.TrustOptions
	if cfg.CacheNode() {
		topts = cfg.TrustOptions()
		n.channels = cfg.Node.Channels
	} else {
		dcfg, err := updater.LoadConfig(cfg.DevicePath())
		if err != nil {
			return nil, err
		}
		if n.dev, err = updater.Open(ctx, dcfg, updater.WithLock("shoal node run", updater.DefaultLockWait)); err != nil {
			return nil, err
		}
		topts = dcfg.TrustOptions()
		n.channels = []string{dcfg.Device.Channel}
	}
	// The validator remembers what it trusts apart from the device: it
	// checks every announcement, and the device only what it installs.
	topts.StateDir = filepath.Join(sdir, "trust")
	if n.trust, err = topts.Load(); err != nil {
		return nil, err
	}
	if n.origin == nil && len(cfg.Node.Origin) > 0 {
		if n.origin, err = fetch.New(cfg.Origins()[0]); err != nil {
			return nil, fmt.Errorf("[node] origin: %w", err)
		}
	}
	hc := cfg.HostConfig()
	hc.Logger = n.log
	if n.host, err = swarm.NewHost(ctx, hc); err != nil {
		return nil, err
	}
	n.provs = exchange.NewProviders(exchange.StoreProvider{Source: n.db, Indexes: n.db})
	// MaxChunk at the ceiling makes the frame limit the largest wire
	// allows (16 MiB + 1 KiB): chunks of any index, and indexes of up to
	// 16 MiB (466,032 chunks) from peers (exchange.Engine.MaxObject).
	n.engine = exchange.New(n.host.ID().String(), n.provs, exchange.Config{
		Logger: n.log, UploadRate: int64(cfg.Node.UploadRate), DownloadRate: int64(cfg.Node.DownloadRate), MaxChunk: chunker.MaxChunkCeil,
		FrameTimeout: n.frameTimeout,
		// A node with no origin cannot fetch its share of the site's split.
		NoShare: n.origin == nil,
	})
	n.host.Libp2p().SetStreamHandler(wire.ProtocolID, func(s network.Stream) {
		n.engine.Add(n.conn(s))
	})
	n.host.Libp2p().Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) { go n.dial(ctx, c.RemotePeer()) },
	})
	for _, p := range n.host.Libp2p().Network().Peers() {
		go n.dial(ctx, p)
	}
	if err := n.serveRunning(ctx); err != nil {
		return nil, err
	}
	if err := n.servePins(ctx); err != nil {
		return nil, err
	}
	if err := n.serveDeltas(ctx); err != nil {
		return nil, err
	}
	for _, ch := range n.channels {
		v, err := newValidator(cfg.Node.Fleet, ch, n.trust, n.now, n.self, n.rolloutCheck(), n.log, n.accept)
		if err != nil {
			return nil, err
		}
		t, err := n.host.JoinReleases(ch, v.Validate)
		if err != nil {
			return nil, err
		}
		n.topics = append(n.topics, t)
		n.vals = append(n.vals, v)
	}
	return n, nil
}

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Addrs are the node's listen addresses with its peer ID, for bootstrap
// lists.
func (n *Node) Addrs() []string { return n.host.Addrs() }

// Host is the node's swarm host.
func (n *Node) Host() *swarm.Host { return n.host }

// Close stops the node: the exchange, the host, the device's lock, the
// store. Calling it again does nothing.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	var errs []error
	for _, t := range n.topics {
		errs = append(errs, t.Close())
	}
	if n.engine != nil {
		errs = append(errs, n.engine.Close())
	}
	if n.host != nil {
		errs = append(errs, n.host.Close())
	}
	if n.running != nil {
		n.provs.Remove(n.running)
		errs = append(errs, n.runningSlot.Close())
	}
	if n.installed != nil {
		n.provs.Remove(n.installed.p)
		errs = append(errs, n.installed.f.Close())
	}
	if n.dev != nil {
		errs = append(errs, n.dev.Close())
	}
	if n.db != nil {
		errs = append(errs, n.db.Close())
	}
	return errors.Join(errs...)
}

// self is the device as the validator judges releases for it; a cache
// node judges as a device of no particular hardware that runs nothing.
func (n *Node) self() manifest.Device {
	if n.dev == nil {
		return manifest.Device{ID: n.host.ID().String(), Channel: n.channels[0]}
	}
	n.devMu.Lock()
	defer n.devMu.Unlock()
	return n.dev.Self()
}

// rolloutCheck is the device's rollout check; a cache node keeps every
// release, whoever it is for.
func (n *Node) rolloutCheck() func(*manifest.Release, manifest.Device) error {
	if n.dev == nil {
		return nil
	}
	return updater.RolloutCheck(n.dev.Config.Device.Labels)
}

func (n *Node) accept(v Verdict) {
	// Keep the newest accepted announcement of the channel: after a
	// restart the node checks it again and resumes what it was doing.
	if err := atomicfile.WriteFile(n.lastAnnouncement(v.Channel), v.Data, 0o600); err != nil {
		n.log.Warn("remember the announcement", "err", err)
	}
	select {
	case n.accepted <- v:
	default:
		// Run is busy with a release; a newer announcement will come.
		n.log.Info("announcement accepted but the node is busy; dropped until it is announced again", "from", v.From)
	}
}

func (n *Node) lastAnnouncement(channel string) string {
	return filepath.Join(n.cfg.StoreDir(), "announcement-"+channel+".json")
}

// resume checks the last announcement accepted on each channel again, as
// if it had just arrived: an install a stop interrupted resumes from what
// the slot holds, a manual node knows again what it fetched, and a
// release already installed or kept costs a look.
func (n *Node) resume(ctx context.Context) {
	for _, v := range n.vals {
		data, err := os.ReadFile(n.lastAnnouncement(v.channel))
		if err != nil {
			continue
		}
		verdict := v.check(ctx, "", data)
		if verdict.Result != swarm.Accept {
			n.log.Info("the last announcement no longer holds", "channel", v.channel, "reason", verdict.Err)
			continue
		}
		select {
		case n.accepted <- verdict:
		default:
		}
	}
}

// Announce publishes the announcement of the repository f serves on the
// topic of each channel the node follows.
func (n *Node) Announce(ctx context.Context, f fetch.Fetcher) error {
	for i, ch := range n.channels {
		a, err := announce.Collect(ctx, f, n.cfg.Node.Fleet, ch)
		if err != nil {
			return err
		}
		b, err := a.Encode()
		if err != nil {
			return err
		}
		if err := n.topics[i].Publish(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// Run drives the node until ctx ends: it takes each accepted release
// (fetching and installing it on a device node with apply = "auto",
// keeping it on a cache node), ticks the device's state machine, and
// provides what the node holds on the DHT.
func (n *Node) Run(ctx context.Context) error {
	n.refreshStatus(ctx)
	n.resume(ctx)
	tick := time.NewTicker(updater.TickPeriod)
	defer tick.Stop()
	reprovide := time.NewTimer(0)
	defer reprovide.Stop()
	var retry *Verdict
	retryTimer := time.NewTimer(retryPeriod)
	retryTimer.Stop()
	defer retryTimer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case v := <-n.accepted:
			retry = nil
			err := n.take(ctx, v)
			n.smu.Lock()
			n.lastErr = "" // a verdict on the newest release replaces an older failure
			n.smu.Unlock()
			if err != nil {
				n.smu.Lock()
				n.lastErr = err.Error()
				n.smu.Unlock()
				n.log.Error("release not taken", "err", err)
				if retryable(err) && ctx.Err() == nil {
					// No source had it yet (no peer connected, the origin
					// down): try again while it is the newest release.
					retry = &v
					retryTimer.Reset(retryPeriod)
				}
			}
			n.refreshStatus(ctx)
		case <-retryTimer.C:
			if retry != nil {
				v := *retry
				retry = nil
				select {
				case n.accepted <- v:
				default:
				}
			}
		case <-tick.C:
			if n.dev != nil {
				n.devMu.Lock()
				reboot, err := n.dev.Tick(ctx)
				n.devMu.Unlock()
				if err != nil {
					n.log.Error("tick", "err", err)
				}
				if reboot {
					n.log.Warn("the trial release failed its health deadline; the device must reboot")
				}
				n.refreshStatus(ctx)
			}
		case req := <-n.applyReq:
			res, err := n.applyPending(ctx, req.retryFailed)
			req.reply <- applyReply{res, err}
			n.refreshStatus(ctx)
		case <-reprovide.C:
			n.provideAll(ctx)
			reprovide.Reset(swarm.ReprovideInterval)
		}
	}
}

// retryPeriod is how long the node waits before it tries a release again
// that no source could serve.
const retryPeriod = 3 * time.Second

// retryable tells failures to get a release that may pass later (no peer
// or origin had an index or chunk yet, a transfer stalled, a timeout) from
// verdicts on the release or the device, which would only repeat.
func retryable(err error) bool {
	switch {
	case errors.Is(err, updater.ErrRefused), errors.Is(err, updater.ErrBusy), errors.Is(err, updater.ErrNotEligible),
		errors.Is(err, updater.ErrNoArtifact), errors.Is(err, updater.ErrSlotTooSmall), errors.Is(err, updater.ErrConfig),
		errors.Is(err, manifest.ErrIndexHash), errors.Is(err, manifest.ErrMerkleRoot), errors.Is(err, manifest.ErrBadMetadata):
		return false
	}
	return true
}

// take acts on an accepted release: completes its verification with the
// indexes, then keeps it (cache node) or installs it (device node).
func (n *Node) take(ctx context.Context, v Verdict) error {
	rel := v.Verified.Release
	if n.dev != nil {
		n.devMu.Lock()
		installed := n.dev.State().Installed
		n.devMu.Unlock()
		if rel.Version <= installed {
			return nil
		}
	}
	c, err := manifest.NewClient(n.trust.ClientConfig())
	if err != nil {
		return err
	}
	// Indexes from the peers that serve them (the site's cache node), else
	// as downloads of one piece (a site takes each across its uplink once;
	// a node without an origin waits for the peer that fetches it), else
	// from the origin directly.
	mirrors := []fetch.Fetcher{exchange.PeerFetcher{Engine: n.engine}, indexSource{n}}
	if n.origin != nil {
		mirrors = append(mirrors, n.origin)
	}
	if err := c.FetchIndexes(ctx, v.Verified, mirrors...); err != nil {
		return err
	}
	if n.dev == nil {
		return n.keep(ctx, v.Verified)
	}
	if n.cfg.Node.Apply == ApplyManual {
		// Fetch it now (the site gets it meanwhile); install it when
		// `shoal update apply` asks.
		if err := n.keep(ctx, v.Verified); err != nil {
			return err
		}
		n.smu.Lock()
		n.pending = v.Verified
		n.smu.Unlock()
		n.log.Info("release fetched; `shoal update apply` installs it", "channel", rel.Channel, "version", rel.Version)
		return nil
	}
	return n.install(ctx, v.Verified)
}

// applyRequest is `shoal update apply` asking a node with apply =
// "manual" to install the release it fetched.
type applyRequest struct {
	retryFailed bool
	reply       chan applyReply
}

type applyReply struct {
	res *updater.ApplyResult
	err error
}

// ErrNothingPending: a manual node has no fetched release to install.
var ErrNothingPending = errors.New("node: no fetched release is waiting to be installed")

// applyPending installs the release a manual node fetched, from its store.
func (n *Node) applyPending(ctx context.Context, retry bool) (*updater.ApplyResult, error) {
	if n.dev == nil {
		return nil, errors.New("node: a cache node has no device to install into")
	}
	n.smu.Lock()
	v := n.pending
	n.smu.Unlock()
	if v == nil {
		return nil, ErrNothingPending
	}
	n.devMu.Lock()
	defer n.devMu.Unlock()
	res, err := n.dev.Offer(ctx, v, n.db, updater.OfferOptions{SourceName: "the node's store", RetryFailed: retry})
	if err == nil {
		n.smu.Lock()
		n.pending = nil
		n.smu.Unlock()
	}
	return res, err
}

// APIFile is where a node records its API address in its device's state
// directory, so `shoal update apply` finds the node that holds the
// device's lock.
func APIFile(device *updater.Config) string {
	return filepath.Join(device.Path(device.State), "node-api")
}

// downloadConfig is the exchange configuration of one release download.
func (n *Node) downloadConfig() exchange.DownloadConfig {
	return exchange.DownloadConfig{
		// The site's devices keep about 8 origin transfers open between
		// them: 16 each through one thin uplink resent a third of what
		// they sent (docs/benchmarks.md, "Fleet").
		Sched: sched.Config{Window: n.cfg.Node.Window, OriginFirst: *n.cfg.Node.OriginFirst,
			SiteOriginWindow: 8},
		Origin: n.origin,
		// Both delivers (the updater's installer, fetchIntoStore) hash
		// every chunk before they use it.
		DeliverChecks: true,
		IsBadChunk: func(err error) bool {
			return errors.Is(err, updater.ErrBadChunk) || errors.Is(err, exchange.ErrBadChunk)
		},
	}
}

// install fetches the release through the swarm into the device's
// inactive slot and lets the updater verify and flip it. While it runs,
// the positions already written and verified are served to peers from the
// slot being filled.
func (n *Node) install(ctx context.Context, v *manifest.Verified) error {
	n.devMu.Lock()
	defer n.devMu.Unlock()
	a, ix, err := updater.PickArtifact(v, n.dev.Config.Slots.Artifact)
	if err != nil {
		return err
	}
	art := a.Name
	dl, err := n.engine.NewDownload(ctx, ix, n.downloadConfig())
	if err != nil {
		return err
	}
	n.track(ix.CID(), transfer{dl: dl, kind: kindRelease})
	defer n.track(ix.CID(), transfer{})
	// The slot about to be filled may be the one a previous install
	// flipped to: it stops being served before it is overwritten.
	if old := n.installed; old != nil {
		n.installed = nil
		n.provs.Remove(old.p)
		if !old.id.Equals(ix.CID()) {
			n.engine.Withdraw(old.id)
		}
		old.f.Close()
	}
	target := n.dev.Config.SlotPath(state.Other(n.dev.State().Active))
	f, err := os.Open(target)
	if err != nil {
		return err
	}
	filling := exchange.NewSlotProvider(f, ix, n.engine.Held(ix.CID()))
	n.provs.Add(filling)
	// Delta objects come through the swarm too, on downloads of their own
	// (deltaSource).
	res, err := n.dev.Offer(ctx, v, dl, updater.OfferOptions{SourceName: "swarm", Placed: dl.Placed, Deltas: deltaSource{n, ix.CID()}})
	if err != nil {
		// What was placed stays in the slot for the next try, but it is
		// not served meanwhile: peers must not be told of it.
		n.provs.Remove(filling)
		n.engine.Withdraw(ix.CID())
		f.Close()
		return err
	}
	// The flipped slot holds the verified release: it goes on serving
	// the site until the device reboots into it, so devices that come
	// later take it over the LAN.
	n.installed = &installedSlot{f: f, p: filling, id: ix.CID()}
	n.log.Info("release installed", "channel", res.Channel, "version", res.Version, "slot", res.Slot,
		"state", res.State, "reboot", res.Reboot, "artifact", art)
	n.setHeld(v.Release, art, ix.CID())
	// The install stands whether or not the DHT takes the record (a node
	// alone has no one to tell); provideAll tries again later.
	if err := n.host.ProvideRelease(ctx, ix.CID()); err != nil && ctx.Err() == nil {
		n.log.Warn("provide", "index", ix.CID(), "err", err)
	}
	return nil
}

// installedSlot is a slot an install filled and flipped to, served from
// the provider p over file f.
type installedSlot struct {
	f  *os.File
	p  *exchange.SlotProvider
	id cid.Cid
}

// keep fetches every artifact of the release into the store and pins it:
// what a cache node does.
func (n *Node) keep(ctx context.Context, v *manifest.Verified) error {
	rel := v.Release
	for i, a := range rel.Artifacts {
		ix := v.Indexes[i]
		id := ix.CID()
		n.keepFromDeltas(ctx, v, a.Name, ix)
		dl, err := n.engine.NewDownload(ctx, ix, n.downloadConfig())
		if err != nil {
			return err
		}
		n.track(id, transfer{dl: dl, kind: kindRelease})
		err = n.fetchIntoStore(ctx, ix, dl, nil)
		n.track(id, transfer{})
		if err != nil {
			return fmt.Errorf("release %s/%d artifact %s: %w", rel.Channel, rel.Version, a.Name, err)
		}
		if _, err := n.db.PutIndex(ctx, ix); err != nil {
			return err
		}
		if err := n.db.Pin(ctx, fmt.Sprintf("%s/%d/%s", rel.Channel, rel.Version, a.Name), id); err != nil {
			return err
		}
		n.setHeld(rel, a.Name, id)
		if err := n.host.ProvideRelease(ctx, id); err != nil {
			n.log.Warn("provide", "index", id, "err", err)
		}
	}
	n.log.Info("release kept", "channel", rel.Channel, "version", rel.Version)
	return nil
}

// fetchIntoStore fetches the chunks of ix the store lacks into it. With
// deliver, each distinct chunk is handed to deliver once stored (those
// the store held first, read back from it).
func (n *Node) fetchIntoStore(ctx context.Context, ix *chunker.Index, dl *exchange.Download, deliver func(cid.Cid, []byte) error) error {
	// Every position of each distinct chunk, and whether the store has it:
	// one lookup per chunk, not per position.
	where := map[cid.Cid][]int{}
	var have []int
	var fetch, stored []cid.Cid
	held := map[cid.Cid]bool{}
	for i := range ix.Chunks {
		id := ix.ID(i)
		if _, seen := where[id]; !seen {
			ok, err := n.db.Has(ctx, id)
			if err != nil {
				return err
			}
			held[id] = ok
			if ok {
				stored = append(stored, id)
			} else {
				fetch = append(fetch, id)
			}
		}
		where[id] = append(where[id], i)
		if held[id] {
			have = append(have, i)
		}
	}
	dl.Placed(have)
	if deliver != nil {
		for _, id := range stored {
			b, err := n.db.Get(ctx, id)
			if err != nil {
				return err
			}
			if err := deliver(id, b); err != nil {
				return err
			}
		}
	}
	if len(fetch) == 0 {
		return nil
	}
	return dl.FetchAll(ctx, fetch, func(id cid.Cid, data []byte) error {
		pos := where[id]
		e := ix.Chunks[pos[0]]
		if len(data) != int(e.Size) || ix.Hash.Sum(data) != e.Digest {
			return fmt.Errorf("%w: %s", exchange.ErrBadChunk, id)
		}
		if err := n.db.Put(ctx, id, data); err != nil {
			return err
		}
		dl.Placed(pos)
		if deliver != nil {
			return deliver(id, data)
		}
		return nil
	})
}

// serveRunning serves a device's running slot with the index it was
// verified against.
func (n *Node) serveRunning(ctx context.Context) error {
	if n.dev != nil {
		rs, err := n.dev.Running()
		switch {
		case errors.Is(err, updater.ErrNothingInstalled):
		case err != nil:
			return err
		default:
			n.runningSlot = rs
			n.running = exchange.NewSlotProvider(rs, rs.Index, nil)
			n.provs.Add(n.running)
			if _, err := n.engine.Serve(ctx, rs.Index); err != nil {
				return err
			}
		}
	}
	return nil
}

// servePins serves the releases pinned in the store: those a cache node
// kept, and bundles imported into the node's store.
func (n *Node) servePins(ctx context.Context) error {
	pins, err := n.db.Pins(ctx)
	if err != nil {
		return err
	}
	for name, id := range pins {
		ix, err := n.db.GetIndex(ctx, id)
		if err != nil {
			return fmt.Errorf("pin %s: %w", name, err)
		}
		if _, err := n.engine.Serve(ctx, ix); err != nil {
			return err
		}
		n.smu.Lock()
		n.held[name] = id
		n.smu.Unlock()
	}
	return nil
}

func (n *Node) provideAll(ctx context.Context) {
	n.smu.Lock()
	ids := make([]cid.Cid, 0, len(n.held))
	for _, id := range n.held {
		ids = append(ids, id)
	}
	ids = append(ids, n.pieces...)
	n.smu.Unlock()
	if n.running != nil {
		ids = append(ids, n.running.Index())
	}
	for _, id := range ids {
		if err := n.host.ProvideRelease(ctx, id); err != nil && ctx.Err() == nil {
			n.log.Debug("provide", "index", id, "err", err)
		}
	}
}

// transfer is a download the status reports: a release's chunks, or the
// pieces (delta index, delta objects) of the release index release.
type transfer struct {
	dl      *exchange.Download
	kind    string
	release cid.Cid
}

// Transfer kinds (TransferStatus.Kind).
const (
	kindRelease    = "release"
	kindIndex      = "index"
	kindDeltaIndex = "delta-index"
	kindDeltas     = "deltas"
)

// track records the transfer of id while it runs; a zero t ends it.
func (n *Node) track(id cid.Cid, t transfer) {
	n.smu.Lock()
	defer n.smu.Unlock()
	if t.dl == nil {
		if d, ok := n.transfers[id]; ok {
			n.finished = append(n.finished, finishedTransfer{id.String(), d.kind, d.release, d.dl.Stats()})
			if len(n.finished) > maxFinished {
				n.finished = n.finished[1:]
			}
		}
		delete(n.transfers, id)
		return
	}
	n.transfers[id] = t
}

func (n *Node) setHeld(r *manifest.Release, artifact string, id cid.Cid) {
	n.smu.Lock()
	defer n.smu.Unlock()
	n.held[fmt.Sprintf("%s/%d/%s", r.Channel, r.Version, artifact)] = id
}

// finishedTransfer is a download's final counters.
type finishedTransfer struct {
	index   string
	kind    string
	release cid.Cid
	stats   exchange.DownloadStats
}

// maxFinished bounds the finished downloads the status keeps.
const maxFinished = 16

// dial opens the exchange stream to p. Of two peers, the one with the
// smaller ID opens it, so each pair has one stream.
func (n *Node) dial(ctx context.Context, p peer.ID) {
	if n.host.ID().String() >= p.String() {
		return
	}
	// A stream may fail to open over a connection that is going away (a
	// peer that restarted under the same ID): try again while the peer
	// is connected and the exchange does not run with it yet.
	for attempt := 1; attempt <= 5; attempt++ {
		if n.exchanging(p) || !n.host.Connected(p) {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s, err := n.host.Libp2p().NewStream(sctx, p, wire.ProtocolID)
		cancel()
		if err == nil {
			n.engine.Add(n.conn(s))
			return
		}
		if ctx.Err() != nil {
			return
		}
		n.log.Debug("exchange stream", "peer", p, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
		}
	}
}

// exchanging reports whether the exchange runs a connection with p.
func (n *Node) exchanging(p peer.ID) bool {
	for _, pi := range n.engine.Peers() {
		if pi.ID == p.String() {
			return true
		}
	}
	return false
}

// streamConn adapts a libp2p stream to exchange.Conn.
type streamConn struct {
	network.Stream
	class sched.Class
}

func (s streamConn) Peer() string       { return s.Conn().RemotePeer().String() }
func (s streamConn) Class() sched.Class { return s.class }

// Close resets the stream, which unblocks a read or write in progress on
// either side (a plain Close may leave a read waiting).
func (s streamConn) Close() error { return s.Reset() }

func (n *Node) conn(s network.Stream) exchange.Conn {
	class := sched.WAN
	if n.host.Class(s.Conn().RemotePeer()) == swarm.LAN {
		class = sched.LAN
	}
	return streamConn{Stream: s, class: class}
}

// ImportBundle is bundle import into the node's store (a remote site
// seeded from a USB stick): verified from the node's trust first, then
// served.
func (n *Node) ImportBundle(ctx context.Context, path string) (*bundle.ImportResult, error) {
	r, err := bundle.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	v, err := r.Verify(ctx, bundle.VerifyOptions{Root: n.trust.Root, LogKeys: n.trust.LogKeys, RequireLog: n.trust.Witness != nil})
	if err != nil {
		return nil, err
	}
	res, err := bundle.Import(ctx, r, v, n.db, nil)
	if err != nil {
		return nil, err
	}
	return res, n.servePins(ctx)
}
