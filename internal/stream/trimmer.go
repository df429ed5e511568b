package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/agentmonitor/agentmonitor/internal/ops"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// TrimmerConfig configures a Trimmer.
type TrimmerConfig struct {
	// Prefix is prepended to every Redis key.
	Prefix string `env:"REDIS_KEY_PREFIX" help:"prefix for every Redis key this deployment uses"`
	// Shards is the number of metrics streams.
	Shards int `env:"STREAM_SHARDS" envDefault:"4" help:"number of metrics streams (shards); the same for every binary"`
	// Groups must all have acked an entry before it is trimmed. A listed group that does not exist
	// yet is created at id 0, so that it sees every entry; groups not listed but present on a
	// stream are waited for too.
	Groups []string `env:"STREAM_GROUPS" envDefault:"influx-writer,pg-sync" envSeparator:"," help:"consumer groups that must ack an entry before it is trimmed"`
	// DeadLetterMaxAge is how long dead letters are kept when nobody replays them; each trim
	// deletes the older ones (XTRIM MINID). 0 keeps them until replayed.
	DeadLetterMaxAge time.Duration `env:"DEAD_LETTER_MAX_AGE" envDefault:"720h" help:"how long dead letters are kept unless replayed (0: until replayed)"`
	// OtherDeadLetters are further dead-letter streams (full keys) trimmed by DeadLetterMaxAge
	// beside the metrics streams' own (DeadLetterKey), for example the alert consumers'.
	OtherDeadLetters []string
	// Interval is the time between two trims in Run.
	Interval time.Duration `env:"STREAM_TRIM_INTERVAL" envDefault:"5s" help:"how often the streams are trimmed"`
	// Registerer receives the trimmer's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// setDefaults fills the zero fields from their envDefault tags, the one place the defaults are
// written (config.Defaults).
func (c *TrimmerConfig) setDefaults() error {
	if err := config.Defaults(c); err != nil {
		return err
	}
	groups := make([]string, len(c.Groups)) // " pg-sync" from the environment means pg-sync
	for i, g := range c.Groups {
		groups[i] = strings.TrimSpace(g)
	}
	c.Groups = groups
	return nil
}

// Validate reports a configuration that cannot work.
func (c TrimmerConfig) Validate() error {
	var errs []error
	if c.Shards < 1 || c.Shards > 1024 {
		errs = append(errs, fmt.Errorf("STREAM_SHARDS=%d: want 1 to 1024", c.Shards))
	}
	if len(c.Groups) == 0 {
		errs = append(errs, errors.New("STREAM_GROUPS is empty: trimming would delete entries nobody read"))
	}
	for _, g := range c.Groups {
		if strings.TrimSpace(g) == "" {
			errs = append(errs, fmt.Errorf("STREAM_GROUPS=%q: empty group name", strings.Join(c.Groups, ",")))
			break
		}
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("STREAM_TRIM_INTERVAL=%s: want > 0", c.Interval))
	}
	if c.DeadLetterMaxAge < 0 {
		errs = append(errs, fmt.Errorf("DEAD_LETTER_MAX_AGE=%s: want >= 0", c.DeadLetterMaxAge))
	}
	return errors.Join(errs...)
}

// Trimmer deletes, from each metrics stream, the entries every consumer group has acked: XTRIM
// MINID at the smallest id some group still needs. Never MAXLEN, which deletes entries regardless
// of the groups. Several Trimmers may run at once: trimming below a MINID is idempotent.
type Trimmer struct {
	client  redis.UniversalClient
	cfg     TrimmerConfig
	keys    []string
	logger  *slog.Logger
	trimmed prometheus.Counter
}

// NewTrimmer returns a Trimmer for cfg. Zero config fields take their defaults. A nil logger
// discards logs. The Trimmer does not own client.
func NewTrimmer(client redis.UniversalClient, cfg TrimmerConfig, logger *slog.Logger) (*Trimmer, error) {
	if client == nil {
		return nil, errors.New("creating stream trimmer: nil redis client")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("creating stream trimmer: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("creating stream trimmer: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	trimmed, err := ops.Register(cfg.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "trimmed_total",
		Help: "Entries deleted from the metrics streams after every group acked them.",
	}))
	if err != nil {
		return nil, fmt.Errorf("creating stream trimmer: registering metrics: %w", err)
	}
	return &Trimmer{
		client:  client,
		cfg:     cfg,
		keys:    StreamKeys(cfg.Prefix, cfg.Shards),
		logger:  logger.With("component", "stream.trimmer"),
		trimmed: trimmed,
	}, nil
}

