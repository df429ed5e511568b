package influx_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx"
)

func TestProvisionTiers(t *testing.T) {
	c, env := provisioned(t)
	ctx := context.Background()
	steps := []struct {
		name string
		cfg  influx.TierConfig
		want map[string]retentionPolicy
	}{
		{"defaults", influx.TierConfig{Retention1m: 90, Retention5m: 180, Retention1h: 730, Retention1d: 1825}, map[string]retentionPolicy{
			"rollup_1m": {Name: "rollup_1m", Duration: "2160h0m0s", Shard: "24h0m0s"},
			"rollup_5m": {Name: "rollup_5m", Duration: "4320h0m0s", Shard: "168h0m0s"},
			"rollup_1h": {Name: "rollup_1h", Duration: "17520h0m0s", Shard: "168h0m0s"},
			"rollup_1d": {Name: "rollup_1d", Duration: "43800h0m0s", Shard: "168h0m0s"},
		}},
		{"unchanged", influx.TierConfig{Retention1m: 90, Retention5m: 180, Retention1h: 730, Retention1d: 1825}, map[string]retentionPolicy{
			"rollup_1m": {Name: "rollup_1m", Duration: "2160h0m0s", Shard: "24h0m0s"},
			"rollup_5m": {Name: "rollup_5m", Duration: "4320h0m0s", Shard: "168h0m0s"},
			"rollup_1h": {Name: "rollup_1h", Duration: "17520h0m0s", Shard: "168h0m0s"},
			"rollup_1d": {Name: "rollup_1d", Duration: "43800h0m0s", Shard: "168h0m0s"},
		}},
		{"changed", influx.TierConfig{Retention1m: 1, Retention5m: 30, Retention1h: 0, Retention1d: 3650}, map[string]retentionPolicy{
			"rollup_1m": {Name: "rollup_1m", Duration: "24h0m0s", Shard: "1h0m0s"},
			"rollup_5m": {Name: "rollup_5m", Duration: "720h0m0s", Shard: "24h0m0s"},
			"rollup_1h": {Name: "rollup_1h", Duration: "0s", Shard: "168h0m0s"},
			"rollup_1d": {Name: "rollup_1d", Duration: "87600h0m0s", Shard: "168h0m0s"},
		}},
	}
	for _, st := range steps {
		if err := c.ProvisionTiers(ctx, st.cfg); err != nil {
			t.Fatalf("%s: ProvisionTiers(%+v): %v", st.name, st.cfg, err)
		}
		got := map[string]retentionPolicy{}
		for _, rp := range showRetentionPolicies(t, env.Server, env.Database) {
			got[rp.Name] = rp
			if rp.Name == "autogen" && !rp.Default {
				t.Errorf("%s: autogen is no longer the default policy: %+v", st.name, rp)
			}
		}
		for name, want := range st.want {
			if got[name] != want {
				t.Errorf("%s: retention policy %s = %+v, want %+v", st.name, name, got[name], want)
			}
		}
	}
	// Every tier is writable through TierBucket.
	for _, tier := range influx.Tiers {
		line := fmt.Sprintf("cpu,agent=a1 u_min=1,u_count=1i %d\n", time.Now().Add(-time.Hour).UnixNano())
		if err := c.WriteBucket(ctx, c.TierBucket(tier), []byte(line)); err != nil {
			t.Errorf("WriteBucket(%s): %v", c.TierBucket(tier), err)
		}
	}
	if err := c.ProvisionTiers(ctx, influx.TierConfig{Retention1m: -1}); err == nil {
		t.Error("ProvisionTiers(1m retention -1) = nil, want an error")
	}
}

func TestTierBucket(t *testing.T) {
	tests := []struct {
		bucket, org string
		want        []string
	}{
		{"metrics", "", []string{"metrics/rollup_1m", "metrics/rollup_5m", "metrics/rollup_1h", "metrics/rollup_1d"}},
		{"metrics/raw", "", []string{"metrics/rollup_1m", "metrics/rollup_5m", "metrics/rollup_1h", "metrics/rollup_1d"}},
		{"metrics", "acme", []string{"metrics_1m", "metrics_5m", "metrics_1h", "metrics_1d"}},
	}
	for _, tt := range tests {
		c, err := influx.New(influx.Config{URL: "http://127.0.0.1:1", Bucket: tt.bucket, Org: tt.org, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		for i, tier := range influx.Tiers {
			if got := c.TierBucket(tier); got != tt.want[i] {
				t.Errorf("TierBucket(%s) with bucket %q org %q = %q, want %q", tier.Name, tt.bucket, tt.org, got, tt.want[i])
			}
		}
		c.Close()
	}
}

func TestInfluxQLQuotesNames(t *testing.T) {
	c, _ := provisioned(t)
	ctx := context.Background()
	// Measurement names that would break out of an unquoted or naively quoted identifier.
	names := []string{`plain`, `q"uote`, `back\slash`, `semi;colon DROP DATABASE x`, `a".."b`}
	ts := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i, m := range names {
		esc := strings.NewReplacer(",", `\,`, " ", `\ `).Replace(m) // line-protocol escapes
		if err := c.Write(ctx, fmt.Appendf(nil, "%s,agent=a1 v=%d %d\n", esc, i, ts.UnixNano())); err != nil {
			t.Fatalf("Write(%q): %v", m, err)
		}
		series, err := c.InfluxQL(ctx, "SELECT count(v) FROM "+c.RawSource(m))
		if err != nil || len(series) != 1 || series[0].Name != m {
			t.Errorf("SELECT count(v) FROM %s = %+v, %v; want one series named %q", c.RawSource(m), series, err, m)
		}
	}
}

func TestSources(t *testing.T) {
	tests := []struct {
		bucket, org, measurement string
		raw, tier1h              string
	}{
		{"metrics", "", "cpu", `"metrics".."cpu"`, `"metrics"."rollup_1h"."cpu"`},
		{"metrics/raw", "", `c"p\u`, `"metrics"."raw"."c\"p\\u"`, `"metrics"."rollup_1h"."c\"p\\u"`},
		{"metrics", "acme", "cpu", `"metrics"."autogen"."cpu"`, `"metrics_1h"."autogen"."cpu"`},
	}
	for _, tt := range tests {
		c, err := influx.New(influx.Config{URL: "http://127.0.0.1:1", Bucket: tt.bucket, Org: tt.org, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.RawSource(tt.measurement); got != tt.raw {
			t.Errorf("RawSource(%q) with bucket %q org %q = %s, want %s", tt.measurement, tt.bucket, tt.org, got, tt.raw)
		}
		if got := c.TierSource(influx.Tiers[2], tt.measurement); got != tt.tier1h {
			t.Errorf("TierSource(1h, %q) with bucket %q org %q = %s, want %s", tt.measurement, tt.bucket, tt.org, got, tt.tier1h)
		}
		c.Close()
	}
}
