// Package alerter is the alerter worker. As consumer group "alerter" on the metrics streams it
// evaluates every sample against the alert rules stored in PostgreSQL; beside it, it checks
// agent_silent rules against the agent registry and ends the alerts of rules that went away.
// Every alert state lives in Redis, in the shard of its agent (package alertredis), and changes
// in one WATCH/MULTI/EXEC with its side effects in that shard (the active-alerts hash, the
// durable alerts stream of the shard) and the PUBLISH on the pub/sub channel, so any number of
// copies emit each transition exactly once and a restarted copy carries on. The same binary
// records the alerts streams into history (group "alert-history": PostgreSQL alert_events and
// InfluxDB measurement "alerts") and runs the webhook notifier (group "notifier").
package alerter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/alert"
	"github.com/agentmonitor/agentmonitor/internal/alertredis"
	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/notify"
	"github.com/agentmonitor/agentmonitor/internal/ops"
	"github.com/agentmonitor/agentmonitor/internal/postgres"
	"github.com/agentmonitor/agentmonitor/internal/redisconn"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/worker"
	"github.com/redis/go-redis/v9"
)

// Group is the consumer group every alerter copy joins on the metrics streams.
const Group = "alerter"

// Config is the alerter binary's configuration.
type Config struct {
	worker.Config
	Postgres postgres.Config
	Influx   influx.Config
	Notify   notify.Config

	// RulesPollInterval is how often the rules version is read (Rules.Run).
	RulesPollInterval time.Duration `env:"RULES_POLL_INTERVAL" envDefault:"1s" help:"how often to check the rules version in Redis; rule changes take effect within it"`
	// AgentsRefreshInterval is how often the agent registry is reloaded (Agents.Run).
	AgentsRefreshInterval time.Duration `env:"AGENTS_REFRESH_INTERVAL" envDefault:"5s" help:"how often to reload the agent registry (labels, last_seen) for selectors and agent_silent rules"`
	// SilentCheckInterval is how often agent_silent rules are checked and alerts of changed
	// rules retired (Evaluator.RunSilent).
	SilentCheckInterval time.Duration `env:"SILENT_CHECK_INTERVAL" envDefault:"5s" help:"how often to evaluate agent_silent rules and end the alerts of changed rules"`
	// SilentHoldLag is the lag of the alerter's group on the metrics streams (entries) above which
	// agent_silent rules are held back (Evaluator.JudgeSilenceByAccepted); 0 disables it.
	SilentHoldLag int64 `env:"SILENT_HOLD_LAG" envDefault:"50000" help:"entries the alerter may lag behind on the metrics streams before agent_silent rules are held back (the pipeline cannot tell silence from its own delay); 0: never hold"`
	// MaxWait replaces STREAM_MAX_WAIT for the metrics streams: batch sinks wait to fill big
	// batches, but every millisecond waited here is alert latency (budget: 50ms from the
	// sample's acceptance to the WebSocket). A backlog still fills whole batches at once.
	MaxWait time.Duration `env:"ALERTER_MAX_WAIT" envDefault:"5ms" help:"how long to keep reading metrics entries to fill a batch before evaluating it (replaces STREAM_MAX_WAIT for the metrics streams)"`
}

// Prepare fills the worker settings the binary chooses (group, ops address, consumer name) and
// gives the notifier the copy's stable consumer name and the key prefix.
func (c *Config) Prepare() error {
	if err := c.Config.Prepare(Group, ":9103"); err != nil {
		return err
	}
	c.Notify.Prefix, c.Notify.Consumer = c.Redis.Prefix, c.Stream.Consumer
	return nil
}

// Validate checks every setting, naming the variable at fault.
func (c Config) Validate() error {
	errs := []error{c.Config.Validate()}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"RULES_POLL_INTERVAL", c.RulesPollInterval},
		{"AGENTS_REFRESH_INTERVAL", c.AgentsRefreshInterval},
		{"SILENT_CHECK_INTERVAL", c.SilentCheckInterval},
		{"ALERTER_MAX_WAIT", c.MaxWait},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s=%s: want a positive duration", d.name, d.v))
		}
	}
	if c.SilentHoldLag < 0 {
		errs = append(errs, fmt.Errorf("SILENT_HOLD_LAG=%d: want 0 or more", c.SilentHoldLag))
	}
	if 2*c.MaxWait > c.Stream.ClaimMinIdle {
		errs = append(errs, fmt.Errorf("ALERTER_MAX_WAIT=%s: want at most half of STREAM_CLAIM_MIN_IDLE (%s)", c.MaxWait, c.Stream.ClaimMinIdle))
	}
	errs = append(errs, c.Postgres.Validate(), c.Influx.Validate(), c.Notify.Validate())
	return errors.Join(errs...)
}

