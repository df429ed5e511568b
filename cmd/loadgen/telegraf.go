package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentmonitor/agentmonitor/internal/stack"
)

// The Telegraf relay the bench compares the gateway with (issue 13): influxdb_v2_listener in,
// influxdb_v2 out to the bench's influxd, metrics buffered in memory.
const (
	telegrafModule  = "github.com/influxdata/telegraf/cmd/telegraf"
	telegrafVersion = "v1.30.3"
	telegrafDB      = "telegraf" // the database (v2 bucket) the relay writes to
	// telegrafTags builds only the two plugins the relay uses, with Telegraf's own custom-build
	// tags: the whole of Telegraf (hundreds of plugins, about 2,500 packages) did not finish
	// building within an hour on this 2-core machine; this build takes about a minute. --peer
	// telegraf-full installs the whole of it instead.
	telegrafTags = "custom,inputs.influxdb_v2_listener,outputs.influxdb_v2"
)

// telegrafRelay is a running Telegraf.
type telegrafRelay struct {
	proc *stack.Process
	url  string // the listener's base URL
}

// telegrafInfo is what the JSON result says about Telegraf.
type telegrafInfo struct {
	Version  string  `json:"version"`
	Tags     string  `json:"build_tags,omitempty"` // "": every plugin
	Binary   string  `json:"binary"`
	InstallS float64 `json:"install_s,omitempty"` // 0: installed before
	Error    string  `json:"error,omitempty"`
}

// startTelegrafInstall installs Telegraf from its Go module into .data/bin unless it is there.
// A failed install is an error: --peer telegraf asked for it.
func (b *bench) startTelegrafInstall(ctx context.Context) error {
	bin := filepath.Join(b.root, ".data", "bin")
	info := &telegrafInfo{Version: telegrafVersion, Binary: filepath.Join(bin, "telegraf")}
	args := []string{"install"}
	if b.cfg.peer == "telegraf" {
		// A binary of its own, so that the full and the custom build never mix.
		info.Binary, info.Tags = filepath.Join(bin, "telegraf-relay", "telegraf"), telegrafTags
		bin = filepath.Dir(info.Binary)
		args = append(args, "-tags", telegrafTags)
	}
	b.res.Telegraf = info
	if _, err := os.Stat(info.Binary); err == nil {
		return nil
	}
	fmt.Fprintf(b.out, "==> installing Telegraf %s into %s (go install %s)\n", telegrafVersion, bin, strings.Join(args[1:], " "))
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "go", append(args, telegrafModule+"@"+telegrafVersion)...)
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-buildvcs=false")
	cmd.Stdout, cmd.Stderr = b.out, b.out
	if err := cmd.Run(); err != nil {
		info.Error = fmt.Sprintf("go install %s@%s failed after %s: %v", telegrafModule, telegrafVersion, time.Since(t0).Round(time.Second), err)
		return fmt.Errorf("%s", info.Error)
	}
	info.InstallS = time.Since(t0).Seconds()
	return nil
}

// telegrafConfig is the relay's configuration: the v2 listener on listen, the v2 output to
// influxURL's database telegrafDB, batches of 5000 flushed every second, a buffer large enough
// for a whole run (Telegraf drops the oldest metrics when it overflows; the bench's count would
// show it).
func telegrafConfig(listen, influxURL string) string {
	return fmt.Sprintf(`# written by loadgen --mode bench --peer telegraf
[agent]
  interval = "10s"
  round_interval = false
  metric_batch_size = 5000
  metric_buffer_limit = 5000000
  flush_interval = "1s"
  flush_jitter = "0s"
  omit_hostname = true
  quiet = true

[[inputs.influxdb_v2_listener]]
  service_address = %q

[[outputs.influxdb_v2]]
  urls = [%q]
  token = ""
  organization = ""
  bucket = %q
`, listen, influxURL, telegrafDB)
}

// startTelegraf creates the relay's database and starts Telegraf on a free port.
func (b *bench) startTelegraf(ctx context.Context) error {
	q, err := newInfluxQL(b.influxd.URL(), telegrafDB, "")
	if err != nil {
		return err
	}
	err = q.createDatabase(ctx)
	q.close()
	if err != nil {
		return err
	}
	dir := filepath.Join(b.work, "telegraf")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	var lastErr error
	for range 3 { // a free port may be taken before Telegraf binds it
		addrs, err := stack.FreeAddrs(1)
		if err != nil {
			return err
		}
		conf := filepath.Join(dir, "telegraf.conf")
		if err := os.WriteFile(conf, []byte(telegrafConfig(addrs[0], b.influxd.URL())), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", conf, err)
		}
		url := "http://" + addrs[0]
		p, err := stack.Start(ctx, stack.Spec{
			Name: "telegraf", Path: b.res.Telegraf.Binary, Args: []string{"--config", conf},
			Env: stack.CleanEnv(), LogPath: filepath.Join(b.work, "logs", "telegraf.log"),
			Ready: stack.HTTPReady(url+"/api/v2/ready", http.StatusOK), ReadyTimeout: time.Minute,
		})
		if err == nil {
			b.telegraf = &telegrafRelay{proc: p, url: url}
			b.procs["telegraf"] = p
			fmt.Fprintf(b.out, "==> Telegraf %s relay on %s -> influxd database %s\n", telegrafVersion, url, telegrafDB)
			return nil
		}
		if lastErr = err; !errors.Is(err, stack.ErrExited) {
			break
		}
	}
	b.res.Telegraf.Error = fmt.Sprintf("starting Telegraf: %v", lastErr)
	return fmt.Errorf("starting telegraf: %w", lastErr)
}
