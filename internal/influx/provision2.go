package influx

import (
	"context"
	"errors"
	"fmt"

	"github.com/influxdata/influxdb-client-go/v2/domain"
)

// provisionV2 creates the bucket in the organization, or corrects its retention rule.
func (c *Client) provisionV2(ctx context.Context) error {
	if c.cfg.Org == "" {
		return errors.New("INFLUXDB_ORG is required with InfluxDB 2.x")
	}
	org, err := c.client.OrganizationsAPI().FindOrganizationByName(ctx, c.cfg.Org)
	if err != nil {
		return fmt.Errorf("finding organization %q: %w", c.cfg.Org, err)
	}
	expire := domain.RetentionRuleTypeExpire
	rule := domain.RetentionRule{EverySeconds: int64(c.cfg.RetentionDays) * 86400, Type: &expire} // 0: forever

	bucket, err := c.findBucketV2(ctx, *org.Id)
	if err != nil {
		return err
	}
	if bucket == nil {
		_, err := c.client.BucketsAPI().CreateBucketWithNameWithID(ctx, *org.Id, c.cfg.Bucket, rule)
		if err == nil {
			return nil
		}
		// Another process may have created it since we looked (2.x answers 422): look again.
		if bucket, _ = c.findBucketV2(ctx, *org.Id); bucket == nil {
			return fmt.Errorf("creating bucket: %w", err)
		}
	}
	if len(bucket.RetentionRules) == 1 && bucket.RetentionRules[0].EverySeconds == rule.EverySeconds {
		return nil
	}
	bucket.RetentionRules = domain.RetentionRules{rule}
	if _, err := c.client.BucketsAPI().UpdateBucket(ctx, bucket); err != nil {
		return fmt.Errorf("setting bucket retention: %w", err)
	}
	return nil
}

// findBucketV2 returns the configured bucket of the organization, or nil if it does not exist.
func (c *Client) findBucketV2(ctx context.Context, orgID string) (*domain.Bucket, error) {
	name := c.cfg.Bucket
	resp, err := c.client.APIClient().GetBuckets(ctx, &domain.GetBucketsParams{OrgID: &orgID, Name: &name})
	if err != nil {
		return nil, fmt.Errorf("finding bucket: %w", err)
	}
	if resp.Buckets == nil {
		return nil, nil
	}
	for _, b := range *resp.Buckets {
		if b.Name == name {
			return &b, nil
		}
	}
	return nil, nil
}
