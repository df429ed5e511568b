package main

import (
	"context"
	"database/sql"
	"debug/buildinfo"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/stack"
)

// dev is one devstack run: the settings and the state directories.
type dev struct {
	cfg              config
	run, logDir, bin string
}

func newDev(cfg config) *dev {
	return &dev{cfg: cfg, run: filepath.Join(cfg.data, "run"), logDir: filepath.Join(cfg.data, "logs"), bin: filepath.Join(cfg.data, "bin")}
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "==> "+format+"\n", a...) }

// isLocal reports whether host is this machine's loopback, where we may start a server ourselves.
func isLocal(host string) bool {
	switch host {
	case "", "127.0.0.1", "localhost", "::1", "0.0.0.0":
		return true
	}
	return false
}

// bindHost maps a local host name to an address a server can bind.
func bindHost(host string) string {
	if host == "" || host == "localhost" || host == "0.0.0.0" {
		return "127.0.0.1"
	}
	return host
}

// tcpOpen reports whether something accepts TCP connections at addr.
func tcpOpen(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func waitTCP(ctx context.Context, addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for !tcpOpen(addr) {
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s", addr, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// script runs scripts/stores.sh with args, its output on ours.
func (d *dev) script(ctx context.Context, extraEnv []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(d.cfg.root, "scripts", "stores.sh")}, args...)...)
	cmd.Env = append(append(os.Environ(), "AGENTMONITOR_DATA="+d.cfg.data), extraEnv...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scripts/stores.sh %s: %w", args[0], err)
	}
	return nil
}

// pidOf returns the pid recorded in file when that process still runs and its command line
// contains name (a recycled pid is not ours).
func pidOf(file, name string) (int, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), name) {
		return 0, false
	}
	return pid, true
}

// ours says so when the store answering is the one a previous up started.
func (d *dev) ours(pidFile, name string) string {
	if _, ok := pidOf(filepath.Join(d.run, pidFile), name); ok {
		return " (started by go tool task up)"
	}
	return ""
}

// stores makes sure Redis, PostgreSQL and InfluxDB answer.
func (d *dev) stores(ctx context.Context) error {
	for _, dir := range []string{d.cfg.data, d.run, d.logDir, d.bin} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	if err := d.ensureRedis(ctx, d.cfg.redisURL); err != nil {
		return err
	}
	if err := d.ensurePostgres(ctx, d.cfg.databaseURL); err != nil {
		return err
	}
	return d.ensureInfluxDB(ctx)
}

