package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumBin is Debian's chromium, installed by scripts/stores.sh chromium (go tool task test
// runs it); CHROMIUM_BIN overrides it.
func chromiumBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CHROMIUM_BIN")
	if bin == "" {
		bin = "/usr/bin/chromium"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no browser at %s: run scripts/stores.sh chromium (go tool task test does): %v", bin, err)
	}
	return bin
}

// browser is a headless Chromium driving the console. Every JavaScript exception, console error,
// failed request and answer >= 400 the test did not announce with expect fails the test.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // where screenshots go

	mu       sync.Mutex
	expected map[string]int // "METHOD path-prefix status" -> how many more are expected
	requests map[network.RequestID]string
	// statusSeen are the expected failures that happened (their URLs' "Failed to load" log
	// entries are expected too).
	statusSeen []string
	closed     bool
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumBin(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	var b *browser
	t.Cleanup(func() {
		b.mu.Lock()
		b.closed = true // events of the browser's end are no test's problems
		b.mu.Unlock()
		cancel()
		cancelAlloc()
	})

	b = &browser{t: t, ctx: ctx, dir: filepath.Join(t.TempDir(), "screenshots"),
		expected: map[string]int{}, requests: map[network.RequestID]string{}}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The first action starts the browser (without a timeout: it would stop the browser) and
	// opens the tab, which enables the runtime, log and network domains; then listen.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	if err := chromedp.Listen(ctx, b.listen); err != nil {
		t.Fatalf("listening to chromium: %v", err)
	}
	return b
}

func (b *browser) problem(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problemLocked(format, args...)
}

func (b *browser) problemLocked(format string, args ...any) {
	if !b.closed {
		b.t.Errorf("browser: "+format, args...)
	}
}

// expect announces a request the test provokes on purpose, answered with status.
func (b *browser) expect(method, pathPrefix string, status int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expected[fmt.Sprintf("%s %s %d", method, pathPrefix, status)]++
}

func (b *browser) listen(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		desc := ""
		if d != nil && d.Exception != nil {
			desc = d.Exception.Description
		}
		b.problem("JavaScript exception: %s %s (%s:%d)", d.Text, desc, d.URL, d.LineNumber)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			b.problem("console.%s: %s", ev.Type, strings.Join(parts, " "))
		}
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level == cdplog.EntryLevelError && !b.expectedURL(ev.Entry.URL) {
			b.problem("log error (%s): %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	case *network.EventRequestWillBeSent:
		b.mu.Lock()
		b.requests[ev.RequestID] = ev.Request.Method + " " + ev.Request.URL
		b.mu.Unlock()
	case *network.EventLoadingFailed:
		if ev.Canceled {
			return // a fetch the page abandoned (navigation), not a failure
		}
		b.mu.Lock()
		what := b.requests[ev.RequestID]
		b.mu.Unlock()
		if !b.expectedURL(what) {
			b.problem("request failed: %s: %s %s", what, ev.ErrorText, ev.BlockedReason)
		}
	case *network.EventResponseReceived:
		if ev.Response.Status < 400 {
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		method, _, _ := strings.Cut(b.requests[ev.RequestID], " ")
		path := ev.Response.URL
		if i := strings.Index(path, "://"); i >= 0 {
			if j := strings.Index(path[i+3:], "/"); j >= 0 {
				path = path[i+3+j:]
			}
		}
		for k, n := range b.expected {
			var m, p string
			var st int
			if _, err := fmt.Sscanf(k, "%s %s %d", &m, &p, &st); err != nil || n == 0 {
				continue
			}
			if m == method && strings.HasPrefix(path, p) && st == int(ev.Response.Status) {
				b.expected[k]--
				b.statusSeen = append(b.statusSeen, k)
				return
			}
		}
		b.problemLocked("unexpected answer %d to %s %s", ev.Response.Status, method, path)
	}
}

// expectedURL reports whether a failed URL belongs to an expected failure (the browser logs
// "Failed to load resource" for every answer >= 400).
func (b *browser) expectedURL(url string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range b.statusSeen {
		parts := strings.Fields(k)
		if len(parts) == 3 && strings.Contains(url, parts[1]) {
			return true
		}
	}
	return false
}

// run runs chromedp actions with a timeout, failing the test on error.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// waitJS polls a JavaScript expression until it is true.
func (b *browser) waitJS(what, expr string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
			b.t.Fatalf("browser: waited %v for %s (%s): last error %v", timeout, what, expr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// shot writes a screenshot of the page as it is to the test's folder and to $DASHBOARD_SHOTS.
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	dirs := []string{b.dir}
	if d := os.Getenv("DASHBOARD_SHOTS"); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.t.Errorf("screenshot folder: %v", err)
			continue
		}
		if err := os.WriteFile(filepath.Join(d, name+".png"), png, 0o644); err != nil {
			b.t.Errorf("writing screenshot: %v", err)
		}
	}
}

// shots takes the page at desktop (1280x800) and phone (390x844) widths.
func (b *browser) shots(name string) {
	b.t.Helper()
	b.shot(name + "-desktop")
	b.run("phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch), chromedp.Sleep(700*time.Millisecond))
	b.shot(name + "-phone")
	b.run("desktop width", chromedp.EmulateViewport(1280, 800), chromedp.Sleep(300*time.Millisecond))
}

// text returns the text of the first node matching sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return b.eval("reading "+sel, fmt.Sprintf("document.querySelector(%q).textContent", sel))
}

// exists reports whether a node matches the CSS selector now.
func (b *browser) exists(sel string) bool {
	b.t.Helper()
	return b.eval("counting "+sel, fmt.Sprintf("String(document.querySelectorAll(%q).length)", sel)) != "0"
}

// eval evaluates a JavaScript expression that gives a string.
func (b *browser) eval(what, expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
	return s
}

// colorScheme emulates prefers-color-scheme ("dark", "light"; "" ends the emulation).
func (b *browser) colorScheme(scheme string) {
	b.t.Helper()
	p := emulation.SetEmulatedMediaParams{}
	if scheme != "" {
		p.Features = []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}
	}
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, p); err != nil {
		b.t.Fatalf("browser: emulating prefers-color-scheme %q: %v", scheme, err)
	}
}
