package testenv

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/stack"
)

// Influxd is an InfluxDB 1.8 server process started for tests (see internal/stack). Share one
// server per package (RunInflux), and restart servers WithoutFlux where InfluxQL can check the
// result: a start with Flux costs seconds of CPU.
type Influxd = stack.Influxd

// InfluxdOption tunes a server started by PrivateInfluxd.
type InfluxdOption = stack.InfluxdOption

// WithoutFlux turns Flux off: the server starts in milliseconds but answers only InfluxQL.
func WithoutFlux() InfluxdOption { return stack.WithoutFlux() }

// The shared server of a test binary, started on first use by Influx when RunInflux ran the tests.
var shared struct {
	enabled bool
	once    sync.Once
	srv     *Influxd
	dir     string
	err     error
}

// RunInflux runs the package's tests with one influxd shared by every test that calls Influx, and
// stops it afterwards. Use it as the package's TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunInflux(m)) }
//
// Without it (or ShareInflux), Influx starts a private server per test, seconds of CPU each.
func RunInflux(m *testing.M) int {
	stop := ShareInflux()
	defer stop()
	return m.Run()
}

// ShareInflux makes Influx use one server for the whole test binary, started on first use, and
// returns the function that stops it and removes its data. For a TestMain that also does other
// things; call it before m.Run and stop after.
func ShareInflux() (stop func()) {
	shared.enabled = true
	return func() {
		if shared.srv != nil {
			if err := shared.srv.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stopping shared influxd:", err)
			}
		}
		if shared.dir != "" {
			os.RemoveAll(shared.dir)
		}
	}
}

func sharedInfluxd() (*Influxd, error) {
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "influxd-test-")
		if shared.err != nil {
			return
		}
		shared.srv, shared.err = stack.StartInfluxd(shared.dir)
	})
	return shared.srv, shared.err
}

// PrivateInfluxd starts a server for this test alone (for tests that stop and restart it) and
// stops it in t.Cleanup.
func PrivateInfluxd(t testing.TB, opts ...InfluxdOption) *Influxd {
	t.Helper()
	srv, err := stack.StartInfluxd(t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("starting influxd: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping influxd: %v", err)
		}
	})
	return srv
}

// InfluxDB is one test's slice of an InfluxDB server: a database name unique to the test.
type InfluxDB struct {
	Server   *Influxd
	URL      string
	Database string // not created: the test creates it (for example by provisioning)
}

// Influx returns a database name unique to t on the package's shared server (see RunInflux), or
// on a private server when the package does not use RunInflux. The database is dropped in
// t.Cleanup. The test must not stop the shared server; use PrivateInfluxd for outages.
func Influx(t testing.TB) InfluxDB {
	t.Helper()
	var srv *Influxd
	if shared.enabled {
		var err error
		if srv, err = sharedInfluxd(); err != nil {
			t.Fatalf("starting shared influxd: %v", err)
		}
	} else {
		srv = PrivateInfluxd(t)
	}
	db := databaseName("t_", t.Name())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := srv.Query(ctx, "", `DROP DATABASE "`+db+`"`); err != nil {
			t.Errorf("dropping test database: %v", err)
		}
	})
	return InfluxDB{Server: srv, URL: srv.URL(), Database: db}
}
