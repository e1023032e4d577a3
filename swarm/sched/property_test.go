package sched

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// An event of a random sequence. It is plain data, so one sequence can be
// replayed: the events that answer requests pick the k-th live one.
type event struct {
	kind  string
	id    string
	class Class
	piece int
	on    bool
	k     int
	bits  []byte
}

func (e event) String() string {
	return fmt.Sprintf("%s(%s %v %d %v k=%d %x)", e.kind, e.id, e.class, e.piece, e.on, e.k, e.bits)
}

var peerPool = []string{"b", "c", "d", "e", "f", "g"}

func genConfig(t *rapid.T) Config {
	cfg := Config{
		Window:            rapid.IntRange(1, 3).Draw(t, "window"),
		OriginWindow:      rapid.IntRange(1, 3).Draw(t, "originWindow"),
		MaxOutstanding:    rapid.IntRange(0, 8).Draw(t, "max"),
		EndgameThreshold:  rapid.IntRange(1, 40).Draw(t, "endgame"),
		EndgameDuplicates: rapid.IntRange(1, 3).Draw(t, "dups"),
		NoEndgame:         rapid.Bool().Draw(t, "noEndgame"),
		StallTicks:        rapid.IntRange(1, 4).Draw(t, "stall"),
		ShareStallTicks:   rapid.IntRange(1, 6).Draw(t, "shareStall"),
		MaxStrikes:        rapid.IntRange(1, 4).Draw(t, "strikes"),
		RarityCap:         rapid.IntRange(1, 4).Draw(t, "cap"),
		NoSplit:           rapid.Bool().Draw(t, "noSplit"),
		NoShare:           rapid.Bool().Draw(t, "noShare"),
		OriginFirst:       rapid.Bool().Draw(t, "originFirst"),
		SiteOriginWindow:  rapid.IntRange(0, 6).Draw(t, "siteOriginWindow"),
	}
	if rapid.Bool().Draw(t, "random") {
		cfg.Strategy = Random
	}
	return cfg
}

// genFirst draws a dedup map (nil for none) of n positions.
func genFirst(t *rapid.T, n int) []int {
	if n == 0 || !rapid.Bool().Draw(t, "dedup") {
		return nil
	}
	first := make([]int, n)
	for i := range first {
		first[i] = i
		if i > 0 && rapid.IntRange(0, 3).Draw(t, "dup") == 0 {
			first[i] = first[rapid.IntRange(0, i-1).Draw(t, "of")]
		}
	}
	return first
}

func genEvent(n int) *rapid.Generator[event] {
	return rapid.Custom(func(t *rapid.T) event {
		kinds := []string{"add", "add", "remove", "has", "has", "has", "bitmap", "wants", "have",
			"answer", "answer", "answer", "answer", "recv", "donthave", "donthave-req", "bad", "bad-req",
			"tick", "tick", "tick", "origin", "next", "next", "next", "next"}
		e := event{kind: rapid.SampledFrom(kinds).Draw(t, "kind")}
		e.id = rapid.SampledFrom(append(slices.Clone(peerPool), "", "zz")).Draw(t, "id")
		e.class = rapid.SampledFrom([]Class{LAN, WAN, LAN, WAN, Origin}).Draw(t, "class")
		e.piece = rapid.IntRange(-1, n).Draw(t, "piece")
		e.on = rapid.Bool().Draw(t, "on")
		e.k = rapid.IntRange(0, 100).Draw(t, "k")
		if e.kind == "bitmap" {
			size := (n + 7) / 8
			if rapid.IntRange(0, 9).Draw(t, "badSize") == 0 {
				size = rapid.IntRange(0, size+1).Draw(t, "size")
			}
			e.bits = rapid.SliceOfN(rapid.Byte(), size, size).Draw(t, "bits")
			if n%8 != 0 && size == (n+7)/8 && rapid.IntRange(0, 4).Draw(t, "spare") > 0 {
				e.bits[size-1] &^= 0xff >> (n % 8)
			}
		}
		return e
	})
}

// liveRequest returns the k-th live request (by index), or ok false.
func liveRequest(s *Session, k int) (Request, bool) {
	var live []Request
	for _, r := range s.reqs {
		if r.live {
			live = append(live, s.request(r))
		}
	}
	if len(live) == 0 {
		return Request{}, false
	}
	return live[k%len(live)], true
}

