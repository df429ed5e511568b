package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// Settings of --scale.
const (
	scaleBatchSize = 50 // STREAM_BATCH_SIZE of the writers: small, so that the write delay dominates
	scaleGroup     = "influx-writer"
	scaleMasters   = 3 // the cluster: 3 masters, 3 replicas
)

// scaleWriterCopies are the influx-writer copies whose drain rates --scale compares.
var scaleWriterCopies = []int{1, 2, 4}

// scaleResult is what --scale measured.
type scaleResult struct {
	ProxyDelayMS float64        `json:"proxy_delay_ms"`
	BatchSize    int            `json:"stream_batch_size"`
	Drain        []drainRun     `json:"drain"`
	Gateway      []scaleGateway `json:"gateway_accepted"`
}

// drainRun is the drain of a preloaded backlog by some influx-writer copies.
type drainRun struct {
	Writers     int     `json:"writers"`
	Entries     int64   `json:"entries"`
	Seconds     float64 `json:"seconds"`
	EntriesPerS float64 `json:"entries_per_s"`
	Speedup     float64 `json:"speedup"` // over one copy
	Error       string  `json:"error,omitempty"`
}

// scaleGateway is the gateway's saturated rate on one kind of Redis.
type scaleGateway struct {
	Redis        string             `json:"redis"`
	RequestsPerS float64            `json:"requests_per_s"`
	P50          float64            `json:"p50_ms"`
	P99          float64            `json:"p99_ms"`
	Non2xx       map[string]int64   `json:"non_2xx,omitempty"`
	Cores        map[string]float64 `json:"cores,omitempty"`
	Error        string             `json:"error,omitempty"`
}

