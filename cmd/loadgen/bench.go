package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// Bench settings that are not flags.
const (
	benchShards         = 4
	benchInfluxDB       = "bench"
	benchConcurrency    = 64   // connections of the saturation runs (issue 13's comparison)
	benchBigPoints      = 1000 // Telegraf-sized requests of the e2e-big and direct-big runs
	benchBigConcurrency = 8
	benchReadRate       = 1000 // latest-values reads per second while ingest runs at half load
	benchDrainTimeout   = 2 * time.Minute
	clockTicks          = 100 // USER_HZ: /proc's CPU times are in 1/100 s on Linux
)

// bench is one --mode bench: everything it started, to measure and to remove at the end.
type bench struct {
	cfg      config
	out      io.Writer // human progress
	logger   *slog.Logger
	root     string // the module root (.data/ lives there)
	work     string
	results  string
	prefix   string
	redis    *stack.Redis
	rdb      *redis.Client
	influxd  *stack.Influxd
	sys      *stack.System
	gateway  string
	admin    string // the admin's password
	token    string // the admin's session token
	workers  []*stack.App
	telegraf *telegrafRelay
	alerts   *alertProbe
	procs    map[string]*stack.Process // measured processes by name
	res      benchResult
}

// runBench measures the ingest path against DESIGN.md's performance budget on this machine, as
// ratios against baselines measured in the same minutes: a private redis-server (default
// settings, hz 10) and influxd 1.8.10 on free ports, the gateway and every worker a one-machine
// deployment runs (--writers influx-writer copies, pg-sync, alerter, rollup) built from this
// tree, PostgreSQL at --database-url's server with a database of its own, and with --peer
// telegraf a Telegraf relay; all removed at the end. The saturation runs alternate in --rounds
// rounds (the machine is noisy); the other runs take place once. It prints a table, writes the
// JSON result (--out) and returns the exit code: 3 when a point was lost, 4 with --strict when a
// budget is missed.
func runBench(ctx context.Context, cfg config, stdout, stderr io.Writer) (code int, err error) {
	b := &bench{cfg: cfg, out: stderr, procs: map[string]*stack.Process{}}
	b.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if b.root, err = stack.ModuleRoot(); err != nil {
		return 1, err
	}
	runID := strconv.FormatInt(time.Now().Unix(), 10) + "-" + strconv.Itoa(os.Getpid())
	b.prefix = "bench:"
	b.res = newBenchResult(cfg)
	if b.work, err = os.MkdirTemp("", "agentmonitor-bench-"); err != nil {
		return 1, fmt.Errorf("creating the work directory: %w", err)
	}
	b.results = filepath.Join(b.work, "results")
	defer func() {
		if err != nil {
			b.showLogs()
		}
		if cfg.keep {
			fmt.Fprintf(stderr, "==> kept %s (logs/, results/)\n", b.work)
		} else {
			os.RemoveAll(b.work)
		}
	}()
	for _, d := range []string{b.results, filepath.Join(b.work, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 1, fmt.Errorf("creating %s: %w", d, err)
		}
	}

	dbURL, dropDB, err := benchDatabase(ctx, cfg.databaseURL, "agentmonitor_bench_"+strings.ReplaceAll(runID, "-", "_"))
	if err != nil {
		return 1, err
	}
	defer dropDB()
	// A Redis of the bench's own, with default settings (hz 10) but the AOF as go tool task up
	// runs it: its CPU and INFO commandstats are the deployment's alone, and alert latency is
	// measured against Redis's default clock.
	if b.redis, err = stack.StartRedis(filepath.Join(b.work, "redis"), append([]string{"--appendfsync", cfg.appendfsync}, cfg.redisConfig...)...); err != nil {
		return 1, fmt.Errorf("starting a private redis-server: %w", err)
	}
	defer b.redis.Stop() //nolint:errcheck // best effort at the end
	b.procs["redis-server"] = b.redis.Process()
	b.rdb = redis.NewClient(&redis.Options{Addr: b.redis.Addr()})
	defer b.rdb.Close()

	if cfg.scale {
		return b.runScale(ctx, dbURL, stdout)
	}
	if err := b.start(ctx, dbURL); err != nil {
		return 1, err
	}
	defer b.stop()

	code, err = b.measureAll(ctx, stdout)
	if err != nil {
		return code, err
	}
	b.stop()
	if cfg.gotest {
		b.microBenchmarks(ctx)
	}
	return code, nil
}

