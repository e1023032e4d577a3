package fleet

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shoalnet/shoal/chunker"
)

const mib = 1 << 20

// TestBound checks the bound against cases computed by hand (docs/fleet.md).
func TestBound(t *testing.T) {
	F := int64(64 * mib) // 67,108,864 bytes
	const mbit20 = 2.5e6 // 20 Mbit/s in bytes per second
	sym := Symmetric
	for _, c := range []struct {
		name string
		c    Capacities
		F    int64
		want float64
		term string
	}{
		// Issue 9's topology: 2 sites × 4 devices, 20 Mbit/s uplinks,
		// origin and LAN uncapped: each site needs F through its uplink.
		// 67,108,864 / 2,500,000 = 26.8435456 s.
		{"uplink", sym(2, 4, 0, mbit20, 0, 0), F, 26.8435456, TermUplink},
		// The origin at 2 Mbit/s (250,000 B/s) must send F at least once:
		// 67,108,864 / 250,000 = 268.435456 s.
		{"origin", sym(2, 4, 0, mbit20, 0, 250e3), F, 268.435456, TermOrigin},
		// LAN links of 10 Mbit/s (1,250,000 B/s): each device downloads F
		// over its own: 67,108,864 / 1,250,000 = 53.6870912 s.
		{"lan", sym(2, 4, 0, mbit20, 1.25e6, 0), F, 53.6870912, TermLAN},
		// Kumar and Ross proper (one site, no uplink cap, N = 10, u_i =
		// d_i = 1 MB/s, u_s = 0.5 MB/s): max{F/u_s = 24, F/d = 12,
		// N·F/(u_s + N·u) = 120/10.5 = 11.43} = 24 for F = 12 MB.
		{"kumar-ross", sym(1, 10, 0, 0, 1e6, 0.5e6), 12e6, 24, TermOrigin},
		// Asymmetric links, where the last three terms bind (F = 12 MB):
		// one site of 4 devices uploading 0.1 MB/s, a 1 MB/s uplink in:
		// F/C↓ = 12; M·F/(C↓ + M·L↑) = 48/1.4 = 34.2857142857.
		{"site", Capacities{Sites: 1, Devices: 4, UplinkDown: 1e6, LANUp: 0.1e6}, 12e6, 48 / 1.4, TermSite},
		// A cache node's upload helps: 48/(1 + 5·0.1) = 32.
		{"site+helper", Capacities{Sites: 1, Devices: 4, Helpers: 1, UplinkDown: 1e6, LANUp: 0.1e6}, 12e6, 32, TermSite},
		// 2 sites of 4, uplinks uncapped, a 1 MB/s origin: F/S = 12;
		// K·M·F/(S + K·M·L↑) = 96/1.8 = 53.3333333333.
		{"aggregate", Capacities{Sites: 2, Devices: 4, LANUp: 0.1e6, Origin: 1e6}, 12e6, 96 / 1.8, TermAggregate},
		// 4 sites with 10 MB/s in and 0.1 MB/s out, a 1 MB/s origin:
		// F/S = 12, F/C↓ = 1.2; K·F/(S + K·C↑) = 48/1.4 = 34.2857142857.
		{"cross-site", Capacities{Sites: 4, Devices: 2, UplinkDown: 10e6, UplinkUp: 0.1e6, Origin: 1e6}, 12e6, 48 / 1.4, TermCrossSite},
		{"nothing capped", sym(2, 4, 0, 0, 0, 0), F, 0, TermUnbounded},
		{"nothing new", sym(2, 4, 0, mbit20, 0, 0), 0, 0, TermUnbounded},
	} {
		got, term := Bound(c.c, c.F)
		if math.Abs(got-c.want) > 1e-6 || term != c.term {
			t.Errorf("%s: Bound = %.7f (%s), want %.7f (%s)", c.name, got, term, c.want, c.term)
		}
	}
}

