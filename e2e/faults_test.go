package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// metricValue scrapes one sample from a binary's /metrics: the sum of every series of name whose
// labels contain all of labels.
func metricValue(t *testing.T, opsURL, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(opsURL + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", opsURL, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("parsing %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

func TestTwoCopiesOfEachWorkerShareTheLoad(t *testing.T) {
	s := newSystem(t, options{writers: 2, syncs: 2})
	agents := []agent{s.registerAgent("a-1"), s.registerAgent("a-2"), s.registerAgent("a-3"), s.registerAgent("a-4")}
	ledgers := make([]*ledger, len(agents))
	var wg sync.WaitGroup
	start := time.Now().Add(-time.Minute)
	began := time.Now()
	for i, a := range agents {
		ledgers[i] = newLedger()
		wg.Go(func() { s.load(a, 150, start, ledgers[i], nil) })
	}
	wg.Wait()
	t.Logf("posted 4×150 batches in %s", time.Since(began))
	began = time.Now()
	defer func() { t.Logf("all points in InfluxDB after %s", time.Since(began)) }()
	for i, a := range agents {
		if ledgers[i].total() != 900 {
			t.Fatalf("agent %s: %d points acknowledged, want 900 (other answers %v)", a.Name, ledgers[i].total(), ledgers[i].other)
		}
		s.waitAllPoints(t, a.ID, 900, 60*time.Second)
	}
	for _, p := range s.procs {
		if p.ops == "" {
			continue
		}
		group := "influx-writer"
		switch {
		case strings.HasPrefix(p.Name(), "sync"):
			group = "pg-sync"
		case strings.HasPrefix(p.Name(), "alerter"):
			continue
		}
		if n := metricValue(t, p.ops, "agentmonitor_stream_acked_total", `group="`+group+`"`); n == 0 {
			t.Errorf("%s acked %v entries, want a share of the load", p.Name(), n)
		}
	}
}

// hangingInflux proxies to InfluxDB, but once armed it forwards the next write and then never
// answers it: InfluxDB has the points, the writer never learns it, as when a writer dies between
// the write and the ack.
type hangingInflux struct {
	armed     atomic.Bool
	forwarded atomic.Int64
	release   chan struct{}
	srv       *httptest.Server
}

func newHangingInflux(t *testing.T, target string) *hangingInflux {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	h := &hangingInflux{release: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(u)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/write" || !h.armed.Load() {
			proxy.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		h.forwarded.Add(1)
		<-h.release
	}))
	t.Cleanup(func() { close(h.release); h.srv.CloseClientConnections(); h.srv.Close() })
	return h
}

func TestKilledWriterMidBatchLosesNothingAndDuplicatesNothing(t *testing.T) {
	s := newSystem(t, options{syncs: 1})
	hang := newHangingInflux(t, s.influxDB.URL)
	hung := s.startWorker("influx-writer", "writer-hung", "INFLUXDB_URL="+hang.srv.URL)
	hang.armed.Store(true)

	a := s.registerAgent("victim")
	l := newLedger()
	start := time.Now().Add(-time.Minute)
	s.load(a, 40, start, l, nil)
	testenv.Eventually(t, 20*time.Second, func() string {
		if hang.forwarded.Load() == 0 {
			return "the hung writer has not written a batch yet"
		}
		return ""
	})
	// The hung writer holds unacked entries whose points are already in InfluxDB.
	pending := s.pendingOf("influx-writer", "writer-hung")
	if pending == 0 {
		t.Fatal("writer-hung has no pending entries: the test did not catch it mid-batch")
	}

	s.startWorker("influx-writer", "writer-ok")
	s.load(a, 40, start.Add(40*time.Millisecond), l, nil)
	hung.kill(t)

	if l.total() != 480 {
		t.Fatalf("%d points acknowledged, want 480 (other answers %v)", l.total(), l.other)
	}
	// The live writer takes over the dead one's entries once they are idle, and writes them again.
	ok := s.procs[len(s.procs)-1]
	testenv.Eventually(t, 30*time.Second, func() string {
		if got := metricValue(t, ok.ops, "agentmonitor_stream_reclaimed_total"); got == 0 {
			return "writer-ok has reclaimed nothing from the dead writer yet"
		}
		if n := s.pendingOf("influx-writer", "writer-hung"); n != 0 {
			return fmt.Sprintf("writer-hung still owns %d pending entries", n)
		}
		return ""
	})
	// Exactly the acknowledged points: the hung writer's batch was written twice (once through the
	// proxy, once after the reclaim) and must not count twice.
	s.waitAllPoints(t, a.ID, 480, 60*time.Second)
}

