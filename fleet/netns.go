package fleet

import (
	"fmt"
	"strconv"
)

// TBFLatency is how long a tbf queue may hold a packet: the queue's
// length is rate × TBFLatency plus the burst.
const TBFLatency = "100ms"

// FrameHeaderBytes is what every frame of a TCP segment over IPv4 on
// Ethernet carries besides its payload: 14 bytes of Ethernet header, 20 of
// IP, 20 of TCP and 12 of the timestamp option Linux sends on every
// segment. Subtracted per counted frame it estimates the payload (SACK
// blocks on some acknowledgements and the few UDP frames make the
// estimate a little low).
const FrameHeaderBytes = 66

// TBFBurst is the bucket size for a tbf at bits per second: 5 ms of the
// rate, at least ten full-size frames.
func TBFBurst(bits int64) int64 { return max(bits/8/200, 10*1514) }

// SetupCommands returns the commands (ip(8), tc(8), sysctl(8)) that build
// the plan in network namespaces, in order; every one names its namespace,
// so nothing is created outside them. None on loopback.
//
//	origin ── WAN ──┬── up [router s1] br0 ── s1-d1, s1-d2, …, s1-cache
//	                └── up [router s2] br0 ── s2-d1, …
//
// Each site's uplink is capped with tbf on both of its ends (the router's
// end shapes what leaves the site, the WAN's end what enters it), each
// node's bridge link likewise at the LAN rate, and the origin's link on its
// own end (its egress). The uplink and origin veths segment every packet
// to a frame (gso_max_segs 1), so their byte counters count one set of
// headers per frame, as a real link does.
func (t *Topology) SetupCommands() [][]string {
	if t.Loopback {
		return nil
	}
	var cmds [][]string
	add := func(args ...string) { cmds = append(cmds, args) }
	ip := func(ns string, args ...string) { add(append([]string{"ip", "-n", ns}, args...)...) }
	forward := func(ns string) { add("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1") }
	tbf := func(ns, dev string, bits int64) {
		if bits > 0 {
			add("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", strconv.FormatInt(bits, 10)+"bit",
				"burst", strconv.FormatInt(TBFBurst(bits), 10), "latency", TBFLatency)
		}
	}
	// veth creates a pair with one end in each namespace and brings both up.
	veth := func(ns, dev, peerNS, peer string, frames bool) {
		ip(ns, "link", "add", dev, "type", "veth", "peer", "name", peer, "netns", peerNS)
		if frames {
			ip(ns, "link", "set", "dev", dev, "gso_max_segs", "1")
			ip(peerNS, "link", "set", "dev", peer, "gso_max_segs", "1")
		}
		ip(ns, "link", "set", "dev", dev, "up")
		ip(peerNS, "link", "set", "dev", peer, "up")
	}
	for _, ns := range t.Namespaces() {
		add("ip", "netns", "add", ns)
		ip(ns, "link", "set", "dev", "lo", "up")
	}
	forward(t.WAN)
	veth(t.OriginNS, IfOrigin, t.WAN, IfWANOut, true)
	ip(t.OriginNS, "addr", "add", t.OriginIP+"/30", "dev", IfOrigin)
	ip(t.WAN, "addr", "add", "10.253.0.1/30", "dev", IfWANOut)
	ip(t.OriginNS, "route", "add", "default", "via", "10.253.0.1")
	tbf(t.OriginNS, IfOrigin, t.Origin)
	for _, s := range t.Sites {
		forward(s.Router)
		veth(s.Router, IfUplink, t.WAN, IfWANSite(s.Index), true)
		ip(s.Router, "addr", "add", s.UplinkIP+"/30", "dev", IfUplink)
		ip(t.WAN, "addr", "add", s.WANIP+"/30", "dev", IfWANSite(s.Index))
		ip(s.Router, "route", "add", "default", "via", s.WANIP)
		ip(t.WAN, "route", "add", s.Prefix, "via", s.UplinkIP)
		tbf(s.Router, IfUplink, t.Uplink)
		tbf(t.WAN, IfWANSite(s.Index), t.Uplink)
		gw := fmt.Sprintf("10.%d.0.1", s.Index)
		ip(s.Router, "link", "add", IfBridge, "type", "bridge")
		ip(s.Router, "addr", "add", gw+"/24", "dev", IfBridge)
		ip(s.Router, "link", "set", "dev", IfBridge, "up")
		for _, n := range s.Nodes {
			veth(n.Namespace, IfNode, s.Router, IfPort(n), false)
			ip(s.Router, "link", "set", "dev", IfPort(n), "master", IfBridge)
			ip(n.Namespace, "addr", "add", n.IP+"/24", "dev", IfNode)
			ip(n.Namespace, "route", "add", "default", "via", gw)
			// mDNS: multicast leaves by the LAN link, whatever the default.
			ip(n.Namespace, "route", "add", "224.0.0.0/4", "dev", IfNode)
			tbf(n.Namespace, IfNode, t.LAN)
			tbf(s.Router, IfPort(n), t.LAN)
		}
	}
	return cmds
}
