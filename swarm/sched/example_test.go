package sched_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/shoalnet/shoal/swarm/sched"
)

// A node fetches a release of six pieces: a LAN peer holds 0-2, a WAN peer
// holds 2-4, nobody holds 5. Piece 2 is asked of the LAN peer only; the
// WAN peer gets what the LAN lacks, the origin what nobody has. The
// answers come at once here; in a node they arrive from the network
// between calls to Next.
func Example() {
	s, err := sched.New(sched.Config{Window: 2, NoEndgame: true}, "node-a", 6, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		panic(err)
	}
	s.AddPeer("node-b", sched.LAN)
	s.AddPeer("node-x", sched.WAN)
	s.PeerHasBitmap("node-b", []byte{0b11100000})
	s.PeerHasBitmap("node-x", []byte{0b00111000})
	for !s.Done() {
		a := s.Next()
		fmt.Println(a.Request)
		for _, r := range a.Request {
			if err := s.Received(r.Source, r.Piece); err != nil {
				panic(err)
			}
		}
	}
	st := s.Stats()
	fmt.Printf("lan=%d wan=%d origin=%d\n", st.Received[sched.LAN], st.Received[sched.WAN], st.Received[sched.Origin])
	// Output:
	// [2@node-b/lan 1@node-b/lan 3@node-x/wan 4@node-x/wan 5@origin]
	// [0@node-b/lan]
	// lan=3 wan=2 origin=1
}
