package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Main is the whole of a binary's main: it loads cfg from the environment (printing usage for
// --help), builds the logger, runs run with a context cancelled on SIGINT or SIGTERM, logs the
// error once, and returns the process exit code. logOf picks the logger settings out of the config.
func Main[C any](name string, logOf func(*C) LogConfig, run func(ctx context.Context, cfg *C, logger *slog.Logger) error) int {
	var cfg C
	if err := LoadConfig(name, os.Args[1:], &cfg, os.Stdout); err != nil {
		if errors.Is(err, ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	logger := NewLogger(os.Stderr, logOf(&cfg), name)
	logger.Info("starting", Effective(&cfg)...)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &cfg, logger); err != nil {
		logger.Error("stopped with error", "err", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}
