package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/stack"
)

// clusterDir holds the local cluster's nodes, one directory per port.
func (d *dev) clusterDir() string { return filepath.Join(d.cfg.data, "cluster") }

// clusterUp makes sure the local Redis Cluster (three masters, three replicas on the ports of
// REDIS_CLUSTER_PORTS, default 7000-7005) answers and is healthy: nodes that are down are started
// detached (they outlive this command; cluster:down stops them), and nodes that have never formed
// a cluster are joined with redis-cli --cluster create. A node started earlier rejoins from its
// nodes.conf.
func (d *dev) clusterUp(ctx context.Context) error {
	addrs := stack.PortList(d.cfg.clusterPorts)
	for _, a := range addrs {
		if tcpOpen(a) {
			continue
		}
		if _, err := stack.StartClusterNode(ctx, d.clusterDir(), a); err != nil {
			return fmt.Errorf("starting cluster node %s: %w", a, err)
		}
	}
	if err := stack.CreateCluster(ctx, addrs); err != nil {
		if err := stack.WaitCluster(ctx, addrs, 30*time.Second); err != nil {
			return err
		}
	}
	logf("Redis Cluster: ready at %s", stack.ClusterURL(addrs))
	return nil
}

// clusterDown stops the nodes cluster:up started (their pid files under .data/cluster), never a
// node it did not start.
func (d *dev) clusterDown() error {
	for _, p := range d.cfg.clusterPorts {
		file := filepath.Join(d.clusterDir(), strconv.Itoa(p), "redis.pid")
		pid, ok := pidOf(file, "redis-server")
		if !ok {
			continue
		}
		logf("Redis Cluster: stopping node %d (pid %d)", p, pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		for range 100 {
			if syscall.Kill(pid, 0) != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = os.Remove(file)
	}
	return nil
}

// parsePorts reads a comma-separated port list.
func parsePorts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("REDIS_CLUSTER_PORTS %q: want comma-separated ports", s)
		}
		out = append(out, p)
	}
	if len(out) < 2 || len(out)%2 != 0 {
		return nil, fmt.Errorf("REDIS_CLUSTER_PORTS %q: want an even number of ports (masters and their replicas)", s)
	}
	return out, nil
}
