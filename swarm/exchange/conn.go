package exchange

import (
	"io"
	"net"

	"github.com/shoalnet/shoal/swarm/sched"
)

// Conn is one peer connection: a bidirectional byte stream that carries
// /shoal/chunks/1 in both directions, with the remote peer's ID and its
// locality class (sched.LAN or sched.WAN), which the node decides (mDNS or
// a configured LAN prefix make a LAN peer). The node adapts a libp2p
// stream to it; tests and the simulator use [Pipe].
//
// Close must unblock a Read or Write in progress on either side.
type Conn interface {
	io.ReadWriteCloser
	// Peer is the remote peer's ID, the name its session events use.
	Peer() string
	// Class is the remote peer's locality.
	Class() sched.Class
}

// Pipe returns the two ends of an in-memory connection between peers a
// and b (net.Pipe: synchronous, unbuffered, no sockets): the first end is
// a's, so its Peer is b, and the second is b's. Both ends get class.
func Pipe(a, b string, class sched.Class) (Conn, Conn) {
	x, y := net.Pipe()
	return &pipeConn{Conn: x, peer: b, class: class}, &pipeConn{Conn: y, peer: a, class: class}
}

type pipeConn struct {
	net.Conn
	peer  string
	class sched.Class
}

func (c *pipeConn) Peer() string       { return c.peer }
func (c *pipeConn) Class() sched.Class { return c.class }
