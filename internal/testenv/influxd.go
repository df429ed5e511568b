package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// influxdInstall is the command that installs the influxd binary the tests need.
const influxdInstall = "go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10"

// Influxd is an InfluxDB 1.8 server process started for tests: its own data directory, its HTTP
// API and its RPC service on free loopback ports, Flux enabled, reporting and logging off. It can be
// stopped and started again on the same ports with the same data, to simulate an outage.
//
// A start costs several seconds of CPU (5 to 7 here), nearly all of it Flux compiling its standard
// library; influxd with Flux off answers in milliseconds. Share one server per package
// (RunInflux), and restart servers WithoutFlux where InfluxQL can check the result.
type Influxd struct {
	bin      string
	dir      string
	httpAddr string
	rpcAddr  string
	noFlux   bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// InfluxdBinary finds the influxd binary: $INFLUXD_BIN, else influxd on PATH, else
// $(go env GOPATH)/bin/influxd. The error names the command that installs it.
func InfluxdBinary() (string, error) {
	if p := os.Getenv("INFLUXD_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("INFLUXD_BIN=%s: %w (install it with: %s)", p, err, influxdInstall)
		}
		return p, nil
	}
	if p, err := exec.LookPath("influxd"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	if gopath != "" {
		// GOPATH may be a list; go install writes to the first entry.
		p := filepath.Join(filepath.SplitList(gopath)[0], "bin", "influxd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("influxd not found in $INFLUXD_BIN, PATH or $(go env GOPATH)/bin; install it with: %s", influxdInstall)
}

// InfluxdOption tunes a server started by StartInfluxd or PrivateInfluxd.
type InfluxdOption func(*Influxd)

// WithoutFlux turns Flux off: the server starts in milliseconds instead of seconds, but answers
// only InfluxQL (Query), not Flux. For tests that restart servers and check results with InfluxQL.
func WithoutFlux() InfluxdOption { return func(s *Influxd) { s.noFlux = true } }

// StartInfluxd starts influxd with its data under dir (created if missing) and waits until it
// answers /ping. The caller stops it with Stop.
func StartInfluxd(dir string, opts ...InfluxdOption) (*Influxd, error) {
	bin, err := InfluxdBinary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating influxd dir: %w", err)
	}
	// A free port found by listening on :0 can be taken by someone else before influxd binds it:
	// try a few port pairs before giving up.
	var (
		s       *Influxd
		lastErr error
	)
	for range 3 {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		s = &Influxd{bin: bin, dir: dir, httpAddr: ports[0], rpcAddr: ports[1]}
		for _, o := range opts {
			o(s)
		}
		if lastErr = s.Start(); !errors.Is(lastErr, errExited) {
			break // started, or failed for another reason than a port taken meanwhile
		}
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return s, nil
}

func freePorts(n int) ([]string, error) {
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

// URL returns the server's base URL, like http://127.0.0.1:41234.
func (s *Influxd) URL() string { return "http://" + s.httpAddr }

// Dir returns the server's data directory.
func (s *Influxd) Dir() string { return s.dir }

func (s *Influxd) config() string {
	return fmt.Sprintf(`reporting-disabled = true
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
  level = "error"
  suppress-logo = true
`, s.rpcAddr, filepath.Join(s.dir, "meta"), filepath.Join(s.dir, "data"), filepath.Join(s.dir, "wal"), s.httpAddr, !s.noFlux)
}

// Start starts the server (again) on its ports with its data and waits until it answers /ping.
// It is an error to start a running server.
func (s *Influxd) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("influxd is already running")
	}
	cfgPath := filepath.Join(s.dir, "influxd.conf")
	if err := os.WriteFile(cfgPath, []byte(s.config()), 0o644); err != nil {
		return fmt.Errorf("writing influxd config: %w", err)
	}
	logPath := filepath.Join(s.dir, "influxd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening influxd log: %w", err)
	}
	cmd := exec.Command(s.bin, "run", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	setPdeathsig(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	if err := s.waitReady(2 * time.Minute); err != nil {
		_ = s.stopLocked() // the readiness error below is the one to report
		tail, _ := os.ReadFile(logPath)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("influxd on %s: %w; log: %s", s.httpAddr, err, tail)
	}
	return nil
}

// errExited is returned by Start when influxd exits before answering, as it does when a port is
// already taken.
var errExited = errors.New("exited during start")

// setPdeathsig asks Linux to kill influxd when the test process dies: a test binary that panics or
// is killed never runs its cleanups, and influxd would run on. The field exists only on Linux, so
// it is set through reflection to keep this file building elsewhere.
func setPdeathsig(attr *syscall.SysProcAttr) {
	if f := reflect.ValueOf(attr).Elem().FieldByName("Pdeathsig"); f.IsValid() && f.CanSet() {
		f.Set(reflect.ValueOf(syscall.SIGKILL))
	}
}

func (s *Influxd) waitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-s.done:
			return errExited
		default:
		}
		resp, err := client.Get(s.URL() + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to /ping after %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, SIGKILL after ten seconds) and waits for it to exit, keeping its
// data. Stopping a stopped server does nothing.
func (s *Influxd) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Influxd) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	defer func() { s.cmd, s.done = nil, nil }()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	if err := s.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("killing influxd: %w", err)
	}
	<-s.done
	return nil
}

