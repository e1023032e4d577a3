package wire_test

import (
	"fmt"
	"net"

	"github.com/shoalnet/shoal/chunker"
	"github.com/shoalnet/shoal/chunker/object"
	"github.com/shoalnet/shoal/swarm/wire"
)

// Two peers over net.Pipe: each sends its Hello, the fetcher announces
// what it holds and asks for a chunk, the server answers with the stored
// object, and the fetcher verifies it before use.
func Example() {
	fetcher, server := net.Pipe()
	defer fetcher.Close()
	defer server.Close()

	chunk := []byte("the bytes of one chunk of a release")
	id := chunker.SHA256.ID(chunker.SHA256.Sum(chunk))
	index := chunker.SHA256.ID(chunker.SHA256.Sum([]byte("its index")))

	go func() { // the server
		r, w := wire.NewReader(server, 0), wire.NewWriter(server, 0)
		if _, err := wire.Handshake(r, w, 0); err != nil {
			return
		}
		for {
			m, err := r.Read()
			if err != nil {
				return // on ErrMalformed etc.: disconnect and score the peer down
			}
			switch m := m.(type) {
			case *wire.Have:
				fmt.Printf("server: peer holds %d of %d chunks\n", popcount(m), m.Count)
			case *wire.Want:
				w.Write(&wire.Block{Req: m.Req, CID: m.CID, Object: object.Encode(nil, chunk)})
				w.Flush()
			}
		}
	}()

	r, w := wire.NewReader(fetcher, 0), wire.NewWriter(fetcher, 0)
	peer, err := wire.Handshake(r, w, 0)
	if err != nil {
		panic(err)
	}
	fmt.Println("fetcher: peer speaks version", peer.Version)
	w.Write(&wire.Have{Index: index, Count: 3, Bitmap: []byte{0b1010_0000}})
	w.Write(&wire.Want{Req: 1, CID: id, Index: index, Position: 1})
	w.Flush()
	m, err := r.Read()
	if err != nil {
		panic(err)
	}
	data, err := wire.DecodeBlock(nil, m.(*wire.Block), id, chunker.DefaultParams.Max)
	fmt.Printf("fetcher: request %d: %q %v\n", m.(*wire.Block).Req, data, err)
	// Output:
	// fetcher: peer speaks version 1
	// server: peer holds 2 of 3 chunks
	// fetcher: request 1: "the bytes of one chunk of a release" <nil>
}

func popcount(h *wire.Have) int {
	n := 0
	for i := range h.Count {
		if h.Has(i) {
			n++
		}
	}
	return n
}
