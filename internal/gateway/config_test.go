package gateway

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/metric"
	caarlosenv "github.com/caarlos0/env/v11"
)

// TestDefaultConfig checks that DefaultConfig is what the environment gives with nothing set, so
// that tests and embedders start from the defaults the binary documents.
func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	var fromEnv Config
	if err := caarlosenv.ParseWithOptions(&fromEnv, caarlosenv.Options{Environment: map[string]string{}}); err != nil {
		t.Fatalf("parsing an empty environment: %v", err)
	}
	if def := DefaultConfig(); !reflect.DeepEqual(fromEnv, def) {
		t.Errorf("empty environment gives\n%+v\nDefaultConfig() is\n%+v", fromEnv, def)
	}
	if err := fromEnv.Validate(); err != nil {
		t.Errorf("Validate() of the defaults = %v, want nil", err)
	}
	// The ingest limits' tags repeat metric.DefaultLimits for --help; they must agree.
	if got, want := DefaultConfig().Limits(), metric.DefaultLimits(); got != want {
		t.Errorf("DefaultConfig().Limits() = %+v, want metric.DefaultLimits() %+v", got, want)
	}

	var set Config
	err := caarlosenv.ParseWithOptions(&set, caarlosenv.Options{Environment: map[string]string{
		"GATEWAY_ADDR": "127.0.0.1:9999", "REDIS_KEY_PREFIX": "p:", "STREAM_SHARDS": "8", "STREAM_GROUPS": "a,b,c",
		"SESSION_TTL": "30m", "KEY_CACHE_TTL": "2s", "INGEST_MAX_POINTS": "100", "REDIS_TTL_SECONDS": "60",
		"CORS_ALLOWED_ORIGINS": "https://a.example,https://b.example",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Prepare(); err != nil {
		t.Fatal(err)
	}
	if set.Addr != "127.0.0.1:9999" || set.Trim.Prefix != "p:" || set.Backlog.Shards != 8 || len(set.Trim.Groups) != 3 ||
		set.SessionTTL != 30*time.Minute || set.KeyCacheTTL != 2*time.Second || set.Limits().MaxPoints != 100 ||
		set.HotCache.TTLSeconds != 60 || len(set.CORSOrigins) != 2 {
		t.Errorf("parsed config = %+v, want the variables applied", set)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Addr = "8080" }, "GATEWAY_ADDR"},
		{func(c *Config) { c.Redis.URL = "http://x" }, "REDIS_URL"},
		{func(c *Config) { c.Postgres.URL = "::" }, "DATABASE_URL"},
		{func(c *Config) { c.CORSOrigins = []string{"*"} }, "CORS_ALLOWED_ORIGINS"},
		{func(c *Config) { c.Pprof = true }, "OPS_PPROF is set but OPS_ADDR is empty"},
		{func(c *Config) { c.OpsAddr = "9100" }, "OPS_ADDR"},
		{func(c *Config) { c.AdminPassword = "short" }, "ADMIN_PASSWORD"},
		{func(c *Config) { c.SessionTTL = 0 }, "SESSION_TTL"},
		{func(c *Config) { c.BcryptCost = 2 }, "BCRYPT_COST"},
		{func(c *Config) { c.KeyCacheTTL = 0 }, "KEY_CACHE_TTL"},
		{func(c *Config) { c.LatestReadMaxAge = -time.Second }, "LATEST_READ_MAX_AGE"},
		{func(c *Config) { c.LatestReadMaxAge = time.Hour }, "LATEST_READ_MAX_AGE"},
		{func(c *Config) { c.MaxBodyBytes = 10 }, "INGEST_MAX_BODY_BYTES"},
		{func(c *Config) { c.MaxPoints = 0 }, "INGEST_MAX_"},
		{func(c *Config) { c.AgentRateBurst = 10 }, "AGENT_RATE_BURST"},
		{func(c *Config) { c.AgentRatePointsPerSec = 0 }, "AGENT_RATE_POINTS_PER_SEC"},
		{func(c *Config) { c.HotCache.TTLSeconds = 0 }, "REDIS_TTL_SECONDS"},
		{func(c *Config) { c.Backlog.Max = 0 }, "STREAM_MAX_BACKLOG"},
		{func(c *Config) { c.Trim.Groups = nil }, "STREAM_GROUPS"},
		{func(c *Config) { c.Publish.Shards = 5000 }, "STREAM_SHARDS"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
		}
	}
}
