package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx/influxql"
)

// InfluxdModule and InfluxdVersion name the InfluxDB 1.8 build the tests and local runs use.
const (
	InfluxdModule  = "github.com/influxdata/influxdb"
	InfluxdVersion = "v1.8.10"
)

// InfluxdInstall is the command that installs the influxd binary.
const InfluxdInstall = "go install " + InfluxdModule + "/cmd/influxd@" + InfluxdVersion

// InfluxdConfig is what an influxd 1.8 is told: where its data lives and where it listens.
type InfluxdConfig struct {
	Dir      string // data directory: meta/, data/, wal/, influxd.conf and influxd.log
	HTTPAddr string // host:port of the HTTP API
	RPCAddr  string // host:port of the backup/restore service
	NoFlux   bool   // Flux off: starts in milliseconds instead of seconds, answers only InfluxQL
	LogLevel string // "error" when empty
	Nice     int    // run at this lower CPU priority when positive (Spec.Nice)
}

// Render returns the influxd.conf for c: reporting, request logs, query logs and the monitor
// store off, since one log line per request would dominate under agent traffic. This is the one
// influxd configuration of the repository (tests, bench and go tool task up).
func (c InfluxdConfig) Render() string {
	level := c.LogLevel
	if level == "" {
		level = "error"
	}
	return fmt.Sprintf(`# written by internal/stack
reporting-disabled = true
bind-address = %q
[meta]
  dir = %q
  logging-enabled = false
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
[monitor]
  store-enabled = false
[subscriber]
  enabled = false
[continuous_queries]
  log-enabled = false
[http]
  bind-address = %q
  log-enabled = false
  suppress-write-log = true
  flux-enabled = %t
  pprof-enabled = false
[logging]
  level = %q
  suppress-logo = true
`, c.RPCAddr, filepath.Join(c.Dir, "meta"), filepath.Join(c.Dir, "data"), filepath.Join(c.Dir, "wal"), c.HTTPAddr, !c.NoFlux, level)
}

// Influxd is an InfluxDB 1.8 server process: its own data directory, its HTTP API and its RPC
// service. It can be stopped, killed and started again on the same ports with the same data, to
// simulate an outage.
//
// A start with Flux costs several seconds of CPU (5 to 7 here), nearly all of it Flux compiling its
// standard library; influxd with Flux off answers in milliseconds.
type Influxd struct {
	cfg  InfluxdConfig
	proc *Process
}

// InfluxdBinary finds the influxd binary: $INFLUXD_BIN, else influxd on PATH, else
// $(go env GOPATH)/bin/influxd. The error names the command that installs it.
func InfluxdBinary() (string, error) {
	if p := os.Getenv("INFLUXD_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("INFLUXD_BIN=%s: %w (install it with: %s)", p, err, InfluxdInstall)
		}
		return p, nil
	}
	if p, err := exec.LookPath("influxd"); err == nil {
		return p, nil
	}
	if gobin := GoBin(); gobin != "" {
		p := filepath.Join(gobin, "influxd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("influxd not found in $INFLUXD_BIN, PATH or $(go env GOPATH)/bin; install it with: %s", InfluxdInstall)
}

// GoBin returns where go install writes: $GOBIN, else the first GOPATH entry's bin ("" when go
// env fails).
func GoBin() string {
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return ""
	}
	lines := strings.Split(string(out), "\n")
	if len(lines) > 0 && strings.TrimSpace(lines[0]) != "" {
		return strings.TrimSpace(lines[0])
	}
	if len(lines) > 1 && strings.TrimSpace(lines[1]) != "" {
		return filepath.Join(filepath.SplitList(strings.TrimSpace(lines[1]))[0], "bin")
	}
	return ""
}

// InstallInfluxd builds influxd from its Go module into gobin (minutes the first time, seconds
// from the module cache), reporting its version as InfluxData's release builds do so that /ping's
// X-Influxdb-Version says 1.8.10 (clients tell 1.x from 2.x by it). Output goes to w.
func InstallInfluxd(ctx context.Context, gobin string, w io.Writer) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "install", "-ldflags=-X main.version="+strings.TrimPrefix(InfluxdVersion, "v"),
		InfluxdModule+"/cmd/influxd@"+InfluxdVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-buildvcs=false")
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w", InfluxdInstall, err)
	}
	return filepath.Join(gobin, "influxd"), nil
}

