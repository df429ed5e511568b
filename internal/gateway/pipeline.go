package gateway

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/stream"
)

// pipelineRates remembers each group's entries-read counter at the last GET /api/v1/pipeline, so
// that the next one can tell entries per second without keeping any history.
type pipelineRates struct {
	mu   sync.Mutex
	last map[string]rateSample // stream + " " + group
}

type rateSample struct {
	read int64
	at   time.Time
}

// rate records read at now for key and returns the entries per second since the previous call,
// or nil on the first call (or a counter that went back, after the group was recreated).
func (r *pipelineRates) rate(key string, read int64, now time.Time) *float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]rateSample{}
	}
	prev, ok := r.last[key]
	r.last[key] = rateSample{read: read, at: now}
	dt := now.Sub(prev.at).Seconds()
	if !ok || dt <= 0 || read < prev.read {
		return nil
	}
	v := float64(read-prev.read) / dt
	return &v
}

type consumerView struct {
	Name    string `json:"name"`
	Pending int64  `json:"pending"`
	IdleMS  int64  `json:"idle_ms"`
}

type groupView struct {
	Stream          string         `json:"stream"`
	Group           string         `json:"group"`
	Lag             *int64         `json:"lag"` // null when Redis cannot tell (entries deleted)
	Pending         int64          `json:"pending"`
	EntriesRead     int64          `json:"entries_read"`
	LastDeliveredID string         `json:"last_delivered_id"`
	Throughput      *float64       `json:"throughput_per_second"` // null on the first call
	Consumers       []consumerView `json:"consumers"`
	DeadLetters     int            `json:"dead_letters"` // of this group, all streams together
}

type storeHealth struct {
	OK    bool              `json:"ok"`
	Error string            `json:"error,omitempty"`
	Info  map[string]string `json:"info,omitempty"`
}

type pipelineView struct {
	Groups      []groupView            `json:"groups"`
	DeadLetters int                    `json:"dead_letters"`
	Stores      map[string]storeHealth `json:"stores"`
	At          time.Time              `json:"at"`
}

// pipelineStreams lists the streams the pipeline view describes: the metrics shards, the replay
// stream of every group that must read them, and the alerts streams.
func (g *Gateway) pipelineStreams() []string {
	keys := stream.StreamKeys(g.cfg.Redis.Prefix, g.cfg.Publish.Shards)
	for _, grp := range g.cfg.Trim.Groups {
		keys = append(keys, stream.ReplayKey(g.cfg.Redis.Prefix, grp))
	}
	return append(keys, g.alertStreams...)
}

// pipeline answers GET /api/v1/pipeline (operator): each consumer group on each stream with its
// lag, pending entries, consumers (idle time, pending), throughput since the previous call and
// dead letters; and the health of Redis (memory, persistence), InfluxDB and PostgreSQL.
func (g *Gateway) pipeline(c echo.Context) error {
	ctx := c.Request().Context()
	now := g.now()
	dead, err := stream.CountDeadLettersByGroup(ctx, g.rdb, stream.DeadLetterKey(g.cfg.Redis.Prefix))
	if err != nil {
		return unavailable("redis", err)
	}
	out := pipelineView{Groups: []groupView{}, Stores: map[string]storeHealth{}, At: now.UTC()}
	for _, n := range dead {
		out.DeadLetters += n
	}
	groups, err := stream.Groups(ctx, g.rdb, g.pipelineStreams()...)
	if err != nil {
		return unavailable("redis", err)
	}
	for _, gr := range groups {
		v := groupView{Stream: gr.Stream, Group: gr.Group, Pending: gr.Pending, EntriesRead: gr.EntriesRead,
			LastDeliveredID: gr.LastDeliveredID, Consumers: []consumerView{}}
		if gr.Lag >= 0 {
			lag := gr.Lag
			v.Lag = &lag
		}
		v.Throughput = g.rates.rate(gr.Stream+" "+gr.Group, gr.EntriesRead, now)
		if !slices.Contains(g.alertStreams, gr.Stream) {
			v.DeadLetters = dead[gr.Group]
		}
		for _, cs := range gr.Consumers {
			v.Consumers = append(v.Consumers, consumerView{Name: cs.Name, Pending: cs.Pending, IdleMS: cs.Idle.Milliseconds()})
		}
		out.Groups = append(out.Groups, v)
	}
	out.Stores["redis"] = g.redisHealth(ctx)
	out.Stores["postgresql"] = health(g.db.PingContext(ctx))
	out.Stores["influxdb"] = health(g.influx.Ping(ctx))
	return c.JSON(http.StatusOK, out)
}

func health(err error) storeHealth {
	if err != nil {
		return storeHealth{OK: false, Error: err.Error()}
	}
	return storeHealth{OK: true}
}

