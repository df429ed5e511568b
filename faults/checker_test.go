package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/influx/influxql"
)

// TestCheckerSeesLossDuplicatesAndStrangers makes sure the ledger checker would catch what the
// scenarios assert never happens: an acknowledged point removed from InfluxDB, a point of a
// refused request stored, a point nobody sent.
func TestCheckerSeesLossDuplicatesAndStrangers(t *testing.T) {
	t.Parallel()
	c := newCluster(t, options{})
	l := newLoad(c.gateway.URL, c.registerAgents(2), pause)
	l.start()
	ok := l.waitAcked(40, 30*time.Second)
	l.finish()
	if !ok {
		t.Fatalf("the load does not flow: %s", statusCounts(l.snapshot()))
	}
	c.waitDrained()
	if res := c.check(t, "clean", l, fault{}, 0); len(res.problems) != 0 {
		t.Fatalf("check of an untouched run = %q, want no problem", res.problems)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := influxql.Client{URL: c.influxd.URL()}
	a := l.agents[0]
	// Lose one acknowledged point (series s=0 of batch 3 of agent 0).
	if _, err := q.Query(ctx, database, "", fmt.Sprintf(`DELETE FROM "%s" WHERE "agent"='%s' AND "s"='0' AND time = %d`, measurement, a.ID, l.at(3))); err != nil {
		t.Fatal(err)
	}
	// Mark batch 5 as refused although it is stored.
	l.mu.Lock()
	for _, r := range l.requests {
		if r.agent == a.index && r.seq == 5 {
			r.verdict = refused
		}
	}
	l.mu.Unlock()
	// Store a point nobody sent, and one with another batch's value at batch 7's time.
	lines := fmt.Sprintf("%s,agent=%s,s=0 v=1 %d\n%s,agent=%s,s=1 v=99999 %d\n", measurement, a.ID, l.at(1_000_000), measurement, a.ID, l.at(7))
	if err := writeLines(ctx, c.influxd.URL(), lines); err != nil {
		t.Fatal(err)
	}

	res := c.check(t, "tampered", l, fault{}, 0)
	if res.lost != 2 || res.refusedPresent != 4 || res.strangers != 1 || res.duplicated != 1 {
		t.Errorf("check of a tampered run = lost %d, refused-present %d, strangers %d, duplicated %d; want 2 (one deleted, one overwritten), 4, 1, 1",
			res.lost, res.refusedPresent, res.strangers, res.duplicated)
	}
	if len(res.problems) == 0 || !strings.Contains(res.problems[0], "lost") {
		t.Errorf("check of a tampered run: problems %q, want the losses named", res.problems)
	}
}

// writeLines writes line protocol straight into the test database.
func writeLines(ctx context.Context, influxURL, lines string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, influxURL+"/write?db="+database+"&precision=ns", strings.NewReader(lines))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("writing to influxd: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("writing to influxd: %d %s", resp.StatusCode, b)
	}
	return nil
}