// historyConfig returns the consumer configuration of the history group: the worker's, reading
// the alerts streams, with its own dead-letter stream.
func historyConfig(w *worker.Config, alerts []string) stream.ConsumerConfig {
	c := w.Stream
	c.Streams = alerts
	c.DeadLetter = historyDeadLetter(w.Redis.Prefix)
	c.Group = HistoryGroup
	return c
}

// historyDeadLetter returns the key of the history group's dead-letter stream.
func historyDeadLetter(prefix string) string { return prefix + "alerts:dead" }

// Run runs the alerter until ctx is done, then drains: it loads the rules and the agents (and
// fails if PostgreSQL or Redis does not answer), then consumes the metrics streams, checks
// agent_silent rules, records history and sends notifications. InfluxDB need not be up: history
// waits in the alerts stream until the bucket is provisioned.
func Run(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	db, err := postgres.OpenMigrated(ctx, cfg.Postgres.URL)
	if err != nil {
		return err
	}
	defer db.Close()
	ifx, err := influx.New(cfg.Influx)
	if err != nil {
		return fmt.Errorf("building influxdb client: %w", err)
	}
	defer ifx.Close()
	rdb, err := redisconn.Open(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	reg := ops.NewRegistry()
	prefix := cfg.Redis.Prefix
	// The alerts streams of every shard alert state was ever written in: after STREAM_SHARDS was
	// lowered, the old shards' streams still carry the ends of the alerts left there.
	knownShards, err := alertShards(ctx, rdb, prefix, cfg.Stream.Shards)
	if err != nil {
		rdb.Close()
		return err
	}
	alertStreams := alertredis.StreamKeysOf(prefix, knownShards)

	rules := NewRules(postgres.NewRuleStore(db), rdb, prefix, logger, reg)
	agents := NewAgents(postgres.NewAgentStore(db), logger, reg)
	if err := rules.Load(ctx); err != nil {
		rdb.Close()
		return err
	}
	if err := agents.Refresh(ctx); err != nil {
		rdb.Close()
		return err
	}
	eval := NewEvaluator(rdb, prefix, cfg.Stream.Shards, rules, agents, logger, reg)
	eval.JudgeSilenceByAccepted(stream.StreamKeys(prefix, cfg.Stream.Shards), Group, cfg.SilentHoldLag)
	eval.WatchPipeline(PipelineProbe{
		Streams:     append(stream.StreamKeys(prefix, cfg.Stream.Shards), alertStreams...),
		DeadLetters: []string{stream.DeadLetterKey(prefix), notify.PoisonKey(prefix), historyDeadLetter(prefix)},
		Stores: map[string]func(context.Context) error{
			alert.StorePostgreSQL: db.PingContext,
			alert.StoreInfluxDB:   func(ctx context.Context) error { _, err := ifx.Version(ctx); return err },
		},
	})

	provisioned := make(chan struct{})
	hcfg := historyConfig(&cfg.Config, alertStreams)
	hcfg.Registerer = reg
	history, err := stream.NewConsumer(rdb, hcfg,
		NewHistory(postgres.NewAlertEventStore(db), ifx, provisioned, logger, reg).Handle, logger)
	if err != nil {
		rdb.Close()
		return fmt.Errorf("building history consumer: %w", err)
	}
	// The notifier runs on the same batch consumer, with the worker's STREAM_* settings.
	ncfg := cfg.Notify
	ncfg.Streams = alertStreams
	notifier, err := notify.New(rdb, ncfg, cfg.Stream, postgres.NewChannelStore(db), postgres.NewSilenceStore(db), logger, reg)
	if err != nil {
		rdb.Close()
		return fmt.Errorf("building notifier: %w", err)
	}

	metricsCfg := cfg.Config
	metricsCfg.Stream.MaxWait = cfg.MaxWait
	return worker.Run(ctx, rdb, worker.Worker{
		Config:   &metricsCfg,
		Handler:  eval.Handle,
		Registry: reg,
		Checks: map[string]ops.Check{
			"postgres": db.PingContext,
			"influxdb": func(ctx context.Context) error { _, err := ifx.Version(ctx); return err },
		},
		Background: []func(context.Context) error{
			func(ctx context.Context) error { return rules.Run(ctx, cfg.RulesPollInterval) },
			func(ctx context.Context) error { return agents.Run(ctx, cfg.AgentsRefreshInterval) },
			func(ctx context.Context) error { return eval.RunSilent(ctx, cfg.SilentCheckInterval) },
			func(ctx context.Context) error { ifx.ProvisionUntilDone(ctx, provisioned, logger); return nil },
			history.Run,
			notifier.Run,
		},
	}, logger)
}

// alertShards records the shards of this configuration (alertredis.RecordShards) and returns
// every shard alert state was ever written in.
func alertShards(ctx context.Context, rdb redis.UniversalClient, prefix string, shards int) ([]int, error) {
	if err := alertredis.RecordShards(ctx, rdb, prefix, shards); err != nil {
		return nil, err
	}
	return alertredis.KnownShards(ctx, rdb, prefix, shards)
}
