package influx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx/influxql"
	"github.com/influxdata/influxdb-client-go/v2/api"
)

// Tier is one rollup tier: windows of Width aligned to the Unix epoch, named Name ("1m").
type Tier struct {
	Name  string
	Width time.Duration
}

// Tiers are the rollup tiers, finest first. Each is computed from the one before it, the first
// from raw points.
var Tiers = []Tier{{"1m", time.Minute}, {"5m", 5 * time.Minute}, {"1h", time.Hour}, {"1d", 24 * time.Hour}}

// TierConfig holds the retention of every rollup tier, in days (0 keeps a tier forever).
type TierConfig struct {
	Retention1m int `env:"ROLLUP_1M_RETENTION_DAYS" envDefault:"90" help:"days 1-minute rollups are kept; 0 keeps them forever"`
	Retention5m int `env:"ROLLUP_5M_RETENTION_DAYS" envDefault:"180" help:"days 5-minute rollups are kept; 0 keeps them forever"`
	Retention1h int `env:"ROLLUP_1H_RETENTION_DAYS" envDefault:"730" help:"days 1-hour rollups are kept; 0 keeps them forever"`
	Retention1d int `env:"ROLLUP_1D_RETENTION_DAYS" envDefault:"1825" help:"days 1-day rollups are kept; 0 keeps them forever"`
}

// RetentionDays returns the configured retention of tier t in days (0: forever).
func (c TierConfig) RetentionDays(t Tier) int {
	switch t.Name {
	case "1m":
		return c.Retention1m
	case "5m":
		return c.Retention5m
	case "1h":
		return c.Retention1h
	default:
		return c.Retention1d
	}
}

// Validate refuses negative retentions, naming the variable.
func (c TierConfig) Validate() error {
	var errs []error
	for _, t := range Tiers {
		if d := c.RetentionDays(t); d < 0 {
			errs = append(errs, fmt.Errorf("ROLLUP_%s_RETENTION_DAYS %d: want 0 (forever) or more", strings.ToUpper(t.Name), d))
		}
	}
	return errors.Join(errs...)
}

// tierRP returns the 1.x retention policy that holds tier t: "rollup_1m" and so on.
func tierRP(t Tier) string { return "rollup_" + t.Name }

// database returns the 1.x database of the raw bucket ("db" of "db" or "db/rp").
func (c *Client) database() string {
	db, _, _ := strings.Cut(c.cfg.Bucket, "/")
	return db
}

// isV1Config reports whether the configuration addresses InfluxDB 1.x: 2.x needs an organization
// (Provision refuses 2.x without one), 1.x has none.
func (c *Client) isV1Config() bool { return c.cfg.Org == "" }

// TierBucket returns where tier t is stored: "db/rollup_1m" (database and retention policy) on
// 1.x, "<bucket>_1m" on 2.x. Which one is told by the configuration (INFLUXDB_ORG is set for 2.x
// only), without asking the server.
func (c *Client) TierBucket(t Tier) string {
	if c.isV1Config() {
		return c.database() + "/" + tierRP(t)
	}
	return c.cfg.Bucket + "_" + t.Name
}

// ProvisionTiers makes sure every rollup tier's retention policy (1.x: rollup_1m … rollup_1d in
// the raw database, never the default) or bucket (2.x: <bucket>_1m …) exists with the retention
// in cfg, creating it or altering it in place. The raw database must exist (Provision first).
// It is idempotent and safe to run from several processes at once.
func (c *Client) ProvisionTiers(ctx context.Context, cfg TierConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	major, err := c.MajorVersion(ctx)
	if err != nil {
		return err
	}
	for _, t := range Tiers {
		days := cfg.RetentionDays(t)
		if major == 1 {
			err = c.provisionTierV1(ctx, t, days)
		} else {
			err = c.provisionBucketV2(ctx, c.TierBucket(t), days)
		}
		if err != nil {
			return fmt.Errorf("provisioning rollup tier %s (%s): %w", t.Name, c.TierBucket(t), err)
		}
	}
	return nil
}

// provisionTierV1 creates or alters the tier's retention policy; it never becomes the default.
func (c *Client) provisionTierV1(ctx context.Context, t Tier, days int) error {
	dur, shard := retentionV1(days)
	target := influxql.QuoteIdent(tierRP(t)) + " ON " + influxql.QuoteIdent(c.database())
	alter := fmt.Sprintf("ALTER RETENTION POLICY %s DURATION %s SHARD DURATION %s", target, dur, shard)
	series, err := c.InfluxQL(ctx, "SHOW RETENTION POLICIES ON "+influxql.QuoteIdent(c.database()))
	if err != nil {
		return err
	}
	for _, s := range series {
		name := colIndex(s.Columns, "name")
		if name < 0 {
			continue
		}
		for _, row := range s.Values {
			if n, _ := row[name].(string); n == tierRP(t) {
				_, err := c.InfluxQL(ctx, alter)
				return err
			}
		}
	}
	_, err = c.InfluxQL(ctx, fmt.Sprintf("CREATE RETENTION POLICY %s DURATION %s REPLICATION 1 SHARD DURATION %s", target, dur, shard))
	if err != nil && strings.Contains(err.Error(), "already exists") {
		// Another process created it, maybe with another duration, between SHOW and CREATE.
		_, err = c.InfluxQL(ctx, alter)
	}
	return err
}

// WriteBucket is Write to another bucket of the same server, such as a TierBucket: line protocol
// with nanosecond timestamps, one blocking request, failures classified as by Write.
func (c *Client) WriteBucket(ctx context.Context, bucket string, body []byte) error {
	if bucket == c.cfg.Bucket {
		return c.Write(ctx, body)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	w, ok := c.writers.Load(bucket)
	if !ok {
		w, _ = c.writers.LoadOrStore(bucket, c.client.WriteAPIBlocking(c.cfg.Org, bucket))
	}
	if err := w.(api.WriteAPIBlocking).WriteRecord(ctx, string(body)); err != nil {
		return classify(err)
	}
	return nil
}

// ProvisionAllUntilDone provisions the raw bucket (ProvisionUntilDone) and then the tiers with
// exponential backoff (500ms up to 30s) until both succeed, and reports whether they did before
// ctx ended. The rollup worker, which writes the tiers, and the gateway, which reads them, both
// call it: it is idempotent, and both read the same ROLLUP_*_RETENTION_DAYS settings.
func (c *Client) ProvisionAllUntilDone(ctx context.Context, tiers TierConfig, logger *slog.Logger) bool {
	done := make(chan struct{})
	c.ProvisionUntilDone(ctx, done, logger)
	select {
	case <-done:
	default:
		return false
	}
	wait := 500 * time.Millisecond
	for {
		err := c.ProvisionTiers(ctx, tiers)
		if err == nil {
			logger.Info("rollup tiers provisioned", "1m", c.TierBucket(Tiers[0]))
			return true
		}
		logger.Warn("provisioning rollup tiers; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
