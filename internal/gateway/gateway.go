// Package gateway is the HTTP front of Agent Monitor: it authenticates agents and operators,
// validates pushed metrics and appends them to the Redis streams, keeps the hot cache fresh, and
// serves the operator API (sessions, users, agents, audit log, live values, alert rules, alerts,
// silences, notification channels), the alert WebSocket and the operations endpoints. Every
// route is described in api/openapi.yaml.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/agentmonitor/agentmonitor/internal/agent"
	"github.com/agentmonitor/agentmonitor/internal/alertfeed"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/egress"
	"github.com/agentmonitor/agentmonitor/internal/fieldtype"
	"github.com/agentmonitor/agentmonitor/internal/history"
	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/ingest"
	"github.com/agentmonitor/agentmonitor/internal/ingestredis"
	"github.com/agentmonitor/agentmonitor/internal/keycache"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/notify"
	"github.com/agentmonitor/agentmonitor/internal/ops"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/user"
)

// The stores the handlers use, as small consumer-side interfaces; New wires the postgres ones.
type (
	agentStore interface {
		Create(ctx context.Context, name string, labels map[string]string, keyHash, actor string) (agent.Agent, error)
		Get(ctx context.Context, id string) (agent.Agent, error)
		List(ctx context.Context, limit, offset int) ([]agent.Agent, int, error)
		RotateKeyGrace(ctx context.Context, id, keyHash string, grace time.Duration, actor string) (agent.Agent, error)
		RevokePreviousKey(ctx context.Context, id, actor string) error
		Update(ctx context.Context, id, name string, labels map[string]string, actor string) (agent.Agent, error)
		Delete(ctx context.Context, id, actor string) error
		ResolveKeyHash(ctx context.Context, keyHash string) (string, time.Time, error)
	}
	userStore interface {
		Create(ctx context.Context, username, passwordHash, role, actor string) (user.User, error)
		Credentials(ctx context.Context, username string) (user.User, string, error)
		List(ctx context.Context) ([]user.User, error)
		Delete(ctx context.Context, username, actor string) error
		SetRole(ctx context.Context, username, role, actor string) (user.User, error)
		SetPassword(ctx context.Context, username, passwordHash string) error
		EnsureAdmin(ctx context.Context, passwordHash string) (bool, error)
	}
	auditStore interface {
		List(ctx context.Context, limit, offset int) ([]postgres.AuditEntry, int, error)
		Purge(ctx context.Context, olderThan time.Duration) (int64, error)
		Record(ctx context.Context, actor, action, target string, details map[string]any) error
	}
	backlogGate interface {
		Over() bool
	}
)

// Gateway is the HTTP gateway. Build it with New, serve with Run.
type Gateway struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time

	rdb redis.UniversalClient
	db  *sqlx.DB

	agents     agentStore
	users      userStore
	audit      auditStore
	appender   ingest.Appender // the Redis side of ingest (ingestredis.Appender)
	backlog    backlogGate
	backlogRn  *stream.Backlog
	trimmer    *stream.Trimmer
	ageTrimmer *stream.AgeTrimmer
	// alertStreams are the alerts streams of every shard alert state was written in
	// (alertredis.KnownShards at start): a lowered STREAM_SHARDS leaves old ones to trim.
	alertStreams []string
	rates        pipelineRates // entries-read counters for GET /api/v1/pipeline
	hot          *hotcache.Cache
	latestReads  *latestCache // the latest-values read, in front of hot
	keys         *keycache.Cache
	sessions     *sessions
	limiter      *redis_rate.Limiter

	influx     *influx.Client // history queries and the fieldTypes seed
	fieldTypes *fieldtype.Registry

	rules       ruleStore
	channels    channelStore
	egress      *egress.Policy // where channels may point
	silences    silenceStore
	alertEvents alertEventStore
	acks        ackStore
	hub         *alertfeed.Hub

	history *history.Engine

	ingest        *ingest.Handler // the agents' write path
	ingestMetrics *ingest.Metrics

	limits     metric.Limits
	loginLimit redis_rate.Limit
	dummyHash  []byte

	e       *echo.Echo
	reg     *prometheus.Registry
	metrics *gatewayMetrics

	adminPassword string
	addr          atomic.Pointer[string]
	ops           *ops.Server // the private ops listener (OPS_ADDR), or nil

	bgCtx    context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New connects to Redis and PostgreSQL, applies the schema migrations, creates user "admin" when