// TestBoundSymmetric: with the same rate both ways, the last three terms
// never exceed the first three (docs/fleet.md), whatever the numbers.
func TestBoundSymmetric(t *testing.T) {
	rates := []float64{0, 1e5, 1e6, 2.5e6, 1e8}
	for _, k := range []int{1, 2, 4} {
		for _, m := range []int{1, 3, 10} {
			for _, c := range rates {
				for _, l := range rates {
					for _, s := range rates {
						got, term := Bound(Symmetric(k, m, 0, c, l, s), 1e7)
						simple := 0.0
						for _, r := range []float64{c, l, s} {
							if r > 0 {
								simple = max(simple, 1e7/r)
							}
						}
						if math.Abs(got-simple) > 1e-9*simple {
							t.Fatalf("K=%d M=%d C=%g L=%g S=%g: %g (%s), want %g", k, m, c, l, s, got, term, simple)
						}
					}
				}
			}
		}
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{
		"20mbit": 20e6, "20Mbit": 20e6, "20mbit/s": 20e6, "1.5gbit": 1.5e9, "100kbit": 100e3,
		"500kbps": 4e6, "1mibit": 1 << 20, "8": 8, "1000bit": 1000, "": 0, "0": 0, "unlimited": 0,
	} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"fast", "20 parsecs", "-1mbit", "1bit", "1e30gbit", "mbit"} {
		if _, err := ParseRate(in); !errors.Is(err, ErrRate) {
			t.Errorf("ParseRate(%q): %v, want ErrRate", in, err)
		}
	}
	if s := FormatRate(20e6); s != "20 Mbit/s" {
		t.Errorf("FormatRate(20e6) = %q", s)
	}
	if s := FormatRate(0); s != "uncapped" {
		t.Errorf("FormatRate(0) = %q", s)
	}
}

func testConfig() Config {
	return Config{Sites: 2, Devices: 3, Size: 8 * mib, Uplink: 20e6, Prefix: "shftest", CacheNode: true}
}

