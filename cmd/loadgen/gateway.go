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
	token, err := login(ctx, hc, cfg.gateway, cfg.adminUser, password)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	agents := make([]registered, cfg.agents)
	for i := range agents {
		body := map[string]any{"name": fmt.Sprintf("loadgen-%s-%d", runID, i), "labels": map[string]string{"loadgen": runID}}
		if err := callJSON(ctx, hc, cfg.gateway+"/api/v1/agents", "Bearer "+token, body, http.StatusCreated, &agents[i]); err != nil {
			return nil, fmt.Errorf("registering agent %d: %w", i, err)
		}
		if agents[i].ID == "" || agents[i].APIKey == "" {
			return nil, fmt.Errorf("registering agent %d: answer without id or api_key", i)
		}
	}
	logger.Info("agents registered", "agents", len(agents), "run", runID, "took", time.Since(start).Round(time.Millisecond))
	return agents, nil
}

// login logs in to the gateway and returns the session token.
func login(ctx context.Context, hc *http.Client, gateway, user, password string) (string, error) {
	var answer struct {
		Token string `json:"token"`
	}
	if err := callJSON(ctx, hc, gateway+"/api/v1/auth/login", "",
		map[string]string{"username": user, "password": password}, http.StatusOK, &answer); err != nil {
		return "", fmt.Errorf("logging in to %s as %s: %w", gateway, user, err)
	}
	if answer.Token == "" {
		return "", fmt.Errorf("logging in to %s: no token in the answer", gateway)
	}
	return answer.Token, nil
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
