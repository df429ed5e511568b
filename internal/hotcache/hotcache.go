// Package hotcache keeps the live view of every agent in Redis: the latest value of each series in
// one hash, and the last few minutes of samples as one compact entry per accepted batch, refreshed
// by the gateway with a constant number of commands per batch (inside its ingest script, see
// LuaRefresh) and expiring when an agent goes quiet. Each read is one Redis round trip.
package hotcache

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
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
	"github.com/agentmonitor/agentmonitor/internal/stream"
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
	// MaxSamples bounds the recent samples (values) kept per agent, all metrics together: a
	// batch keeps its newest MaxSamples, and an agent's recent entries are cut to
	// MaxSamples / (samples of the batch being written), so the agent holds about MaxSamples and
	// never more than twice as many.
	MaxSamples int `env:"HOT_CACHE_MAX_SAMPLES" envDefault:"10000" help:"about how many recent samples (values, all metrics together) are cached per agent"`
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
	shards int
	cfg    Config
	script *redis.Script // LuaRefresh alone, for Update
	bufs   sync.Pool     // *Batch
}

// New returns a cache on client whose keys all start with prefix. shards is STREAM_SHARDS: an
// agent's keys carry the hash tag of its stream shard (stream.ShardFor), so that one server-side
// script can append to the shard and refresh the agent's cache together. The caller keeps
// ownership of client.
func New(client redis.UniversalClient, prefix string, shards int, cfg Config) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Cache{client: client, prefix: prefix, shards: max(shards, 1), cfg: cfg,
		script: redis.NewScript(LuaRefresh + "\nreturn hot_refresh(KEYS[1], KEYS[2], KEYS[3], ARGV, 1)\n")}, nil
}

// Config returns the cache's configuration.
func (c *Cache) Config() Config { return c.cfg }

// Key layout (see the README): every key of an agent carries the hash tag of its stream shard,
// {i}, so that they all live in one Redis Cluster slot with the shard's stream.
//
//	P hot:{i}:<agent>:latest  hash: series -> JSON of its latest value
//	P hot:{i}:<agent>:recent  stream: one entry per accepted batch (field "s", see appendRecent)
//	P agents:accepted:{i}     hash: agent -> Unix ns of its last accepted batch (AcceptedKey)
func (c *Cache) tag(agentID string) string {
	return "{" + strconv.Itoa(stream.ShardFor(agentID, c.shards)) + "}"
}

// Keys returns the agent's keys in the order LuaRefresh takes them: its latest values, its
// recent samples and the accepted record of its shard.
func (c *Cache) Keys(agentID string) [3]string {
	tag := c.tag(agentID)
	base := c.prefix + "hot:" + tag + ":" + agentID
	return [3]string{base + ":latest", base + ":recent", c.prefix + "agents:accepted:" + tag}
}

