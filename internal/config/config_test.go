package config_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/agentmonitor/agentmonitor/internal/logging"
	"github.com/agentmonitor/agentmonitor/internal/redisconn"
)

type testConfig struct {
	Log   logging.Config
	Redis redisconn.Config
	Count int    `env:"TEST_COUNT" envDefault:"3" help:"how many"`
	Token string `env:"TEST_TOKEN" help:"a secret"`
}

func (c testConfig) Validate() error {
	if c.Count < 1 {
		return errors.New("TEST_COUNT must be at least 1")
	}
	return c.Redis.Validate()
}

func TestLoad(t *testing.T) {
	t.Setenv("TEST_COUNT", "7")
	var cfg testConfig
	if err := config.Load("x", nil, &cfg, io.Discard); err != nil {
		t.Fatalf("Load() = %v, want nil", err)
	}
	if cfg.Count != 7 || cfg.Log.Level != "info" || cfg.Redis.URL != "redis://127.0.0.1:6379/0" {
		t.Errorf("Load() = %+v, want Count 7 and the defaults", cfg)
	}
}

func TestLoadFailsFast(t *testing.T) {
	for _, tc := range []struct{ name, key, value, want string }{
		{"validate", "TEST_COUNT", "0", "TEST_COUNT must be at least 1"},
		{"parse", "TEST_COUNT", "many", "TEST_COUNT"},
		{"url", "REDIS_URL", "http://nope", "REDIS_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.key, tc.value)
			var cfg testConfig
			err := config.Load("x", nil, &cfg, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load(%s=%q) = %v, want error containing %q", tc.key, tc.value, err, tc.want)
			}
		})
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	var cfg testConfig
	if err := config.Load("x", []string{"--help"}, &cfg, &out); !errors.Is(err, config.ErrHelp) {
		t.Fatalf("Load(--help) = %v, want ErrHelp", err)
	}
	for _, want := range []string{"LOG_LEVEL", "LOG_FORMAT", "REDIS_URL", "REDIS_PASSWORD", "REDIS_KEY_PREFIX", "TEST_COUNT", "how many"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
	if err := config.Load("x", []string{"--port=1"}, &cfg, &out); err == nil || errors.Is(err, config.ErrHelp) {
		t.Errorf("Load(--port=1) = %v, want an unexpected-argument error", err)
	}
}

func TestEffectiveMasksSecrets(t *testing.T) {
	t.Setenv("TEST_TOKEN", "s3cret")
	t.Setenv("REDIS_URL", "redis://user:hunter2@localhost:6379/0")
	got := ""
	for _, a := range config.Effective(&testConfig{}) {
		got += a.(interface{ String() string }).String() + " "
	}
	if strings.Contains(got, "s3cret") || strings.Contains(got, "hunter2") {
		t.Errorf("Effective() = %s, want secrets masked", got)
	}
	if !strings.Contains(got, "redis://user:*****@localhost:6379/0") {
		t.Errorf("Effective() = %s, want the masked URL", got)
	}
}

func TestDefaults(t *testing.T) {
	t.Setenv("TEST_COUNT", "7") // ignored: Defaults reads only the tags
	cfg := testConfig{Token: "kept", Redis: redisconn.Config{Prefix: "p:"}}
	if err := config.Defaults(&cfg); err != nil {
		t.Fatalf("Defaults() = %v, want nil", err)
	}
	if cfg.Count != 3 || cfg.Log.Level != "info" || cfg.Redis.URL != "redis://127.0.0.1:6379/0" {
		t.Errorf("Defaults() = %+v, want the zero fields set from their tags", cfg)
	}
	if cfg.Token != "kept" || cfg.Redis.Prefix != "p:" {
		t.Errorf("Defaults() = %+v, want the fields already set kept", cfg)
	}
}

func TestProblems(t *testing.T) {
	var p config.Problems
	if err := p.Err(); err != nil {
		t.Fatalf("Err() of no problems = %v, want nil", err)
	}
	p.Add(nil)
	p.Want(true, "never %s", "said")
	p.Add(errors.New("A_VAR: bad"))
	p.Want(false, "B_VAR=%d: want > 0", 0)
	err := p.Err()
	if err == nil || err.Error() != "A_VAR: bad\nB_VAR=0: want > 0" {
		t.Errorf("Err() = %v, want both problems, in order", err)
	}
}
