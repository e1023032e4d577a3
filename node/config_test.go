package node

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shoalnet/shoal/swarm"
)

// cacheNode is the smallest cache node config.
const cacheNode = "[node]\nfleet = \"acme\"\nchannels = [\"stable\"]\n[trust]\nroot = \"root.json\"\n"

func TestConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(cacheNode), "/etc/shoal")
	if err != nil {
		t.Fatal(err)
	}
	n := c.Node
	for _, tc := range []struct{ name, got, want string }{
		{"store", c.StoreDir(), DefaultStore},
		{"identity key", c.Path(n.IdentityKey), DefaultStore + "/identity.key"},
		{"dht", n.DHT, "server"},
		{"api", n.API, DefaultAPI},
		{"apply", n.Apply, ApplyAuto},
		{"upload", n.UploadRate.String(), "unlimited"},
		{"download", n.DownloadRate.String(), "unlimited"},
		{"device", c.DevicePath(), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if !slices.Equal(n.Listen, DefaultListen) || !*n.MDNS || !c.CacheNode() {
		t.Errorf("listen %v, mdns %v, cache node %v: want defaults, on, true", n.Listen, *n.MDNS, c.CacheNode())
	}
	h := c.HostConfig()
	if h.Fleet != "acme" || h.DHT != swarm.DHTServer || !h.MDNS || h.KeyFile != DefaultStore+"/identity.key" || len(h.LANPrefixes) != 0 {
		t.Errorf("host config %+v", h)
	}
}

func TestConfigDevice(t *testing.T) {
	c, err := ParseConfig([]byte(`
[node]
fleet = "acme"
store = "state/node"
lan_prefixes = ["192.168.1.0/24", "fd00:1::/64"]
upload_rate = "2 MiB/s"
download_rate = 1000000
mdns = false

[device]
config = "shoal.toml"
`), "/srv/dev1")
	if err != nil {
		t.Fatal(err)
	}
	if c.CacheNode() || c.DevicePath() != "/srv/dev1/shoal.toml" {
		t.Errorf("device %q (cache node %v), want /srv/dev1/shoal.toml", c.DevicePath(), c.CacheNode())
	}
	if c.Node.DHT != "auto" {
		t.Errorf("a device's default dht %q, want auto", c.Node.DHT)
	}
	if c.StoreDir() != "/srv/dev1/state/node" || c.HostConfig().KeyFile != "/srv/dev1/state/node/identity.key" {
		t.Errorf("store %s, key %s: want both under /srv/dev1/state/node", c.StoreDir(), c.HostConfig().KeyFile)
	}
	if c.Node.UploadRate != 2<<20 || c.Node.DownloadRate != 1000000 {
		t.Errorf("rates %d, %d", c.Node.UploadRate, c.Node.DownloadRate)
	}
	want := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("fd00:1::/64")}
	if h := c.HostConfig(); !slices.Equal(h.LANPrefixes, want) || h.MDNS || h.DHT != swarm.DHTAuto {
		t.Errorf("host config: prefixes %v, mdns %v, dht %v", h.LANPrefixes, h.MDNS, h.DHT)
	}
}

func TestConfigRefused(t *testing.T) {
	for _, tc := range []struct{ name, toml, want string }{
		{"unknown key", "[node]\nfleet = \"a\"\nfleeet = \"b\"\n", "unknown key node.fleeet (line 3)"},
		{"unknown table", "[node]\nfleet = \"a\"\n[swarm]\nx = 1\n", "unknown key swarm (line 3), swarm.x (line 4)"},
		{"unknown device key", "[node]\nfleet = \"a\"\n[device]\nconfig = \"d\"\nslots = 2\n", "device.slots (line 5)"},
		{"syntax", "[node\nfleet = 1\n", "toml: line"},
		{"no node", "", "[node] fleet is required"},
		{"bad fleet", "[node]\nfleet = \"my fleet\"\n", `fleet name "my fleet"`},
		{"wrong type", "[node]\nfleet = 3\n", "fleet"},
		{"bad listen", "[node]\nfleet = \"a\"\nlisten = [\"/ip4/0.0.0.0/tcp/1\", \"0.0.0.0:4101\"]\n", "listen[1]"},
		{"listen with id", "[node]\nfleet = \"a\"\nlisten = [\"/ip4/0.0.0.0/tcp/1/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA\"]\n", "/p2p/ part"},
		{"bootstrap without id", "[node]\nfleet = \"a\"\nbootstrap = [\"/ip4/10.0.0.1/tcp/4101\"]\n", "bootstrap[0]"},
		{"dht", "[node]\nfleet = \"a\"\ndht = \"full\"\n", `dht: DHT mode "full"`},
		{"lan prefix", "[node]\nfleet = \"a\"\nlan_prefixes = [\"192.168.1.0\"]\n", "lan_prefixes[0]"},
		{"lan host bits", "[node]\nfleet = \"a\"\nlan_prefixes = [\"192.168.1.5/24\"]\n", "did you mean 192.168.1.0/24"},
		{"api not loopback", "[node]\nfleet = \"a\"\napi = \"0.0.0.0:4102\"\n", "loopback only"},
		{"api name", "[node]\nfleet = \"a\"\napi = \"example.com:4102\"\n", "loopback only"},
		{"api no port", "[node]\nfleet = \"a\"\napi = \"127.0.0.1\"\n", "want host:port"},
		{"api port", "[node]\nfleet = \"a\"\napi = \"127.0.0.1:70000\"\n", "not 0..65535"},
		{"apply", "[node]\nfleet = \"a\"\napply = \"sometimes\"\n", `apply "sometimes"`},
		{"device without config", "[node]\nfleet = \"a\"\n[device]\n", "[device] config is required"},
		{"negative rate", "[node]\nfleet = \"a\"\nupload_rate = -1\n", "negative"},
		{"rate unit", "[node]\nfleet = \"a\"\ndownload_rate = \"5 Mbps\"\n", `rate "5 Mbps"`},
		{"rate type", "[node]\nfleet = \"a\"\ndownload_rate = true\n", "want an integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.toml), t.TempDir())
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrConfig naming %q", err, tc.want)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
	}{
		{"0", 0}, {"unlimited", 0}, {"1500", 1500}, {"1500 B/s", 1500},
		{"20 MiB/s", 20 << 20}, {"20MiB", 20 << 20}, {"1.5 KiB/s", 1536},
		{"100 Mbit/s", 12_500_000}, {"8 kbit/s", 1000}, {"2 GB/s", 2e9}, {"3 kB/s", 3000},
	} {
		got, err := ParseRate(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if back, err := ParseRate(got.String()); err != nil || back != got {
			t.Errorf("%d writes as %q, which reads as %d, %v", got, got.String(), back, err)
		}
	}
	for _, bad := range []string{"", "MiB/s", "-1 MiB/s", "5 Mbps", "1e3", "0.1 B/s", "1..2 MB", "99999999999 GiB"} {
		if r, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) = %d, want an error", bad, r)
		}
	}
}

func TestLoadConfigNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "node.toml")
	os.WriteFile(p, []byte("[node]\nfleet = \"acme\"\nstore = \"store\"\nchannels = [\"stable\"]\n[trust]\nroot = \"root.json\"\n"), 0o644)
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.StoreDir() != filepath.Join(filepath.Dir(p), "store") {
		t.Errorf("store %s, want it beside the config", c.StoreDir())
	}
	os.WriteFile(p, []byte("[node]\n"), 0o644)
	if _, err := LoadConfig(p); err == nil || !strings.HasPrefix(err.Error(), p+": ") {
		t.Errorf("error %v, want it to start with the file's path", err)
	}
}

// TestDocsExample parses the example node.toml of docs/swarm.md, so the
// documentation cannot drift from the parser.
func TestDocsExample(t *testing.T) {
	b, err := os.ReadFile("../docs/swarm.md")
	if err != nil {
		t.Fatal(err)
	}
	const marker = "<!-- node-config-example -->"
	_, rest, ok := strings.Cut(string(b), marker)
	if !ok {
		t.Fatalf("docs/swarm.md has no %s", marker)
	}
	_, rest, _ = strings.Cut(rest, "```toml\n")
	example, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("no ```toml block after the marker")
	}
	c, err := ParseConfig([]byte(example), "/etc/shoal")
	if err != nil {
		t.Fatalf("the documented example does not parse: %v", err)
	}
	if c.CacheNode() || c.Node.Apply != ApplyManual || len(c.Node.Bootstrap) == 0 || c.Node.UploadRate == 0 {
		t.Errorf("example should show a device with manual apply, bootstrap peers and a rate cap: %+v", c.Node)
	}
}

func ExampleParseConfig() {
	c, err := ParseConfig([]byte(`
[node]
fleet = "acme"
store = "/var/lib/shoal/node"
bootstrap = ["/ip4/192.0.2.10/tcp/4101/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]
lan_prefixes = ["192.168.1.0/24"]
upload_rate = "4 MiB/s"

[device]
config = "/etc/shoal/shoal.toml"
`), "/etc/shoal")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("device:", c.DevicePath())
	fmt.Println("dht:", c.Node.DHT, "apply:", c.Node.Apply, "api:", c.Node.API)
	fmt.Println("upload:", c.Node.UploadRate, "download:", c.Node.DownloadRate)
	fmt.Println("key:", c.HostConfig().KeyFile)
	fmt.Println("lan:", c.LANPrefixes())
	// Output:
	// device: /etc/shoal/shoal.toml
	// dht: auto apply: auto api: 127.0.0.1:4102
	// upload: 4 MiB/s download: unlimited
	// key: /var/lib/shoal/node/identity.key
	// lan: [192.168.1.0/24]
}

func TestOrigins(t *testing.T) {
	c, err := ParseConfig([]byte(cacheNode+"[node]\n"), "/etc/shoal")
	if err == nil {
		t.Fatal("a second [node] table parsed")
	}
	c, err = ParseConfig([]byte("[node]\nfleet = \"acme\"\nchannels = [\"stable\"]\norigin = [\"https://updates.example/repo/\", \"mirror\"]\n[trust]\nroot = \"root.json\"\n"), "/etc/shoal")
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Origins(); len(o) != 2 || o[0] != "https://updates.example/repo/" || o[1] != "/etc/shoal/mirror" {
		t.Fatalf("origins %v", o)
	}
}