// LuaRefresh defines the Lua function hot_refresh(latest, recent, accepted, argv, i), which
// writes a Batch whose arguments (Batch.AppendArgs) start at argv[i]. Every command goes through
// redis.pcall: a failed cache write never fails the script it is part of (the ingest script has
// already appended the batch). It returns the errors, joined by "; ", or "". Its commands are a
// constant number whatever the batch holds: HSET of the accepted time; one HSET of the latest
// values (one per 2000 series above 2000, since Lua's unpack is bounded; HOT_CACHE_MAX_SERIES
// keeps it one by default), HLEN, then EXPIRE or, past MaxSeries, DEL; one XADD of the recent
// entry trimmed by time (MINID), XTRIM to the entry bound and EXPIRE.
const LuaRefresh = `
local function hot_refresh(latest, recent, accepted, argv, i)
  local errs = {}
  local function try(...)
    local r = redis.pcall(...)
    if type(r) == 'table' and r.err then errs[#errs + 1] = r.err end
    return r
  end
  local ttl = argv[i + 2]
  try('HSET', accepted, argv[i], argv[i + 1])
  local nl = tonumber(argv[i + 7])
  local j = i + 8
  if nl < 0 then
    try('DEL', latest)
  elseif nl > 0 then
    local last = j + 2 * nl - 1
    for from = j, last, 4000 do
      try('HSET', latest, unpack(argv, from, math.min(from + 3999, last)))
    end
    j = last + 1
    local n = try('HLEN', latest)
    if type(n) == 'number' and n > tonumber(argv[i + 3]) then
      try('DEL', latest)
    else
      try('EXPIRE', latest, ttl)
    end
  end
  local blob = argv[j]
  if blob ~= nil and blob ~= '' then
    local r = redis.pcall('XADD', recent, 'MINID', argv[i + 4], argv[i + 6], 's', blob)
    if type(r) == 'table' and r.err then
      -- An entry stamped by a clock ahead of ours is already there: let Redis pick the id.
      try('XADD', recent, 'MINID', argv[i + 4], '*', 's', blob)
    end
    try('XTRIM', recent, 'MAXLEN', argv[i + 5])
    try('EXPIRE', recent, ttl)
  end
  return table.concat(errs, '; ')
end
`

// Batch is the hot-cache refresh of one accepted batch, encoded once by Encode and written by
// Update or, as arguments of a larger script, by whoever embeds LuaRefresh. Release it after
// the write.
type Batch struct {
	c      *Cache
	now    time.Time
	enc    []byte // series keys and JSON entries, back to back
	spans  []span
	recent []byte // the recent entry (see appendRecent); empty when no point is in the window
	tmp    []byte
	pairs  int // latest values to write; -1: more series than MaxSeries, reset the hash
	values int // samples in recent
}

// span locates one value of the batch in enc: its series key enc[key:keyEnd] (the metric name
// is enc[key:nameEnd]), its latest entry enc[json:end], and within it the JSON of its tags
// enc[tags:tagsEnd] and of its value enc[value:valueEnd].
type span struct {
	key, nameEnd, keyEnd int
	json, end            int
	tags, tagsEnd        int
	value, valueEnd      int
	time                 int64
	dropped              bool // left out of recent (over MaxSamples)
}

func (b *Batch) seriesKey(s *span) []byte { return b.enc[s.key:s.keyEnd] }
func (b *Batch) name(s *span) []byte      { return b.enc[s.key:s.nameEnd] }

// Encode encodes the refresh of points of one agent, accepted at now: the latest value of each
// series and every sample, leaving out points older than now-Window (a batch sent late, by an
// agent flushing its buffer after an outage, must not replace newer latest values). Within the
// batch the newest value of a series wins (the last one on a tie); across batches the last batch
// written wins. A batch with more series than MaxSeries resets the latest hash (it refills with
// the series the agent still sends); one with more samples than MaxSamples keeps the newest.
func (c *Cache) Encode(points []metric.Point, now time.Time) *Batch {
	b, _ := c.bufs.Get().(*Batch)
	if b == nil {
		b = &Batch{c: c}
	}
	b.now = now
	cutoff := now.Add(-c.cfg.Window).UnixNano()
	for pi := range points {
		p := &points[pi]
		if p.Time < cutoff {
			continue
		}
		for fi := range p.Fields {
			f := &p.Fields[fi]
			var s span
			s.time = p.Time
			s.key = len(b.enc)
			b.enc = append(b.enc, p.Measurement...)
			b.enc = append(b.enc, '.')
			b.enc = append(b.enc, f.Key...)
			s.nameEnd = len(b.enc)
			b.enc = appendTagKey(b.enc, p.Tags)
			s.keyEnd = len(b.enc)
			s.json = len(b.enc)
			b.enc = append(b.enc, `{"metric":`...)
			b.enc, _ = jsontext.AppendQuote(b.enc, b.enc[s.key:s.nameEnd])
			b.enc = append(b.enc, ',')
			b.enc = append(b.enc, `"tags":`...)
			s.tags = len(b.enc)
			b.enc = appendTags(b.enc, p.Tags)
			s.tagsEnd = len(b.enc)
			b.enc = append(b.enc, `,"value":`...)
			s.value = len(b.enc)
			b.enc = appendValue(b.enc, f.Value)
			s.valueEnd = len(b.enc)
			b.enc = appendTime(b.enc, p.Time)
			s.end = len(b.enc)
			b.spans = append(b.spans, s)
		}
	}
	if len(b.spans) == 0 {
		return b
	}
	// By series, oldest first (stable: the last one written wins a tie).
	slices.SortStableFunc(b.spans, func(x, y span) int {
		if c := bytes.Compare(b.seriesKey(&x), b.seriesKey(&y)); c != 0 {
			return c
		}
		return cmp.Compare(x.time, y.time)
	})
	series := 0
	for i := range b.spans {
		if i+1 == len(b.spans) || !bytes.Equal(b.seriesKey(&b.spans[i+1]), b.seriesKey(&b.spans[i])) {
			series++
		}
	}
	b.pairs = series
	if series > c.cfg.MaxSeries {
		b.pairs = -1
	}
	b.values = len(b.spans)
	if b.values > c.cfg.MaxSamples {
		b.dropOldest(b.values - c.cfg.MaxSamples)
		b.values = c.cfg.MaxSamples
	}
	b.appendRecent()
	return b
}