// InfluxdOption tunes a server started by StartInfluxd.
type InfluxdOption func(*InfluxdConfig)

// WithoutFlux turns Flux off: the server starts in milliseconds instead of seconds, but answers
// only InfluxQL, not Flux. For tests that restart servers and check results with InfluxQL.
func WithoutFlux() InfluxdOption { return func(c *InfluxdConfig) { c.NoFlux = true } }

// WithNice runs the server at nice n (Spec.Nice).
func WithNice(n int) InfluxdOption { return func(c *InfluxdConfig) { c.Nice = n } }

// StartInfluxd starts influxd with its data under dir (created if missing) on free loopback
// ports, as a child that dies with the caller, and waits until it answers /ping. The caller stops
// it with Stop.
func StartInfluxd(dir string, opts ...InfluxdOption) (*Influxd, error) {
	bin, err := InfluxdBinary()
	if err != nil {
		return nil, err
	}
	// A free port can be taken by someone else before influxd binds it: try a few pairs.
	var lastErr error
	for range 3 {
		ports, err := FreeAddrs(2)
		if err != nil {
			return nil, err
		}
		cfg := InfluxdConfig{Dir: dir, HTTPAddr: ports[0], RPCAddr: ports[1]}
		for _, o := range opts {
			o(&cfg)
		}
		s := NewInfluxd(bin, cfg, false)
		if lastErr = s.Start(); lastErr == nil {
			return s, nil
		}
		if !errors.Is(lastErr, ErrExited) {
			break // failed for another reason than a port taken meanwhile
		}
	}
	return nil, lastErr
}

// NewInfluxd prepares (without starting) the influxd binary bin with cfg; detach as in Spec.
func NewInfluxd(bin string, cfg InfluxdConfig, detach bool) *Influxd {
	s := &Influxd{cfg: cfg}
	s.proc = &Process{spec: Spec{
		Name:    "influxd",
		Path:    bin,
		Args:    []string{"run", "-config", filepath.Join(cfg.Dir, "influxd.conf")},
		Env:     os.Environ(),
		LogPath: filepath.Join(cfg.Dir, "influxd.log"),
		Ready:   HTTPReady(s.URL()+"/ping", http.StatusNoContent),
		// influxd 1.8 spends a long time initialising Flux on a busy machine (48 s seen).
		ReadyTimeout: 3 * time.Minute,
		Detach:       detach,
		Nice:         cfg.Nice,
	}}
	return s
}

// URL returns the server's base URL, like http://127.0.0.1:41234.
func (s *Influxd) URL() string { return "http://" + s.cfg.HTTPAddr }

// Dir returns the server's data directory.
func (s *Influxd) Dir() string { return s.cfg.Dir }

// Process returns the server's process (its pid, its log).
func (s *Influxd) Process() *Process { return s.proc }

// Start writes the configuration and starts the server (again) on its ports with its data, then
// waits until it answers /ping. It is an error to start a running server.
func (s *Influxd) Start() error {
	if err := os.MkdirAll(s.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("creating influxd dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.cfg.Dir, "influxd.conf"), []byte(s.cfg.Render()), 0o644); err != nil {
		return fmt.Errorf("writing influxd config: %w", err)
	}
	return s.proc.Start(context.Background())
}

// Stop stops the server (SIGTERM, SIGKILL after ten seconds) and waits for it to exit, keeping its
// data. Stopping a stopped server does nothing.
func (s *Influxd) Stop() error { return s.proc.Stop(10 * time.Second) }

// Kill ends the server with SIGKILL, keeping its data (what the WAL holds survives).
func (s *Influxd) Kill() error { return s.proc.Kill() }

// Query runs one InfluxQL statement (internal/influx/influxql) with db as the default database
// (may be empty) and returns the first statement's series. Tests use it to inspect or prepare a
// server.
func (s *Influxd) Query(ctx context.Context, db, stmt string) ([]influxql.Series, error) {
	return influxql.Client{URL: s.URL()}.Query(ctx, db, "", stmt)
}
