package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// seriesPixels counts the pixels of a chart's canvas drawn in the first series colour (#2563eb,
// chart.js COLORS[0]): axes and grid are grey, so a count above a few dozen means a drawn line.
const seriesPixels = `(() => {
  const c = document.querySelector('section.chart[data-metric="%s"] canvas');
  if (!c) return "0";
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i] - 37) < 40 && Math.abs(d[i + 1] - 99) < 40 && Math.abs(d[i + 2] - 235) < 40 && d[i + 3] > 100) n++;
  return String(n);
})()`

func (b *browser) fill(sel, text string) {
	b.t.Helper()
	b.run("filling "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
	b.eval("clearing "+sel, fmt.Sprintf(`String(document.querySelector(%q).value = "")`, sel))
	b.run("typing into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text))
}

func (b *browser) click(sel string) {
	b.t.Helper()
	b.run("clicking "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

func (b *browser) waitVisible(sel string) {
	b.t.Helper()
	b.run("waiting for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
}

// goTo navigates to a console page (a URL fragment) within the loaded console.
func (b *browser) goTo(base, fragment string) {
	b.t.Helper()
	b.run("opening "+fragment, chromedp.Navigate(base+"/"+fragment))
}

func (b *browser) loginAs(base, user, password string) {
	b.t.Helper()
	b.run("opening the console", chromedp.Navigate(base+"/"))
	b.waitJS("the login form", `location.hash === "#/login" && !!document.querySelector("input[name=username]")`, 10*time.Second)
	b.fill("input[name=username]", user)
	b.fill("input[name=password]", password)
	b.click("form.login button[type=submit]")
	b.waitJS("the signed-in console", `!document.getElementById("top").hidden && location.hash === "#/fleet"`, 10*time.Second)
}

func (b *browser) logout() {
	b.t.Helper()
	b.click("#logout")
	b.waitJS("the login page", `location.hash === "#/login" && sessionStorage.length === 0 || location.hash === "#/login" && !sessionStorage.getItem("agentmonitor.session")`, 10*time.Second)
}

func (s *system) postCPUWithKey(t *testing.T, id, key string, v float64, at time.Time) {
	t.Helper()
	body := fmt.Sprintf(`{"points":[{"measurement":"cpu","tags":{"core":"total"},"fields":{"usage_percent":%g},"time":%q}]}`,
		v, at.UTC().Format(time.RFC3339Nano))
	if code, b, _ := s.do("POST", "/api/v1/agents/"+id+"/metrics", "Bearer "+key, []byte(body)); code != http.StatusNoContent {
		t.Fatalf("POST sample with the key read in the browser = %d %s", code, b)
	}
}

// TestDashboardInABrowser drives the console in headless Chromium against the real binaries:
// log in, register an agent and read its key, push points with it, see it online and its chart
// drawn, create a rule through the form (and see the API's validation message by its field),
// see the alert arrive live, acknowledge it and see it resolve; a viewer sees no register button
// and is refused by the API. Screenshots of fleet, agent and alerts at desktop and phone widths.
func TestDashboardInABrowser(t *testing.T) {
	s := newSystem(t, options{writers: 1, syncs: 1, alerters: 1})
	b := newBrowser(t)
	defer func() { t.Logf("screenshots in %s", b.dir) }()

	// The built-in watchdog always fires: an operator who wants an empty alert list disables it
	// (with the other pipeline rules) through the API.
	s.disablePipelineRules(t)
	b.loginAs(s.gateway, "admin", adminPassword)
	// A new user's empty state explains how to start.
	b.waitVisible(".empty pre")
	if txt := b.text(".empty"); !strings.Contains(txt, "outputs.influxdb_v2") || !strings.Contains(txt, "/api/v2/write") {
		t.Errorf("the empty fleet says %q, want the Telegraf and curl snippets", txt)
	}

	// Register an agent through the form; the key is shown once.
	b.goTo(s.gateway, "#/admin/agents")
	b.fill("#agent-name", "web-e2e")
	b.fill("#agent-labels", "env=e2e,role=web")
	b.click("#register")
	b.waitVisible("#new-key")
	key := strings.TrimSpace(b.text("#new-key"))
	if snippet := b.text(".new-key"); !strings.Contains(snippet, `token = "`+key+`"`) || !strings.Contains(snippet, s.gateway) {
		t.Errorf("the new key card says %q, want the Telegraf snippet with the key and %s", snippet, s.gateway)
	}
	id := agentIDByName(t, s, "web-e2e")

	// Points pushed with that key: the agent goes online, its chart draws.
	now := time.Now()
	for i := range 20 {
		s.postCPUWithKey(t, id, key, float64(20+(i%5)*10), now.Add(time.Duration(i-20)*time.Second))
	}
	b.goTo(s.gateway, "#/fleet")
	b.waitJS("the agent online in the fleet", fmt.Sprintf(`!!document.querySelector('tr[data-agent="%s"] .badge.online')`, id), 20*time.Second)
	if b.text(fmt.Sprintf(`tr[data-agent="%s"] .last-seen`, id)) == "never" {
		t.Errorf("the fleet says the online agent was never seen")
	}
	b.fill("input[type=search]", "role=db")
	if b.exists(fmt.Sprintf(`tr[data-agent="%s"]`, id)) {
		t.Errorf("filter role=db still shows the agent labelled role=web")
	}
	b.fill("input[type=search]", "role=web")
	b.waitVisible(fmt.Sprintf(`tr[data-agent="%s"]`, id))
	b.shots("fleet")

	b.click(fmt.Sprintf(`tr[data-agent="%s"] a`, id))
	b.waitJS("the cpu chart drawn", fmt.Sprintf(`Number(%s) > 30`, fmt.Sprintf(seriesPixels, "cpu.usage_percent")), 20*time.Second)
	if n := b.eval("points", `document.querySelector('section.chart[data-metric="cpu.usage_percent"]').dataset.points`); n != "20" {
		t.Errorf("the chart holds %s points, want the 20 sent", n)
	}
	b.shots("agent")
	// Drag across the plot to zoom in.
	box := b.eval("the plot's box", `(() => { const r = document.querySelector('section.chart[data-metric="cpu.usage_percent"] .u-over').getBoundingClientRect();
	  return [r.left, r.top, r.width, r.height].join(" "); })()`)
	var x, y, w, hgt float64
	if _, err := fmt.Sscanf(box, "%g %g %g %g", &x, &y, &w, &hgt); err != nil {
		t.Fatalf("plot box %q: %v", box, err)
	}
	b.run("dragging across the chart", chromedp.DragAndDropXY(x+w*0.3, y+hgt/2, x+w*0.6, y+hgt/2, 10))
	b.waitJS("the chart zoomed", `document.querySelector('section.chart[data-metric="cpu.usage_percent"]').dataset.zoomed === "true"`, 5*time.Second)
	// Longer ranges come from the history API; without it (404) the chart says so.
	b.expect("GET", "/api/v1/agents/"+id+"/metrics/history", 404)
	b.click(`section.chart[data-metric="cpu.usage_percent"] button[data-range="1h"]`)
	b.waitJS("the 1 h range answered", `(() => { const c = document.querySelector('section.chart[data-metric="cpu.usage_percent"]');
	  return c.querySelector('button[data-range="1h"]').getAttribute("aria-pressed") === "true" &&
	    (c.textContent.includes("History is not available") || (c.querySelector("canvas") && c.dataset.zoomed !== "true")); })()`, 10*time.Second)
	b.click(`section.chart[data-metric="cpu.usage_percent"] button[data-range="5m"]`)
	// The dark scheme (prefers-color-scheme), after a reload: the session survives it.
	b.colorScheme("dark")
	b.run("reloading", chromedp.Reload())
	b.waitJS("the cpu chart drawn in the dark", fmt.Sprintf(`Number(%s) > 30`, fmt.Sprintf(seriesPixels, "cpu.usage_percent")), 20*time.Second)
	b.shot("agent-dark-desktop")
	b.colorScheme("")

	// A rule through the form: first without a metric, which the API refuses naming the field.
	b.goTo(s.gateway, "#/rules")
	b.click("#new-rule")
	b.fill(`.rule-form [data-field=name]`, "cpu hot")
	b.fill(`.rule-form [data-field="thresholds.critical.value"]`, "90")
	b.expect("POST", "/api/v1/alert-rules", 400)
	b.click(`.rule-form button[type=submit]`)
	b.waitJS("the metric field's error", `(() => { const e = document.querySelector('.rule-form [data-field=metric] + .field-error'); return !!e && e.textContent.includes("metric"); })()`, 10*time.Second)
	b.fill(`.rule-form [data-field=metric]`, "cpu.usage_percent")
	b.click(`.rule-form button[type=submit]`)
	b.waitJS("the rule in the list", `!document.querySelector(".rule-form") && document.querySelector("main table").textContent.includes("cpu hot")`, 10*time.Second)
	s.waitAlertersLoaded(t, 1, 1)

	// The alert arrives on the open alerts page without a reload, is acknowledged, resolves.
	b.goTo(s.gateway, "#/alerts")
	b.waitJS("the live alert feed", `document.getElementById("ws-state").textContent === "live"`, 10*time.Second)
	b.eval("marking the page", `String(window.__noReload = 1)`)
	s.postCPUWithKey(t, id, key, 97, time.Now())
	b.waitJS("the firing alert", `!!document.querySelector("#active-alerts tr[data-alert] .badge.firing")`, 20*time.Second)
	b.shots("alerts")
	b.click("#active-alerts button.ack")
	b.waitVisible("#active-alerts .acked")
	s.postCPUWithKey(t, id, key, 12, time.Now().Add(time.Second))
	b.waitJS("the alert resolved", `!!document.querySelector("#active-alerts .empty-alerts")`, 20*time.Second)
	if b.eval("reload marker", `String(window.__noReload)`) != "1" {
		t.Errorf("the alerts page was reloaded; the alert should arrive over the WebSocket")
	}
	b.waitJS("the history", `document.querySelector("main").textContent.includes("firing → resolved") || document.querySelector("main").textContent.includes("→ resolved")`, 20*time.Second)
	// Every other page renders without a script error or a failed request.
	for _, page := range []struct{ fragment, ready string }{
		{"#/silences", "main h1"},
		{"#/channels", "main h1"},
		{"#/users", "main table"},
		{"#/pipeline", "main table"},
	} {
		b.goTo(s.gateway, page.fragment)
		b.waitVisible(page.ready)
	}
	b.waitJS("the pipeline's groups", `document.querySelector("main table").textContent.includes("pg-sync")`, 10*time.Second)
	b.shots("pipeline")
	b.logout()

	// A viewer: no register button, no admin pages, and the API refuses anyway.
	s.createJSON(t, "/api/v1/users", map[string]any{"username": "vera", "password": "viewer-password-1", "role": "viewer"})
	b.loginAs(s.gateway, "vera", "viewer-password-1")
	b.waitVisible(fmt.Sprintf(`tr[data-agent="%s"]`, id))
	for _, sel := range []string{"#register-link", `#nav a[href="#/users"]`, `#nav a[href="#/pipeline"]`, `#nav a[href="#/channels"]`} {
		if b.exists(sel) {
			t.Errorf("a viewer sees %s", sel)
		}
	}
	b.goTo(s.gateway, "#/admin/agents")
	b.waitVisible("main table")
	if b.exists("#register-form") || b.exists("#register") {
		t.Errorf("a viewer sees the register form")
	}
	viewer := s.login("vera", "viewer-password-1")
	if code, body, _ := s.do("POST", "/api/v1/agents", "Bearer "+viewer, []byte(`{"name":"nope"}`)); code != http.StatusForbidden {
		t.Errorf("POST /api/v1/agents as a viewer = %d %s, want 403", code, body)
	}
}

func agentIDByName(t *testing.T, s *system, name string) string {
	t.Helper()
	out, body := adminGet[struct {
		Agents []struct{ ID, Name string }
	}](t, s, "/api/v1/agents")
	for _, a := range out.Agents {
		if a.Name == name {
			return a.ID
		}
	}
	t.Fatalf("no agent named %s in %s", name, body)
	return ""
}
