package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/stack"
)

// present returns the binaries whose cmd/<name> package exists, in start order.
func (d *dev) present() []string {
	var apps []string
	for _, app := range stack.Apps {
		if m, _ := filepath.Glob(filepath.Join(d.cfg.root, "cmd", app, "*.go")); len(m) > 0 {
			apps = append(apps, app)
		}
	}
	return apps
}

func (d *dev) build(ctx context.Context) error {
	apps := d.present()
	if !slices.Contains(apps, "gateway") {
		return errors.New("cmd/gateway has no Go files: nothing to run")
	}
	logf("building %s into %s", strings.Join(apps, " "), d.bin)
	return stack.Build(ctx, d.bin, os.Stderr, apps...)
}

// adminPassword returns the caller's ADMIN_PASSWORD, else one generated once into .data, and how
// to show it.
func (d *dev) adminPassword() (pass, shown string, err error) {
	if d.cfg.adminPass != "" {
		return d.cfg.adminPass, "the ADMIN_PASSWORD in your environment", nil
	}
	f := filepath.Join(d.cfg.data, "admin-password")
	if b, err := os.ReadFile(f); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		p := strings.TrimSpace(string(b))
		return p, p + "   (kept in " + f + ")", nil
	}
	p := rand.Text()[:24] // base32: letters and digits, 120 bits
	if err := os.WriteFile(f, []byte(p), 0o600); err != nil {
		return "", "", fmt.Errorf("writing %s: %w", f, err)
	}
	return p, p + "   (kept in " + f + ")", nil
}

// localURL turns a listen address (":8080", "0.0.0.0:8080", "host:8080") into a URL to call.
func localURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	return "http://" + net.JoinHostPort(bindHost(host), port)
}

func (d *dev) pidFile(app string) string { return filepath.Join(d.run, app+".pid") }

// stopPid stops the process recorded in file (SIGTERM, SIGKILL after grace) and removes file.
func stopPid(file, name string, grace time.Duration) {
	defer os.Remove(file)
	pid, ok := pidOf(file, name)
	if !ok {
		return
	}
	logf("stopping %s (pid %d)", filepath.Base(strings.TrimSuffix(file, ".pid")), pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			logf("%s did not stop within %s: SIGKILL", name, grace)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *dev) up(ctx context.Context) error {
	if err := d.stores(ctx); err != nil {
		return err
	}
	if err := d.build(ctx); err != nil {
		return err
	}
	pass, shown, err := d.adminPassword()
	if err != nil {
		return err
	}
	gatewayURL := localURL(d.cfg.gatewayAddr)
	base := append(os.Environ(),
		"REDIS_URL="+d.cfg.redisURL, "DATABASE_URL="+d.cfg.databaseURL, "INFLUXDB_URL="+d.cfg.influxURL, "ADMIN_PASSWORD="+pass)
	apps := d.present()
	for _, app := range apps {
		bin := filepath.Join(d.bin, app)
		stopPid(d.pidFile(app), bin, 30*time.Second)
		spec := stack.Spec{Name: app, Path: bin, Env: base, LogPath: filepath.Join(d.logDir, app+".log"), Detach: true}
		if stack.Background(app) {
			spec.Nice = stack.BackgroundNice
		}
		if app == "gateway" {
			// OPS_ADDR is always set, so that one in the shell (meant for a worker) is not taken;
			// without it, OPS_PPROF (for the workers) would stop the gateway from starting.
			spec.Env = append(slices.Clone(base), "GATEWAY_ADDR="+d.cfg.gatewayAddr, "OPS_ADDR="+d.cfg.gatewayOps)
			if d.cfg.gatewayOps == "" {
				spec.Env = append(spec.Env, "OPS_PPROF=false")
			}
			spec.Ready = stack.HTTPReady(gatewayURL+"/readyz", http.StatusOK)
			spec.ReadyTimeout = d.cfg.ready
			logf("waiting up to %s for %s/readyz", d.cfg.ready, gatewayURL)
		} else {
			spec.Env = append(slices.Clone(base), "OPS_ADDR="+d.cfg.opsAddrs[app])
		}
		p, err := stack.Start(ctx, spec)
		if err != nil {
			return fmt.Errorf("%w\n(stop the rest with: go tool task down)", err)
		}
		if err := writePid(d.pidFile(app), p.Pid()); err != nil {
			return err
		}
		logf("started %s (pid %d, log %s)", app, p.Pid(), spec.LogPath)
	}
	time.Sleep(time.Second) // let a worker that is about to fail on its config do so before we report
	failed := false
	for _, app := range apps {
		if _, ok := pidOf(d.pidFile(app), filepath.Join(d.bin, app)); !ok {
			failed = true
			fmt.Fprintf(os.Stderr, "--- end of %s ---\n%s\n---\nwarning: %s is not running; its log is above\n",
				filepath.Join(d.logDir, app+".log"), tailFile(filepath.Join(d.logDir, app+".log"), 3000), app)
		}
	}
	dashboard := gatewayURL + "/"
	if !served(dashboard) {
		dashboard += "  (not answering yet: see the gateway's log)"
	}
	state := "Agent Monitor is up."
	if failed {
		state = "Agent Monitor is up, but not every worker runs (see above)."
	}
	fmt.Printf(`
%s
  Dashboard   %s
  API         %s/api/v1/   (described at %s/api/v1/openapi.yaml)
  Log in      user admin, password: %s
              (the password admin is given when the gateway first creates that user)
  Logs        %s/   (go tool task logs)
`, state, dashboard, gatewayURL, gatewayURL, shown, d.logDir)
	for _, app := range apps {
		if app != "gateway" {
			fmt.Printf("  %-11s %s/healthz /readyz /metrics\n", app, localURL(d.cfg.opsAddrs[app]))
		}
	}
	fmt.Println("  Stop        go tool task down")
	if failed {
		return errors.New("not every worker runs")
	}
	return nil
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (d *dev) down() error {
	for i := len(stack.Apps) - 1; i >= 0; i-- {
		app := stack.Apps[i]
		stopPid(d.pidFile(app), filepath.Join(d.bin, app), 60*time.Second)
	}
	stopPid(filepath.Join(d.run, "influxd.pid"), "influxd", 30*time.Second)
	stopPid(filepath.Join(d.run, "redis.pid"), "redis-server", 30*time.Second)
	if fileExists(filepath.Join(d.run, "postgres-private")) || fileExists(filepath.Join(d.run, "postgres-cluster")) {
		if err := d.script(context.Background(), nil, "postgres-stop"); err != nil {
			return err
		}
	}
	logf("down (stores that were already running were left alone)")
	return nil
}

func (d *dev) status() {
	files, _ := filepath.Glob(filepath.Join(d.run, "*.pid"))
	sort.Strings(files)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".pid")
		if pid, ok := pidOf(f, name); ok {
			fmt.Printf("%-14s running (pid %d)\n", name, pid)
		} else {
			fmt.Printf("%-14s not running\n", name)
		}
	}
	if b, err := os.ReadFile(filepath.Join(d.run, "postgres-private")); err == nil {
		fmt.Printf("%-14s our cluster in %s\n", "postgres", strings.TrimSpace(string(b)))
	}
	if b, err := os.ReadFile(filepath.Join(d.run, "postgres-cluster")); err == nil {
		fmt.Printf("%-14s Debian cluster %s (started by us)\n", "postgres", strings.TrimSpace(string(b)))
	}
	if len(files) == 0 {
		fmt.Println("nothing started (go tool task up)")
	}
}

