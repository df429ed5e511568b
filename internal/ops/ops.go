// Package ops is the operations HTTP surface of every binary: /healthz, /readyz (dependency
// checks), /metrics (a Prometheus registry with the runtime collectors) and, when enabled,
// /debug/pprof; worker binaries serve it as a Server of its own, the gateway mounts the first
// three on its API server and serves a Server of its own when OPS_ADDR is set.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
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
	mux    *http.ServeMux
	srv    *http.Server
	ln     net.Listener // from Listen
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
		mux:    mux,
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

// EnablePprof mounts the runtime profiles of net/http/pprof under /debug/pprof/ on this server
// (OPS_PPROF=1). They are for operators only: never mount them on a public listener. Call it
// before Run.
func (o *Server) EnablePprof() {
	MountPprof(o.mux)
	// A CPU profile or a trace streams for its ?seconds= (30 by default), which pprof refuses
	// beyond the server's WriteTimeout: allow profiles of up to about ten minutes.
	o.srv.WriteTimeout = 10 * time.Minute
}

// MountPprof registers net/http/pprof's handlers under /debug/pprof/ on mux (net/http/pprof
// registers itself only on http.DefaultServeMux, which no server of ours uses).
func MountPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// Listen binds the server's address, so that a caller can fail at start when it is taken; Run
// then serves on it. Calling it is optional: Run listens itself when Listen was not called.
func (o *Server) Listen(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listening for ops on %s: %w", o.addr, err)
	}
	o.ln = ln
	bound := ln.Addr().String()
	o.bound.Store(&bound)
	o.logger.Info("ops server listening", "addr", bound)
	return nil
}

// Run listens (unless Listen did) and serves until ctx is done, then shuts down within five
// seconds.
func (o *Server) Run(ctx context.Context) error {
	if o.ln == nil {
		if err := o.Listen(ctx); err != nil {
			return err
		}
	}
	ln := o.ln
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