// dropOldest marks the n oldest samples as left out of the recent entry.
func (b *Batch) dropOldest(n int) {
	idx := make([]int, len(b.spans))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(x, y int) int { return cmp.Compare(b.spans[x].time, b.spans[y].time) })
	for _, i := range idx[:n] {
		b.spans[i].dropped = true
	}
}

// appendRecent encodes the recent entry: for each run of samples of one metric, uvarint length
// and bytes of the metric name, uvarint length of the block, then the block: per sample its time
// (varint Unix ns), then uvarint length and bytes of the JSON of its tags, then of its value.
// A reader skips another metric's block without decoding it, and builds the JSON objects it
// serves ({"tags","value","time"}) only for the samples it returns.
func (b *Batch) appendRecent() {
	for i := 0; i < len(b.spans); {
		name := b.name(&b.spans[i])
		j := i
		b.tmp = b.tmp[:0]
		for ; j < len(b.spans) && bytes.Equal(b.name(&b.spans[j]), name); j++ {
			s := &b.spans[j]
			if s.dropped {
				continue
			}
			b.tmp = binary.AppendVarint(b.tmp, s.time)
			b.tmp = binary.AppendUvarint(b.tmp, uint64(s.tagsEnd-s.tags))
			b.tmp = append(b.tmp, b.enc[s.tags:s.tagsEnd]...)
			b.tmp = binary.AppendUvarint(b.tmp, uint64(s.valueEnd-s.value))
			b.tmp = append(b.tmp, b.enc[s.value:s.valueEnd]...)
		}
		if len(b.tmp) > 0 {
			b.recent = binary.AppendUvarint(b.recent, uint64(len(name)))
			b.recent = append(b.recent, name...)
			b.recent = binary.AppendUvarint(b.recent, uint64(len(b.tmp)))
			b.recent = append(b.recent, b.tmp...)
		}
		i = j
	}
}

// Values returns the number of samples the batch adds to the recent entries.
func (b *Batch) Values() int { return b.values }

