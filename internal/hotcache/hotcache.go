// Package hotcache keeps the live view of every agent in Redis: the latest value of each series and
// the last few minutes of samples per metric, refreshed by the gateway on each accepted batch in one
// round trip and expiring when an agent goes quiet.
package hotcache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// Config sets how long cached data lives and how much of it an agent may hold.
type Config struct {
	// TTLSeconds is how long an agent's cached data outlives its last accepted batch.
	TTLSeconds int `env:"REDIS_TTL_SECONDS" envDefault:"300" help:"seconds the latest values and recent samples of an agent stay in Redis after its last batch"`
	// Window is how far back the recent samples reach.
	Window time.Duration `env:"HOT_CACHE_WINDOW" envDefault:"5m" help:"how far back GET .../metrics/recent reaches"`
	// MaxSeries bounds the series (metric plus tag set) whose latest value is kept per agent:
	// past it the agent's latest values are reset, so that an agent with an unbounded tag does
	// not grow its hash for ever. The points themselves are stored all the same.
	MaxSeries int `env:"HOT_CACHE_MAX_SERIES" envDefault:"2000" help:"most series per agent whose latest value is cached (past it they are reset)"`
	// MaxSamples caps the recent samples kept per agent and metric (newest kept).
	MaxSamples int `env:"HOT_CACHE_MAX_SAMPLES" envDefault:"10000" help:"most recent samples cached per agent and metric"`
}

// Validate checks that every bound is positive.
func (c Config) Validate() error {
	if c.TTLSeconds < 1 {
		return fmt.Errorf("REDIS_TTL_SECONDS: must be at least 1, got %d", c.TTLSeconds)
	}
	if c.Window <= 0 {
		return fmt.Errorf("HOT_CACHE_WINDOW: must be positive, got %s", c.Window)
	}
	if c.MaxSeries < 1 {
		return fmt.Errorf("HOT_CACHE_MAX_SERIES: must be at least 1, got %d", c.MaxSeries)
	}
	if c.MaxSamples < 1 {
		return fmt.Errorf("HOT_CACHE_MAX_SAMPLES: must be at least 1, got %d", c.MaxSamples)
	}
	return nil
}

// Cache reads and writes the hot data of agents. It is safe for concurrent use.
type Cache struct {
	client redis.UniversalClient
	prefix string
	cfg    Config
	bufs   sync.Pool // *updateBuf
}

// New returns a cache on client whose keys all start with prefix. The caller keeps ownership of
// client.
func New(client redis.UniversalClient, prefix string, cfg Config) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Cache{client: client, prefix: prefix, cfg: cfg}, nil
}

// Key layout. The agent id is a hash tag ({...}) so that every key of one agent lives in one Redis
// Cluster slot and the update script may touch them all.
func (c *Cache) latestKey(agentID string) string { return c.prefix + "hot:{" + agentID + "}:latest" }

func (c *Cache) recentKey(agentID, metricName string) string {
	return c.prefix + "hot:{" + agentID + "}:recent:" + metricName
}

// updateBuf holds the scratch space of one Update call, reused across calls.
type updateBuf struct {
	enc     []byte // every encoded entry and member, back to back
	spans   []span // where each latest entry lies in enc
	samples []span // where each recent sample lies in enc
	args    []any  // arguments of every command, carved into one slice per command
}

type span struct {
	key      string // the series (hash field) of a latest entry, the metric of a sample
	time     int64
	from, to int
}

