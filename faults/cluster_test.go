package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// long selects the full-length scenarios (go tool task faults); the default is the CI variant:
// seconds of load and outages of a few seconds.
var long = flag.Bool("long", false, "run the full-length scenarios (minutes of load, 30-60 s outages, a 5 min soak)")

// soakFor overrides the soak's length (an hour-scale soak: go tool task faults -- -soak 1h).
var soakFor = flag.Duration("soak", 0, "length of the soak (default 60s, 5m with -long)")

// binDir holds the binaries built once by TestMain.
var binDir string

// table collects one line per scenario, printed after the run.
var table struct {
	sync.Mutex
	lines []string
}

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "agentmonitor-faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := stack.Build(context.Background(), dir, os.Stderr, stack.Apps...); err != nil {
		fmt.Fprintln(os.Stderr, "building binaries:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	table.Lock()
	if len(table.lines) > 0 {
		sort.Strings(table.lines)
		fmt.Println("\nfault scenarios:")
		for _, l := range table.lines {
			fmt.Println(l)
		}
	}
	table.Unlock()
	os.Exit(code)
}

// dur picks the CI or the long duration.
func dur(ci, full time.Duration) time.Duration {
	if *long {
		return full
	}
	return ci
}

const (
	shards        = 2
	adminPassword = "faults-admin-password"
	database      = "faults"
)

// options shape one scenario's deployment.
type options struct {
	privatePostgres bool     // a cluster of its own (the scenario stops it); else a database on the shared one
	redisCluster    bool     // a private Redis Cluster (3 masters, 3 replicas) instead of one redis-server
	env             []string // extra settings for every binary
	writers         int      // influx-writer copies (default 1)
}

// cluster is one scenario's deployment: a private redis-server (AOF with appendfsync always, noeviction) or a
// private Redis Cluster, a private influxd, PostgreSQL, and the four binaries.
type cluster struct {
	t       *testing.T
	redis   *stack.Redis   // nil with options.redisCluster
	rcl     *stack.Cluster // nil without options.redisCluster
	rdb     redis.UniversalClient
	pg      *stack.Postgres // nil unless options.privatePostgres
	influxd *stack.Influxd
	sys     *stack.System
	gateway *stack.App
	workers []*stack.App
	admin   string
	prefix  string
	agents  int // agents registered so far, for unique names
}

func newCluster(t *testing.T, o options) *cluster {
	t.Helper()
	c := &cluster{t: t, prefix: "faults:"}
	var err error
	redisURL := ""
	if o.redisCluster {
		if c.rcl, err = stack.StartCluster(t.Context(), t.TempDir(), 3); err != nil {
			t.Fatalf("starting a Redis Cluster: %v", err)
		}
		t.Cleanup(c.rcl.Stop)
		redisURL = c.rcl.URL()
		c.rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.rcl.Addrs()})
	} else {
		if c.redis, err = stack.StartRedis(t.TempDir()); err != nil {
			t.Fatalf("starting redis-server: %v", err)
		}
		t.Cleanup(func() { _ = c.redis.Stop() })
		redisURL = c.redis.URL()
		c.rdb = redis.NewClient(&redis.Options{Addr: c.redis.Addr()})
	}
	t.Cleanup(func() { c.rdb.Close() })

	var dbURL string
	if o.privatePostgres {
		dir, err := os.MkdirTemp("", "agentmonitor-faults-pg-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if c.pg, err = stack.StartPostgres(dir); err != nil {
			t.Fatalf("starting PostgreSQL: %v", err)
		}
		t.Cleanup(func() { _ = c.pg.Stop() })
		if err := c.pg.CreateDatabase(database); err != nil {
			t.Fatal(err)
		}
		dbURL = c.pg.URL(database)
	} else {
		_, dbURL = testenv.Postgres(t)
	}

	c.influxd = testenv.PrivateInfluxd(t, testenv.WithoutFlux())

	c.sys = &stack.System{BinDir: binDir, LogDir: t.TempDir(), Env: append(append(testenv.FastPipelineEnv(),
		"REDIS_URL="+redisURL,
		"REDIS_KEY_PREFIX="+c.prefix,
		"DATABASE_URL="+dbURL,
		"INFLUXDB_URL="+c.influxd.URL(),
		"INFLUXDB_BUCKET="+database,
		"STREAM_SHARDS="+fmt.Sprint(shards),
		"INFLUXDB_TIMEOUT=10s",
		"ADMIN_PASSWORD="+adminPassword,
		// Agents post well above the default per-agent rate in the CI-length runs.
		"AGENT_RATE_POINTS_PER_SEC=100000",
		"AGENT_RATE_BURST=100000",
		"LOG_FORMAT=text",
		"LOG_LEVEL=info",
	), o.env...)}
	t.Cleanup(func() {
		if err := c.sys.Stop(20 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for _, a := range c.sys.Apps() {
				t.Logf("---- %s log (last 3 KiB) ----\n%s", a.Name(), a.LogTail(3072))
			}
		}
	})
	if c.gateway, err = c.sys.StartGateway(t.Context(), "gateway"); err != nil {
		t.Fatalf("starting gateway: %v", err)
	}
	for i := range max(o.writers, 1) {
		c.startWorker("influx-writer", fmt.Sprintf("writer-%d", i))
	}
	c.startWorker("pg-sync", "sync-0")
	c.startWorker("alerter", "alerter-0")
	c.admin = c.login()
	return c
}

