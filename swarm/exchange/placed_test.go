package exchange_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/shoalnet/shoal/swarm/exchange"
	"github.com/shoalnet/shoal/swarm/sched"
)

// The installer's deliver only queues a chunk for a writer goroutine; the
// chunk is written a moment later and announced then, with Placed (FetchAll
// itself announces nothing). A site of three splitting the uplink: every node
// completes, the origin serves each chunk once, and no node is ever asked
// for a chunk it announced but had not written yet. Announced on delivery
// instead, peers ask for such chunks, hear "corrupt", forget that the
// owner holds them and, the owner never announcing them again, wait for
// them until the deadline (ShareStallTicks is out of reach).
func TestPlacedAnnouncesAfterTheWrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rl := makeRelease(t, 2<<20, 21, smallParams)
	org := newOrigin(rl)
	nodes := []*node{newNode(t, "a", exchange.Config{}), newNode(t, "b", exchange.Config{}), newNode(t, "c", exchange.Config{})}
	connect(nodes[0], nodes[1], sched.LAN)
	connect(nodes[0], nodes[2], sched.LAN)
	connect(nodes[1], nodes[2], sched.LAN)
	cfg := exchange.DownloadConfig{Origin: org, TickPeriod: 10 * time.Millisecond,
		Sched: sched.Config{StallTicks: 100000, ShareStallTicks: 100000}}
	ds := make([]*exchange.Download, len(nodes))
	for i, n := range nodes {
		ds[i], _ = n.prepare(t, rl, cfg)
	}
	for _, n := range nodes {
		announced(t, n, rl.id, len(nodes)-1)
	}
	want := rl.unique()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fetchWritingLater(ctx, ds[i], n.slot, rl, want)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("download %s: %v", nodes[i].id, err)
		}
	}
	for _, n := range nodes {
		if !bytes.Equal(n.slot.b, rl.data) {
			t.Errorf("%s: slot differs from the release", n.id)
		}
		if l := n.log.String(); bytes.Contains([]byte(l), []byte("cannot serve")) {
			t.Errorf("%s was asked for a chunk it could not serve:\n%s", n.id, l)
		}
	}
	org.mu.Lock()
	defer org.mu.Unlock()
	for p, c := range org.count {
		if c != 1 {
			t.Errorf("origin served %s %d times", p, c)
		}
	}
}

// fetchWritingLater runs FetchAll with a deliver that hands each chunk to
// a writer goroutine, which writes it into the slot after a short delay
// and only then calls Placed: the installer's shape.
func fetchWritingLater(ctx context.Context, d *exchange.Download, slot *memSlot, rl *release, want []cid.Cid) error {
	type job struct {
		data []byte
		pos  []int
	}
	jobs := make(chan job, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for j := range jobs {
			time.Sleep(2 * time.Millisecond)
			for _, p := range j.pos {
				slot.WriteAt(j.data, rl.off[p])
			}
			d.Placed(j.pos)
		}
	}()
	err := d.FetchAll(ctx, want, func(id cid.Cid, data []byte) error {
		pos := rl.pos[id]
		if len(pos) == 0 || !bytes.Equal(data, rl.chunk(pos[0])) {
			return fmt.Errorf("%w: %s", exchange.ErrBadChunk, id)
		}
		jobs <- job{data, pos}
		return nil
	})
	close(jobs)
	<-done
	return err
}
