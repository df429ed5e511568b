// Package e2e_test runs the real binaries (gateway, influx-writer, pg-sync) against real Redis,
// PostgreSQL and InfluxDB, the way an operator runs them, and checks what agents and operators see.
package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// binDir holds the binaries built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "agentmonitor-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/gateway", "../cmd/influx-writer", "../cmd/pg-sync", "../cmd/alerter", "../cmd/rollup")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building binaries:", err)
		return 1
	}
	binDir = dir
	return testenv.RunInflux(m)
}

const adminPassword = "e2e-admin-password"

// system is one test's deployment: its own Redis prefix, PostgreSQL database and InfluxDB
// database, and the binaries it started.
type system struct {
	t        *testing.T
	rdb      *redis.Client
	prefix   string
	influx   *influx.Client
	env      []string
	gateway  string // base URL
	procs    []*proc
	admin    string // admin session token
	influxDB testenv.InfluxDB
}

type options struct {
	server   *testenv.Influxd // nil: the package's shared server
	writers  int
	syncs    int
	alerters int
}

func newSystem(t *testing.T, o options) *system {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	_, dbURL := testenv.Postgres(t)
	var idb testenv.InfluxDB
	if o.server != nil {
		idb = testenv.InfluxDB{Server: o.server, URL: o.server.URL(), Database: "e2e"}
	} else {
		idb = testenv.Influx(t)
	}
	s := &system{t: t, rdb: rdb, prefix: prefix, influxDB: idb}
	s.env = []string{
		"REDIS_URL=" + redisURL(),
		"REDIS_KEY_PREFIX=" + prefix,
		"DATABASE_URL=" + dbURL,
		"INFLUXDB_URL=" + idb.URL,
		"INFLUXDB_BUCKET=" + idb.Database,
		"STREAM_SHARDS=2",
		"STREAM_MAX_WAIT=50ms",
		"STREAM_BLOCK=200ms",
		"STREAM_CLAIM_MIN_IDLE=2s",
		"STREAM_CLAIM_INTERVAL=300ms",
		"STREAM_RETRY_MAX=1s",
		"STREAM_TRIM_INTERVAL=500ms",
		"INFLUXDB_TIMEOUT=30s",
		"RULES_POLL_INTERVAL=500ms",
		"AGENTS_REFRESH_INTERVAL=500ms",
		"SILENT_CHECK_INTERVAL=500ms",
		"NOTIFIER_RETRY_INITIAL=100ms",
		"ADMIN_PASSWORD=" + adminPassword,
		"LOG_FORMAT=text",
		"LOG_LEVEL=debug",
	}
	client, err := influx.New(influx.Config{URL: idb.URL, Bucket: idb.Database, RetentionDays: 30, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("influx.New: %v", err)
	}
	t.Cleanup(client.Close)
	s.influx = client

	gwAddr := freeAddr(t)
	s.start("gateway", "gateway", "GATEWAY_ADDR="+gwAddr)
	s.gateway = "http://" + gwAddr
	waitReady(t, s.gateway+"/readyz", 30*time.Second)
	for i := range o.writers {
		s.startWorker("influx-writer", fmt.Sprintf("writer-%d", i))
	}
	for i := range o.syncs {
		s.startWorker("pg-sync", fmt.Sprintf("sync-%d", i))
	}
	for i := range o.alerters {
		s.startWorker("alerter", fmt.Sprintf("alerter-%d", i))
	}
	s.admin = s.login("admin", adminPassword)
	return s
}

// startWorker starts a worker binary with a stable consumer name and waits for its /readyz.
func (s *system) startWorker(bin, name string, extraEnv ...string) *proc {
	s.t.Helper()
	ops := freeAddr(s.t)
	env := append([]string{"OPS_ADDR=" + ops, "CONSUMER_NAME=" + name}, extraEnv...)
	p := s.start(bin, name, env...)
	p.ops = "http://" + ops
	waitReady(s.t, p.ops+"/readyz", 30*time.Second)
	return p
}

// proc is one running binary; its output goes to a log file shown when the test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	ops  string
	done chan struct{}
}

func (s *system) start(bin, name string, extraEnv ...string) *proc {
	s.t.Helper()
	logPath := filepath.Join(s.t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, bin))
	cmd.Env = append(append(baseEnv(), s.env...), extraEnv...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting %s: %v", bin, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	s.procs = append(s.procs, p)
	s.t.Cleanup(func() {
		p.stop(s.t)
		if s.t.Failed() {
			b, _ := os.ReadFile(logPath)
			s.t.Logf("---- %s log (last 4 KiB) ----\n%s", name, tail(b, 4096))
		}
	})
	return p
}

// baseEnv is the test process's environment without the variables the binaries read, so that a
// developer's shell cannot change what the test runs.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "REDIS_") || strings.HasPrefix(k, "INFLUXDB_") || strings.HasPrefix(k, "STREAM_") ||
			strings.HasPrefix(k, "NOTIFIER_") || strings.HasSuffix(k, "_INTERVAL") ||
			k == "DATABASE_URL" || k == "GATEWAY_ADDR" || k == "OPS_ADDR" || k == "CONSUMER_NAME" || k == "ADMIN_PASSWORD" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// kill ends the process with SIGKILL: no drain, no acks.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("killing %s: %v", p.name, err)
	}
	<-p.done
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop within 20s of SIGTERM", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func redisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return testenv.DefaultRedisURL
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s (last: %v)", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eventually polls cond until it returns "" or the timeout passes, then fails with its last word.
func eventually(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// do sends a request to the gateway and returns the status and body.
func (s *system) do(method, path, auth string, body []byte, header ...string) (int, []byte, http.Header) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.gateway+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func (s *system) login(user, password string) string {
	s.t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	code, b, _ := s.do("POST", "/api/v1/auth/login", "", body)
	if code != http.StatusOK {
		s.t.Fatalf("login: %d %s", code, b)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(b, &out); err != nil || out.Token == "" {
		s.t.Fatalf("login answer %s: %v", b, err)
	}
	return out.Token
}

type agent struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	APIKey string `json:"api_key"`
}

func (s *system) registerAgent(name string) agent {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"name": name, "labels": map[string]string{"env": "test"}})
	code, b, _ := s.do("POST", "/api/v1/agents", "Bearer "+s.admin, body)
	if code != http.StatusCreated {
		s.t.Fatalf("registering agent: %d %s", code, b)
	}
	var a agent
	if err := json.Unmarshal(b, &a); err != nil || a.ID == "" || a.APIKey == "" {
		s.t.Fatalf("register answer %s: %v", b, err)
	}
	return a
}

// countPoints counts the points InfluxDB holds for the agent in every measurement.
func (s *system) countPoints(agentID string) int {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := s.influx.CountPoints(ctx, "", agentID)
	if err != nil {
		s.t.Logf("counting points: %v", err)
		return -1
	}
	return n
}
