package influxql_test

import (
	"context"
	"strings"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/influx/influxql"
	"github.com/agentmonitor/agentmonitor/internal/testenv"
)

func TestQuoteIdent(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"metrics", `"metrics"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"a\nb", `"a\nb"`},
	} {
		if got := influxql.QuoteIdent(tt.in); got != tt.want {
			t.Errorf("QuoteIdent(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// Query returns the series of a real server, with db as the default database and times in ns,
// and the server's error for a bad statement.
func TestQuery(t *testing.T) {
	srv := testenv.PrivateInfluxd(t, testenv.WithoutFlux())
	c := influxql.Client{URL: srv.URL()}
	ctx := context.Background()
	name := `odd "db"`
	if _, err := c.Query(ctx, "", "", "CREATE DATABASE "+influxql.QuoteIdent(name)); err != nil {
		t.Fatalf("CREATE DATABASE: %v", err)
	}
	if _, err := c.Query(ctx, name, "", `SELECT count("v") FROM "m"`); err != nil {
		t.Fatalf("SELECT on an empty database: %v", err)
	}
	_, err := c.Query(ctx, "", "", "SELEC nonsense")
	if err == nil || !strings.Contains(err.Error(), "SELEC nonsense") {
		t.Errorf("Query(bad statement) = %v, want an error naming the statement", err)
	}
	series, err := c.Query(ctx, "", "", "SHOW DATABASES")
	if err != nil {
		t.Fatalf("SHOW DATABASES: %v", err)
	}
	found := false
	for _, s := range series {
		for _, row := range s.Values {
			found = found || row[0] == name
		}
	}
	if !found {
		t.Errorf("SHOW DATABASES = %+v, want %q among them", series, name)
	}
}
