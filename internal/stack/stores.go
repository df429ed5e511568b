package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a private redis-server process: its own port and data directory, with the append-only
// file on (appendfsync always, as go tool task up runs it) and maxmemory-policy noeviction unless
// told otherwise. Fault
// tests kill, stop and restart it without touching the shared Redis other tests use.
type Redis struct {
	addr string
	dir  string
	proc *Process
}

// StartRedis starts redis-server (from PATH) with its data under dir on a free loopback port and
// waits until it answers PING. extra are further "--name value" arguments, which override the
// defaults (for example "--maxmemory", "2mb"). The caller stops it with Stop.
func StartRedis(dir string, extra ...string) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating redis dir: %w", err)
	}
	var lastErr error
	for range 3 { // a free port may be taken before redis-server binds it
		addrs, err := FreeAddrs(1)
		if err != nil {
			return nil, err
		}
		_, port, _ := strings.Cut(addrs[0], ":")
		args := []string{"--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "",
			"--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction",
			"--daemonize", "no", "--logfile", "", "--protected-mode", "no"}
		r := &Redis{addr: addrs[0], dir: dir}
		r.proc = &Process{spec: Spec{
			Name:         "redis-server",
			Path:         bin,
			Args:         append(args, extra...),
			Env:          os.Environ(),
			LogPath:      filepath.Join(dir, "redis.log"),
			Ready:        r.ping,
			ReadyTimeout: time.Minute,
		}}
		if lastErr = r.proc.Start(context.Background()); lastErr == nil {
			return r, nil
		}
		if !errors.Is(lastErr, ErrExited) {
			break
		}
	}
	return nil, lastErr
}

// ping answers nil when the server answers PING (and has finished loading its data).
func (r *Redis) ping(ctx context.Context) error {
	c := redis.NewClient(&redis.Options{Addr: r.addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	return c.Ping(ctx).Err()
}

// Addr returns host:port.
func (r *Redis) Addr() string { return r.addr }

// URL returns redis://host:port/0.
func (r *Redis) URL() string { return "redis://" + r.addr + "/0" }

// Process returns the server's process.
func (r *Redis) Process() *Process { return r.proc }

// Start starts the stopped or killed server again on its port with its data (the AOF is replayed)
// and waits until it answers.
func (r *Redis) Start() error { return r.proc.Start(context.Background()) }

// Stop stops the server with SIGTERM (it flushes the AOF) and waits for it to exit.
func (r *Redis) Stop() error { return r.proc.Stop(10 * time.Second) }

// Kill ends the server with SIGKILL. With appendfsync always nothing it answered is lost; with
// everysec up to about 2 s of answered writes can be (see redisconn.Settings).
func (r *Redis) Kill() error { return r.proc.Kill() }

// Postgres is a private PostgreSQL cluster made with initdb under a directory of its own and run
// with pg_ctl on a free loopback port, with trust authentication for user postgres. When the
// caller is root the cluster runs as the postgres system user (PostgreSQL refuses root).
type Postgres struct {
	bin  string // directory of initdb, pg_ctl, postgres
	data string
	port int
	cred *syscall.Credential
}

// PostgresBinDir finds the directory of initdb and pg_ctl: the newest /usr/lib/postgresql/*/bin,
// else the directory of initdb on PATH.
func PostgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("initdb not found under /usr/lib/postgresql/*/bin or on PATH")
}

// StartPostgres creates a cluster in dir/data (dir is made readable by the cluster's user) and
// starts it on a free port, waiting until it accepts connections. The caller stops it with Stop
// and may remove dir afterwards.
func StartPostgres(dir string) (*Postgres, error) {
	bin, err := PostgresBinDir()
	if err != nil {
		return nil, err
	}
	p := &Postgres{bin: bin, data: filepath.Join(dir, "data")}
	if err := os.MkdirAll(p.data, 0o700); err != nil {
		return nil, fmt.Errorf("creating postgres dir: %w", err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres user to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The cluster's user must reach its data directory: open dir and its parent for search.
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				return nil, fmt.Errorf("opening %s to the postgres user: %w", d, err)
			}
		}
		if err := os.Chown(p.data, uid, gid); err != nil {
			return nil, fmt.Errorf("giving %s to the postgres user: %w", p.data, err)
		}
	}
	if out, err := p.run("initdb", "-D", p.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	var lastErr error
	for range 3 {
		addrs, err := FreeAddrs(1)
		if err != nil {
			return nil, err
		}
		_, port, _ := strings.Cut(addrs[0], ":")
		p.port, _ = strconv.Atoi(port)
		if lastErr = p.Start(); lastErr == nil {
			return p, nil
		}
	}
	return nil, lastErr
}

// run runs one of the cluster's programs as the cluster's user and returns its output.
func (p *Postgres) run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, name), args...)
	cmd.Dir = p.data
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// URL returns the URL of database db on the cluster, as user postgres.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// Port returns the cluster's port.
func (p *Postgres) Port() int { return p.port }

// Start starts the (stopped) cluster on its port and waits until it accepts connections.
func (p *Postgres) Start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", p.port, p.data)
	if out, err := p.run("pg_ctl", "-D", p.data, "-o", opts, "-l", filepath.Join(p.data, "postgres.log"), "-w", "-t", "60", "start"); err != nil {
		return fmt.Errorf("pg_ctl start: %w: %s", err, out)
	}
	return nil
}

// Stop stops the cluster (fast shutdown: sessions are ended, nothing committed is lost) and waits
// for it. Stopping a stopped cluster does nothing.
func (p *Postgres) Stop() error {
	out, err := p.run("pg_ctl", "-D", p.data, "status")
	if running := err == nil && strings.Contains(out, "server is running"); !running {
		return nil // pg_ctl status fails when no server runs: nothing to stop
	}
	if out, err := p.run("pg_ctl", "-D", p.data, "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, out)
	}
	return nil
}

// CreateDatabase creates database name (createdb, as the cluster's user).
func (p *Postgres) CreateDatabase(name string) error {
	if out, err := p.run("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "postgres", name); err != nil {
		return fmt.Errorf("createdb %s: %w: %s", name, err, out)
	}
	return nil
}