// no admin exists (with cfg.AdminPassword, or a generated password that is logged once and
// returned by AdminPassword), and builds the HTTP server. It does not listen: Run does. If New
// fails it releases whatever it opened; otherwise Run (or Close) releases it.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Gateway, error) {
	if err := cfg.Prepare(); err != nil {
		return nil, fmt.Errorf("invalid gateway configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid gateway configuration: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{
		cfg:        cfg,
		logger:     logger.With("component", "gateway"),
		now:        time.Now,
		limits:     cfg.Limits(),
		loginLimit: loginLimitOf(cfg.LoginAttemptsPerMinute),
	}
	g.bgCtx, g.bgCancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			_ = g.Close()
		}
	}()

	var err error
	if g.rdb, err = redisconn.Open(ctx, cfg.Redis); err != nil {
		return nil, err
	}
	for _, warning := range redisconn.Warnings(ctx, g.rdb) {
		g.logger.Warn(warning)
	}
	if g.db, err = postgres.Open(ctx, cfg.Postgres.URL); err != nil {
		return nil, err
	}
	if err := postgres.Migrate(ctx, g.db); err != nil {
		return nil, err
	}
	agents := postgres.NewAgentStore(g.db)
	g.agents, g.users, g.audit = agents, postgres.NewUserStore(g.db), postgres.NewAuditStore(g.db)
	g.rules, g.channels, g.silences = postgres.NewRuleStore(g.db), postgres.NewChannelStore(g.db), postgres.NewSilenceStore(g.db)
	if g.egress, err = egress.NewPolicy(cfg.WebhookAllowedNetworks); err != nil {
		return nil, err
	}
	g.alertEvents, g.acks = postgres.NewAlertEventStore(g.db), postgres.NewAckStore(g.db)

	if g.dummyHash, err = bcrypt.GenerateFromPassword([]byte("never anyone's password"), cfg.BcryptCost); err != nil {
		return nil, fmt.Errorf("hashing: %w", err)
	}
	if err := g.ensureAdmin(ctx); err != nil {
		return nil, err
	}

	g.reg = ops.NewRegistry()
	if g.metrics, err = newGatewayMetrics(g.reg); err != nil {
		return nil, err
	}
	if g.backlogRn, err = stream.NewBacklog(g.rdb, cfg.Backlog, logger); err != nil {
		return nil, err
	}
	g.backlog = g.backlogRn
	trimCfg := cfg.Trim
	trimCfg.Registerer = g.reg
	// The alert consumers' dead letters (the notifier's and the history writer's) age out too.
	trimCfg.OtherDeadLetters = []string{notify.PoisonKey(cfg.Redis.Prefix), cfg.Redis.Prefix + "alerts:dead"}
	if g.trimmer, err = stream.NewTrimmer(g.rdb, trimCfg, logger); err != nil {
		return nil, err
	}
	// The alerts streams, one per shard, are kept by age.
	alertShards, err := alertredis.KnownShards(ctx, g.rdb, cfg.Redis.Prefix, cfg.Publish.Shards)
	if err != nil {
		return nil, err
	}
	alerts := alertredis.StreamKeysOf(cfg.Redis.Prefix, alertShards)
	g.alertStreams = alerts
	aged := make([]stream.AgedStream, len(alerts))
	for i, k := range alerts {
		aged[i] = stream.AgedStream{Key: k, MaxAge: cfg.AgeTrim.AlertsMaxAge}
	}
	if g.ageTrimmer, err = stream.NewAgeTrimmer(g.rdb, aged, g.reg, logger); err != nil {
		return nil, err
	}
	// Every stream gets a length gauge: besides the metrics streams and their dead letters, the
	// alerts streams and the notifier's and the history writer's dead letters (notify.PoisonKey,
	// the alerter's alerts:dead).
	collector, err := stream.NewCollector(g.rdb, stream.CollectorConfig{Prefix: cfg.Redis.Prefix, Shards: cfg.Publish.Shards,
		Extra: append(slices.Clone(alerts), trimCfg.OtherDeadLetters...)}, logger)
	if err != nil {
		return nil, err
	}
	if err := g.reg.Register(collector); err != nil {
		return nil, fmt.Errorf("registering stream metrics: %w", err)
	}
	if err := g.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "agentmonitor", Subsystem: "gateway", Name: "backlog_entries",
		Help: "Entries in the metrics streams at the last backlog check, all shards together; ingest answers 503 above STREAM_MAX_BACKLOG.",
	}, func() float64 { return float64(g.backlogRn.Len()) })); err != nil {
		return nil, fmt.Errorf("registering backlog metric: %w", err)
	}

	if g.hot, err = hotcache.New(g.rdb, cfg.Redis.Prefix, cfg.Publish.Shards, cfg.HotCache); err != nil {
		return nil, err
	}
	g.latestReads = newLatestCache(ctx, cfg.LatestReadMaxAge, g.hot.AppendLatest, func() time.Time { return g.now() })
	if g.appender, err = ingestredis.New(g.rdb, g.hot, ingestredis.Config{
		Prefix: cfg.Redis.Prefix, Shards: cfg.Publish.Shards,
		Rate: cfg.AgentRatePointsPerSec, Burst: cfg.AgentRateBurst, Period: time.Second,
		Wait: cfg.Wait, Group: cfg.Group,
	}); err != nil {
		return nil, err
	}
	if g.influx, err = influx.New(cfg.Influx); err != nil {
		return nil, err
	}
	g.fieldTypes = fieldtype.New(g.rdb, cfg.Redis.Prefix, logger)
	g.keys = keycache.New(cfg.KeyCacheTTL, cfg.KeyCacheStale, agents.ResolveKeyHash, func() time.Time { return g.now() })
	g.sessions = newSessions(g.rdb, cfg.Redis.Prefix, cfg.SessionTTL, func() time.Time { return g.now() })
	if g.hub, err = alertfeed.New(g.rdb, cfg.Redis.Prefix, cfg.Publish.Shards, cfg.WS, g.reg, g.logger); err != nil {
		return nil, err
	}
	g.limiter = redis_rate.NewLimiter(g.rdb)
	if g.ingest, err = g.newIngest(); err != nil {
		return nil, err
	}
	if err := g.initHistory(); err != nil {
		return nil, err
	}
	g.e = g.newEcho()
	ok = true
	return g, nil
}

