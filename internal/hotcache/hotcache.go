// Package hotcache keeps the live view of every agent in Redis: the latest point of each point
// shape (measurement, tags, field names) in one hash, merged series by series when read, and the
// last few minutes of samples as one compact entry per accepted batch, refreshed by the gateway
// with a constant number of commands per batch (inside its ingest script, see LuaRefresh) and
// expiring when an agent goes quiet. Each read is one Redis round trip.
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
	// MaxSeries bounds the latest entries kept per agent, one per point shape (measurement, tag
	// set and field names, see Encode), each holding the latest values of that shape's series
	// (at most INGEST_MAX_FIELDS): past it the agent's latest values are reset, so that an agent
	// with an unbounded tag does not grow its hash for ever. The points themselves are stored
	// all the same.
	MaxSeries int `env:"HOT_CACHE_MAX_SERIES" envDefault:"2000" help:"most point shapes (measurement, tag set, field names) per agent whose latest values are cached (past it they are reset)"`
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
//	P hot:{i}:<agent>:points  hash: point shape -> the latest point of that shape (see Encode)
//	P hot:{i}:<agent>:recent  stream: one entry per accepted batch (field "p", see appendPoint)
//	P agents:accepted:{i}     hash: agent -> Unix ns of its last accepted batch (AcceptedKey)
//
// Before the points hash, the latest values were a hash hot:{i}:<agent>:latest of one JSON value
// per series, and recent entries had a field "s": nothing reads them any more, and what an older
// gateway left expires REDIS_TTL_SECONDS after its last write (recent entries leave the window).
func (c *Cache) tag(agentID string) string {
	return "{" + strconv.Itoa(stream.ShardFor(agentID, c.shards)) + "}"
}

// Keys returns the agent's keys in the order LuaRefresh takes them: its latest points, its
// recent samples and the accepted record of its shard.
func (c *Cache) Keys(agentID string) [3]string {
	tag := c.tag(agentID)
	base := c.prefix + "hot:" + tag + ":" + agentID
	return [3]string{base + ":points", base + ":recent", c.prefix + "agents:accepted:" + tag}
}

// LuaRefresh defines the Lua function hot_refresh(points, recent, accepted, argv, i), which
// writes a Batch whose arguments (Batch.AppendArgs) start at argv[i]. Every command goes through
// redis.pcall: a failed cache write never fails the script it is part of (the ingest script has
// already appended the batch). It returns the errors, joined by "; ", or "".
//
// Its commands are a constant number whatever the batch holds, and as few as can be in the usual
// case (each costs Redis several microseconds in a script): HSET of the accepted time, one HSET
// of the latest points (one per 2000 shapes above 2000, since Lua's unpack is bounded;
// HOT_CACHE_MAX_SERIES keeps it one by default), one XADD of the recent entry (NOMKSTREAM,
// trimmed to the entry bound by MAXLEN). The TTLs are refreshed, and the recent entries trimmed
// by time, once per refresh period (see refreshPeriod) rather than on every batch: the points
// HSET writes a marker field "@<period>" with them, so that it adds a field exactly when the
// period is new (or a shape is new, or the hash was created): then it drops the markers of the
// 12 periods before (a key lives at most 11 periods without a refresh, see refreshPeriod),
// checks the bound (HLEN, DEL past MaxSeries) and EXPIREs the hash, and XTRIM MINID and EXPIRE
// follow the XADD. An XADD that finds no stream creates it and sets its TTL too.
const LuaRefresh = `
local function hot_refresh(points, recent, accepted, argv, i)
  local errs = {}
  local function try(...)
    local r = redis.pcall(...)
    if type(r) == 'table' and r.err then errs[#errs + 1] = r.err end
    return r
  end
  try('HSET', accepted, argv[i], argv[i + 1])
  local ttl = argv[i + 2]
  local period = tonumber(argv[i + 8])
  local nl = tonumber(argv[i + 7])
  local j = i + 9
  local refresh = false
  if nl < 0 then
    try('DEL', points)
    refresh = true
  elseif nl > 0 then
    local last = j + 2 * nl - 1
    local added = 0
    for from = j, last, 4000 do
      local n
      if from == j then
        n = try('HSET', points, '@' .. period, '', unpack(argv, from, math.min(from + 3999, last)))
      else
        n = try('HSET', points, unpack(argv, from, math.min(from + 3999, last)))
      end
      if type(n) == 'number' then added = added + n end
    end
    j = last + 1
    if added > 0 then
      refresh = true
      local stale = {}
      for d = 1, 12 do stale[d] = '@' .. (period - d) end
      try('HDEL', points, unpack(stale))
      local n = try('HLEN', points)
      if type(n) == 'number' and n > tonumber(argv[i + 3]) + 1 then
        try('DEL', points)
      else
        try('EXPIRE', points, ttl)
      end
    end
  end
  local blob = argv[j]
  if blob ~= nil and blob ~= '' then
    local id, max = argv[i + 6], argv[i + 5]
    local r = redis.pcall('XADD', recent, 'NOMKSTREAM', 'MAXLEN', max, id, 'p', blob)
    if type(r) == 'table' and r.err then
      -- An entry stamped by a clock ahead of ours is already there: let Redis pick the id.
      try('XADD', recent, 'MAXLEN', max, '*', 'p', blob)
    elseif not r then
      try('XADD', recent, 'MAXLEN', max, id, 'p', blob)
      refresh = true
    end
    if refresh then
      try('XTRIM', recent, 'MINID', argv[i + 4])
      try('EXPIRE', recent, ttl)
    end
  end
  return table.concat(errs, '; ')
end
`

