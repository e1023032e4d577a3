// Package sched is the piece scheduler of one node downloading one
// release: a plain value, stepped by the caller's events and ticks, that
// answers which piece to request from which source next. It does no I/O,
// reads no clock, starts no goroutines and draws randomness only from the
// *rand.Rand it is given, once; nothing depends on map order. So a device,
// the tests and the simulator (package sim, which runs ~10^5 sessions)
// make exactly the same decisions from the same inputs.
//
// # Pieces and sources
//
// Pieces are the positions 0..n-1 of the release index. [New] treats every
// position as its own piece; [NewDedup] takes the index's duplicates (the
// first position holding each chunk) and requests each chunk once, at its
// first position, while events may name any position.
//
// Sources are peers, named by opaque IDs, each of class [LAN] or [WAN], and
// the origin (the release's repository, [Origin], named "" in events and
// requests), which holds everything and is the last resort.
//
// # What is asked of whom
//
// Every missing piece that is not outstanding is in exactly one pool:
//
//   - LAN, if a LAN peer holds it;
//   - otherwise, if the site uplink split is on and another LAN node owns
//     the piece, it is awaited: that node fetches it and announces it, and
//     it moves to the LAN pool;
//   - otherwise WAN, if a WAN peer holds it;
//   - otherwise the origin.
//
// A peer is asked only for pieces of its class's pool that it is known to
// hold, the rarest first (fewest holders in that class, counts of
// [Config.RarityCap] or more being equal), ties going to the piece that
// comes first in the session's random order (drawn from the rand at New;
// so sessions with different seeds break ties differently). With
// [Random] rarity is ignored. The origin is asked for the origin pool in
// the random order. Windows bound the requests outstanding per peer
// ([Config.Window]), at the origin ([Config.OriginWindow]) and in all
// ([Config.MaxOutstanding]); [Session.Next] fills them in rounds, one
// request per source and round: LAN peers, then WAN peers (fewer strikes
// first, then the order they were added), then the origin.
//
// # The site uplink split
//
// The LAN peers that fetch the same release (the caller reports them with
// [Session.PeerWants]) and this node divide the pieces no LAN peer holds:
// each piece belongs to the member with the highest [Weight] for it
// (rendezvous hashing, [Owner]). The weight is a fixed hash of the piece's
// position and the member's ID, the same on every node, so every node of
// the site computes the same division without talking about it, and a
// member joining or leaving moves only its own share. A node fetches over
// the uplink (WAN or origin) only its own share; the others' shares come
// from the LAN once their owners announce them, so each piece crosses the
// uplink about once and then spreads inside the site.
//
// A member that leaves (RemovePeer), stops wanting the release, or owes
// this node pieces of its share and brings no new piece into the site for
// [Config.ShareStallTicks], is left out and its share is divided again
// among the rest; a member left out comes back when it brings into the
// site a piece this node lacks and no LAN peer held. A piece some LAN peer
// holds is fetched from it, whoever owns it; a piece whose owner stalled
// on this node's request for it becomes this node's to fetch (the owner
// holds it, so it will not announce it again, and may keep bringing other
// pieces, so it would never be left out). So no piece is awaited forever. Members whose views of
// the membership differ briefly may fetch a piece twice, never none: along
// any chain of "that piece is yours" the weights grow, so it ends at a node
// that owns the piece in its own view.
//
// # Endgame, stalls and penalties
//
// Once at most [Config.EndgameThreshold] pieces are missing, a piece
// outstanding at one source may also be asked of up to
// [Config.EndgameDuplicates] other holders of its best class (never the
// origin, and never across the uplink for a piece the LAN holds); when the
// first block arrives the other requests are cancelled.
//
// A request to a peer that has delivered nothing for [Config.StallTicks]
// ticks since the request was issued is given up (origin requests are
// left to the origin's fetcher, which knows whether bytes still flow): it is
// cancelled, the peer no longer counts as holding that piece (it goes to
// the next holder or class), and the peer is penalised. So is a peer that
// answers dont-have to a request. A penalty halves the peer's window
// (each delivered block grows it by one again) and gives it a strike,
// which serves it after the peers without strikes; [Config.MaxStrikes] in
// a row (on different ticks, with no block in between) drop it. A peer that
// sends a bad block is dropped at once. The origin is never penalised: its
// failures only send the piece round again.
//
// # Driving it
//
// The caller's duties:
//
//  1. Create a session per release download with [New] or [NewDedup],
//     giving this node's peer ID and a seeded *rand.Rand. Report the
//     pieces already held (a resumed download, chunks found in the running
//     slot or the cache) with [Session.Have].
//  2. Report peers as they come and go: [Session.AddPeer] with the class
//     the caller decided (mDNS or a LAN prefix makes a LAN peer),
//     [Session.PeerHasBitmap] for a have-bitmap, [Session.PeerHas] for a
//     have, [Session.PeerWants] when a LAN peer announces that it fetches
//     the release (or stops), [Session.RemovePeer] on disconnect, and
//     [Session.SetOrigin] when the origin becomes unreachable or reachable
//     again.
//  3. Report every answer: [Session.Received] once a block has been
//     verified against its chunk ID (never before), [Session.DontHave] for
//     a dont-have (or the origin's failure), [Session.BadBlock] for a block
//     that failed verification (and disconnect that peer).
//  4. After a batch of events, call [Session.Next] and carry out its
//     [Actions] in order: send the cancels, send the requests (they count
//     as outstanding from now on), forget the dropped peers. The slices
//     are reused by the next call.
//  5. Time is the caller's: call [Session.Tick] at a fixed period it
//     chooses, and size [Config.StallTicks] and [Config.ShareStallTicks]
//     in that unit (a tick of 100 ms makes the defaults 2 s and 4 s), then
//     call Next.
//  6. Stop when [Session.Done].
//
// Events come from outside (peers' messages through the node), so events
// that make no sense (an unknown peer, a piece out of range, a malformed
// bitmap) return an error wrapping one of the package's sentinels and
// change nothing. A block nobody asked for is accepted: its bytes were
// verified. A session is not safe for concurrent use.
//
// # Cost
//
// A simulator runs a session for each of ~10^5 devices, each with a
// hundred LAN peers, and calls Next after nearly every event, so the
// session keeps indexes that make a call cost what it decides rather
// than the number of peers: bits, by service position, of the peers with
// a free window and of those that also hold a piece of their class's
// pool (Next visits only these); the have-bitmaps in one array by slot
// (moving a piece between pools reads the bitmaps of its holders, not
// every peer); the endgame's candidates, kept from one decision to the
// next until a request ends or an outstanding piece's holders change
// (while none of that happens the endgame step costs nothing); and the
// earliest tick a request can stall (Tick scans requests only then). The
// indexes only speed decisions up: every decision is the one the
// definitions above give, in the same order.
package sched