// Update records points of one agent, accepted at now: the latest value of each series and every
// sample of the last Window, and renews the TTL of what it touched, in one pipelined round trip.
// Points older than now-Window are left out: a batch sent late (an agent flushing its buffer after
// an outage) must not replace newer latest values. Within the window the last batch written wins
// (Redis scripting would make the newest time win, but costs several times the whole update).
// When an agent's latest hash grows past MaxSeries it is reset, and refills with the series the
// agent still sends. In the same round trip it records now as the agent's last accepted batch
// (AcceptedKey), even when every point is older than the window.
func (c *Cache) Update(ctx context.Context, agentID string, points []metric.Point, now time.Time) error {
	b, _ := c.bufs.Get().(*updateBuf)
	if b == nil {
		b = &updateBuf{}
	}
	defer c.release(b)

	cutoff := now.Add(-c.cfg.Window).UnixNano()
	for pi := range points {
		p := &points[pi]
		if p.Time < cutoff {
			continue
		}
		for fi := range p.Fields {
			f := &p.Fields[fi]
			name := metric.Name(p.Measurement, f.Key)
			from := len(b.enc)
			b.enc = appendEntry(b.enc, name, p.Tags, f.Value, p.Time, true)
			b.spans = append(b.spans, span{key: seriesKey(name, p.Tags), time: p.Time, from: from, to: len(b.enc)})
			from = len(b.enc)
			b.enc = appendEntry(b.enc, "", p.Tags, f.Value, p.Time, false)
			b.samples = append(b.samples, span{key: name, time: p.Time, from: from, to: len(b.enc)})
		}
	}
	if len(b.spans) == 0 {
		if err := c.client.HSet(ctx, AcceptedKey(c.prefix), agentID, now.UnixNano()).Err(); err != nil {
			return fmt.Errorf("recording accepted batch of agent %s: %w", agentID, err)
		}
		return nil
	}

	// Within the batch keep only the newest entry of each series (the last one on a tie).
	slices.SortStableFunc(b.spans, func(x, y span) int {
		if c := strings.Compare(x.key, y.key); c != 0 {
			return c
		}
		return cmp.Compare(x.time, y.time)
	})
	latest := b.spans[:0]
	for i, s := range b.spans {
		if i+1 < len(b.spans) && b.spans[i+1].key == s.key {
			continue
		}
		latest = append(latest, s)
	}
	slices.SortStableFunc(b.samples, func(x, y span) int { return strings.Compare(x.key, y.key) })

	// Every command's arguments are carved from one slice with its final capacity reserved,
	// since a pipelined command keeps its argument slice until Exec.
	need := 2 + 2*len(latest) + 2*len(b.samples)
	for i := range b.samples {
		if i == 0 || b.samples[i].key != b.samples[i-1].key {
			need += 2
		}
	}
	if cap(b.args) < need {
		b.args = make([]any, 0, need)
	}
	args := b.args[:0]
	carve := func(start int) []any { return args[start:len(args):len(args)] }

	pipe := c.client.Pipeline()
	ttl := time.Duration(c.cfg.TTLSeconds) * time.Second
	latestKey := c.latestKey(agentID)
	start := len(args)
	args = append(args, "HSET", latestKey)
	for _, s := range latest {
		args = append(args, s.key, b.enc[s.from:s.to])
	}
	pipe.Do(ctx, carve(start)...)
	hlen := pipe.HLen(ctx, latestKey)
	pipe.Expire(ctx, latestKey, ttl)

	minScore := "(" + strconv.FormatInt(cutoff, 10)
	for i := 0; i < len(b.samples); {
		j := i
		for j < len(b.samples) && b.samples[j].key == b.samples[i].key {
			j++
		}
		key := c.recentKey(agentID, b.samples[i].key)
		start := len(args)
		args = append(args, "ZADD", key)
		for _, s := range b.samples[i:j] {
			args = append(args, s.time, b.enc[s.from:s.to])
		}
		pipe.Do(ctx, carve(start)...)
		pipe.ZRemRangeByScore(ctx, key, "-inf", minScore)
		pipe.ZRemRangeByRank(ctx, key, 0, -int64(c.cfg.MaxSamples)-1)
		pipe.Expire(ctx, key, ttl)
		i = j
	}
	b.args = args
	pipe.HSet(ctx, AcceptedKey(c.prefix), agentID, now.UnixNano())
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("updating hot cache of agent %s: %w", agentID, err)
	}
	if hlen.Val() > int64(c.cfg.MaxSeries) {
		if err := c.client.Del(ctx, latestKey).Err(); err != nil {
			return fmt.Errorf("resetting latest values of agent %s: %w", agentID, err)
		}
	}
	return nil
}

// release clears b for its next use and returns it to the pool unless it grew unusually large.
func (c *Cache) release(b *updateBuf) {
	if cap(b.enc) > 1<<20 || cap(b.args) > 1<<16 {
		return
	}
	b.enc = b.enc[:0]
	b.spans = b.spans[:0]
	b.samples = b.samples[:0]
	clear(b.args)
	b.args = b.args[:0]
	c.bufs.Put(b)
}

// agentTag is left out of cached tags: the agent is the key of the cache, and a client-sent
// "agent" tag is replaced on the stream, so showing it would show what was never stored.
const agentTag = "agent"

// seriesKey is the hash field of one series: the metric name then its tags in key order, in line
// protocol's escaping so that distinct tag sets never collide.
func seriesKey(name string, tags []metric.Tag) string {
	if len(tags) == 0 {
		return name
	}
	var sb strings.Builder
	n := len(name)
	for _, t := range tags {
		n += 2 + len(t.Key) + len(t.Value)
	}
	sb.Grow(n + n/8) // room for a few escapes
	sb.WriteString(name)
	for _, t := range tags {
		if t.Key == agentTag {
			continue
		}
		sb.WriteByte(',')
		writeEscaped(&sb, t.Key)
		sb.WriteByte('=')
		writeEscaped(&sb, t.Value)
	}
	return sb.String()
}

func writeEscaped(sb *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', '=', ' ', '\\':
			sb.WriteByte('\\')
		}
		sb.WriteByte(s[i])
	}
}

// appendEntry appends the JSON object served for one value:
// {"metric":...,"tags":{...},"value":...,"time":"RFC 3339"}; the metric member only when withMetric.
func appendEntry(dst []byte, name string, tags []metric.Tag, v metric.Value, ns int64, withMetric bool) []byte {
	dst = append(dst, '{')
	if withMetric {
		dst = append(dst, `"metric":`...)
		dst, _ = jsontext.AppendQuote(dst, name)
		dst = append(dst, ',')
	}
	dst = append(dst, `"tags":{`...)
	first := true
	for _, t := range tags {
		if t.Key == agentTag {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst, _ = jsontext.AppendQuote(dst, t.Key)
		dst = append(dst, ':')
		dst, _ = jsontext.AppendQuote(dst, t.Value)
	}
	dst = append(dst, `},"value":`...)
	dst = appendValue(dst, v)
	dst = append(dst, `,"time":"`...)
	dst = time.Unix(0, ns).UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, `"}`...)
}

