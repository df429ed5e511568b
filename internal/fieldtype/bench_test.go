package fieldtype_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/fieldtype"
	"github.com/agentmonitor/agentmonitor/internal/metric"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

// BenchmarkCheckKnown measures the hot path: a small agent batch (6 points, 30 values) whose
// fields are all known to the process, so no Redis call is made.
func BenchmarkCheckKnown(b *testing.B) {
	rdb, prefix := testenv.Redis(b)
	r := fieldtype.New(rdb, prefix, nil)
	var pts []string
	for core := range 6 {
		pts = append(pts, fmt.Sprintf(`{"measurement":"cpu","tags":{"core":"%d","host":"bench-1"},`+
			`"fields":{"usage_user":%d.5,"usage_system":3.25,"usage_idle":80.125,"usage_iowait":0.5,"usage_steal":0}}`, core, core))
	}
	batch, err := metric.ParseJSON([]byte(`{"points":[`+strings.Join(pts, ",")+`]}`), time.Now(), metric.DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Check(ctx, batch, fieldtype.JSON); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := r.Check(ctx, batch, fieldtype.JSON); err != nil {
			b.Fatal(err)
		}
	}
}
