package metric

import (
	"fmt"
	"time"
)

// Limits bounds what one request may carry. The zero value is not usable: start from
// DefaultLimits and check a configured value with Validate.
type Limits struct {
	// MaxPoints is the most points one request may carry.
	MaxPoints int
	// MaxTags is the most tags one point may carry, counting a client-sent "agent" tag
	// (which the encoder replaces) but not the agent tag the encoder adds.
	MaxTags int
	// MaxFields is the most fields one point may carry.
	MaxFields int
	// MaxNameLen is the longest measurement, tag key or field key, in bytes.
	MaxNameLen int
	// MaxTagValueLen is the longest tag value, in bytes.
	MaxTagValueLen int
	// MaxStringLen is the longest string field value, in bytes.
	MaxStringLen int
	// MaxPast is how far before now a point's time may lie.
	MaxPast time.Duration
	// MaxFuture is how far after now a point's time may lie.
	MaxFuture time.Duration
}

// DefaultLimits returns the limits the gateway uses unless configured otherwise:
// 5000 points, 64 tags and 256 fields per point, names up to 256 bytes, tag values up to
// 1024 bytes, strings up to 64 KiB, times from 7 days in the past to 10 minutes in the future.
func DefaultLimits() Limits {
	return Limits{
		MaxPoints:      5000,
		MaxTags:        64,
		MaxFields:      256,
		MaxNameLen:     256,
		MaxTagValueLen: 1024,
		MaxStringLen:   64 << 10,
		MaxPast:        7 * 24 * time.Hour,
		MaxFuture:      10 * time.Minute,
	}
}

// Validate reports the first limit that cannot work: counts and lengths must be positive
// (MaxTags may be 0: no client tags), durations must not be negative.
func (l Limits) Validate() error {
	positive := []struct {
		name string
		v    int
	}{
		{"MaxPoints", l.MaxPoints},
		{"MaxFields", l.MaxFields},
		{"MaxNameLen", l.MaxNameLen},
		{"MaxTagValueLen", l.MaxTagValueLen},
		{"MaxStringLen", l.MaxStringLen},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("metric limits: %s must be positive, got %d", p.name, p.v)
		}
	}
	if l.MaxTags < 0 {
		return fmt.Errorf("metric limits: MaxTags must not be negative, got %d", l.MaxTags)
	}
	if l.MaxPast < 0 {
		return fmt.Errorf("metric limits: MaxPast must not be negative, got %v", l.MaxPast)
	}
	if l.MaxFuture < 0 {
		return fmt.Errorf("metric limits: MaxFuture must not be negative, got %v", l.MaxFuture)
	}
	return nil
}
