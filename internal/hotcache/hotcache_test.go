package hotcache_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/redis/go-redis/v9"

	"github.com/agentmonitor/agentmonitor/internal/hotcache"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/stream"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

const agent = "3f0c1f9e-8a51-4c1b-9d4e-6a2f1b0c7d11"

// shards is the STREAM_SHARDS of the tests.
const shards = 4

func newCache(t *testing.T, mutate func(*hotcache.Config)) (*hotcache.Cache, func(pattern string) []string) {
	t.Helper()
	client, prefix := testenv.Redis(t)
	cfg := hotcache.Config{TTLSeconds: 300, Window: 5 * time.Minute, MaxSeries: 100, MaxSamples: 10000}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := hotcache.New(client, prefix, shards, cfg)
	if err != nil {
		t.Fatal(err)
	}
	keys := func(pattern string) []string {
		ks, err := client.Keys(context.Background(), prefix+pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	return c, keys
}

func tag(k, v string) metric.Tag { return metric.Tag{Key: k, Value: v} }

func float(key string, v float64) metric.Field {
	return metric.Field{Key: key, Value: metric.Value{Kind: metric.KindFloat, F: v}}
}

func joined(vs []jsontext.Value) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = string(v)
	}
	return strings.Join(parts, "\n")
}

func rfc(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func TestLatestAndRecent(t *testing.T) {
	t.Parallel()
	c, keys := newCache(t, nil)
	ctx := context.Background()
	now := time.Now()
	t0 := now.Add(-time.Minute).UnixNano()
	t1 := now.Add(-30 * time.Second).UnixNano()
	old := now.Add(-10 * time.Minute).UnixNano()

	err := c.Update(ctx, agent, []metric.Point{
		{Measurement: "cpu", Tags: []metric.Tag{tag("agent", "spoofed"), tag("core", "0")}, Fields: []metric.Field{float("usage", 1.5)}, Time: t0},
		{Measurement: "cpu", Tags: []metric.Tag{tag("core", "1")}, Fields: []metric.Field{float("usage", 2)}, Time: t0},
		{Measurement: "cpu", Tags: []metric.Tag{tag("core", "0")}, Fields: []metric.Field{float("usage", 3)}, Time: t1},
		{Measurement: "sys", Fields: []metric.Field{
			{Key: "n", Value: metric.Value{Kind: metric.KindInt, I: -7}},
			{Key: "u", Value: metric.Value{Kind: metric.KindUint, U: 18446744073709551615}},
			{Key: "s", Value: metric.Value{Kind: metric.KindString, S: "a \"quoted\"\nline"}},
			{Key: "b", Value: metric.Value{Kind: metric.KindBool, B: true}},
		}, Time: t0},
	}, now)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	// A late batch: older values neither replace the latest nor enter the window.
	if err := c.Update(ctx, agent, []metric.Point{
		{Measurement: "cpu", Tags: []metric.Tag{tag("core", "0")}, Fields: []metric.Field{float("usage", 99)}, Time: old},
	}, now); err != nil {
		t.Fatalf("Update: %v", err)
	}

	latest, err := c.Latest(ctx, agent)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		fmt.Sprintf(`{"metric":"cpu.usage","tags":{"core":"0"},"value":3,"time":%q}`, rfc(t1)),
		fmt.Sprintf(`{"metric":"cpu.usage","tags":{"core":"1"},"value":2,"time":%q}`, rfc(t0)),
		fmt.Sprintf(`{"metric":"sys.b","tags":{},"value":true,"time":%q}`, rfc(t0)),
		fmt.Sprintf(`{"metric":"sys.n","tags":{},"value":-7,"time":%q}`, rfc(t0)),
		fmt.Sprintf(`{"metric":"sys.s","tags":{},"value":"a \"quoted\"\nline","time":%q}`, rfc(t0)),
		fmt.Sprintf(`{"metric":"sys.u","tags":{},"value":18446744073709551615,"time":%q}`, rfc(t0)),
	}, "\n")
	if got := joined(latest); got != want {
		t.Errorf("Latest =\n%s\nwant\n%s", got, want)
	}
	for _, v := range latest {
		if !v.IsValid() {
			t.Errorf("Latest entry %s is not valid JSON", v)
		}
	}

	recent, err := c.Recent(ctx, agent, "cpu.usage", now)
	if err != nil {
		t.Fatal(err)
	}
	want = strings.Join([]string{
		fmt.Sprintf(`{"tags":{"core":"0"},"value":1.5,"time":%q}`, rfc(t0)),
		fmt.Sprintf(`{"tags":{"core":"1"},"value":2,"time":%q}`, rfc(t0)),
		fmt.Sprintf(`{"tags":{"core":"0"},"value":3,"time":%q}`, rfc(t1)),
	}, "\n")
	if got := joined(recent); got != want {
		t.Errorf("Recent =\n%s\nwant\n%s", got, want)
	}
	// Read later, the window has moved past t0.
	recent, err = c.Recent(ctx, agent, "cpu.usage", now.Add(4*time.Minute+15*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 1 || !strings.Contains(string(recent[0]), `"value":3`) {
		t.Errorf("Recent 4m15s later = %s, want only the t1 sample", joined(recent))
	}

	// Samples fall out of the window on the next write too.
	if err := c.Update(ctx, agent, []metric.Point{
		{Measurement: "cpu", Tags: []metric.Tag{tag("core", "0")}, Fields: []metric.Field{float("usage", 4)}, Time: now.Add(5 * time.Minute).UnixNano()},
	}, now.Add(5*time.Minute+45*time.Second)); err != nil {
		t.Fatal(err)
	}
	recent, _ = c.Recent(ctx, agent, "cpu.usage", time.Time{}) // from the beginning of time
	if len(recent) != 1 || !strings.Contains(string(recent[0]), `"value":4`) {
		t.Errorf("stored samples after a write 5m45s later = %s, want only the new one", joined(recent))
	}

	if got, _ := c.Latest(ctx, "7b0c1f9e-8a51-4c1b-9d4e-6a2f1b0c7d11"); len(got) != 0 {
		t.Errorf("Latest of an agent without data = %s, want empty", joined(got))
	}
	shardTag := fmt.Sprintf("{%d}", stream.ShardFor(agent, shards))
	for _, k := range keys("hot:*") {
		if !strings.Contains(k, shardTag+":"+agent+":") {
			t.Errorf("key %s does not carry the hash tag of the agent's shard, %s", k, shardTag)
		}
	}

	other := "7b0c1f9e-8a51-4c1b-9d4e-6a2f1b0c7d11"
	if err := c.Update(ctx, other, []metric.Point{{Measurement: "m", Fields: []metric.Field{float("f", 1)}, Time: now.UnixNano()}}, now); err != nil {
		t.Fatal(err)
	}
	if err := c.Forget(ctx, agent); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	if ks := keys("hot:*"); len(ks) != 2 || !strings.Contains(ks[0], other) || !strings.Contains(ks[1], other) {
		t.Errorf("keys after Forget = %v, want only the other agent's 2", ks)
	}
}

func TestTTL(t *testing.T) {
	t.Parallel()
	c, keys := newCache(t, func(cfg *hotcache.Config) { cfg.TTLSeconds = 1 })
	ctx := context.Background()
	now := time.Now()
	if err := c.Update(ctx, agent, []metric.Point{{Measurement: "m", Fields: []metric.Field{float("f", 1)}, Time: now.UnixNano()}}, now); err != nil {
		t.Fatal(err)
	}
	if len(keys("hot:*")) != 2 {
		t.Fatalf("keys after Update = %v, want latest and one recent", keys("hot:*"))
	}
	testenv.Eventually(t, 3*time.Second, func() string {
		if k := keys("hot:*"); len(k) > 0 {
			return fmt.Sprintf("keys %v still there after a 1s TTL", k)
		}
		return ""
	})
}

func TestBounds(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, func(cfg *hotcache.Config) { cfg.MaxSeries = 3; cfg.MaxSamples = 700 })
	ctx := context.Background()
	now := time.Now()
	// 1200 samples of one metric in one batch, more than MaxSamples; 5 series, more than MaxSeries.
	pts := make([]metric.Point, 1200)
	for i := range pts {
		pts[i] = metric.Point{Measurement: "m", Tags: []metric.Tag{tag("s", fmt.Sprint(i%5))}, Fields: []metric.Field{float("f", float64(i))},
			Time: now.Add(-time.Minute + time.Duration(i)*time.Millisecond).UnixNano()}
	}
	if err := c.Update(ctx, agent, pts, now); err != nil {
		t.Fatalf("Update of 1200 points: %v", err)
	}
	recent, err := c.Recent(ctx, agent, "m.f", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 700 || !strings.Contains(string(recent[0]), `"value":500,`) || !strings.Contains(string(recent[699]), `"value":1199,`) {
		t.Errorf("Recent holds %d samples (first %s), want the newest 700 (500..1199)", len(recent), recent[0])
	}
	latest, err := c.Latest(ctx, agent)
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 0 {
		t.Errorf("Latest holds %d series after 5 were written with MaxSeries 3, want them reset", len(latest))
	}
	if err := c.Update(ctx, agent, pts[:2], now); err != nil {
		t.Fatal(err)
	}
	if latest, _ = c.Latest(ctx, agent); len(latest) != 2 {
		t.Errorf("Latest holds %d series after 2 more were written, want 2", len(latest))
	}
	// Across batches: 3 shapes are kept, a 4th resets them.
	if err := c.Update(ctx, agent, pts[2:3], now); err != nil {
		t.Fatal(err)
	}
	if latest, _ = c.Latest(ctx, agent); len(latest) != 3 {
		t.Errorf("Latest holds %d series after a third was written, want 3", len(latest))
	}
	if err := c.Update(ctx, agent, pts[3:4], now); err != nil {
		t.Fatal(err)
	}
	if latest, _ = c.Latest(ctx, agent); len(latest) != 0 {
		t.Errorf("Latest holds %d series after a fourth was written with MaxSeries 3, want them reset", len(latest))
	}
}

func TestValidMetric(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"cpu.usage_percent", true},
		{"system.load.load1", true},
		{"température.é", true},
		{"", false},
		{"cpu", false},
		{".usage", false},
		{"cpu.", false},
		{"cpu.us\nage", false},
		{"cpu.\xff", false},
		{"a." + strings.Repeat("b", 1100), false},
	} {
		err := hotcache.ValidMetric(tt.name)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, hotcache.ErrInvalidMetric)) {
			t.Errorf("ValidMetric(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := hotcache.Config{TTLSeconds: 300, Window: 5 * time.Minute, MaxSeries: 1, MaxSamples: 1}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v, want nil", good, err)
	}
	for _, mutate := range []func(*hotcache.Config){
		func(c *hotcache.Config) { c.TTLSeconds = 0 },
		func(c *hotcache.Config) { c.Window = 0 },
		func(c *hotcache.Config) { c.MaxSeries = 0 },
		func(c *hotcache.Config) { c.MaxSamples = 0 },
	} {
		bad := good
		mutate(&bad)
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", bad)
		}
	}
}

