package agentmonitor

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentmonitor/agentmonitor/internal/stack"
	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// The services compose.yaml must declare, and what each store keeps where.
var (
	storeImage = map[string]string{ // image prefix: the major (and minor) version we run against
		"redis":    "redis:7.",
		"postgres": "postgres:16.",
		"influxdb": "influxdb:2.7.",
	}
	storeData = map[string]string{ // where the store's image keeps its data
		"redis":    "/data",
		"postgres": "/var/lib/postgresql/data",
		"influxdb": "/var/lib/influxdb2",
	}
	storeHealth = map[string]string{ // a word its health check command must contain
		"redis":    "ping",
		"postgres": "pg_isready",
		"influxdb": "ping",
	}
	// appAddr names the variable holding the address each binary serves /healthz on.
	appAddr = map[string]string{
		"gateway":       "GATEWAY_ADDR",
		"influx-writer": "OPS_ADDR",
		"pg-sync":       "OPS_ADDR",
		"alerter":       "OPS_ADDR",
		"rollup":        "OPS_ADDR",
	}
	// appEnv lists the variables every binary gets (each binary applies the migrations, and the
	// stream settings must be the same everywhere).
	appEnv = []string{
		"DATABASE_URL", "REDIS_URL", "REDIS_PASSWORD", "INFLUXDB_URL", "INFLUXDB_TOKEN", "INFLUXDB_ORG",
		"INFLUXDB_BUCKET", "METRICS_RETENTION_DAYS", "LOGS_RETENTION_DAYS", "REDIS_TTL_SECONDS", "STREAM_SHARDS",
	}
)

