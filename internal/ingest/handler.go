package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/agentmonitor/agentmonitor/internal/fieldtype"
	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// The dependencies of a Handler, as small consumer-side interfaces.
type (
	// Publisher appends one canonical batch to the agent's stream shard (stream.Publisher).
	Publisher interface {
		Publish(ctx context.Context, agentID string, payload []byte, meta map[string]string) error
	}
	// Backlog reports whether the metrics streams are over their bound (stream.Backlog).
	Backlog interface {
		Over() bool
	}
	// KeyResolver finds the agent of an agent key, keycache.ErrUnknownKey when none
	// (keycache.Cache).
	KeyResolver interface {
		Resolve(ctx context.Context, key string) (string, error)
	}
	// FieldTypes refuses points whose field types differ from those stored (fieldtype.Registry).
	FieldTypes interface {
		Check(ctx context.Context, pts []metric.Point, src fieldtype.Source) error
	}
	// HotCache keeps the latest values and recent samples per agent (hotcache.Cache).
	HotCache interface {
		Update(ctx context.Context, agentID string, pts []metric.Point, now time.Time) error
	}
	// Limiter charges n points against an agent's rate (redis_rate.Limiter).
	Limiter interface {
		AllowN(ctx context.Context, key string, limit redis_rate.Limit, n int) (*redis_rate.Result, error)
	}
)

// Deps is what a Handler needs. Every member is required except Backlog (nil: never refuse for
// the backlog), Now (nil: time.Now) and Logger (nil: discard).
type Deps struct {
	Publisher  Publisher
	Backlog    Backlog
	Keys       KeyResolver
	FieldTypes FieldTypes
	Hot        HotCache
	Limiter    Limiter

	// RateKeyPrefix starts the limiter's key of every agent (the agent id follows).
	RateKeyPrefix string
	// AgentLimit is each agent's rate in points per Period, with its burst.
	AgentLimit redis_rate.Limit
	// Limits bounds one request's points (metric.Limits).
	Limits metric.Limits
	// MaxBodyBytes bounds the body, both as received and after decompression.
	MaxBodyBytes int64

	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *Metrics // from NewMetrics, registered once however many Handlers share it
}

// Handler answers the two ingest routes: JSON and Line. Build it with New.
type Handler struct {
	publisher  Publisher
	backlog    Backlog
	keys       KeyResolver
	fieldTypes FieldTypes
	hot        HotCache
	limiter    Limiter

	rateKeyPrefix string
	agentLimit    redis_rate.Limit
	limits        metric.Limits
	maxBodyBytes  int64

	now     func() time.Time
	logger  *slog.Logger
	metrics *Metrics
}

// New returns a Handler for d, or an error naming a missing dependency.
func New(d Deps) (*Handler, error) {
	var missing []error
	for _, dep := range []struct {
		name string
		ok   bool
	}{
		{"Publisher", d.Publisher != nil}, {"Keys", d.Keys != nil}, {"FieldTypes", d.FieldTypes != nil},
		{"Hot", d.Hot != nil}, {"Limiter", d.Limiter != nil}, {"Metrics", d.Metrics != nil},
		{"MaxBodyBytes", d.MaxBodyBytes > 0},
	} {
		if !dep.ok {
			missing = append(missing, fmt.Errorf("ingest: %s is required", dep.name))
		}
	}
	if err := errors.Join(missing...); err != nil {
		return nil, err
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{
		publisher: d.Publisher, backlog: d.Backlog, keys: d.Keys, fieldTypes: d.FieldTypes, hot: d.Hot, limiter: d.Limiter,
		rateKeyPrefix: d.RateKeyPrefix, agentLimit: d.AgentLimit, limits: d.Limits, maxBodyBytes: d.MaxBodyBytes,
		now: d.Now, logger: d.Logger, metrics: d.Metrics,
	}, nil
}
