package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// registered is an agent the gateway created for this run.
type registered struct {
	ID     string `json:"id"`
	APIKey string `json:"api_key"`
}

// registerAgents logs in as the operator and registers cfg.agents agents named loadgen-<run>-<i>
// with the label loadgen=<run>, so that a run's agents are easy to find and delete.
func registerAgents(ctx context.Context, hc *http.Client, cfg config, runID string, logger *slog.Logger) ([]registered, error) {
	password, err := cfg.adminPassword()
	if err != nil {
		return nil, err
	}
	var login struct {
		Token string `json:"token"`
	}
	if err := callJSON(ctx, hc, cfg.gateway+"/api/v1/auth/login", "",
		map[string]string{"username": cfg.adminUser, "password": password}, http.StatusOK, &login); err != nil {
		return nil, fmt.Errorf("logging in to %s as %s: %w", cfg.gateway, cfg.adminUser, err)
	}
	if login.Token == "" {
		return nil, fmt.Errorf("logging in to %s: no token in the answer", cfg.gateway)
	}
	start := time.Now()
	agents := make([]registered, cfg.agents)
	for i := range agents {
		body := map[string]any{"name": fmt.Sprintf("loadgen-%s-%d", runID, i), "labels": map[string]string{"loadgen": runID}}
		if err := callJSON(ctx, hc, cfg.gateway+"/api/v1/agents", "Bearer "+login.Token, body, http.StatusCreated, &agents[i]); err != nil {
			return nil, fmt.Errorf("registering agent %d: %w", i, err)
		}
		if agents[i].ID == "" || agents[i].APIKey == "" {
			return nil, fmt.Errorf("registering agent %d: answer without id or api_key", i)
		}
	}
	logger.Info("agents registered", "agents", len(agents), "run", runID, "took", time.Since(start).Round(time.Millisecond))
	return agents, nil
}

// callJSON POSTs in as JSON and decodes the answer into out when the status is want.
func callJSON(ctx context.Context, hc *http.Client, url, auth string, in any, want int, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading answer: %w", err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("status %d, want %d: %.300s", resp.StatusCode, want, body)
	}
	return json.Unmarshal(body, out)
}
