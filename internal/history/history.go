// Package history answers trend queries over InfluxDB's raw points and rollup tiers: it checks the
// parameters, picks the tier, builds InfluxQL from validated and quoted parts only, stitches the
// newest windows (not rolled up yet) from the finer tiers, and re-aggregates to the asked width.
package history

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/agentmonitor/agentmonitor/internal/influx"
)

// Config bounds what one history query may cost InfluxDB, and says how long each rollup tier is
// kept (a tier whose retention does not reach back to a query's start is not chosen for it).
type Config struct {
	MaxPoints    int           `env:"HISTORY_MAX_POINTS" envDefault:"10000" help:"most points one history answer may hold; more is a 400 asking for a larger every"`
	QueryTimeout time.Duration `env:"HISTORY_QUERY_TIMEOUT" envDefault:"10s" help:"how long a history query may run in InfluxDB before it is answered 504"`

	// Tiers are the rollup tiers' retentions, the same settings the rollup worker provisions.
	Tiers influx.TierConfig
}

// DefaultConfig returns the defaults the environment gives.
func DefaultConfig() Config {
	var c Config
	// Only a tag that does not parse can fail here, and the config tests parse every tag.
	_ = config.Defaults(&c)
	return c
}

// Validate names every setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.MaxPoints < 100 {
		errs = append(errs, fmt.Errorf("HISTORY_MAX_POINTS=%d: want at least 100", c.MaxPoints))
	}
	if c.QueryTimeout <= 0 {
		errs = append(errs, fmt.Errorf("HISTORY_QUERY_TIMEOUT=%s: want > 0", c.QueryTimeout))
	}
	errs = append(errs, c.Tiers.Validate())
	return errors.Join(errs...)
}

// retention returns how long tier name is kept, 0 for ever.
func (c Config) retention(name string) time.Duration {
	t, _ := tierByName(name)
	return time.Duration(c.Tiers.RetentionDays(t)) * 24 * time.Hour
}

// Store runs InfluxQL; *influx.Client is one.
type Store interface {
	QueryQL(ctx context.Context, stmts string) ([][]influx.QLSeries, error)
}

// Location is where one tier lives: an InfluxQL database and retention policy ("" is the
// database's default policy).
type Location struct {
	Database, RP string
}

// Layout says where the raw points and the rollup tiers are stored (HISTORY-CONTRACT.md).
type Layout struct {
	Raw          Location
	Tiers        map[string]Location // by tier name ("1m")
	RawRetention time.Duration       // how long raw points are kept (METRICS_RETENTION_DAYS), 0 for ever
}

// LayoutOf derives the layout from an InfluxDB client's buckets: on 1.x "db" or "db/rp" for raw
// points and "db/rollup_1m" for the tiers; on 2.x the buckets "metrics" and "metrics_1m", read
// through 2.x's virtual DBRP mappings (database = bucket name, default retention policy).
func LayoutOf(c *influx.Client, rawRetentionDays int) Layout {
	db, rp := splitBucket(c.Bucket())
	l := Layout{Raw: Location{db, rp}, Tiers: map[string]Location{}, RawRetention: time.Duration(rawRetentionDays) * 24 * time.Hour}
	for _, t := range influx.Tiers {
		db, rp := splitBucket(c.TierBucket(t))
		l.Tiers[t.Name] = Location{db, rp}
	}
	return l
}

func splitBucket(b string) (db, rp string) {
	for i := 0; i < len(b); i++ {
		if b[i] == '/' {
			return b[:i], b[i+1:]
		}
	}
	return b, ""
}

// Engine answers history queries. It is safe for concurrent use.
type Engine struct {
	store  Store
	layout Layout
	cfg    Config
	now    func() time.Time
}

// New returns an engine reading through store. now may be nil (time.Now).
func New(store Store, layout Layout, cfg Config, now func() time.Time) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if layout.Raw.Database == "" {
		return nil, errors.New("history: layout without a database for raw points")
	}
	for _, t := range influx.Tiers {
		if layout.Tiers[t.Name].Database == "" {
			return nil, fmt.Errorf("history: layout without a database for tier %s", t.Name)
		}
	}
	if now == nil {
		now = time.Now
	}
	return &Engine{store: store, layout: layout, cfg: cfg, now: now}, nil
}

// TagFilter keeps only series whose tag Key has Value.
type TagFilter struct {
	Key, Value string
}

// Query is one history question, its parameters checked by the Parse functions.
type Query struct {
	Measurement, Field string
	Agents             []string    // the agents (tag "agent") to read; nil reads every agent
	Tags               []TagFilter // series must have all of these
	GroupBy            []string    // tag keys of one series each; nil: one series per tag set
	OmitAgent          bool        // leave the tag "agent" out of the series' tags (one agent's view)
	Fn                 string      // mean, min, max, sum, count, last, p95, p99
	Start, End         time.Time   // [Start, End)
	Every              time.Duration
	Tier               string // "" chooses; "raw", "1m", ... forces a tier
}

// Result is the answer to a Query, ready to be served as JSON.
type Result struct {
	Metric string    `json:"metric"`
	Fn     string    `json:"fn"`
	Every  string    `json:"every"`
	Tier   string    `json:"tier"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Series []Series  `json:"series"`
}

// Series is the windows of one tag set (or group), oldest first.
type Series struct {
	Tags   map[string]string `json:"tags"`
	Points []Point           `json:"points"`
}

// Point is one window, labelled by its start.
type Point struct {
	Time  time.Time `json:"time"`
	Value float64   `json:"value"`
}

// ErrTimeout is returned (wrapped) when a query ran past HISTORY_QUERY_TIMEOUT.
var ErrTimeout = errors.New("history query timed out")

// QueryError is a statement InfluxDB refused although its parts were valid, such as an
// aggregate over a string field.
type QueryError struct{ Msg string }

// Error returns InfluxDB's message.
func (e *QueryError) Error() string { return "influxdb refused the query: " + e.Msg }
