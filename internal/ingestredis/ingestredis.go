// Package ingestredis is the Redis side of the gateway's ingest path. One server-side script per
// batch charges the agent's rate (GCRA, as go-redis/redis_rate does it), appends the batch to the
// agent's stream shard in Watermill's wire format, records the agent's rate state and refreshes
// its hot cache (package hotcache): a constant number of Redis commands in one round trip,
// whatever the batch holds. Every key the script touches carries the hash tag of the agent's
// shard, {i}, so it runs on Redis Cluster as on one Redis.
//
// With WaitReplicas set, the script and a WAIT are sent in one pipeline on one connection to the
// shard's master (WAIT only covers the writes of its own connection), and an append fewer
// replicas confirmed is reported as a *ReplicaError.
package ingestredis

import (
	"context"
	"errors"
	"fmt"
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
}

// Appender runs the ingest script. It is safe for concurrent use.
type Appender struct {
	client  redis.UniversalClient
	hot     *hotcache.Cache
	cfg     Config
	streams []string
	args    sync.Pool // *[]any
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
	cfg.Shards = max(cfg.Shards, 1)
	return &Appender{client: client, hot: hot, cfg: cfg, streams: stream.StreamKeys(cfg.Prefix, cfg.Shards)}, nil
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

// script is the ingest script. KEYS: the stream shard, the rate state, then hotcache's keys
// (Cache.Keys). ARGV: burst, rate, period in seconds, cost (points), the Watermill fields (uuid,
// payload, metadata), then hot_refresh's arguments (Batch.AppendArgs). The GCRA is redis_rate's
// (v10, allowN): refused, it returns {0, retry after in seconds} having written nothing;
// allowed, it appends (the only write that can fail the script: under maxmemory Redis refuses
// it with OOM before anything is written), then stores the rate state and refreshes the hot
// cache with redis.pcall, and returns {1, entry id, errors of those writes or ""}. It never
// trims the stream.
var script = redis.NewScript(`
redis.replicate_commands()
` + hotcache.LuaRefresh + `
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local emission_interval = period / rate
local increment = emission_interval * cost
local burst_offset = emission_interval * burst
local jan_1_2017 = 1483228800
local now = redis.call('TIME')
now = (now[1] - jan_1_2017) + (now[2] / 1000000)
local tat = redis.call('GET', KEYS[2])
if not tat then
  tat = now
else
  tat = tonumber(tat)
end
tat = math.max(tat, now)
local new_tat = tat + increment
local diff = now - (new_tat - burst_offset)
if diff < 0 then
  return {0, tostring(-diff)}
end
local id = redis.call('XADD', KEYS[1], '*', '_watermill_message_uuid', ARGV[5], 'payload', ARGV[6], 'metadata', ARGV[7])
local errs = {}
local reset_after = new_tat - now
if reset_after > 0 then
  local r = redis.pcall('SET', KEYS[2], new_tat, 'EX', math.ceil(reset_after))
  if type(r) == 'table' and r.err then errs[#errs + 1] = 'rate state: ' .. r.err end
end
local hot = hot_refresh(KEYS[3], KEYS[4], KEYS[5], ARGV, 8)
if hot ~= '' then errs[#errs + 1] = 'hot cache: ' .. hot end
return {1, id, table.concat(errs, '; ')}
`)

// Append charges len(pts) points against agentID's rate and, when allowed, appends payload (the
// batch in canonical line protocol) to the agent's stream shard as a Watermill message with a new
// UUID and the metadata stream.MetaAgent, MetaReceivedAt (now) and MetaPoints, then refreshes the
// agent's hot cache from pts. An error means the batch may not be stored (Redis unreachable, OOM,
// ctx done) — except a *ReplicaError, which means it is stored on the master only.
func (a *Appender) Append(ctx context.Context, agentID string, pts []metric.Point, payload []byte, now time.Time) (Result, error) {
	if agentID == "" {
		return Result{}, errors.New("appending batch: empty agent id")
	}
	hot := a.hot.Encode(pts, now)
	defer hot.Release()
	ap, _ := a.args.Get().(*[]any)
	if ap == nil {
		ap = new([]any)
	}
	defer func() {
		clear(*ap)
		if cap(*ap) <= 1<<14 {
			*ap = (*ap)[:0]
			a.args.Put(ap)
		}
	}()

	shard := stream.ShardFor(agentID, a.cfg.Shards)
	hk := a.hot.Keys(agentID)
	keys := []string{a.streams[shard], RateKey(a.cfg.Prefix, a.cfg.Shards, agentID), hk[0], hk[1], hk[2]}
	meta := appendMetadata(make([]byte, 0, 96+len(agentID)), agentID, now.UnixNano(), len(pts))
	args := append((*ap)[:0], a.cfg.Burst, a.cfg.Rate, a.cfg.Period.Seconds(), len(pts), uuid.NewString(), payload, meta)
	args = hot.AppendArgs(args, agentID)
	*ap = args

	reply, err := a.run(ctx, keys, args)
	if err != nil {
		return Result{}, fmt.Errorf("appending batch of agent %s to %s: %w", agentID, keys[0], err)
	}
	return parseReply(reply)
}

// run sends the script (EVALSHA, EVAL when Redis does not know it yet) and, when replicas are
// asked for, WAIT right after it on the same connection.
func (a *Appender) run(ctx context.Context, keys []string, args []any) ([]any, error) {
	if a.cfg.Wait.Replicas == 0 {
		return script.Run(ctx, a.client, keys, args...).Slice()
	}
	// A cluster client's pipeline would send the keyless WAIT to any master (or refuse it): send
	// both through the client of the shard's master, whose pipeline uses one connection.
	conn := redis.Cmdable(a.client)
	cc, isCluster := a.client.(*redis.ClusterClient)
	if isCluster {
		node, err := cc.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, err
		}
		conn = node
	}
	reply, waited, err := a.pipelineWait(ctx, conn, keys, args, false)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		reply, waited, err = a.pipelineWait(ctx, conn, keys, args, true)
	}
	if err != nil {
		if isCluster && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
			cc.ReloadState(ctx) // a failover moved the slot: the next request finds the new master
		}
		return nil, err
	}
	if len(reply) > 0 && reply[0] == int64(1) && waited < int64(a.cfg.Wait.Replicas) {
		return nil, &ReplicaError{Want: a.cfg.Wait.Replicas, Got: int(waited), Timeout: a.cfg.Wait.Timeout}
	}
	return reply, nil
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

// parseReply reads the script's reply (see script).
func parseReply(reply []any) (Result, error) {
	bad := func() (Result, error) {
		return Result{}, fmt.Errorf("appending batch: unexpected script reply %v", reply)
	}
	if len(reply) < 2 {
		return bad()
	}
	str, _ := reply[1].(string)
	switch reply[0] {
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