// apply steps e; for next it returns Next's actions.
func apply(s *Session, e event) (Actions, error) {
	switch e.kind {
	case "add":
		return Actions{}, s.AddPeer(e.id, e.class)
	case "remove":
		return Actions{}, s.RemovePeer(e.id)
	case "has":
		return Actions{}, s.PeerHas(e.id, e.piece)
	case "bitmap":
		return Actions{}, s.PeerHasBitmap(e.id, e.bits)
	case "wants":
		return Actions{}, s.PeerWants(e.id, e.on)
	case "have":
		return Actions{}, s.Have(e.piece)
	case "answer", "donthave-req", "bad-req":
		r, ok := liveRequest(s, e.k)
		if !ok {
			return Actions{}, nil
		}
		switch e.kind {
		case "donthave-req":
			return Actions{}, s.DontHave(r.Source, r.Piece)
		case "bad-req":
			return Actions{}, s.BadBlock(r.Source, r.Piece)
		}
		return Actions{}, s.Received(r.Source, r.Piece)
	case "recv":
		return Actions{}, s.Received(e.id, e.piece)
	case "donthave":
		return Actions{}, s.DontHave(e.id, e.piece)
	case "bad":
		return Actions{}, s.BadBlock(e.id, e.piece)
	case "tick":
		s.Tick()
		return Actions{}, nil
	case "origin":
		s.SetOrigin(e.on)
		return Actions{}, nil
	case "next":
		return s.Next(), nil
	}
	panic(e.kind)
}

// fingerprint is everything observable about the session's state.
func fingerprint(s *Session) string {
	return fmt.Sprintf("%s%v tick=%d cancels=%v dropped=%v", formatState(s), s.Stats(), s.tick, s.cancels, s.dropped)
}

var sentinels = []error{ErrBadConfig, ErrBadPiece, ErrUnknownPeer, ErrBadPeer, ErrBadBitmap}

// TestProperties steps random event sequences (random configs, peers that
// come and go, haves, bitmaps, answers, faults, ticks, the origin going
// away) and checks after every step: refused events wrap a sentinel and
// change nothing; the incremental state matches a recomputation (check);
// Next chooses exactly what the naive reference picker chooses; and no
// request is for a piece held, to a peer not known to hold the piece, to a
// source already asked for it, beyond a window or the global bound, or
// (outside the endgame) for a piece outstanding elsewhere.
func TestProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		n := rapid.IntRange(0, 40).Draw(t, "pieces")
		first := genFirst(t, n)
		s, err := newSession(cfg, "a", n, first, rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 1)), false)
		if err != nil {
			t.Fatal(err)
		}
		cfg = s.Config()
		for range rapid.IntRange(0, 150).Draw(t, "steps") {
			e := genEvent(n).Draw(t, "event")
			if e.kind == "next" {
				checkNext(t, s)
			} else {
				before := fingerprint(s)
				_, err := apply(s, e)
				if err != nil {
					if !slices.ContainsFunc(sentinels, func(x error) bool { return errors.Is(err, x) }) {
						t.Fatalf("%v: error %v wraps no sentinel", e, err)
					}
					if after := fingerprint(s); after != before {
						t.Fatalf("%v: refused (%v) but changed the state:\n%s\nto\n%s", e, err, before, after)
					}
				}
			}
			if err := check(s); err != nil {
				t.Fatalf("after %v: %v", e, err)
			}
		}
	})
}

// checkNext calls Next (through nextChecked, which compares it with the
// naive picker) and checks each request against the state before it.
func checkNext(t fataler, s *Session) Actions {
	t.Helper()
	cfg := s.cfg
	s.refresh()
	type key struct {
		piece int
		src   string
	}
	outstanding := map[key]bool{}
	perPiece := map[int]int{}
	perSource := map[string]int{}
	for _, r := range s.reqs {
		if r.live {
			req := s.request(r)
			outstanding[key{req.Piece, req.Source}] = true
			perPiece[req.Piece]++
			perSource[req.Source]++
		}
	}
	total := s.out
	held := func(pos int) bool { pl := s.pcs[s.ord.rank(pos)].place; return pl == placeHeld || pl == placeAlias }
	hasIt := map[key]bool{}
	lanHolds := map[int]bool{}
	windows := map[string]int{"": cfg.OriginWindow}
	for _, p := range s.order {
		windows[p.id] = p.window
		for pos := range s.n {
			if p.has(s.ord.rank(pos)) {
				hasIt[key{pos, p.id}] = true
				if p.class == LAN {
					lanHolds[pos] = true
				}
			}
		}
	}
	var wanters []string
	for _, w := range s.wanters {
		wanters = append(wanters, w.id)
	}
	if !cfg.NoShare || len(wanters) == 0 {
		wanters = append(wanters, s.self)
	}
	endgame := !cfg.NoEndgame && s.n-s.held > 0 && s.n-s.held <= cfg.EndgameThreshold
	a := nextChecked(t, s)
	fresh := map[string]int{}
	for _, r := range a.Request {
		k := key{r.Piece, r.Source}
		switch {
		case held(r.Piece):
			t.Fatalf("%v: piece held", r)
		case r.Class != Origin && !hasIt[k]:
			t.Fatalf("%v: the peer is not known to hold it", r)
		case outstanding[k]:
			t.Fatalf("%v: asked twice", r)
		case !endgame && perPiece[r.Piece] > 0:
			t.Fatalf("%v: outstanding elsewhere outside the endgame", r)
		case r.Class != LAN && lanHolds[r.Piece]:
			t.Fatalf("%v: a LAN peer holds it", r)
		case r.Class != LAN && !cfg.NoSplit && Owner(r.Piece, wanters) != s.self && !s.pcs[s.ord.rank(r.Piece)].ours:
			t.Fatalf("%v: %s's share, not ours (%v)", r, Owner(r.Piece, wanters), wanters)
		case r.Class == WAN && cfg.OriginFirst && s.originUp:
			t.Fatalf("%v: from the WAN while the origin is up (origin first)", r)
		case s.first != nil && s.first[r.Piece] != r.Piece:
			t.Fatalf("%v: not a first position", r)
		}
		outstanding[k] = true
		perPiece[r.Piece]++
		perSource[r.Source]++
		fresh[r.Source]++
		total++
	}
	for src := range fresh {
		if perSource[src] > windows[src] {
			t.Fatalf("source %q: %d outstanding, window %d", src, perSource[src], windows[src])
		}
	}
	if cfg.MaxOutstanding > 0 && len(a.Request) > 0 && total > cfg.MaxOutstanding {
		t.Fatalf("%d outstanding, bound %d", total, cfg.MaxOutstanding)
	}
	for p, c := range perPiece {
		if c > 1+cfg.EndgameDuplicates {
			t.Fatalf("piece %d: %d requests", p, c)
		}
	}
	return a
}