// logs shows the last n lines of every log, following them on a terminal.
func (d *dev) logs(n int) error {
	files, _ := filepath.Glob(filepath.Join(d.logDir, "*.log"))
	if len(files) == 0 {
		return fmt.Errorf("no logs yet in %s (run: go tool task up)", d.logDir)
	}
	args := []string{"-n", fmt.Sprint(n)}
	if st, err := os.Stdout.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
		args = append(args, "-F")
	}
	cmd := exec.Command("tail", append(args, files...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// test makes sure the stores the tests use answer and influxd 1.8.10 is installed, runs
// scripts/lint.sh, then go test over packages (default ./...).
func (d *dev) test(ctx context.Context, packages []string) error {
	for _, dir := range []string{d.cfg.data, d.run, d.logDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	if err := d.ensureRedis(ctx, d.cfg.testRedisURL); err != nil {
		return err
	}
	if err := d.ensurePostgres(ctx, d.cfg.testDatabaseURL); err != nil {
		return err
	}
	// The cluster tests (TEST_REDIS_CLUSTER_URL, default the cluster:up nodes) need it running.
	if os.Getenv("TEST_REDIS_CLUSTER_URL") == "" {
		if err := d.clusterUp(ctx); err != nil {
			return err
		}
	}
	influxd, ok := d.findInfluxd(false)
	if !ok {
		gobin := stack.GoBin()
		if gobin == "" {
			return errors.New("go env GOPATH is empty: cannot install influxd")
		}
		var err error
		logf("InfluxDB: %s (a few minutes, once)", stack.InfluxdInstall)
		if influxd, err = stack.InstallInfluxd(ctx, gobin, os.Stderr); err != nil {
			return err
		}
		if !isInfluxd18(influxd, false) {
			return fmt.Errorf("go install did not produce influxd %s at %s", stack.InfluxdVersion, influxd)
		}
	}
	logf("InfluxDB: tests use %s", influxd)
	// The dashboard's browser tests (e2e/dashboard_test.go) drive Debian's chromium.
	if err := d.script(ctx, nil, "chromium"); err != nil {
		return err
	}
	if err := d.command(ctx, nil, "bash", filepath.Join(d.cfg.root, "scripts", "lint.sh")); err != nil {
		return err
	}
	whole := len(packages) == 0
	if whole {
		packages = []string{"./..."}
	}
	// -p 2: this class of machine has two cores, and integration tests start real servers.
	args := append(append([]string{"test", "-count=1", "-race", "-p", "2", "-timeout", "30m"}, d.cfg.goTestFlags...), packages...)
	logf("go %s", strings.Join(args, " "))
	if err := d.command(ctx, []string{"INFLUXD_BIN=" + influxd}, "go", args...); err != nil {
		return err
	}
	if whole || slices.ContainsFunc(packages, func(p string) bool { return strings.HasPrefix(strings.TrimPrefix(p, "./"), "e2e") }) {
		// The same binaries on Redis Cluster: the pipeline and alerting tests again, every binary
		// given the cluster's REDIS_URL (e2e/system_test.go, TEST_E2E_REDIS).
		args := append(append([]string{"test", "-count=1", "-race", "-p", "2", "-timeout", "20m"}, d.cfg.goTestFlags...), "-run", e2eClusterTests, "./e2e/")
		logf("TEST_E2E_REDIS=cluster go %s", strings.Join(args, " "))
		if err := d.command(ctx, []string{"INFLUXD_BIN=" + influxd, "TEST_E2E_REDIS=cluster"}, "go", args...); err != nil {
			return err
		}
	}
	if whole {
		// The allocation budgets skip themselves under -race (the detector allocates): run them
		// once without it, so that the parsers' budget is checked by `test` too.
		args := []string{"test", "-count=1", "-run", "Allocs", "./internal/metric/"}
		logf("go %s", strings.Join(args, " "))
		if err := d.command(ctx, nil, "go", args...); err != nil {
			return err
		}
		return d.fuzz(ctx, fuzzCI)
	}
	return nil
}

// e2eClusterTests selects the end-to-end tests `test` runs a second time against Redis Cluster:
// the pipeline (agent → gateway → every group → InfluxDB, PostgreSQL) and alerting (rules,
// agent-silent, edits, WebSocket latency).
const e2eClusterTests = "^(TestPipelineEndToEnd|TestAlertFiresResolvesWithHysteresisEverywhere|TestAgentSilentFiresForSilentAndNeverSeenAgents|TestRuleEditAndSilenceTakeEffectWithoutRestart|TestAlertLatency)$"

// fuzzTargets are the native fuzz targets: the parsers of agent input and the alert-rule
// validator. `test` runs each for fuzzCI, `fuzz` for longer.
var fuzzTargets = []struct{ name, pkg string }{
	{"FuzzParseJSON", "./internal/metric"},
	{"FuzzParseLineProtocol", "./internal/metric"},
	{"FuzzValidate", "./internal/alert"},
}

// fuzzCI is how long `test` fuzzes each target.
const fuzzCI = 5 * time.Second

// fuzz runs every fuzz target for d each, one after the other (go test -fuzz takes one target
// per run). A failing input is written under the package's testdata/fuzz and fails the run.
func (d *dev) fuzz(ctx context.Context, each time.Duration) error {
	for _, f := range fuzzTargets {
		args := []string{"test", "-run", "^$", "-fuzz", "^" + f.name + "$", "-fuzztime", each.String(), f.pkg}
		logf("go %s", strings.Join(args, " "))
		if err := d.command(ctx, nil, "go", args...); err != nil {
			return err
		}
	}
	return nil
}

// faults runs the fault suite (package faults) at full length: every scenario under minutes of
// load, with one line per scenario at the end.
func (d *dev) faults(ctx context.Context, extra []string) error {
	influxd, ok := d.findInfluxd(false)
	if !ok {
		return fmt.Errorf("influxd %s not found: run go tool task test once, or %s", stack.InfluxdVersion, stack.InfluxdInstall)
	}
	if err := d.ensurePostgres(ctx, d.cfg.testDatabaseURL); err != nil {
		return err
	}
	args := append([]string{"test", "-count=1", "-v", "-timeout", "120m", "./faults", "-args", "-long"}, extra...)
	logf("go %s", strings.Join(args, " "))
	return d.command(ctx, []string{"INFLUXD_BIN=" + influxd}, "go", args...)
}

func (d *dev) command(ctx context.Context, extraEnv []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = d.cfg.root
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// served reports whether a GET of url answers below 400 within a few seconds.
func served(url string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode < 400
}
