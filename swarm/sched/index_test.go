package sched

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"pgregory.net/rapid"
)

// checkIndexes recomputes the indexes the session keeps only to decide
// faster (check covers the state that decisions are defined by): peers'
// positions, the room and ready bits, request chain heads, and the stall
// bound.
func checkIndexes(s *Session) error {
	for k, p := range s.order {
		if int(p.pos) != k {
			return fmt.Errorf("peer %s at %d has pos %d", p.id, k, p.pos)
		}
	}
	for k := range len(s.room) * 64 {
		room, ready := false, false
		if k < len(s.order) {
			p := s.order[k]
			room = p.free() > 0
			ready = room && p.useful > 0
		}
		if hasBit(s.room, int32(k)) != room || hasBit(s.ready, int32(k)) != ready {
			return fmt.Errorf("position %d: room %v ready %v, want %v %v", k, hasBit(s.room, int32(k)), hasBit(s.ready, int32(k)), room, ready)
		}
	}
	for ri, r := range s.reqs {
		if !r.live {
			continue
		}
		if h := s.head[r.q] == int32(ri); h != r.head {
			return fmt.Errorf("request %d: head %v, want %v", ri, r.head, h)
		}
		if r.src >= 0 {
			since := max(r.issued, s.slots[r.src].lastRecv)
			if since+int64(s.cfg.StallTicks) < s.stallAt {
				return fmt.Errorf("request %d may stall at %d, before the bound %d", ri, since+int64(s.cfg.StallTicks), s.stallAt)
			}
		}
	}
	return nil
}

// TestIndexes steps random event sequences, as TestProperties does, and
// checks the session's indexes after every step.
func TestIndexes(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		n := rapid.IntRange(0, 40).Draw(t, "pieces")
		first := genFirst(t, n)
		s, err := newSession(cfg, "a", n, first, rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 1)), false)
		if err != nil {
			t.Fatal(err)
		}
		for range rapid.IntRange(0, 150).Draw(t, "steps") {
			e := genEvent(n).Draw(t, "event")
			if e.kind == "next" {
				checkNext(t, s)
			} else {
				apply(s, e)
			}
			if err := check(s); err != nil {
				t.Fatalf("after %v: %v", e, err)
			}
			if err := checkIndexes(s); err != nil {
				t.Fatalf("after %v: %v", e, err)
			}
		}
	})
}

// TestSiteIndexes runs the site model with the indexes checked after
// every event.
func TestSiteIndexes(t *testing.T) {
	for _, c := range siteCases {
		t.Run(c.name, func(t *testing.T) {
			sp := c.sp
			sp.seed = 9
			m := newSiteModel(t, sp)
			for m.event() {
				if err := checkIndexes(m.s); err != nil {
					t.Fatalf("event %d: %v", m.events, err)
				}
			}
		})
	}
}
