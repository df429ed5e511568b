package history

import (
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx"
)

// TestLayoutOf checks where each tier is read from on 1.x (retention policies of one database)
// and on 2.x (one bucket per tier, through the virtual DBRP mappings).
func TestLayoutOf(t *testing.T) {
	tests := []struct {
		org, bucket     string
		wantRaw, want1h string
	}{
		{"", "metrics", `"metrics".."cpu"`, `"metrics"."rollup_1h"."cpu"`},
		{"", "metrics/raw", `"metrics"."raw"."cpu"`, `"metrics"."rollup_1h"."cpu"`},
		{"acme", "metrics", `"metrics".."cpu"`, `"metrics_1h".."cpu"`},
	}
	for _, tt := range tests {
		c, err := influx.New(influx.Config{URL: "http://127.0.0.1:1", Org: tt.org, Bucket: tt.bucket, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		e, err := New(c, LayoutOf(c, 30), DefaultConfig(), nil)
		if err != nil {
			t.Fatalf("New(LayoutOf(org %q, bucket %q)): %v", tt.org, tt.bucket, err)
		}
		if got := e.source(Raw, "cpu"); got != tt.wantRaw {
			t.Errorf("org %q bucket %q: raw source = %s, want %s", tt.org, tt.bucket, got, tt.wantRaw)
		}
		if got := e.source("1h", "cpu"); got != tt.want1h {
			t.Errorf("org %q bucket %q: 1h source = %s, want %s", tt.org, tt.bucket, got, tt.want1h)
		}
		c.Close()
	}
}
