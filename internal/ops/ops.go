// Package ops is the operations HTTP surface of every binary: /healthz, /readyz (dependency
// checks) and /metrics (a Prometheus registry with the runtime collectors); worker binaries serve
// it as a Server of its own, the gateway mounts the handlers on its API server.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether one dependency answers; it must return within ctx's deadline.
type Check func(ctx context.Context) error

// NewRegistry returns a Prometheus registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// HealthHandler answers /healthz: the process is up and serving.
func HealthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// ReadyHandler answers /readyz by running every check with a short deadline: 200 when all pass,
// 503 naming each failing dependency otherwise (Readiness with one scope and no warnings).
func ReadyHandler(checks map[string]Check) http.Handler {
	return Readiness{Checks: checks}.Handler()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Server is the operations HTTP server of a worker binary: /healthz, /readyz and /metrics.
type Server struct {
	addr   string
	srv    *http.Server
	logger *slog.Logger
	bound  atomic.Pointer[string]
}

// NewServer builds the operations server for addr (host:port; port 0 picks a free one).
func NewServer(addr string, reg *prometheus.Registry, checks map[string]Check, logger *slog.Logger) *Server {
	return NewServerReady(addr, reg, Readiness{Checks: checks}, logger)
}

// NewServerReady is NewServer with /readyz answered by ready (scopes, warnings).
func NewServerReady(addr string, reg *prometheus.Registry, ready Readiness, logger *slog.Logger) *Server {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", HealthHandler())
	mux.Handle("GET /readyz", ready.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return &Server{
		addr:   addr,
		logger: logger.With("component", "ops"),
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
		},
	}
}

// Run listens and serves until ctx is done, then shuts down within five seconds.
func (o *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listening for ops on %s: %w", o.addr, err)
	}
	bound := ln.Addr().String()
	o.bound.Store(&bound)
	o.logger.Info("ops server listening", "addr", bound)
	errc := make(chan error, 1)
	go func() { errc <- o.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving ops: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := o.srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutting down ops server: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving ops: %w", err)
	}
	return nil
}

// Addr returns the address the server is bound to, or "" before Run has started listening.
func (o *Server) Addr() string {
	if p := o.bound.Load(); p != nil {
		return *p
	}
	return ""
}
