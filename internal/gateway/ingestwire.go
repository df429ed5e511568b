package gateway

import (
	"time"

	"github.com/labstack/echo/v4"

	"github.com/agentmonitor/agentmonitor/internal/ingest"
)

// newIngest builds the ingest handler from the gateway's clients and configuration (its metrics
// are registered on the first call). Tests call it again after swapping a client to inject a fault.
func (g *Gateway) newIngest() (*ingest.Handler, error) {
	if g.ingestMetrics == nil {
		m, err := ingest.NewMetrics(g.reg)
		if err != nil {
			return nil, err
		}
		g.ingestMetrics = m
	}
	return ingest.New(ingest.Deps{
		Appender:     g.appender,
		Backlog:      g.backlog,
		Keys:         g.keys,
		FieldTypes:   g.fieldTypes,
		AgentRate:    g.cfg.AgentRatePointsPerSec,
		AgentBurst:   g.cfg.AgentRateBurst,
		Limits:       g.limits,
		MaxBodyBytes: g.cfg.MaxBodyBytes,
		Now:          func() time.Time { return g.now() },
		Logger:       g.logger,
		Metrics:      g.ingestMetrics,
	})
}

// ingestJSON answers POST /api/v1/agents/{id}/metrics (package ingest).
func (g *Gateway) ingestJSON(c echo.Context) error { return g.ingest.JSON(c) }

// ingestLine answers POST /api/v2/write (package ingest).
func (g *Gateway) ingestLine(c echo.Context) error { return g.ingest.Line(c) }
