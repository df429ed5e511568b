package gateway

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/agentmonitor/agentmonitor/internal/alertfeed"
	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/agentmonitor/agentmonitor/internal/egress"
	"github.com/agentmonitor/agentmonitor/internal/history"
	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/ingestredis"
	"github.com/agentmonitor/agentmonitor/internal/logging"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// Config is everything the gateway reads from the environment. Sub-configs of the packages it
// wires are embedded as named fields; their REDIS_KEY_PREFIX and STREAM_SHARDS come from the same
// variables, and New makes them follow Redis.Prefix and Publish.Shards so that a Config built in
// code cannot disagree with itself.
type Config struct {
	Log      logging.Config
	Redis    redisconn.Config
	Postgres postgres.Config
	HotCache hotcache.Config
	// Influx is where history is read from, and where the field-type registry is seeded from
	// (SHOW FIELD KEYS) at start.
	Influx influx.Config

	Publish stream.PublisherConfig
	Wait    ingestredis.WaitConfig  // REDIS_WAIT_REPLICAS: replication before 204
	Group   ingestredis.GroupConfig // REDIS_INGEST_MAX_GROUP: group commit of concurrent appends
	Backlog stream.BacklogConfig
	Trim    stream.TrimmerConfig
	AgeTrim stream.AgeTrimConfig // the alerts stream, kept by age
	WS      alertfeed.Config
	Edge    EdgeConfig
	TLS     TLSConfig

	History history.Config // limits of history queries

	// Addr is where the HTTP server listens.
	Addr string `env:"GATEWAY_ADDR" envDefault:":8080" help:"address the gateway's HTTP server listens on (host:port)"`
	// OpsAddr is where a second, private listener serves /healthz, /readyz, /metrics and, with
	// Pprof, /debug/pprof. Empty: no such listener (the API listener serves the first three).
	OpsAddr string `env:"OPS_ADDR" help:"optional private listen address (host:port) of /healthz, /readyz, /metrics and, with OPS_PPROF, /debug/pprof; empty: none (the API listener serves /healthz, /readyz and /metrics)"`
	// Pprof mounts net/http/pprof under /debug/pprof/ on OpsAddr, never on the API listener.
	Pprof bool `env:"OPS_PPROF" help:"serve Go runtime profiles under /debug/pprof/ on OPS_ADDR (never on GATEWAY_ADDR); needs OPS_ADDR"`
	// ShutdownTimeout bounds the graceful drain of in-flight requests on stop.
	ShutdownTimeout time.Duration `env:"GATEWAY_SHUTDOWN_TIMEOUT" envDefault:"15s" help:"how long in-flight requests may take to finish on stop"`
	// CORSOrigins lists the browser origins allowed to call the API; empty sends no CORS headers
	// (same-origin only). "*" is refused.
	CORSOrigins []string `env:"CORS_ALLOWED_ORIGINS" envSeparator:"," help:"comma-separated origins (https://dash.example.com) allowed to call the API and open the alert WebSocket from a browser; empty: same origin only"`
	// WebhookAllowedNetworks opens, for notification channels, addresses refused by default
	// (loopback, private, link-local, CGNAT): CIDRs, addresses or host names (egress.NewPolicy).
	WebhookAllowedNetworks []string `env:"WEBHOOK_ALLOWED_NETWORKS" envSeparator:"," help:"comma-separated CIDRs, addresses and host names notification channels may point at although private, loopback or link-local (default: none; the alerter reads the same variable)"`

	// AdminPassword is the password of user "admin", created at the first start when no admin
	// exists. Empty: a random one is generated and logged once.
	AdminPassword string `env:"ADMIN_PASSWORD" help:"password of the first admin user, created when no admin exists; empty: generated and logged once"`
	// SessionTTL is how long an operator session lives after its last use.
	SessionTTL time.Duration `env:"SESSION_TTL" envDefault:"12h" help:"operator sessions expire after this long without use (sliding)"`
	// LoginAttemptsPerMinute limits failed login attempts per username from one source address
	// (see EdgeConfig for the limits per address and per username overall).
	LoginAttemptsPerMinute int `env:"LOGIN_ATTEMPTS_PER_MINUTE" envDefault:"10" help:"failed login attempts allowed per username from one source address a minute; a success clears them"`
	// BcryptCost is the work factor of stored password hashes.
	BcryptCost int `env:"BCRYPT_COST" envDefault:"10" help:"bcrypt work factor of operator passwords (4-31)"`

	// AgentOnlineWindow: an agent is online while its last_seen is this recent.
	AgentOnlineWindow time.Duration `env:"AGENT_ONLINE_WINDOW" envDefault:"2m" help:"an agent is online while its last batch is this recent"`
	// LatestReadMaxAge is how old an answer of the latest-values read may be: a gateway copy
	// answers it from memory for an agent it read within this (latestCache). 0: every read asks
	// the hot cache.
	LatestReadMaxAge time.Duration `env:"LATEST_READ_MAX_AGE" envDefault:"250ms" help:"the latest-values read may answer from this gateway's memory up to this old, refreshed in the background while the agent is read (0: every read asks Redis)"`
	// KeyCacheTTL is how long a key lookup is cached: a revoked key works at most this long on
	// other gateway copies.
	KeyCacheTTL time.Duration `env:"KEY_CACHE_TTL" envDefault:"5s" help:"how long agent-key lookups are cached; a revoked key stops working within this"`
	// KeyCacheStale is how long past its TTL a known key keeps working while PostgreSQL is down.
	KeyCacheStale time.Duration `env:"KEY_CACHE_STALE" envDefault:"10m" help:"how long known agent keys keep working past KEY_CACHE_TTL while PostgreSQL is unreachable"`

	// MaxBodyBytes bounds an ingest body, both as received and after decompression.
	MaxBodyBytes int64 `env:"INGEST_MAX_BODY_BYTES" envDefault:"10485760" help:"largest ingest body in bytes, counted as received and after gzip decompression"`
	// Limits of one ingest request (metric.Limits).
	MaxPoints      int           `env:"INGEST_MAX_POINTS" envDefault:"5000" help:"most points in one ingest request"`
	MaxTags        int           `env:"INGEST_MAX_TAGS" envDefault:"64" help:"most tags per point"`
	MaxFields      int           `env:"INGEST_MAX_FIELDS" envDefault:"256" help:"most fields per point"`
	MaxNameLen     int           `env:"INGEST_MAX_NAME_LEN" envDefault:"256" help:"longest measurement, tag key or field key, in bytes"`
	MaxTagValueLen int           `env:"INGEST_MAX_TAG_VALUE_LEN" envDefault:"1024" help:"longest tag value, in bytes"`
	MaxStringLen   int           `env:"INGEST_MAX_STRING_LEN" envDefault:"65536" help:"longest string field value, in bytes"`
	MaxPast        time.Duration `env:"INGEST_MAX_PAST" envDefault:"168h" help:"how far in the past a point's time may lie"`
	MaxFuture      time.Duration `env:"INGEST_MAX_FUTURE" envDefault:"10m" help:"how far in the future a point's time may lie"`

	// AgentRatePointsPerSec and AgentRateBurst are each agent's GCRA rate limit, in points.
	AgentRatePointsPerSec int `env:"AGENT_RATE_POINTS_PER_SEC" envDefault:"10000" help:"points per second each agent may send on average"`
	AgentRateBurst        int `env:"AGENT_RATE_BURST" envDefault:"50000" help:"points an agent may send at once above its rate; at least INGEST_MAX_POINTS"`
}