// redisInfoKeys are the INFO memory and persistence fields the pipeline view shows.
var redisInfoKeys = []string{
	"used_memory_human", "maxmemory_human", "maxmemory_policy", "mem_fragmentation_ratio",
	"loading", "rdb_changes_since_last_save", "rdb_last_bgsave_status", "rdb_last_save_time",
	"aof_enabled", "aof_last_write_status", "aof_last_bgrewrite_status",
}

// redisHealth reads INFO memory and persistence; on a cluster from every master, each field then
// named "<master address> <field>".
func (g *Gateway) redisHealth(ctx context.Context) storeHealth {
	_, cluster := g.rdb.(*redis.ClusterClient)
	var mu sync.Mutex
	info := map[string]string{}
	err := redisconn.ForEachServer(ctx, g.rdb, func(ctx context.Context, node redis.UniversalClient) error {
		text, err := node.Info(ctx, "memory", "persistence").Result()
		if err != nil {
			return err
		}
		name := ""
		if c, ok := node.(*redis.Client); ok && cluster {
			name = c.Options().Addr + " "
		}
		mu.Lock()
		defer mu.Unlock()
		sc := bufio.NewScanner(strings.NewReader(text))
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
			if ok && slices.Contains(redisInfoKeys, k) {
				info[name+k] = v
			}
		}
		return nil
	})
	if err != nil {
		return health(err)
	}
	return storeHealth{OK: true, Info: info}
}

type deadLetterList struct {
	DeadLetters []stream.DeadLetter `json:"dead_letters"`
	Total       int                 `json:"total"`
	Limit       int                 `json:"limit"`
	Offset      int                 `json:"offset"`
}

// deadLetters answers GET /api/v1/pipeline/dead-letters (operator): newest first, paginated.
func (g *Gateway) deadLetters(c echo.Context) error {
	limit, offset, err := paging(c)
	if err != nil {
		return err
	}
	list, total, err := stream.ListDeadLetters(c.Request().Context(), g.rdb, stream.DeadLetterKey(g.cfg.Redis.Prefix), limit, offset)
	if err != nil {
		return unavailable("redis", err)
	}
	return c.JSON(http.StatusOK, deadLetterList{DeadLetters: list, Total: total, Limit: limit, Offset: offset})
}

type replayRequest struct {
	IDs []string `json:"ids"`
	All bool     `json:"all"`
}

type replayResponse struct {
	Replayed int               `json:"replayed"`
	Entries  []stream.Replayed `json:"entries"`
}

var streamIDPattern = regexp.MustCompile(`^[0-9]{1,20}-[0-9]{1,20}$`)

// maxReplayIDs bounds one replay request by ids.
const maxReplayIDs = 1000

// replayDeadLetters answers POST /api/v1/pipeline/dead-letters/replay (operator): {"all": true}
// or {"ids": [...]}. Each dead letter goes back to the group that dead-lettered it only (its
// replay stream), leaves the dead-letter stream, and gets an audit row.
func (g *Gateway) replayDeadLetters(c echo.Context) error {
	var req replayRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	switch {
	case req.All && len(req.IDs) > 0:
		return fieldErrorf("ids", "give either all or ids, not both")
	case !req.All && len(req.IDs) == 0:
		return fieldErrorf("ids", "give the ids of the dead letters to replay, or all: true")
	case len(req.IDs) > maxReplayIDs:
		return fieldErrorf("ids", "at most %d ids at once, got %d", maxReplayIDs, len(req.IDs))
	}
	for _, id := range req.IDs {
		if !streamIDPattern.MatchString(id) {
			return fieldErrorf("ids", "%q is not a stream entry id (ms-seq)", truncate(id, 48))
		}
	}
	ctx := c.Request().Context()
	replayed, err := stream.ReplayDeadLetters(ctx, g.rdb, g.cfg.Redis.Prefix, stream.DeadLetterKey(g.cfg.Redis.Prefix), req.IDs, req.All)
	if errors.Is(err, stream.ErrNotFound) {
		return newError(http.StatusNotFound, "%v", err)
	}
	actor := sessionOf(c).Username
	var auditErr error
	for _, r := range replayed {
		auditErr = errors.Join(auditErr, g.audit.Record(ctx, actor, "dead_letter.replay", r.ID, map[string]any{
			"group": r.Group, "stream": r.Stream, "entry_id": r.EntryID, "reason": r.Reason, "replay_id": r.ReplayID,
		}))
	}
	if err != nil {
		return unavailable("redis", err)
	}
	if auditErr != nil {
		return errors.Join(errors.New("dead letters replayed, but their audit rows could not all be written"), auditErr)
	}
	g.logger.Info("dead letters replayed", "by", actor, "entries", len(replayed))
	return c.JSON(http.StatusOK, replayResponse{Replayed: len(replayed), Entries: replayed})
}
