package service

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type testConfig struct {
	Log   LogConfig
	Redis RedisConfig
	Count int    `env:"TEST_COUNT" envDefault:"3" help:"how many"`
	Token string `env:"TEST_TOKEN" help:"a secret"`
}

func (c testConfig) Validate() error {
	if c.Count < 1 {
		return errors.New("TEST_COUNT must be at least 1")
	}
	return c.Redis.Validate()
}

func TestLoadConfig(t *testing.T) {
	t.Setenv("TEST_COUNT", "7")
	var cfg testConfig
	if err := LoadConfig("x", nil, &cfg, io.Discard); err != nil {
		t.Fatalf("LoadConfig() = %v, want nil", err)
	}
	if cfg.Count != 7 || cfg.Log.Level != "info" || cfg.Redis.URL != "redis://127.0.0.1:6379/0" {
		t.Errorf("LoadConfig() = %+v, want Count 7 and the defaults", cfg)
	}
}

func TestLoadConfigFailsFast(t *testing.T) {
	for _, tc := range []struct{ name, key, value, want string }{
		{"validate", "TEST_COUNT", "0", "TEST_COUNT must be at least 1"},
		{"parse", "TEST_COUNT", "many", "TEST_COUNT"},
		{"url", "REDIS_URL", "http://nope", "REDIS_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.key, tc.value)
			var cfg testConfig
			err := LoadConfig("x", nil, &cfg, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadConfig(%s=%q) = %v, want error containing %q", tc.key, tc.value, err, tc.want)
			}
		})
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	var cfg testConfig
	if err := LoadConfig("x", []string{"--help"}, &cfg, &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("LoadConfig(--help) = %v, want ErrHelp", err)
	}
	for _, want := range []string{"LOG_LEVEL", "LOG_FORMAT", "REDIS_URL", "REDIS_PASSWORD", "REDIS_KEY_PREFIX", "TEST_COUNT", "how many"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
	if err := LoadConfig("x", []string{"--port=1"}, &cfg, &out); err == nil || errors.Is(err, ErrHelp) {
		t.Errorf("LoadConfig(--port=1) = %v, want an unexpected-argument error", err)
	}
}

func TestEffectiveMasksSecrets(t *testing.T) {
	t.Setenv("TEST_TOKEN", "s3cret")
	t.Setenv("REDIS_URL", "redis://user:hunter2@localhost:6379/0")
	got := ""
	for _, a := range Effective(&testConfig{}) {
		got += a.(interface{ String() string }).String() + " "
	}
	if strings.Contains(got, "s3cret") || strings.Contains(got, "hunter2") {
		t.Errorf("Effective() = %s, want secrets masked", got)
	}
	if !strings.Contains(got, "redis://user:*****@localhost:6379/0") {
		t.Errorf("Effective() = %s, want the masked URL", got)
	}
}

func TestOpsServer(t *testing.T) {
	down := errors.New("connection refused")
	var fail bool
	ops := NewOps("127.0.0.1:0", NewRegistry(), map[string]Check{
		"db": func(context.Context) error {
			if fail {
				return down
			}
			return nil
		},
	}, NewLogger(io.Discard, LogConfig{Level: "info", Format: "json"}, "test"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ops.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for ops.Addr() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	base := "http://" + ops.Addr()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("GET /healthz = %d, want 200", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("GET /readyz = %d, want 200", code)
	}
	fail = true
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "db: connection refused") {
		t.Errorf("GET /readyz with db down = %d %s, want 503 naming db", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("GET /metrics = %d, want 200 with runtime metrics", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() after cancel = %v, want nil", err)
	}
	_ = prometheus.NewRegistry
}
