package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// status is the part of a node's GET /status (docs/swarm.md, "HTTP API")
// the harness reads.
type status struct {
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	Peers  []struct {
		ID    string `json:"id"`
		Class string `json:"class"`
	} `json:"peers"`
	Transfers []transferStatus `json:"transfers"`
	Updater   *struct {
		State         string `json:"state"`
		StagedVersion uint64 `json:"staged_version"`
		ActiveVersion uint64 `json:"active_version"`
	} `json:"updater"`
	LastError string `json:"last_error"`
}

// transferStatus is one release download of a node.
type transferStatus struct {
	Index string `json:"index"`
	Kind  string `json:"kind"`
	// Release is, for a download of pieces (kind "index", "delta-index"
	// or "deltas"), the release index they serve.
	Release string           `json:"release"`
	Done    bool             `json:"done"`
	Chunks  map[string]int   `json:"chunks"`
	Bytes   map[string]int64 `json:"bytes"`
	Held    int              `json:"held"`
	Total   int              `json:"total"`
	// The scheduler's counters, for diagnostics.
	Requested map[string]int `json:"requested"`
	Duplicate int            `json:"duplicate"`
	Stalled   int            `json:"stalled"`
	Excluded  int            `json:"excluded"`
}

// pieceBytes sums, by source class, the bytes of the node's downloads of
// pieces for the release index index: the index itself, and on a device
// on the base, the delta index and the deltas.
func (s *status) pieceBytes(index string) map[string]int64 {
	by := map[string]int64{}
	for _, t := range s.Transfers {
		if t.Release == index {
			for k, v := range t.Bytes {
				by[k] += v
			}
		}
	}
	return by
}

// lanPeers counts the node's LAN peers.
func (s *status) lanPeers() int {
	n := 0
	for _, p := range s.Peers {
		if p.Class == "lan" {
			n++
		}
	}
	return n
}

// transfer returns the node's transfer of index, and whether it has one.
func (s *status) transfer(index string) (transferStatus, bool) {
	for _, t := range s.Transfers {
		if t.Index == index {
			return t, true
		}
	}
	return transferStatus{}, false
}

// client talks to one node's API: in its namespace, at the address the
// node recorded in STORE/api (its config says api port 0).
type client struct {
	apiFile string
	http    *http.Client
	addr    string
}

func newClient(ns, store string) *client {
	return &client{apiFile: filepath.Join(store, "api"), http: &http.Client{
		Transport: &http.Transport{DialContext: nsDialer(ns), MaxIdleConnsPerHost: 1},
		// Generous: 40 nodes on 2 cores answer an announce slowly (one
		// took more than 10 s at load 86), and a timed-out announce
		// fails the whole run.
		Timeout: time.Minute,
	}}
}

// reset forgets the node's API address: a restarted node takes another
// port and records it anew.
func (c *client) reset() {
	c.http.CloseIdleConnections()
	c.addr = ""
	os.Remove(c.apiFile)
}

func (c *client) address() (string, error) {
	if c.addr != "" {
		return c.addr, nil
	}
	b, err := os.ReadFile(c.apiFile)
	if err != nil {
		return "", err
	}
	c.addr = strings.TrimSpace(string(b))
	return c.addr, nil
}

func (c *client) status(ctx context.Context) (*status, error) {
	addr, err := c.address()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /status: %s", resp.Status)
	}
	var s status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

// announce asks the node to announce the repository at repo.
func (c *client) announce(ctx context.Context, repo string) error {
	addr, err := c.address()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(map[string]string{"repo": repo})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/announce", bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("POST /announce: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

func (c *client) close() { c.http.CloseIdleConnections() }