// refreshPeriod is how often (at most) the hot keys of an active agent get their TTL refreshed
// and its recent entries are trimmed by time, in seconds: a tenth of REDIS_TTL_SECONDS (rounded
// up), at least a second. The keys expire TTL plus one period after the refresh, so between TTL
// and TTL plus a period after the agent's last batch (at most 11 periods after the refresh);
// entries older than the window stay up to a period longer (reads filter them out).
func (c *Config) refreshPeriod() int64 { return int64(max(1, (c.TTLSeconds+9)/10)) }

// Batch is the hot-cache refresh of one accepted batch, encoded once by Encode and written by
// Update or, as arguments of a larger script, by whoever embeds LuaRefresh. Release it after
// the write.
type Batch struct {
	c      *Cache
	now    time.Time
	enc    []byte  // shape keys and latest entries, back to back
	shapes []shape // one per point within the window
	recent []byte  // the recent entry (see appendPoint); empty when no point is in the window
	keep   []int   // over MaxSamples: per point, the index of its first field kept in recent
	order  []int
	// at holds, per point within the window, where its samples (appendPoint) start and end in
	// enc, so that the recent entry copies them instead of formatting every value again.
	at     []int
	pairs  int // latest entries to write; -1: more shapes than MaxSeries, reset the hash
	values int // samples in recent
}

// shape locates the latest entry of one point in enc: the hash field enc[key:keyEnd] and the
// entry enc[entry:end].
type shape struct {
	key, keyEnd, entry, end int
	time                    int64
}

func (b *Batch) shapeKey(s *shape) []byte { return b.enc[s.key:s.keyEnd] }

// latestFormat starts every entry of the points hash: a reader skips entries of another format.
const latestFormat = 1