func appendValue(dst []byte, v metric.Value) []byte {
	switch v.Kind {
	case metric.KindFloat:
		if math.IsNaN(v.F) || math.IsInf(v.F, 0) {
			return append(dst, "null"...) // the parsers reject these; never emit invalid JSON
		}
		return strconv.AppendFloat(dst, v.F, 'g', -1, 64)
	case metric.KindInt:
		return strconv.AppendInt(dst, v.I, 10)
	case metric.KindUint:
		return strconv.AppendUint(dst, v.U, 10)
	case metric.KindString:
		dst, _ = jsontext.AppendQuote(dst, v.S)
		return dst
	case metric.KindBool:
		return strconv.AppendBool(dst, v.B)
	default:
		return append(dst, "null"...)
	}
}

// Latest returns the latest value of every cached series of the agent, ordered by series (metric,
// then tags), each a JSON object {"metric","tags","value","time"} ready to be served. An agent with
// nothing cached yields an empty slice.
func (c *Cache) Latest(ctx context.Context, agentID string) ([]jsontext.Value, error) {
	m, err := c.client.HGetAll(ctx, c.latestKey(agentID)).Result()
	if err != nil {
		return nil, fmt.Errorf("reading latest values of agent %s: %w", agentID, err)
	}
	fields := make([]string, 0, len(m))
	for f := range m {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	out := make([]jsontext.Value, 0, len(m))
	for _, f := range fields {
		out = append(out, jsontext.Value(m[f]))
	}
	return out, nil
}

// Forget deletes everything cached for the agent, its accepted time included, for when it is
// deleted. It scans the keyspace (SCAN MATCH on the agent's keys), which is fine for a rare
// administrative action.
func (c *Cache) Forget(ctx context.Context, agentID string) error {
	pattern := globEscape(c.prefix+"hot:{"+agentID+"}:") + "*"
	iter := c.client.Scan(ctx, 0, pattern, 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("listing hot-cache keys of agent %s: %w", agentID, err)
	}
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		if err := c.client.Unlink(ctx, keys[:n]...).Err(); err != nil {
			return fmt.Errorf("deleting hot-cache keys of agent %s: %w", agentID, err)
		}
		keys = keys[n:]
	}
	if err := c.client.HDel(ctx, AcceptedKey(c.prefix), agentID).Err(); err != nil {
		return fmt.Errorf("forgetting accepted time of agent %s: %w", agentID, err)
	}
	return nil
}

// globEscape escapes what SCAN MATCH reads as pattern syntax.
func globEscape(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\', '^':
			sb.WriteByte('\\')
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

// ErrInvalidMetric is returned (wrapped) by Recent for a metric name that cannot exist.
var ErrInvalidMetric = errors.New("invalid metric name")

// maxMetricLen bounds a metric name: a measurement and a field name, each far below it.
const maxMetricLen = 1024

// ValidMetric checks that name looks like "measurement.field": valid UTF-8 without control
// characters, with a non-empty part on each side of a dot, at most 1024 bytes.
func ValidMetric(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: metric is required, as measurement.field (e.g. cpu.usage_percent)", ErrInvalidMetric)
	case len(name) > maxMetricLen:
		return fmt.Errorf("%w: metric is longer than %d bytes", ErrInvalidMetric, maxMetricLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: metric is not valid UTF-8", ErrInvalidMetric)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: metric %q contains a control character", ErrInvalidMetric, name)
		}
	}
	dot := strings.IndexByte(name, '.')
	if dot <= 0 || dot == len(name)-1 || strings.LastIndexByte(name, '.') == len(name)-1 {
		return fmt.Errorf("%w: metric %q must be measurement.field (e.g. cpu.usage_percent)", ErrInvalidMetric, name)
	}
	return nil
}

// Recent returns the agent's samples of metric ("measurement.field") from the last Window before
// now, oldest first, each a JSON object {"tags","value","time"} ready to be served.
func (c *Cache) Recent(ctx context.Context, agentID, metricName string, now time.Time) ([]jsontext.Value, error) {
	if err := ValidMetric(metricName); err != nil {
		return nil, err
	}
	cutoff := now.Add(-c.cfg.Window).UnixNano()
	members, err := c.client.ZRangeByScore(ctx, c.recentKey(agentID, metricName), &redis.ZRangeBy{
		Min: strconv.FormatInt(cutoff, 10),
		Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("reading recent samples of agent %s: %w", agentID, err)
	}
	out := make([]jsontext.Value, len(members))
	for i, m := range members {
		out[i] = jsontext.Value(m)
	}
	return out, nil
}
