// Package process is the whole of a binary's main: configuration from the environment, the
// logger, a context cancelled on SIGINT or SIGTERM, one error log and the exit code.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentmonitor/agentmonitor/internal/config"
	"github.com/agentmonitor/agentmonitor/internal/logging"
)

// Main is the whole of a binary's main: it loads cfg from the environment (printing usage for
// --help), builds the logger, runs run with a context cancelled on SIGINT or SIGTERM, logs the
// error once, and returns the process exit code. logOf picks the logger settings out of the config.
func Main[C any](name string, logOf func(*C) logging.Config, run func(ctx context.Context, cfg *C, logger *slog.Logger) error) int {
	var cfg C
	if err := config.Load(name, os.Args[1:], &cfg, os.Stdout); err != nil {
		if errors.Is(err, config.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 2
	}
	logger := logging.New(os.Stderr, logOf(&cfg), name)
	logger.Info("starting", config.Effective(&cfg)...)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &cfg, logger); err != nil {
		logger.Error("stopped with error", "err", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}
