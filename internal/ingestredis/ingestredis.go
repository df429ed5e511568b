// Package ingestredis is the Redis side of the gateway's ingest path. One server-side script
// charges the agent's rate (GCRA, as go-redis/redis_rate does it), appends the batch to the
// agent's stream shard in Watermill's wire format, records the agent's rate state and refreshes
// its hot cache (package hotcache): a constant number of Redis commands in one round trip,
// whatever the batch holds. Concurrent batches of one shard share a script call (group commit,
// see Appender). Every key the script touches carries the hash tag of the shard, {i}, so it runs
// on Redis Cluster as on one Redis.
//
// With WaitReplicas set, the script and a WAIT are sent in one pipeline on one connection to the
// shard's master (WAIT only covers the writes of its own connection), and an append fewer
// replicas confirmed is reported as a *ReplicaError.
package ingestredis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// WaitConfig asks for the replication of every append before it is acknowledged.
type WaitConfig struct {
	// Replicas is how many replicas must confirm an append (WAIT) before the gateway answers
	// 204; 0 does not wait.
	Replicas int `env:"REDIS_WAIT_REPLICAS" envDefault:"0" help:"replicas that must confirm each accepted batch (Redis WAIT) before the gateway answers 204; 0: do not wait"`
	// Timeout bounds the wait; fewer confirmations by then answer 503.
	Timeout time.Duration `env:"REDIS_WAIT_TIMEOUT" envDefault:"1s" help:"how long the gateway waits for REDIS_WAIT_REPLICAS confirmations before answering 503 (at most 2s)"`
}

// maxWaitTimeout keeps a WAIT under go-redis's default read timeout (3 s), which also bounds
// the reply of a WAIT.
const maxWaitTimeout = 2 * time.Second

// Validate reports a setting that cannot work.
func (c WaitConfig) Validate() error {
	if c.Replicas < 0 || c.Replicas > 100 {
		return fmt.Errorf("REDIS_WAIT_REPLICAS=%d: want 0 to 100", c.Replicas)
	}
	if c.Replicas > 0 && (c.Timeout < time.Millisecond || c.Timeout > maxWaitTimeout) {
		return fmt.Errorf("REDIS_WAIT_TIMEOUT=%s: want 1ms to %s", c.Timeout, maxWaitTimeout)
	}
	return nil
}

// GroupConfig sets the group commit of Appender: how concurrent appends to one stream shard share
// a script call.
type GroupConfig struct {
	// MaxGroup is the most batches one script call appends; 1 sends every batch on its own call,
	// with no queue (as before group commit). 0 is the default, 64.
	MaxGroup int `env:"REDIS_INGEST_MAX_GROUP" envDefault:"64" help:"most batches of one stream shard appended by one Redis script call (group commit of concurrent requests, see The ingest path in Redis); 1: one call per batch"`
	// InFlight is how many script calls of one shard may be in flight at once; batches arriving
	// while all are busy wait and go together in the next call. 0 is the default, 2.
	InFlight int `env:"REDIS_INGEST_IN_FLIGHT" envDefault:"2" help:"script calls per stream shard in flight at once; batches arriving while all are busy go together in the next call (unused when REDIS_INGEST_MAX_GROUP=1)"`
}

const (
	defaultMaxGroup = 64
	defaultInFlight = 2
	// maxGroupBytes bounds the arguments of one group call (payloads and hot-cache entries, about
	// what goes on the wire): a call of more would hold up the calls of the other shards, whose
	// scripts Redis runs one at a time. A single larger batch goes alone.
	maxGroupBytes = 1 << 20
)

// Validate reports a setting that cannot work.
func (c GroupConfig) Validate() error {
	if c.MaxGroup < 0 || c.MaxGroup > 1024 {
		return fmt.Errorf("REDIS_INGEST_MAX_GROUP=%d: want 1 to 1024 (0: %d)", c.MaxGroup, defaultMaxGroup)
	}
	if c.InFlight < 0 || c.InFlight > 64 {
		return fmt.Errorf("REDIS_INGEST_IN_FLIGHT=%d: want 1 to 64 (0: %d)", c.InFlight, defaultInFlight)
	}
	return nil
}