func (c *cluster) startWorker(app, name string) {
	c.t.Helper()
	a, err := c.sys.StartWorker(c.t.Context(), app, name)
	if err != nil {
		c.t.Fatalf("starting %s: %v", name, err)
	}
	c.workers = append(c.workers, a)
}

// streams returns the metrics stream keys.
func (c *cluster) streams() []string { return stream.StreamKeys(c.prefix, shards) }

// waitDrained waits until every group of every metrics stream and of the alerts stream has read
// and acked everything.
func (c *cluster) waitDrained() time.Duration {
	c.t.Helper()
	start := time.Now()
	testenv.WaitDrained(c.t, c.rdb, "", append(c.streams(), alertredis.StreamKeys(c.prefix, shards)...)...)
	return time.Since(start)
}

// call sends a JSON request to the gateway and returns the status and body.
func (c *cluster) call(method, path, auth string, in any) (int, []byte) {
	c.t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			c.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.gateway.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *cluster) login() string {
	c.t.Helper()
	code, b := c.call("POST", "/api/v1/auth/login", "", map[string]string{"username": "admin", "password": adminPassword})
	return testenv.LoginToken(c.t, code, b)
}

// registerAgents registers n agents; every other one sends line protocol.
func (c *cluster) registerAgents(n int) []agent {
	c.t.Helper()
	agents := make([]agent, n)
	for i := range agents {
		c.agents++
		code, b := c.call("POST", "/api/v1/agents", "Bearer "+c.admin, map[string]any{"name": fmt.Sprintf("fault-%d", c.agents)})
		if code != http.StatusCreated {
			c.t.Fatalf("registering agent: %d %s", code, b)
		}
		if err := json.Unmarshal(b, &agents[i]); err != nil || agents[i].ID == "" {
			c.t.Fatalf("register answer %s: %v", b, err)
		}
		agents[i].index = i
		agents[i].lineProtocol = i%2 == 1
	}
	return agents
}

// memory samples what the soak watches: resident memory of each binary, Redis used_memory and
// the metrics streams' total length.
type memory struct {
	rss         map[string]int64 // bytes, by process name
	redisUsed   int64
	streamTotal int64
}

func (c *cluster) sampleMemory(ctx context.Context) memory {
	m := memory{rss: map[string]int64{}}
	for _, a := range c.sys.Apps() {
		if pid := a.Pid(); pid > 0 {
			m.rss[a.Name()] = rssOf(pid)
		}
	}
	if info, err := c.rdb.InfoMap(ctx, "memory").Result(); err == nil {
		m.redisUsed, _ = strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
	}
	for _, k := range c.streams() {
		n, _ := c.rdb.XLen(ctx, k).Result()
		m.streamTotal += n
	}
	return m
}

// rssOf reads VmRSS of pid from /proc (0 when unknown).
func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
