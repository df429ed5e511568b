// Package alertfeed is the live alert feed of the gateway: a hub that subscribes to the alerts
// pub/sub channel and fans every transition out to WebSocket clients, each with a snapshot of
// the active alerts when it joins or the subscription is re-established, a bounded queue, pings
// and a clean close.
package alertfeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/go-json-experiment/json"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
)

// Config configures the alert WebSocket, GET /api/v1/ws/alerts.
type Config struct {
	// ClientQueue is how many messages may wait for one client. A client whose queue is full is
	// disconnected (close code 1008), so that it never holds up the others.
	ClientQueue int `env:"WS_CLIENT_QUEUE" envDefault:"256" help:"messages that may wait for one alert WebSocket client; a client that falls this far behind is disconnected"`
	// PingInterval is how often each client is pinged; a client that has not answered a ping
	// within the next interval is disconnected.
	PingInterval time.Duration `env:"WS_PING_INTERVAL" envDefault:"20s" help:"how often alert WebSocket clients are pinged; one that does not answer within an interval is disconnected"`
	// WriteTimeout bounds one write to a client, and the close handshake of a dropped client.
	WriteTimeout time.Duration `env:"WS_WRITE_TIMEOUT" envDefault:"10s" help:"how long one write to an alert WebSocket client may take before the client is disconnected"`
}

// Validate reports every setting that cannot work, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	if c.ClientQueue < 1 || c.ClientQueue > 1<<16 {
		errs = append(errs, fmt.Errorf("WS_CLIENT_QUEUE=%d: want 1 to 65536", c.ClientQueue))
	}
	if c.PingInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("WS_PING_INTERVAL=%s: want at least 100ms", c.PingInterval))
	}
	if c.WriteTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("WS_WRITE_TIMEOUT=%s: want at least 100ms", c.WriteTimeout))
	}
	return errors.Join(errs...)
}

// Close reasons sent to clients (at most 123 bytes each, as the protocol allows).
const (
	ReasonTooSlow     = "too slow: message queue full"
	ReasonShutdown    = "server shutting down"
	ReasonUnavailable = "active alerts unavailable, reconnect later"
)

const (
	// wsReadLimit bounds a message from a client. Clients have nothing to say; whatever small
	// message they send is read and ignored, a larger one closes the connection (1009).
	wsReadLimit = 1024
	// hubBuffer is how many pub/sub messages go-redis holds for the hub while it takes a snapshot.
	hubBuffer = 4096
	// snapshotTimeout bounds the read of the active alerts for a snapshot.
	snapshotTimeout = 5 * time.Second
	// resyncRetry is how soon a failed resynchronisation after a pub/sub reconnect is retried.
	resyncRetry = time.Second
	// shutdownGrace bounds the close handshake of every client when the gateway stops.
	shutdownGrace = time.Second
)

// jsonOut encodes messages as the gateway encodes its API answers: json v2, map keys sorted.
var jsonOut = json.JoinOptions(json.Deterministic(true))

// wsSnapshot is the first message on a connection, and the message after the hub resubscribed:
// every active alert. A client replaces what it shows with it.
type wsSnapshot struct {
	Type   string         `json:"type"` // "snapshot"
	Alerts []alert.Active `json:"alerts"`
}

// wsEvent carries one alert transition.
type wsEvent struct {
	Type  string      `json:"type"` // "event"
	Event alert.Event `json:"event"`
}

// wsClient is one WebSocket connection. The hub owns its membership and fills queue; the
// client's own goroutine writes the queue to the connection.
type wsClient struct {
	conn  *websocket.Conn
	user  string
	queue chan []byte

	stop   chan struct{} // closed by end: the client must close with code and reason
	once   sync.Once
	code   websocket.StatusCode
	reason string
}

// end asks the client's goroutine to close the connection with code and reason; only the first
// call counts. It never blocks.
func (c *wsClient) end(code websocket.StatusCode, reason string) {
	c.once.Do(func() {
		c.code, c.reason = code, reason
		close(c.stop)
	})
}

// Hub fans the alert events of the pub/sub channel out to this gateway's WebSocket clients. One
// goroutine (Run) owns the subscription and the set of clients; it never blocks on a client:
// each client has a bounded queue, and one whose queue is full is dropped.
type Hub struct {
	rdb    redis.UniversalClient
	prefix string
	shards int // of the alert state (STREAM_SHARDS)
	cfg    Config
	logger *slog.Logger

	clientsGauge prometheus.Gauge
	dropped      prometheus.Counter

	register   chan *wsClient
	unregister chan *wsClient
	done       chan struct{} // closed when Run stops serving

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // one per client goroutine
}