// delayProxy forwards everything to target and holds every write (POST /write, /api/v2/write)
// for delay first: an InfluxDB with a higher write latency.
func delayProxy(ctx context.Context, target string, delay time.Duration) (string, func(), error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}
	rp.ErrorLog = log.New(io.Discard, "", 0) // a writer stopped mid-request is expected here
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("delaying proxy: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && (r.URL.Path == "/write" || r.URL.Path == "/api/v2/write") {
			time.Sleep(delay)
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// runScale is --scale: the drain rate of 1, 2 and 4 influx-writer copies behind a proxy that
// adds --scale-delay to every write, and the gateway's saturated rate on the bench's Redis vs a
// private 6-node Redis Cluster.
func (b *bench) runScale(ctx context.Context, dbURL string, stdout io.Writer) (int, error) {
	c := b.cfg
	res := &scaleResult{ProxyDelayMS: float64(c.scaleDelay) / float64(time.Millisecond), BatchSize: scaleBatchSize}
	b.res.Scale = res
	fmt.Fprintln(b.out, "==> building gateway and influx-writer")
	bin := filepath.Join(b.work, "bin")
	if err := stack.Build(ctx, bin, b.out, "gateway", "influx-writer"); err != nil {
		return 1, err
	}
	if err := b.startInfluxd(); err != nil {
		return 1, err
	}
	defer b.stop()
	proxy, closeProxy, err := delayProxy(ctx, b.influxd.URL(), c.scaleDelay)
	if err != nil {
		return 1, err
	}
	defer closeProxy()
	b.sys = b.system(bin, dbURL, b.redis.URL(), b.influxd.URL())
	gw, err := b.sys.StartGateway(ctx, "gateway")
	if err != nil {
		return 1, err
	}
	b.gateway, b.procs["gateway"] = gw.URL, gw.Process
	load := func(label string) config {
		x := c
		x.mode, x.label, x.round, x.quiet = "load", label, 1, true
		x.gateway, x.adminPass, x.target = b.gateway, b.admin, "gateway"
		x.influxURL, x.influxDB = b.influxd.URL(), benchInfluxDB
		return x
	}

	fmt.Fprintf(b.out, "==> drain of %d preloaded requests by 1, 2, 4 influx-writer copies, InfluxDB writes delayed %s by a proxy, STREAM_BATCH_SIZE=%d\n",
		c.scaleBacklog, c.scaleDelay, scaleBatchSize)
	for _, n := range scaleWriterCopies {
		d := b.drainWith(ctx, n, proxy, load("scale-preload"))
		if len(res.Drain) > 0 && res.Drain[0].EntriesPerS > 0 {
			d.Speedup = d.EntriesPerS / res.Drain[0].EntriesPerS
		} else if d.EntriesPerS > 0 {
			d.Speedup = 1
		}
		res.Drain = append(res.Drain, d)
		fmt.Fprintf(b.out, "  %d copies: %d entries in %.2f s: %.0f entries/s (×%.2f) %s\n", n, d.Entries, d.Seconds, d.EntriesPerS, d.Speedup, d.Error)
		if ctx.Err() != nil {
			return 1, ctx.Err()
		}
	}

	fmt.Fprintln(b.out, "==> gateway saturated on the bench's single Redis, then on a private 6-node Redis Cluster")
	single := b.saturate(ctx, load("scale-single-redis"), "single redis-server", map[string]*stack.Process{"gateway": gw.Process, "redis-server": b.redis.Process()})
	res.Gateway = append(res.Gateway, single)
	res.Gateway = append(res.Gateway, b.onCluster(ctx, bin, dbURL, load)...)

	printScale(stdout, res)
	if err := b.writeResult(stdout); err != nil {
		return 1, err
	}
	return 0, nil
}

// drainWith starts n influx-writer copies writing through proxy, pauses them, preloads a backlog
// through the gateway, lets them go and times the drain of group influx-writer.
func (b *bench) drainWith(ctx context.Context, n int, proxy string, x config) drainRun {
	d := drainRun{Writers: n}
	var apps []*stack.App
	defer func() {
		for _, a := range apps {
			_ = syscall.Kill(a.Pid(), syscall.SIGCONT)
			_ = a.Stop(20 * time.Second)
		}
	}()
	for i := range n {
		a, err := b.sys.StartWorker(ctx, "influx-writer", fmt.Sprintf("scale-%d-%d", n, i),
			"INFLUXDB_URL="+proxy, "STREAM_BATCH_SIZE="+strconv.Itoa(scaleBatchSize))
		if err != nil {
			d.Error = err.Error()
			return d
		}
		apps = append(apps, a)
	}
	for _, a := range apps {
		_ = syscall.Kill(a.Pid(), syscall.SIGSTOP)
	}
	x.maxRequests, x.duration, x.concurrency = b.cfg.scaleBacklog, 3*time.Minute, 32
	if _, err := runMode(ctx, x, b.logger); err != nil {
		d.Error = err.Error()
		return d
	}
	keys := stream.StreamKeys(b.prefix, benchShards)
	for _, k := range keys {
		groups, err := b.rdb.XInfoGroups(ctx, k).Result()
		if err != nil {
			continue
		}
		for _, g := range groups {
			if g.Name == scaleGroup {
				d.Entries += g.Lag + g.Pending
			}
		}
	}
	t0 := time.Now()
	for _, a := range apps {
		_ = syscall.Kill(a.Pid(), syscall.SIGCONT)
	}
	deadline := t0.Add(5 * time.Minute)
	for {
		ok, why, err := stack.Drained(ctx, b.rdb, scaleGroup, keys...)
		if ok {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			d.Error = fmt.Sprintf("not drained within 5 min: %s %v", why, err)
			return d
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.Seconds = time.Since(t0).Seconds()
	if d.Seconds > 0 {
		d.EntriesPerS = float64(d.Entries) / d.Seconds
	}
	return d
}

// saturate runs x (the gateway at saturation) and reads the cores procs used meanwhile.
func (b *bench) saturate(ctx context.Context, x config, name string, procs map[string]*stack.Process) scaleGateway {
	g := scaleGateway{Redis: name, Cores: map[string]float64{}}
	read := func() map[string]float64 {
		m := map[string]float64{"machine": machineCPU()}
		for n, p := range procs {
			m[n] = procCPU(p.Pid())
		}
		return m
	}
	var before, after map[string]float64
	var t0, t1 time.Time
	x.onAgents = func([]string) { before, t0 = read(), time.Now() }
	x.onSent = func() { after, t1 = read(), time.Now() }
	rep, err := runMode(ctx, x, b.logger)
	if err != nil {
		g.Error = err.Error()
		return g
	}
	g.RequestsPerS, g.P50, g.P99, g.Non2xx = rep.RequestsPerS, rep.LatencyMS.P50, rep.LatencyMS.P99, rep.Non2xx
	if wall := t1.Sub(t0).Seconds(); before != nil && after != nil && wall > 0 {
		for n, v := range cpuDeltas(before, after) {
			g.Cores[n] = v / wall
		}
	}
	fmt.Fprintf(b.out, "  %s\n", rep.human())
	return g
}

// onCluster starts a private Redis Cluster and saturates a gateway on it twice: answering as soon
// as the master has the batch (REDIS_WAIT_REPLICAS=0), then only after WAIT 1 confirmed a replica
// has it (REDIS_WAIT_REPLICAS=1), which is what WAIT costs.
func (b *bench) onCluster(ctx context.Context, bin, dbURL string, load func(name string) config) []scaleGateway {
	const what = "redis cluster (3 masters, 3 replicas)"
	fail := func(err error) []scaleGateway {
		fmt.Fprintln(b.out, "  cluster:", err)
		return []scaleGateway{{Redis: what, Error: err.Error()}}
	}
	cl, err := stack.StartCluster(ctx, filepath.Join(b.work, "cluster"), scaleMasters)
	if err != nil {
		return fail(fmt.Errorf("starting the cluster: %w", err))
	}
	defer cl.Stop()
	var out []scaleGateway
	for _, wait := range []int{0, 1} {
		name := fmt.Sprintf("%s, REDIS_WAIT_REPLICAS=%d", what, wait)
		g := b.onClusterWith(ctx, cl, bin, dbURL, load(fmt.Sprintf("scale-cluster-wait%d", wait)), name, wait)
		out = append(out, g)
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

// onClusterWith starts a gateway on cl with REDIS_WAIT_REPLICAS=wait and saturates it.
func (b *bench) onClusterWith(ctx context.Context, cl *stack.Cluster, bin, dbURL string, x config, name string, wait int) scaleGateway {
	sys := b.system(bin, dbURL, cl.URL(), b.influxd.URL())
	defer func() { _ = sys.Stop(20 * time.Second) }()
	gw, err := sys.StartGateway(ctx, fmt.Sprintf("gateway-cluster-wait%d", wait), fmt.Sprintf("REDIS_WAIT_REPLICAS=%d", wait))
	if err != nil {
		fmt.Fprintln(b.out, "  cluster:", err)
		return scaleGateway{Redis: name, Error: fmt.Errorf("starting the gateway on the cluster: %w", err).Error()}
	}
	procs := map[string]*stack.Process{"gateway": gw.Process}
	for i, a := range cl.Addrs() {
		procs[fmt.Sprintf("redis-server-%d", i)] = cl.Node(a).Process()
	}
	x.gateway = gw.URL
	g := b.saturate(ctx, x, name, procs)
	if g.Error == "" && g.RequestsPerS == 0 {
		g.Error = errors.New("no request accepted").Error()
	}
	return g
}

// printScale prints --scale's tables.
func printScale(w io.Writer, r *scaleResult) {
	fmt.Fprintf(w, "\nDrain rate of influx-writer copies, InfluxDB writes delayed %.0f ms, STREAM_BATCH_SIZE=%d:\n", r.ProxyDelayMS, r.BatchSize)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "copies\tentries\tseconds\tentries/s\tspeedup\t")
	for _, d := range r.Drain {
		fmt.Fprintf(tw, "%d\t%d\t%.2f\t%.0f\t%.2f\t%s\n", d.Writers, d.Entries, d.Seconds, d.EntriesPerS, d.Speedup, d.Error)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nGateway at saturation (6-point requests):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "redis\treq/s\tp50 ms\tp99 ms\tgateway cores\tredis cores\t")
	for _, g := range r.Gateway {
		if g.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t%s\n", g.Redis, g.Error)
			continue
		}
		var redisCores float64 // one server, or every node of a cluster
		for name, c := range g.Cores {
			if strings.HasPrefix(name, "redis-server") {
				redisCores += c
			}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", g.Redis, g.RequestsPerS, g.P50, g.P99, g.Cores["gateway"], redisCores)
	}
	tw.Flush()
}
