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
	benchBigPoints      = 1000 // Telegraf-sized requests of the e2e-big run
	benchBigConcurrency = 8
	benchDrainTimeout   = 2 * time.Minute
	clockTicks          = 100 // USER_HZ: /proc's CPU times are in 1/100 s on Linux
)

// bench is one --mode bench: everything it started, to measure and to remove at the end.
type bench struct {
	cfg     config
	out     io.Writer // human progress
	logger  *slog.Logger
	work    string
	results string
	prefix  string
	rdb     *redis.Client
	influxd *stack.Influxd
	sys     *stack.System
	gateway string
	admin   string
	procs   map[string]*stack.Process // measured processes by name
}

// runBench measures the ingest path against DESIGN.md's performance budget on this machine, as
// ratios against baselines measured in the same minutes (see the labels in summary.go): a private
// influxd 1.8.10 (Flux on) on free ports, and the gateway, --writers influx-writer copies and
// pg-sync built from this tree, with Redis and PostgreSQL at --redis-url and --database-url's
// server under a key prefix and a database of their own, all removed at the end. The kinds of
// run alternate in --rounds rounds (the machine is noisy); the summary gives medians, per-round
// ratios against the budget and the cores each process used. It returns the exit code: 3 when a
// point was lost, 4 with --strict when a budget is missed.
func runBench(ctx context.Context, cfg config, stdout, stderr io.Writer) (code int, err error) {
	b := &bench{cfg: cfg, out: stderr, procs: map[string]*stack.Process{}}
	b.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	runID := strconv.FormatInt(time.Now().Unix(), 10) + "-" + strconv.Itoa(os.Getpid())
	b.prefix = "bench-" + runID + ":"
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
	opts, err := redis.ParseURL(cfg.redisURL)
	if err != nil {
		return 1, fmt.Errorf("--redis-url: %w", err)
	}
	b.rdb = redis.NewClient(opts)
	defer b.rdb.Close()
	if err := b.rdb.Ping(ctx).Err(); err != nil {
		return 1, fmt.Errorf("redis at %s does not answer (go tool task stores starts one): %w", opts.Addr, err)
	}
	defer b.deleteKeys()

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

// start builds the binaries and starts influxd, the gateway and the workers.
func (b *bench) start(ctx context.Context, dbURL string) error {
	fmt.Fprintln(b.out, "==> building gateway, influx-writer and pg-sync")
	bin := filepath.Join(b.work, "bin")
	if err := stack.Build(ctx, bin, b.out, "gateway", "influx-writer", "pg-sync"); err != nil {
		return err
	}
	fmt.Fprintln(b.out, "==> starting influxd 1.8 (Flux on; a while on a busy machine)")
	var err error
	if b.influxd, err = stack.StartInfluxd(filepath.Join(b.work, "influxdb")); err != nil {
		return err
	}
	b.procs["influxd"] = b.influxd.Process()
	b.admin = rand.Text()
	b.sys = &stack.System{BinDir: bin, LogDir: filepath.Join(b.work, "logs"), Env: []string{
		"REDIS_URL=" + b.cfg.redisURL,
		"REDIS_KEY_PREFIX=" + b.prefix,
		"DATABASE_URL=" + dbURL,
		"INFLUXDB_URL=" + b.influxd.URL(),
		"INFLUXDB_BUCKET=" + benchInfluxDB,
		"STREAM_SHARDS=" + strconv.Itoa(benchShards),
		"ADMIN_PASSWORD=" + b.admin,
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
	}}
	gw, err := b.sys.StartGateway(ctx, "gateway")
	if err != nil {
		return err
	}
	b.gateway, b.procs["gateway"] = gw.URL, gw.Process
	workers := []string{"pg-sync"}
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
	}
	fmt.Fprintf(b.out, "==> gateway on %s, %d influx-writer copies, pg-sync (Redis keys %s*)\n", b.gateway, b.cfg.writers, b.prefix)
	return nil
}

