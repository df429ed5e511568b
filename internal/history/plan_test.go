package history

import (
	"errors"
	"testing"
	"time"
)

// day is a calendar day of UTC, the unit of the longer ranges below.
const day = 24 * time.Hour

func planEngine(t *testing.T, now time.Time) *Engine {
	t.Helper()
	tiers := map[string]Location{}
	for _, n := range []string{"1m", "5m", "1h", "1d"} {
		tiers[n] = Location{"metrics", "rollup_" + n}
	}
	layout := Layout{Raw: Location{Database: "metrics"}, Tiers: tiers, RawRetention: 30 * 24 * time.Hour}
	e, err := New(nil, layout, DefaultConfig(), func() time.Time { return now })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// TestPlanTier checks the tier and width chosen for the ranges, with and without every.
func TestPlanTier(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 34, 56, 0, time.UTC)
	e := planEngine(t, now)
	tests := []struct {
		name      string
		span      time.Duration
		every     time.Duration
		fn, tier  string
		wantTier  string
		wantEvery time.Duration
	}{
		{"1h auto", time.Hour, 0, "mean", "", "1m", time.Minute},
		{"24h auto", 24 * time.Hour, 0, "mean", "", "5m", 5 * time.Minute},
		{"7d auto", 7 * day, 0, "mean", "", "1h", time.Hour},
		{"30d auto", 30 * day, 0, "mean", "", "1d", day},
		{"10m auto", 10 * time.Minute, 0, "max", "", "1m", time.Minute},
		{"2y auto", 730 * day, 0, "mean", "", "1d", 2 * day},
		{"1h every=2m", time.Hour, 2 * time.Minute, "mean", "", "1m", 2 * time.Minute},
		{"1h every=30s", time.Hour, 30 * time.Second, "mean", "", "raw", 30 * time.Second},
		{"1h every=90s", time.Hour, 90 * time.Second, "mean", "", "raw", 90 * time.Second},
		{"24h every=1m", 24 * time.Hour, time.Minute, "mean", "", "1m", time.Minute},
		{"24h every=10m", 24 * time.Hour, 10 * time.Minute, "mean", "", "5m", 10 * time.Minute},
		{"24h every=1h", 24 * time.Hour, time.Hour, "mean", "", "1h", time.Hour},
		{"7d every=1h", 7 * day, time.Hour, "mean", "", "1h", time.Hour},
		{"7d every=6h", 7 * day, 6 * time.Hour, "mean", "", "1h", 6 * time.Hour},
		{"30d every=1d", 30 * day, day, "mean", "", "1d", day},
		{"30d every=7d", 30 * day, 7 * day, "mean", "", "1d", 7 * day},
		{"24h p95 auto", 24 * time.Hour, 0, "p95", "", "raw", 5 * time.Minute},
		{"24h p99 every=1h", 24 * time.Hour, time.Hour, "p99", "", "raw", time.Hour},
		{"24h forced raw", 24 * time.Hour, time.Minute, "mean", "raw", "raw", time.Minute},
		{"24h forced 1m", 24 * time.Hour, 0, "mean", "1m", "5m", 5 * time.Minute},
		{"1h forced 1h", time.Hour, 0, "mean", "1h", "1h", time.Hour},
		// The 1m tier (90 d) no longer holds an hour 100 days ago: the 5m tier (180 d) serves it.
		{"old hour auto", time.Hour, 0, "mean", "", "5m", 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			end := now
			if tt.name == "old hour auto" {
				end = now.Add(-100 * day)
			}
			q := Query{Measurement: "cpu", Field: "usage_percent", Fn: tt.fn, Start: end.Add(-tt.span), End: end, Every: tt.every, Tier: tt.tier}
			if tt.name == "24h forced 1m" {
				q.Tier = "1m" // forcing 1m with every left out keeps the auto width; 5m windows are whole 1m windows
			}
			p, err := e.Plan(q)
			if err != nil {
				t.Fatalf("Plan(%s, every=%s) error: %v", tt.span, tt.every, err)
			}
			wantTier := tt.wantTier
			if tt.name == "24h forced 1m" {
				wantTier = "1m"
			}
			if p.Tier != wantTier || p.Every != tt.wantEvery {
				t.Errorf("Plan(%s, every=%s, fn=%s, tier=%q) = tier %s every %s, want tier %s every %s",
					tt.span, tt.every, tt.fn, tt.tier, p.Tier, p.Every, wantTier, tt.wantEvery)
			}
			if got := alignDown(p.Start, p.Every); !got.Equal(p.Start) || p.Start.After(q.Start) {
				t.Errorf("Plan start %s is not %s aligned down to %s", p.Start, q.Start, p.Every)
			}
		})
	}
}

// TestPlanRefuses checks the 400s of planning, each naming its parameter.
func TestPlanRefuses(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	e := planEngine(t, now)
	tests := []struct {
		name      string
		q         Query
		wantParam string
	}{
		{"p95 beyond raw retention", Query{Fn: "p95", Start: now.Add(-31 * day), End: now}, "start"},
		{"p99 beyond raw retention", Query{Fn: "p99", Start: now.Add(-40 * day), End: now.Add(-39 * day)}, "start"},
		{"too many points", Query{Fn: "mean", Start: now.Add(-30 * day), End: now, Every: time.Second}, "every"},
		{"too many points raw", Query{Fn: "mean", Start: now.Add(-2 * day), End: now, Every: 10 * time.Second}, "every"},
		{"forced tier coarser than every", Query{Fn: "mean", Start: now.Add(-day), End: now, Every: time.Minute, Tier: "1h"}, "every"},
		{"percentile on a tier", Query{Fn: "p95", Start: now.Add(-day), End: now, Tier: "1m"}, "tier"},
		{"unknown tier", Query{Fn: "mean", Start: now.Add(-day), End: now, Tier: "2m"}, "tier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Plan(tt.q)
			var pe *ParamError
			if !errors.As(err, &pe) || pe.Param != tt.wantParam {
				t.Errorf("Plan(%+v) error = %v, want a ParamError naming %s", tt.q, err, tt.wantParam)
			}
		})
	}
	// Percentiles within raw retention are fine.
	if _, err := e.Plan(Query{Fn: "p95", Start: now.Add(-29 * day), End: now}); err != nil {
		t.Errorf("Plan(p95 over 29 days) error: %v", err)
	}
}
