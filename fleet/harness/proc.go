package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a long-running process of the fleet (a node, the origin).
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string        // its stderr
	done chan struct{} // closed when it has exited
	err  error         // its exit, once done is closed
}

// command builds the command line of the shoal binary with args, inside
// namespace ns ("" for none): ip netns exec execs shoal itself, so the
// process's ID is shoal's.
func (r *run) command(ctx context.Context, ns string, args ...string) *exec.Cmd {
	argv := append(append([]string{}, r.o.Shoal...), args...)
	if ns != "" {
		argv = append([]string{"ip", "netns", "exec", ns}, argv...)
	}
	var cmd *exec.Cmd
	if ctx != nil {
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.WaitDelay = 5 * time.Second
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	cmd.Env = r.o.Env
	// Its own process group: a Ctrl-C at the terminal reaches the harness
	// only, which stops everything in order. Pdeathsig: should the harness
	// die without its teardown, its processes die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// shoal runs a shoal command to completion and returns its stdout.
func (r *run) shoal(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	cmd := r.command(ctx, "", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return out.Bytes(), fmt.Errorf("shoal %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// stepTimeout bounds every single command of the setup.
const stepTimeout = 5 * time.Minute

// spawn starts a long-running shoal process in namespace ns; its stderr
// goes to logs/NAME.log, its stdout to stdout (nil: the log too).
func (r *run) spawn(name, ns string, stdout io.Writer, args ...string) (*proc, error) {
	logPath := filepath.Join(r.dir, "logs", name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := r.command(nil, ns, args...)
	cmd.Stderr = f
	cmd.Stdout = f
	if stdout != nil {
		cmd.Stdout = stdout
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		f.Close()
		return nil, fmt.Errorf("%s: the fleet is stopping", name)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	r.procs = append(r.procs, p)
	return p, nil
}

// exited tells whether p has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the last lines of p's log, for errors.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// stop asks p to stop (SIGTERM) and kills it after grace.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	select {
	case <-p.done:
		return fmt.Errorf("%s did not stop in %v: killed", p.name, grace)
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) survives SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// stopAll stops every process at once and waits.
func stopAll(ps []*proc, grace time.Duration) error {
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = p.stop(grace) }()
	}
	wg.Wait()
	return joinErrs(errs)
}

func joinErrs(errs []error) error {
	var msgs []string
	for _, e := range errs {
		if e != nil {
			msgs = append(msgs, e.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%s", strings.Join(msgs, "; "))
}

// parallel runs f for 0..n-1, at most width at once, and returns the
// first error.
func parallel(n, width int, f func(i int) error) error {
	errs := make([]error, n)
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