// Encode encodes the refresh of points of one agent, accepted at now, leaving out points older
// than now-Window (a batch sent late, by an agent flushing its buffer after an outage, must not
// replace newer latest values).
//
// The latest values are kept per point shape: the hash field of a point is its measurement, tag
// set and field names, as line protocol escapes them ("cpu,host=h1 idle,user"), and its value
// the whole point (latestFormat, the accepted time, the point's index in its batch, then
// appendPoint). A typical request of 6 points writes 6 fields however many values they hold; a
// reader merges the entries series by series (see Latest), so a point that sends only some of a
// measurement's fields updates only those. Within a batch the newest point of a shape wins (the
// last one on a tie); across batches the last batch written wins. A batch with more shapes than
// MaxSeries resets the hash (it refills with the shapes the agent still sends); one with more
// samples than MaxSamples keeps the newest in its recent entry.
func (c *Cache) Encode(points []metric.Point, now time.Time) *Batch {
	b, _ := c.bufs.Get().(*Batch)
	if b == nil {
		b = &Batch{c: c}
	}
	b.now = now
	nowNs := now.UnixNano()
	cutoff := now.Add(-c.cfg.Window).UnixNano()
	b.at = slices.Grow(b.at[:0], 2*len(points))[:2*len(points)]
	for pi := range points {
		p := &points[pi]
		if p.Time < cutoff {
			continue
		}
		s := shape{time: p.Time, key: len(b.enc)}
		b.enc = appendEscaped(b.enc, p.Measurement)
		b.enc = appendTagKey(b.enc, p.Tags)
		for fi := range p.Fields {
			if fi == 0 {
				b.enc = append(b.enc, ' ')
			} else {
				b.enc = append(b.enc, ',')
			}
			b.enc = appendEscaped(b.enc, p.Fields[fi].Key)
		}
		s.keyEnd, s.entry = len(b.enc), len(b.enc)
		b.enc = append(b.enc, latestFormat)
		b.enc = binary.AppendVarint(b.enc, nowNs)
		b.enc = binary.AppendUvarint(b.enc, uint64(pi))
		b.at[2*pi] = len(b.enc)
		b.enc = appendPoint(b.enc, p, 0, nowNs)
		s.end = len(b.enc)
		b.at[2*pi+1] = s.end
		b.shapes = append(b.shapes, s)
		b.values += len(p.Fields)
	}
	if len(b.shapes) == 0 {
		return b
	}
	// By shape, oldest first (stable: the last one in the batch wins a tie).
	slices.SortStableFunc(b.shapes, func(x, y shape) int {
		if c := bytes.Compare(b.shapeKey(&x), b.shapeKey(&y)); c != 0 {
			return c
		}
		return cmp.Compare(x.time, y.time)
	})
	for i := range b.shapes {
		if i+1 == len(b.shapes) || !bytes.Equal(b.shapeKey(&b.shapes[i+1]), b.shapeKey(&b.shapes[i])) {
			b.pairs++
		}
	}
	if b.pairs > c.cfg.MaxSeries {
		b.pairs = -1
	}
	if b.values > c.cfg.MaxSamples {
		b.dropOldest(points, cutoff, b.values-c.cfg.MaxSamples)
		b.values = c.cfg.MaxSamples
	}
	for pi := range points {
		p := &points[pi]
		if p.Time < cutoff {
			continue
		}
		from := 0
		if b.keep != nil {
			if from = b.keep[pi]; from == len(p.Fields) {
				continue
			}
		}
		if len(b.recent) == 0 {
			b.recent = binary.AppendVarint(b.recent, nowNs)
		}
		if from == 0 { // the same bytes as the point's latest entry ends with
			b.recent = append(b.recent, b.enc[b.at[2*pi]:b.at[2*pi+1]]...)
		} else {
			b.recent = appendPoint(b.recent, p, from, nowNs)
		}
	}
	return b
}

// dropOldest leaves the n oldest samples (of the points at or after cutoff) out of the recent
// entry: b.keep[i] is the first field of points[i] kept.
func (b *Batch) dropOldest(points []metric.Point, cutoff int64, n int) {
	b.keep = slices.Grow(b.keep[:0], len(points))[:len(points)]
	b.order = b.order[:0]
	for i := range points {
		b.keep[i] = 0
		if points[i].Time >= cutoff {
			b.order = append(b.order, i)
		}
	}
	slices.SortStableFunc(b.order, func(x, y int) int { return cmp.Compare(points[x].Time, points[y].Time) })
	for _, i := range b.order {
		if n == 0 {
			break
		}
		drop := min(n, len(points[i].Fields))
		b.keep[i] = drop
		n -= drop
	}
}

