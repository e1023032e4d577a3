package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ip runs one ip/tc/sysctl command of the setup.
func ipCommand(ctx context.Context, argv []string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Namespaces lists the network namespaces whose names start with
// prefix + "-": a run's, whatever state its setup reached.
func Namespaces(ctx context.Context, prefix string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// removeNamespaces kills whatever still runs in each of the run's
// namespaces and deletes them.
func removeNamespaces(ctx context.Context, prefix string) error {
	names, err := Namespaces(ctx, prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range names {
		if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
		errs = append(errs, ipCommand(ctx, []string{"ip", "netns", "del", ns}))
	}
	return joinErrs(errs)
}

// counters reads an interface's rx_bytes and tx_bytes inside namespace ns
// (ip netns exec mounts the namespace's own /sys).
func counters(ctx context.Context, ns, dev string) (rx, tx int64, err error) {
	return ifStats(ctx, ns, dev, "bytes")
}

// frames reads an interface's rx_packets and tx_packets inside ns: with
// the byte counters they give the payload (fleet.FrameHeaderBytes).
func frames(ctx context.Context, ns, dev string) (rx, tx int64, err error) {
	return ifStats(ctx, ns, dev, "packets")
}

// ifStats reads the statistics rx_WHAT and tx_WHAT of interface dev in ns.
func ifStats(ctx context.Context, ns, dev, what string) (rx, tx int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	p := "/sys/class/net/" + dev + "/statistics/"
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "cat", p+"rx_"+what, p+"tx_"+what).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("%s counters of %s in %s: %w", what, dev, ns, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("%s counters of %s in %s: %q", what, dev, ns, out)
	}
	rx, err1 := strconv.ParseInt(f[0], 10, 64)
	tx, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%s counters of %s in %s: %q", what, dev, ns, out)
	}
	return rx, tx, nil
}

// nsDialer dials from inside network namespace ns ("" for this one), so
// the harness reaches each node's loopback-only API without running a
// process there. A socket belongs to the namespace it was created in; the
// dialling goroutine's thread enters ns for the socket() call and leaves
// again, and if it cannot leave, the goroutine ends still locked so the
// runtime discards the thread.
func nsDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if ns == "" {
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			c, err, back := dialIn(ctx, ns, network, addr)
			if back {
				runtime.UnlockOSThread()
			}
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

func dialIn(ctx context.Context, ns, network, addr string) (c net.Conn, err error, back bool) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err, true
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return nil, err, true
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter namespace %s: %w", ns, err), true
	}
	var d net.Dialer
	c, err = d.DialContext(ctx, network, addr)
	if e := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); e != nil {
		if c != nil {
			c.Close()
		}
		return nil, fmt.Errorf("leave namespace %s: %w", ns, e), false
	}
	return c, err, true
}

// tcpSegments reads the TCP segments sent and retransmitted by every
// socket of namespace ns, and the duplicate segments its sockets received
// (the D-SACKs they sent: a segment that arrived twice, because a sender
// resent what was not lost). /proc/net shows the reader's namespace.
func tcpSegments(ctx context.Context, ns string) (out, retrans, dup int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "cat", "/proc/net/snmp", "/proc/net/netstat").Output()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("TCP counters in %s: %w", ns, err)
	}
	// Lines come in pairs: "Tcp: Name Name ..." then "Tcp: 1 2 ...".
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || (f[0] != "Tcp:" && f[0] != "TcpExt:") {
			names = nil
			continue
		}
		if names == nil || names[0] != f[0] {
			names = f
			continue
		}
		for i := 1; i < len(f) && i < len(names); i++ {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			switch names[0] + names[i] {
			case "Tcp:OutSegs":
				out = v
			case "Tcp:RetransSegs":
				retrans = v
			case "TcpExt:TCPDSACKOldSent", "TcpExt:TCPDSACKOfoSent":
				dup += v
			}
		}
		names = nil
	}
	return out, retrans, dup, nil
}