func TestPlan(t *testing.T) {
	topo, err := Plan(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if topo.DeviceCount() != 6 || len(topo.Nodes()) != 8 {
		t.Fatalf("devices %d, nodes %d", topo.DeviceCount(), len(topo.Nodes()))
	}
	s2 := topo.Sites[1]
	if s2.Prefix != "10.2.0.0/24" || s2.UplinkIP != "10.254.2.2" || s2.WANIP != "10.254.2.1" || s2.Router != "shftest-s2" {
		t.Fatalf("site 2: %+v", s2)
	}
	d := s2.Nodes[2]
	if d.Name != "s2-d3" || d.IP != "10.2.0.12" || d.Namespace != "shftest-s2-d3" || d.Seed || d.Cache {
		t.Fatalf("s2-d3: %+v", d)
	}
	if c := s2.Nodes[3]; !c.Cache || c.IP != "10.2.0.5" || len(s2.Devices()) != 3 {
		t.Fatalf("cache node: %+v", c)
	}
	if !topo.Sites[0].Nodes[0].Seed {
		t.Fatal("s1-d1 is not a seed")
	}
	ns := topo.Namespaces()
	if len(ns) != 2+2*(1+4) || ns[0] != "shftest-wan" {
		t.Fatalf("namespaces: %v", ns)
	}
	if c := topo.Capacities(); c.UplinkDown != 2.5e6 || c.UplinkUp != 2.5e6 || c.Helpers != 1 || c.Sites != 2 || c.Devices != 3 {
		t.Fatalf("capacities: %+v", c)
	}

	cfg := testConfig()
	cfg.Loopback, cfg.Net, cfg.Uplink = true, 42, 0
	lo, err := Plan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n := lo.Sites[1].Nodes[0]; n.IP != "127.42.2.10" || n.Namespace != "" || lo.Sites[1].Prefix != "127.42.2.0/24" {
		t.Fatalf("loopback node: %+v", n)
	}
	if lo.Namespaces() != nil || lo.SetupCommands() != nil {
		t.Fatal("loopback has namespaces")
	}
}

func TestPlanRefuses(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"no sites":        func(c *Config) { c.Sites = 0 },
		"too many sites":  func(c *Config) { c.Sites = MaxSites + 1 },
		"no devices":      func(c *Config) { c.Devices = 0 },
		"tiny":            func(c *Config) { c.Size = 1000 },
		"changed > 1":     func(c *Config) { c.Changed = 1.5 },
		"deltas, fresh":   func(c *Config) { c.Changed, c.Deltas = 1, true },
		"loopback capped": func(c *Config) { c.Loopback, c.Net = true, 9 },
		"bad prefix":      func(c *Config) { c.Prefix = "Shf-1" },
		"long prefix":     func(c *Config) { c.Prefix = "shf12345678" },
		"kill > 1":        func(c *Config) { c.Faults.Kill = 1.5 },
		"cut on loopback": func(c *Config) { c.Loopback, c.Uplink, c.Net, c.Faults.Cut = true, 0, 9, &Window{At: 1e9, For: 1e9} },
		"power-off alone": func(c *Config) { c.Devices, c.Faults.PowerOff = 1, &Window{At: 1e9, UntilDone: true} },
		"baseline faults": func(c *Config) { c.Baseline, c.CacheNode, c.Faults.Kill = BaselineHTTP, false, 0.5 },
		"baseline cache":  func(c *Config) { c.Baseline, c.CacheNode = BaselineHTTP, true },
		"baseline ftp":    func(c *Config) { c.Baseline = "ftp" },
		"kill all, off":   func(c *Config) { c.Sites, c.Faults.Kill, c.Faults.PowerOff = 1, 1, &Window{UntilDone: true} },
	} {
		c := testConfig()
		mod(&c)
		if _, err := Plan(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
}

// TestSetupCommands checks the namespace plan's commands on a 1 site × 1
// device fleet with every cap, line by line.
func TestSetupCommands(t *testing.T) {
	topo, err := Plan(Config{Sites: 1, Devices: 1, Size: mib, Uplink: 20e6, LAN: 100e6, Origin: 50e6, Prefix: "p"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range topo.SetupCommands() {
		got = append(got, strings.Join(c, " "))
	}
	want := `ip netns add p-wan
ip -n p-wan link set dev lo up
ip netns add p-origin
ip -n p-origin link set dev lo up
ip netns add p-s1
ip -n p-s1 link set dev lo up
ip netns add p-s1-d1
ip -n p-s1-d1 link set dev lo up
ip netns exec p-wan sysctl -qw net.ipv4.ip_forward=1
ip -n p-origin link add eth0 type veth peer name origin netns p-wan
ip -n p-origin link set dev eth0 gso_max_segs 1
ip -n p-wan link set dev origin gso_max_segs 1
ip -n p-origin link set dev eth0 up
ip -n p-wan link set dev origin up
ip -n p-origin addr add 10.253.0.2/30 dev eth0
ip -n p-wan addr add 10.253.0.1/30 dev origin
ip -n p-origin route add default via 10.253.0.1
tc -n p-origin qdisc add dev eth0 root tbf rate 50000000bit burst 31250 latency 100ms
ip netns exec p-s1 sysctl -qw net.ipv4.ip_forward=1
ip -n p-s1 link add uplink type veth peer name s1 netns p-wan
ip -n p-s1 link set dev uplink gso_max_segs 1
ip -n p-wan link set dev s1 gso_max_segs 1
ip -n p-s1 link set dev uplink up
ip -n p-wan link set dev s1 up
ip -n p-s1 addr add 10.254.1.2/30 dev uplink
ip -n p-wan addr add 10.254.1.1/30 dev s1
ip -n p-s1 route add default via 10.254.1.1
ip -n p-wan route add 10.1.0.0/24 via 10.254.1.2
tc -n p-s1 qdisc add dev uplink root tbf rate 20000000bit burst 15140 latency 100ms
tc -n p-wan qdisc add dev s1 root tbf rate 20000000bit burst 15140 latency 100ms
ip -n p-s1 link add br0 type bridge
ip -n p-s1 addr add 10.1.0.1/24 dev br0
ip -n p-s1 link set dev br0 up
ip -n p-s1-d1 link add eth0 type veth peer name d1 netns p-s1
ip -n p-s1-d1 link set dev eth0 up
ip -n p-s1 link set dev d1 up
ip -n p-s1 link set dev d1 master br0
ip -n p-s1-d1 addr add 10.1.0.10/24 dev eth0
ip -n p-s1-d1 route add default via 10.1.0.1
ip -n p-s1-d1 route add 224.0.0.0/4 dev eth0
tc -n p-s1-d1 qdisc add dev eth0 root tbf rate 100000000bit burst 62500 latency 100ms
tc -n p-s1 qdisc add dev d1 root tbf rate 100000000bit burst 62500 latency 100ms`
	if g := strings.Join(got, "\n"); g != want {
		t.Fatalf("setup commands:\n%s\nwant:\n%s", g, want)
	}
}

// TestImage checks that images are deterministic, that a changed image
// rewrites the asked fraction of bytes, spread over every block, and
// that chunking keeps the rest.
func TestImage(t *testing.T) {
	const size = 3*ImageBlock + ImageBlock/2
	img := func(seed uint64, changed float64) []byte {
		var b bytes.Buffer
		if err := Image(&b, size, seed, changed); err != nil {
			t.Fatal(err)
		}
		if b.Len() != size {
			t.Fatalf("%d bytes, want %d", b.Len(), size)
		}
		return b.Bytes()
	}
	v1, v2 := img(7, 0), img(7, 0.1)
	if !bytes.Equal(v1, img(7, 0)) || bytes.Equal(v1, img(8, 0)) {
		t.Fatal("images are not deterministic by seed")
	}
	diff, blocks := 0, map[int]bool{}
	for i := range v1 {
		if v1[i] != v2[i] {
			diff++
			blocks[i/ImageBlock] = true
		}
	}
	if f := float64(diff) / size; f < 0.099 || f > 0.1 {
		t.Fatalf("%.4f of the bytes changed, want 0.1", f)
	}
	if len(blocks) != 4 {
		t.Fatalf("changes in %d blocks, want all 4", len(blocks))
	}
	ix := func(b []byte) *chunker.Index {
		x, err := chunker.Split(context.Background(), bytes.NewReader(b), chunker.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	i1, i2 := ix(v1), ix(v2)
	all, n := NewBytes(nil, i1)
	if all != size || n != len(i1.Chunks) {
		t.Fatalf("NewBytes(nil, v1) = %d, %d; want %d, %d", all, n, size, len(i1.Chunks))
	}
	nb, _ := NewBytes(i1, i2)
	// The rewritten runs, plus at most the chunks they cut into on each
	// side (four runs, 256 KiB maximum chunks).
	if nb < int64(diff) || nb > int64(diff)+4*2*256<<10 {
		t.Fatalf("NewBytes(v1, v2) = %d for %d changed bytes", nb, diff)
	}
	if same, _ := NewBytes(i1, i1); same != 0 {
		t.Fatalf("NewBytes(v1, v1) = %d", same)
	}
}

func TestResultText(t *testing.T) {
	r := &Result{Devices: 8, Committed: 8, NewBytes: 64 * mib, UplinkBytes: []int64{66 * mib, 70 * mib},
		UplinkOutBytes: []int64{mib, 2 * mib}, OriginEgressBytes: 130 * mib, CompletionSeconds: 30,
		LowerBoundSeconds: 26.8435456, BoundTerm: TermUplink, Backend: "netns", Counters: "interface", Sites: 2,
		DevicesPerSite: 4, Size: 64 * mib, Changed: 1, UplinkRate: 20e6, DeviceSeconds: [][]float64{{29, 30}, {28, -1}}}
	r.Finish()
	var b strings.Builder
	r.WriteText(&b)
	for _, want := range []string{"2 sites × 4 devices (netns)", "uplinks 20 Mbit/s, LAN uncapped", "committed  8 of 8",
		"site 1   in 66.00 MiB = 1.031 × new bytes, out 1.00 MiB", "= 1.016 × new bytes × sites",
		"lower bound 26.8 s (uplink term), 1.12 × the bound", "flipped at 28.0 never s"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}

func TestParseWindow(t *testing.T) {
	for _, c := range []struct {
		in   string
		done bool
		want Window
		ok   bool
	}{
		{"3s:5s", false, Window{At: 3 * time.Second, For: 5 * time.Second}, true},
		{"0s:1m", false, Window{For: time.Minute}, true},
		{"1.5s:done", true, Window{At: 1500 * time.Millisecond, UntilDone: true}, true},
		{"1s:done", false, Window{}, false},
		{"3s", false, Window{}, false},
		{"-1s:2s", false, Window{}, false},
		{"1s:0s", false, Window{}, false},
		{"soon:2s", false, Window{}, false},
	} {
		w, err := ParseWindow(c.in, c.done)
		if c.ok != (err == nil) || w != c.want {
			t.Errorf("ParseWindow(%q, %v) = %+v, %v", c.in, c.done, w, err)
		}
		if err != nil && !errors.Is(err, ErrWindow) {
			t.Errorf("%q: %v is not ErrWindow", c.in, err)
		}
		if err == nil {
			if back, _ := ParseWindow(w.String(), c.done); back != w {
				t.Errorf("%q: String %q reads back as %+v", c.in, w.String(), back)
			}
		}
	}
}

// TestFaultNodes: who a kill and a power-off take.
func TestFaultNodes(t *testing.T) {
	names := func(ns []Node) string {
		var s []string
		for _, n := range ns {
			s = append(s, n.Name)
		}
		return strings.Join(s, " ")
	}
	c := testConfig()
	c.Sites, c.Devices = 2, 4
	for _, k := range []struct {
		kill float64
		off  bool
		want string
	}{
		{0.5, false, "s1-d2 s1-d3"},
		{0.3, false, "s1-d2 s1-d3"}, // ⌈1.2⌉
		{0.01, false, "s1-d2"},
		{1, false, "s1-d2 s1-d3 s1-d4 s1-d1"},
	} {
		c.Faults.Kill = k.kill
		topo, err := Plan(c)
		if err != nil {
			t.Fatal(err)
		}
		if got := names(topo.KillVictims()); got != k.want {
			t.Errorf("--kill %g: %s, want %s", k.kill, got, k.want)
		}
	}
	// One site: the powered-off device (its last) is never a victim.
	c.Sites, c.Faults.Kill, c.Faults.PowerOff = 1, 0.5, &Window{UntilDone: true}
	topo, err := Plan(c)
	if err != nil {
		t.Fatal(err)
	}
	off, ok := topo.PowerOffNode()
	if !ok || off.Name != "s1-d4" || names(topo.KillVictims()) != "s1-d2 s1-d3" {
		t.Errorf("power-off %s, victims %s", off.Name, names(topo.KillVictims()))
	}
}

func TestCutCommands(t *testing.T) {
	c := testConfig()
	c.Sites = 2
	topo, err := Plan(c)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, down := range []bool{true, false} {
		for _, cmd := range topo.CutCommands(2, down) {
			b.WriteString(strings.Join(cmd, " ") + "\n")
		}
	}
	p := c.Prefix
	want := "ip -n " + p + "-s2 route replace blackhole default\n" +
		"ip -n " + p + "-wan route replace blackhole 10.2.0.0/24\n" +
		"ip -n " + p + "-s2 route replace default via 10.254.2.1\n" +
		"ip -n " + p + "-wan route replace 10.2.0.0/24 via 10.254.2.2\n"
	if b.String() != want {
		t.Errorf("cut commands:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestResultTextFaults(t *testing.T) {
	r := &Result{Devices: 4, Committed: 4, NewBytes: 12 * mib, UplinkBytes: []int64{13 * mib, 13 * mib}, Sites: 2,
		DevicesPerSite: 2, Size: 12 * mib, Changed: 1, Mode: BaselineHTTP, Backend: "netns", Counters: "interface",
		Cut:      &CutReport{Site: 1, DownAt: 2, UpAt: 7, Positions: 200, HeldAtCut: []int{50, 40}, HeldAtRestore: []int{60, 60}},
		Kill:     &KillReport{Site: 1, Fraction: 0.5, NoRefetch: true, Devices: []KilledDevice{{Name: "s1-d2", Positions: 200, HeldBefore: 80, PlacedAtKill: 78, MostAfter: 122, ChunksAfter: map[string]int{"lan": 100, "origin": 22}}}},
		PowerOff: &PowerOffReport{Device: "s2-d2", OffAt: 1, OnAt: 20, FlippedAt: 25, BytesAfterOn: map[string]int64{"lan": 10 * mib}},
		Final:    [][]DeviceEnd{{{Name: "s1-d1", Slot: "B", Version: 2, Committed: true}}, {{Name: "s2-d1", Slot: "A", Version: 1}}}}
	r.Finish()
	var b strings.Builder
	r.WriteText(&b)
	for _, want := range []string{"baseline: every device over HTTP", "site 1's uplink down from 2.0 s to 7.0 s",
		"at the cut [50 40], at the restore [60 60]", "no verified chunk fetched twice", "fetched 0 chunks before, 122 after (at most 122)",
		"s2-d2 off at 1.0 s", "after power-on: lan 10.00 MiB, wan 0.00 MiB", "s1-d1: slot B v2", "s2-d1: slot A v1 (not committed)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}
