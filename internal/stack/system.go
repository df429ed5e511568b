package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Apps are Agent Monitor's binaries (cmd/<name>) in start order: workers first, the gateway, the
// intake, last; they stop in reverse.
var Apps = []string{"influx-writer", "pg-sync", "alerter", "rollup", "gateway"}

// ModuleRoot returns the directory of the module's go.mod, as go env GOMOD sees it from the
// working directory.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the agentmonitor module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

// Build builds the commands cmd/<name> of the module into dir (go build -o dir/), compiler
// output to w.
func Build(ctx context.Context, dir string, w io.Writer, names ...string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, n := range names {
		args = append(args, "./cmd/"+n)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", strings.Join(names, " "), err)
	}
	return nil
}

// CleanEnv returns the caller's environment without the variables the binaries read, so that a
// developer's shell cannot change what a test or the bench runs.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "REDIS_") || strings.HasPrefix(k, "INFLUXDB_") || strings.HasPrefix(k, "STREAM_") ||
			strings.HasPrefix(k, "NOTIFIER_") || strings.HasSuffix(k, "_INTERVAL") || strings.HasPrefix(k, "LOG_") ||
			k == "WEBHOOK_ALLOWED_NETWORKS" || k == "DATABASE_URL" || k == "GATEWAY_ADDR" || k == "OPS_ADDR" || k == "CONSUMER_NAME" || k == "ADMIN_PASSWORD" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// System is a deployment of the binaries built into BinDir, each started with CleanEnv, Env and
// its own variables, on free loopback ports, logging into LogDir. Its methods are safe for
// concurrent use.
type System struct {
	BinDir string
	LogDir string
	Env    []string // every binary's settings: REDIS_URL, DATABASE_URL, INFLUXDB_URL, ...
	// BackgroundNice, when positive, is the nice value of the write-behind workers
	// (Background).
	BackgroundNice int

	mu   sync.Mutex
	apps []*App
}

// App is one running binary of a System.
type App struct {
	*Process
	// URL is the gateway's base URL, or a worker's ops server (/healthz /readyz /metrics).
	URL string
}

// StartGateway starts a gateway named name on a free port and waits until /readyz answers 200.
func (s *System) StartGateway(ctx context.Context, name string, env ...string) (*App, error) {
	return s.start(ctx, "gateway", name, "GATEWAY_ADDR", env)
}

// StartWorker starts the worker binary app (influx-writer, pg-sync, alerter) with the consumer
// name name and its ops server on a free port, and waits until /readyz answers 200.
func (s *System) StartWorker(ctx context.Context, app, name string, env ...string) (*App, error) {
	return s.start(ctx, app, name, "OPS_ADDR", append([]string{"CONSUMER_NAME=" + name}, env...))
}

func (s *System) start(ctx context.Context, app, name, addrVar string, env []string) (*App, error) {
	var lastErr error
	for range 3 { // a free port may be taken before the binary binds it
		addrs, err := FreeAddrs(1)
		if err != nil {
			return nil, err
		}
		url := "http://" + addrs[0]
		full := append(append(CleanEnv(), s.Env...), addrVar+"="+addrs[0])
		p, err := Start(ctx, Spec{
			Name:         name,
			Path:         filepath.Join(s.BinDir, app),
			Env:          append(full, env...),
			LogPath:      filepath.Join(s.LogDir, name+".log"),
			Ready:        HTTPReady(url+"/readyz", http.StatusOK),
			ReadyTimeout: time.Minute,
			Nice:         s.niceOf(app),
		})
		if err == nil {
			a := &App{Process: p, URL: url}
			s.mu.Lock()
			s.apps = append(s.apps, a)
			s.mu.Unlock()
			return a, nil
		}
		if lastErr = err; !errors.Is(err, ErrExited) {
			break
		}
	}
	return nil, lastErr
}

func (s *System) niceOf(app string) int {
	if Background(app) {
		return s.BackgroundNice
	}
	return 0
}

// Apps returns the binaries started so far, in start order.
func (s *System) Apps() []*App {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*App(nil), s.apps...)
}

// Stop stops every binary in reverse start order (SIGTERM, up to grace each) and returns what
// went wrong, such as a binary that had to be killed.
func (s *System) Stop(grace time.Duration) error {
	apps := s.Apps()
	var errs []error
	for i := len(apps) - 1; i >= 0; i-- {
		errs = append(errs, apps[i].Stop(grace))
	}
	return errors.Join(errs...)
}