// Query runs one InfluxQL statement through POST /query and returns the first statement's error,
// if any. Tests use it to inspect or prepare a database.
func (s *Influxd) Query(ctx context.Context, stmt string) (json.RawMessage, error) {
	form := url.Values{"q": {stmt}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("building query request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("querying influxd: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading query answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("query %q: status %d: %s", stmt, resp.StatusCode, bytes.TrimSpace(body))
	}
	var out struct {
		Results []struct {
			Error string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("decoding query answer: %w", err)
	}
	if len(out.Results) > 0 && out.Results[0].Error != "" {
		return nil, fmt.Errorf("query %q: %s", stmt, out.Results[0].Error)
	}
	return body, nil
}

// The shared server of a test binary, started on first use by Influx when RunInflux ran the tests.
var shared struct {
	enabled bool
	once    sync.Once
	srv     *Influxd
	dir     string
	err     error
}

// RunInflux runs the package's tests with one influxd shared by every test that calls Influx, and
// stops it afterwards. Use it as the package's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunInflux(m)) }
//
// Without it (or ShareInflux), Influx starts a private server per test, seconds of CPU each.
func RunInflux(m *testing.M) int {
	stop := ShareInflux()
	defer stop()
	return m.Run()
}

// ShareInflux makes Influx use one server for the whole test binary, started on first use, and
// returns the function that stops it and removes its data. For a TestMain that also does other
// things; call it before m.Run and stop after.
func ShareInflux() (stop func()) {
	shared.enabled = true
	return func() {
		if shared.srv != nil {
			if err := shared.srv.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stopping shared influxd:", err)
			}
		}
		if shared.dir != "" {
			os.RemoveAll(shared.dir)
		}
	}
}

func sharedInfluxd() (*Influxd, error) {
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "influxd-test-")
		if shared.err != nil {
			return
		}
		shared.srv, shared.err = StartInfluxd(shared.dir)
	})
	return shared.srv, shared.err
}

// PrivateInfluxd starts a server for this test alone (for tests that stop and restart it) and
// stops it in t.Cleanup.
func PrivateInfluxd(t testing.TB, opts ...InfluxdOption) *Influxd {
	t.Helper()
	srv, err := StartInfluxd(t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("starting influxd: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping influxd: %v", err)
		}
	})
	return srv
}

// InfluxDB is one test's slice of an InfluxDB server: a database name unique to the test.
type InfluxDB struct {
	Server   *Influxd
	URL      string
	Database string // not created: the test creates it (for example by provisioning)
}

// Influx returns a database name unique to t on the package's shared server (see RunInflux), or
// on a private server when the package does not use RunInflux. The database is dropped in
// t.Cleanup. The test must not stop the shared server; use PrivateInfluxd for outages.
func Influx(t testing.TB) InfluxDB {
	t.Helper()
	var srv *Influxd
	if shared.enabled {
		var err error
		if srv, err = sharedInfluxd(); err != nil {
			t.Fatalf("starting shared influxd: %v", err)
		}
	} else {
		srv = PrivateInfluxd(t)
	}
	db := uniqueInfluxName(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := srv.Query(ctx, `DROP DATABASE "`+db+`"`); err != nil {
			t.Errorf("dropping test database: %v", err)
		}
	})
	return InfluxDB{Server: srv, URL: srv.URL(), Database: db}
}

// uniqueInfluxName returns a database name for t alone: "t_", the test name reduced to letters,
// digits and underscores (at most 40 of them), "_" and 8 random hex digits.
func uniqueInfluxName(t testing.TB) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range t.Name() {
		if b.Len() >= 42 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:]) // crypto/rand.Read never fails
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(rnd[:]))
	return b.String()
}
