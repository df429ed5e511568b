package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/fieldtype"
	"github.com/agentmonitor/agentmonitor/internal/ingestredis"
	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// The dependencies of a Handler, as small consumer-side interfaces.
type (
	// Appender charges the agent's rate for a batch and, when allowed, appends it (canonical
	// line protocol) to the agent's stream shard and refreshes its hot cache, in one Redis round
	// trip (ingestredis.Appender).
	Appender interface {
		Append(ctx context.Context, agentID string, pts []metric.Point, payload []byte, now time.Time) (ingestredis.Result, error)
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
)

// Deps is what a Handler needs. Every member is required except Backlog (nil: never refuse for
// the backlog), Now (nil: time.Now) and Logger (nil: discard).
type Deps struct {
	Appender   Appender
	Backlog    Backlog
	Keys       KeyResolver
	FieldTypes FieldTypes

	// AgentRate and AgentBurst are each agent's rate in points per second and its burst, as the
	// Appender charges them (named in the 429 answer).
	AgentRate, AgentBurst int
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
	appender   Appender
	backlog    Backlog
	keys       KeyResolver
	fieldTypes FieldTypes

	agentRate, agentBurst int
	limits                metric.Limits
	maxBodyBytes          int64

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
		{"Appender", d.Appender != nil}, {"Keys", d.Keys != nil}, {"FieldTypes", d.FieldTypes != nil},
		{"Metrics", d.Metrics != nil},
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
		appender: d.Appender, backlog: d.Backlog, keys: d.Keys, fieldTypes: d.FieldTypes,
		agentRate: d.AgentRate, agentBurst: d.AgentBurst, limits: d.Limits, maxBodyBytes: d.MaxBodyBytes,
		now: d.Now, logger: d.Logger, metrics: d.Metrics,
	}, nil
}