// stop stops what start started (a second call does nothing).
func (b *bench) stop() {
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

// deleteKeys removes every Redis key under the bench's prefix.
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

// measureAll runs the rounds and the summary and returns the summary's exit code.
func (b *bench) measureAll(ctx context.Context, stdout io.Writer) (int, error) {
	c := b.cfg
	fmt.Fprintf(b.out, "==> %d rounds of: direct, gateway, gateway-half, e2e, e2e-big (%d-point requests), ceiling; %s each, %d agents\n",
		c.rounds, benchBigPoints, c.duration, c.agents)
	for r := 1; r <= c.rounds; r++ {
		load := func(label string) config {
			x := c
			x.mode, x.label, x.round, x.quiet = "load", label, r, true
			x.gateway, x.adminPass, x.target = b.gateway, b.admin, "gateway"
			x.influxURL, x.influxDB = b.influxd.URL(), benchInfluxDB
			return x
		}
		direct := load(labelDirect)
		direct.target, direct.influxDB = "influx", "direct"
		if _, err := b.measure(ctx, direct); err != nil {
			return 1, err
		}
		gw, err := b.measure(ctx, load(labelGateway))
		if err != nil {
			return 1, err
		}
		half := load(labelHalf)
		half.rate = max(gw.RequestsPerS/2, 1)
		e2e := load(labelE2E)
		e2e.verify = true
		big := load(labelE2EBig)
		big.verify, big.batchPoints, big.concurrency = true, benchBigPoints, benchBigConcurrency
		ceiling := load(labelCeiling)
		ceiling.mode, ceiling.influxDB, ceiling.concurrency = "ceiling", "ceiling", c.ceilingConcurrency
		for _, x := range []config{half, e2e, big, ceiling} {
			b.waitDrained(ctx)
			if _, err := b.measure(ctx, x); err != nil {
				return 1, err
			}
		}
		b.waitDrained(ctx)
	}
	fmt.Fprintln(stdout)
	// Exit 3 when a point was lost, 4 with --strict when a budget is missed.
	return runSummary(b.results, c.strict, stdout)
}

// waitDrained waits until every group has read and acknowledged every metrics entry, so that one
// run's backlog does not slow the next.
func (b *bench) waitDrained(ctx context.Context) {
	keys := stream.StreamKeys(b.prefix, benchShards)
	deadline := time.Now().Add(benchDrainTimeout)
	for {
		ok, why, err := stack.Drained(ctx, b.rdb, "", keys...)
		if ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			fmt.Fprintf(b.out, "warning: the streams were not drained within %s (%s %v); the next run starts anyway\n", benchDrainTimeout, why, err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// measure runs one kind of run in this process, keeps its report and the CPU each process used.
func (b *bench) measure(ctx context.Context, x config) (*report, error) {
	before := b.cpu(ctx)
	t0 := time.Now()
	rep, err := runMode(ctx, x, b.logger)
	if err != nil {
		return nil, fmt.Errorf("run %s of round %d: %w", x.label, x.round, err)
	}
	after := b.cpu(ctx)
	wall := time.Since(t0).Seconds()
	f, err := os.OpenFile(filepath.Join(b.results, "cpu.tsv"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("writing cpu.tsv: %w", err)
	}
	used := map[string]float64{}
	ours := 0.0
	for name, v := range after {
		d := v - before[name]
		if name == "machine" {
			continue
		}
		ours += d
		used[strings.TrimRight(strings.TrimRight(name, "0123456789"), "-")] += d
	}
	used["others"] = after["machine"] - before["machine"] - ours
	for name, v := range used {
		fmt.Fprintf(f, "%d %s %s %.3f %.3f\n", x.round, x.label, name, v, wall)
	}
	f.Close()
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.results, fmt.Sprintf("r%d-%s.json", x.round, x.label)), j, 0o644); err != nil {
		return nil, fmt.Errorf("writing report: %w", err)
	}
	fmt.Fprintf(b.out, "  round %d  %s\n", x.round, rep.human())
	return rep, nil
}

// cpu returns the CPU seconds used so far by every measured process, by Redis (which may serve
// others too), by this process (the load) and by the whole machine.
func (b *bench) cpu(ctx context.Context) map[string]float64 {
	out := map[string]float64{"loadgen": cpuTime().Seconds(), "machine": machineCPU()}
	for name, p := range b.procs {
		out[name] = procCPU(p.Pid())
	}
	if info, err := b.rdb.Info(ctx, "cpu").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			if k == "used_cpu_sys" || k == "used_cpu_user" {
				f, _ := strconv.ParseFloat(v, 64)
				out["redis"] += f
			}
		}
	}
	return out
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
		cmd.Env = append(os.Environ(), "TEST_REDIS_URL="+b.cfg.redisURL)
		cmd.Stdout, cmd.Stderr = b.out, b.out
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(b.out, "warning: go test -bench %s: %v\n", pkg, err)
		}
	}
}
