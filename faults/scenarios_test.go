package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// agentsPerRun and pause shape the load: agentsPerRun agents, half JSON and half line protocol,
// each sending a batch of seriesPerBatch points every pause.
const pause = 5 * time.Millisecond

func agentsPerRun() int { return int(dur(8, 24)) }

// scenario runs the common shape: load starts and flows, inject applies the fault and returns its
// window, the load goes on for settle after it, stops, the pipeline drains, and the ledger is
// checked and reported.
func scenario(t *testing.T, c *cluster, name string, inject func(l *load) fault) (result, *load) {
	t.Helper()
	l := newLoad(c.gateway.URL, c.registerAgents(agentsPerRun()), pause)
	l.start()
	stopped := false
	defer func() {
		if !stopped {
			l.finish()
		}
	}()
	if !l.waitAcked(50, 30*time.Second) {
		t.Fatalf("%s: the load does not flow before the fault: %s", name, statusCounts(l.snapshot()))
	}
	time.Sleep(dur(time.Second, 10*time.Second)) // load before the fault
	f := inject(l)
	if !l.waitAcked(50, time.Minute) {
		t.Errorf("%s: the load did not flow again after the fault: %s", name, statusCounts(l.snapshot()))
	}
	time.Sleep(dur(time.Second, 10*time.Second)) // load after the fault
	l.finish()
	stopped = true
	drain := c.waitDrained()
	res := c.check(t, name, l, f, drain)
	return res, l
}

// throughout makes the inject of a scenario whose fault lasts from the start of do to its return.
func throughout(do func(l *load)) func(l *load) fault {
	return func(l *load) fault {
		f := fault{begin: time.Now()}
		do(l)
		f.end = time.Now()
		return f
	}
}

// repeatedly makes the inject of a scenario that applies the fault n times, letting the load flow
// (100 more acknowledged requests) between two; the fault lasts from the first to the end of the
// last.
func repeatedly(n int, once func()) func(l *load) fault {
	return throughout(func(l *load) {
		for i := range n {
			if i > 0 {
				l.waitAcked(100, time.Minute)
			}
			once()
		}
	})
}

// waitUnavailable waits, at most a minute, until at least n answers so far are 503 with msg in the
// body, and returns how many there are.
func (l *load) waitUnavailable(t *testing.T, n int, msg string) int {
	t.Helper()
	var k int
	testenv.Eventually(t, time.Minute, func() string {
		k = 0
		for _, r := range l.snapshot() {
			if r.status == http.StatusServiceUnavailable && strings.Contains(r.body, msg) {
				k++
			}
		}
		if k < n {
			return fmt.Sprintf("%d answers 503 %q so far, want %d", k, msg, n)
		}
		return ""
	})
	return k
}

