package sched

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// checkIndexes recomputes the indexes the session keeps only to decide
// faster (check covers the state that decisions are defined by): peers'
// positions, the room and ready bits, request chain heads, and the stall
// bound.
func checkIndexes(s *Session) error {
	s.refresh()
	if len(s.posSlot) != len(s.order) {
		return fmt.Errorf("%d positions' slots for %d peers", len(s.posSlot), len(s.order))
	}
	for k, p := range s.order {
		if int(p.pos) != k || s.posSlot[k] != p.idx {
			return fmt.Errorf("peer %s at %d has pos %d, slot %d at its position", p.id, k, p.pos, s.posSlot[k])
		}
		if len(p.have) != s.words || s.words > 0 && &p.have[0] != &s.row(int(p.idx))[0] {
			return fmt.Errorf("peer %s: its bitmap is not its slot's row", p.id)
		}
	}
	if len(s.wslots) != len(s.wanters) || len(s.wkeys) != len(s.wanters) {
		return fmt.Errorf("%d wanters, %d slots, %d keys", len(s.wanters), len(s.wslots), len(s.wkeys))
	}
	for i, w := range s.wanters {
		if s.wslots[i] != w.idx || s.wkeys[i] != idKey(w.id) {
			return fmt.Errorf("wanter %s: slot %d key %x listed", w.id, s.wslots[i], s.wkeys[i])
		}
	}
	for _, p := range s.order {
		if int(s.awaitedBy[p.idx]) != p.awaited {
			return fmt.Errorf("peer %s: awaitedBy %d, awaited %d", p.id, s.awaitedBy[p.idx], p.awaited)
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
	if s.dupsIdle && !s.dupsValid {
		return fmt.Errorf("endgame idle with its candidates stale")
	}
	if missing := s.n - s.held; s.dupsIdle && missing > 0 && missing <= s.cfg.EndgameThreshold && s.globalFree() {
		for _, p := range s.order {
			if i := s.pickDuplicate(p); p.free() > 0 && i >= 0 {
				return fmt.Errorf("endgame idle, but %s may be asked for %d", p.id, s.ord.pos(s.dups[i].q))
			}
		}
	}
	if s.dupsValid {
		kept, keptClass := slices.Clone(s.dups), s.dupClass
		s.dupsValid = false
		s.duplicates()
		fresh := s.dups
		s.dups, s.dupClass, s.dupsValid = kept, keptClass, true
		if !slices.Equal(kept, fresh) {
			return fmt.Errorf("endgame candidates %v, collected afresh %v", kept, fresh)
		}
		for _, d := range fresh {
			if !s.dupClass[d.class] {
				return fmt.Errorf("endgame candidate %v of a class marked empty", d)
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
