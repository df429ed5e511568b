// Package logging builds a binary's structured logger (log/slog) from its LOG_LEVEL and
// LOG_FORMAT settings.
package logging

import (
	"fmt"
	"io"
	"log/slog"
)

// Config selects the logger's level and format.
type Config struct {
	Level  string `env:"LOG_LEVEL" envDefault:"info" help:"log level: debug, info, warn or error"`
	Format string `env:"LOG_FORMAT" envDefault:"json" help:"log format: json or text"`
}

// Validate checks the level and format names.
func (c Config) Validate() error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Level)); err != nil {
		return fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", c.Level)
	}
	if c.Format != "json" && c.Format != "text" {
		return fmt.Errorf("LOG_FORMAT %q: want json or text", c.Format)
	}
	return nil
}

// New builds the binary's logger writing to w; name is attached to every record as "service".
func New(w io.Writer, cfg Config, name string) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level)) // validated by Config.Validate
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With("service", name)
}
