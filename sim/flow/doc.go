// Package flow is the simulator's flow-level network: links with
// capacities (bytes per second), and flows that each cross a list of links
// and carry a number of bytes. Concurrent flows share every link max-min
// fairly — no flow can get more without taking from one that has no more —
// computed by progressive filling. It keeps no clock and draws no
// randomness: the caller (package sim) owns simulated time and tells the
// network what changed and when.
//
// # Driving it
//
//  1. Build the links with [Network.AddLink].
//  2. At simulated time now, make changes: [Network.Add] a flow,
//     [Network.Remove] one, [Network.SetCapacity] of a link, or
//     [Network.Continue] a flow that finished with more bytes (a
//     connection's next queued block: its rate does not change, so nothing
//     is recomputed). Changes only record what changed.
//  3. When every change of the instant is made, call [Network.Settle]: the
//     rates are recomputed once for all of them (changes at the same
//     instant are coalesced).
//  4. [Network.NextFinish] is when the next flow will have all its bytes
//     through; advance to it (or to an earlier event of your own) and take
//     the finished flows with [Network.PopFinished]. A finished flow keeps
//     its rate until it is removed or continued.
//
// Times are simulated nanoseconds (int64) from the start of a run; a flow's
// remaining bytes are brought up to date only when its rate changes or it
// is asked for, so a flow costs nothing while nothing around it changes.
//
// # Recomputing only what a change touches
//
// A change cannot move the rate of every flow. [Network.Settle] recomputes
// a set C of flows and keeps every other rate as it was, where C is closed
// under two rules:
//
//   - every flow whose bottleneck (the saturated link on which it got its
//     rate, at the last computation) lies on the path of a flow in C, or on
//     a changed link, is in C;
//   - after filling C's flows over what the other flows leave of each
//     link, every flow outside C on a link that bottlenecks a flow of C has
//     no more than that flow's rate; otherwise it joins C and C is filled
//     again.
//
// The result is the max-min fair allocation of the whole network, exactly:
// every flow ends with a bottleneck — a saturated link on which no flow
// has more — because a flow outside C keeps a bottleneck no flow of C
// crosses, and a flow of C gets one on which, by the second rule, nothing
// outside has more. So a new transfer inside one site recomputes the
// transfers that compete with it there, not the other sites' (unless they
// share a saturated link with it, like an origin that is the bottleneck of
// every site). The package tests compare it with a full recomputation on
// random networks.
//
// # Precision
//
// Exact max-min has a cost at scale: when one link is the bottleneck of
// many flows (an origin shared by a whole fleet), a flow starting or
// stopping there changes all their rates, which changes what is left on
// every other link they cross, and so on: each such change recomputes
// most of the network. [Network.SetPrecision] with ε > 0 (off by default;
// the simulator's strategy.rate_precision) trades a bounded error for
// that. A link that is the bottleneck of at least 1/ε flows, when a change
// reaches it, is held: the flows bottlenecked there keep their common
// rate (its level) and stay out of C, and a flow of C that crosses it gets
// at most that level there (as if the link offered each flow its level
// rather than a share of what is left). After the recomputation a held
// link whose load (the sum of its flows' rates) differs from its capacity
// by more than ε of it is recomputed at once with every flow on it (the
// link itself exactly; its flows may still be capped at another held
// link). So after every [Network.Settle]:
//
//   - no link carries more than its capacity times 1+ε (only held links
//     can exceed it at all), and a held link carries at least its capacity
//     times 1-ε;
//   - every flow has a bottleneck on its path on which no flow has more,
//     loaded to within ε of its capacity;
//   - until a link is first held, rates are exact.
//
// One flow moves a held link's load by at most about ε of it (ε(1+ε)), so a
// group of g flows is recomputed about once per εg changes instead of at
// every one. TestPrecision checks these bounds on random networks,
// TestPrecisionSavesWork the saving and the effect on finish times.
package flow
