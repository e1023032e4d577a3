// Package node is the shoal daemon: it wires the swarm's host (DHT, mDNS,
// gossipsub), the store, the chunk exchange and the device's updater
// together and serves a local HTTP API. config.go is its configuration
// file, node.toml (docs/swarm.md, "Node configuration").
package node

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/shoalnet/shoal/internal/tomlstrict"
	"github.com/shoalnet/shoal/manifest"
	"github.com/shoalnet/shoal/swarm"
)

// Config is a node's node.toml. Relative paths are relative to the
// directory holding the file.
type Config struct {
	Node NodeConfig `toml:"node"`
	// Device is the device this node updates; nil for a cache node (a
	// site gateway), which keeps whole releases and serves them.
	Device *DeviceConfig `toml:"device,omitempty"`
	// Trust is what a cache node trusts (a device node trusts what its
	// device's [trust] says).
	Trust *TrustConfig `toml:"trust,omitempty"`

	dir string         // directory of the config file
	lan []netip.Prefix // Node.LANPrefixes, parsed
	dht swarm.DHTMode
}

// NodeConfig is the [node] table: the node's place in the fleet's swarm.
type NodeConfig struct {
	// Fleet names the fleet; nodes of different fleets never see each
	// other (letters, digits, '.', '_', '-'; at most 64).
	Fleet string `toml:"fleet"`
	// Store is the directory of the node's chunk and metadata store
	// (default DefaultStore).
	Store string `toml:"store,omitempty"`
	// IdentityKey is the node's libp2p identity key, created on first
	// start with mode 0600 (default: identity.key in Store).
	IdentityKey string `toml:"identity_key,omitempty"`
	// Listen are libp2p multiaddrs to listen on (default DefaultListen).
	Listen []string `toml:"listen,omitempty"`
	// Bootstrap are peers to dial at start, multiaddrs ending in
	// /p2p/<peer id>.
	Bootstrap []string `toml:"bootstrap,omitempty"`
	// DHT is "server" (always-on nodes), "client" (small devices) or
	// "auto" (server once reachable from outside). Default: server on a
	// cache node, auto on a device.
	DHT string `toml:"dht,omitempty"`
	// MDNS turns LAN discovery by multicast DNS on or off (default on).
	MDNS *bool `toml:"mdns,omitempty"`
	// LANPrefixes: peers connected from these networks count as LAN
	// peers, like those mDNS finds (CIDR, e.g. "192.168.1.0/24").
	LANPrefixes []string `toml:"lan_prefixes,omitempty"`
	// API is the HTTP API's listen address, host:port on loopback
	// (default DefaultAPI): it has no authentication. Port 0 picks a free
	// port, recorded in the store directory (Config.APIFile).
	API string `toml:"api,omitempty"`
	// Apply is "auto" (install an accepted release as soon as it is
	// eligible) or "manual" (fetch it, install when `shoal update apply`
	// asks). Default auto; a cache node installs nothing.
	Apply string `toml:"apply,omitempty"`
	// UploadRate and DownloadRate cap the node's chunk traffic so it never
	// saturates its own link (bytes per second, or a string such as
	// "20 MiB/s" or "100 Mbit/s"; 0 or absent: no cap).
	UploadRate   Rate `toml:"upload_rate,omitempty"`
	DownloadRate Rate `toml:"download_rate,omitempty"`
	// Window is how many chunk requests the node keeps outstanding at one
	// peer (default DefaultWindow, at most MaxWindow). Deeper windows keep
	// a fast link busy while each chunk is served and written; a peer
	// that stalls has its window halved for a while.
	Window int `toml:"window,omitempty"`
	// OriginFirst: a chunk no LAN peer holds comes from the origin while
	// the origin answers, and from WAN peers only while it does not
	// (default true). A chunk from a WAN peer crosses two site uplinks,
	// its site's and this one's; false takes WAN peers first, which
	// spares the origin at the cost of the uplinks.
	OriginFirst *bool `toml:"origin_first,omitempty"`
	// Origin are repositories (http(s) URLs or directories) the node reads
	// indexes from, and chunks no peer has; none for a site with no
	// route to the origin (its peers then serve everything).
	Origin []string `toml:"origin,omitempty"`
	// Channels a cache node follows and keeps (a device node follows its
	// device's channel).
	Channels []string `toml:"channels,omitempty"`
}

// TrustConfig is a cache node's [trust] table, as a device's.
type TrustConfig struct {
	Root       string `toml:"root"`
	LogKey     string `toml:"log_key,omitempty"`
	RequireLog bool   `toml:"require_log,omitempty"`
}

// DeviceConfig is the [device] table: the device a node updates.
type DeviceConfig struct {
	// Config is the device's shoal.toml (updater.LoadConfig reads it).
	Config string `toml:"config"`
}