// TestLatestMergesShapes: the latest entries are kept per point shape (measurement, tags, field
// names) and merged series by series, so points that send some of a measurement's fields update
// only those, and the last batch written wins for each series.
func TestLatestMergesShapes(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	ctx := t.Context()
	now := time.Now()
	t0, t1, t2 := now.Add(-time.Minute).UnixNano(), now.Add(-30*time.Second).UnixNano(), now.Add(-20*time.Second).UnixNano()
	core0 := []metric.Tag{tag("core", "0")}
	update := func(at time.Time, pts ...metric.Point) {
		t.Helper()
		if err := c.Update(ctx, agent, pts, at); err != nil {
			t.Fatal(err)
		}
	}
	// One batch: the same series in two shapes, the newer point wins; on a tie the later one.
	update(now,
		metric.Point{Measurement: "cpu", Tags: core0, Fields: []metric.Field{float("a", 1), float("b", 2)}, Time: t1},
		metric.Point{Measurement: "cpu", Tags: core0, Fields: []metric.Field{float("a", 3)}, Time: t0},
		metric.Point{Measurement: "cpu", Tags: core0, Fields: []metric.Field{float("b", 4), float("c", 5)}, Time: t1},
	)
	want := []string{
		fmt.Sprintf(`{"metric":"cpu.a","tags":{"core":"0"},"value":1,"time":%q}`, rfc(t1)),
		fmt.Sprintf(`{"metric":"cpu.b","tags":{"core":"0"},"value":4,"time":%q}`, rfc(t1)),
		fmt.Sprintf(`{"metric":"cpu.c","tags":{"core":"0"},"value":5,"time":%q}`, rfc(t1)),
	}
	if got, err := c.Latest(ctx, agent); err != nil || joined(got) != strings.Join(want, "\n") {
		t.Errorf("Latest = %s, %v\nwant\n%s", joined(got), err, strings.Join(want, "\n"))
	}
	// A later batch sending only a: a changes, b and c keep their values. The batch is written
	// last, so it wins even with an older point.
	update(now.Add(time.Second), metric.Point{Measurement: "cpu", Tags: core0, Fields: []metric.Field{float("a", 6)}, Time: t0})
	want[0] = fmt.Sprintf(`{"metric":"cpu.a","tags":{"core":"0"},"value":6,"time":%q}`, rfc(t0))
	if got, err := c.Latest(ctx, agent); err != nil || joined(got) != strings.Join(want, "\n") {
		t.Errorf("Latest after a batch of a alone = %s, %v\nwant\n%s", joined(got), err, strings.Join(want, "\n"))
	}
	// The same shape again replaces its entry.
	update(now.Add(2*time.Second), metric.Point{Measurement: "cpu", Tags: core0, Fields: []metric.Field{float("b", 7), float("c", 8)}, Time: t2})
	want[1] = fmt.Sprintf(`{"metric":"cpu.b","tags":{"core":"0"},"value":7,"time":%q}`, rfc(t2))
	want[2] = fmt.Sprintf(`{"metric":"cpu.c","tags":{"core":"0"},"value":8,"time":%q}`, rfc(t2))
	got, n, err := c.AppendLatest(ctx, []byte("x"), agent)
	if err != nil || string(got) != "x["+strings.Join(want, ",")+"]" || n != 3 {
		t.Errorf("AppendLatest = %s (%d series), %v\nwant x[%s]", got, n, err, strings.Join(want, ","))
	}
}

