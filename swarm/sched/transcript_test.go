package sched

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestTranscripts runs the scripts in testdata/*.txt. Commands:
//
//	init pieces=N [self=ID] [seed=S] [first=(0,1,1,...)] [window=...]
//	     [origin-window=...] [max=...] [endgame=...] [dups=...] [stall=...]
//	     [share-stall=...] [strikes=...] [cap=...] [nosplit] [noendgame] [random]
//	ev        one event per input line (see parseEvent); prints errors or ok
//	next      Next's actions, checked against the naive reference picker
//	state     where every piece is, and every peer
//	stats     the counters
//
// Without seed the random order is the identity (ties go to the lowest
// piece), so that transcripts are easy to read. After every command the
// session's incremental state is checked against a recomputation.
// Regenerate with `go test -run TestTranscripts -rewrite` and review the
// diff.
func TestTranscripts(t *testing.T) {
	paths, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no transcripts in testdata: %v", err)
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			var s *Session
			datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
				if d.Cmd == "init" {
					var err error
					s, err = initSession(t, d)
					if err != nil {
						return "error: " + err.Error() + "\n"
					}
					return "ok\n"
				}
				if s == nil {
					d.Fatalf(t, "%s before init", d.Cmd)
				}
				var out string
				switch d.Cmd {
				case "ev":
					var b strings.Builder
					for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
						if err := applyEvent(s, line); err != nil {
							fmt.Fprintf(&b, "%s: error: %v\n", line, err)
						}
					}
					if b.Len() == 0 {
						b.WriteString("ok\n")
					}
					out = b.String()
				case "next":
					out = formatActions(nextChecked(t, s))
				case "state":
					out = formatState(s)
				case "stats":
					out = s.Stats().String() + "\n"
				default:
					d.Fatalf(t, "unknown command %q", d.Cmd)
				}
				if err := check(s); err != nil {
					t.Fatalf("%s: %v", d.Pos, err)
				}
				return out
			})
		})
	}
}

func initSession(t *testing.T, d *datadriven.TestData) (*Session, error) {
	intArg := func(key string) int {
		v := 0
		if d.HasArg(key) {
			d.ScanArgs(t, key, &v)
		}
		return v
	}
	cfg := Config{
		Window:            intArg("window"),
		OriginWindow:      intArg("origin-window"),
		SiteOriginWindow:  intArg("site-origin-window"),
		MaxOutstanding:    intArg("max"),
		EndgameThreshold:  intArg("endgame"),
		EndgameDuplicates: intArg("dups"),
		StallTicks:        intArg("stall"),
		ShareStallTicks:   intArg("share-stall"),
		MaxStrikes:        intArg("strikes"),
		RarityCap:         intArg("cap"),
		NoSplit:           d.HasArg("nosplit"),
		NoShare:           d.HasArg("noshare"),
		OriginFirst:       d.HasArg("origin-first"),
		NoEndgame:         d.HasArg("noendgame"),
	}
	if d.HasArg("random") {
		cfg.Strategy = Random
	}
	self := "a"
	d.MaybeScanArgs(t, "self", &self)
	n := intArg("pieces")
	var first []int
	if a, ok := d.Arg("first"); ok {
		for _, v := range a.Vals {
			f, err := strconv.Atoi(v)
			if err != nil {
				d.Fatalf(t, "first: %v", err)
			}
			first = append(first, f)
		}
		n = len(first)
		if err := checkFirst(first); err != nil {
			return nil, err
		}
	}
	seed := -1
	d.MaybeScanArgs(t, "seed", &seed)
	return newSession(cfg, self, n, first, rand.New(rand.NewPCG(uint64(seed), 0)), seed < 0)
}

// applyEvent parses one event line and steps it:
//
//	add ID CLASS          remove ID         wants ID [off]    noshare ID
//	has ID PIECES         bitmap ID 0110... have PIECES
//	recv SRC P            donthave SRC P    bad SRC P
//	tick [N]              origin up|down
//
// SRC is a peer ID or "origin"; PIECES are numbers and ranges like 3-7;
// "" is the empty string.
func applyEvent(s *Session, line string) error {
	f := strings.Fields(line)
	if len(f) == 0 {
		return fmt.Errorf("empty event")
	}
	arg := func(i int) string {
		if i < len(f) && f[i] != `""` {
			return f[i]
		}
		return ""
	}
	src := func() string {
		if arg(1) == "origin" {
			return ""
		}
		return arg(1)
	}
	num := func(i int) int {
		v, err := strconv.Atoi(arg(i))
		if err != nil {
			panic(fmt.Sprintf("%q: %v", line, err))
		}
		return v
	}
	switch f[0] {
	case "add":
		c, ok := map[string]Class{"lan": LAN, "wan": WAN, "origin": Origin}[arg(2)]
		if !ok {
			c = Class(9)
		}
		return s.AddPeer(arg(1), c)
	case "remove":
		return s.RemovePeer(src())
	case "wants":
		return s.PeerWants(src(), arg(2) != "off")
	case "noshare":
		return s.PeerNoShare(src())
	case "has", "have":
		start := 2
		if f[0] == "have" {
			start = 1
		}
		for _, p := range parsePieces(f[start:]) {
			var err error
			if f[0] == "has" {
				err = s.PeerHas(src(), p)
			} else {
				err = s.Have(p)
			}
			if err != nil {
				return err
			}
		}
		return nil
	case "bitmap":
		bits := strings.ReplaceAll(arg(2), "_", "")
		bm := make([]byte, (len(bits)+7)/8)
		for i, c := range bits {
			if c == '1' {
				bm[i/8] |= 0x80 >> (i % 8)
			}
		}
		return s.PeerHasBitmap(src(), bm)
	case "recv":
		return s.Received(src(), num(2))
	case "donthave":
		return s.DontHave(src(), num(2))
	case "bad":
		return s.BadBlock(src(), num(2))
	case "tick":
		n := 1
		if len(f) > 1 {
			n = num(1)
		}
		for range n {
			s.Tick()
		}
		return nil
	case "origin":
		s.SetOrigin(arg(1) == "up")
		return nil
	}
	panic(fmt.Sprintf("unknown event %q", line))
}

func parsePieces(args []string) []int {
	var ps []int
	for _, a := range args {
		for _, part := range strings.Split(a, ",") {
			if v, err := strconv.Atoi(part); err == nil {
				ps = append(ps, v)
				continue
			}
			lo, hi, isRange := strings.Cut(part, "-")
			l, err := strconv.Atoi(lo)
			if err != nil {
				panic(err)
			}
			h := l
			if isRange {
				if h, err = strconv.Atoi(hi); err != nil {
					panic(err)
				}
			}
			for p := l; p <= h; p++ {
				ps = append(ps, p)
			}
		}
	}
	return ps
}

// nextChecked calls Next and fails the test unless the naive reference
// picker chooses exactly the same requests.
func nextChecked(t fataler, s *Session) Actions {
	t.Helper()
	s.refresh()
	want := naiveNext(s)
	a := s.Next()
	if !slices.Equal(a.Request, want) && (len(want) > 0 || len(a.Request) > 0) {
		t.Fatalf("Next requests %v, naive reference %v", a.Request, want)
	}
	return a
}

func formatActions(a Actions) string {
	var b strings.Builder
	for _, r := range a.Cancel {
		fmt.Fprintf(&b, "cancel %v\n", r)
	}
	for _, r := range a.Request {
		fmt.Fprintf(&b, "request %v\n", r)
	}
	for _, id := range a.Dropped {
		fmt.Fprintf(&b, "dropped %s\n", id)
	}
	if b.Len() == 0 {
		return "(nothing)\n"
	}
	return b.String()
}

// formatState lists the pieces by place (pools with their holder counts,
// requested pieces with their sources, awaited ones with their owner),
// then the peers.
func formatState(s *Session) string {
	s.refresh()
	var held, alias, origin []int
	var requested, lan, wan, await []string
	for pos := range s.n {
		q := s.ord.rank(pos)
		st := s.pcs[q]
		switch st.place {
		case placeHeld:
			held = append(held, pos)
		case placeAlias:
			alias = append(alias, pos)
		case placeOrigin:
			origin = append(origin, pos)
		case placeLAN:
			lan = append(lan, fmt.Sprintf("%d(%d)", pos, st.lan))
		case placeWAN:
			wan = append(wan, fmt.Sprintf("%d(%d)", pos, st.wan))
		case placeAwait:
			await = append(await, fmt.Sprintf("%d→%s", pos, s.slots[st.owner].id))
		case placeRequested:
			var srcs []string
			for ri := s.head[q]; ri >= 0; ri = s.reqs[ri].next {
				if r := s.reqs[ri]; r.src < 0 {
					srcs = append(srcs, "origin")
				} else {
					srcs = append(srcs, s.slots[r.src].id)
				}
			}
			slices.Sort(srcs)
			requested = append(requested, fmt.Sprintf("%d@%s", pos, strings.Join(srcs, ",")))
		}
	}
	var b strings.Builder
	line := func(name string, items []string) {
		if len(items) > 0 {
			fmt.Fprintf(&b, "%s: %s\n", name, strings.Join(items, " "))
		}
	}
	line("held", ranges(held))
	line("alias", ranges(alias))
	line("requested", requested)
	line("lan", lan)
	line("wan", wan)
	line("origin", ranges(origin))
	line("await", await)
	for _, p := range s.order {
		fmt.Fprintf(&b, "peer %s %v out=%d/%d", p.id, p.class, p.out, p.window)
		if p.strikes > 0 {
			fmt.Fprintf(&b, " strikes=%d", p.strikes)
		}
		var has []int
		for pos := range s.n {
			if p.has(s.ord.rank(pos)) {
				has = append(has, pos)
			}
		}
		if len(has) > 0 {
			fmt.Fprintf(&b, " has=%s", strings.Join(ranges(has), ","))
		}
		switch {
		case p.wants && p.excluded:
			b.WriteString(" wants(excluded)")
		case p.wants:
			b.WriteString(" wants")
		}
		if p.noShare {
			b.WriteString(" noshare")
		}
		b.WriteString("\n")
	}
	if !s.originUp {
		b.WriteString("origin down\n")
	}
	return b.String()
}

// ranges prints sorted numbers with runs folded: 0-3 5 7-8.
func ranges(ns []int) []string {
	var out []string
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if j > i {
			out = append(out, fmt.Sprintf("%d-%d", ns[i], ns[j]))
		} else {
			out = append(out, strconv.Itoa(ns[i]))
		}
		i = j + 1
	}
	return out
}