type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// TestDeterminism replays one random sequence twice with the same seed:
// the transcripts (every action and error) are identical.
func TestDeterminism(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		n := rapid.IntRange(1, 40).Draw(t, "pieces")
		seed := rapid.Uint64().Draw(t, "seed")
		events := rapid.SliceOfN(genEvent(n), 0, 150).Draw(t, "events")
		run := func() string {
			s, err := New(cfg, "a", n, rand.New(rand.NewPCG(seed, 2)))
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, e := range events {
				a, err := apply(s, e)
				fmt.Fprintf(&b, "%v %v %v %v\n", a.Cancel, a.Request, a.Dropped, err)
			}
			fmt.Fprintf(&b, "%v\n", s.Stats())
			return b.String()
		}
		if one, two := run(), run(); one != two {
			t.Fatalf("two runs differ:\n%s\n%s", one, two)
		}
	})
}

// TestTerminates: after any random history, a session with the origin up
// finishes once the world behaves: peers answer some requests, stall on
// others or say dont-have, others come and go, LAN wanters that never
// bring their share in stay present, and ticks pass. Nothing waits
// forever: stalled requests go elsewhere, peers that keep stalling are
// dropped, wanters that do not deliver are left out of the split.
func TestTerminates(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := genConfig(t)
		n := rapid.IntRange(0, 30).Draw(t, "pieces")
		s, err := newSession(cfg, "a", n, genFirst(t, n), rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "seed"), 3)), false)
		if err != nil {
			t.Fatal(err)
		}
		for range rapid.IntRange(0, 100).Draw(t, "history") {
			apply(s, genEvent(n).Draw(t, "event"))
		}
		s.SetOrigin(true)
		// The origin's fetcher ends every request, with the chunk or a
		// failure (the scheduler leaves origin stalls to it): those the
		// history left open fail now.
		for ri := range s.reqs {
			if r := s.reqs[ri]; r.live && r.src < 0 {
				s.DontHave("", s.ord.pos(r.q))
			}
		}
		// How each peer behaves from now on: answers, stalls, or says
		// dont-have; some churn as the world goes on.
		behaviour := map[string]int{}
		rng := rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "world"), 4))
		limit := (n + 1) * (cfg.StallTicks + cfg.ShareStallTicks + 2) * (cfg.MaxStrikes + 2) * 4
		for round := 0; !s.Done(); round++ {
			if round > limit {
				t.Fatalf("not done after %d rounds: %v\n%s", round, s.Stats(), formatState(s))
			}
			a := checkNext(t, s)
			for _, r := range a.Request {
				if r.Class == Origin {
					if rng.IntN(3) > 0 {
						s.Received("", r.Piece)
					} else {
						s.DontHave("", r.Piece)
					}
					continue
				}
				b, ok := behaviour[r.Source]
				if !ok {
					b = rng.IntN(4)
					behaviour[r.Source] = b
				}
				switch b {
				case 0, 1: // answers
					s.Received(r.Source, r.Piece)
				case 2: // stalls
				case 3:
					s.DontHave(r.Source, r.Piece)
				}
			}
			if round < limit/4 && rng.IntN(5) == 0 {
				// Churn: a peer joins or leaves, maybe wanting the release
				// and holding a few pieces.
				id := peerPool[rng.IntN(len(peerPool))]
				if s.AddPeer(id, Class(rng.IntN(2))) != nil {
					s.RemovePeer(id)
				} else {
					s.PeerWants(id, rng.IntN(2) == 0)
					for range rng.IntN(3) {
						s.PeerHas(id, rng.IntN(n+1)-1)
					}
				}
			}
			s.Tick()
			if err := check(s); err != nil {
				t.Fatal(err)
			}
		}
	})
}