// appendPoint appends a point's samples from field from on: uvarint length and bytes of its
// measurement, its time (varint Unix ns, less base: usually 0 or close), uvarint length and
// bytes of the JSON of its tags (the agent tag left out), uvarint length of the field block,
// then the block: per field, uvarint length and bytes of its key, then of the JSON of its value.
// A recent entry is base (varint Unix ns, the accepted time) then these points back to back; a
// reader skips the field block of another measurement without decoding it, and builds the JSON
// objects it serves only for the samples it returns.
func appendPoint(dst []byte, p *metric.Point, from int, base int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(p.Measurement)))
	dst = append(dst, p.Measurement...)
	dst = binary.AppendVarint(dst, p.Time-base)
	tags := len(dst)
	dst = endLenPrefixed(appendTags(append(dst, 0), p.Tags), tags)
	block := len(dst)
	dst = append(dst, 0)
	for i := from; i < len(p.Fields); i++ {
		f := &p.Fields[i]
		dst = binary.AppendUvarint(dst, uint64(len(f.Key)))
		dst = append(dst, f.Key...)
		value := len(dst)
		dst = endLenPrefixed(appendValue(append(dst, 0), f.Value), value)
	}
	return endLenPrefixed(dst, block)
}

// endLenPrefixed writes, at dst[at], the uvarint length of what follows it in dst: the caller
// reserved that one byte (append(dst, 0)) before appending, as the length is not known before.
// One byte holds the usual case, under 128 bytes; for a longer length the bytes are moved.
func endLenPrefixed(dst []byte, at int) []byte {
	n := len(dst) - at - 1
	if n < 0x80 {
		dst[at] = byte(n)
		return dst
	}
	var l [binary.MaxVarintLen64]byte
	ln := binary.PutUvarint(l[:], uint64(n))
	dst = append(dst, l[1:ln]...) // room for the longer length
	copy(dst[at+ln:], dst[at+1:at+1+n])
	copy(dst[at:], l[:ln])
	return dst
}

// Values returns the number of samples the batch adds to the recent entries.
func (b *Batch) Values() int { return b.values }

// AppendArgs appends to args the arguments hot_refresh (LuaRefresh) reads for agentID: the
// agent, the accepted time (Unix ns), the TTL in seconds (plus a refresh period), MaxSeries, the
// oldest entry id kept (now-Window, in ms), the most entries kept, the id of the new entry, the
// number of latest entries (-1: reset), the refresh period now is in, the shape and entry of
// each latest entry, and the recent entry. The []byte arguments point into b: keep b until the
// command is sent.
func (b *Batch) AppendArgs(args []any, agentID string) []any {
	c := b.c
	nowMs := b.now.UnixMilli()
	maxEntries := 1
	if b.values > 0 {
		maxEntries = max(1, c.cfg.MaxSamples/b.values)
	}
	period := c.cfg.refreshPeriod()
	args = append(args, agentID, b.now.UnixNano(), int64(c.cfg.TTLSeconds)+period, c.cfg.MaxSeries,
		max(nowMs-c.cfg.Window.Milliseconds(), 0), maxEntries, strconv.FormatInt(nowMs, 10)+"-*", b.pairs,
		b.now.Unix()/period)
	if b.pairs > 0 {
		for i := range b.shapes {
			s := &b.shapes[i]
			if i+1 < len(b.shapes) && bytes.Equal(b.shapeKey(&b.shapes[i+1]), b.shapeKey(s)) {
				continue // an older point of the same shape
			}
			args = append(args, b.shapeKey(s), b.enc[s.entry:s.end])
		}
	}
	return append(args, b.recent)
}

