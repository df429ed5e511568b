package alerter

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
)

// StateKey returns the Redis key holding the evaluation state of k among shards shards:
// alertredis.StateKey in the shard of k's agent (alertredis.Shard).
func StateKey(prefix string, shards int, k alert.Key) string {
	return alertredis.StateKey(prefix, alertredis.Shard(k.AgentID, shards), alert.ID(k.RuleID, k.AgentID, k.Series))
}

// record is the value stored under a StateKey: the alert's State and, for windowed
// aggregations, its Window, so that every alerter copy aggregates over the same samples.
// Channels keeps the rule's notification channels while the alert is active, so that an alert
// whose rule was deleted can still be resolved to them.
type record struct {
	State    alert.State `json:"state"`
	Channels []string    `json:"channels,omitempty"`
	Window   []byte      `json:"-"` // alert.Window.Encode
}

// recordVersion is the first byte of an encoded record.
const recordVersion = 1

// recordJSON is the JSON form of a record. State.Value goes through jsonFloat (the shallower
// field wins over the embedded one), so that a non-finite value, which encoding/json refuses,
// never makes a state unstorable (issue 7).
type recordJSON struct {
	State    stateJSON `json:"state"`
	Channels []string  `json:"channels,omitempty"`
}

type stateJSON struct {
	alert.State
	Value jsonFloat `json:"value"`
}

// MarshalJSON writes r as recordJSON.
func (r record) MarshalJSON() ([]byte, error) {
	return json.Marshal(recordJSON{State: stateJSON{State: r.State, Value: jsonFloat(r.State.Value)}, Channels: r.Channels})
}

// UnmarshalJSON reads what MarshalJSON wrote (and the plain numbers of earlier releases).
func (r *record) UnmarshalJSON(b []byte) error {
	var rj recordJSON
	if err := json.Unmarshal(b, &rj); err != nil {
		return err
	}
	r.State, r.Channels = rj.State.State, rj.Channels
	r.State.Value = float64(rj.State.Value)
	return nil
}

// jsonFloat is a float64 whose JSON form is a number, or for NaN and ±Inf the strings "NaN",
// "+Inf" and "-Inf" (as Prometheus writes them).
type jsonFloat float64

// MarshalJSON writes f as a number or, when not finite, a string.
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	switch v := float64(f); {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	default:
		return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
	}
}

