package swarm

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoalnet/shoal/swarm/announce"
)

// recorder is a validator that rejects "forged..." and ignores "stale...",
// accepts the rest, and remembers what it saw.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) validate(_ context.Context, _ peer.ID, data []byte) ValidationResult {
	r.mu.Lock()
	r.seen = append(r.seen, string(data))
	r.mu.Unlock()
	switch {
	case strings.HasPrefix(string(data), "forged"):
		return Reject
	case strings.HasPrefix(string(data), "stale"):
		return Ignore
	}
	return Accept
}

func (r *recorder) saw(prefix string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.seen {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func acceptAll(context.Context, peer.ID, []byte) ValidationResult { return Accept }

// TestGossipRelayAndValidation: A and C know only B (DHT clients, so B
// does not introduce them). An announcement A publishes reaches C through
// B; one B ignores (stale) or rejects (forged) dies at B and never reaches
// C's validator; only the forged one lowers B's score of A.
func TestGossipRelayAndValidation(t *testing.T) {
	b := newTestHost(t, nil)
	a := newTestHost(t, func(c *HostConfig) { c.Bootstrap = b.Addrs(); c.DHT = DHTClient })
	c := newTestHost(t, func(c *HostConfig) { c.Bootstrap = b.Addrs(); c.DHT = DHTClient })

	var bv, cv recorder
	ra, err := a.JoinReleases("stable", acceptAll) // A forges: it accepts anything
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.JoinReleases("stable", bv.validate)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.JoinReleases("stable", cv.validate)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/shoal/" + testFleet + "/releases/stable"; rb.Topic() != want {
		t.Errorf("topic %s, want %s", rb.Topic(), want)
	}
	eventually(t, 10*time.Second, "topic peers known", func() bool {
		return slices.Contains(ra.Peers(), b.ID()) && slices.Contains(rc.Peers(), b.ID()) &&
			slices.Contains(rb.Peers(), a.ID()) && slices.Contains(rb.Peers(), c.ID())
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	expect := func(want string) {
		t.Helper()
	next:
		select {
		case m, ok := <-rc.Messages():
			if !ok {
				t.Fatal("C's messages closed")
			}
			if strings.HasPrefix(string(m.Data), "warm-up") {
				goto next // a late copy of the warm-up
			}
			if string(m.Data) != want || m.From != a.ID() || m.ReceivedFrom != b.ID() {
				t.Fatalf("C got %q from %s via %s, want %q from A via B", m.Data, m.From, m.ReceivedFrom, want)
			}
		case <-ctx.Done():
			t.Fatalf("C never got %q (B saw %q, C saw %q)", want, bv.saw(""), cv.saw(""))
		}
	}

	// Warm up: a relay forwards only to its mesh, which forms at its
	// heartbeats (every second) after the subscriptions are known, and a
	// message that arrives before then reaches the others only by later
	// gossip, if at all. Publish until C hears one, then give B one more
	// heartbeat to graft C if it heard it by gossip.
	for i := 0; ; i++ {
		if err := ra.Publish(ctx, []byte(fmt.Sprintf("warm-up %d", i))); err != nil {
			t.Fatal(err)
		}
		select {
		case <-rc.Messages():
		case <-time.After(300 * time.Millisecond):
			if ctx.Err() != nil {
				t.Fatal("the mesh never formed")
			}
			continue
		}
		break
	}
	time.Sleep(1100 * time.Millisecond)
	for len(rc.Messages()) > 0 {
		<-rc.Messages()
	}

	// Ignored: dropped at B, A's score untouched.
	if err := ra.Publish(ctx, []byte("stale v0")); err != nil {
		t.Fatal(err)
	}
	if err := ra.Publish(ctx, []byte("release v1")); err != nil {
		t.Fatal(err)
	}
	expect("release v1")
	eventually(t, 5*time.Second, "B ignored the stale announcement", func() bool { return len(bv.saw("stale")) == 1 })
	time.Sleep(2 * scoreInspectPeriod)
	if s := b.GossipScore(a.ID()); s < 0 {
		t.Errorf("B's score of A is %v after an ignored announcement, want >= 0", s)
	}

	// Rejected: dropped at B, A penalised.
	if err := ra.Publish(ctx, []byte("forged v9")); err != nil {
		t.Fatal(err)
	}
	if err := ra.Publish(ctx, []byte("release v2")); err != nil {
		t.Fatal(err)
	}
	expect("release v2")
	eventually(t, 5*time.Second, "B's score of A falls below 0 after a forged announcement", func() bool {
		return b.GossipScore(a.ID()) < 0
	})
	t.Logf("B's score of A after one forged announcement: %v", b.GossipScore(a.ID()))
	if got := bv.saw("forged"); len(got) != 1 {
		t.Errorf("B's validator saw %v, want the forged announcement once", got)
	}

	time.Sleep(300 * time.Millisecond)
	if got := cv.saw("stale"); len(got) != 0 {
		t.Errorf("C's validator saw %v: B relayed an ignored announcement", got)
	}
	if got := cv.saw("forged"); len(got) != 0 {
		t.Errorf("C's validator saw %v: B relayed a forged announcement", got)
	}
	for len(rc.Messages()) > 0 {
		if m := <-rc.Messages(); !strings.HasPrefix(string(m.Data), "warm-up") {
			t.Errorf("C got an extra message %q", m.Data)
		}
	}
	select {
	case m := <-ra.Messages():
		t.Errorf("A got %q back: a host's own publications are not delivered to it", m.Data)
	default:
	}
	if a.Connected(c.ID()) {
		t.Error("A and C are connected: the test did not show relaying through B")
	}
}

func TestJoinReleasesRefuses(t *testing.T) {
	h := newTestHost(t, nil)
	if _, err := h.JoinReleases("a/b", acceptAll); err == nil {
		t.Error("channel with a slash accepted")
	}
	if _, err := h.JoinReleases("stable", nil); err == nil {
		t.Error("nil validator accepted")
	}
	r, err := h.JoinReleases("stable", acceptAll)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.JoinReleases("stable", acceptAll); err == nil {
		t.Error("joined the same channel twice")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Publish(ctx, make([]byte, MaxAnnouncementSize+1)); err == nil {
		t.Error("oversized announcement published")
	}
	// A host's own publication passes its validator: one it rejects fails.
	var v recorder
	rs, err := h.JoinReleases("beta", v.validate)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Publish(ctx, []byte("forged")); err == nil {
		t.Error("published an announcement its own validator rejects")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-r.Messages(); ok {
		t.Error("Messages open after Close")
	}
	if _, err := h.JoinReleases("stable", acceptAll); err != nil {
		t.Errorf("rejoining after Close: %v", err)
	}
}

// TestGossipFitsAnnouncements: the topic name and size limit agree with
// the announcement format's.
func TestGossipFitsAnnouncements(t *testing.T) {
	if MaxAnnouncementSize < announce.MaxSize {
		t.Errorf("gossip carries %d bytes, an announcement may have %d", MaxAnnouncementSize, announce.MaxSize)
	}
	if a, b := ReleasesTopic("plant-7", "stable"), announce.Topic("plant-7", "stable"); a != b {
		t.Errorf("topic %s, announcements say %s", a, b)
	}
}

// TestGossipLargeAnnouncement sends an announcement of the largest size
// from one host to another.
func TestGossipLargeAnnouncement(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, func(c *HostConfig) { c.Bootstrap = a.Addrs() })
	ra, err := a.JoinReleases("stable", acceptAll)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.JoinReleases("stable", acceptAll)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "topic peers known", func() bool { return slices.Contains(ra.Peers(), b.ID()) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := make([]byte, MaxAnnouncementSize)
	big[0], big[len(big)-1] = 'x', 'y'
	if err := ra.Publish(ctx, big); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-rb.Messages():
		if len(m.Data) != len(big) || m.Data[len(big)-1] != 'y' {
			t.Errorf("got %d bytes, want %d", len(m.Data), len(big))
		}
	case <-ctx.Done():
		t.Fatal("the largest announcement did not arrive")
	}
}