// some makes sure the named stores answer (for go tool task bench: redis postgres).
func (d *dev) some(ctx context.Context, names []string) error {
	for _, dir := range []string{d.cfg.data, d.run, d.logDir, d.bin} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	for _, n := range names {
		var err error
		switch n {
		case "redis":
			err = d.ensureRedis(ctx, d.cfg.redisURL)
		case "postgres":
			err = d.ensurePostgres(ctx, d.cfg.databaseURL)
		case "influxdb":
			err = d.ensureInfluxDB(ctx)
		default:
			err = fmt.Errorf("stores %q: want redis, postgres or influxdb", n)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ensureRedis makes sure a Redis answers at rawURL, starting a local redis-server if needed. A
// cluster URL (several addr parameters, or REDIS_CLUSTER=1) or a Sentinel URL (master_name) goes
// to ensureRedisDeployment.
func (d *dev) ensureRedis(ctx context.Context, rawURL string) error {
	rc := redisconn.Config{URL: rawURL, Password: d.cfg.redisPass, Cluster: d.cfg.redisCluster}
	mode, err := rc.Mode()
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	if mode != redisconn.Single {
		return d.ensureRedisDeployment(ctx, rc, mode)
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	host, port, _ := net.SplitHostPort(opts.Addr)
	addr := net.JoinHostPort(bindHost(host), port)
	if tcpOpen(addr) {
		logf("Redis: using the server answering at %s%s", addr, d.ours("redis.pid", "redis-server"))
		d.warnRedisSettings(ctx, opts)
		return nil
	}
	if !isLocal(host) {
		return fmt.Errorf("redis does not answer at %s (REDIS_URL) and that host is not this machine: start it or fix REDIS_URL", addr)
	}
	pass := opts.Password
	if pass == "" {
		pass = d.cfg.redisPass
	}
	if err := d.script(ctx, []string{"REDIS_PASSWORD=" + pass}, "redis", bindHost(host), port); err != nil {
		return err
	}
	if err := waitTCP(ctx, addr, 30*time.Second); err != nil {
		return fmt.Errorf("redis did not start listening (see %s): %w", filepath.Join(d.logDir, "redis.log"), err)
	}
	return nil
}

// ensureRedisDeployment makes sure the Redis Cluster or Sentinel deployment of rc answers on every
// master. When a cluster URL names only nodes of the local cluster (REDIS_CLUSTER_PORTS on this
// machine), that cluster is started first (clusterUp); anything else must already run. Settings
// that can lose points are warned about, per master.
func (d *dev) ensureRedisDeployment(ctx context.Context, rc redisconn.Config, mode redisconn.Mode) error {
	opts, err := rc.Options()
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	if mode == redisconn.Cluster && d.localClusterNodes(opts.Addrs) {
		if err := d.clusterUp(ctx); err != nil {
			return err
		}
	}
	client, err := rc.NewClient()
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	where := strings.Join(opts.Addrs, ",")
	if err := redisconn.Ping(ctx, client); err != nil {
		return fmt.Errorf("redis %s at %s (REDIS_URL) does not answer on every master: start it or fix REDIS_URL: %w", mode, where, err)
	}
	logf("Redis: using the %s at %s", mode, where)
	err = redisconn.ForEachServer(ctx, client, func(ctx context.Context, node redis.UniversalClient) error {
		s, err := redisconn.ReadSettings(ctx, node)
		if err == nil {
			err = s.Refusal(false)
		}
		if err != nil {
			logf("Redis: WARNING: %v", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, w := range redisconn.Warnings(ctx, client) {
		if !strings.Contains(w, "maxmemory-policy") { // said above
			logf("Redis: WARNING: %s", strings.TrimPrefix(w, "redis "))
		}
	}
	return nil
}

// localClusterNodes reports whether every address is a node of the local cluster: a loopback
// host and a port of REDIS_CLUSTER_PORTS.
func (d *dev) localClusterNodes(addrs []string) bool {
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil || !isLocal(host) || !slices.Contains(d.cfg.clusterPorts, p) {
			return false
		}
	}
	return len(addrs) > 0
}

// warnRedisSettings says loudly when the Redis found running can lose points: no append-only
// file (a restart loses the streams' recent entries) or an evicting maxmemory-policy (the binaries
// refuse to start on it unless REDIS_ALLOW_EVICTION=1).
func (d *dev) warnRedisSettings(ctx context.Context, opts *redis.Options) {
	if opts.Password == "" {
		opts.Password = d.cfg.redisPass
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := redisconn.ReadSettings(ctx, rdb)
	if err != nil {
		logf("Redis: WARNING: cannot read its settings: %v", err)
		return
	}
	if err := s.Refusal(false); err != nil {
		logf("Redis: WARNING: %v", err)
	}
	for _, w := range s.Warnings() {
		if !strings.Contains(w, "maxmemory-policy") { // said above
			logf("Redis: WARNING: %s", strings.TrimPrefix(w, "redis: "))
		}
	}
}

// ensurePostgres makes sure PostgreSQL answers at rawURL, the URL's user logs in over TCP with
// its password, and the URL's database exists.
func (d *dev) ensurePostgres(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return fmt.Errorf("DATABASE_URL %q: want postgres://user:password@host:port/database", rawURL)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	user := u.User.Username()
	if user == "" {
		user = "postgres"
	}
	pass, _ := u.User.Password()
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" {
		db = "agentmonitor"
	}
	addr := net.JoinHostPort(bindHost(host), port)
	if tcpOpen(addr) {
		note := ""
		if fileExists(filepath.Join(d.run, "postgres-private")) || fileExists(filepath.Join(d.run, "postgres-cluster")) {
			note = " (started by go tool task up)"
		}
		logf("PostgreSQL: using the server answering at %s%s", addr, note)
	} else {
		if !isLocal(host) {
			return fmt.Errorf("PostgreSQL does not answer at %s (DATABASE_URL) and that host is not this machine: start it or fix DATABASE_URL", addr)
		}
		if err := d.script(ctx, nil, "postgres", bindHost(host), port, user, pass); err != nil {
			return err
		}
		if err := waitTCP(ctx, addr, 30*time.Second); err != nil {
			return fmt.Errorf("PostgreSQL did not start listening: %w", err)
		}
	}

	// The server's maintenance database with the URL's credentials and options.
	admin := *u
	admin.Path = "/postgres"
	if err := pgPing(ctx, admin.String()); err != nil {
		if !isLocal(host) {
			return fmt.Errorf("PostgreSQL at %s refuses user %s: check DATABASE_URL: %w", addr, user, err)
		}
		if err := d.script(ctx, nil, "postgres-role", port, user, pass); err != nil {
			return err
		}
		if err := pgPing(ctx, admin.String()); err != nil {
			return fmt.Errorf("PostgreSQL still refuses %s over TCP at %s: check pg_hba.conf (password auth on loopback): %w", user, addr, err)
		}
	}
	created, err := createDatabase(ctx, admin.String(), db, user)
	if err != nil {
		return err
	}
	if created {
		logf("PostgreSQL: created database %s for %s", db, user)
	}
	logf("PostgreSQL: database %s is ready for %s at %s", db, user, addr)
	return nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Size() > 0
}

func pgPing(ctx context.Context, dsn string) error {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// createDatabase creates db owned by owner unless it exists, and reports whether it did.
func createDatabase(ctx context.Context, adminDSN, db, owner string) (bool, error) {
	conn, err := sql.Open("postgres", adminDSN)
	if err != nil {
		return false, fmt.Errorf("opening PostgreSQL: %w", err)
	}
	defer conn.Close()
	var exists bool
	if err := conn.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return false, fmt.Errorf("looking for database %s: %w", db, err)
	}
	if exists {
		return false, nil
	}
	_, err = conn.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(db)+" OWNER "+pq.QuoteIdentifier(owner))
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "42P04" { // created meanwhile
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("creating database %s: %w", db, err)
	}
	return true, nil
}

// influxPing reports whether an InfluxDB answers base/ping with 204.
func influxPing(ctx context.Context, base string) bool {
	return stack.HTTPReady(base+"/ping", http.StatusNoContent)(ctx) == nil
}

// ensureInfluxDB makes sure an InfluxDB answers at INFLUXDB_URL, else runs influxd 1.8 under
// .data/influxdb, detached, with its pid in .data/run/influxd.pid.
func (d *dev) ensureInfluxDB(ctx context.Context) error {
	base := d.cfg.influxURL
	if influxPing(ctx, base) {
		logf("InfluxDB: using the server answering at %s%s", base, d.ours("influxd.pid", "influxd"))
		return nil
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("INFLUXDB_URL %q: want http://host:port to start a local InfluxDB", base)
	}
	if !isLocal(u.Hostname()) {
		return fmt.Errorf("InfluxDB does not answer at %s (INFLUXDB_URL) and that host is not this machine: start it or fix INFLUXDB_URL", base)
	}
	port := u.Port()
	if port == "" {
		port = "8086"
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("INFLUXDB_URL %q: bad port", base)
	}
	host := bindHost(u.Hostname())
	httpAddr := net.JoinHostPort(host, port)
	if tcpOpen(httpAddr) {
		return fmt.Errorf("something listens on %s but does not answer %s/ping as InfluxDB: fix INFLUXDB_URL or free the port", httpAddr, base)
	}
	// A copy that reports its version, so that version detection by /ping sees 1.8.10.
	bin, ok := d.findInfluxd(true)
	if !ok {
		logf("InfluxDB: %s into %s (a few minutes, once)", stack.InfluxdInstall, d.bin)
		if bin, err = stack.InstallInfluxd(ctx, d.bin, os.Stderr); err != nil {
			return err
		}
	}
	cfg := stack.InfluxdConfig{
		Dir:      filepath.Join(d.cfg.data, "influxdb"),
		HTTPAddr: httpAddr,
		RPCAddr:  net.JoinHostPort(host, strconv.Itoa(p+2)), // 8086 -> 8088, influxd's usual backup port
		LogLevel: "info",
		Nice:     stack.BackgroundNice, // written to by the influx-writer, behind the streams
	}
	srv := stack.NewInfluxd(bin, cfg, true)
	logf("InfluxDB: starting %s on %s (data in %s; Flux takes a while to start on a busy machine)", bin, httpAddr, cfg.Dir)
	_ = os.Symlink(srv.Process().LogPath(), filepath.Join(d.logDir, "influxd.log"))
	if err := srv.Start(); err != nil {
		return err
	}
	return writePid(filepath.Join(d.run, "influxd.pid"), srv.Process().Pid())
}

func writePid(file string, pid int) error {
	if err := os.WriteFile(file, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing pid file: %w", err)
	}
	return nil
}

// findInfluxd returns the first influxd built from the InfluxDB v1.8.10 module among
// $INFLUXD_BIN, .data/bin, $(go env GOPATH)/bin and PATH; with stamped, only one that also reports
// that version (see stack.InstallInfluxd).
func (d *dev) findInfluxd(stamped bool) (string, bool) {
	candidates := []string{d.cfg.influxdBin, filepath.Join(d.bin, "influxd")}
	if gobin := stack.GoBin(); gobin != "" {
		candidates = append(candidates, filepath.Join(gobin, "influxd"))
	}
	if p, err := exec.LookPath("influxd"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if c != "" && isInfluxd18(c, stamped) {
			return c, true
		}
	}
	return "", false
}

func isInfluxd18(bin string, stamped bool) bool {
	info, err := buildinfo.ReadFile(bin)
	if err != nil || info.Main.Path != stack.InfluxdModule || info.Main.Version != stack.InfluxdVersion {
		return false
	}
	if !stamped {
		return true
	}
	out, err := exec.Command(bin, "version").Output()
	return err == nil && strings.Contains(string(out), "InfluxDB "+stack.InfluxdVersion+" ")
}
