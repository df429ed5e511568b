// Package e2e_test runs the real binaries (gateway, influx-writer, pg-sync) against real Redis,
// PostgreSQL and InfluxDB, the way an operator runs them, and checks what agents and operators see.
package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/agentmonitor/agentmonitor/internal/stream"
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
	if err := stack.Build(context.Background(), dir, os.Stderr, "gateway", "influx-writer", "pg-sync", "alerter", "rollup"); err != nil {
		fmt.Fprintln(os.Stderr, "building binaries:", err)
		return 1
	}
	binDir = dir
	return testenv.RunInflux(m)
}

const adminPassword = "e2e-admin-password"

// system is one test's deployment: its own Redis prefix, PostgreSQL database and InfluxDB
// database, and the binaries it started (internal/stack runs them).
type system struct {
	t        *testing.T
	rdb      redis.UniversalClient
	prefix   string
	influx   *influx.Client
	sys      *stack.System
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
	rdb, prefix, url := testRedis(t)
	_, dbURL := testenv.Postgres(t)
	var idb testenv.InfluxDB
	if o.server != nil {
		idb = testenv.InfluxDB{Server: o.server, URL: o.server.URL(), Database: "e2e"}
	} else {
		idb = testenv.Influx(t)
	}
	s := &system{t: t, rdb: rdb, prefix: prefix, influxDB: idb}
	s.sys = &stack.System{BinDir: binDir, LogDir: t.TempDir(), Env: append(testenv.FastPipelineEnv(),
		"REDIS_URL="+url,
		"REDIS_KEY_PREFIX="+prefix,
		"DATABASE_URL="+dbURL,
		"INFLUXDB_URL="+idb.URL,
		"INFLUXDB_BUCKET="+idb.Database,
		"STREAM_SHARDS="+strconv.Itoa(shards),
		"INFLUXDB_TIMEOUT=30s",
		"SILENT_CHECK_INTERVAL=500ms",
		"NOTIFIER_RETRY_INITIAL=100ms",
		// The tests' webhook receivers are httptest servers on loopback, which channels may
		// only point at when an operator allows it (gateway at create time, alerter at connect).
		"WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8",
		"ADMIN_PASSWORD="+adminPassword,
		"LOG_FORMAT=text",
		"LOG_LEVEL=debug",
	)}
	client, err := influx.New(influx.Config{URL: idb.URL, Bucket: idb.Database, RetentionDays: 30, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("influx.New: %v", err)
	}
	t.Cleanup(client.Close)
	s.influx = client

	gw, err := s.sys.StartGateway(t.Context(), "gateway")
	s.track(gw, err)
	s.gateway = gw.URL
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

// shards is STREAM_SHARDS of every binary the tests start.
const shards = 2

// metricStreams returns the keys of the test's metrics streams, for testenv.WaitDrained.
func (s *system) metricStreams() []string { return stream.StreamKeys(s.prefix, shards) }

// startWorker starts a worker binary with a stable consumer name and waits for its /readyz.
func (s *system) startWorker(bin, name string, extraEnv ...string) *proc {
	s.t.Helper()
	a, err := s.sys.StartWorker(s.t.Context(), bin, name, extraEnv...)
	p := s.track(a, err)
	p.ops = a.URL
	return p
}

// proc is one running binary; its log is shown when the test fails.
type proc struct {
	*stack.App
	ops string // a worker's ops server base URL
}

// track fails the test when a start failed, else stops the binary at cleanup and shows its log
// if the test failed.
func (s *system) track(a *stack.App, err error) *proc {
	s.t.Helper()
	if err != nil {
		s.t.Fatalf("starting: %v", err)
	}
	p := &proc{App: a}
	s.procs = append(s.procs, p)
	s.t.Cleanup(func() {
		if err := a.Stop(20 * time.Second); err != nil {
			s.t.Error(err)
		}
		if s.t.Failed() {
			s.t.Logf("---- %s log (last 4 KiB) ----\n%s", a.Name(), a.LogTail(4096))
		}
	})
	return p
}

// kill ends the process with SIGKILL: no drain, no acks.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
}

func redisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return testenv.DefaultRedisURL
}

// onCluster reports whether TEST_E2E_REDIS=cluster asks the tests to run every binary against
// Redis Cluster (testenv.RedisClusterURL) instead of the single Redis. go tool task test runs
// the pipeline and alerting tests a second time that way (cmd/devstack, e2eClusterTests).
func onCluster() bool { return os.Getenv("TEST_E2E_REDIS") == "cluster" }

// testRedis returns the client, key prefix and REDIS_URL of the Redis the test's binaries use:
// the single server, or the cluster when onCluster. Cleanup deletes the prefix's keys (on every
// master of a cluster).
func testRedis(t *testing.T) (redis.UniversalClient, string, string) {
	t.Helper()
	if onCluster() {
		rdb, prefix := testenv.RedisCluster(t)
		return rdb, prefix, testenv.RedisClusterURL()
	}
	rdb, prefix := testenv.Redis(t)
	return rdb, prefix, redisURL()
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
	return testenv.LoginToken(s.t, code, b)
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
