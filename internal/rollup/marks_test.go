package rollup_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/agentmonitor/agentmonitor/internal/rollup"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
	"github.com/redis/go-redis/v9"
)

func TestWindowAlignment(t *testing.T) {
	ts := time.Date(2026, 11, 29, 23, 59, 59, 999, time.UTC)
	tests := []struct {
		tier      int
		wantStart time.Time
	}{
		{0, time.Date(2026, 11, 29, 23, 59, 0, 0, time.UTC)},
		{1, time.Date(2026, 11, 29, 23, 55, 0, 0, time.UTC)},
		{2, time.Date(2026, 11, 29, 23, 0, 0, 0, time.UTC)},
		{3, time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		w := rollup.WindowAt(tt.tier, "cpu", ts)
		if !w.Start.Equal(tt.wantStart) {
			t.Errorf("WindowAt(%d, %s).Start = %s, want %s", tt.tier, ts, w.Start, tt.wantStart)
		}
		if p, ok := w.Parent(); ok != (tt.tier < 3) || ok && !p.Start.Equal(tests[tt.tier+1].wantStart) {
			t.Errorf("WindowAt(%d).Parent() = %v, %v; want the next tier's window", tt.tier, p, ok)
		}
	}
	before := rollup.WindowAt(0, "cpu", time.Unix(-1, 0))
	if want := time.Unix(-60, 0).UTC(); !before.Start.Equal(want) {
		t.Errorf("WindowAt(1m, 1969-12-31T23:59:59Z).Start = %s, want %s", before.Start, want)
	}
}

// The store tests run on Redis Cluster too, where the rollup sets (several in one script or MULTI)
// must share a slot.
func TestStoreLeases(t *testing.T) { testenv.OnBothRedis(t, testStoreLeases) }

func testStoreLeases(t *testing.T, rdb redis.UniversalClient, prefix string) {
	s := rollup.NewStore(rdb, prefix)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	w := rollup.WindowAt(0, `we|rd "name"`, now.Add(-time.Hour))
	future := rollup.WindowAt(0, "cpu", now)
	if err := s.Mark(ctx, map[rollup.Window]time.Time{w: w.End(), future: future.End().Add(time.Hour)}); err != nil {
		t.Fatalf("Mark: %v", err)
	}
	claim := func(at time.Time, lease time.Duration) []rollup.Lease {
		t.Helper()
		ls, err := s.Claim(ctx, 0, at, lease, 10)
		if err != nil {
			t.Fatalf("Claim: %v", err)
		}
		return ls
	}
	// Only the closed window is ready; it comes back intact.
	ls := claim(now, time.Minute)
	if len(ls) != 1 || ls[0].Window != w {
		t.Fatalf("Claim = %+v, want only %v", ls, w)
	}
	// In flight, it is not claimed again, even when marked again meanwhile.
	if err := s.Mark(ctx, map[rollup.Window]time.Time{w: w.End()}); err != nil {
		t.Fatal(err)
	}
	if again := claim(now, time.Minute); len(again) != 0 {
		t.Fatalf("Claim while in flight = %+v, want nothing", again)
	}
	// Releasing it keeps the new mark, and marks the parent.
	held, err := s.Done(ctx, ls[0], now, now)
	if err != nil || !held {
		t.Fatalf("Done = %v, %v; want true", held, err)
	}
	stale := claim(now, time.Minute)
	if len(stale) != 1 || stale[0].Window != w {
		t.Fatalf("Claim after release = %+v, want %v again (marked while in flight)", stale, w)
	}
	parent, _ := w.Parent()
	if ps, err := s.Claim(ctx, 1, now, time.Minute, 10); err != nil || len(ps) != 1 || ps[0].Window != parent {
		t.Fatalf("Claim(5m) = %+v, %v; want the parent %v", ps, err, parent)
	}
	// A lease not released in time expires: the window is dirty again for the next claimer, and
	// the late holder's release does not drop the new holder's lease but marks the window again.
	later := now.Add(2 * time.Minute)
	taken := claim(later, time.Minute)
	if len(taken) != 1 || taken[0].Window != w {
		t.Fatalf("Claim after expiry = %+v, want %v", taken, w)
	}
	if held, err := s.Done(ctx, stale[0], later, later); err != nil || held {
		t.Fatalf("Done with an expired lease = %v, %v; want false", held, err)
	}
	if held, err := s.Done(ctx, taken[0], later, later); err != nil || !held {
		t.Fatalf("Done by the new holder = %v, %v; want true", held, err)
	}
	lost := claim(later, time.Minute)
	if len(lost) != 1 {
		t.Fatalf("Claim after a lost lease = %+v, want the window again", lost)
	}
	// Retry puts the window back, ready only after the delay.
	if err := s.Retry(ctx, lost[0], later.Add(time.Minute)); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	if got := claim(later.Add(30*time.Second), time.Minute); len(got) != 0 {
		t.Fatalf("Claim before the retry time = %+v, want nothing", got)
	}
	if got := claim(later.Add(61*time.Second), time.Minute); len(got) != 1 {
		t.Fatalf("Claim after the retry time = %+v, want the window", got)
	}
}

func TestMetricsShowWaitingWindows(t *testing.T) {
	testenv.OnBothRedis(t, testMetricsShowWaitingWindows)
}

func testMetricsShowWaitingWindows(t *testing.T, rdb redis.UniversalClient, prefix string) {
	s := rollup.NewStore(rdb, prefix)
	ctx := context.Background()
	now := time.Now()
	marks := map[rollup.Window]time.Time{}
	for i := range 3 {
		w := rollup.WindowAt(0, "cpu", now.Add(-time.Duration(10+i)*time.Minute))
		marks[w] = w.End()
	}
	open := rollup.WindowAt(1, "cpu", now)
	marks[open] = open.End()
	if err := s.Mark(ctx, marks); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, 0, now, time.Minute, 1); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := rollup.NewMetrics(s, logger(t)).Register(reg); err != nil {
		t.Fatalf("Register: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	gauge := func(name, tier string) float64 {
		t.Helper()
		i := slices.IndexFunc(mfs, func(m *dto.MetricFamily) bool { return m.GetName() == name })
		if i < 0 {
			t.Fatalf("%s not exported", name)
		}
		for _, m := range mfs[i].GetMetric() {
			if m.GetLabel()[0].GetValue() == tier {
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("%s{tier=%q} not exported", name, tier)
		return 0
	}
	wants := []struct {
		name string
		want map[string]float64
	}{
		{"agentmonitor_rollup_dirty_windows", map[string]float64{"1m": 2, "5m": 1, "1h": 0, "1d": 0}},
		{"agentmonitor_rollup_ready_windows", map[string]float64{"1m": 2, "5m": 0, "1h": 0, "1d": 0}},
		{"agentmonitor_rollup_inflight_windows", map[string]float64{"1m": 1, "5m": 0, "1h": 0, "1d": 0}},
	}
	for _, w := range wants {
		for tier, want := range w.want {
			if got := gauge(w.name, tier); got != want {
				t.Errorf("%s{tier=%q} = %v, want %v", w.name, tier, got, want)
			}
		}
	}
	// The oldest 1m window (12 minutes ago) was claimed; the oldest still waiting is the one of
	// 11 minutes ago, ready (at its end) about 10 minutes ago.
	i := slices.IndexFunc(mfs, func(m *dto.MetricFamily) bool { return m.GetName() == "agentmonitor_rollup_oldest_ready_age_seconds" })
	for _, m := range mfs[i].GetMetric() {
		age := m.GetGauge().GetValue()
		switch m.GetLabel()[0].GetValue() {
		case "1m":
			// (up to a few seconds more: the gauge reads the clock after the marks.)
			if age < 9*60 || age > 11*60+5 {
				t.Errorf("oldest ready age of 1m = %.0fs, want about 600s", age)
			}
		default:
			if age != 0 {
				t.Errorf("oldest ready age of %s = %.0fs, want 0 (nothing ready)", m.GetLabel()[0].GetValue(), age)
			}
		}
	}
}