// New builds the hub of the alerts channel under prefix, whose snapshots merge the active alerts
// of shards shards (STREAM_SHARDS, alertredis.ListActive), and registers its metrics on reg. Run
// serves it; Serve hands it an accepted connection.
func New(rdb redis.UniversalClient, prefix string, shards int, cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*Hub, error) {
	h := &Hub{
		rdb: rdb, prefix: prefix, shards: shards, cfg: cfg, logger: logger.With("part", "alert websocket"),
		clientsGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "agentmonitor", Subsystem: "gateway", Name: "ws_clients",
			Help: "Alert WebSocket clients connected to this gateway.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agentmonitor", Subsystem: "gateway", Name: "ws_dropped_clients_total",
			Help: "Alert WebSocket clients disconnected because their message queue (WS_CLIENT_QUEUE) was full.",
		}),
		register:   make(chan *wsClient),
		unregister: make(chan *wsClient),
		done:       make(chan struct{}),
	}
	for _, c := range []prometheus.Collector{h.clientsGauge, h.dropped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering websocket metrics: %w", err)
		}
	}
	return h, nil
}

// Run subscribes to the alerts channel and serves clients until ctx is done; then it closes
// every client (1001) and waits for their goroutines. It may be called once.
//
// A client gets a snapshot of the active alerts when it joins, taken here, between two pub/sub
// messages: an event received before the snapshot was read is in it (the alerter changes the
// active set of the alert's shard and publishes in one transaction, and the snapshot reads
// every shard after), one received after follows it. Pub/sub is at
// most once, so whenever the subscription is (re)established every client gets a fresh snapshot.
func (h *Hub) Run(ctx context.Context) error {
	sub := h.rdb.Subscribe(ctx, alertredis.Channel(h.prefix))
	msgs := sub.ChannelWithSubscriptions(redis.WithChannelSize(hubBuffer))
	clients := make(map[*wsClient]struct{})
	defer func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		close(h.done)
		for c := range clients {
			c.end(websocket.StatusGoingAway, ReasonShutdown)
		}
		h.wg.Wait()
		if err := sub.Close(); err != nil {
			h.logger.Debug("closing alert subscription", "err", err)
		}
	}()

	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-msgs:
			if !ok {
				return errors.New("alert subscription closed")
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					h.logger.Debug("subscribed to alert events", "channel", m.Channel)
					if !h.resync(ctx, clients) {
						retry = time.After(resyncRetry)
					}
				}
			case *redis.Message:
				h.fanOut(clients, m.Payload)
			}
		case <-retry:
			retry = nil
			if !h.resync(ctx, clients) {
				retry = time.After(resyncRetry)
			}
		case c := <-h.register:
			batch := []*wsClient{c}
		more: // one snapshot serves every client waiting to join
			for {
				select {
				case c := <-h.register:
					batch = append(batch, c)
				default:
					break more
				}
			}
			h.admit(ctx, clients, batch)
		case c := <-h.unregister:
			delete(clients, c)
		}
	}
}

// snapshot reads the active alerts and encodes them as a snapshot message.
func (h *Hub) snapshot(ctx context.Context) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	active, err := alertredis.ListActive(ctx, h.rdb, h.prefix, h.shards)
	if err != nil {
		return nil, err
	}
	return json.Marshal(wsSnapshot{Type: "snapshot", Alerts: active}, jsonOut)
}

// admit sends a snapshot to each client of batch and adds it to clients; when the snapshot
// cannot be read the batch is closed (1013), and the clients retry as after any disconnect.
func (h *Hub) admit(ctx context.Context, clients map[*wsClient]struct{}, batch []*wsClient) {
	snap, err := h.snapshot(ctx)
	if err != nil {
		h.logger.Warn("reading active alerts for new websocket clients failed", "clients", len(batch), "err", err)
		for _, c := range batch {
			c.end(websocket.StatusTryAgainLater, ReasonUnavailable)
		}
		return
	}
	for _, c := range batch {
		clients[c] = struct{}{}
		h.send(clients, c, snap) // a new client's queue is empty: this never drops
	}
}

// resync sends every client a fresh snapshot; it reports false when the snapshot could not be
// read (the caller retries; events keep flowing meanwhile).
func (h *Hub) resync(ctx context.Context, clients map[*wsClient]struct{}) bool {
	if len(clients) == 0 {
		return true
	}
	snap, err := h.snapshot(ctx)
	if err != nil {
		h.logger.Warn("reading active alerts after subscribing failed; retrying", "err", err)
		return false
	}
	for c := range clients {
		h.send(clients, c, snap)
	}
	return true
}

// fanOut queues one pub/sub payload, an alert.Event, for every client.
func (h *Hub) fanOut(clients map[*wsClient]struct{}, payload string) {
	ev, err := alert.DecodeEvent([]byte(payload))
	if err != nil {
		h.logger.Warn("ignoring an undecodable alert event", "err", err)
		return
	}
	if len(clients) == 0 {
		return
	}
	msg, err := json.Marshal(wsEvent{Type: "event", Event: ev}, jsonOut)
	if err != nil {
		h.logger.Error("encoding an alert event failed", "err", err, "event", ev.ID)
		return
	}
	for c := range clients {
		h.send(clients, c, msg)
	}
}