// UnmarshalJSON reads a number or one of the strings MarshalJSON writes.
func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"NaN"`:
		*f = jsonFloat(math.NaN())
	case `"+Inf"`:
		*f = jsonFloat(math.Inf(1))
	case `"-Inf"`:
		*f = jsonFloat(math.Inf(-1))
	case "null":
		*f = 0
	default:
		// The decoder hands over only valid JSON values: here a number, which ParseFloat reads.
		v, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			return fmt.Errorf("decoding a number: %w", err)
		}
		*f = jsonFloat(v)
	}
	return nil
}

// encode returns the stored form of r: a version byte, the length of the JSON of the State and
// Channels (uvarint), that JSON, then the Window's own binary encoding. Not all JSON: a window is
// a few KiB of binary that base64 and JSON string scanning made the costliest part of a batch.
func (r *record) encode() ([]byte, error) {
	head, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encoding alert state: %w", err)
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(head)+len(r.Window))
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, uint64(len(head)))
	b = append(b, head...)
	return append(b, r.Window...), nil
}

// decodeRecord reads what encode wrote.
func decodeRecord(b []byte) (*record, error) {
	if len(b) == 0 || b[0] != recordVersion {
		return nil, errors.New("unknown alert state version")
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)-1-k) {
		return nil, errors.New("truncated alert state")
	}
	head := b[1+k : 1+k+int(n)]
	var r record
	if err := json.Unmarshal(head, &r); err != nil {
		return nil, fmt.Errorf("decoding alert state: %w", err)
	}
	if rest := b[1+k+int(n):]; len(rest) > 0 {
		r.Window = rest
	}
	return &r, nil
}

// okGrace is how long an ok state outlives twice its rule's window (or after) without a new
// sample: long enough that a stream entry redelivered hours late still meets the LastEval that
// makes it harmless, short enough that series which stopped reporting do not pile up. Pending
// and firing states never expire.
const okGrace = 6 * time.Hour

// okTTL returns how long an ok state of rule may stay without being written.
func okTTL(rule *alert.Rule) time.Duration {
	return 2*max(time.Duration(rule.Window), time.Duration(rule.After)) + okGrace
}

// update is one state change an evaluation decided on, with its side effects. They are all
// written in one MULTI/EXEC.
type update struct {
	key string
	// rec is the new record; nil deletes the key.
	rec *record
	// ttl expires the record (ok states); 0 keeps it forever (pending and firing).
	ttl time.Duration
	// alertID is the field of alertredis.ActiveKey and AcksKey for this alert.
	alertID string
	// active, when set, replaces the alert's entry in alertredis.ActiveKey.
	active *alert.Active
	// inactive removes the alert's entry from ActiveKey; clearAck removes its acknowledgement
	// (the alert it acknowledged has ended).
	inactive, clearAck bool
	// events are the transitions, in order, appended to the alerts stream and published.
	events []alert.Event
	// received is, per event, when the gateway accepted the sample behind it (zero if unknown).
	received []time.Time

	// Filled by prepare: the encodings queue writes.
	prepared      bool
	raw           []byte           // rec encoded
	activeRaw     []byte           // active encoded
	streamValues  []map[string]any // per event, the alerts-stream entry
	eventPayloads [][]byte         // per event, the pub/sub message
}

// permanentError is a failure that the same input causes every time, such as an alert state or
// event that cannot be encoded: retrying cannot help, so Handle dead-letters the entries behind
// it instead of returning it to the consumer. Every other error (Redis unreachable, transaction
// conflicts, a cancelled context) is transient.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// isPermanent reports whether err is, or wraps, a permanentError.
func isPermanent(err error) bool {
	var pe *permanentError
	return errors.As(err, &pe)
}

// prepare encodes what queue writes for u, once. Its errors are permanentErrors naming the
// alert's rule: the same update fails the same way every time.
func (u *update) prepare() error {
	if u.prepared {
		return nil
	}
	fail := func(err error) error {
		return &permanentError{fmt.Errorf("alert %s: %w", u.describe(), err)}
	}
	if u.rec != nil {
		raw, err := u.rec.encode()
		if err != nil {
			return fail(err)
		}
		u.raw = raw
	}
	if u.active != nil {
		raw, err := json.Marshal(u.active)
		if err != nil {
			return fail(fmt.Errorf("encoding active alert: %w", err))
		}
		u.activeRaw = raw
	}
	u.streamValues, u.eventPayloads = make([]map[string]any, len(u.events)), make([][]byte, len(u.events))
	for i, ev := range u.events {
		values, err := alertredis.StreamValues(ev)
		if err != nil {
			return fail(err)
		}
		payload, err := json.Marshal(ev)
		if err != nil {
			return fail(fmt.Errorf("encoding alert event: %w", err))
		}
		u.streamValues[i], u.eventPayloads[i] = values, payload
	}
	u.prepared = true
	return nil
}

// describe names u's alert in errors: rule, agent and series when known.
func (u *update) describe() string {
	switch {
	case u.rec != nil:
		k := u.rec.State.Key
		return fmt.Sprintf("of rule %s, agent %s, series %q", k.RuleID, k.AgentID, k.Series)
	case len(u.events) > 0:
		ev := u.events[0]
		return fmt.Sprintf("of rule %s, agent %s, series %q", ev.RuleID, ev.AgentID, ev.Series)
	}
	return u.key
}

// maxTxAttempts bounds how often one batch re-reads and recomputes its states after another
// copy changed one of them first; past it the batch fails and the consumer retries it later.
const maxTxAttempts = 20

// errConflicts is returned when every attempt lost its race against other alerter copies.
var errConflicts = errors.New("alert states kept changing under other alerter copies")

// states reads and changes alert states in Redis, shard by shard (see package alertredis).
type states struct {
	rdb     redis.UniversalClient
	prefix  string
	shards  int
	logger  *slog.Logger
	metrics *metrics

	recorded atomic.Bool // the shards are in alertredis.ShardsKey
}

// stateRef names one alert state: its key and its shard.
type stateRef struct {
	key   string
	shard int
}

// ref returns the stateRef of alert k in its agent's shard.
func (s *states) ref(k alert.Key) stateRef {
	shard := alertredis.Shard(k.AgentID, s.shards)
	return stateRef{key: alertredis.StateKey(s.prefix, shard, alert.ID(k.RuleID, k.AgentID, k.Series)), shard: shard}
}

// commit changes the states refs name: one transaction per shard they fall in (see
// commitShard), the shards concurrently. plan is called per shard (and again per attempt, but
// never concurrently) with sel, the indexes into refs of that shard's states, and their
// records in the same order (nil where there is none); the updates it returns must be of those
// states. A transition is thus exactly once per shard, which is all it needs: an alert lives in
// one shard.
//
// commit returns the updates written, also when it fails: the shards committed stay committed,
// like the halves of a bisected batch, and a retry finds nothing left to do there. When shards
// fail, the error is a transient one if any failure was transient (the whole is retried), else
// a permanentError.
func (s *states) commit(ctx context.Context, refs []stateRef, plan func(sel []int, recs []*record) []update) ([]update, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	if !s.recorded.Load() {
		// Before the first write: a later, smaller STREAM_SHARDS must still find these shards.
		if err := alertredis.RecordShards(ctx, s.rdb, s.prefix, s.shards); err != nil {
			return nil, fmt.Errorf("changing alert states: %w", err)
		}
		s.recorded.Store(true)
	}
	var shards []int
	sel := map[int][]int{}
	for i, r := range refs {
		if _, ok := sel[r.shard]; !ok {
			shards = append(shards, r.shard)
		}
		sel[r.shard] = append(sel[r.shard], i)
	}
	var planMu sync.Mutex
	one := func(shard int) ([]update, error) {
		idx := sel[shard]
		keys := make([]string, len(idx))
		for j, i := range idx {
			keys[j] = refs[i].key
		}
		return s.commitShard(ctx, shard, keys, func(recs []*record) []update {
			planMu.Lock()
			defer planMu.Unlock()
			return plan(idx, recs)
		})
	}
	if len(shards) == 1 {
		return one(shards[0])
	}
	slices.Sort(shards)
	ups, errs := make([][]update, len(shards)), make([]error, len(shards))
	var wg sync.WaitGroup
	for i, shard := range shards {
		wg.Go(func() { ups[i], errs[i] = one(shard) })
	}
	wg.Wait()
	var all []update
	var transient, permanent error
	for i := range shards {
		all = append(all, ups[i]...)
		switch err := errs[i]; {
		case err == nil:
		case isPermanent(err):
			permanent = cmp.Or(permanent, err)
		default:
			transient = cmp.Or(transient, err)
		}
	}
	return all, cmp.Or(transient, permanent)
}

// commitShard reads the records under keys, all of shard, (nil where there is none) with the
// keys WATCHed, asks plan for the updates they lead to, and writes those in one MULTI/EXEC
// together with the shard's ActiveKey and AcksKey changes, the XADDs to the shard's alerts
// stream and the PUBLISHes. An update that cannot be encoded (update.prepare) fails the whole
// commit, before anything is written, with a permanentError; plan may prepare updates itself to
// leave such ones out. When another client changed a watched key in between, EXEC does nothing
// and commitShard reads and plans again, up to maxTxAttempts times: so whichever copy commits
// first emits each transition, and the others, planning again on the new states, find nothing
// left to do. plan must depend only on the records it is given (it may run several times).
// commitShard returns the updates it wrote.
func (s *states) commitShard(ctx context.Context, shard int, keys []string, plan func(recs []*record) []update) ([]update, error) {
	for attempt := 1; ; attempt++ {
		var ups []update
		err := s.watch(ctx, keys, func(tx *redis.Tx, vals []any) (bool, error) {
			recs := make([]*record, len(keys))
			for i, v := range vals {
				recs[i] = s.decode(keys[i], v)
			}
			if ups = plan(recs); len(ups) == 0 {
				return false, nil
			}
			for i := range ups {
				if err := ups[i].prepare(); err != nil {
					return false, err
				}
			}
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error { return s.queue(ctx, p, shard, ups) })
			return true, err
		})
		if err == nil {
			return ups, nil
		}
		if isPermanent(err) {
			return nil, err
		}
		if !errors.Is(err, redis.TxFailedErr) {
			return nil, fmt.Errorf("changing alert states of shard %d: %w", shard, err)
		}
		s.metrics.txConflicts.Inc()
		if attempt == maxTxAttempts {
			s.metrics.txExhausted.Inc()
			return nil, fmt.Errorf("changing alert states of shard %d: %w (%d attempts)", shard, errConflicts, attempt)
		}
		// A short random pause, growing with the attempts, so that copies racing for the same
		// keys fall out of step.
		wait := time.Duration(rand.Int64N(int64(attempt)*int64(2*time.Millisecond) + 1))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("changing alert states: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

// watch WATCHes keys on one connection, reads them with MGET and runs fn with their values
// (nil where there is none); fn reports whether it sent an EXEC, which releases the watched keys
// on the server. On a single Redis (or through Sentinel) the WATCH and the MGET go in one round
// trip, where Client.Watch sends them as two: under ingest, each round trip of the alerter waits
// for Redis to fsync its AOF, so a transition reaches the WebSocket one wait sooner (issue 13).
// On Redis Cluster, ClusterClient.Watch sends the WATCH first to find the keys' node.
func (s *states) watch(ctx context.Context, keys []string, fn func(tx *redis.Tx, vals []any) (execd bool, err error)) error {
	single, ok := s.rdb.(*redis.Client)
	if !ok {
		return s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			vals, err := tx.MGet(ctx, keys...).Result()
			if err != nil {
				return fmt.Errorf("reading alert states: %w", err)
			}
			_, err = fn(tx, vals)
			return err
		}, keys...)
	}
	return single.Watch(ctx, func(tx *redis.Tx) error {
		watch := make([]any, 0, 1+len(keys))
		watch = append(watch, "watch")
		for _, k := range keys {
			watch = append(watch, k)
		}
		var mget *redis.SliceCmd
		_, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Do(ctx, watch...)
			mget = p.MGet(ctx, keys...)
			return nil
		})
		execd := false
		if err == nil {
			execd, err = fn(tx, mget.Val())
		} else {
			err = fmt.Errorf("reading alert states: %w", err)
		}
		// A WATCH sent in a pipeline is unknown to tx, whose Close would not release it: unless an
		// EXEC ran (committed, refused for a changed key, or aborted), UNWATCH here, so that no
		// watched key stays on a pooled connection.
		// (As in Tx.Close, a failed UNWATCH is a broken connection, which the pool drops.)
		if !execd || (err != nil && !errors.Is(err, redis.TxFailedErr) && !redis.IsExecAbortError(err)) {
			_ = tx.Unwatch(ctx).Err()
		}
		return err
	})
}

// decode reads a stored record. A value that cannot be read (which only a foreign writer could
// leave) is logged and treated as absent: failing would block the stream forever.
func (s *states) decode(key string, v any) *record {
	str, ok := v.(string)
	if !ok {
		return nil
	}
	rec, err := decodeRecord([]byte(str))
	if err != nil {
		s.metrics.corrupt.Inc()
		s.logger.Error("unreadable alert state; starting it afresh", "key", key, "err", err)
		return nil
	}
	return rec
}

// queue adds the commands of ups, prepared and all of shard, to the transaction p.
func (s *states) queue(ctx context.Context, p redis.Pipeliner, shard int, ups []update) error {
	activeKey, acksKey := alertredis.ActiveKey(s.prefix, shard), alertredis.AcksKey(s.prefix, shard)
	streamKey := alertredis.StreamKey(s.prefix, shard)
	for i := range ups {
		u := &ups[i]
		if !u.prepared {
			return errors.New("queueing an alert state change that was not prepared")
		}
		if u.rec == nil {
			p.Del(ctx, u.key)
		} else {
			p.Set(ctx, u.key, u.raw, u.ttl) // 0: no expiry, and any earlier one removed
		}
		if u.active != nil {
			p.HSet(ctx, activeKey, u.alertID, u.activeRaw)
		} else if u.inactive {
			p.HDel(ctx, activeKey, u.alertID)
		}
		if u.clearAck {
			p.HDel(ctx, acksKey, u.alertID)
		}
		for j := range u.events {
			p.XAdd(ctx, &redis.XAddArgs{Stream: streamKey, Values: u.streamValues[j]})
			p.Publish(ctx, alertredis.Channel(s.prefix), u.eventPayloads[j])
		}
	}
	return nil
}