// Defaults of [node].
const (
	DefaultStore = "/var/lib/shoal/node"
	// DefaultWindow: on loopback, 32 outstanding requests moved a release
	// in 3.4 s where 8 took 4.4 s (docs/benchmarks.md, "Swarm").
	DefaultWindow = 32
	// MaxWindow stays well below what a serving peer tolerates
	// (exchange.Config.MaxPeerWants, 256) with the index requests beside.
	MaxWindow  = 128
	DefaultAPI = "127.0.0.1:4102"
	// DefaultPort is the libp2p port of DefaultListen.
	DefaultPort = 4101
)

// DefaultListen are the listen addresses of a node that names none: TCP
// and QUIC on every IPv4 and IPv6 address, port DefaultPort.
var DefaultListen = []string{
	"/ip4/0.0.0.0/tcp/4101",
	"/ip4/0.0.0.0/udp/4101/quic-v1",
	"/ip6/::/tcp/4101",
	"/ip6/::/udp/4101/quic-v1",
}

// Apply modes.
const (
	ApplyAuto   = "auto"
	ApplyManual = "manual"
)

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("node: bad configuration")

// LoadConfig reads and checks a node config file. Unknown keys are errors
// that name the key and its line, so a typo does not silently fall back
// to a default.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses and checks a node config, filling in defaults; dir
// resolves relative paths.
func ParseConfig(b []byte, dir string) (*Config, error) {
	var c Config
	if err := tomlstrict.Decode(b, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	var err error
	c.dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	n := &c.Node
	if n.Fleet == "" {
		return bad("[node] fleet is required (the fleet's name)")
	}
	if err := swarm.CheckName("fleet", n.Fleet); err != nil {
		return bad("[node] %v", err)
	}
	if n.Store == "" {
		n.Store = DefaultStore
	}
	if n.IdentityKey == "" {
		n.IdentityKey = filepath.Join(n.Store, "identity.key")
	}
	if len(n.Listen) == 0 {
		n.Listen = slices.Clone(DefaultListen)
	}
	for i, a := range n.Listen {
		if err := swarm.CheckListenAddr(a); err != nil {
			return bad("[node] listen[%d]: %v", i, err)
		}
	}
	for i, a := range n.Bootstrap {
		if err := swarm.CheckPeerAddr(a); err != nil {
			return bad("[node] bootstrap[%d]: %v", i, err)
		}
	}
	if n.DHT == "" {
		n.DHT = "auto"
		if c.Device == nil {
			n.DHT = "server" // a cache node is an always-on gateway
		}
	}
	m, err := swarm.ParseDHTMode(n.DHT)
	if err != nil {
		return bad("[node] dht: %v", err)
	}
	c.dht = m
	if n.MDNS == nil {
		on := true
		n.MDNS = &on
	}
	c.lan = nil
	for i, s := range n.LANPrefixes {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return bad("[node] lan_prefixes[%d]: %q is not a CIDR prefix such as 192.168.1.0/24", i, s)
		}
		if p.Masked() != p {
			return bad("[node] lan_prefixes[%d]: %q has host bits set (did you mean %s?)", i, s, p.Masked())
		}
		c.lan = append(c.lan, p)
	}
	if n.API == "" {
		n.API = DefaultAPI
	}
	if err := checkAPI(n.API); err != nil {
		return bad("[node] api: %v", err)
	}
	if n.OriginFirst == nil {
		on := true
		n.OriginFirst = &on
	}
	switch {
	case n.Window == 0:
		n.Window = DefaultWindow
	case n.Window < 0 || n.Window > MaxWindow:
		return bad("[node] window %d is not 1..%d", n.Window, MaxWindow)
	}
	switch n.Apply {
	case "":
		n.Apply = ApplyAuto
	case ApplyAuto, ApplyManual:
	default:
		return bad("[node] apply %q is not %q or %q", n.Apply, ApplyAuto, ApplyManual)
	}
	if c.Device != nil && c.Device.Config == "" {
		return bad("[device] config is required (the device's shoal.toml); leave [device] out for a cache node")
	}
	for i, o := range n.Origin {
		if o == "" {
			return bad("[node] origin[%d] is empty", i)
		}
	}
	for i, ch := range n.Channels {
		if err := swarm.CheckName("channel", ch); err != nil {
			return bad("[node] channels[%d]: %v", i, err)
		}
	}
	if c.Device == nil {
		switch {
		case c.Trust == nil || c.Trust.Root == "":
			return bad("a cache node needs [trust] root (the fleet's root.json)")
		case len(n.Channels) == 0:
			return bad("a cache node needs [node] channels (the channels it keeps)")
		case c.Trust.RequireLog && c.Trust.LogKey == "":
			return bad("[trust] require_log needs log_key")
		}
	} else if c.Trust != nil {
		return bad("[trust] belongs in the device's config (%s); a node with [device] trusts what it says", c.Device.Config)
	}
	return nil
}

// TrustOptions is a cache node's [trust], paths resolved.
func (c *Config) TrustOptions() manifest.TrustOptions {
	if c.Trust == nil {
		return manifest.TrustOptions{}
	}
	return manifest.TrustOptions{Root: c.Path(c.Trust.Root), LogKey: c.Path(c.Trust.LogKey), RequireLog: c.Trust.RequireLog}
}