// Config configures an Appender.
type Config struct {
	// Prefix starts every key (REDIS_KEY_PREFIX).
	Prefix string
	// Shards is the number of metrics streams (STREAM_SHARDS); it must be the one the hot cache
	// was built with.
	Shards int
	// Rate points per Period each agent may send, with Burst above it (GCRA).
	Rate   int
	Burst  int
	Period time.Duration
	Wait   WaitConfig
	Group  GroupConfig
}

// Appender runs the ingest script. It is safe for concurrent use.
//
// Group commit: much of what a small request costs is the script call itself, in Redis (EVALSHA,
// the script's setup, the socket) as in the gateway (the round trip's syscalls), so concurrent
// appends to one shard share a call. Each shard allows Group.InFlight calls at once; an Append
// that finds a free slot sends its batch at once, alone (a lone request at idle waits for
// nothing), and one that finds every slot busy queues. When a call returns, its slot passes to
// the oldest queued Append, which sends up to Group.MaxGroup queued batches (and about
// maxGroupBytes of arguments) in one call: the batching is natural, no timer; the busier the
// shard, the larger its groups. The script handles the batches of a group one after the other,
// exactly as if each had its own call (see script), and every Append gets its own Result or
// error.
type Appender struct {
	client  redis.UniversalClient
	hot     *hotcache.Cache
	cfg     Config
	streams []string
	queues  []shardQueue // by shard
	calls   sync.Pool    // *call
	groups  sync.Pool    // *groupArgs
}

// shardQueue holds the script calls of one shard in flight and the appends waiting for one.
// pending is not empty only while busy == InFlight.
type shardQueue struct {
	mu      sync.Mutex
	busy    int     // calls in flight
	pending []*call // queued appends, oldest first
}

// call is one Append: its batch's part of a group's keys and arguments, and its outcome.
type call struct {
	ctx   context.Context
	agent string
	keys  [4]string // the rate state, then hotcache's keys (Cache.Keys)
	args  []any     // cost, Watermill fields, hot_refresh's arguments (see script)
	size  int       // about the bytes of args, for maxGroupBytes
	hot   *hotcache.Batch
	meta  []byte
	// ready receives once when a queued call has its outcome, or has to send the group lead.
	ready chan struct{}
	lead  []*call  // the group this call sends (lead[0] is the call), set with ready
	one   [1]*call // the group of this call alone
	res   Result
	err   error
}

// groupArgs are the reusable keys and arguments of one group call.
type groupArgs struct {
	keys []string
	args []any
	live []*call
}

// New returns an Appender writing through client and hot's key layout. The caller keeps
// ownership of client.
func New(client redis.UniversalClient, hot *hotcache.Cache, cfg Config) (*Appender, error) {
	switch {
	case client == nil || hot == nil:
		return nil, errors.New("ingestredis: a Redis client and a hot cache are required")
	case cfg.Rate < 1 || cfg.Burst < 1 || cfg.Period <= 0:
		return nil, fmt.Errorf("ingestredis: rate %d per %s with burst %d: want positive values", cfg.Rate, cfg.Period, cfg.Burst)
	}
	if err := cfg.Wait.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Group.Validate(); err != nil {
		return nil, err
	}
	cfg.Shards = max(cfg.Shards, 1)
	if cfg.Group.MaxGroup == 0 {
		cfg.Group.MaxGroup = defaultMaxGroup
	}
	if cfg.Group.InFlight == 0 {
		cfg.Group.InFlight = defaultInFlight
	}
	return &Appender{client: client, hot: hot, cfg: cfg, streams: stream.StreamKeys(cfg.Prefix, cfg.Shards),
		queues: make([]shardQueue, cfg.Shards)}, nil
}

// RateKey is the key of agentID's rate state: P ingest:{i}:rate:<agent>, in its shard's slot.
func RateKey(prefix string, shards int, agentID string) string {
	return prefix + "ingest:{" + strconv.Itoa(stream.ShardFor(agentID, shards)) + "}:rate:" + agentID
}