// pinnedImage matches a reference whose tag starts with a version number, or a digest.
var pinnedImage = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]*(:v?[0-9]+\.[0-9]+[A-Za-z0-9._-]*|@sha256:[0-9a-f]{64})$`)

// loadCompose parses compose.yaml as docker compose would, with interpolation from env only (not
// the developer's environment or a .env file), so that the test sees the same project everywhere.
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"}, cli.WithWorkingDirectory("."), cli.WithEnv(list))
	if err != nil {
		t.Fatalf("NewProjectOptions: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("loading compose.yaml: %v", err)
	}
	return p
}

// checkCompose returns every way p falls short of what the deployment needs.
func checkCompose(p *types.Project) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	want := slices.Sorted(func(yield func(string) bool) {
		for name := range storeImage {
			if !yield(name) {
				return
			}
		}
		for name := range appAddr {
			if !yield(name) {
				return
			}
		}
	})
	got := slices.Sorted(func(yield func(string) bool) {
		for name := range p.Services {
			if !yield(name) {
				return
			}
		}
	})
	if !slices.Equal(got, want) {
		bad("services = %v, want %v", got, want)
	}

	for name, svc := range p.Services {
		checkHealth(name, svc, bad)
		checkCPUShares(name, svc, bad)
		switch svc.Restart {
		case types.RestartPolicyAlways, types.RestartPolicyUnlessStopped, types.RestartPolicyOnFailure:
		default:
			bad("%s: restart = %q, want always, unless-stopped or on-failure", name, svc.Restart)
		}
	}
	for name, prefix := range storeImage {
		svc, ok := p.Services[name]
		if !ok {
			continue
		}
		if !pinnedImage.MatchString(svc.Image) || !strings.HasPrefix(svc.Image, prefix) {
			bad("%s: image %q is not pinned to a %s* version tag", name, svc.Image, prefix)
		}
		checkStoreVolume(p, name, svc, bad)
	}
	checkRedis(p, bad)
	for name := range appAddr {
		if svc, ok := p.Services[name]; ok {
			checkApp(p, name, svc, bad)
		}
	}
	if gw, ok := p.Services["gateway"]; ok {
		published := slices.ContainsFunc(gw.Ports, func(pc types.ServicePortConfig) bool {
			return pc.Target == 8080 && pc.Published == "8080"
		})
		if !published {
			bad("gateway: port 8080 is not published as 8080 (ports %+v)", gw.Ports)
		}
		if port(env(gw, "GATEWAY_ADDR")) != "8080" {
			bad("gateway: GATEWAY_ADDR = %q, want it on port 8080", env(gw, "GATEWAY_ADDR"))
		}
		if _, ok := gw.Environment["ADMIN_PASSWORD"]; !ok {
			bad("gateway: ADMIN_PASSWORD is not passed through")
		}
	}
	return problems
}

func checkHealth(name string, svc types.ServiceConfig, bad func(string, ...any)) {
	hc := svc.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 2 || (hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL") {
		bad("%s: no working healthcheck (%+v)", name, hc)
		return
	}
	cmd := strings.Join(hc.Test[1:], " ")
	if word, ok := storeHealth[name]; ok && !strings.Contains(cmd, word) {
		bad("%s: healthcheck %q does not run %s", name, cmd, word)
	}
	if v, ok := appAddr[name]; ok {
		// The check must call the port the binary listens on, read from the same environment.
		want := fmt.Sprintf("http://127.0.0.1:%s/healthz", port(env(svc, v)))
		if !strings.Contains(cmd, want) {
			bad("%s: healthcheck %q does not call %s (from %s=%q)", name, cmd, want, v, env(svc, v))
		}
	}
}

func checkStoreVolume(p *types.Project, name string, svc types.ServiceConfig, bad func(string, ...any)) {
	for _, v := range svc.Volumes {
		if v.Target != storeData[name] {
			continue
		}
		if v.Type != types.VolumeTypeVolume {
			bad("%s: %s is a %s mount, want a named volume", name, v.Target, v.Type)
		} else if _, declared := p.Volumes[v.Source]; !declared {
			bad("%s: volume %q is not declared under volumes:", name, v.Source)
		}
		return
	}
	bad("%s: no volume for its data at %s", name, storeData[name])
}

// checkCPUShares: the write-behind side (the writers, rollups, pg-sync and InfluxDB) yields the
// CPU to the request path (gateway, Redis, alerter) when a machine's cores are busy, as go tool
// task up runs it (stack.BackgroundNice).
func checkCPUShares(name string, svc types.ServiceConfig, bad func(string, ...any)) {
	const full = 1024 // Docker's default weight
	background := stack.Background(name) || name == "influxdb"
	switch shares := svc.CPUShares; {
	case background && (shares <= 0 || shares >= full):
		bad("%s: cpu_shares = %d, want a weight below %d (it works behind the streams)", name, shares, full)
	case !background && shares != 0 && shares < full:
		bad("%s: cpu_shares = %d lowers a service on the request path", name, shares)
	}
}

// checkRedis: AOF on, and the password the binaries use is the one Redis requires.
func checkRedis(p *types.Project, bad func(string, ...any)) {
	redis, ok := p.Services["redis"]
	if !ok {
		return
	}
	arg := func(flag string) string {
		i := slices.Index(redis.Command, flag)
		if i < 0 || i+1 >= len(redis.Command) {
			return ""
		}
		return redis.Command[i+1]
	}
	if arg("--appendonly") != "yes" || arg("--appendfsync") != "always" {
		bad("redis: command %q does not turn AOF on (--appendonly yes --appendfsync always)", redis.Command)
	}
	if pass := arg("--requirepass"); pass == "" || env(redis, "REDISCLI_AUTH") != pass {
		bad("redis: --requirepass %q and REDISCLI_AUTH %q (for the healthcheck) differ or are empty", pass, env(redis, "REDISCLI_AUTH"))
	}
}

func checkApp(p *types.Project, name string, svc types.ServiceConfig, bad func(string, ...any)) {
	if svc.Build == nil || svc.Build.Dockerfile != "Dockerfile" {
		bad("%s: not built from the repository's Dockerfile (build %+v)", name, svc.Build)
	} else if abs, _ := filepath.Abs("."); svc.Build.Context != abs {
		bad("%s: build context %q, want the repository root %q", name, svc.Build.Context, abs)
	}
	if strings.HasSuffix(svc.Image, ":latest") {
		bad("%s: image %q is tagged latest", name, svc.Image)
	}
	if len(svc.Command) != 1 || svc.Command[0] != name {
		bad("%s: command %q, want [%q]", name, svc.Command, name)
	}
	for _, v := range appEnv {
		if env(svc, v) == "" {
			bad("%s: environment lacks %s", name, v)
		}
	}
	if port(env(svc, appAddr[name])) == "" {
		bad("%s: %s = %q has no port", name, appAddr[name], env(svc, appAddr[name]))
	}
	for store := range storeImage {
		if dep, ok := svc.DependsOn[store]; !ok || dep.Condition != types.ServiceConditionHealthy {
			bad("%s: does not depend on %s with condition service_healthy (%+v)", name, store, svc.DependsOn)
		}
	}

	// The URLs point at the compose services, with the credentials those services are set up with.
	pg, redis, influx := p.Services["postgres"], p.Services["redis"], p.Services["influxdb"]
	if u, err := url.Parse(env(svc, "DATABASE_URL")); err != nil || u.Host != "postgres:5432" ||
		u.User.Username() != env(pg, "POSTGRES_USER") || password(u) != env(pg, "POSTGRES_PASSWORD") ||
		u.Path != "/"+env(pg, "POSTGRES_DB") {
		bad("%s: DATABASE_URL %q does not match the postgres service (user, password, database)", name, env(svc, "DATABASE_URL"))
	}
	if u, err := url.Parse(env(svc, "REDIS_URL")); err != nil || u.Host != "redis:6379" {
		bad("%s: REDIS_URL %q is not the redis service", name, env(svc, "REDIS_URL"))
	}
	if env(svc, "REDIS_PASSWORD") != env(redis, "REDISCLI_AUTH") {
		bad("%s: REDIS_PASSWORD differs from the redis service's password", name)
	}
	if env(svc, "INFLUXDB_URL") != "http://influxdb:8086" {
		bad("%s: INFLUXDB_URL %q is not the influxdb service", name, env(svc, "INFLUXDB_URL"))
	}
	if env(influx, "DOCKER_INFLUXDB_INIT_MODE") != "setup" {
		bad("influxdb: DOCKER_INFLUXDB_INIT_MODE is not setup: nothing creates the org, bucket and token")
	}
	for app, init := range map[string]string{
		"INFLUXDB_TOKEN":  "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN",
		"INFLUXDB_ORG":    "DOCKER_INFLUXDB_INIT_ORG",
		"INFLUXDB_BUCKET": "DOCKER_INFLUXDB_INIT_BUCKET",
	} {
		if env(svc, app) != env(influx, init) {
			bad("%s: %s %q differs from the influxdb service's %s %q", name, app, env(svc, app), init, env(influx, init))
		}
	}
	if gw, ok := p.Services["gateway"]; ok && env(svc, "STREAM_SHARDS") != env(gw, "STREAM_SHARDS") {
		bad("%s: STREAM_SHARDS %q differs from the gateway's %q", name, env(svc, "STREAM_SHARDS"), env(gw, "STREAM_SHARDS"))
	}
}

func env(svc types.ServiceConfig, name string) string {
	if v := svc.Environment[name]; v != nil {
		return *v
	}
	return ""
}

func password(u *url.URL) string {
	p, _ := u.User.Password()
	return p
}

// port returns the port of a listen address such as ":8080" or "0.0.0.0:9101".
func port(addr string) string {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return ""
	}
	return addr[i+1:]
}

func TestComposeFile(t *testing.T) {
	for _, problem := range checkCompose(loadCompose(t, nil)) {
		t.Error(problem)
	}
}

// TestComposeFileSettings checks that each setting reaches both sides with the value given: a value
// written out on one side only would pass with the defaults yet break the first real deployment.
func TestComposeFileSettings(t *testing.T) {
	settings := map[string]string{
		"POSTGRES_PASSWORD": "pg-secret",
		"REDIS_PASSWORD":    "redis-secret",
		"INFLUXDB_TOKEN":    "influx-token",
		"INFLUXDB_ORG":      "acme",
		"INFLUXDB_BUCKET":   "acme-metrics",
		"STREAM_SHARDS":     "8",
		"ADMIN_PASSWORD":    "admin-secret",
	}
	p := loadCompose(t, settings)
	for _, problem := range checkCompose(p) {
		t.Error(problem)
	}
	for name := range appAddr {
		svc := p.Services[name]
		for _, v := range []string{"REDIS_PASSWORD", "INFLUXDB_TOKEN", "INFLUXDB_ORG", "INFLUXDB_BUCKET", "STREAM_SHARDS"} {
			if got := env(svc, v); got != settings[v] {
				t.Errorf("%s: %s = %q, want %q from the environment", name, v, got, settings[v])
			}
		}
		u, err := url.Parse(env(svc, "DATABASE_URL"))
		if err != nil || password(u) != settings["POSTGRES_PASSWORD"] {
			t.Errorf("%s: DATABASE_URL = %q, want password %q", name, env(svc, "DATABASE_URL"), settings["POSTGRES_PASSWORD"])
		}
	}
	if got := env(p.Services["gateway"], "ADMIN_PASSWORD"); got != settings["ADMIN_PASSWORD"] {
		t.Errorf("gateway: ADMIN_PASSWORD = %q, want %q from the environment", got, settings["ADMIN_PASSWORD"])
	}
	if got := env(p.Services["influxdb"], "DOCKER_INFLUXDB_INIT_RETENTION"); got != "30d" {
		t.Errorf("influxdb: DOCKER_INFLUXDB_INIT_RETENTION = %q, want 30d (METRICS_RETENTION_DAYS default)", got)
	}
}

// TestComposeCheckCatches proves that checkCompose fails on each defect it is meant to catch, so
// that TestComposeFile passing means something.
func TestComposeCheckCatches(t *testing.T) {
	edit := func(name string, f func(s *types.ServiceConfig)) func(*types.Project) {
		return func(p *types.Project) {
			s := p.Services[name]
			f(&s)
			p.Services[name] = s
		}
	}
	setEnv := func(name, key, value string) func(*types.Project) {
		return edit(name, func(s *types.ServiceConfig) { s.Environment[key] = &value })
	}
	tests := []struct {
		name   string
		change func(*types.Project)
		want   string
	}{
		{"service missing", func(p *types.Project) { delete(p.Services, "alerter") }, "services = "},
		{"healthcheck removed", edit("pg-sync", func(s *types.ServiceConfig) { s.HealthCheck = nil }), "pg-sync: no working healthcheck"},
		{"healthcheck disabled", edit("redis", func(s *types.ServiceConfig) { s.HealthCheck.Disable = true }), "redis: no working healthcheck"},
		{"healthcheck NONE", edit("influxdb", func(s *types.ServiceConfig) { s.HealthCheck.Test = types.HealthCheckTest{"NONE"} }), "influxdb: no working healthcheck"},
		{"healthcheck wrong port", setEnv("influx-writer", "OPS_ADDR", ":9999"), "influx-writer: healthcheck"},
		{"healthcheck wrong tool", edit("postgres", func(s *types.ServiceConfig) { s.HealthCheck.Test = types.HealthCheckTest{"CMD", "true"} }), "postgres: healthcheck"},
		{"image latest", edit("postgres", func(s *types.ServiceConfig) { s.Image = "postgres:latest" }), "postgres: image"},
		{"image untagged", edit("influxdb", func(s *types.ServiceConfig) { s.Image = "influxdb" }), "influxdb: image"},
		{"image wrong major", edit("redis", func(s *types.ServiceConfig) { s.Image = "redis:6.2.14" }), "redis: image"},
		{"app image latest", edit("gateway", func(s *types.ServiceConfig) { s.Image = "agentmonitor:latest" }), "gateway: image"},
		{"no build", edit("pg-sync", func(s *types.ServiceConfig) { s.Build = nil }), "pg-sync: not built"},
		{"wrong command", edit("pg-sync", func(s *types.ServiceConfig) { s.Command = types.ShellCommand{"gateway"} }), "pg-sync: command"},
		{"port not published", edit("gateway", func(s *types.ServiceConfig) { s.Ports = nil }), "gateway: port 8080"},
		{"gateway listens elsewhere", setEnv("gateway", "GATEWAY_ADDR", ":9090"), "GATEWAY_ADDR"},
		{"env missing", edit("influx-writer", func(s *types.ServiceConfig) { delete(s.Environment, "DATABASE_URL") }), "influx-writer: environment lacks DATABASE_URL"},
		{"admin password dropped", edit("gateway", func(s *types.ServiceConfig) { delete(s.Environment, "ADMIN_PASSWORD") }), "ADMIN_PASSWORD"},
		{"database password mismatch", setEnv("postgres", "POSTGRES_PASSWORD", "other"), "DATABASE_URL"},
		{"database host wrong", setEnv("pg-sync", "DATABASE_URL", "postgres://postgres:postgres@localhost:5432/agentmonitor"), "pg-sync: DATABASE_URL"},
		{"redis url wrong", setEnv("gateway", "REDIS_URL", "redis://127.0.0.1:6379/0"), "gateway: REDIS_URL"},
		{"redis password mismatch", setEnv("alerter", "REDIS_PASSWORD", "other"), "alerter: REDIS_PASSWORD"},
		{"influx token mismatch", setEnv("influxdb", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN", "other"), "INFLUXDB_TOKEN"},
		{"influx not set up", setEnv("influxdb", "DOCKER_INFLUXDB_INIT_MODE", "upgrade"), "DOCKER_INFLUXDB_INIT_MODE"},
		{"shards differ", setEnv("pg-sync", "STREAM_SHARDS", "2"), "pg-sync: STREAM_SHARDS"},
		{"depends_on started", edit("influx-writer", func(s *types.ServiceConfig) {
			s.DependsOn["influxdb"] = types.ServiceDependency{Condition: types.ServiceConditionStarted, Required: true}
		}), "influx-writer: does not depend on influxdb"},
		{"depends_on missing", edit("gateway", func(s *types.ServiceConfig) { delete(s.DependsOn, "redis") }), "gateway: does not depend on redis"},
		{"store volume removed", edit("postgres", func(s *types.ServiceConfig) { s.Volumes = nil }), "postgres: no volume"},
		{"store volume a bind mount", edit("influxdb", func(s *types.ServiceConfig) {
			s.Volumes = []types.ServiceVolumeConfig{{Type: types.VolumeTypeBind, Source: "/tmp/x", Target: "/var/lib/influxdb2"}}
		}), "influxdb: /var/lib/influxdb2 is a bind mount"},
		{"volume undeclared", func(p *types.Project) { delete(p.Volumes, "redis-data") }, "redis: volume \"redis-data\""},
		{"aof off", edit("redis", func(s *types.ServiceConfig) { s.Command = types.ShellCommand{"redis-server"} }), "redis: command"},
		{"writer at full weight", edit("influx-writer", func(s *types.ServiceConfig) { s.CPUShares = 0 }), "influx-writer: cpu_shares"},
		{"gateway lowered", edit("gateway", func(s *types.ServiceConfig) { s.CPUShares = 256 }), "gateway: cpu_shares"},
		{"no restart policy", edit("gateway", func(s *types.ServiceConfig) { s.Restart = "" }), "gateway: restart"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := loadCompose(t, nil)
			tt.change(p)
			problems := checkCompose(p)
			if !slices.ContainsFunc(problems, func(s string) bool { return strings.Contains(s, tt.want) }) {
				t.Errorf("checkCompose after %q = %q, want a problem containing %q", tt.name, problems, tt.want)
			}
		})
	}
}

// TestDockerfile checks the image the five services run: base images pinned, the builder on the
// Go release go.mod names (no toolchain download inside the build), the five service binaries built
// and the development tools (loadgen, devstack) not, and a runtime with the wget the health checks
// call.
func TestDockerfile(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	goVersion := string(m[1])
	from := regexp.MustCompile(`(?mi)^FROM\s+(\S+)`).FindAllSubmatch(dockerfile, -1)
	if len(from) < 2 {
		t.Fatalf("Dockerfile has %d FROM lines, want a build and a runtime stage", len(from))
	}
	for _, f := range from {
		if img := string(f[1]); !pinnedImage.MatchString(img) {
			t.Errorf("Dockerfile: FROM %s is not pinned to a version", img)
		}
	}
	if builder := string(from[0][1]); !strings.HasPrefix(builder, "golang:"+goVersion) {
		t.Errorf("Dockerfile: builder %s, want golang:%s (go.mod's go line)", builder, goVersion)
	}
	if runtime := string(from[len(from)-1][1]); !strings.HasPrefix(runtime, "alpine:") {
		t.Errorf("Dockerfile: runtime image %s, want alpine (busybox wget for the health checks)", runtime)
	}
	built := regexp.MustCompile(`\./cmd/[\w.-]+`).FindAllString(string(dockerfile), -1)
	for _, want := range []string{"./cmd/gateway", "./cmd/influx-writer", "./cmd/pg-sync", "./cmd/alerter", "./cmd/rollup"} {
		if !slices.Contains(built, want) {
			t.Errorf("Dockerfile builds %v, want %s among them", built, want)
		}
	}
	for _, tool := range []string{"./cmd/...", "./cmd/loadgen", "./cmd/devstack"} {
		if slices.Contains(built, tool) {
			t.Errorf("Dockerfile builds %s: development tools stay out of the production image", tool)
		}
	}
}

// TestComposeProxyProfile checks the TLS-in-a-proxy variant: a pinned Caddy with a health check
// in front of the gateway, on the fixed address the gateway trusts for X-Forwarded-For, which the
// network never hands out to another container.
func TestComposeProxyProfile(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"}, cli.WithWorkingDirectory("."), cli.WithEnv(nil), cli.WithProfiles([]string{"proxy"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("loading compose.yaml with profile proxy: %v", err)
	}
	proxy, ok := p.Services["proxy"]
	if !ok {
		t.Fatalf("profile proxy has no service proxy (services %v)", slices.Collect(maps.Keys(p.Services)))
	}
	if !pinnedImage.MatchString(proxy.Image) || !strings.HasPrefix(proxy.Image, "caddy:2.") {
		t.Errorf("proxy: image %q is not pinned to a caddy:2.* version tag", proxy.Image)
	}
	checkHealth("proxy", proxy, func(f string, a ...any) { t.Errorf(f, a...) })
	for _, want := range []string{"80", "443"} {
		if !slices.ContainsFunc(proxy.Ports, func(pc types.ServicePortConfig) bool { return pc.Published == want }) {
			t.Errorf("proxy: port %s not published (%+v)", want, proxy.Ports)
		}
	}
	addr := ""
	if n := proxy.Networks["default"]; n != nil {
		addr = n.Ipv4Address
	}
	if got := env(p.Services["gateway"], "TRUSTED_PROXIES"); addr == "" || got != addr {
		t.Errorf("gateway TRUSTED_PROXIES = %q, want the proxy's fixed address %q", got, addr)
	}
	ipam := p.Networks["default"].Ipam.Config
	if len(ipam) != 1 || ipam[0].IPRange == "" {
		t.Fatalf("default network ipam %+v: want one subnet with an ip_range", ipam)
	}
	_, dyn, err := net.ParseCIDR(ipam[0].IPRange)
	if err != nil || dyn.Contains(net.ParseIP(addr)) {
		t.Errorf("proxy address %s lies in the dynamic range %s (%v): another container could get it", addr, ipam[0].IPRange, err)
	}
	caddyfile := p.Configs["caddyfile"].Content
	if !strings.Contains(caddyfile, "reverse_proxy gateway:8080") || !strings.Contains(caddyfile, "{$PUBLIC_HOST}") {
		t.Errorf("Caddyfile %q does not proxy {$PUBLIC_HOST} to gateway:8080", caddyfile)
	}
}