// Run builds a gateway for cfg and runs it until ctx is done: New then (*Gateway).Run. Its
// signature is the one process.Main expects of a binary.
func Run(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	g, err := New(ctx, *cfg, logger)
	if err != nil {
		return err
	}
	return g.Run(ctx)
}

// ensureAdmin creates user "admin" when no admin exists.
func (g *Gateway) ensureAdmin(ctx context.Context) error {
	password, generated := g.cfg.AdminPassword, false
	if password == "" {
		raw := make([]byte, 18)
		if _, err := rand.Read(raw); err != nil {
			return fmt.Errorf("generating admin password: %w", err)
		}
		password, generated = base64.RawURLEncoding.EncodeToString(raw), true
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), g.cfg.BcryptCost)
	if err != nil {
		return fmt.Errorf("hashing admin password: %w", err)
	}
	created, err := g.users.EnsureAdmin(ctx, string(hash))
	if err != nil {
		return fmt.Errorf("ensuring an admin user: %w", err)
	}
	switch {
	case created && generated:
		g.adminPassword = password
		// Shown this once: only its bcrypt hash is stored.
		g.logger.Warn("GENERATED ADMIN PASSWORD: no admin existed, so user \"admin\" was created with this password; it is shown only this once, store it now",
			"username", user.AdminUsername, "password", password)
	case created:
		g.logger.Info("created user \"admin\" with ADMIN_PASSWORD", "username", user.AdminUsername)
	}
	return nil
}

// AdminPassword returns the password New generated for user "admin", or "" when it generated none
// (an admin existed, or ADMIN_PASSWORD was set).
func (g *Gateway) AdminPassword() string { return g.adminPassword }

// Handler returns the gateway's HTTP handler, for tests and for embedding in another server.
func (g *Gateway) Handler() http.Handler { return g.e }