// Result is what Append did with a batch.
type Result struct {
	// Allowed is false when the agent is over its rate: then nothing was written at all.
	Allowed bool
	// RetryAfter is when the batch would be allowed, when it was not.
	RetryAfter time.Duration
	// ID is the stream entry of an allowed batch.
	ID string
	// CacheErr reports hot-cache (or rate-state) writes that failed after the append: the batch
	// is stored all the same.
	CacheErr error
}

// ReplicaError is returned by Append when fewer replicas than asked confirmed the append within
// the timeout. The batch is stored on the master (and will be processed); it may be lost in a
// failover.
type ReplicaError struct {
	Want, Got int
	Timeout   time.Duration
}

func (e *ReplicaError) Error() string {
	return fmt.Sprintf("only %d of %d replicas confirmed the append within %s", e.Got, e.Want, e.Timeout)
}

// script is the ingest script, for a group of batches of one shard. KEYS: the stream shard, then
// four per batch: its agent's rate state and hotcache's keys (Cache.Keys). ARGV: burst, rate,
// period in seconds, the number of batches, then per batch the number of its arguments that
// follow, its cost (points), the Watermill fields (uuid, payload, metadata) and hot_refresh's
// arguments (Batch.AppendArgs).
//
// It handles the batches in order, each as if alone (one TIME for all: a group is one instant).
// The GCRA is redis_rate's (v10, allowN); an agent with several batches in a group is charged
// for each in turn. Refused, a batch gets {0, retry after in seconds} and writes nothing.
// Allowed, it is appended with redis.pcall: a failed XADD (OOM under maxmemory, WRONGTYPE)
// gets {-1, the error} and writes nothing either; then the rate state and the hot cache are
// written with redis.pcall too, and the batch gets {1, entry id, errors of those writes or ""}.
// A Lua error in one batch (which our arguments should never cause) is caught likewise, so
// that the script always answers for every batch: an error reply for the whole script would
// hide batches that were appended, and their agents would send them again. It never trims the
// stream.
var script = redis.NewScript(`
redis.replicate_commands()
` + hotcache.LuaRefresh + `
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local emission_interval = period / rate
local burst_offset = emission_interval * burst
local jan_1_2017 = 1483228800
local now = redis.call('TIME')
now = (now[1] - jan_1_2017) + (now[2] / 1000000)
local appended
local function append_batch(k, i)
  local tat = redis.pcall('GET', KEYS[k])
  if type(tat) == 'table' and tat.err then return {-1, 'rate state: ' .. tat.err} end
  if not tat then
    tat = now
  else
    tat = tonumber(tat)
    if not tat then return {-1, 'rate state: not a number'} end
  end
  tat = math.max(tat, now)
  local new_tat = tat + emission_interval * tonumber(ARGV[i])
  local diff = now - (new_tat - burst_offset)
  if diff < 0 then
    return {0, tostring(-diff)}
  end
  local id = redis.pcall('XADD', KEYS[1], '*', '_watermill_message_uuid', ARGV[i + 1], 'payload', ARGV[i + 2], 'metadata', ARGV[i + 3])
  if type(id) == 'table' and id.err then return {-1, id.err} end
  appended = id
  local errs = {}
  local reset_after = new_tat - now
  if reset_after > 0 then
    local r = redis.pcall('SET', KEYS[k], new_tat, 'EX', math.ceil(reset_after))
    if type(r) == 'table' and r.err then errs[#errs + 1] = 'rate state: ' .. r.err end
  end
  local hot = hot_refresh(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], ARGV, i + 4)
  if hot ~= '' then errs[#errs + 1] = 'hot cache: ' .. hot end
  return {1, id, table.concat(errs, '; ')}
end
local replies = {}
local k, i = 2, 5
for b = 1, n do
  appended = nil
  local ok, reply = pcall(append_batch, k, i + 1)
  if not ok then
    if type(reply) == 'table' and reply.err then reply = reply.err end
    if appended then
      reply = {1, appended, 'script: ' .. tostring(reply)}
    else
      reply = {-1, 'script: ' .. tostring(reply)}
    end
  end
  replies[b] = reply
  k = k + 4
  i = i + 1 + tonumber(ARGV[i])
end
return replies
`)

