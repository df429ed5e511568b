package gateway

import (
	"strings"
	"testing"
	"time"
)

func TestEdgeConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mutate func(*EdgeConfig)
		want   string
	}{
		{func(c *EdgeConfig) { c.LoginAttemptsPerIPPerMinute = 0 }, "LOGIN_ATTEMPTS_PER_IP_PER_MINUTE"},
		{func(c *EdgeConfig) { c.LoginFailuresPerUserPerMinute = 0 }, "LOGIN_FAILURES_PER_USER_PER_MINUTE"},
		{func(c *EdgeConfig) { c.TrustedProxies = []string{"10.0.0.0/33"} }, "TRUSTED_PROXIES"},
		{func(c *EdgeConfig) { c.TrustedProxies = []string{"proxy.local"} }, "TRUSTED_PROXIES"},
		{func(c *EdgeConfig) { c.MaxHeaderBytes = 100 }, "MAX_HEADER_BYTES"},
		{func(c *EdgeConfig) { c.BodyReadGrace = 0 }, "BODY_READ_GRACE"},
		{func(c *EdgeConfig) { c.BodyMinBytesPerSec = 0 }, "BODY_MIN_BYTES_PER_SEC"},
		{func(c *EdgeConfig) { c.BodyReadTimeout = time.Second }, "BODY_READ_TIMEOUT"},
	}
	for _, tt := range tests {
		c := DefaultEdgeConfig()
		tt.mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", c, err, tt.want)
		}
	}
	ok := DefaultEdgeConfig()
	ok.TrustedProxies = []string{"10.0.0.1", " 192.168.0.0/16", "::1", "fd00::/8"}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v, want nil", ok, err)
	}
	if nets, _ := parseProxies(ok.TrustedProxies); len(nets) != 4 {
		t.Errorf("parseProxies(%q) = %v, want 4 networks", ok.TrustedProxies, nets)
	}
}
