package fieldtype

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/influx"
	"github.com/agentmonitor/agentmonitor/internal/metric"
)

// Source tells Check where the points' values come from.
type Source uint8

const (
	// LineProtocol: every value has the type it was written with.
	LineProtocol Source = iota
	// JSON: floats are JSON numbers, which become integers for integer fields when integral.
	JSON
)

// Registry is the field-type registry of one deployment (one Redis key prefix). It is safe for
// concurrent use.
type Registry struct {
	rdb    redis.Cmdable
	prefix string
	logger *slog.Logger

	mu    sync.RWMutex
	types map[string]map[string]metric.Kind // measurement → field → kind, as registered in Redis
}

// New returns a registry keeping its hashes under prefix + "fieldtypes:" in rdb. It does not
// contact Redis; logger may be nil.
func New(rdb redis.Cmdable, prefix string, logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{rdb: rdb, prefix: prefix, logger: logger.With("component", "fieldtype"), types: map[string]map[string]metric.Kind{}}
}

// Key returns the Redis hash that holds the field types of measurement.
func (r *Registry) Key(measurement string) string { return r.prefix + "fieldtypes:" + measurement }

// TypeName returns InfluxDB's name of a kind: "float", "integer", "unsigned", "string" or
// "boolean".
func TypeName(k metric.Kind) string {
	switch k {
	case metric.KindFloat:
		return "float"
	case metric.KindInt:
		return "integer"
	case metric.KindUint:
		return "unsigned"
	case metric.KindString:
		return "string"
	case metric.KindBool:
		return "boolean"
	}
	return fmt.Sprintf("kind(%d)", k)
}

// kindOf is the inverse of TypeName.
func kindOf(name string) (metric.Kind, bool) {
	switch name {
	case "float":
		return metric.KindFloat, true
	case "integer":
		return metric.KindInt, true
	case "unsigned":
		return metric.KindUint, true
	case "string":
		return metric.KindString, true
	case "boolean":
		return metric.KindBool, true
	}
	return 0, false
}

// Check makes pts agree with the registered field types, registering the fields seen for the
// first time with the type pts send. Points that came from JSON (src JSON) have their integral
// numbers turned into integers for integer fields, in place.
//
// It returns a *metric.PointError (Index set, Line 0) naming the first field whose type differs
// from the registered one, or a tag key that is a registered field; any other error means Redis
// could not be asked (the request can be retried). Fields known to this process cost no Redis
// call; the new fields of pts cost one pipelined round trip. Only a request whose conflict is
// among its new fields can leave types registered for its other new fields.
func (r *Registry) Check(ctx context.Context, pts []metric.Point, src Source) error {
	var pending []ref
	r.mu.RLock()
	for i := range pts {
		p := &pts[i]
		known := r.types[p.Measurement]
		if known == nil {
			for j := range p.Fields {
				pending = append(pending, ref{i, j})
			}
			continue
		}
		for _, t := range p.Tags {
			if k, ok := known[t.Key]; ok {
				r.mu.RUnlock()
				return &metric.PointError{Index: i, Reason: fmt.Sprintf("tag key %q of measurement %q is already a field (%s): "+
					"InfluxQL would read the name as the field; rename the tag", t.Key, p.Measurement, TypeName(k))}
			}
		}
		for j := range p.Fields {
			f := &p.Fields[j]
			k, ok := known[f.Key]
			if !ok {
				pending = append(pending, ref{i, j})
				continue
			}
			if reason := conform(p.Measurement, f, k, src); reason != "" {
				r.mu.RUnlock()
				return &metric.PointError{Index: i, Reason: reason}
			}
		}
	}
	r.mu.RUnlock()
	if len(pending) == 0 {
		return nil
	}
	return r.claim(ctx, pts, pending, src)
}

// ref addresses field j of point i.
type ref struct{ i, j int }

// fieldID is a field of a measurement.
type fieldID struct{ measurement, field string }

// claim registers the fields of pending (first proposal wins within pts, then HSETNX across
// processes), caches what Redis holds, and conforms every pending field to it.
func (r *Registry) claim(ctx context.Context, pts []metric.Point, pending []ref, src Source) error {
	proposed := make(map[fieldID]metric.Kind, len(pending))
	var order []fieldID
	for _, rf := range pending {
		p := &pts[rf.i]
		id := fieldID{p.Measurement, p.Fields[rf.j].Key}
		if _, ok := proposed[id]; !ok {
			proposed[id] = p.Fields[rf.j].Value.Kind
			order = append(order, id)
		}
	}
	got := make(map[fieldID]metric.Kind, len(order))
	for len(order) > 0 { // one round trip, unless the request brings more than batchSize new fields
		n := min(len(order), batchSize)
		part, err := r.register(ctx, order[:n], func(id fieldID) string { return TypeName(proposed[id]) })
		if err != nil {
			return err
		}
		for id, k := range part {
			got[id] = k
		}
		order = order[n:]
	}
	for _, rf := range pending {
		p := &pts[rf.i]
		f := &p.Fields[rf.j]
		if reason := conform(p.Measurement, f, got[fieldID{p.Measurement, f.Key}], src); reason != "" {
			return &metric.PointError{Index: rf.i, Reason: reason}
		}
	}
	return nil
}