// Addr returns the address the server listens on once Run is listening, or "".
func (g *Gateway) Addr() string {
	if p := g.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// OpsAddr returns the address of the private ops listener (OPS_ADDR) once Run is listening, or
// "" (none configured, or not yet listening).
func (g *Gateway) OpsAddr() string {
	if g.ops == nil {
		return ""
	}
	return g.ops.Addr()
}

// Run listens on cfg.Addr (and cfg.OpsAddr when set) and serves until ctx is done; it also runs the stream backlog check, the
// stream trimmer, the audit-log purge and the alert WebSocket hub. When ctx is done it stops
// accepting connections, lets in-flight requests finish for at most ShutdownTimeout, stops the
// background loops (closing every WebSocket client), then closes the PostgreSQL and Redis
// clients, and returns. It returns an error if it cannot listen or the server fails; the clients
// are closed in every case. Run may be called once.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.Close()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", g.cfg.Addr, err)
	}
	addr := ln.Addr().String()
	if g.cfg.TLS.Enabled() {
		certs, err := newCertReloader(g.cfg.TLS.CertFile, g.cfg.TLS.KeyFile, g.logger)
		if err != nil {
			ln.Close()
			return err
		}
		ln = tls.NewListener(ln, serverTLS(certs))
	}
	g.e.Listener = ln
	if g.cfg.OpsAddr != "" {
		g.ops = ops.NewServerReady(g.cfg.OpsAddr, g.reg, g.readiness(), g.logger)
		if g.cfg.Pprof {
			g.ops.EnablePprof()
		}
		if err := g.ops.Listen(ctx); err != nil {
			ln.Close()
			return err
		}
	}
	srv := &http.Server{
		Addr:              addr,
		ReadHeaderTimeout: 5 * time.Second,
		// Bodies are paced by paceBody (BODY_*); ReadTimeout is only the backstop.
		ReadTimeout:    g.cfg.Edge.BodyReadTimeout,
		WriteTimeout:   g.cfg.Edge.BodyReadTimeout + 30*time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 2 * g.cfg.Edge.MaxHeaderBytes, // limitHeaders answers above 1x in JSON
	}

	loops, stopLoops := context.WithCancel(g.bgCtx)
	defer stopLoops()
	g.goLoop(loops, "stream backlog", g.backlogRn.Run)
	g.goLoop(loops, "stream trimmer", g.trimmer.Run)
	g.goLoop(loops, "alerts stream age trimmer", func(ctx context.Context) error { return g.ageTrimmer.Run(ctx, g.cfg.Trim.Interval) })
	g.goLoop(loops, "audit purge", g.purgeAudit)
	g.goLoop(loops, "alert websocket hub", g.hub.Run)
	g.goLoop(loops, "field-type seed", func(ctx context.Context) error { g.fieldTypes.SeedUntilDone(ctx, g.influx); return nil })
	// The history API reads the raw bucket and the rollup tiers; a gateway running before the
	// writer and the rollup worker ever did must not answer "retention policy not found".
	g.goLoop(loops, "history provisioning", func(ctx context.Context) error {
		g.influx.ProvisionAllUntilDone(ctx, g.cfg.History.Tiers, g.logger)
		return nil
	})

	if g.ops != nil {
		// Stopped with the loops, after the API listener has drained.
		g.goLoop(loops, "ops server", g.ops.Run)
	}

	errc := make(chan error, 1)
	go func() { errc <- g.e.StartServer(srv) }()
	g.addr.Store(&addr)
	g.logger.Info("gateway listening", "addr", addr, "tls", g.cfg.TLS.Enabled())

	select {
	case err := <-errc:
		return fmt.Errorf("serving http: %w", err)
	case <-ctx.Done():
	}

	began := time.Now()
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.ShutdownTimeout)
	defer cancel()
	shutErr := srv.Shutdown(shutCtx)
	if shutErr != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		shutErr = errors.Join(shutErr, err)
	}
	g.logger.Info("http server stopped", "took", time.Since(began))
	stopLoops()
	began = time.Now()
	g.bgCancel()
	g.bgWG.Wait()
	g.logger.Info("background loops stopped", "took", time.Since(began))
	if shutErr != nil {
		return fmt.Errorf("shutting down http server: %w", shutErr)
	}
	return nil
}

// goLoop runs fn in the background until ctx is done.
func (g *Gateway) goLoop(ctx context.Context, name string, fn func(context.Context) error) {
	g.bgWG.Add(1)
	go func() {
		defer g.bgWG.Done()
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			g.logger.Error("background loop stopped", "loop", name, "err", err)
		}
	}()
}

// background runs fn in the background; fn's context ends when the gateway stops.
func (g *Gateway) background(fn func(ctx context.Context)) {
	g.bgWG.Add(1)
	go func() {
		defer g.bgWG.Done()
		fn(g.bgCtx)
	}()
}

// auditPurgeInterval is how often audit rows past LOGS_RETENTION_DAYS are deleted.
const auditPurgeInterval = time.Hour

func (g *Gateway) purgeAudit(ctx context.Context) error {
	t := time.NewTicker(auditPurgeInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		n, err := g.audit.Purge(pctx, g.cfg.Postgres.LogsRetention())
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			g.logger.Warn("purging audit log failed", "err", err)
		case n > 0:
			g.logger.Info("purged audit log", "rows", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Close stops background work and closes the PostgreSQL and Redis clients, in reverse order of
// opening. Run calls it on return; call it yourself only when Run is never called. It is safe to
// call more than once.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		g.bgCancel()
		g.bgWG.Wait()
		var errs []error
		if g.influx != nil {
			g.influx.Close()
		}
		if g.db != nil {
			if err := g.db.Close(); err != nil {
				errs = append(errs, fmt.Errorf("closing postgres: %w", err))
			}
		}
		if g.rdb != nil {
			if err := g.rdb.Close(); err != nil {
				errs = append(errs, fmt.Errorf("closing redis: %w", err))
			}
		}
		g.closeErr = errors.Join(errs...)
	})
	return g.closeErr
}
