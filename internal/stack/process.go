// Package stack runs Agent Monitor's processes on this machine: it builds the binaries, writes
// the one influxd configuration and runs influxd, starts binaries with their environment, waits
// until they answer, and stops, kills or restarts each of them. The e2e tests, the bench
// (loadgen --mode bench), the fault suite and the dev tool (cmd/devstack) all run processes
// through it, the way VictoriaMetrics' apptest serves its tests; it returns errors instead of
// failing a test so that commands can use it too.
package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Spec describes a process to run.
type Spec struct {
	Name    string   // for errors and logs
	Path    string   // the executable
	Args    []string // its arguments
	Env     []string // its whole environment
	LogPath string   // stdout and stderr are appended here; empty: discarded
	// Ready reports whether the process is ready to serve; Start polls it until it returns nil.
	// Nil: started is ready.
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds the wait for Ready; default one minute.
	ReadyTimeout time.Duration
	// Detach puts the process in a session of its own that outlives the caller (the dev tool
	// leaves the binaries running). Otherwise Linux kills it when the caller dies, so that a test
	// binary that panics leaves nothing behind.
	Detach bool
	// Nice, when positive, runs the process that much nicer than its starter (nice -n), so
	// that it yields to the processes on the request path: see BackgroundNice.
	Nice int
}

// BackgroundNice is the nice value at which the dev tool and the bench run the write-behind
// workers (influx-writer, pg-sync, rollup) and influxd on a one-machine deployment: when the
// cores are busy, the gateway, Redis and the alerter go first, and the workers catch up from the
// streams once the burst has passed (STREAM_MAX_BACKLOG bounds how far they may fall behind).
const BackgroundNice = 10

// Background reports whether app is a write-behind worker that BackgroundNice applies to. The
// alerter is not one: alert latency has a budget of its own.
func Background(app string) bool {
	switch app {
	case "influx-writer", "pg-sync", "rollup":
		return true
	}
	return false
}

// Process is a process started from a Spec. Its methods are safe for concurrent use.
type Process struct {
	spec Spec

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// ErrExited is returned by Start when the process exits before it is ready, as a server does
// when its port is already taken.
var ErrExited = errors.New("exited during start")

// Start starts a process from spec and waits until it is ready. On failure the process is
// stopped and the error carries the end of its log.
func Start(ctx context.Context, spec Spec) (*Process, error) {
	p := &Process{spec: spec}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Name returns the spec's name.
func (p *Process) Name() string { return p.spec.Name }

// LogPath returns where the process's output goes.
func (p *Process) LogPath() string { return p.spec.LogPath }

// Start starts the process (again, after Stop or Kill) and waits until it is ready. It is an
// error to start a running process.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s is already running", p.spec.Name)
	}
	var out *os.File
	if p.spec.LogPath != "" {
		f, err := os.OpenFile(p.spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("opening %s log: %w", p.spec.Name, err)
		}
		fmt.Fprintf(f, "\n==== %s start %s ====\n", p.spec.Name, time.Now().Format(time.RFC3339))
		out = f
	}
	cmd := exec.Command(p.spec.Path, p.spec.Args...)
	if p.spec.Nice > 0 {
		// nice(1) sets the priority before the binary starts, so every thread of it has it
		// (setpriority on a running Go process would miss the threads it already has).
		if nice, err := exec.LookPath("nice"); err == nil {
			cmd = exec.Command(nice, append([]string{"-n", strconv.Itoa(p.spec.Nice), p.spec.Path}, p.spec.Args...)...)
		}
	}
	cmd.Env = p.spec.Env
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if p.spec.Detach {
		cmd.SysProcAttr.Setsid = true
	} else {
		setPdeathsig(cmd.SysProcAttr)
	}
	if err := cmd.Start(); err != nil {
		if out != nil {
			out.Close()
		}
		return fmt.Errorf("starting %s (%s): %w", p.spec.Name, p.spec.Path, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		if out != nil {
			out.Close()
		}
		close(done)
	}()
	p.cmd, p.done = cmd, done

	if err := p.waitReady(ctx); err != nil {
		_ = p.stopLocked(5 * time.Second)
		return fmt.Errorf("%s: %w%s", p.spec.Name, err, p.logTail(2000))
	}
	return nil
}

func (p *Process) waitReady(ctx context.Context) error {
	if p.spec.Ready == nil {
		return nil
	}
	timeout := p.spec.ReadyTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := p.spec.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return ErrExited
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}

// logTail returns "; log: " and the last n bytes of the log, or "" without one.
func (p *Process) logTail(n int) string {
	if t := p.LogTail(n); t != "" {
		return "; log:\n" + t
	}
	return ""
}

// LogTail returns the last n bytes of the process's log.
func (p *Process) LogTail(n int) string {
	if p.spec.LogPath == "" {
		return ""
	}
	b, err := os.ReadFile(p.spec.LogPath)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// setPdeathsig asks Linux to kill the process when its parent dies: a test binary that panics or
// is killed never runs its cleanups. The field exists only on Linux, so it is set through
// reflection to keep this file building elsewhere.
func setPdeathsig(attr *syscall.SysProcAttr) {
	if f := reflect.ValueOf(attr).Elem().FieldByName("Pdeathsig"); f.IsValid() && f.CanSet() {
		f.Set(reflect.ValueOf(syscall.SIGKILL))
	}
}

// Pid returns the process id, or 0 when it does not run.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited returns a channel closed when the current run of the process has ended (nil when it
// does not run).
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Running reports whether the process runs.
func (p *Process) Running() bool {
	done := p.Exited()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM, waits up to grace for the process to exit, then kills it; it reports
// whether the process had to be killed as an error. Stopping a stopped process does nothing.
func (p *Process) Stop(grace time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopLocked(grace)
}

func (p *Process) stopLocked(grace time.Duration) error {
	if p.cmd == nil {
		return nil
	}
	defer func() { p.cmd, p.done = nil, nil }()
	select {
	case <-p.done:
		return nil // exited by itself
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not stop within %s of SIGTERM: killed", p.spec.Name, grace)
}

// Kill ends the process with SIGKILL (no drain, no acks) and waits for it to exit.
func (p *Process) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil
	}
	defer func() { p.cmd, p.done = nil, nil }()
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing %s: %w", p.spec.Name, err)
	}
	<-p.done
	return nil
}

// Restart stops the process gracefully (SIGTERM, up to grace) and starts it again with the same
// spec, waiting until it is ready.
func (p *Process) Restart(ctx context.Context, grace time.Duration) error {
	if err := p.Stop(grace); err != nil {
		return err
	}
	return p.Start(ctx)
}

// HTTPReady returns a readiness probe: a GET of url that answers status.
func HTTPReady(url string, status int) func(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			return fmt.Errorf("GET %s: status %d, want %d", url, resp.StatusCode, status)
		}
		return nil
	}
}

// FreeAddrs returns n distinct loopback addresses ("127.0.0.1:port") nobody listens on now.
// Someone may take one before the caller binds it; Start then returns ErrExited and callers retry.
func FreeAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer ln.Close() // hold all n until the end so that they differ
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}
