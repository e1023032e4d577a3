package sched

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

const (
	benchPieces = 16384
	benchPeers  = 50 // 10 LAN, 40 WAN
)

// benchSession is a session of 16k pieces with 50 peers that each hold a
// random half of them (so rarity varies); with split, the LAN peers also
// fetch the release.
func benchSession(b *testing.B, seed uint64, split bool) *Session {
	rng := rand.New(rand.NewPCG(seed, 11))
	s, err := New(Config{NoSplit: !split}, "self", benchPieces, rand.New(rand.NewPCG(seed, 12)))
	if err != nil {
		b.Fatal(err)
	}
	bm := make([]byte, benchPieces/8)
	for i := range benchPeers {
		id := fmt.Sprintf("peer-%02d", i)
		class := WAN
		if i < 10 {
			class = LAN
		}
		if err := s.AddPeer(id, class); err != nil {
			b.Fatal(err)
		}
		for j := range bm {
			bm[j] = byte(rng.Uint32())
		}
		if split && class == LAN {
			s.PeerWants(id, true)
			clear(bm) // a wanter starts with nothing
		}
		if err := s.PeerHasBitmap(id, bm); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkReceivedNext is the steady state of a download: one block
// arrives (Received), the next request goes out (Next). One op is one
// Received plus one Next, over whole downloads of 16k pieces from 50
// peers.
func BenchmarkReceivedNext(b *testing.B) {
	for _, split := range []bool{false, true} {
		b.Run(fmt.Sprintf("split=%v", split), func(b *testing.B) {
			var s *Session
			var fifo []Request
			seed := uint64(0)
			for b.Loop() {
				if s == nil || len(fifo) == 0 {
					b.StopTimer()
					seed++
					s = benchSession(b, seed, split)
					fifo = append(fifo[:0], s.Next().Request...)
					b.StartTimer()
				}
				r := fifo[0]
				fifo = fifo[1:]
				s.Received(r.Source, r.Piece)
				fifo = append(fifo, s.Next().Request...)
				if s.Done() {
					s = nil
				}
			}
		})
	}
}

// BenchmarkNextIdle is Next when every window is full: the scan over
// peers that finds nothing to do.
func BenchmarkNextIdle(b *testing.B) {
	s := benchSession(b, 1, false)
	s.Next()
	for b.Loop() {
		s.Next()
	}
}

// BenchmarkPeerHas is one have message: counts, pools and buckets move.
func BenchmarkPeerHas(b *testing.B) {
	s := benchSession(b, 1, false)
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, benchPeers)
	for i := range ids {
		ids[i] = fmt.Sprintf("peer-%02d", i)
	}
	for b.Loop() {
		id, piece := ids[rng.IntN(benchPeers)], rng.IntN(benchPieces)
		if rng.IntN(2) == 0 {
			s.PeerHas(id, piece)
		} else {
			s.DontHave(id, piece)
		}
	}
}

// BenchmarkSetup is a session of 16k pieces and 50 peers with their
// have-bitmaps, from nothing; B/op is about what it keeps in memory.
func BenchmarkSetup(b *testing.B) {
	seed := uint64(0)
	for b.Loop() {
		seed++
		benchSession(b, seed, false)
	}
}

// BenchmarkSplitChange is a LAN wanter joining a site of 10: the
// re-division of 16k pieces at the next decision.
func BenchmarkSplitChange(b *testing.B) {
	s := benchSession(b, 1, true)
	s.AddPeer("late", LAN)
	on := true
	for b.Loop() {
		s.PeerWants("late", on)
		on = !on
		s.refresh()
	}
}

// benchSites are the site model's workloads (site_test.go): the
// simulator's scale runs seen from one device. 256x100 is a device of a
// site of 100 fetching 1 GiB in 4 MiB pieces, whole downloads and the
// endgame alone (all but 32 pieces held); 16384x10 is a device of a site of
// 10 fetching it in 64 KiB chunks.
var benchSites = []struct {
	name string
	sp   siteParams
}{
	{"256x100", siteParams{pieces: 256, lan: 99, cfg: Config{OriginFirst: true}}},
	{"256x100-endgame", siteParams{pieces: 256, lan: 99, endgameAt: 32, answerOdds: 16, cfg: Config{OriginFirst: true}}},
	{"16384x10", siteParams{pieces: 16384, lan: 9, cfg: Config{OriginFirst: true}}},
}

// BenchmarkSite is the site model: one op is one event (a have from a
// LAN peer, an answer, or a tick) and the decision after it (Next), over
// whole downloads; setting a session up is not timed.
func BenchmarkSite(b *testing.B) {
	for _, c := range benchSites {
		b.Run(c.name, func(b *testing.B) {
			var m *siteModel
			seed := uint64(0)
			for b.Loop() {
				if m == nil || m.s.Done() {
					b.StopTimer()
					seed++
					sp := c.sp
					sp.seed = seed
					m = newSiteModel(b, sp)
					b.StartTimer()
				}
				m.event()
			}
		})
	}
}

// BenchmarkSiteSetup is a session of the site model with its peers and
// their bitmaps, from nothing; retained-B is the heap one session keeps
// (measured over 64 sessions kept alive at once).
func BenchmarkSiteSetup(b *testing.B) {
	for _, c := range benchSites {
		b.Run(c.name, func(b *testing.B) {
			seed := uint64(0)
			for b.Loop() {
				seed++
				sp := c.sp
				sp.seed = seed
				newSiteModel(b, sp)
			}
			b.StopTimer()
			const keep = 64
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			kept := make([]*Session, keep)
			for i := range kept {
				sp := c.sp
				sp.seed = uint64(i + 1)
				kept[i] = newSiteModel(b, sp).s
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/keep, "retained-B")
			runtime.KeepAlive(kept)
		})
	}
}