// Release returns b to its cache for reuse, unless it grew unusually large.
func (b *Batch) Release() {
	if cap(b.enc) > 1<<20 || cap(b.recent) > 1<<20 || cap(b.shapes) > 1<<16 || cap(b.keep) > 1<<16 || cap(b.at) > 1<<17 {
		return
	}
	b.enc, b.shapes, b.recent, b.keep, b.order, b.at = b.enc[:0], b.shapes[:0], b.recent[:0], nil, b.order[:0], b.at[:0]
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

// appendTagKey appends the tags part of a shape (the hash field of one point: the measurement,
// its tags in key order, then its field names), in line protocol's escaping so that distinct
// shapes never collide: ",key=value" per tag, the agent tag left out.
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

// Latest returns the latest value of every cached series of the agent (see AppendLatest), each
// a JSON object {"metric","tags","value","time"}.
func (c *Cache) Latest(ctx context.Context, agentID string) ([]jsontext.Value, error) {
	r, err := c.readLatest(ctx, agentID)
	if err != nil {
		return nil, err
	}
	defer r.release()
	var buf []byte
	ends := make([]int, 0, len(r.series))
	for i := range r.series {
		if r.winner(i) {
			buf = r.appendObject(buf, i)
			ends = append(ends, len(buf))
		}
	}
	out := make([]jsontext.Value, len(ends))
	from := 0
	for i, end := range ends {
		out[i] = jsontext.Value(buf[from:end:end])
		from = end
	}
	return out, nil
}

// AppendLatest appends to dst the JSON array of the latest value of every cached series of the
// agent, ordered by metric, then tags (their JSON), each an object {"metric","tags","value",
// "time"}, from one HVALS of its points hash, and returns how many it appended. The value of a
// series is the one of the last batch that sent it (the newest point of that batch on a tie).
// An agent with nothing cached yields [].
func (c *Cache) AppendLatest(ctx context.Context, dst []byte, agentID string) ([]byte, int, error) {
	r, err := c.readLatest(ctx, agentID)
	if err != nil {
		return dst, 0, err
	}
	defer r.release()
	dst = append(dst, '[')
	n := 0
	for i := range r.series {
		if r.winner(i) {
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = r.appendObject(dst, i)
			n++
		}
	}
	return append(dst, ']'), n, nil
}

// latestRead is the decoded points hash of one agent: every series of every entry, sorted by
// metric, tags, then newest first, so that the first of each metric and tags is its latest.
type latestRead struct {
	names  []byte // metric names ("measurement.field"), back to back
	series []seriesValue
}

type seriesValue struct {
	name, nameEnd int    // names[name:nameEnd]
	tags, value   string // JSON
	time          int64
	accepted      int64 // when its batch was accepted (Unix ns)
	seq           int   // the point's index in its batch
}

var latestReads = sync.Pool{New: func() any { return new(latestRead) }}

func (r *latestRead) name(i int) []byte { return r.names[r.series[i].name:r.series[i].nameEnd] }

// winner reports whether series i is the latest of its metric and tags.
func (r *latestRead) winner(i int) bool {
	return i == 0 || r.series[i].tags != r.series[i-1].tags || !bytes.Equal(r.name(i), r.name(i-1))
}

func (r *latestRead) appendObject(dst []byte, i int) []byte {
	s := &r.series[i]
	dst = append(dst, `{"metric":`...)
	dst, _ = jsontext.AppendQuote(dst, r.name(i))
	dst = append(dst, `,"tags":`...)
	dst = append(dst, s.tags...)
	dst = append(dst, `,"value":`...)
	dst = append(dst, s.value...)
	return appendTime(dst, s.time)
}

func (r *latestRead) release() {
	if cap(r.names) > 1<<20 || cap(r.series) > 1<<16 {
		return
	}
	clear(r.series) // drop the strings of this read
	r.names, r.series = r.names[:0], r.series[:0]
	latestReads.Put(r)
}

func (c *Cache) readLatest(ctx context.Context, agentID string) (*latestRead, error) {
	keys := c.Keys(agentID)
	entries, err := c.client.HVals(ctx, keys[0]).Result()
	if err != nil {
		return nil, fmt.Errorf("reading latest values of agent %s: %w", agentID, err)
	}
	r := latestReads.Get().(*latestRead)
	for _, e := range entries {
		if err := r.add(e); err != nil {
			r.release()
			return nil, fmt.Errorf("reading latest values of agent %s: %w", agentID, err)
		}
	}
	slices.SortFunc(r.series, func(x, y seriesValue) int {
		if c := bytes.Compare(r.names[x.name:x.nameEnd], r.names[y.name:y.nameEnd]); c != 0 {
			return c
		}
		if c := strings.Compare(x.tags, y.tags); c != 0 {
			return c
		}
		if c := cmp.Compare(y.accepted, x.accepted); c != 0 {
			return c
		}
		if c := cmp.Compare(y.time, x.time); c != 0 {
			return c
		}
		return cmp.Compare(y.seq, x.seq)
	})
	return r, nil
}

// add decodes one entry of the points hash (see Encode). An entry of another format is skipped:
// a gateway of another version may have written it.
func (r *latestRead) add(e string) error {
	if len(e) == 0 || e[0] != latestFormat {
		return nil
	}
	accepted, n := varint(e[1:])
	if n <= 0 {
		return errCorruptEntry
	}
	e = e[1+n:]
	seq, n := uvarint(e)
	if n <= 0 {
		return errCorruptEntry
	}
	p, rest, err := cutPoint(e[n:], accepted)
	if err != nil || rest != "" {
		return errCorruptEntry
	}
	for fields := p.fields; fields != ""; {
		var key, value string
		var ok bool
		if key, fields, ok = cutUvarintString(fields); !ok {
			return errCorruptEntry
		}
		if value, fields, ok = cutUvarintString(fields); !ok {
			return errCorruptEntry
		}
		from := len(r.names)
		r.names = append(r.names, p.measurement...)
		r.names = append(r.names, '.')
		r.names = append(r.names, key...)
		r.series = append(r.series, seriesValue{name: from, nameEnd: len(r.names), tags: p.tags, value: value,
			time: p.time, accepted: accepted, seq: int(seq)})
	}
	return nil
}

// point is a point as appendPoint encodes it, its fields left encoded.
type point struct {
	measurement, tags, fields string
	time                      int64
}

// cutPoint decodes the point at the start of s (see appendPoint), whose time is relative to
// base, and returns the rest of s.
func cutPoint(s string, base int64) (p point, rest string, err error) {
	var ok bool
	if p.measurement, s, ok = cutUvarintString(s); !ok {
		return p, "", errCorruptEntry
	}
	var n int
	if p.time, n = varint(s); n <= 0 {
		return p, "", errCorruptEntry
	}
	p.time += base
	if p.tags, s, ok = cutUvarintString(s[n:]); !ok {
		return p, "", errCorruptEntry
	}
	if p.fields, s, ok = cutUvarintString(s); !ok {
		return p, "", errCorruptEntry
	}
	return p, s, nil
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
		blob, ok := m.Values[recentField].(string)
		if !ok {
			continue // an entry of an older gateway
		}
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

// recentField is the field of a recent entry (see appendPoint). Entries without it (field "s",
// written by an older gateway) are skipped.
const recentField = "p"

type sample struct {
	time        int64
	tags, value string // JSON
}

var errCorruptEntry = errors.New("corrupt hot-cache entry")

// scanRecent appends to dst the samples of metricName at or after cutoff in one recent entry.
// A metric name "a.b.c" is field "b.c" of measurement "a" and field "c" of measurement "a.b":
// both are its samples, as both are one series key in InfluxDB's line protocol.
func scanRecent(dst []sample, blob, metricName string, cutoff int64) ([]sample, error) {
	base, n := varint(blob)
	if n <= 0 {
		return dst, errCorruptEntry
	}
	for blob = blob[n:]; blob != ""; {
		p, rest, err := cutPoint(blob, base)
		if err != nil {
			return dst, err
		}
		blob = rest
		field, ok := strings.CutPrefix(metricName, p.measurement)
		if !ok || field == "" || field[0] != '.' || p.time < cutoff {
			continue
		}
		field = field[1:]
		for fields := p.fields; fields != ""; {
			key, tail, ok := cutUvarintString(fields)
			if !ok {
				return dst, errCorruptEntry
			}
			value, tail, ok := cutUvarintString(tail)
			if !ok {
				return dst, errCorruptEntry
			}
			fields = tail
			if key == field {
				dst = append(dst, sample{time: p.time, tags: p.tags, value: value})
				break // a point has each field once
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

// varint reads a varint from the start of s (binary.Varint, without copying s to a []byte).
func varint(s string) (int64, int) {
	var b [binary.MaxVarintLen64]byte
	n := copy(b[:], s)
	return binary.Varint(b[:n])
}

// uvarint reads a uvarint from the start of s.
func uvarint(s string) (uint64, int) {
	var b [binary.MaxVarintLen64]byte
	n := copy(b[:], s)
	return binary.Uvarint(b[:n])
}
