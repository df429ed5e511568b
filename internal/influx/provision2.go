package influx

import (
	"context"
	"errors"
	"fmt"

	"github.com/influxdata/influxdb-client-go/v2/domain"
)

// provisionV2 creates the raw bucket in the organization, or corrects its retention rule.
func (c *Client) provisionV2(ctx context.Context) error {
	return c.provisionBucketV2(ctx, c.cfg.Bucket, c.cfg.RetentionDays)
}

// orgV2 finds the configured organization, which InfluxDB 2.x requires (INFLUXDB_ORG).
func (c *Client) orgV2(ctx context.Context) (*domain.Organization, error) {
	if c.cfg.Org == "" {
		return nil, errors.New("INFLUXDB_ORG is required with InfluxDB 2.x")
	}
	org, err := c.client.OrganizationsAPI().FindOrganizationByName(ctx, c.cfg.Org)
	if err != nil {
		return nil, fmt.Errorf("finding organization %q: %w", c.cfg.Org, err)
	}
	return org, nil
}

// provisionBucketV2 creates bucket name in the organization with days of retention (0: forever),
// or corrects the retention of the existing bucket.
func (c *Client) provisionBucketV2(ctx context.Context, name string, days int) error {
	org, err := c.orgV2(ctx)
	if err != nil {
		return err
	}
	expire := domain.RetentionRuleTypeExpire
	rule := domain.RetentionRule{EverySeconds: int64(days) * 86400, Type: &expire} // 0: forever
	bucket, err := c.findBucketV2(ctx, *org.Id, name)
	if err != nil {
		return err
	}
	if bucket == nil {
		_, err := c.client.BucketsAPI().CreateBucketWithNameWithID(ctx, *org.Id, name, rule)
		if err == nil {
			return nil
		}
		// Another process may have created it since we looked (2.x answers 422): look again.
		if bucket, _ = c.findBucketV2(ctx, *org.Id, name); bucket == nil {
			return fmt.Errorf("creating bucket %q: %w", name, err)
		}
	}
	if len(bucket.RetentionRules) == 1 && bucket.RetentionRules[0].EverySeconds == rule.EverySeconds {
		return nil
	}
	bucket.RetentionRules = domain.RetentionRules{rule}
	if _, err := c.client.BucketsAPI().UpdateBucket(ctx, bucket); err != nil {
		return fmt.Errorf("setting retention of bucket %q: %w", name, err)
	}
	return nil
}

// findBucketV2 returns bucket name of the organization, or nil if it does not exist.
func (c *Client) findBucketV2(ctx context.Context, orgID, name string) (*domain.Bucket, error) {
	resp, err := c.client.APIClient().GetBuckets(ctx, &domain.GetBucketsParams{OrgID: &orgID, Name: &name})
	if err != nil {
		return nil, fmt.Errorf("finding bucket %q: %w", name, err)
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
