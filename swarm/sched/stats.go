package sched

import "fmt"

// Stats are a session's counters and a summary of its state, for tests,
// metrics and the simulator.
type Stats struct {
	Pieces      int // in the release
	Held        int // held (positions sharing a chunk counted each)
	Outstanding int // requests outstanding, the origin's included
	Origin      int // requests outstanding at the origin
	Awaiting    int // missing pieces left to a LAN wanter's share
	Wanters     int // the split set: this node and the LAN wanters in it (0 with the split off)
	Endgame     bool

	Requested   [3]int // requests issued, by class
	Received    [3]int // blocks received for missing pieces, by class
	Duplicate   int    // blocks for pieces already held
	Unrequested int    // blocks for missing pieces nobody asked for
	Cancelled   int    // requests cancelled
	Stalled     int    // requests given up after StallTicks
	DontHave    int    // dont-have answers
	BadBlocks   int    // blocks that failed verification
	Dropped     int    // peers dropped for too many strikes
	Excluded    int    // times a wanter was left out of the split for stalling
	Reinstated  int    // times an excluded wanter came back by bringing a piece
}

// Stats returns the session's counters and state summary.
func (s *Session) Stats() Stats {
	s.refresh()
	st := s.stats
	st.Pieces = s.n
	st.Held = s.held
	st.Outstanding = s.out
	st.Origin = s.originOut
	for _, slot := range s.wslots {
		st.Awaiting += int(s.awaitedBy[slot])
	}
	if !s.cfg.NoSplit {
		st.Wanters = 1 + len(s.wanters)
	}
	missing := s.n - s.held
	st.Endgame = !s.cfg.NoEndgame && missing > 0 && missing <= s.cfg.EndgameThreshold
	return st
}

func (st Stats) String() string {
	by := func(v [3]int) string { return fmt.Sprintf("lan=%d wan=%d origin=%d", v[LAN], v[WAN], v[Origin]) }
	return fmt.Sprintf("held=%d/%d outstanding=%d origin=%d awaiting=%d wanters=%d endgame=%v\n"+
		"requested %s\nreceived %s\n"+
		"duplicate=%d unrequested=%d cancelled=%d stalled=%d dont-have=%d bad=%d dropped=%d excluded=%d reinstated=%d",
		st.Held, st.Pieces, st.Outstanding, st.Origin, st.Awaiting, st.Wanters, st.Endgame,
		by(st.Requested), by(st.Received),
		st.Duplicate, st.Unrequested, st.Cancelled, st.Stalled, st.DontHave, st.BadBlocks, st.Dropped, st.Excluded, st.Reinstated)
}