// send queues msg for c without blocking; a client whose queue is full is removed and told
// why (1008), and the others go on.
func (h *Hub) send(clients map[*wsClient]struct{}, c *wsClient, msg []byte) {
	select {
	case c.queue <- msg:
	default:
		delete(clients, c)
		h.dropped.Inc()
		h.logger.Info("dropping a slow websocket client", "user", c.user, "queue", cap(c.queue))
		c.end(websocket.StatusPolicyViolation, ReasonTooSlow)
	}
}

// Serve takes over an accepted connection: its goroutine joins the hub, then writes what the
// hub queues until the client leaves, fails, is dropped or the gateway stops.
func (h *Hub) Serve(conn *websocket.Conn, user string) {
	conn.SetReadLimit(wsReadLimit)
	c := &wsClient{conn: conn, user: user, queue: make(chan []byte, h.cfg.ClientQueue), stop: make(chan struct{})}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		closeConn(conn, websocket.StatusGoingAway, ReasonShutdown, shutdownGrace)
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	h.clientsGauge.Inc()
	go h.runClient(c)
}

// runClient is the goroutine of one client.
func (h *Hub) runClient(c *wsClient) {
	defer h.wg.Done()
	defer h.clientsGauge.Dec()

	// Reading handles pings, pongs and the peer's close; ending it (kill) closes the connection,
	// which unblocks any write in progress. On return the connection is killed (a no-op after a
	// clean close), then the reader and the pinger are waited for.
	var helpers sync.WaitGroup
	defer helpers.Wait()
	readCtx, kill := context.WithCancel(context.Background())
	defer kill()
	gone := make(chan struct{})
	helpers.Go(func() {
		defer close(gone)
		for {
			if _, _, err := c.conn.Read(readCtx); err != nil {
				return
			}
		}
	})
	helpers.Go(func() { h.ping(c, gone, kill) })

	select {
	case h.register <- c:
	case <-h.done:
		c.end(websocket.StatusGoingAway, ReasonShutdown)
	}
	for {
		// A client that was ended gets its close frame next, not the rest of its queue.
		select {
		case <-c.stop:
			h.close(c, kill)
			return
		default:
		}
		select {
		case <-c.stop:
			h.close(c, kill)
			return
		case <-gone:
			h.leave(c)
			_ = c.conn.CloseNow()
			return
		case msg := <-c.queue:
			ctx, cancel := context.WithTimeout(context.Background(), h.cfg.WriteTimeout)
			err := c.conn.Write(ctx, websocket.MessageText, msg)
			cancel()
			if err != nil {
				h.logger.Debug("writing to a websocket client failed", "user", c.user, "err", err)
				h.leave(c)
				kill()
				return
			}
		}
	}
}

// ping pings c every PingInterval and kills the connection when a pong does not come back
// within an interval.
func (h *Hub) ping(c *wsClient, gone <-chan struct{}, kill context.CancelFunc) {
	t := time.NewTicker(h.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-gone:
			return
		case <-c.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), h.cfg.PingInterval)
			err := c.conn.Ping(ctx)
			cancel()
			if err != nil {
				h.logger.Debug("websocket client did not answer a ping", "user", c.user, "err", err)
				kill()
				return
			}
		}
	}
}

// leave removes c from the hub's clients (the hub may be gone already).
func (h *Hub) leave(c *wsClient) {
	select {
	case h.unregister <- c:
	case <-h.done:
	}
}

// close sends c its close frame with the code and reason it was ended with, and closes the
// connection: at once when the peer answers, after WriteTimeout (shutdownGrace on shutdown)
// when it does not.
func (h *Hub) close(c *wsClient, kill context.CancelFunc) {
	grace := h.cfg.WriteTimeout
	if c.code == websocket.StatusGoingAway {
		grace = min(grace, shutdownGrace)
	}
	t := time.AfterFunc(grace, kill)
	defer t.Stop()
	if err := c.conn.Close(c.code, c.reason); err != nil {
		h.logger.Debug("closing a websocket client", "user", c.user, "err", err)
	}
}

// closeConn closes a connection that has no client goroutine, within grace.
func closeConn(conn *websocket.Conn, code websocket.StatusCode, reason string, grace time.Duration) {
	ctx, kill := context.WithCancel(context.Background())
	defer kill()
	go func() {
		for {
			if _, _, err := conn.Read(ctx); err != nil {
				return
			}
		}
	}()
	t := time.AfterFunc(grace, kill)
	defer t.Stop()
	_ = conn.Close(code, reason)
}