// benchDatabase creates a database of its own on the server of serverURL and returns its URL and
// the function that drops it.
func benchDatabase(ctx context.Context, serverURL, name string) (string, func(), error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", nil, fmt.Errorf("--database-url %q: want postgres://user:password@host:port/database", serverURL)
	}
	admin := *u
	admin.Path = "/postgres"
	conn, err := sql.Open("postgres", admin.String())
	if err != nil {
		return "", nil, fmt.Errorf("opening PostgreSQL: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
		conn.Close()
		return "", nil, fmt.Errorf("creating database %s on %s (go tool task stores starts PostgreSQL): %w", name, u.Redacted(), err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := conn.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(name)+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "warning: could not drop database %s: %v\n", name, err)
		}
		conn.Close()
	}
	own := *u
	own.Path = "/" + name
	return own.String(), drop, nil
}

// start builds the binaries and starts influxd, the gateway, the workers and the peers.
func (b *bench) start(ctx context.Context, dbURL string) error {
	if b.cfg.peer != "" {
		if err := b.startTelegrafInstall(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintln(b.out, "==> building", strings.Join(stack.Apps, ", "))
	bin := filepath.Join(b.work, "bin")
	if err := stack.Build(ctx, bin, b.out, stack.Apps...); err != nil {
		return err
	}
	if err := b.startInfluxd(); err != nil {
		return err
	}
	b.sys = b.system(bin, dbURL, b.redis.URL(), b.influxd.URL())
	gw, err := b.sys.StartGateway(ctx, "gateway")
	if err != nil {
		return err
	}
	b.gateway, b.procs["gateway"] = gw.URL, gw.Process
	workers := []string{"pg-sync", "alerter", "rollup"}
	for i := range b.cfg.writers {
		workers = append(workers, fmt.Sprintf("influx-writer-%d", i))
	}
	for _, w := range workers {
		app := strings.TrimRight(strings.TrimRight(w, "0123456789"), "-")
		a, err := b.sys.StartWorker(ctx, app, "bench-"+w)
		if err != nil {
			return err
		}
		b.procs[w] = a.Process
		b.workers = append(b.workers, a)
	}
	fmt.Fprintf(b.out, "==> gateway on %s; %d influx-writer copies, pg-sync, alerter, rollup (influxd and the writers at nice %d); private redis-server on %s (appendfsync %s)\n",
		b.gateway, b.cfg.writers, b.cfg.backgroundNice, b.redis.Addr(), b.cfg.appendfsync)
	hc := newHTTPClient(4, 10*time.Second)
	if b.token, err = login(ctx, hc, b.gateway, b.cfg.adminUser, b.admin); err != nil {
		return err
	}
	if b.cfg.peer != "" {
		if err := b.startTelegraf(ctx); err != nil {
			return err
		}
	}
	fmt.Fprintln(b.out, "==> setting up the alert-latency probe (a rule, an agent, Redis SUBSCRIBE and the WebSocket)")
	if b.alerts, err = newAlertProbe(ctx, b.gateway, b.token, b.rdb, b.prefix); err != nil {
		return fmt.Errorf("alert-latency probe: %w", err)
	}
	return nil
}

// startInfluxd starts the private influxd: the one stack finds, else .data/bin's (where
// go tool task up installs it), installed there when missing.
func (b *bench) startInfluxd() error {
	if _, err := stack.InfluxdBinary(); err != nil && os.Getenv("INFLUXD_BIN") == "" {
		bin := filepath.Join(b.root, ".data", "bin")
		if _, err := os.Stat(filepath.Join(bin, "influxd")); err != nil {
			fmt.Fprintf(b.out, "==> installing influxd %s into %s\n", stack.InfluxdVersion, bin)
			if _, err := stack.InstallInfluxd(context.Background(), bin, b.out); err != nil {
				return err
			}
		}
		os.Setenv("INFLUXD_BIN", filepath.Join(bin, "influxd"))
	}
	fmt.Fprintln(b.out, "==> starting influxd 1.8.10 (Flux on; a while on a busy machine)")
	var err error
	if b.influxd, err = stack.StartInfluxd(filepath.Join(b.work, "influxdb"), stack.WithNice(b.cfg.backgroundNice)); err != nil {
		return err
	}
	b.procs["influxd"] = b.influxd.Process()
	return nil
}

// system returns the deployment's System: every binary with the same settings.
func (b *bench) system(bin, dbURL, redisURL, influxURL string) *stack.System {
	if b.admin == "" {
		b.admin = rand.Text()
	}
	return &stack.System{BinDir: bin, LogDir: filepath.Join(b.work, "logs"), BackgroundNice: b.cfg.backgroundNice, Env: []string{
		"REDIS_URL=" + redisURL,
		"REDIS_KEY_PREFIX=" + b.prefix,
		"DATABASE_URL=" + dbURL,
		"INFLUXDB_URL=" + influxURL,
		"INFLUXDB_BUCKET=" + benchInfluxDB,
		"STREAM_SHARDS=" + strconv.Itoa(benchShards),
		"ADMIN_PASSWORD=" + b.admin,
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
	}}
}

// stop stops what start started (a second call does nothing).
func (b *bench) stop() {
	if b.alerts != nil {
		b.alerts.close()
		b.alerts = nil
	}
	if b.telegraf != nil {
		if err := b.telegraf.proc.Stop(10 * time.Second); err != nil {
			fmt.Fprintln(b.out, "warning:", err)
		}
		b.telegraf = nil
	}
	if b.sys != nil {
		if err := b.sys.Stop(20 * time.Second); err != nil {
			fmt.Fprintln(b.out, "warning:", err)
		}
		b.sys = nil
	}
	if b.influxd != nil {
		if err := b.influxd.Stop(); err != nil {
			fmt.Fprintln(b.out, "warning:", err)
		}
		b.influxd = nil
	}
}

// deleteKeys removes every Redis key under the prefix (the history bench shares a Redis).
func (b *bench) deleteKeys() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	iter := b.rdb.Scan(ctx, 0, b.prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	for len(keys) > 0 {
		n := min(len(keys), 500)
		if err := b.rdb.Unlink(ctx, keys[:n]...).Err(); err != nil {
			fmt.Fprintf(b.out, "warning: could not delete the Redis keys %s*: %v\n", b.prefix, err)
			return
		}
		keys = keys[n:]
	}
	if err := iter.Err(); err != nil {
		fmt.Fprintf(b.out, "warning: scanning the Redis keys %s*: %v\n", b.prefix, err)
	}
}

// showLogs prints the end of every process's log, to explain a failure.
func (b *bench) showLogs() {
	for name, p := range b.procs {
		if t := p.LogTail(1500); t != "" {
			fmt.Fprintf(b.out, "--- end of %s's log ---\n%s\n", name, t)
		}
	}
}

// measureAll runs the rounds and the once-only runs, prints the table, writes the JSON result
// and returns the exit code.
func (b *bench) measureAll(ctx context.Context, stdout io.Writer) (int, error) {
	c := b.cfg
	load := func(label string, round int) config {
		x := c
		x.mode, x.label, x.round, x.quiet = "load", label, round, true
		x.gateway, x.adminPass, x.target = b.gateway, b.admin, "gateway"
		x.influxURL, x.influxDB = b.influxd.URL(), benchInfluxDB
		return x
	}
	kinds := "direct, gateway"
	if b.telegraf != nil {
		kinds += ", telegraf"
	}
	fmt.Fprintf(b.out, "==> %d rounds of: %s (saturation, %d connections, %s each, %d agents)\n", c.rounds, kinds, c.concurrency, c.duration, c.agents)
	var gwRates []float64
	for r := 1; r <= c.rounds; r++ {
		direct := load(labelDirect, r)
		direct.target, direct.influxDB = "influx", "direct"
		if _, err := b.measure(ctx, direct); err != nil {
			return 1, err
		}
		if b.telegraf != nil {
			tg := load(labelTelegraf, r)
			tg.target, tg.influxURL, tg.influxDB, tg.influxCreate = "influx", b.telegraf.url, telegrafDB, false
			// Count in the InfluxDB behind the relay: waits for its buffer to be flushed (so
			// that it does not slow the next run) and tells whether it lost anything.
			tg.verify, tg.verifyURL = true, b.influxd.URL()
			if _, err := b.measure(ctx, tg); err != nil {
				return 1, err
			}
		}
		gw := load(labelGateway, r)
		var before map[string]int64
		gw.onAgents = func([]string) { before = b.commandStats(ctx) }
		rep, err := b.measure(ctx, gw)
		if err != nil {
			return 1, err
		}
		b.res.addDeploymentCommands(before, b.commandStats(ctx), rep.OK)
		gwRates = append(gwRates, rep.RequestsPerS)
		// The workers run behind the gateway (at --background-nice): say how far behind they
		// were when the run ended, so that a rate the workers could not sustain shows.
		drain := b.waitDrained(ctx).Seconds()
		b.res.DrainAfterGatewayS = append(b.res.DrainAfterGatewayS, drain)
		fmt.Fprintf(b.out, "  the workers caught up %.1f s after the run ended\n", drain)
	}
	half := max(median(gwRates)/2, 1)

	fmt.Fprintln(b.out, "==> Redis commands per request of the gateway alone (workers paused with SIGSTOP)")
	for _, points := range []int{pointsPerBatch, benchBigPoints} {
		x := load("commands", 0)
		x.batchPoints, x.concurrency, x.duration, x.maxRequests = points, 8, time.Minute, int64(max(200, 2000*pointsPerBatch/points))
		if err := b.commandsProbe(ctx, x); err != nil {
			return 1, err
		}
		b.waitDrained(ctx)
	}

	fmt.Fprintf(b.out, "==> half load (%.0f req/s, open loop) with the alert probe; alert probe at idle; reads at %d/s with ingest at half load\n", half, benchReadRate)
	h := load(labelHalf, 1)
	h.rate = half
	probe := make(chan []alertSample, 1)
	h.onAgents = func([]string) {
		go func() { probe <- b.alerts.run(ctx, time.Now().Add(c.duration)) }()
	}
	fsync := b.watchFsync(ctx)
	if _, err := b.measure(ctx, h); err != nil {
		return 1, err
	}
	if b.res.FsyncHalfLoad = fsync(); b.res.FsyncHalfLoad != nil {
		fmt.Fprintf(b.out, "  Redis AOF fsync (%s, latency monitor): %s\n", fsyncEvent, b.res.FsyncHalfLoad)
	}
	b.res.AlertLatency["half_load"] = summarizeAlerts(<-probe)
	b.waitDrained(ctx)
	idleProbe := b.alerts.run(ctx, time.Now().Add(min(c.duration, 8*time.Second)))
	b.res.AlertLatency["idle"] = summarizeAlerts(idleProbe)
	if err := b.readsUnderLoad(ctx, load(labelReadsIngest, 1), half); err != nil {
		return 1, err
	}
	b.waitDrained(ctx)

	fmt.Fprintf(b.out, "==> end to end (6- and %d-point requests, every acked point counted in InfluxDB) and InfluxDB's ceilings\n", benchBigPoints)
	e2e := load(labelE2E, 1)
	e2e.verify = true
	big := load(labelE2EBig, 1)
	big.verify, big.batchPoints, big.concurrency = true, benchBigPoints, benchBigConcurrency
	directBig := load(labelDirectBig, 1)
	directBig.target, directBig.influxDB, directBig.batchPoints, directBig.concurrency = "influx", "directbig", benchBigPoints, benchBigConcurrency
	directBig.verify = true
	ceiling := load(labelCeiling, 1)
	ceiling.mode, ceiling.influxDB, ceiling.concurrency = "ceiling", "ceiling", c.ceilingConcurrency
	for _, x := range []config{e2e, big, directBig, ceiling} {
		if _, err := b.measure(ctx, x); err != nil {
			return 1, err
		}
		b.waitDrained(ctx)
	}
	return b.finish(stdout)
}

// waitDrained waits until every group has read and acknowledged every metrics entry, so that one
// run's backlog does not slow the next.
// It returns how long that took.
func (b *bench) waitDrained(ctx context.Context) time.Duration {
	keys := stream.StreamKeys(b.prefix, benchShards)
	start := time.Now()
	deadline := start.Add(benchDrainTimeout)
	for {
		ok, why, err := stack.Drained(ctx, b.rdb, "", keys...)
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			fmt.Fprintf(b.out, "warning: the streams were not drained within %s (%s %v); the next run starts anyway\n", benchDrainTimeout, why, err)
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// measure runs one kind of run in this process, keeps its report and the CPU each process used.
func (b *bench) measure(ctx context.Context, x config) (*report, error) {
	var (
		before, after map[string]float64
		t0, t1        time.Time
	)
	// CPU counts from the first request (after the agents are registered) to the last answer; a
	// --verify's wait is not load.
	hook := x.onAgents
	x.onAgents = func(ids []string) {
		if hook != nil {
			hook(ids)
		}
		before, t0 = b.cpu(), time.Now()
	}
	x.onSent = func() { after, t1 = b.cpu(), time.Now() }
	rep, err := runMode(ctx, x, b.logger)
	if err != nil {
		return nil, fmt.Errorf("run %s of round %d: %w", x.label, x.round, err)
	}
	if before != nil && after != nil {
		if err := b.recordCPU(x, before, after, t1.Sub(t0).Seconds()); err != nil {
			return nil, err
		}
	}
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.results, fmt.Sprintf("r%d-%s.json", x.round, x.label)), j, 0o644); err != nil {
		return nil, fmt.Errorf("writing report: %w", err)
	}
	fmt.Fprintf(b.out, "  round %d  %s\n", x.round, rep.human())
	b.res.Reports = append(b.res.Reports, rep)
	return rep, nil
}

// cpu returns the CPU seconds used so far by every measured process, by this process (the load)
// and by the whole machine.
func (b *bench) cpu() map[string]float64 {
	out := map[string]float64{"loadgen": cpuTime().Seconds(), "machine": machineCPU()}
	for name, p := range b.procs {
		if pid := p.Pid(); pid > 0 {
			out[name] = procCPU(pid)
		}
	}
	return out
}

// recordCPU appends the CPU each process used during run x (before and after are cpu()
// readings wall seconds apart) to cpu.tsv, copies of one binary summed under its name.
func (b *bench) recordCPU(x config, before, after map[string]float64, wall float64) error {
	f, err := os.OpenFile(filepath.Join(b.results, "cpu.tsv"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("writing cpu.tsv: %w", err)
	}
	defer f.Close()
	for name, v := range cpuDeltas(before, after) {
		fmt.Fprintf(f, "%d %s %s %.3f %.3f\n", x.round, x.label, name, v, wall)
	}
	return nil
}

// cpuDeltas returns the CPU seconds each process used between two cpu() readings, copies of one
// binary (name-N) summed under its name, and what the rest of the machine used as "others".
func cpuDeltas(before, after map[string]float64) map[string]float64 {
	used := map[string]float64{}
	ours := 0.0
	for name, v := range after {
		if name == "machine" {
			continue
		}
		b, ok := before[name]
		if !ok {
			continue // started meanwhile
		}
		d := max(v-b, 0)
		ours += d
		used[strings.TrimRight(strings.TrimRight(name, "0123456789"), "-")] += d
	}
	used["others"] = max(after["machine"]-before["machine"]-ours, 0)
	return used
}

// procCPU returns a process's user plus system CPU seconds from /proc/<pid>/stat.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count fields after its closing parenthesis.
	s := string(b)
	fs := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fs) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(fs[11], 64) // field 14, utime
	k, _ := strconv.ParseFloat(fs[12], 64) // field 15, stime
	return (u + k) / clockTicks
}

// machineCPU returns the CPU seconds every process of the machine used (from /proc/stat: user,
// nice, system, irq, softirq, steal).
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fs := strings.Fields(line)
	if len(fs) < 9 || fs[0] != "cpu" {
		return 0
	}
	sum := 0.0
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseFloat(fs[i], 64)
		sum += v
	}
	return sum / clockTicks
}

// microBenchmarks runs the go test benchmarks of the hot paths, one package at a time (a package
// that does not build hides no other).
func (b *bench) microBenchmarks(ctx context.Context) {
	root, err := stack.ModuleRoot()
	if err != nil {
		fmt.Fprintln(b.out, "warning:", err)
		return
	}
	fmt.Fprintln(b.out, "\nMicro-benchmarks (go test -bench, per request of 6 points):")
	for _, pkg := range []string{"./internal/metric/", "./internal/stream/"} {
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchtime", "2000x", "-benchmem", pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "TEST_REDIS_URL="+b.redis.URL())
		cmd.Stdout, cmd.Stderr = b.out, b.out
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(b.out, "warning: go test -bench %s: %v\n", pkg, err)
		}
	}
}
