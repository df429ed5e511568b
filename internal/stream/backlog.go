package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/redis/go-redis/v9"
)

// BacklogConfig configures a Backlog.
type BacklogConfig struct {
	// Prefix is prepended to every Redis key.
	Prefix string `env:"REDIS_KEY_PREFIX" help:"prefix for every Redis key this deployment uses"`
	// Shards is the number of metrics streams.
	Shards int `env:"STREAM_SHARDS" envDefault:"4" help:"number of metrics streams (shards); the same for every binary"`
	// Max is the most entries the metrics streams may hold together before ingest is refused.
	Max int64 `env:"STREAM_MAX_BACKLOG" envDefault:"1000000" help:"entries the metrics streams may hold, all shards together, before ingest answers 503"`
	// Interval is how often the lengths are read.
	Interval time.Duration `env:"STREAM_BACKLOG_INTERVAL" envDefault:"500ms" help:"how often the stream lengths are checked"`
}

// setDefaults fills the zero fields from their envDefault tags, the one place the defaults are
// written (config.Defaults).
func (c *BacklogConfig) setDefaults() error { return config.Defaults(c) }

// Validate reports a configuration that cannot work.
func (c BacklogConfig) Validate() error {
	var errs []error
	if c.Shards < 1 || c.Shards > 1024 {
		errs = append(errs, fmt.Errorf("STREAM_SHARDS=%d: want 1 to 1024", c.Shards))
	}
	if c.Max < 1 {
		errs = append(errs, fmt.Errorf("STREAM_MAX_BACKLOG=%d: want > 0", c.Max))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("STREAM_BACKLOG_INTERVAL=%s: want > 0", c.Interval))
	}
	return errors.Join(errs...)
}

// Backlog tells the gateway, cheaply and per request, whether the metrics streams hold more than
// Max entries, so that it answers 503 instead of letting Redis run out of memory. The bound is on
// the sum of XLEN over all shards: what Redis holds, acked entries waiting for the trimmer
// included. The value is refreshed by Run; until the first refresh the backlog is not over.
type Backlog struct {
	client redis.UniversalClient
	cfg    BacklogConfig
	keys   []string
	logger *slog.Logger

	length atomic.Int64
	over   atomic.Bool
}

// NewBacklog returns a Backlog for cfg. Zero config fields take their defaults. A nil logger
// discards logs. The Backlog does not own client.
func NewBacklog(client redis.UniversalClient, cfg BacklogConfig, logger *slog.Logger) (*Backlog, error) {
	if client == nil {
		return nil, errors.New("creating stream backlog: nil redis client")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("creating stream backlog: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("creating stream backlog: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Backlog{
		client: client,
		cfg:    cfg,
		keys:   StreamKeys(cfg.Prefix, cfg.Shards),
		logger: logger.With("component", "stream.backlog"),
	}, nil
}

// Over reports whether the streams held more than Max entries at the last refresh. It does not
// touch Redis and is safe for concurrent use.
func (b *Backlog) Over() bool { return b.over.Load() }

// Len returns the entries the streams held, all shards together, at the last refresh.
func (b *Backlog) Len() int64 { return b.length.Load() }

// Refresh reads the length of every stream (one pipelined XLEN each) and updates Over and Len.
// On error the previous values are kept: while Redis is unreachable, publishing fails anyway.
func (b *Backlog) Refresh(ctx context.Context) error {
	pipe := b.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(b.keys))
	for i, k := range b.keys {
		cmds[i] = pipe.XLen(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("reading stream lengths: %w", err)
	}
	var total int64
	for _, c := range cmds {
		total += c.Val()
	}
	b.length.Store(total)
	over := total > b.cfg.Max
	if b.over.Swap(over) != over {
		if over {
			b.logger.Warn("stream backlog over its bound: ingest is refused", "entries", total, "max", b.cfg.Max)
		} else {
			b.logger.Info("stream backlog back under its bound", "entries", total, "max", b.cfg.Max)
		}
	}
	return nil
}

// Run refreshes every Interval until ctx is done, then returns nil. Errors are logged.
func (b *Backlog) Run(ctx context.Context) error {
	t := time.NewTicker(b.cfg.Interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, b.cfg.Interval)
		if err := b.Refresh(rctx); err != nil && ctx.Err() == nil {
			b.logger.Warn("refreshing stream backlog failed", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
