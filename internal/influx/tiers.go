package influx

import (
	"strings"
	"time"
)

// Tier is one rollup tier: its name ("1m") and the width of its windows.
type Tier struct {
	Name  string
	Width time.Duration
}

// Tiers are the rollup tiers, finest first (HISTORY-CONTRACT.md, issue 8).
var Tiers = []Tier{{"1m", time.Minute}, {"5m", 5 * time.Minute}, {"1h", time.Hour}, {"1d", 24 * time.Hour}}

// TierBucket returns where tier t is stored: "db/rollup_1m" (database/retention policy) on 1.x,
// "<bucket>_1m" on 2.x. The 1.x form is used when the configured bucket has no organization.
func (c *Client) TierBucket(t Tier) string {
	if c.cfg.Org == "" {
		db, _, _ := strings.Cut(c.cfg.Bucket, "/")
		return db + "/rollup_" + t.Name
	}
	return c.cfg.Bucket + "_" + t.Name
}
