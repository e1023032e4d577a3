package fleet

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// ErrConfig is a fleet that cannot be built as asked.
var ErrConfig = errors.New("fleet: bad config")

// Limits of the addressing plan (docs/fleet.md): sites are 10.K.0.0/24
// and their devices .10 upward.
const (
	MaxSites   = 200
	MaxDevices = 240
)

// Config is a fleet to build: what `shoal fleet run`'s flags say.
type Config struct {
	Sites   int   // K
	Devices int   // M, devices per site
	Size    int64 // bytes of the release image
	// Changed is the fraction of v1's bytes that v2 rewrites, in (0, 1):
	// every device gets v1 first (unmeasured). 0 or 1: one fresh release
	// on empty devices.
	Changed float64
	// Deltas publishes v2 with delta objects against v1 (needs Changed
	// in (0, 1)).
	Deltas bool
	// Rates in bits per second; 0 is uncapped.
	Uplink, LAN, Origin int64
	CacheNode           bool // one slotless cache node per site
	Loopback            bool // 127.0.0.0/8, no namespaces, no caps
	// Faults are staged while the release travels (none by default).
	Faults Faults
	// Baseline, if set ("http"), distributes the release without the
	// swarm: every device fetches it whole from the origin.
	Baseline string
	// Prefix names everything of one run (namespaces, the fleet, the
	// work directory): lower-case letters and digits, at most 10, so two
	// runs never collide. Net is the second octet of the loopback plan
	// (127.Net.K.x), drawn per run too, in 1..250.
	Prefix string
	Net    int
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// Fresh tells whether the run publishes one release on empty devices
// (rather than v2 over v1).
func (c Config) Fresh() bool { return c.Changed <= 0 || c.Changed >= 1 }

// Check refuses a config Plan cannot build.
func (c Config) Check() error {
	switch {
	case c.Sites < 1 || c.Sites > MaxSites:
		return fmt.Errorf("%w: --sites %d (1..%d)", ErrConfig, c.Sites, MaxSites)
	case c.Devices < 1 || c.Devices > MaxDevices:
		return fmt.Errorf("%w: --devices %d (1..%d per site)", ErrConfig, c.Devices, MaxDevices)
	case c.Size < 1<<20:
		return fmt.Errorf("%w: --size %d (at least 1 MiB)", ErrConfig, c.Size)
	case c.Changed < 0 || c.Changed > 1:
		return fmt.Errorf("%w: --changed %g (a fraction in (0, 1); 1 is a fresh release)", ErrConfig, c.Changed)
	case c.Deltas && c.Fresh():
		return fmt.Errorf("%w: --deltas needs --changed F in (0, 1): deltas are made against v1", ErrConfig)
	case c.Uplink < 0 || c.LAN < 0 || c.Origin < 0:
		return fmt.Errorf("%w: negative rate", ErrConfig)
	case c.Loopback && (c.Uplink > 0 || c.LAN > 0 || c.Origin > 0):
		return fmt.Errorf("%w: --loopback has no links to cap (drop --uplink, --lan, --origin-rate)", ErrConfig)
	case !prefixRE.MatchString(c.Prefix):
		return fmt.Errorf("%w: prefix %q", ErrConfig, c.Prefix)
	case c.Loopback && (c.Net < 1 || c.Net > 250):
		return fmt.Errorf("%w: loopback net %d", ErrConfig, c.Net)
	}
	return c.checkFaults()
}

// Node is one shoal node of the fleet: a device, or a site's cache node.
type Node struct {
	Name      string // s1-d1, s1-cache
	Site      int    // 1-based
	Index     int    // 1-based device number in its site; 0 for the cache node
	Cache     bool
	Namespace string // "" on loopback
	IP        string
	// Seed is the site's first device: the others bootstrap from it, and
	// it bootstraps from site 1's seed. Seeds run their DHT as servers.
	Seed bool
}

// Site is a LAN behind one uplink.
type Site struct {
	Index  int // 1-based
	Router string
	Prefix string // the LAN, e.g. 10.1.0.0/24, as lan_prefixes takes it
	// Uplink and WAN are the two ends of the site's uplink veth: Uplink in
	// the router's namespace, WAN in the WAN namespace.
	UplinkIP, WANIP string
	Nodes           []Node // devices first, then the cache node if any
}

// Devices returns the site's devices (not its cache node).
func (s Site) Devices() []Node {
	var d []Node
	for _, n := range s.Nodes {
		if !n.Cache {
			d = append(d, n)
		}
	}
	return d
}

// Topology is a planned fleet: every name and address, nothing created.
type Topology struct {
	Config
	Fleet    string // the fleet name the nodes use
	WAN      string // the WAN namespace ("" on loopback)
	OriginNS string
	OriginIP string
	// OriginPort is the origin's HTTP port; 0 on loopback, where `shoal
	// serve` takes a free one and says which.
	OriginPort int
	Sites      []Site
}

// Interface names inside the namespaces (each namespace has its own, so
// they never collide between runs).
const (
	IfUplink = "uplink" // the router's end of its uplink
	IfOrigin = "eth0"   // the origin's link to the WAN
	IfNode   = "eth0"   // a node's link to its site's bridge
	IfBridge = "br0"    // the site's bridge, in the router's namespace
	IfWANOut = "origin" // the WAN's end of the origin's link
)

// IfWANSite is the WAN's end of site k's uplink.
func IfWANSite(k int) string { return "s" + strconv.Itoa(k) }

// IfPort is the router's end (a bridge port) of device i's link; the
// cache node's is "c".
func IfPort(n Node) string {
	if n.Cache {
		return "c"
	}
	return "d" + strconv.Itoa(n.Index)
}

// Plan lays the fleet out: in namespaces, site k's LAN is 10.k.0.0/24
// (router .1, cache node .5, device i at .(9+i)), its uplink
// 10.254.k.0/30 (WAN .1, router .2), the origin 10.253.0.2 behind the WAN
// at 10.253.0.1; on loopback, site k's nodes are 127.NET.k.x and the
// origin 127.NET.253.2.
func Plan(c Config) (*Topology, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	t := &Topology{Config: c, Fleet: "fleet-" + c.Prefix}
	ns := func(name string) string {
		if c.Loopback {
			return ""
		}
		return c.Prefix + "-" + name
	}
	lan := func(k, host int) string { return fmt.Sprintf("10.%d.0.%d", k, host) }
	if c.Loopback {
		lan = func(k, host int) string { return fmt.Sprintf("127.%d.%d.%d", c.Net, k, host) }
		t.OriginIP = fmt.Sprintf("127.%d.253.2", c.Net)
	} else {
		t.WAN, t.OriginNS, t.OriginIP, t.OriginPort = ns("wan"), ns("origin"), "10.253.0.2", 8080
	}
	for k := 1; k <= c.Sites; k++ {
		s := Site{Index: k, Router: ns(fmt.Sprintf("s%d", k)), Prefix: lan(k, 0) + "/24"}
		if !c.Loopback {
			s.UplinkIP, s.WANIP = fmt.Sprintf("10.254.%d.2", k), fmt.Sprintf("10.254.%d.1", k)
		}
		for i := 1; i <= c.Devices; i++ {
			name := fmt.Sprintf("s%d-d%d", k, i)
			s.Nodes = append(s.Nodes, Node{Name: name, Site: k, Index: i, Namespace: ns(name), IP: lan(k, 9+i), Seed: i == 1})
		}
		if c.CacheNode {
			name := fmt.Sprintf("s%d-cache", k)
			s.Nodes = append(s.Nodes, Node{Name: name, Site: k, Cache: true, Namespace: ns(name), IP: lan(k, 5)})
		}
		t.Sites = append(t.Sites, s)
	}
	return t, nil
}

// Nodes returns every node, site by site.
func (t *Topology) Nodes() []Node {
	var all []Node
	for _, s := range t.Sites {
		all = append(all, s.Nodes...)
	}
	return all
}

// DeviceCount is the number of devices in the fleet.
func (t *Topology) DeviceCount() int { return t.Config.Sites * t.Devices }

// Namespaces returns every namespace of the plan, in creation order (none
// on loopback).
func (t *Topology) Namespaces() []string {
	if t.Loopback {
		return nil
	}
	names := []string{t.WAN, t.OriginNS}
	for _, s := range t.Sites {
		names = append(names, s.Router)
		for _, n := range s.Nodes {
			names = append(names, n.Namespace)
		}
	}
	return names
}

// Capacities returns the fleet's rates for Bound, in bytes per second.
func (t *Topology) Capacities() Capacities {
	h := 0
	if t.CacheNode {
		h = 1
	}
	return Symmetric(t.Config.Sites, t.Devices, h, float64(t.Uplink)/8, float64(t.LAN)/8, float64(t.Origin)/8)
}
