// Command devstack runs Agent Monitor on this machine for development: go tool task
// up/down/stores/status/logs/build/test call it. It makes sure Redis, PostgreSQL and InfluxDB
// answer at REDIS_URL, DATABASE_URL and INFLUXDB_URL (a store that already answers is used as it
// is and never stopped; a local one is started, installing it when missing, and stopped by down),
// builds the binaries into .data/bin, starts them with pid files and logs under .data, waits until
// the gateway is ready and prints where everything is. Starting Redis and PostgreSQL is left to
// scripts/stores.sh (apt-get, initdb, pg_ctlcluster); influxd 1.8 and the binaries run through
// internal/stack.
//
//	devstack up|down|stores|status|build
//	devstack stores redis|postgres|influxdb...   only those
//	devstack logs [lines]
//	devstack test [packages]
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/stack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// Defaults for a local run.
const (
	defaultDatabaseURL = "postgres://postgres:postgres@127.0.0.1:5432/agentmonitor?sslmode=disable"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
	defaultInfluxURL   = "http://127.0.0.1:8086"
)

// config is what the environment says.
type config struct {
	root, data  string // module root, state directory (.data)
	redisURL    string
	databaseURL string
	influxURL   string
	redisPass   string // REDIS_PASSWORD, when the URL has none
	// redisCluster is REDIS_CLUSTER: the cluster client for a URL with one seed address.
	redisCluster bool
	adminPass    string
	gatewayAddr  string
	// gatewayOps is the gateway's private ops listener (its OPS_ADDR), "" for none.
	gatewayOps string
	opsAddrs   map[string]string // worker -> OPS_ADDR
	ready      time.Duration
	influxdBin string

	testRedisURL    string
	testDatabaseURL string
	goTestFlags     []string
	clusterPorts    []int
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func loadConfig() (config, error) {
	root, err := stack.ModuleRoot()
	if err != nil {
		return config{}, err
	}
	c := config{
		root:        root,
		data:        env("AGENTMONITOR_DATA", filepath.Join(root, ".data")),
		redisURL:    env("REDIS_URL", defaultRedisURL),
		databaseURL: env("DATABASE_URL", defaultDatabaseURL),
		influxURL:   strings.TrimSuffix(env("INFLUXDB_URL", defaultInfluxURL), "/"),
		redisPass:   os.Getenv("REDIS_PASSWORD"),
		adminPass:   os.Getenv("ADMIN_PASSWORD"),
		gatewayAddr: env("GATEWAY_ADDR", ":8080"),
		gatewayOps:  os.Getenv("GATEWAY_OPS_ADDR"),
		opsAddrs: map[string]string{
			"influx-writer": env("INFLUX_WRITER_OPS_ADDR", ":9101"),
			"pg-sync":       env("PG_SYNC_OPS_ADDR", ":9102"),
			"alerter":       env("ALERTER_OPS_ADDR", ":9103"),
			"rollup":        env("ROLLUP_OPS_ADDR", ":9104"),
		},
		influxdBin:      os.Getenv("INFLUXD_BIN"),
		testRedisURL:    env("TEST_REDIS_URL", defaultRedisURL),
		testDatabaseURL: env("TEST_DATABASE_URL", defaultDatabaseURL),
		goTestFlags:     strings.Fields(os.Getenv("GO_TEST_FLAGS")),
	}
	if v := os.Getenv("REDIS_CLUSTER"); v != "" {
		if c.redisCluster, err = strconv.ParseBool(v); err != nil {
			return c, fmt.Errorf("REDIS_CLUSTER %q: want 1 or 0", v)
		}
	}
	if c.clusterPorts, err = parsePorts(env("REDIS_CLUSTER_PORTS", "7000,7001,7002,7003,7004,7005")); err != nil {
		return c, err
	}
	secs, err := strconv.Atoi(env("READY_TIMEOUT", "90"))
	if err != nil || secs <= 0 {
		return c, fmt.Errorf("READY_TIMEOUT %q: want a positive number of seconds", os.Getenv("READY_TIMEOUT"))
	}
	c.ready = time.Duration(secs) * time.Second
	return c, nil
}

func run(ctx context.Context, args []string) error {
	cmd := "up"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	d := newDev(cfg)
	switch cmd {
	case "up":
		return d.up(ctx)
	case "stores":
		if len(args) > 0 {
			return d.some(ctx, args)
		}
		return d.stores(ctx)
	case "build":
		return d.build(ctx)
	case "down":
		return d.down()
	case "status":
		d.status()
		return nil
	case "logs":
		n := 50
		if len(args) > 0 {
			if n, err = strconv.Atoi(args[0]); err != nil || n < 0 {
				return fmt.Errorf("logs %q: want a number of lines", args[0])
			}
		}
		return d.logs(n)
	case "test":
		return d.test(ctx, args)
	case "cluster":
		if len(args) == 1 && args[0] == "up" {
			return d.clusterUp(ctx)
		}
		if len(args) == 1 && args[0] == "down" {
			return d.clusterDown()
		}
		return fmt.Errorf("usage: devstack cluster up|down")
	case "fuzz":
		each := 10 * time.Minute
		if len(args) > 0 {
			if each, err = time.ParseDuration(args[0]); err != nil || each <= 0 {
				return fmt.Errorf("fuzz %q: want a duration per target, like 10m", args[0])
			}
		}
		return d.fuzz(ctx, each)
	case "faults":
		return d.faults(ctx, args)
	case "-h", "--help", "help":
		fmt.Println("usage: devstack up|down|stores [redis|postgres|influxdb...]|status|build|logs [lines]|test [packages]|fuzz [duration]|faults|cluster up|down")
		return nil
	}
	return fmt.Errorf("unknown command %q (usage: devstack up|down|stores [redis|postgres|influxdb...]|status|build|logs [lines]|test [packages]|fuzz [duration]|faults|cluster up|down)", cmd)
}