// DefaultConfig returns the configuration with every default applied, as the environment would
// give it with no variable set: the envDefault tags, the one place the defaults are written.
// Tests and embedders start from it.
func DefaultConfig() Config {
	var c Config
	// Only a tag that does not parse can fail here, and TestDefaultConfig parses every tag.
	_ = config.Defaults(&c)
	return c
}

// Limits returns the per-request limits of ingest.
func (c Config) Limits() metric.Limits {
	return metric.Limits{
		MaxPoints:      c.MaxPoints,
		MaxTags:        c.MaxTags,
		MaxFields:      c.MaxFields,
		MaxNameLen:     c.MaxNameLen,
		MaxTagValueLen: c.MaxTagValueLen,
		MaxStringLen:   c.MaxStringLen,
		MaxPast:        c.MaxPast,
		MaxFuture:      c.MaxFuture,
	}
}

// Prepare makes the stream sub-configs follow Redis.Prefix and Publish.Shards (one
// REDIS_KEY_PREFIX and one STREAM_SHARDS for all of them), Publish taking its defaults where
// zero. config.Load and New call it before Validate.
func (c *Config) Prepare() error {
	if err := config.Defaults(&c.Publish); err != nil {
		return err
	}
	c.Publish.Prefix = c.Redis.Prefix
	c.Backlog.Prefix = c.Redis.Prefix
	c.Trim.Prefix = c.Redis.Prefix
	c.Backlog.Shards = c.Publish.Shards
	c.Trim.Shards = c.Publish.Shards
	return nil
}

