// Command loadgen is Agent Monitor's load tool: it drives the ingest path with small agent batches
// and reports request, point and value rates and latency percentiles, as JSON on stdout and one
// human line on stderr. It only ever talks to loopback addresses, and every run stops by itself
// (--duration, --max-requests, --verify-timeout).
//
// Three kinds of run:
//
//	--target gateway   log in as admin, register --agents agents, post their batches to
//	                   POST /api/v1/agents/{id}/metrics (the path agents use)
//	--target influx    the same batches as line protocol, posted straight to InfluxDB's
//	                   /api/v2/write: the baseline the gateway is compared with
//	--mode ceiling     InfluxDB's own ceiling: 5000-point batches through the official client's
//	                   blocking write API, a few writers
//	--mode summary     medians and budget ratios of the reports of several runs (--results DIR)
//	--mode bench       DESIGN.md's performance budget on this machine: builds and starts a private
//	                   redis-server, influxd, the gateway and every worker (internal/stack), runs
//	                   the kinds of run above against each other (and, with --peer telegraf,
//	                   against Telegraf as a relay) in rounds, measures the latest-values read,
//	                   alert latency and Redis commands per request, prints a table and writes a
//	                   JSON file (go tool task bench); with --scale, issue 12's scaling figures
//
// --verify (gateway or influx target) keeps a ledger of every point answered 2xx, then waits until
// InfluxDB holds all of them and reports the end-to-end rate of persisted values and the points
// lost (which must be 0).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/stack"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "history" {
		os.Exit(runHistory(os.Args[2:], os.Stdout, os.Stderr)) // history.go
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// redisConfigName is what --redis-config takes as a setting's name (redis.conf's).
var redisConfigName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// config is what the flags say.
type config struct {
	mode        string // load or ceiling
	target      string // gateway or influx
	gateway     string
	adminUser   string
	adminPass   string
	adminFile   string
	agents      int
	duration    time.Duration
	concurrency int
	maxRequests int64
	timeout     time.Duration

	influxURL    string
	influxDB     string
	influxToken  string
	influxCreate bool
	ceilingBatch int
	batchPoints  int
	rate         float64

	verify        bool
	verifyTimeout time.Duration
	label         string
	round         int
	quiet         bool

	results string // --mode summary
	strict  bool

	// --mode bench
	rounds             int
	writers            int
	ceilingConcurrency int
	gotest             bool
	keep               bool
	databaseURL        string
	peer               string   // --mode bench: "telegraf" adds the Telegraf relay
	scale              bool     // --mode bench: issue 12's scaling measurements instead
	appendfsync        string   // --mode bench: the bench Redis's appendfsync (always, everysec)
	redisConfig        []string // --mode bench: more redis-server arguments, "--name", "value" pairs
	backgroundNice     int      // --mode bench: nice of the write-behind workers and influxd
	scaleDelay         time.Duration
	scaleBacklog       int64
	out                string // --mode bench: where the JSON result goes

	// onAgents, when set, is called by --mode load with the ids of the agents just before it
	// starts sending (the bench reads their latest values, counts Redis commands from there).
	onAgents func(ids []string)
	// onSent, when set, is called when the last answer of the run has come (before --verify).
	onSent func()
	// verifyURL, when set, is the InfluxDB --verify counts in instead of --influx-url (the bench
	// writes to a Telegraf relay and counts in the InfluxDB behind it).
	verifyURL string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `loadgen drives Agent Monitor's ingest path (or InfluxDB directly, as a baseline) with small agent
batches (6 points, 30 values each) and reports requests/s, points/s, values/s and latency
percentiles: JSON on stdout, one human line on stderr. Loopback addresses only.

Examples:
  loadgen --gateway http://127.0.0.1:8080 --agents 50 --duration 10s --concurrency 32
  loadgen --gateway http://127.0.0.1:8080 --verify --influx-url http://127.0.0.1:8086 --influx-db metrics
  loadgen --target influx --influx-url http://127.0.0.1:8086 --influx-db loadgen
  loadgen --mode ceiling --influx-url http://127.0.0.1:8086 --influx-db ceiling --concurrency 4
  loadgen --mode bench --rounds 3 --duration 10s   (go tool task bench: the whole budget, ~5 min)
  loadgen --mode bench --peer telegraf             (and Telegraf as a relay, side by side)
  loadgen --mode bench --scale                     (issue 12: writer copies, 1 Redis vs cluster)

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.mode, "mode", "load", "load: agent batches to --target; ceiling: InfluxDB's own ceiling (--ceiling-batch points per write, official client); bench: start a private deployment and measure the performance budget; summary: medians and budget ratios of the reports in --results")
	fs.StringVar(&c.target, "target", "gateway", "where load goes: gateway (POST /api/v1/agents/{id}/metrics) or influx (line protocol to InfluxDB's /api/v2/write)")
	fs.StringVar(&c.gateway, "gateway", "http://127.0.0.1:8080", "gateway base URL")
	fs.StringVar(&c.adminUser, "admin-user", "admin", "operator who registers the agents (role operator or admin)")
	fs.StringVar(&c.adminPass, "admin-password", "", "that operator's password; default: $ADMIN_PASSWORD, else the content of --admin-password-file")
	fs.StringVar(&c.adminFile, "admin-password-file", ".data/admin-password", "file holding the admin password (written by go tool task up)")
	fs.IntVar(&c.agents, "agents", 50, "agents to register (gateway) or simulate (influx); requests go to them round robin")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send (at most 1h)")
	fs.IntVar(&c.concurrency, "concurrency", 32, "requests in flight (workers); 2 to 4 suit --mode ceiling")
	fs.Int64Var(&c.maxRequests, "max-requests", 5_000_000, "hard cap on requests sent, whatever --duration says")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "timeout of one request")
	fs.StringVar(&c.influxURL, "influx-url", "http://127.0.0.1:8086", "InfluxDB base URL (--target influx, --mode ceiling, --verify)")
	fs.StringVar(&c.influxDB, "influx-db", "", "InfluxDB 1.x database (or db/rp) written to or, with --verify, where the gateway's points land (its INFLUXDB_BUCKET)")
	fs.StringVar(&c.influxToken, "influx-token", "", "InfluxDB token (user:password on 1.x); empty without auth")
	fs.BoolVar(&c.influxCreate, "influx-create", true, "CREATE DATABASE --influx-db first (InfluxDB 1.x) for --target influx and --mode ceiling")
	fs.IntVar(&c.ceilingBatch, "ceiling-batch", 5000, "points per write in --mode ceiling")
	fs.Float64Var(&c.rate, "rate", 0, "requests per second to offer in --mode load, paced, latency counted from when each request was due; 0: as fast as --concurrency allows")
	fs.IntVar(&c.batchPoints, "batch-points", pointsPerBatch, "points per agent request in --mode load (6 is a typical agent; Telegraf sends up to 1000)")
	fs.BoolVar(&c.verify, "verify", false, "after the run, wait until InfluxDB holds every acknowledged point; report end-to-end values/s and lost points")
	fs.DurationVar(&c.verifyTimeout, "verify-timeout", 120*time.Second, "longest wait for --verify")
	fs.StringVar(&c.label, "label", "", "name of this run in the report (default: the target or mode)")
	fs.IntVar(&c.round, "round", 0, "round number recorded in the report (--mode bench alternates kinds of run in rounds)")
	fs.StringVar(&c.results, "results", "", "--mode summary: directory of reports (one JSON file per run, labels direct, gateway, e2e, ceiling) and optional cpu.tsv")
	fs.BoolVar(&c.strict, "strict", false, "--mode summary and bench: exit 4 when a budget is missed")
	fs.BoolVar(&c.quiet, "quiet", false, "log only warnings and errors")
	fs.IntVar(&c.rounds, "rounds", 3, "--mode bench: rounds of the saturation runs (direct, gateway, telegraf); the other runs take place once")
	fs.IntVar(&c.writers, "writers", 2, "--mode bench: influx-writer copies (one copy has one write in flight)")
	fs.IntVar(&c.ceilingConcurrency, "ceiling-concurrency", 4, "--mode bench: writers of the ceiling run")
	fs.BoolVar(&c.gotest, "gotest", false, "--mode bench: run the go test -bench of internal/metric and internal/stream at the end")
	fs.BoolVar(&c.keep, "keep", false, "--mode bench: keep the temporary directory (logs, reports, InfluxDB and Redis data)")
	fs.StringVar(&c.peer, "peer", "", "--mode bench: telegraf also measures Telegraf v1.30.3 as a relay, built once into .data/bin/telegraf-relay with only its two plugins; telegraf-full: the whole Telegraf, go install'ed into .data/bin (over an hour to build on 2 busy cores)")
	fs.Func("redis-config", "--mode bench: one more setting of the bench's Redis, as \"name value\" (redis.conf syntax, for example \"auto-aof-rewrite-min-size 512mb\"); repeatable", func(v string) error {
		name, value, ok := strings.Cut(strings.TrimSpace(v), " ")
		if !ok || !redisConfigName.MatchString(name) || strings.TrimSpace(value) == "" {
			return fmt.Errorf("want \"name value\", such as \"auto-aof-rewrite-min-size 512mb\"")
		}
		c.redisConfig = append(c.redisConfig, "--"+name, strings.TrimSpace(value))
		return nil
	})
	fs.StringVar(&c.appendfsync, "redis-appendfsync", "always", "--mode bench: appendfsync of the bench's Redis: always (as go tool task up runs it: a 2xx survives a Redis crash) or everysec (faster; a Redis crash can lose ~2 s of acknowledged points)")
	fs.IntVar(&c.backgroundNice, "background-nice", stack.BackgroundNice, "--mode bench: nice value of influx-writer, pg-sync, rollup and influxd, as go tool task up runs them (0: the same priority as the gateway, Redis and the alerter)")
	fs.BoolVar(&c.scale, "scale", false, "--mode bench: measure scaling instead (issue 12): influx-writer drain rate with 1, 2 and 4 copies behind a delaying proxy, gateway on 1 Redis vs a 6-node cluster")
	fs.DurationVar(&c.scaleDelay, "scale-delay", 20*time.Millisecond, "--mode bench --scale: delay the proxy adds to every InfluxDB write")
	fs.Int64Var(&c.scaleBacklog, "scale-backlog", 20000, "--mode bench --scale: 6-point requests preloaded before each drain")
	fs.StringVar(&c.out, "out", "", "--mode bench: JSON result file (default .data/bench/<UTC time>.json in the module root)")
	fs.StringVar(&c.databaseURL, "database-url", envOr("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/agentmonitor?sslmode=disable"),
		"--mode bench: the PostgreSQL server to use, with a database of its own; $DATABASE_URL sets the default")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.mode == "bench" && !set["concurrency"] {
		c.concurrency = benchConcurrency // issue 13's comparison: 64 connections
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q (flags only; see --help)", fs.Args())
	}
	return c, c.validate()
}

func (c *config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.mode == "summary" {
		if c.results == "" {
			return errors.New("--mode summary needs --results DIR")
		}
		return nil
	}
	switch c.mode {
	case "bench":
		if c.rounds < 1 || c.rounds > 100 {
			bad("--rounds %d: want 1 to 100", c.rounds)
		}
		if c.writers < 1 || c.writers > 32 {
			bad("--writers %d: want 1 to 32", c.writers)
		}
		if c.ceilingConcurrency < 1 || c.ceilingConcurrency > 64 {
			bad("--ceiling-concurrency %d: want 1 to 64", c.ceilingConcurrency)
		}
		if c.backgroundNice < 0 || c.backgroundNice > 19 {
			bad("--background-nice %d: want 0 to 19", c.backgroundNice)
		}
		if c.appendfsync != "always" && c.appendfsync != "everysec" {
			bad("--redis-appendfsync %q: want always or everysec", c.appendfsync)
		}
		if c.peer != "" && c.peer != "telegraf" && c.peer != "telegraf-full" {
			bad("--peer %q: want telegraf, telegraf-full (or nothing)", c.peer)
		}
		if c.scaleBacklog < 100 || c.scaleBacklog > 1_000_000 {
			bad("--scale-backlog %d: want 100 to 1000000", c.scaleBacklog)
		}
		if c.scaleDelay < 0 || c.scaleDelay > time.Second {
			bad("--scale-delay %s: want 0 to 1s", c.scaleDelay)
		}
	case "load":
		switch c.target {
		case "gateway":
			if err := loopbackURL(c.gateway); err != nil {
				bad("--gateway: %w", err)
			}
		case "influx":
		default:
			bad("--target %q: want gateway or influx", c.target)
		}
	case "ceiling":
		if c.verify {
			bad("--verify applies to --mode load")
		}
		if c.ceilingBatch < 1 || c.ceilingBatch > 100_000 {
			bad("--ceiling-batch %d: want 1 to 100000", c.ceilingBatch)
		}
	default:
		bad("--mode %q: want load, ceiling, bench or summary", c.mode)
	}
	needInflux := c.mode == "ceiling" || c.target == "influx" || c.verify
	if needInflux {
		if err := loopbackURL(c.influxURL); err != nil {
			bad("--influx-url: %w", err)
		}
		if c.influxDB == "" {
			bad("--influx-db is required for --target influx, --mode ceiling and --verify")
		}
	}
	if c.rate < 0 || c.rate > 1e6 {
		bad("--rate %g: want 0 (unpaced) to 1000000", c.rate)
	}
	if c.batchPoints < 1 || c.batchPoints > maxBatchPoints {
		bad("--batch-points %d: want 1 to %d", c.batchPoints, maxBatchPoints)
	}
	if c.agents < 1 || c.agents > 100_000 {
		bad("--agents %d: want 1 to 100000", c.agents)
	}
	if c.duration <= 0 || c.duration > time.Hour {
		bad("--duration %s: want more than 0 and at most 1h", c.duration)
	}
	if c.concurrency < 1 || c.concurrency > 4096 {
		bad("--concurrency %d: want 1 to 4096", c.concurrency)
	}
	if c.maxRequests < 1 || c.maxRequests > 100_000_000 {
		bad("--max-requests %d: want 1 to 100000000", c.maxRequests)
	}
	if c.timeout <= 0 {
		bad("--timeout %s: want > 0", c.timeout)
	}
	if c.verifyTimeout <= 0 || c.verifyTimeout > time.Hour {
		bad("--verify-timeout %s: want more than 0 and at most 1h", c.verifyTimeout)
	}
	if c.label == "" {
		c.label = c.target
		if c.mode == "ceiling" {
			c.label = "ceiling"
		}
	}
	return errors.Join(errs...)
}

// loopbackURL accepts only http URLs of this machine: a load tool pointed at a remote host by
// mistake would be a denial of service.
func loopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%q: want http://host:port", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q: only loopback addresses (127.0.0.1, ::1, localhost) are allowed", raw)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// adminPassword returns the flag's password, else $ADMIN_PASSWORD, else the file's content.
func (c config) adminPassword() (string, error) {
	if c.adminPass != "" {
		return c.adminPass, nil
	}
	if p := os.Getenv("ADMIN_PASSWORD"); p != "" {
		return p, nil
	}
	b, err := os.ReadFile(c.adminFile)
	if err != nil {
		return "", fmt.Errorf("no admin password: pass --admin-password, set ADMIN_PASSWORD or write %s: %w", c.adminFile, err)
	}
	p := strings.TrimSpace(string(b))
	if p == "" {
		return "", fmt.Errorf("no admin password: %s is empty", c.adminFile)
	}
	return p, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	if cfg.mode == "summary" {
		code, err := runSummary(cfg.results, cfg.strict, stdout)
		if err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
		}
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.mode == "bench" {
		code, err := runBench(ctx, cfg, stdout, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
		}
		return code
	}
	level := slog.LevelInfo
	if cfg.quiet {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	rep, err := runMode(ctx, cfg, logger)
	if err != nil {
		logger.Error("loadgen failed", "err", err)
		return 1
	}
	if err := writeReport(stdout, rep); err != nil {
		logger.Error("writing report", "err", err)
		return 1
	}
	fmt.Fprintln(stderr, rep.human())
	if rep.Verify != nil && (rep.Verify.LostPoints > 0 || !rep.Verify.Complete) {
		return 3
	}
	return 0
}

// writeReport prints a measuring mode's report on w (stdout) as indented JSON.
func writeReport(w io.Writer, rep any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func runMode(ctx context.Context, cfg config, logger *slog.Logger) (*report, error) {
	if cfg.mode == "ceiling" {
		return runCeiling(ctx, cfg, logger)
	}
	return runLoad(ctx, cfg, logger)
}
