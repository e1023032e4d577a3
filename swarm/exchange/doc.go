// Package exchange is the chunk exchange engine of /shoal/chunks/1: it
// runs peer connections over an abstract transport ([Conn]: a byte stream
// with a peer ID and a locality class), serves what the node holds, and
// fetches releases with the scheduler of swarm/sched. It never sees
// libp2p: the node adapts libp2p streams to Conn, and tests and the
// simulator use [Pipe]. docs/swarm.md ("Exchange engine") is the
// narrative.
//
// # Roles
//
// An [Engine] is one node. Each connection it runs ([Engine.Run],
// [Engine.Add]) carries both directions of the protocol: after the Hello
// handshake, the engine sends a Have for every index it announces
// ([Engine.Serve], [Engine.Announce]: HaveDelta as positions are added),
// answers each of the peer's Wants exactly once from its [Provider] (a
// Block, or a DontHave), and hands the peer's Haves and answers to the
// [Download]s running. A reader, a server and a writer goroutine run per
// connection; the writer sends control frames (Wants, Cancels, Haves)
// before blocks and caps the upload rate.
//
// A [Download] fetches one release index and implements
// updater.BulkSource: FetchAll runs a sched.Session (NewDedup over the
// index's positions) on one goroutine, feeding it the peers as they come
// and go, their Haves, every answer, and ticks; it turns the session's
// requests into Wants (or origin fetches through manifest.FetchChunk) and
// its cancels into Cancels, disconnects the peers it drops, checks every
// block with wire.DecodeBlock against the CID it asked for before deliver
// sees it, and announces delivered positions so the site spreads them.
//
// Indexes are content-addressed like chunks (chunker.Index.CID is the raw
// ID of the encoding), so they move on the same messages: the engine
// answers a Want for an index it announces with the encoded index, and
// [StoreProvider] serves the store's. [Engine.FetchObject] fetches one
// object from the peers outside any Download (those that announced it
// first, one at a time, each answer verified), up to [Engine.MaxObject];
// [PeerFetcher] offers it as a fetch.Fetcher of "index/<cid>" for
// manifest.Client.FetchIndexes, so a node with no route to the origin gets
// a release's indexes from its peers.
//
// # Session rules
//
// What a peer sends is outside bytes. The engine disconnects a peer, logs
// a line naming it and what was wrong, lowers its score
// ([Engine.Penalties], Config.OnMisbehave) and gives its unanswered
// requests to others when it sends: a frame above the frame limit, a
// malformed frame or an unknown kind (the wire Reader's errors); a
// second Hello; a HaveDelta before a Have for its index, or a Have or
// HaveDelta whose count is not the index's; a Block or DontHave that
// answers no unanswered Want of this node (or names another CID); a
// block that does not verify; more than Config.MaxPeerWants unanswered
// Wants, or a Want reusing the ID of an unanswered one; Haves for more
// than Config.MaxPeerIndexes indexes. A peer that stalls is given up by
// the scheduler (stalls and dont-haves in a row) and disconnected too. A
// stream that just ends is no misbehaviour.
package exchange