// Validate reports every setting that cannot work, each naming its variable.
func (c Config) Validate() error {
	var p config.Problems
	// Each sub-config checks its own settings.
	for _, sub := range []interface{ Validate() error }{
		c.Log, c.Redis, c.Postgres, c.HotCache, c.Influx, c.Publish, c.Wait, c.Group, c.Backlog, c.Trim, c.AgeTrim, c.WS,
		c.Edge, c.History, c.TLS,
	} {
		p.Add(sub.Validate())
	}
	if err := c.Limits().Validate(); err != nil {
		p.Add(fmt.Errorf("INGEST_MAX_*: %w", err))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		p.Add(fmt.Errorf("GATEWAY_ADDR=%q: want host:port: %w", c.Addr, err))
	}
	if c.OpsAddr != "" {
		if _, port, err := net.SplitHostPort(c.OpsAddr); err != nil {
			p.Add(fmt.Errorf("OPS_ADDR=%q: want host:port: %w", c.OpsAddr, err))
		} else if c.OpsAddr == c.Addr && port != "0" {
			p.Add(fmt.Errorf("OPS_ADDR=%q: must differ from GATEWAY_ADDR", c.OpsAddr))
		}
	}
	if c.Pprof && c.OpsAddr == "" {
		p.Add(errors.New("OPS_PPROF is set but OPS_ADDR is empty: profiles are served only on the private ops listener, never on GATEWAY_ADDR"))
	}
	p.Want(c.ShutdownTimeout > 0, "GATEWAY_SHUTDOWN_TIMEOUT=%s: want > 0", c.ShutdownTimeout)
	for _, o := range c.CORSOrigins {
		if o = strings.TrimSpace(o); o == "*" || !(strings.HasPrefix(o, "https://") || strings.HasPrefix(o, "http://")) {
			p.Add(fmt.Errorf("CORS_ALLOWED_ORIGINS: %q must be an origin like https://dash.example.com (\"*\" is refused)", o))
		} else if _, err := path.Match(strings.ToLower(o), ""); err != nil {
			// The WebSocket's Origin check matches these as path.Match patterns.
			p.Add(fmt.Errorf("CORS_ALLOWED_ORIGINS: %q is not a valid pattern: %w", o, err))
		}
	}
	if _, err := egress.NewPolicy(c.WebhookAllowedNetworks); err != nil {
		p.Add(err)
	}
	p.Want(c.AdminPassword == "" || len(c.AdminPassword) >= minPasswordLen && len(c.AdminPassword) <= maxPasswordLen,
		"ADMIN_PASSWORD: must be %d to %d bytes", minPasswordLen, maxPasswordLen)
	p.Want(c.LatestReadMaxAge >= 0 && c.LatestReadMaxAge <= time.Minute, "LATEST_READ_MAX_AGE=%s: want 0 (off) to 1m", c.LatestReadMaxAge)
	p.Want(c.SessionTTL >= time.Second, "SESSION_TTL=%s: want at least 1s", c.SessionTTL)
	p.Want(c.LoginAttemptsPerMinute >= 1, "LOGIN_ATTEMPTS_PER_MINUTE=%d: want > 0", c.LoginAttemptsPerMinute)
	p.Want(c.BcryptCost >= bcrypt.MinCost && c.BcryptCost <= bcrypt.MaxCost, "BCRYPT_COST=%d: want %d to %d", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	p.Want(c.AgentOnlineWindow > 0, "AGENT_ONLINE_WINDOW=%s: want > 0", c.AgentOnlineWindow)
	p.Want(c.KeyCacheTTL > 0, "KEY_CACHE_TTL=%s: want > 0", c.KeyCacheTTL)
	p.Want(c.KeyCacheStale >= 0, "KEY_CACHE_STALE=%s: want >= 0", c.KeyCacheStale)
	p.Want(c.MaxBodyBytes >= 1024, "INGEST_MAX_BODY_BYTES=%d: want at least 1024", c.MaxBodyBytes)
	p.Want(c.AgentRatePointsPerSec >= 1, "AGENT_RATE_POINTS_PER_SEC=%d: want > 0", c.AgentRatePointsPerSec)
	// A batch larger than the burst could never be admitted: it would get 429 for ever.
	p.Want(c.AgentRateBurst >= c.MaxPoints, "AGENT_RATE_BURST=%d: want at least INGEST_MAX_POINTS (%d)", c.AgentRateBurst, c.MaxPoints)
	return p.Err()
}
