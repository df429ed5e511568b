package rollup_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/agentmonitor/agentmonitor/internal/rollup"
)

func TestConfig(t *testing.T) {
	var out bytes.Buffer
	if err := config.Load("rollup", []string{"--help"}, &rollup.Config{}, &out); err == nil {
		t.Fatal("LoadConfig(--help) = nil, want ErrHelp")
	}
	for _, v := range []string{"ROLLUP_1M_RETENTION_DAYS", "ROLLUP_1D_RETENTION_DAYS", "ROLLUP_GRACE", "ROLLUP_LEASE",
		"ROLLUP_INTERVAL", "ROLLUP_CONCURRENCY", "ROLLUP_AFTER_GROUP", "STREAM_BATCH_SIZE", "INFLUXDB_URL"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("--help does not list %s", v)
		}
	}
	tests := []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{}, ""},
		{map[string]string{"ROLLUP_GRACE": "-1s"}, "ROLLUP_GRACE"},
		{map[string]string{"ROLLUP_LEASE": "10ms"}, "ROLLUP_LEASE"},
		{map[string]string{"ROLLUP_CONCURRENCY": "0"}, "ROLLUP_CONCURRENCY"},
		{map[string]string{"ROLLUP_5M_RETENTION_DAYS": "-3"}, "ROLLUP_5M_RETENTION_DAYS"},
		{map[string]string{"ROLLUP_INTERVAL": "0s"}, "ROLLUP_INTERVAL"},
	}
	for _, tt := range tests {
		t.Run(tt.wantErr, func(t *testing.T) {
			t.Setenv("CONSUMER_NAME", "rollup-test")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var cfg rollup.Config
			err := config.Load("rollup", nil, &cfg, &bytes.Buffer{})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("LoadConfig(%v) = %v, want nil", tt.env, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("LoadConfig(%v) = %v, want an error naming %s", tt.env, err, tt.wantErr)
			}
			if tt.wantErr == "" && (cfg.OpsAddr != ":9104" || cfg.Stream.Group != rollup.Group || cfg.Tiers.Retention1h != 730) {
				t.Errorf("defaults: ops %q group %q 1h retention %d; want :9104, rollup, 730", cfg.OpsAddr, cfg.Stream.Group, cfg.Tiers.Retention1h)
			}
		})
	}
}
