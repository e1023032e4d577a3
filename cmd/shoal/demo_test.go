package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDemoScript runs `make demo`'s script end to end on small images, so
// the README's first command cannot silently break.
func TestDemoScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the whole demo")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "shoal")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command("bash", "../../scripts/demo.sh")
	cmd.Env = append(os.Environ(), "SHOAL="+bin, "DEMO_OUT="+filepath.Join(dir, "out"),
		"DEMO_SIZE="+strconv.Itoa(8<<20), "DEMO_PORT="+strconv.Itoa(port), "DEMO_FLEET_SIZE=16M")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{"rejected, as it must be", "slot B is healthy: committed", "rolled back (health check failed", "audit log verifies", "slot A is healthy: committed", "from LAN", "update boot-check --config swarm-dev3/shoal.toml\nslot B is healthy: committed",
		"fleet      2 sites × 3 devices", "v2 over v1, 0.1 changed", "committed  6 of 6 devices", "  site 2   in ",
		"devices    final slot and version after the boot check", "s2-d3: slot A v2", "demo finished"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
