package stack_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// The test binary doubles as the process the tests start: with STACK_TEST_MODE set it serves
// /readyz on STACK_TEST_ADDR ("serve"), the same ignoring SIGTERM ("stubborn"), or exits at once
// ("exit").
func TestMain(m *testing.M) {
	switch os.Getenv("STACK_TEST_MODE") {
	case "":
		os.Exit(m.Run())
	case "exit":
		os.Exit(7)
	case "stubborn", "serve":
		http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {})
		srv := &http.Server{Addr: os.Getenv("STACK_TEST_ADDR")}
		if os.Getenv("STACK_TEST_MODE") == "stubborn" {
			// Not signal.Notify: it would turn SIGTERM back on.
			signal.Ignore(syscall.SIGTERM)
		} else {
			ch := make(chan os.Signal, 1)
			signal.Notify(ch, syscall.SIGTERM)
			go func() {
				<-ch
				srv.Close()
			}()
		}
		_ = srv.ListenAndServe()
		os.Exit(0)
	}
}

func helperSpec(t *testing.T, mode string) (stack.Spec, string) {
	t.Helper()
	addrs, err := stack.FreeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + addrs[0]
	return stack.Spec{
		Name:         "helper-" + mode,
		Path:         os.Args[0],
		Env:          append(os.Environ(), "STACK_TEST_MODE="+mode, "STACK_TEST_ADDR="+addrs[0]),
		LogPath:      filepath.Join(t.TempDir(), mode+".log"),
		Ready:        stack.HTTPReady(url+"/readyz", http.StatusOK),
		ReadyTimeout: 20 * time.Second,
	}, url
}

// A process can be started, killed, started again, restarted and stopped, and answers between.
func TestProcessLifecycle(t *testing.T) {
	ctx := t.Context()
	spec, url := helperSpec(t, "serve")
	p, err := stack.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	ready := stack.HTTPReady(url+"/readyz", http.StatusOK)
	check := func(step string, wantRunning bool) {
		t.Helper()
		if got := p.Running(); got != wantRunning {
			t.Fatalf("after %s: Running() = %v, want %v", step, got, wantRunning)
		}
		if err := ready(ctx); (err == nil) != wantRunning {
			t.Fatalf("after %s: /readyz error %v, want answering %v", step, err, wantRunning)
		}
	}
	check("Start", true)
	pid := p.Pid()
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	check("Kill", false)
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start after Kill: %v", err)
	}
	check("Start after Kill", true)
	if p.Pid() == pid {
		t.Errorf("Pid after a new start = %d, the old one", p.Pid())
	}
	if err := p.Start(ctx); err == nil {
		t.Error("Start of a running process = nil error, want one")
	}
	if err := p.Restart(ctx, 10*time.Second); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	check("Restart", true)
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop = %v, want a graceful exit", err)
	}
	check("Stop", false)
	log, _ := os.ReadFile(spec.LogPath)
	if n := strings.Count(string(log), "==== helper-serve start"); n != 3 {
		t.Errorf("log holds %d start markers, want 3 (one per start):\n%s", n, log)
	}
}

// A process with Nice runs every thread that much nicer than its starter, and Stop still reaches it (nice(1)
// execs the binary in the same process).
func TestNice(t *testing.T) {
	spec, _ := helperSpec(t, "serve")
	spec.Nice = 7
	p, err := stack.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = p.Kill() })
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", p.Pid()))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v %v", p.Pid(), tasks, err)
	}
	// nice(1) adds to the caller's niceness.
	self, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := min(20-self+7, 19)
	for _, task := range tasks {
		tid, _ := strconv.Atoi(filepath.Base(task))
		// getpriority answers 20 - nice for a thread (the raw system call, not glibc's).
		prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		if err != nil {
			t.Fatalf("getpriority(%d): %v", tid, err)
		}
		if nice := 20 - prio; nice != want {
			t.Errorf("thread %d of the process runs at nice %d, want %d", tid, nice, want)
		}
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.Pid())); exe != os.Args[0] {
		t.Errorf("process %d runs %q, want %q (nice should have exec'd it)", p.Pid(), exe, os.Args[0])
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop = %v, want a graceful exit", err)
	}
}

// A process that ignores SIGTERM is killed after the grace period, and Stop says so.
func TestStopKillsAfterGrace(t *testing.T) {
	spec, _ := helperSpec(t, "stubborn")
	p, err := stack.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	start := time.Now()
	if err := p.Stop(300 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop of a process ignoring SIGTERM = %v, want a killed error", err)
	}
	if p.Running() || time.Since(start) > 10*time.Second {
		t.Errorf("after Stop: Running %v after %s, want stopped soon after the grace", p.Running(), time.Since(start))
	}
}

// A process that exits before it is ready fails Start with ErrExited, not a timeout.
func TestStartExited(t *testing.T) {
	spec, _ := helperSpec(t, "exit")
	start := time.Now()
	_, err := stack.Start(t.Context(), spec)
	if !errors.Is(err, stack.ErrExited) {
		t.Fatalf("Start of a process that exits = %v, want ErrExited", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Start took %s to notice the exit", d)
	}
}

// Drained follows lag and pending of the group through XADD, XREADGROUP and XACK.
func TestDrained(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	s1, s2, missing := prefix+"s1", prefix+"s2", prefix+"missing"
	drained := func(group string, streams ...string) bool {
		t.Helper()
		ok, _, err := stack.Drained(ctx, rdb, group, streams...)
		if err != nil {
			t.Fatalf("Drained(%q, %v): %v", group, streams, err)
		}
		return ok
	}
	if !drained("g", missing) {
		t.Error("Drained on a stream that does not exist = false, want true")
	}
	for range 3 {
		for _, s := range []string{s1, s2} {
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: s, Values: map[string]any{"k": "v"}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if drained("g", s1) {
		t.Error("Drained without group g = true, want false")
	}
	if drained("", s1) {
		t.Error(`Drained("") without any group = true, want false`)
	}
	for _, s := range []string{s1, s2} {
		if err := rdb.XGroupCreate(ctx, s, "g", "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if drained("g", s1) {
		t.Error("Drained with 3 undelivered entries = true, want false")
	}
	read, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{s1, ">"}, Count: 100, Block: -1}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if drained("g", s1) {
		t.Error("Drained with 3 pending entries = true, want false")
	}
	for _, m := range read[0].Messages {
		rdb.XAck(ctx, s1, "g", m.ID)
	}
	if !drained("g", s1) {
		t.Error("Drained after reading and acking everything = false, want true")
	}
	if drained("g", s1, s2) {
		t.Error("Drained over s1 and an undelivered s2 = true, want false")
	}
	if !drained("g", s1, missing) {
		t.Error("Drained over a drained s1 and a missing stream = false, want true")
	}
}
