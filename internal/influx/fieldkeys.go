package influx

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/influxdata/influxdb-client-go/v2/domain"
)

// ErrNoDBRP is wrapped by FieldKeys on InfluxDB 2.x when the bucket has no DBRP mapping, so the
// v1-compatible /query endpoint cannot address it.
var ErrNoDBRP = errors.New("the bucket has no database/retention-policy (DBRP) mapping for InfluxQL")

// FieldKey is one field of a measurement and the type InfluxDB holds it with.
type FieldKey struct {
	Measurement string
	Field       string
	// Type is InfluxDB's name of the type: "float", "integer", "string", "boolean" or
	// "unsigned".
	Type string
}

// FieldKeys returns every field of every measurement in the bucket with its type, from
// InfluxQL's SHOW FIELD KEYS. On 1.x it asks the bucket's database and retention policy; on 2.x
// the v1-compatible /query endpoint, addressed through the bucket's DBRP mapping (the default one
// if several; the bucket's name when the server lists none, as 2.x creates a virtual mapping for
// every bucket); it wraps ErrNoDBRP when the server knows no mapping either way. A 1.x database
// that does not exist yet holds no field: the answer is empty. A field held with different types
// in different shards is listed once per type.
func (c *Client) FieldKeys(ctx context.Context) ([]FieldKey, error) {
	major, err := c.MajorVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing field keys: %w", err)
	}
	var db, rp string
	if major == 1 {
		db, rp, _ = strings.Cut(c.cfg.Bucket, "/")
	} else if db, rp, err = c.dbrpV2(ctx); err != nil {
		return nil, fmt.Errorf("listing field keys: %w", err)
	}
	series, err := c.InfluxQLIn(ctx, db, rp, "SHOW FIELD KEYS")
	switch {
	case err == nil:
	case major == 1 && strings.Contains(err.Error(), "database not found"):
		return nil, nil // not provisioned yet: it holds no field
	case major == 2 && strings.Contains(err.Error(), "database not found"):
		return nil, fmt.Errorf("listing field keys: %w: %w", ErrNoDBRP, err)
	default:
		return nil, fmt.Errorf("listing field keys: %w", err)
	}
	var keys []FieldKey
	for _, s := range series {
		k, t := colIndex(s.Columns, "fieldKey"), colIndex(s.Columns, "fieldType")
		if k < 0 || t < 0 {
			return nil, fmt.Errorf("listing field keys: unexpected columns %v", s.Columns)
		}
		for _, row := range s.Values {
			if len(row) <= max(k, t) {
				continue
			}
			field, _ := row[k].(string)
			typ, _ := row[t].(string)
			if field == "" || typ == "" {
				continue
			}
			keys = append(keys, FieldKey{Measurement: s.Name, Field: field, Type: typ})
		}
	}
	return keys, nil
}

// dbrpV2 returns the database and retention policy InfluxQL addresses the bucket with on 2.x.
func (c *Client) dbrpV2(ctx context.Context) (db, rp string, err error) {
	org, err := c.orgV2(ctx)
	if err != nil {
		return "", "", err
	}
	bucket, err := c.findBucketV2(ctx, *org.Id, c.cfg.Bucket)
	if err != nil {
		return "", "", err
	}
	if bucket == nil || bucket.Id == nil {
		return "", "", fmt.Errorf("bucket %q not found", c.cfg.Bucket)
	}
	res, err := c.client.APIClient().GetDBRPs(ctx, &domain.GetDBRPsParams{OrgID: org.Id, BucketID: bucket.Id})
	if err != nil {
		return "", "", fmt.Errorf("finding the bucket's DBRP mapping: %w", err)
	}
	var found *domain.DBRP
	if res.Content != nil {
		for i, m := range *res.Content {
			if found == nil || m.Default {
				found = &(*res.Content)[i]
			}
		}
	}
	if found == nil {
		// Servers from 2.1 on map every bucket virtually as database <bucket name>; older ones
		// answer "database not found", which FieldKeys reports as ErrNoDBRP.
		return c.cfg.Bucket, "", nil
	}
	return found.Database, found.RetentionPolicy, nil
}