// AppendArgs appends to args the arguments hot_refresh (LuaRefresh) reads for agentID: the
// agent, the accepted time (Unix ns), the TTL in seconds, MaxSeries, the oldest entry id kept
// (now-Window, in ms), the most entries kept, the id of the new entry, the number of latest
// pairs (-1: reset), the pairs, and the recent entry. The []byte arguments point into b: keep b
// until the command is sent.
func (b *Batch) AppendArgs(args []any, agentID string) []any {
	c := b.c
	nowMs := b.now.UnixMilli()
	maxEntries := 1
	if b.values > 0 {
		maxEntries = max(1, c.cfg.MaxSamples/b.values)
	}
	args = append(args, agentID, b.now.UnixNano(), c.cfg.TTLSeconds, c.cfg.MaxSeries,
		max(nowMs-c.cfg.Window.Milliseconds(), 0), maxEntries, strconv.FormatInt(nowMs, 10)+"-*", b.pairs)
	if b.pairs > 0 {
		for i := range b.spans {
			s := &b.spans[i]
			if i+1 < len(b.spans) && bytes.Equal(b.seriesKey(&b.spans[i+1]), b.seriesKey(s)) {
				continue // an older value of the same series
			}
			args = append(args, b.seriesKey(s), b.enc[s.json:s.end])
		}
	}
	return append(args, b.recent)
}

// Release returns b to its cache for reuse, unless it grew unusually large.
func (b *Batch) Release() {
	if cap(b.enc) > 1<<20 || cap(b.recent) > 1<<20 || cap(b.spans) > 1<<16 {
		return
	}
	b.enc, b.spans, b.recent, b.tmp = b.enc[:0], b.spans[:0], b.recent[:0], b.tmp[:0]
	b.pairs, b.values = 0, 0
	b.c.bufs.Put(b)
}

// Update records points of one agent, accepted at now (see Encode), and now as the agent's last
// accepted batch, in one server-side script: the same writes the gateway's ingest script makes
// together with the append (package ingestredis). It returns the first error Redis reported.
func (c *Cache) Update(ctx context.Context, agentID string, points []metric.Point, now time.Time) error {
	b := c.Encode(points, now)
	defer b.Release()
	keys := c.Keys(agentID)
	res, err := c.script.Run(ctx, c.client, keys[:], b.AppendArgs(nil, agentID)...).Text()
	if err != nil {
		return fmt.Errorf("updating hot cache of agent %s: %w", agentID, err)
	}
	if res != "" {
		return fmt.Errorf("updating hot cache of agent %s: %s", agentID, res)
	}
	return nil
}

// agentTag is left out of cached tags: the agent is the key of the cache, and a client-sent
// "agent" tag is replaced on the stream, so showing it would show what was never stored.
const agentTag = "agent"

// appendTagKey appends the tags part of a series key (the hash field of one series: the metric
// name then its tags in key order), in line protocol's escaping so that distinct tag sets never
// collide: ",key=value" per tag, the agent tag left out.
func appendTagKey(dst []byte, tags []metric.Tag) []byte {
	for _, t := range tags {
		if t.Key == agentTag {
			continue
		}
		dst = append(dst, ',')
		dst = appendEscaped(dst, t.Key)
		dst = append(dst, '=')
		dst = appendEscaped(dst, t.Value)
	}
	return dst
}

func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', '=', ' ', '\\':
			dst = append(dst, '\\')
		}
		dst = append(dst, s[i])
	}
	return dst
}

// appendTags appends the JSON object of tags, the agent tag left out.
func appendTags(dst []byte, tags []metric.Tag) []byte {
	dst = append(dst, '{')
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
	return append(dst, '}')
}

