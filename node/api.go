package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shoalnet/shoal/fetch"
	"github.com/shoalnet/shoal/internal/atomicfile"
	"github.com/shoalnet/shoal/swarm"
	"github.com/shoalnet/shoal/swarm/exchange"
	"github.com/shoalnet/shoal/swarm/sched"
	"github.com/shoalnet/shoal/updater"
)

// Status is what GET /status returns (and `shoal node status --json`
// prints).
type Status struct {
	PeerID    string           `json:"peer_id"`
	Addrs     []string         `json:"addrs"`
	Fleet     string           `json:"fleet"`
	Channels  []string         `json:"channels"`
	CacheNode bool             `json:"cache_node"`
	Peers     []PeerStatus     `json:"peers"`
	Releases  []ReleaseHeld    `json:"releases"`
	Transfers []TransferStatus `json:"transfers"`
	Served    ServedStatus     `json:"served"`
	// Updater is the device's update state; absent on a cache node.
	Updater *updater.Status `json:"updater,omitempty"`
	// Pending is the release a node with apply = "manual" fetched and
	// waits to install (CHANNEL/VERSION).
	Pending   string `json:"pending,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// PeerStatus is one connected peer.
type PeerStatus struct {
	ID    string `json:"id"`
	Class string `json:"class"` // "lan" or "wan"
	Addr  string `json:"addr"`
}

// ReleaseHeld is a release the node holds whole: installed in a slot or
// kept in its store.
type ReleaseHeld struct {
	Name  string `json:"name"` // CHANNEL/VERSION/ARTIFACT
	Index string `json:"index"`
}

// TransferStatus is a download, in progress or finished: of a release's
// chunks (kind "release", Index the release index), or of the delta index
// (kind "delta-index") or the delta objects (kind "deltas") that build the
// release index Release on a device holding its base, or of the release
// index Release itself (kind "index"); Index is then the CID of the piece
// list the peers trade them by (docs/deltas.md, "In the swarm").
type TransferStatus struct {
	Index     string           `json:"index"`
	Kind      string           `json:"kind"`
	Release   string           `json:"release,omitempty"`
	Done      bool             `json:"done"`
	Chunks    map[string]int   `json:"chunks"` // by source class: lan, wan, origin
	Bytes     map[string]int64 `json:"bytes"`
	BadBlocks int              `json:"bad_blocks"`
	Held      int              `json:"held"`
	Total     int              `json:"total"`
	// Scheduler state, to see what a transfer waits for: requests
	// outstanding (at the origin among them), missing pieces left to a
	// LAN wanter's share, the split set's size, and the endgame.
	Outstanding int  `json:"outstanding"`
	AtOrigin    int  `json:"outstanding_origin"`
	Awaiting    int  `json:"awaiting"`
	Wanters     int  `json:"wanters"`
	Endgame     bool `json:"endgame"`
	Stalled     int  `json:"stalled"`
	Excluded    int  `json:"excluded"`
	// Requests issued by source class, and blocks that came for pieces
	// already held (what the endgame and split disagreements cost).
	Requested map[string]int `json:"requested"`
	Duplicate int            `json:"duplicate"`
}

// ServedStatus counts what the node served its peers.
type ServedStatus struct {
	Blocks     int64 `json:"blocks"`
	Bytes      int64 `json:"bytes"`
	Misbehaved int64 `json:"misbehaved_peers"`
}

var classNames = [3]string{sched.LAN: "lan", sched.WAN: "wan", sched.Origin: "origin"}

// Status reports the node's state.
func (n *Node) Status() Status {
	s := Status{PeerID: n.host.ID().String(), Addrs: n.host.Addrs(), Fleet: n.cfg.Node.Fleet,
		Channels: n.channels, CacheNode: n.dev == nil, Peers: []PeerStatus{}, Releases: []ReleaseHeld{}, Transfers: []TransferStatus{}}
	for _, p := range n.host.Peers() {
		c := "wan"
		if p.Class == swarm.LAN {
			c = "lan"
		}
		s.Peers = append(s.Peers, PeerStatus{ID: p.ID.String(), Class: c, Addr: p.Addr})
	}
	st := n.engine.Stats()
	s.Served = ServedStatus{Blocks: st.ServedBlocks, Bytes: st.ServedBytes, Misbehaved: st.Misbehaved}
	n.smu.Lock()
	for name, id := range n.held {
		s.Releases = append(s.Releases, ReleaseHeld{Name: name, Index: id.String()})
	}
	for id, t := range n.transfers {
		s.Transfers = append(s.Transfers, transferStatus(id.String(), t.kind, t.release, false, t.dl.Stats()))
	}
	for _, f := range n.finished {
		s.Transfers = append(s.Transfers, transferStatus(f.index, f.kind, f.release, true, f.stats))
	}
	s.LastError = n.lastErr
	s.Updater = n.devStatus
	if n.pending != nil {
		s.Pending = fmt.Sprintf("%s/%d", n.pending.Release.Channel, n.pending.Release.Version)
	}
	n.smu.Unlock()
	sort.Slice(s.Releases, func(i, j int) bool { return s.Releases[i].Name < s.Releases[j].Name })
	return s
}

func transferStatus(index, kind string, release cid.Cid, done bool, st exchange.DownloadStats) TransferStatus {
	t := TransferStatus{Index: index, Kind: kind, Done: done, Chunks: map[string]int{}, Bytes: map[string]int64{}, Requested: map[string]int{},
		BadBlocks: st.BadBlocks, Held: st.Sched.Held, Total: st.Sched.Pieces,
		Outstanding: st.Sched.Outstanding, AtOrigin: st.Sched.Origin, Awaiting: st.Sched.Awaiting,
		Wanters: st.Sched.Wanters, Endgame: st.Sched.Endgame, Stalled: st.Sched.Stalled, Excluded: st.Sched.Excluded,
		Duplicate: st.Sched.Duplicate}
	for c, name := range classNames {
		t.Chunks[name] = st.Chunks[c]
		t.Bytes[name] = st.Bytes[c]
		t.Requested[name] = st.Sched.Requested[c]
	}
	if release.Defined() {
		t.Release = release.String()
	}
	return t
}

// refreshStatus snapshots the device's status for the API (Run's
// goroutine owns the device).
func (n *Node) refreshStatus(ctx context.Context) {
	if n.dev == nil {
		return
	}
	n.devMu.Lock()
	st, err := n.dev.Status(ctx)
	n.devMu.Unlock()
	if err != nil {
		return
	}
	n.smu.Lock()
	n.devStatus = st
	n.smu.Unlock()
}

// Handler is the node's HTTP API: GET /status (JSON), GET /metrics
// (Prometheus), POST /announce (announce the repository of the form or
// JSON field "repo", or the node's origin).
func (n *Node) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{n})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /apply", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			RetryFailed bool `json:"retry_failed"`
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<10))
		if err == nil && len(body) > 0 {
			err = json.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, "body: want {\"retry_failed\": false}", http.StatusBadRequest)
			return
		}
		reply := make(chan applyReply, 1)
		select {
		case n.applyReq <- applyRequest{retryFailed: req.RetryFailed, reply: reply}:
		case <-r.Context().Done():
			return
		}
		var a applyReply
		select {
		case a = <-reply:
		case <-r.Context().Done():
			return // the install goes on; apply again to see where it stands
		}
		w.Header().Set("Content-Type", "application/json")
		if a.err != nil {
			code := http.StatusInternalServerError
			if errors.Is(a.err, ErrNothingPending) {
				code = http.StatusConflict
			}
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(map[string]string{"error": a.err.Error()})
			return
		}
		json.NewEncoder(w).Encode(a.res)
	})
	mux.HandleFunc("POST /announce", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Repo string `json:"repo"`
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err == nil && len(body) > 0 {
			err = json.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, "body: want {\"repo\": \"DIR or URL\"}", http.StatusBadRequest)
			return
		}
		f := n.origin
		if req.Repo != "" {
			if f, err = fetch.New(req.Repo); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		if f == nil {
			http.Error(w, "no repository given and no [node] origin", http.StatusBadRequest)
			return
		}
		if err := n.Announce(r.Context(), f); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// ServeAPI serves Handler on [node] api until ctx ends.
func (n *Node) ServeAPI(ctx context.Context) error {
	ln, err := net.Listen("tcp", n.cfg.Node.API)
	if err != nil {
		return fmt.Errorf("[node] api: %w", err)
	}
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 10 * time.Second}
	// `shoal node status --config` finds the API in the store (the only
	// place that knows the port when [node] api asks for port 0), and
	// `shoal update apply` finds the node holding the device's lock in the
	// device's state directory.
	files := []string{n.cfg.APIFile()}
	if n.dev != nil {
		files = append(files, APIFile(n.dev.Config))
	}
	for _, p := range files {
		if err := atomicfile.WriteFile(p, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			ln.Close()
			return fmt.Errorf("record the API address: %w", err)
		}
		defer os.Remove(p)
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// collector computes the node's metrics at scrape time from the counters
// the exchange and the downloads keep, so nothing is counted twice.
type collector struct{ n *Node }

var (
	mReceived   = prometheus.NewDesc("shoal_received_bytes_total", "Chunk bytes received, by source class (lan, wan, origin).", []string{"source", "index"}, nil)
	mChunks     = prometheus.NewDesc("shoal_chunks_verified_total", "Chunks received and verified against their IDs, by source class.", []string{"source", "index"}, nil)
	mBad        = prometheus.NewDesc("shoal_bad_blocks_total", "Blocks refused because they did not verify.", []string{"index"}, nil)
	mServed     = prometheus.NewDesc("shoal_served_bytes_total", "Chunk object bytes served to peers.", nil, nil)
	mMisbehaved = prometheus.NewDesc("shoal_misbehaving_peers_total", "Peers disconnected for breaking the protocol.", nil, nil)
	mPeers      = prometheus.NewDesc("shoal_peers", "Connected peers, by class.", []string{"class"}, nil)
	mPhase      = prometheus.NewDesc("shoal_updater_phase", "1 for the updater's current phase.", []string{"phase", "channel", "version"}, nil)
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mReceived, mChunks, mBad, mServed, mMisbehaved, mPeers, mPhase} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.Status()
	for _, t := range s.Transfers {
		for _, name := range classNames {
			ch <- prometheus.MustNewConstMetric(mReceived, prometheus.CounterValue, float64(t.Bytes[name]), name, t.Index)
			ch <- prometheus.MustNewConstMetric(mChunks, prometheus.CounterValue, float64(t.Chunks[name]), name, t.Index)
		}
		ch <- prometheus.MustNewConstMetric(mBad, prometheus.CounterValue, float64(t.BadBlocks), t.Index)
	}
	ch <- prometheus.MustNewConstMetric(mServed, prometheus.CounterValue, float64(s.Served.Bytes))
	ch <- prometheus.MustNewConstMetric(mMisbehaved, prometheus.CounterValue, float64(s.Served.Misbehaved))
	peers := map[string]int{"lan": 0, "wan": 0}
	for _, p := range s.Peers {
		peers[p.Class]++
	}
	for class, k := range peers {
		ch <- prometheus.MustNewConstMetric(mPeers, prometheus.GaugeValue, float64(k), class)
	}
	if u := s.Updater; u != nil {
		v := u.ActiveVersion
		if u.StagedVersion != 0 {
			v = u.StagedVersion
		}
		ch <- prometheus.MustNewConstMetric(mPhase, prometheus.GaugeValue, 1, u.State, u.Channel, strconv.FormatUint(v, 10))
	}
}

// ReadStatus asks the node whose API listens at addr for its status.
func ReadStatus(ctx context.Context, addr string) (*Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("node API at %s: %w (is `shoal node run` running?)", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node API at %s: %s", addr, resp.Status)
	}
	var s Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&s); err != nil {
		return nil, fmt.Errorf("node API at %s: %w", addr, err)
	}
	return &s, nil
}

// RequestApply asks the node at addr (apply = "manual") to install the
// release it fetched.
func RequestApply(ctx context.Context, addr string, retryFailed bool) (*updater.ApplyResult, error) {
	b, _ := json.Marshal(map[string]bool{"retry_failed": retryFailed})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/apply", strings.NewReader(string(b)))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("node API at %s: %w (is `shoal node run` running?)", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			if resp.StatusCode == http.StatusConflict {
				return nil, fmt.Errorf("%w (node at %s)", ErrNothingPending, addr)
			}
			return nil, fmt.Errorf("node at %s: %s", addr, e.Error)
		}
		return nil, fmt.Errorf("node API at %s: %s", addr, resp.Status)
	}
	var res updater.ApplyResult
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("node API at %s: %w", addr, err)
	}
	return &res, nil
}

// RequestAnnounce asks the node at addr to announce repo ("" for its
// origin).
func RequestAnnounce(ctx context.Context, addr, repo string) error {
	b, _ := json.Marshal(map[string]string{"repo": repo})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/announce", strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("node API at %s: %w (is `shoal node run` running?)", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("node API at %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}