// answersSentWithin returns the requests sent in [from, to) and answered before to.
func answersSentWithin(l *load, from, to time.Time) []request {
	var out []request
	for _, r := range l.snapshot() {
		if !r.sentAt.Before(from) && r.doneAt.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

func TestRedisKilledAndRestartedWithAOF(t *testing.T) {
	t.Parallel()
	c := newCluster(t, options{})
	runID := func() string {
		info, err := c.rdb.InfoMap(context.Background(), "server").Result()
		if err != nil {
			t.Fatalf("INFO server: %v", err)
		}
		return info["Server"]["run_id"]
	}
	before := runID()
	res, _ := scenario(t, c, "1 redis SIGKILL+AOF", repeatedly(int(dur(2, 3)), func() {
		if err := c.redis.Kill(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(dur(500*time.Millisecond, 5*time.Second))
		if err := c.redis.Start(); err != nil {
			t.Fatalf("restarting redis-server: %v", err)
		}
	}))
	if runID() == before {
		t.Error("redis-server has the same run_id after the kills: it was not restarted")
	}
	res.extra = fmt.Sprintf("%d SIGKILLs", int(dur(2, 3)))
	report(t, res)
}

func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	c := newCluster(t, options{})
	pids := map[string]int{}
	for _, w := range c.workers {
		pids[w.Name()] = w.Pid()
	}
	outage := dur(3*time.Second, 30*time.Second)
	var down, up time.Time
	res, l := scenario(t, c, "2 redis unreachable", throughout(func(l *load) {
		if err := c.redis.Stop(); err != nil {
			t.Fatal(err)
		}
		down = time.Now()
		time.Sleep(outage)
		up = time.Now()
		if err := c.redis.Start(); err != nil {
			t.Fatalf("restarting redis-server: %v", err)
		}
	}))
	// While Redis was away the gateway answered 503 with Retry-After, and never a 2xx.
	during := answersSentWithin(l, down, up)
	for _, r := range during {
		if r.status != http.StatusServiceUnavailable || !r.retryAfter {
			t.Errorf("with Redis down: answer %d (Retry-After %t) %q, want 503 with Retry-After", r.status, r.retryAfter, r.body)
			break
		}
	}
	if len(during) == 0 {
		t.Errorf("no request was answered while Redis was down")
	}
	// The workers backed off and resumed by themselves: same processes, and they drained.
	for _, w := range c.workers {
		if !w.Running() || w.Pid() != pids[w.Name()] {
			t.Errorf("%s was restarted or died during the Redis outage (pid %d, was %d)", w.Name(), w.Pid(), pids[w.Name()])
		}
	}
	report(t, res)
}

// TestRedisFrozen freezes redis-server (SIGSTOP) instead of stopping it: connections stay open
// and commands hang, as on a partitioned network or a stalled host, until the clients' timeouts.
// Writes sent before the freeze run when it thaws, so some requests answered 503 may be stored:
// the checker allows that (unknown-present), never a lost acknowledged point.
func TestRedisFrozen(t *testing.T) {
	t.Parallel()
	c := newCluster(t, options{})
	var frozen, thawed time.Time
	res, l := scenario(t, c, "2b redis frozen", throughout(func(l *load) {
		pid := c.redis.Process().Pid()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		frozen = time.Now()
		// Longer than the gateway's publish timeout (5 s), so that requests time out meanwhile.
		time.Sleep(dur(7*time.Second, 30*time.Second))
		thawed = time.Now()
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}))
	for _, r := range answersSentWithin(l, frozen, thawed) {
		if r.verdict == acked {
			t.Errorf("with Redis frozen: answer %d to a request sent after the freeze and answered before the thaw, want no 2xx", r.status)
			break
		}
	}
	report(t, res)
}

func TestPostgresStopped(t *testing.T) {
	t.Parallel()
	c := newCluster(t, options{privatePostgres: true})
	// A probe agent and a rule on it: the probe crosses the threshold while PostgreSQL is down, so
	// the alert event must wait in the alerts stream and be written once PostgreSQL is back.
	probe := c.registerAgents(1)[0]
	code, b := c.call("POST", "/api/v1/alert-rules", "Bearer "+c.admin, map[string]any{
		"name": "probe high", "kind": "threshold", "metric": "probe.v", "aggregation": "last", "operator": ">",
		"thresholds": map[string]any{"warning": map[string]any{"value": 50}}, "agents": map[string]any{"ids": []string{probe.ID}},
	})
	if code != http.StatusCreated {
		t.Fatalf("creating the probe rule: %d %s", code, b)
	}
	var rule struct{ ID string }
	if err := json.Unmarshal(b, &rule); err != nil {
		t.Fatal(err)
	}
	sendProbe := func(v int) int {
		code, b := c.call("POST", "/api/v1/agents/"+probe.ID+"/metrics", "Bearer "+probe.APIKey,
			map[string]any{"points": []map[string]any{{"measurement": "probe", "fields": map[string]any{"v": v}}}})
		if code/100 != 2 {
			t.Errorf("probe point: %d %s", code, b)
		}
		return code
	}
	sendProbe(0)
	var login, ready, readyAPI string
	var during []request
	res, l := scenario(t, c, "3 postgres stopped", throughout(func(l *load) {
		if err := c.pg.Stop(); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		outage := dur(4*time.Second, 60*time.Second)
		sendProbe(100) // fires "probe high" while PostgreSQL is down
		time.Sleep(outage / 2)
		code, b := c.call("POST", "/api/v1/auth/login", "", map[string]string{"username": "admin", "password": adminPassword})
		login = fmt.Sprintf("%d %s", code, strings.TrimSpace(string(b)))
		code, b = c.call("GET", "/readyz", "", nil)
		ready = fmt.Sprintf("%d %s", code, strings.TrimSpace(string(b)))
		code, b = c.call("GET", "/readyz?scope=api", "", nil)
		readyAPI = fmt.Sprintf("%d %s", code, strings.TrimSpace(string(b)))
		time.Sleep(outage / 2)
		during = answersSentWithin(l, stopped, time.Now())
		if err := c.pg.Start(); err != nil {
			t.Fatalf("restarting PostgreSQL: %v", err)
		}
	}))
	_ = l
	// Ingest went on from the key cache: every request sent while PostgreSQL was down was taken.
	if len(during) == 0 {
		t.Error("no request was answered while PostgreSQL was down")
	}
	for _, r := range during {
		if r.verdict != acked {
			t.Errorf("with PostgreSQL down: ingest answered %d %q, want 2xx from the key cache", r.status, r.body)
			break
		}
	}
	if !strings.HasPrefix(login, "503 ") || !strings.Contains(strings.ToLower(login), "unavailable") {
		t.Errorf("login with PostgreSQL down = %s, want 503 saying it is unavailable", login)
	}
	if !strings.HasPrefix(ready, "200 ") {
		t.Errorf("GET /readyz (ingest) with PostgreSQL down = %s, want 200: the gateway still takes ingest", ready)
	}
	if !strings.HasPrefix(readyAPI, "503 ") || !strings.Contains(readyAPI, "postgres") {
		t.Errorf("GET /readyz?scope=api with PostgreSQL down = %s, want 503 naming postgres", readyAPI)
	}
	// pg-sync caught up (its group drained above); login works again.
	testenv.Eventually(t, 30*time.Second, func() string {
		if code, b := c.call("POST", "/api/v1/auth/login", "", map[string]string{"username": "admin", "password": adminPassword}); code != http.StatusOK {
			return fmt.Sprintf("login after PostgreSQL is back = %d %s", code, b)
		}
		return ""
	})
	// The alert event of the firing during the outage reached the history once PostgreSQL was back.
	testenv.Eventually(t, 30*time.Second, func() string {
		code, b := c.call("GET", "/api/v1/alerts/history?rule="+rule.ID, "Bearer "+c.login(), nil)
		if code != http.StatusOK || !strings.Contains(string(b), `"firing"`) && !strings.Contains(string(b), `"warning"`) {
			return fmt.Sprintf("alert history of the probe rule = %d %s, want the firing written after the outage", code, b)
		}
		return ""
	})
	res.extra = "login during outage: " + cut(login, 90) + "; alert event written after the outage"
	report(t, res)
}

func TestGatewayRestartedWithSIGTERM(t *testing.T) {
	t.Parallel()
	c := newCluster(t, options{})
	res, _ := scenario(t, c, "4 gateway SIGTERM", repeatedly(int(dur(2, 5)), func() {
		if err := c.gateway.Restart(context.Background(), 20*time.Second); err != nil {
			t.Fatalf("restarting the gateway: %v", err)
		}
	}))
	report(t, res)
}

func TestWorkersKilledAtRandom(t *testing.T) {
	t.Parallel()
	c := newCluster(t, options{writers: 2})
	kills := map[string]int{}
	res, _ := scenario(t, c, "5 workers SIGKILL", throughout(func(l *load) {
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
		for range int(dur(6, 20)) {
			time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
			w := c.workers[rng.IntN(len(c.workers))]
			if err := w.Kill(); err != nil {
				t.Fatal(err)
			}
			kills[w.Name()]++
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
			if err := w.Start(context.Background()); err != nil {
				t.Fatalf("restarting %s: %v", w.Name(), err)
			}
		}
		// Every worker is killed at least once.
		for _, w := range c.workers {
			if kills[w.Name()] == 0 {
				if err := w.Kill(); err != nil {
					t.Fatal(err)
				}
				kills[w.Name()]++
				if err := w.Start(context.Background()); err != nil {
					t.Fatalf("restarting %s: %v", w.Name(), err)
				}
			}
		}
	}))
	res.extra = fmt.Sprintf("kills %v", kills)
	report(t, res)
}

func TestInfluxDownPastBacklog(t *testing.T) {
	t.Parallel()
	c := newCluster(t, options{env: []string{"STREAM_MAX_BACKLOG=400", "STREAM_BACKLOG_INTERVAL=100ms"}})
	var behind int
	res, _ := scenario(t, c, "6 influxd down>backlog", throughout(func(l *load) {
		if err := c.influxd.Stop(); err != nil {
			t.Fatal(err)
		}
		behind = l.waitUnavailable(t, 20, "pipeline is behind")
		time.Sleep(dur(time.Second, 20*time.Second))
		if err := c.influxd.Start(); err != nil {
			t.Fatalf("restarting influxd: %v", err)
		}
	}))
	res.extra = fmt.Sprintf("503 backlog-full answers %d", behind)
	report(t, res)
}

func TestRedisOutOfMemory(t *testing.T) {
	t.Parallel()
	c := newCluster(t, options{})
	ctx := context.Background()
	var oom int
	res, _ := scenario(t, c, "redis OOM (noeviction)", throughout(func(l *load) {
		info, err := c.rdb.InfoMap(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		// A limit just at what Redis holds now: every write that adds memory is refused.
		if err := c.rdb.ConfigSet(ctx, "maxmemory", info["Memory"]["used_memory"]).Err(); err != nil {
			t.Fatal(err)
		}
		// A 500 meanwhile fails the test below.
		oom = l.waitUnavailable(t, 20, "out of memory")
		if err := c.rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
			t.Fatal(err)
		}
	}))
	for _, r := range strings.Fields(res.statuses) {
		if strings.HasPrefix(r, "500:") {
			t.Errorf("answers with Redis out of memory include %s, want 503s", r)
		}
	}
	res.extra = fmt.Sprintf("503 out-of-memory answers %d", oom)
	report(t, res)
}

func TestSoak(t *testing.T) {
	t.Parallel()
	c := newCluster(t, options{})
	length := dur(60*time.Second, 5*time.Minute)
	if *soakFor > 0 {
		length = *soakFor
	}
	l := newLoad(c.gateway.URL, c.registerAgents(agentsPerRun()), 20*time.Millisecond)
	l.start()
	if !l.waitAcked(50, 30*time.Second) {
		l.finish()
		t.Fatalf("the load does not flow: %s", statusCounts(l.snapshot()))
	}
	var samples []memory
	ctx := context.Background()
	end := time.Now().Add(length)
	for time.Now().Before(end) {
		samples = append(samples, c.sampleMemory(ctx))
		time.Sleep(time.Second)
	}
	l.finish()
	drain := c.waitDrained()
	res := c.check(t, "7 soak "+length.String(), l, fault{}, drain)
	after := c.sampleMemory(ctx)

	// Bounded: the second half's peaks stay within the first half's plus a margin (a leak grows
	// with time; a bounded process levels off after the warm-up).
	half := len(samples) / 2
	peak := func(ms []memory, f func(memory) int64) int64 {
		var p int64
		for _, m := range ms {
			p = max(p, f(m))
		}
		return p
	}
	var parts []string
	check := func(what string, f func(memory) int64, slack int64) {
		first, second := peak(samples[:half], f), peak(samples[half:], f)
		parts = append(parts, fmt.Sprintf("%s %s→%s", what, mib(first), mib(second)))
		if second > first+first/2+slack {
			t.Errorf("soak: %s grew from a peak of %s in the first half to %s in the second: unbounded", what, mib(first), mib(second))
		}
	}
	for _, a := range c.sys.Apps() {
		name := a.Name()
		check(name+" RSS", func(m memory) int64 { return m.rss[name] }, 16<<20)
	}
	check("redis used_memory", func(m memory) int64 { return m.redisUsed }, 8<<20)
	firstLen, secondLen := peak(samples[:half], func(m memory) int64 { return m.streamTotal }), peak(samples[half:], func(m memory) int64 { return m.streamTotal })
	parts = append(parts, fmt.Sprintf("stream entries peak %d→%d, %d after drain", firstLen, secondLen, after.streamTotal))
	if secondLen > 2*firstLen+1000 {
		t.Errorf("soak: stream length peaked at %d in the first half and %d in the second: not trimmed", firstLen, secondLen)
	}
	res.extra = strings.Join(parts, ", ")
	report(t, res)
}

func mib(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// TestEvictingRedisIsRefused: a Redis whose maxmemory-policy may evict stream entries makes every
// binary refuse to start with one clear line, unless REDIS_ALLOW_EVICTION=1.
func TestEvictingRedisIsRefused(t *testing.T) {
	t.Parallel()
	r, err := stack.StartRedis(t.TempDir(), "--maxmemory-policy", "allkeys-lru", "--appendonly", "no")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	_, dbURL := testenv.Postgres(t)
	logDir := t.TempDir()
	for _, app := range stack.Apps {
		if app == "influx-writer" {
			continue // needs InfluxDB to be ready; its Redis check is the same code (worker.Run)
		}
		addrs, err := stack.FreeAddrs(1)
		if err != nil {
			t.Fatal(err)
		}
		// The gateway listens on GATEWAY_ADDR (its OPS_ADDR, optional, must differ), a worker on OPS_ADDR.
		listen := "OPS_ADDR=" + addrs[0]
		if app == "gateway" {
			listen = "GATEWAY_ADDR=" + addrs[0]
		}
		env := append(stack.CleanEnv(), "REDIS_URL="+r.URL(), "DATABASE_URL="+dbURL, "ADMIN_PASSWORD="+adminPassword,
			listen, "CONSUMER_NAME=c", "LOG_FORMAT=text")
		logPath := filepath.Join(logDir, app+".log")
		_, err = stack.Start(t.Context(), stack.Spec{Name: app, Path: filepath.Join(binDir, app), Env: env, LogPath: logPath,
			Ready: stack.HTTPReady("http://"+addrs[0]+"/readyz", http.StatusOK)})
		if !errors.Is(err, stack.ErrExited) {
			t.Errorf("%s with maxmemory-policy allkeys-lru: start = %v, want it to exit", app, err)
			continue
		}
		log, _ := os.ReadFile(logPath)
		if !strings.Contains(string(log), `maxmemory-policy is \"allkeys-lru\"`) && !strings.Contains(string(log), `maxmemory-policy is "allkeys-lru"`) ||
			!strings.Contains(string(log), "REDIS_ALLOW_EVICTION=1") {
			t.Errorf("%s log = %s, want one line naming maxmemory-policy allkeys-lru and REDIS_ALLOW_EVICTION=1", app, log)
		}
	}
	// With the override the gateway starts, and /readyz warns about the policy and the AOF.
	addrs, err := stack.FreeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	env := append(stack.CleanEnv(), "REDIS_URL="+r.URL(), "DATABASE_URL="+dbURL, "ADMIN_PASSWORD="+adminPassword,
		"GATEWAY_ADDR="+addrs[0], "LOG_FORMAT=text", "REDIS_ALLOW_EVICTION=1")
	p, err := stack.Start(t.Context(), stack.Spec{Name: "gateway", Path: filepath.Join(binDir, "gateway"), Env: env,
		LogPath: filepath.Join(logDir, "gateway-allowed.log"), Ready: stack.HTTPReady("http://"+addrs[0]+"/readyz", http.StatusOK)})
	if err != nil {
		t.Fatalf("gateway with REDIS_ALLOW_EVICTION=1: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Error(err)
		}
	})
	resp, err := http.Get("http://" + addrs[0] + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Warnings []string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	w := strings.Join(body.Warnings, "\n")
	if !strings.Contains(w, "appendonly is off") || !strings.Contains(w, "allkeys-lru") {
		t.Errorf("/readyz warnings = %q, want the AOF off and the eviction policy", body.Warnings)
	}
}