// appendTime appends the end of an entry: ,"time":"RFC 3339"}.
func appendTime(dst []byte, ns int64) []byte {
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
// then tags), each a JSON object {"metric","tags","value","time"} ready to be served, from one
// HGETALL. An agent with nothing cached yields an empty slice.
func (c *Cache) Latest(ctx context.Context, agentID string) ([]jsontext.Value, error) {
	keys := c.Keys(agentID)
	m, err := c.client.HGetAll(ctx, keys[0]).Result()
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
// deleted: its keys are known (Keys), so one pipelined round trip does it.
func (c *Cache) Forget(ctx context.Context, agentID string) error {
	keys := c.Keys(agentID)
	_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Unlink(ctx, keys[0], keys[1])
		p.HDel(ctx, keys[2], agentID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("deleting hot cache of agent %s: %w", agentID, err)
	}
	return nil
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
// now, oldest first (equal times in the order of their JSON, identical samples once), each a JSON
// object {"tags","value","time"} ready to be served, from one XRANGE of the agent's recent
// entries.
func (c *Cache) Recent(ctx context.Context, agentID, metricName string, now time.Time) ([]jsontext.Value, error) {
	if err := ValidMetric(metricName); err != nil {
		return nil, err
	}
	cutoff := now.Add(-c.cfg.Window).UnixNano()
	keys := c.Keys(agentID)
	msgs, err := c.client.XRange(ctx, keys[1], "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("reading recent samples of agent %s: %w", agentID, err)
	}
	var found []sample
	for _, m := range msgs {
		blob, _ := m.Values[recentField].(string)
		found, err = scanRecent(found, blob, metricName, cutoff)
		if err != nil {
			return nil, fmt.Errorf("reading recent samples of agent %s: entry %s: %w", agentID, m.ID, err)
		}
	}
	// The order of the JSON objects served: by time, then tags, then value.
	slices.SortFunc(found, func(x, y sample) int {
		if c := cmp.Compare(x.time, y.time); c != 0 {
			return c
		}
		if c := strings.Compare(x.tags, y.tags); c != 0 {
			return c
		}
		return strings.Compare(x.value, y.value)
	})
	found = slices.Compact(found)
	size := 0
	for _, s := range found {
		size += len(s.tags) + len(s.value) + len(`{"tags":,"value":,"time":"2006-01-02T15:04:05.999999999Z07:00"}`)
	}
	buf := make([]byte, 0, size)
	out := make([]jsontext.Value, len(found))
	for i, s := range found {
		from := len(buf)
		buf = append(buf, `{"tags":`...)
		buf = append(buf, s.tags...)
		buf = append(buf, `,"value":`...)
		buf = append(buf, s.value...)
		buf = appendTime(buf, s.time)
		out[i] = jsontext.Value(buf[from:len(buf):len(buf)])
	}
	return out, nil
}

// recentField is the field of a recent entry (see appendRecent).
const recentField = "s"

type sample struct {
	time        int64
	tags, value string // JSON
}

var errCorruptEntry = errors.New("corrupt recent entry")

// scanRecent appends to dst the samples of metricName at or after cutoff in one recent entry.
func scanRecent(dst []sample, blob, metricName string, cutoff int64) ([]sample, error) {
	for len(blob) > 0 {
		name, rest, ok := cutUvarintString(blob)
		if !ok {
			return dst, errCorruptEntry
		}
		block, rest, ok := cutUvarintString(rest)
		if !ok {
			return dst, errCorruptEntry
		}
		blob = rest
		if name != metricName {
			continue
		}
		for len(block) > 0 {
			ns, n := binary.Varint([]byte(block[:min(len(block), binary.MaxVarintLen64)]))
			if n <= 0 {
				return dst, errCorruptEntry
			}
			tags, tail, ok := cutUvarintString(block[n:])
			if !ok {
				return dst, errCorruptEntry
			}
			value, tail, ok := cutUvarintString(tail)
			if !ok {
				return dst, errCorruptEntry
			}
			block = tail
			if ns >= cutoff {
				dst = append(dst, sample{time: ns, tags: tags, value: value})
			}
		}
	}
	return dst, nil
}

// cutUvarintString reads a uvarint length and that many bytes from the start of s.
func cutUvarintString(s string) (field, rest string, ok bool) {
	var l uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		b := s[i]
		l |= uint64(b&0x7f) << shift
		if b < 0x80 {
			s = s[i+1:]
			if l > uint64(len(s)) {
				return "", "", false
			}
			return s[:l], s[l:], true
		}
		shift += 7
	}
	return "", "", false
}