// register runs HSETNX then HGET for every id in one pipeline, caches the types Redis holds
// and returns them.
func (r *Registry) register(ctx context.Context, ids []fieldID, typeOf func(fieldID) string) (map[fieldID]metric.Kind, error) {
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for n, id := range ids {
		key := r.Key(id.measurement)
		pipe.HSetNX(ctx, key, id.field, typeOf(id))
		cmds[n] = pipe.HGet(ctx, key, id.field)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("registering field types: %w", err)
	}
	got := make(map[fieldID]metric.Kind, len(ids))
	for n, id := range ids {
		name := cmds[n].Val()
		k, ok := kindOf(name)
		if !ok {
			return nil, fmt.Errorf("registering field types: %s holds unknown type %q for field %q", r.Key(id.measurement), name, id.field)
		}
		got[id] = k
	}
	r.mu.Lock()
	for id, k := range got {
		m := r.types[id.measurement]
		if m == nil {
			m = map[string]metric.Kind{}
			r.types[id.measurement] = m
		}
		m[id.field] = k
	}
	r.mu.Unlock()
	return got, nil
}

// maxInt64Float is 2^63, the first float64 beyond int64.
const maxInt64Float = float64(1 << 63)

// conform returns why f cannot be written to a field registered as have, or "" when it can,
// turning an integral JSON number into an integer for an integer field.
func conform(measurement string, f *metric.Field, have metric.Kind, src Source) string {
	v := &f.Value
	if v.Kind == have {
		return ""
	}
	if src == JSON && v.Kind == metric.KindFloat && have == metric.KindInt {
		switch {
		case v.F != math.Trunc(v.F):
			return fmt.Sprintf("field %q of measurement %q is integer; this point sends the fractional number %v", f.Key, measurement, v.F)
		case v.F < -maxInt64Float || v.F >= maxInt64Float:
			return fmt.Sprintf("field %q of measurement %q is integer; this point sends %v, beyond the integer range", f.Key, measurement, v.F)
		}
		*v = metric.Value{Kind: metric.KindInt, I: int64(v.F)}
		return ""
	}
	sent := TypeName(v.Kind)
	if src == JSON && v.Kind == metric.KindFloat {
		sent = "a number (float)"
	}
	return fmt.Sprintf("field %q of measurement %q is %s; this point sends %s", f.Key, measurement, TypeName(have), sent)
}

// Lister lists the field types InfluxDB holds; *influx.Client is one.
type Lister interface {
	FieldKeys(ctx context.Context) ([]influx.FieldKey, error)
}

// batchSize bounds the fields of one pipeline, so that a huge request or seed does not build
// one huge pipeline.
const batchSize = 1000

// Seed registers the field types InfluxDB holds (as listed by l): a field not registered yet
// gets InfluxDB's type (the first listed, when InfluxDB lists several); a field registered with
// another type keeps it and is logged, since the gateways have been enforcing it. It caches
// every type it registered or found and returns how many fields it looked at.
func (r *Registry) Seed(ctx context.Context, l Lister) (int, error) {
	keys, err := l.FieldKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("seeding field types: %w", err)
	}
	influxType := map[fieldID]string{}
	var ids []fieldID
	for _, k := range keys {
		id := fieldID{k.Measurement, k.Field}
		if first, ok := influxType[id]; ok {
			if first != k.Type {
				r.logger.Warn("influxdb holds a field with several types; registering the first",
					"measurement", k.Measurement, "field", k.Field, "registered", first, "also", k.Type)
			}
			continue
		}
		if _, ok := kindOf(k.Type); !ok {
			r.logger.Warn("influxdb field of an unknown type; not registered", "measurement", k.Measurement, "field", k.Field, "type", k.Type)
			continue
		}
		influxType[id] = k.Type
		ids = append(ids, id)
	}
	for len(ids) > 0 {
		n := min(len(ids), batchSize)
		got, err := r.register(ctx, ids[:n], func(id fieldID) string { return influxType[id] })
		if err != nil {
			return 0, fmt.Errorf("seeding field types: %w", err)
		}
		for id, k := range got {
			if name := TypeName(k); name != influxType[id] {
				r.logger.Warn("field registered with another type than influxdb holds; keeping the registered type",
					"measurement", id.measurement, "field", id.field, "registered", name, "influxdb", influxType[id])
			}
		}
		ids = ids[n:]
	}
	return len(influxType), nil
}

// SeedUntilDone calls Seed until it succeeds, retrying with backoff (1 s doubling up to 1 min)
// while InfluxDB or Redis is unreachable; it returns when Seed succeeded or ctx is done. The
// registry works meanwhile: it learns from accepted writes.
func (r *Registry) SeedUntilDone(ctx context.Context, l Lister) {
	wait := time.Second
	for {
		n, err := r.Seed(ctx, l)
		if err == nil {
			r.logger.Info("field types seeded from influxdb", "fields", n)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, influx.ErrNoDBRP) {
			// Retrying cannot help until an operator maps the bucket; the registry learns meanwhile.
			r.logger.Warn("cannot seed field types from influxdb: map the bucket to a database and retention policy "+
				"(influx v1 dbrp create) for the gateway to learn the types it already holds", "err", err)
			return
		}
		r.logger.Warn("seeding field types from influxdb failed; retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}