// Run trims every Interval until ctx is done, then returns nil. Errors are logged; the next tick
// tries again. At start it logs an error naming the streams beyond STREAM_SHARDS that hold
// entries some group has not handled (ShardsBeyond): they are neither read nor trimmed by a
// deployment with this shard count.
func (t *Trimmer) Run(ctx context.Context) error {
	if unhandled, handled, err := ShardsBeyond(ctx, t.client, t.cfg.Prefix, t.cfg.Shards); err != nil {
		t.logger.Warn("checking for streams beyond STREAM_SHARDS failed", "err", err)
	} else {
		if len(unhandled) > 0 {
			t.logger.Error("streams beyond STREAM_SHARDS hold unhandled entries that no consumer will read",
				"err", &ShardsBeyondError{Shards: t.cfg.Shards, Streams: unhandled})
		}
		if len(handled) > 0 {
			t.logger.Warn("streams beyond STREAM_SHARDS hold only handled entries; delete them", "streams", handled)
		}
	}
	tick := time.NewTicker(t.cfg.Interval)
	defer tick.Stop()
	for {
		if _, err := t.TrimOnce(ctx); err != nil && ctx.Err() == nil {
			t.logger.Warn("trimming streams failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// TrimOnce trims every metrics stream once and returns how many entries it deleted. A stream on
// which a configured group is missing is not trimmed: the group is created at id 0 instead. An
// error on one stream does not stop the others; the errors are joined.
func (t *Trimmer) TrimOnce(ctx context.Context) (int64, error) {
	var total int64
	var errs []error
	for _, key := range t.keys {
		n, err := t.trim(ctx, key)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	t.trimmed.Add(float64(total))
	for _, key := range append([]string{DeadLetterKey(t.cfg.Prefix)}, t.cfg.OtherDeadLetters...) {
		if n, err := TrimDeadLetters(ctx, t.client, key, t.cfg.DeadLetterMaxAge, time.Now()); err != nil {
			errs = append(errs, err)
		} else if n > 0 {
			t.logger.Info("deleted dead letters older than DEAD_LETTER_MAX_AGE", "stream", key, "deleted", n, "max_age", t.cfg.DeadLetterMaxAge)
		}
	}
	return total, errors.Join(errs...)
}

func (t *Trimmer) trim(ctx context.Context, key string) (int64, error) {
	minID, ok, err := t.safeMinID(ctx, key)
	if err != nil || !ok {
		return 0, err
	}
	n, err := t.client.XTrimMinID(ctx, key, minID).Result()
	if err != nil {
		return 0, fmt.Errorf("trimming %s below %s: %w", key, minID, err)
	}
	if n > 0 {
		t.logger.Debug("trimmed stream", "stream", key, "min_id", minID, "deleted", n)
	}
	return n, nil
}

// safeMinID returns the smallest id any group on key still needs: for each group, its smallest
// pending id, or the id after its last-delivered id when nothing is pending. ok is false when the
// stream must not be trimmed now (a configured group was missing and has just been created, or
// the stream does not exist).
//
// XINFO GROUPS and each group's XPENDING summary are read in one MULTI, so that they describe the
// same moment: read apart, a group could deliver entries between the two reads and its new pending
// entries would be trimmed.
func (t *Trimmer) safeMinID(ctx context.Context, key string) (string, bool, error) {
	groups, err := t.client.XInfoGroups(ctx, key).Result()
	if err != nil {
		if strings.Contains(err.Error(), "no such key") {
			// Create the configured groups so that nothing published from now on escapes them.
			return "", false, t.createMissing(ctx, key, nil)
		}
		return "", false, fmt.Errorf("reading groups of %s: %w", key, err)
	}
	have := make(map[string]bool, len(groups))
	for _, g := range groups {
		have[g.Name] = true
	}
	missing := false
	for _, g := range t.cfg.Groups {
		missing = missing || !have[g]
	}
	if missing {
		return "", false, t.createMissing(ctx, key, have)
	}

	need, ok, err := groupsNeed(ctx, t.client, key, groups)
	if err != nil || !ok {
		return "", false, err
	}
	return need.String(), true, nil
}

func (t *Trimmer) createMissing(ctx context.Context, key string, have map[string]bool) error {
	var missing []string
	for _, g := range t.cfg.Groups {
		if !have[g] {
			missing = append(missing, g)
		}
	}
	for _, g := range missing {
		if err := createGroups(ctx, t.client, []string{key}, g); err != nil {
			return err
		}
		t.logger.Info("created missing consumer group at id 0; not trimming this round", "stream", key, "group", g)
	}
	return nil
}

// ID is a parsed stream entry id, milliseconds-sequence, ordered as Redis orders them.
type ID struct{ ms, seq uint64 }

// ParseID parses an entry id as Redis writes it ("1700000000000-3").
func ParseID(s string) (ID, error) {
	msPart, seqPart, ok := strings.Cut(s, "-")
	if !ok {
		return ID{}, fmt.Errorf("malformed stream id %q", s)
	}
	ms, err1 := strconv.ParseUint(msPart, 10, 64)
	seq, err2 := strconv.ParseUint(seqPart, 10, 64)
	if err1 != nil || err2 != nil {
		return ID{}, fmt.Errorf("malformed stream id %q", s)
	}
	return ID{ms, seq}, nil
}

// Next returns the smallest id greater than id.
func (id ID) Next() ID {
	if id.seq == math.MaxUint64 {
		return ID{id.ms + 1, 0}
	}
	return ID{id.ms, id.seq + 1}
}

// Less reports whether id comes before o in a stream.
func (id ID) Less(o ID) bool {
	return id.ms < o.ms || id.ms == o.ms && id.seq < o.seq
}

func (id ID) String() string {
	return strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
}
