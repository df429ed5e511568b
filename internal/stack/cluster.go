package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterDefaultPorts are the ports of the shared local cluster (go tool task cluster:up, and the
// tests' TEST_REDIS_CLUSTER_URL default): three masters and three replicas.
var ClusterDefaultPorts = []int{7000, 7001, 7002, 7003, 7004, 7005}

// ClusterURL returns the cluster URL of go-redis (and REDIS_URL) for the given seed addresses:
// redis://first?addr=second&addr=...
func ClusterURL(addrs []string) string {
	var b strings.Builder
	b.WriteString("redis://" + addrs[0])
	for i, a := range addrs[1:] {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString("addr=" + a)
	}
	return b.String()
}

// Cluster is a Redis Cluster of redis-server processes on loopback, made with
// redis-cli --cluster create: half the nodes masters, each with one replica. Nodes run with the
// append-only file (appendfsync everysec), noeviction, and a 2 s node timeout so that a killed
// master's replica takes over within seconds.
type Cluster struct {
	nodes []*Redis
}

// ClusterNodeArgs are the redis-server arguments of a cluster node, besides port, dir and log.
// cluster-require-full-coverage no keeps the other masters' slots served while one master's
// replica takes over (with the default, every node answers CLUSTERDOWN meanwhile, so ingest to
// every shard fails, not only to the shards of the dead master).
var ClusterNodeArgs = []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
	"--cluster-node-timeout", "2000", "--cluster-replica-validity-factor", "0",
	"--cluster-require-full-coverage", "no",
	"--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
	"--save", "", "--protected-mode", "no"}

// StartCluster starts a private cluster of 2*masters nodes on free loopback ports, each with its
// data under dir/<port>, owned by the caller (stopped with Stop, killed with the caller). The
// cluster is ready when it returns: every slot served, every replica in sync.
func StartCluster(ctx context.Context, dir string, masters int) (*Cluster, error) {
	if masters < 1 {
		return nil, errors.New("a cluster needs at least one master")
	}
	var lastErr error
	for range 3 { // a free port may be taken before redis-server binds it
		addrs, err := FreeAddrs(2 * masters)
		if err != nil {
			return nil, err
		}
		c := &Cluster{}
		lastErr = nil
		for _, a := range addrs {
			n, err := startNode(ctx, dir, a, false)
			if err != nil {
				lastErr = err
				break
			}
			c.nodes = append(c.nodes, n)
		}
		if lastErr != nil {
			c.Stop()
			if errors.Is(lastErr, ErrExited) {
				continue
			}
			return nil, lastErr
		}
		if err := CreateCluster(ctx, c.Addrs()); err != nil {
			c.Stop()
			return nil, err
		}
		return c, nil
	}
	return nil, lastErr
}

// StartClusterNode starts one detached cluster node on addr with its data under dir/<port>, for a
// cluster that outlives the caller (the dev tool's cluster:up); the node writes its pid file there.
func StartClusterNode(ctx context.Context, dir, addr string) (*Redis, error) {
	return startNode(ctx, dir, addr, true)
}

func startNode(ctx context.Context, dir, addr string, detach bool) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found on PATH: %w", err)
	}
	_, port, _ := strings.Cut(addr, ":")
	ndir := filepath.Join(dir, port)
	if err := os.MkdirAll(ndir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cluster node dir: %w", err)
	}
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--dir", ndir,
		"--daemonize", "no", "--logfile", "", "--pidfile", filepath.Join(ndir, "redis.pid")}, ClusterNodeArgs...)
	r := &Redis{addr: addr, dir: ndir}
	r.proc = &Process{spec: Spec{
		Name:         "redis-server " + addr,
		Path:         bin,
		Args:         args,
		Env:          os.Environ(),
		LogPath:      filepath.Join(ndir, "redis.log"),
		Ready:        r.ping,
		ReadyTimeout: time.Minute,
		Detach:       detach,
	}}
	if err := r.proc.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// CreateCluster joins the nodes at addrs into one cluster with one replica per master
// (redis-cli --cluster create), unless they already form a healthy one, and waits until it is
// ready (WaitCluster).
func CreateCluster(ctx context.Context, addrs []string) error {
	if len(addrs) < 2 || len(addrs)%2 != 0 {
		return fmt.Errorf("a cluster with one replica per master needs an even number of nodes, got %d", len(addrs))
	}
	if ClusterHealthy(ctx, addrs) == nil {
		return nil
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return fmt.Errorf("redis-cli not found on PATH (Debian package redis-tools): %w", err)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	return WaitCluster(ctx, addrs, time.Minute)
}

// WaitCluster waits until ClusterHealthy holds for addrs, at most d.
func WaitCluster(ctx context.Context, addrs []string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		err := ClusterHealthy(ctx, addrs)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster at %s not ready: %w", strings.Join(addrs, ","), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ClusterHealthy reports nil when every node at addrs answers, sees cluster_state:ok and every
// master has its replicas connected.
func ClusterHealthy(ctx context.Context, addrs []string) error {
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a, MaxRetries: -1, DialTimeout: time.Second})
		info, err := c.ClusterInfo(ctx).Result()
		var repl string
		if err == nil {
			repl, err = c.Info(ctx, "replication").Result()
		}
		c.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", a, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state not ok", a)
		}
		if strings.Contains(repl, "role:master") && strings.Contains(repl, "connected_slaves:0") {
			return fmt.Errorf("%s: master without a connected replica", a)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("%s: replica not in sync", a)
		}
	}
	return nil
}

// Addrs returns the nodes' addresses, in start order.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.addr
	}
	return out
}

// URL returns REDIS_URL's cluster form for every node.
func (c *Cluster) URL() string { return ClusterURL(c.Addrs()) }

// Node returns the node at addr, nil if none.
func (c *Cluster) Node(addr string) *Redis {
	for _, n := range c.nodes {
		if n.addr == addr {
			return n
		}
	}
	return nil
}

// MasterOf returns the address of the master serving key's slot now.
func (c *Cluster) MasterOf(ctx context.Context, key string) (string, error) {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	slot, err := cc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", err
	}
	shards, err := cc.ClusterShards(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if r.Start > slot || slot > r.End {
				continue
			}
			for _, n := range sh.Nodes {
				if n.Role == "master" && n.Health == "online" {
					return net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10)), nil
				}
			}
		}
	}
	return "", fmt.Errorf("no master serves slot %d", slot)
}

// Stop stops every node (SIGTERM) and waits for them.
func (c *Cluster) Stop() {
	for _, n := range c.nodes {
		if n.proc.Running() {
			_ = n.Stop()
		}
	}
}

// PortList turns ports into loopback addresses.
func PortList(ports []int) []string {
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return out
}