// Append charges len(pts) points against agentID's rate and, when allowed, appends payload (the
// batch in canonical line protocol) to the agent's stream shard as a Watermill message with a new
// UUID and the metadata stream.MetaAgent, MetaReceivedAt (now) and MetaPoints, then refreshes the
// agent's hot cache from pts. An error means the batch may not be stored (Redis unreachable, OOM,
// ctx done) — except a *ReplicaError, which means it is stored on the master only.
//
// Append may wait for a script call of its shard to return, then send its batch in one call
// with other queued batches (see Appender). If ctx is done while it waits, it returns ctx's
// error having sent nothing. Once its group is sent, it returns when the call does: the call
// ends when Redis answers, or at the latest deadline of the group's contexts (none of which
// cancels it, since the others' batches are in it too). Append holds payload until it returns.
func (a *Appender) Append(ctx context.Context, agentID string, pts []metric.Point, payload []byte, now time.Time) (Result, error) {
	if agentID == "" {
		return Result{}, errors.New("appending batch: empty agent id")
	}
	c := a.newCall(ctx, agentID, pts, payload, now)
	defer a.release(c)
	shard := stream.ShardFor(agentID, a.cfg.Shards)
	if a.cfg.Group.MaxGroup == 1 {
		a.runGroup(shard, c.one[:])
		return c.res, c.err
	}

	q := &a.queues[shard]
	q.mu.Lock()
	if q.busy < a.cfg.Group.InFlight {
		q.busy++
		q.mu.Unlock()
		a.send(shard, q, c.one[:])
		return c.res, c.err
	}
	q.pending = append(q.pending, c)
	q.mu.Unlock()
	select {
	case <-c.ready:
	case <-ctx.Done():
		q.mu.Lock()
		if i := slices.Index(q.pending, c); i >= 0 {
			q.pending = slices.Delete(q.pending, i, i+1)
			q.mu.Unlock()
			return Result{}, fmt.Errorf("appending batch of agent %s: %w", agentID, ctx.Err())
		}
		q.mu.Unlock()
		<-c.ready // taken into a group: its outcome, or the group to send
	}
	if c.lead != nil {
		a.send(shard, q, c.lead)
	}
	return c.res, c.err
}

// newCall encodes the batch's keys and arguments.
func (a *Appender) newCall(ctx context.Context, agentID string, pts []metric.Point, payload []byte, now time.Time) *call {
	c, _ := a.calls.Get().(*call)
	if c == nil {
		c = &call{ready: make(chan struct{}, 1)}
	}
	c.ctx, c.agent = ctx, agentID
	c.hot = a.hot.Encode(pts, now)
	hk := a.hot.Keys(agentID)
	c.keys = [4]string{RateKey(a.cfg.Prefix, a.cfg.Shards, agentID), hk[0], hk[1], hk[2]}
	c.meta = appendMetadata(c.meta[:0], agentID, now.UnixNano(), len(pts))
	c.args = append(c.args[:0], len(pts), uuid.NewString(), payload, c.meta)
	c.args = c.hot.AppendArgs(c.args, agentID)
	c.size = 0
	for _, v := range c.args {
		switch v := v.(type) {
		case []byte:
			c.size += len(v)
		case string:
			c.size += len(v)
		}
		c.size += 16 // the argument's framing
	}
	c.one[0] = c
	return c
}

// release returns c for reuse once nothing refers to it any more.
func (a *Appender) release(c *call) {
	c.hot.Release()
	clear(c.args)
	if cap(c.args) > 1<<14 || cap(c.meta) > 1<<10 {
		return
	}
	c.ctx, c.hot, c.lead, c.one[0], c.res, c.err, c.args = nil, nil, nil, nil, Result{}, nil, c.args[:0]
	a.calls.Put(c)
}

// send runs the group g, whose first call is the caller's, in one of q's slots, then passes the
// slot on (passSlot) and gives the other calls of g their outcome.
func (a *Appender) send(shard int, q *shardQueue, g []*call) {
	a.runGroup(shard, g)
	a.passSlot(q)
	for _, c := range g[1:] {
		c.ready <- struct{}{}
	}
}