// checkAPI accepts host:port with a loopback host: the API answers
// anyone who reaches it.
func checkAPI(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want host:port, e.g. %s", addr, DefaultAPI)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not 0..65535", addr, port)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: the HTTP API has no authentication and listens on loopback only (127.0.0.1, ::1 or localhost)", addr)
	}
	return nil
}

// APIFile is where a running node records the address its API listens on:
// with port 0 in [node] api only this file knows it.
func (c *Config) APIFile() string {
	return filepath.Join(c.StoreDir(), "api")
}

// APIAddr is the address of the node's API: [node] api, or with port 0
// the address the running node recorded in APIFile.
func (c *Config) APIAddr() (string, error) {
	if _, port, _ := net.SplitHostPort(c.Node.API); port != "0" {
		return c.Node.API, nil
	}
	b, err := os.ReadFile(c.APIFile())
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("[node] api %s picks a free port and %s does not exist: is the node running?", c.Node.API, c.APIFile())
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// Path resolves p relative to the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

// CacheNode reports whether the node has no device: it keeps whole
// releases and serves them (a site gateway).
func (c *Config) CacheNode() bool { return c.Device == nil }

// DevicePath is the device's shoal.toml, resolved; "" for a cache node.
func (c *Config) DevicePath() string {
	if c.Device == nil {
		return ""
	}
	return c.Path(c.Device.Config)
}

// Origins are [node] origin: URLs as given, directories resolved.
func (c *Config) Origins() []string {
	out := make([]string, len(c.Node.Origin))
	for i, o := range c.Node.Origin {
		if strings.HasPrefix(o, "http://") || strings.HasPrefix(o, "https://") {
			out[i] = o
		} else {
			out[i] = c.Path(o)
		}
	}
	return out
}

// StoreDir is [node] store, resolved.
func (c *Config) StoreDir() string { return c.Path(c.Node.Store) }

// LANPrefixes are [node] lan_prefixes, parsed.
func (c *Config) LANPrefixes() []netip.Prefix { return slices.Clone(c.lan) }

// HostConfig is the swarm host's configuration from [node]. The caller
// adds what is not in the file (a metrics registerer, a logger, an
// application score).
func (c *Config) HostConfig() swarm.HostConfig {
	n := c.Node
	return swarm.HostConfig{
		Fleet:       n.Fleet,
		KeyFile:     c.Path(n.IdentityKey),
		Listen:      slices.Clone(n.Listen),
		Bootstrap:   slices.Clone(n.Bootstrap),
		DHT:         c.dht,
		MDNS:        *n.MDNS,
		LANPrefixes: c.LANPrefixes(),
	}
}

// Rate is a transfer rate in bytes per second; 0 means no cap. In TOML it
// is an integer (bytes per second) or a string: a number, a unit and an
// optional "/s" — B, kB, MB, GB (powers of 1000), KiB, MiB, GiB (powers of
// 1024), or kbit, Mbit, Gbit (bits, powers of 1000) — e.g. "20 MiB/s",
// "100 Mbit/s"; "0" or "unlimited" is no cap.
type Rate int64

var rateUnits = map[string]float64{
	"": 1, "B": 1,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
	"kbit": 1e3 / 8, "Kbit": 1e3 / 8, "Mbit": 1e6 / 8, "Gbit": 1e9 / 8,
}

// ParseRate parses a rate as written in TOML strings.
func ParseRate(s string) (Rate, error) {
	t := strings.TrimSpace(s)
	if t == "unlimited" {
		return 0, nil
	}
	t = strings.TrimSuffix(t, "/s")
	i := strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mul, ok := rateUnits[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("rate %q: want a number and a unit (B, kB, MB, GB, KiB, MiB, GiB, kbit, Mbit, Gbit) per second, e.g. \"20 MiB/s\"", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("rate %q: %v", s, err)
	}
	r := v * mul
	if r > math.MaxInt64/2 {
		return 0, fmt.Errorf("rate %q is too large", s)
	}
	if r > 0 && r < 1 {
		return 0, fmt.Errorf("rate %q is under one byte per second", s)
	}
	return Rate(r), nil
}

// UnmarshalTOML takes an integer (bytes per second) or a string.
func (r *Rate) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("rate %d is negative", x)
		}
		*r = Rate(x)
		return nil
	case string:
		p, err := ParseRate(x)
		if err != nil {
			return err
		}
		*r = p
		return nil
	}
	return fmt.Errorf("rate %v: want an integer (bytes per second) or a string such as \"20 MiB/s\"", v)
}

// String writes the rate the way ParseRate reads it.
func (r Rate) String() string {
	switch {
	case r == 0:
		return "unlimited"
	case r%(1<<20) == 0:
		return fmt.Sprintf("%d MiB/s", r>>20)
	case r%(1<<10) == 0:
		return fmt.Sprintf("%d KiB/s", r>>10)
	}
	return fmt.Sprintf("%d B/s", int64(r))
}