// pendingOf counts the entries of the metrics streams that consumer of group holds unacked.
func (s *system) pendingOf(group, consumer string) int {
	s.t.Helper()
	n := 0
	for _, key := range stream.StreamKeys(s.prefix, 2) {
		res, err := s.rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: key, Group: group, Start: "-", End: "+", Count: 10000}).Result()
		if err != nil {
			s.t.Fatalf("XPENDING %s: %v", key, err)
		}
		for _, p := range res {
			if p.Consumer == consumer {
				n++
			}
		}
	}
	return n
}

func TestUnwritableEntryIsDeadLetteredOthersFlow(t *testing.T) {
	s := newSystem(t, options{writers: 1, syncs: 1})
	a := s.registerAgent("poisoned")
	if code, b, _ := s.do("POST", "/api/v1/agents/"+a.ID+"/metrics", "Bearer "+a.APIKey,
		[]byte(`{"points":[{"measurement":"temp","fields":{"celsius":21.5}}]}`)); code != http.StatusNoContent {
		t.Fatalf("POST = %d %s", code, b)
	}
	s.waitAllPoints(t, a.ID, 1, 30*time.Second)

	// An entry InfluxDB will always refuse: the same field as a string (field type conflict). Only a
	// buggy or hostile publisher could append it; the writer must not wedge on it.
	pub, err := stream.NewPublisher(s.rdb, stream.PublisherConfig{Prefix: s.prefix, Shards: 2}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	poison := fmt.Sprintf("temp,agent=%s celsius=\"hot\" %d\n", a.ID, time.Now().UnixNano())
	if err := pub.Publish(context.Background(), a.ID, []byte(poison), map[string]string{
		stream.MetaAgent: a.ID, stream.MetaReceivedAt: strconv.FormatInt(time.Now().UnixNano(), 10), stream.MetaPoints: "1"}); err != nil {
		t.Fatal(err)
	}
	// Garbage that is not even a Watermill message.
	if err := s.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream.StreamKeys(s.prefix, 2)[0], Values: map[string]any{"junk": "not a watermill message"}}).Err(); err != nil {
		t.Fatal(err)
	}

	l := newLedger()
	s.load(a, 20, time.Now().Add(-time.Minute), l, nil)
	s.waitAllPoints(t, a.ID, 1+l.total(), 30*time.Second)

	dead := stream.DeadLetterKey(s.prefix)
	testenv.Eventually(t, 20*time.Second, func() string {
		entries, err := s.rdb.XRange(context.Background(), dead, "-", "+").Result()
		if err != nil {
			return err.Error()
		}
		// The garbage is undecodable for every group; only InfluxDB refuses the type conflict.
		want := map[string]int{"influx-writer/conflict": 1, "influx-writer/undecodable": 1, "pg-sync/undecodable": 1}
		got := map[string]int{}
		for _, e := range entries {
			reason := fmt.Sprint(e.Values["reason"])
			kind := "other: " + reason
			switch {
			case strings.Contains(reason, "field type conflict"):
				kind = "conflict"
			case strings.Contains(reason, "undecodable"):
				kind = "undecodable"
			}
			got[fmt.Sprint(e.Values["group"])+"/"+kind]++
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Sprintf("dead-letter stream holds %v, want %v", got, want)
		}
		return ""
	})
}

func TestInfluxDBOutageLosesNothing(t *testing.T) {
	srv := testenv.PrivateInfluxd(t)
	s := newSystem(t, options{server: srv, writers: 1, syncs: 1})
	a := s.registerAgent("patient")
	l := newLedger()
	start := time.Now().Add(-time.Minute)
	s.load(a, 10, start, l, nil)
	s.waitAllPoints(t, a.ID, 60, 30*time.Second)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	s.load(a, 50, start.Add(10*time.Millisecond), l, nil)
	if l.total() != 360 {
		t.Fatalf("%d points acknowledged with InfluxDB down, want 360 (other answers %v)", l.total(), l.other)
	}
	time.Sleep(3 * time.Second) // several failed attempts and backoffs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	s.waitAllPoints(t, a.ID, 360, 60*time.Second)
	if n, _ := s.rdb.XLen(context.Background(), stream.DeadLetterKey(s.prefix)).Result(); n != 0 {
		t.Errorf("dead-letter stream holds %d entries after an outage, want 0", n)
	}
}