// passSlot hands a slot of q whose call returned to the oldest queued call, with the group it is
// to send (the queued calls in order, up to MaxGroup and maxGroupBytes), or frees the slot.
func (a *Appender) passSlot(q *shardQueue) {
	q.mu.Lock()
	if len(q.pending) == 0 {
		q.busy--
		q.mu.Unlock()
		return
	}
	n, size := 0, 0
	for n < len(q.pending) && n < a.cfg.Group.MaxGroup {
		if size += q.pending[n].size; n > 0 && size > maxGroupBytes {
			break
		}
		n++
	}
	next := slices.Clone(q.pending[:n])
	q.pending = slices.Delete(q.pending, 0, n)
	q.mu.Unlock()
	next[0].lead = next
	next[0].ready <- struct{}{}
}

// runGroup sends the batches of g whose context is not done in one script call (with a WAIT
// when replicas are asked for) and sets the outcome of every call of g.
func (a *Appender) runGroup(shard int, g []*call) {
	b, _ := a.groups.Get().(*groupArgs)
	if b == nil {
		b = new(groupArgs)
	}
	defer func() {
		clear(b.args)
		clear(b.live)
		if cap(b.args) <= 1<<16 {
			b.keys, b.args, b.live = b.keys[:0], b.args[:0], b.live[:0]
			a.groups.Put(b)
		}
	}()
	stream := a.streams[shard]
	b.keys = append(b.keys[:0], stream)
	b.args = append(b.args[:0], a.cfg.Burst, a.cfg.Rate, a.cfg.Period.Seconds(), 0)
	for _, c := range g {
		if err := c.ctx.Err(); err != nil {
			c.err = fmt.Errorf("appending batch of agent %s: %w", c.agent, err)
			continue
		}
		b.live = append(b.live, c)
		b.keys = append(b.keys, c.keys[:]...)
		b.args = append(b.args, len(c.args))
		b.args = append(b.args, c.args...)
	}
	if len(b.live) == 0 {
		return
	}
	b.args[3] = len(b.live)

	ctx, cancel := groupContext(b.live)
	reply, waited, err := a.run(ctx, b.keys, b.args)
	cancel()
	if err == nil && len(reply) != len(b.live) {
		err = fmt.Errorf("unexpected script reply %v", reply)
	}
	for i, c := range b.live {
		if err != nil {
			c.err = fmt.Errorf("appending batch of agent %s to %s: %w", c.agent, stream, err)
			continue
		}
		res, err := parseReply(reply[i])
		if err == nil && res.Allowed && waited < int64(a.cfg.Wait.Replicas) {
			res, err = Result{}, &ReplicaError{Want: a.cfg.Wait.Replicas, Got: int(waited), Timeout: a.cfg.Wait.Timeout}
		}
		if err != nil {
			err = fmt.Errorf("appending batch of agent %s to %s: %w", c.agent, stream, err)
		}
		c.res, c.err = res, err
	}
}

// groupContext returns the context of a group's call: the call's own for a group of one (as
// without grouping); else one that no call's cancellation ends (the others' batches are in the
// call too), with the latest deadline of theirs, if all have one.
func groupContext(live []*call) (context.Context, context.CancelFunc) {
	if len(live) == 1 {
		return live[0].ctx, func() {}
	}
	var latest time.Time
	for _, c := range live {
		d, ok := c.ctx.Deadline()
		if !ok {
			return context.WithoutCancel(live[0].ctx), func() {}
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.WithoutCancel(live[0].ctx), latest)
}

// run sends the script (EVALSHA, EVAL when Redis does not know it yet) and, when replicas are
// asked for, WAIT right after it on the same connection, whose answer it returns as waited.
func (a *Appender) run(ctx context.Context, keys []string, args []any) (reply []any, waited int64, err error) {
	if a.cfg.Wait.Replicas == 0 {
		reply, err = script.Run(ctx, a.client, keys, args...).Slice()
		return reply, 0, err
	}
	// A cluster client's pipeline would send the keyless WAIT to any master (or refuse it): send
	// both through the client of the shard's master, whose pipeline uses one connection.
	conn := redis.Cmdable(a.client)
	cc, isCluster := a.client.(*redis.ClusterClient)
	if isCluster {
		node, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, 0, err
		}
		conn = node
	}
	reply, waited, err = a.pipelineWait(ctx, conn, keys, args, false)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		reply, waited, err = a.pipelineWait(ctx, conn, keys, args, true)
	}
	if err != nil {
		if isCluster && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
			cc.ReloadState(ctx) // a failover moved the slot: the next request finds the new master
		}
		return nil, 0, err
	}
	return reply, waited, nil
}