// TestUnknownEntriesSkipped: entries of another format in the points hash or the recent stream
// (an older gateway's "s" entries) are skipped, not served and not an error.
func TestUnknownEntriesSkipped(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	c, err := hotcache.New(client, prefix, shards, hotcache.Config{TTLSeconds: 300, Window: 5 * time.Minute, MaxSeries: 100, MaxSamples: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	now := time.Now()
	keys := c.Keys(agent)
	if err := client.HSet(ctx, keys[0], "cpu.usage", `{"metric":"cpu.usage","tags":{},"value":1,"time":"2026-01-01T00:00:00Z"}`).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.XAdd(ctx, &redis.XAddArgs{Stream: keys[1], Values: []string{"s", "\x09cpu.usage\x05\x00"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Update(ctx, agent, []metric.Point{{Measurement: "cpu", Fields: []metric.Field{float("usage", 2)}, Time: now.UnixNano()}}, now); err != nil {
		t.Fatal(err)
	}
	latest, err := c.Latest(ctx, agent)
	if err != nil || len(latest) != 1 || !strings.Contains(string(latest[0]), `"value":2`) {
		t.Errorf("Latest = %s, %v; want only the new value", joined(latest), err)
	}
	recent, err := c.Recent(ctx, agent, "cpu.usage", now)
	if err != nil || len(recent) != 1 || !strings.Contains(string(recent[0]), `"value":2`) {
		t.Errorf("Recent = %s, %v; want only the new sample", joined(recent), err)
	}
}

// TestRefreshPeriod: the TTLs are refreshed (and the recent entries trimmed by time) once per
// refresh period, a tenth of the TTL, not on every batch; a key that was gone is recreated
// with its TTL at once.
func TestRefreshPeriod(t *testing.T) {
	t.Parallel()
	client, prefix := testenv.Redis(t)
	c, err := hotcache.New(client, prefix, shards, hotcache.Config{TTLSeconds: 100, Window: time.Minute, MaxSeries: 100, MaxSamples: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	keys := c.Keys(agent)
	// The start of a refresh period (10 s), in the past so that Redis's clock does not matter.
	start := time.Unix(time.Now().Unix()/10*10-1000, 0)
	update := func(at time.Time) {
		t.Helper()
		pts := []metric.Point{{Measurement: "m", Fields: []metric.Field{float("f", 1)}, Time: at.UnixNano()}}
		if err := c.Update(ctx, agent, pts, at); err != nil {
			t.Fatal(err)
		}
	}
	ttls := func() (points, recent time.Duration) {
		t.Helper()
		return client.TTL(ctx, keys[0]).Val(), client.TTL(ctx, keys[1]).Val()
	}
	update(start)
	if p, r := ttls(); p <= 100*time.Second || p > 110*time.Second || r <= 100*time.Second || r > 110*time.Second {
		t.Fatalf("TTLs after the first batch = %v, %v; want TTL plus a period, 110s", p, r)
	}
	for _, k := range keys[:2] {
		client.Expire(ctx, k, 50*time.Second)
	}
	update(start.Add(5 * time.Second)) // the same period: no refresh
	if p, r := ttls(); p > 50*time.Second || r > 50*time.Second {
		t.Errorf("TTLs after a batch of the same period = %v, %v; want them left alone (50s)", p, r)
	}
	update(start.Add(65 * time.Second)) // a later period: refreshed, entries out of the window trimmed
	if p, r := ttls(); p <= 100*time.Second || r <= 100*time.Second {
		t.Errorf("TTLs after a batch of the next period = %v, %v; want 110s", p, r)
	}
	if n := client.XLen(ctx, keys[1]).Val(); n != 2 {
		t.Errorf("recent holds %d entries after a refresh 65s after the first, want the 2 within the minute", n)
	}
	if n := client.HLen(ctx, keys[0]).Val(); n != 2 {
		t.Errorf("points hash holds %d fields, want the one shape and the current period's marker", n)
	}
	// A recent stream that is gone is recreated with its TTL, within a period.
	client.Del(ctx, keys[1])
	update(start.Add(66 * time.Second))
	if _, r := ttls(); r <= 100*time.Second {
		t.Errorf("TTL of a recreated recent stream = %v, want 110s", r)
	}
}

// TestLongValues: tags, values and field blocks of 128 bytes and more (lengths of several bytes
// in the compact entries) come back whole.
func TestLongValues(t *testing.T) {
	t.Parallel()
	c, _ := newCache(t, nil)
	ctx := t.Context()
	now := time.Now()
	long := strings.Repeat("x", 300)
	fields := make([]metric.Field, 40)
	for i := range fields {
		fields[i] = float(fmt.Sprintf("f%02d", i), float64(i)+0.5)
	}
	fields = append(fields, metric.Field{Key: "s", Value: metric.Value{Kind: metric.KindString, S: long}})
	pts := []metric.Point{{Measurement: "m", Tags: []metric.Tag{tag("t", long)}, Fields: fields, Time: now.UnixNano()}}
	if err := c.Update(ctx, agent, pts, now); err != nil {
		t.Fatal(err)
	}
	latest, err := c.Latest(ctx, agent)
	wantS := fmt.Sprintf(`{"metric":"m.s","tags":{"t":%q},"value":%q,"time":%q}`, long, long, rfc(now.UnixNano()))
	if err != nil || len(latest) != 41 || string(latest[40]) != wantS {
		t.Fatalf("Latest = %d values (last %s), %v; want 41, the last %s", len(latest), latest[len(latest)-1], err, wantS)
	}
	recent, err := c.Recent(ctx, agent, "m.f39", now)
	want := fmt.Sprintf(`{"tags":{"t":%q},"value":39.5,"time":%q}`, long, rfc(now.UnixNano()))
	if err != nil || len(recent) != 1 || string(recent[0]) != want {
		t.Errorf("Recent(m.f39) = %s, %v; want %s", joined(recent), err, want)
	}
}

// TestRecentEntryCopiesLatest: the recent entry Encode builds, partly by copying the samples it
// already encoded for the latest entries, is byte for byte the one appendPoint gives point by
// point, with all samples kept and with the oldest cut by MaxSamples; points older than the
// window are in neither.
func TestRecentEntryCopiesLatest(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	var pts []metric.Point
	for i := range 8 {
		at := now.Add(time.Duration(i-7) * time.Minute) // the first two are older than the window
		pts = append(pts, metric.Point{Measurement: "cpu", Time: at.UnixNano(),
			Tags: []metric.Tag{{Key: "host", Value: "h1"}},
			Fields: []metric.Field{
				{Key: "idle", Value: metric.Value{Kind: metric.KindFloat, F: float64(i) + 0.25}},
				{Key: "n", Value: metric.Value{Kind: metric.KindInt, I: int64(i)}},
				{Key: "s", Value: metric.Value{Kind: metric.KindString, S: "a\"b"}},
			}})
	}
	for _, maxSamples := range []int{100, 10, 3} {
		c, err := hotcache.New(nil, "p:", 4, hotcache.Config{TTLSeconds: 300, Window: 5 * time.Minute, MaxSeries: 100, MaxSamples: maxSamples})
		if err != nil {
			t.Fatal(err)
		}
		b := c.Encode(pts, now)
		recent, values := hotcache.RecentEntry(b)
		// The reference: every point in the window from its first kept field, newest kept.
		kept := min(maxSamples, 6*3)
		drop := 6*3 - kept
		want := binary.AppendVarint(nil, now.UnixNano())
		for i := 2; i < len(pts); i++ {
			from := min(drop, 3)
			drop -= from
			if from == 3 {
				continue
			}
			want = hotcache.AppendPoint(want, &pts[i], from, now.UnixNano())
		}
		if !bytes.Equal(recent, want) {
			t.Errorf("MaxSamples %d: recent entry\n%q\nwant\n%q", maxSamples, recent, want)
		}
		if values != kept {
			t.Errorf("MaxSamples %d: %d samples in the recent entry, want %d", maxSamples, values, kept)
		}
		b.Release()
	}
}