func (a *Appender) pipelineWait(ctx context.Context, conn redis.Cmdable, keys []string, args []any, eval bool) ([]any, int64, error) {
	pipe := conn.Pipeline()
	var run *redis.Cmd
	if eval {
		run = script.Eval(ctx, pipe, keys, args...)
	} else {
		run = script.EvalSha(ctx, pipe, keys, args...)
	}
	wait := pipe.Do(ctx, "WAIT", a.cfg.Wait.Replicas, a.cfg.Wait.Timeout.Milliseconds())
	_, _ = pipe.Exec(ctx) // read per command
	reply, err := run.Slice()
	if err != nil {
		return nil, 0, err
	}
	n, err := wait.Int64()
	if err != nil {
		return nil, 0, fmt.Errorf("waiting for replicas: %w", err)
	}
	return reply, n, nil
}

// scriptError is what Redis answered a command of the script with, for one batch (redis.pcall).
type scriptError string

func (e scriptError) Error() string { return string(e) }

// RedisError makes scriptError a redis.Error (redis.HasErrorPrefix sees "OOM", "WRONGTYPE").
func (scriptError) RedisError() {}

// parseReply reads the script's reply for one batch (see script).
func parseReply(v any) (Result, error) {
	reply, _ := v.([]any)
	bad := func() (Result, error) {
		return Result{}, fmt.Errorf("unexpected script reply %v", v)
	}
	if len(reply) < 2 {
		return bad()
	}
	str, _ := reply[1].(string)
	switch reply[0] {
	case int64(-1):
		return Result{}, scriptError(str)
	case int64(0):
		secs, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return bad()
		}
		return Result{RetryAfter: time.Duration(secs * float64(time.Second))}, nil
	case int64(1):
		res := Result{Allowed: true, ID: str}
		if len(reply) > 2 {
			if msg, _ := reply[2].(string); msg != "" {
				res.CacheErr = errors.New(msg)
			}
		}
		return res, nil
	}
	return bad()
}

// appendMetadata appends Watermill's metadata of a metrics entry as msgpack, the encoding
// watermill-redisstream's DefaultMarshallerUnmarshaller gives message.Metadata (a map of strings
// to strings): MetaAgent, MetaPoints and MetaReceivedAt, in that order.
func appendMetadata(dst []byte, agentID string, receivedAt int64, points int) []byte {
	var num [20]byte
	dst = append(dst, 0x80|3) // fixmap of 3
	dst = appendMsgpackString(dst, stream.MetaAgent)
	dst = appendMsgpackString(dst, agentID)
	dst = appendMsgpackString(dst, stream.MetaPoints)
	dst = appendMsgpackString(dst, strconv.AppendInt(num[:0], int64(points), 10))
	dst = appendMsgpackString(dst, stream.MetaReceivedAt)
	return appendMsgpackString(dst, strconv.AppendInt(num[:0], receivedAt, 10))
}

// appendMsgpackString appends s as a msgpack str, in the shortest form (as vmihailenco/msgpack
// v4 writes it).
func appendMsgpackString[S ~string | ~[]byte](dst []byte, s S) []byte {
	switch n := len(s); {
	case n < 32:
		dst = append(dst, 0xa0|byte(n))
	case n < 1<<8:
		dst = append(dst, 0xd9, byte(n))
	case n < 1<<16:
		dst = append(dst, 0xda, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, s...)
}
