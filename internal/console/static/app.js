// The Agent Monitor console: a hash-routed single page over the gateway's API.
import { api, ApiError, can, login, logout, session, whenUnauthorized } from "./api.js";
import { ago, copyButton, h, labels, mount, pager, showErrors, table, when } from "./dom.js";
import { Chart } from "./chart.js";
import { editAgentForm, passwordPage, previousKey, roleSelect, rotateForm } from "./edits.js";

const main = document.getElementById("main");
const PAGE = 50;

// Each page returns an optional cleanup function (timers, sockets); route() calls it on leaving.
let cleanup = null;
const pages = [];
function page(pattern, role, title, render, nav) { pages.push({ pattern, role, title, render, nav }); }

function origin() { return location.origin; }

function telegrafSnippet(key) {
  return `[[outputs.influxdb_v2]]
  urls = ["${origin()}"]
  token = "${key}"
  organization = ""
  bucket = "metrics"
  # Telegraf posts to ${origin()}/api/v2/write; the gateway keeps the points of this agent.`;
}

function curlSnippet(key) {
  return `curl -X POST "${origin()}/api/v2/write?precision=s" \\
  -H "Authorization: Token ${key}" \\
  --data-binary "cpu,host=web1 usage_percent=12.5 $(date +%s)"`;
}

function banner(err) { return h("div", { class: "banner error", role: "alert" }, err.message || String(err)); }

// ---------------------------------------------------------------------------------------------
// Login

function loginPage() {
  document.getElementById("top").hidden = true;
  const user = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true, "data-field": "username" });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, "data-field": "password" });
  const form = h("form", { class: "card login", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await login(user.value, pass.value);
      location.hash = sessionStorage.getItem("agentmonitor.after") || "#/fleet";
      sessionStorage.removeItem("agentmonitor.after");
    } catch (e) {
      showErrors(form, e.status === 401 ? new ApiError(401, "Wrong user name or password.") : e);
    }
  } },
  h("h1", {}, "Agent Monitor"),
  h("label", {}, h("span", {}, "User name"), user),
  h("label", {}, h("span", {}, "Password"), pass),
  h("button", { class: "primary", type: "submit" }, "Log in"));
  mount(main, form);
}

// ---------------------------------------------------------------------------------------------
// Fleet

async function firingByAgent() {
  const byAgent = new Map();
  try {
    const r = await api("GET", "/api/v1/alerts");
    for (const a of r.alerts || []) if (a.status === "firing") byAgent.set(a.agent_id, (byAgent.get(a.agent_id) || 0) + 1);
  } catch { /* badges are a bonus */ }
  return byAgent;
}

function emptyState() {
  const steps = [
    h("p", {}, "No agent is registered yet. Register one, then point Telegraf (or curl) at this gateway with its key."),
  ];
  if (can("operator")) steps.push(h("p", {}, h("a", { href: "#/admin/agents", class: "button primary" }, "Register an agent")));
  else steps.push(h("p", { class: "muted" }, "Ask an operator to register an agent."));
  steps.push(h("p", {}, "With curl (register, then send one point):"),
    h("pre", {}, `TOKEN=$(curl -s -X POST ${origin()}/api/v1/auth/login -d '{"username":"admin","password":"…"}' \\
  -H 'Content-Type: application/json' | jq -r .token)
KEY=$(curl -s -X POST ${origin()}/api/v1/agents -H "Authorization: Bearer $TOKEN" \\
  -H 'Content-Type: application/json' -d '{"name":"web1","labels":{"env":"prod"}}' | jq -r .api_key)
${curlSnippet("$KEY")}`),
    h("p", {}, "With Telegraf (telegraf.conf):"), h("pre", {}, telegrafSnippet("<the agent's key>")));
  return h("div", { class: "card empty" }, h("h2", {}, "Welcome"), steps);
}

function fleetPage() {
  let offset = 0;
  let filter = "";
  let agents = [];
  let total = 0;
  let firing = new Map();
  let error = null;
  const filterInput = h("input", { type: "search", placeholder: "Filter by name or label (env=prod)", "aria-label": "Filter", oninput: () => { filter = filterInput.value.trim().toLowerCase(); draw(); } });
  const body = h("div");
  mount(main, h("div", { class: "row" }, h("h1", {}, "Fleet"), h("span", { class: "spacer" }),
    can("operator") ? h("a", { href: "#/admin/agents", class: "button", id: "register-link" }, "Register an agent") : null),
  h("div", { class: "row" }, filterInput), body);

  function matches(a) {
    if (!filter) return true;
    if (a.name.toLowerCase().includes(filter)) return true;
    return Object.entries(a.labels || {}).some(([k, v]) => `${k}=${v}`.toLowerCase().includes(filter));
  }
  function draw() {
    if (error) return mount(body, banner(error));
    if (total === 0) return mount(body, emptyState());
    const shown = agents.filter(matches);
    const online = agents.filter((a) => a.status === "online").length;
    mount(body,
      h("p", { class: "muted" }, `${online} online, ${agents.length - online} offline on this page (${total} agents)`),
      table(["Agent", "Status", "Last seen", "Labels", "Alerts"], shown.map((a) => h("tr", { dataset: { agent: a.id } },
        h("td", { "data-th": "Agent" }, h("a", { href: `#/agents/${a.id}` }, a.name)),
        h("td", { "data-th": "Status" }, h("span", { class: "badge " + a.status }, a.status)),
        h("td", { "data-th": "Last seen", title: when(a.last_seen), class: "last-seen" }, ago(a.last_seen)),
        h("td", { "data-th": "Labels" }, labels(a.labels)),
        h("td", { "data-th": "Alerts" }, firing.get(a.id) ? h("span", { class: "badge firing" }, `${firing.get(a.id)} firing`) : ""),
      ))),
      shown.length === 0 ? h("p", { class: "muted" }, "No agent on this page matches the filter.") : null,
      pager(total, PAGE, offset, (o) => { offset = o; refresh(); }));
  }
  async function refresh() {
    try {
      const r = await api("GET", `/api/v1/agents?limit=${PAGE}&offset=${offset}`);
      agents = r.agents || [];
      total = r.total;
      firing = await firingByAgent();
      error = null;
    } catch (e) { error = e; }
    draw();
  }
  refresh();
  const poll = setInterval(refresh, 5000);
  // "last seen" ticks every second between polls.
  const tick = setInterval(() => {
    for (const td of body.querySelectorAll("td.last-seen")) {
      const a = agents.find((x) => x.id === td.parentElement.dataset.agent);
      if (a) td.textContent = ago(a.last_seen);
    }
  }, 1000);
  return () => { clearInterval(poll); clearInterval(tick); };
}

// ---------------------------------------------------------------------------------------------
// One agent

function fmtValue(v) {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 10 ? 3 : 2);
  return String(v);
}

function agentPage(id) {
  const charts = new Map();
  const head = h("div");
  const latestBox = h("div");
  const chartsBox = h("div");
  const picker = h("select", { "aria-label": "Metric to chart" });
  const addBtn = h("button", { type: "button", onclick: () => addChart(picker.value) }, "Chart");
  mount(main, head, h("h2", {}, "Charts"), h("div", { class: "row" }, picker, addBtn), chartsBox,
    h("h2", {}, "Latest values"), latestBox);
  const stored = () => JSON.parse(sessionStorage.getItem("agentmonitor.charts." + id) || "[]");
  const store = () => sessionStorage.setItem("agentmonitor.charts." + id, JSON.stringify([...charts.keys()]));

  function addChart(metric) {
    if (!metric || charts.has(metric)) return;
    const c = new Chart(id, metric, () => { charts.delete(metric); c.el.remove(); store(); });
    charts.set(metric, c);
    chartsBox.append(c.el);
    store();
    c.refresh(true);
  }

  let known = "";
  async function refreshLatest() {
    try {
      const r = await api("GET", `/api/v1/agents/${encodeURIComponent(id)}/metrics/latest`);
      const metrics = (r.metrics || []).slice().sort((a, b) => a.metric.localeCompare(b.metric));
      const names = [...new Set(metrics.map((m) => m.metric))];
      if (names.join() !== known) {
        known = names.join();
        mount(picker, names.map((n) => h("option", { value: n }, n)));
        if (charts.size === 0) {
          const want = stored().filter((m) => names.includes(m));
          (want.length ? want : names.slice(0, 1)).forEach(addChart);
        }
      }
      mount(latestBox, metrics.length === 0
        ? h("p", { class: "muted" }, "Nothing received in the last minutes.")
        : table(["Metric", "Tags", "Value", "Time"], metrics.map((m) => [
          h("button", { type: "button", class: "link", onclick: () => addChart(m.metric) }, m.metric),
          labels(m.tags), h("span", { class: "num" }, fmtValue(m.value)), h("span", { title: when(m.time) }, ago(m.time))])));
    } catch (e) { mount(latestBox, banner(e)); }
  }
  async function refreshHead() {
    try {
      const a = await api("GET", `/api/v1/agents/${encodeURIComponent(id)}`);
      mount(head, h("div", { class: "row" }, h("h1", {}, a.name), h("span", { class: "badge " + a.status, id: "agent-status" }, a.status)),
        h("p", { class: "muted" }, "Last seen ", h("span", { title: when(a.last_seen) }, ago(a.last_seen)), " · ", labels(a.labels)),
        previousKey(a, refreshHead, (e) => head.append(banner(e))));
    } catch (e) { mount(head, banner(e)); }
  }
  refreshHead();
  refreshLatest();
  const poll = setInterval(() => {
    refreshHead();
    refreshLatest();
    for (const c of charts.values()) if (c.range === "5m") c.refresh(false);
  }, 3000);
  return () => { clearInterval(poll); for (const c of charts.values()) c.destroy(); };
}

// ---------------------------------------------------------------------------------------------
// Alerts: live over the WebSocket (a snapshot, then events), history with filters.

// agentNames maps agent ids to names for pages that show alerts (one page of up to 1000 agents).
async function agentNames() {
  try {
    const r = await api("GET", "/api/v1/agents?limit=1000");
    return new Map((r.agents || []).map((a) => [a.id, a.name]));
  } catch { return new Map(); }
}

function alertsPage() {
  const active = new Map();
  let names = new Map();
  const liveBox = h("div", { id: "active-alerts" });
  const state = h("span", { class: "muted", id: "ws-state" }, "connecting…");
  const histBox = h("div");
  const fAgent = h("input", { placeholder: "agent id", "aria-label": "Agent id" });
  const fRule = h("input", { placeholder: "rule id", "aria-label": "Rule id" });
  const fSev = h("select", { "aria-label": "Severity" }, h("option", { value: "" }, "any severity"),
    h("option", { value: "warning" }, "warning"), h("option", { value: "critical" }, "critical"));
  const fFrom = h("input", { type: "datetime-local", "aria-label": "From" });
  let histOffset = 0;
  mount(main, h("div", { class: "row" }, h("h1", {}, "Alerts"), h("span", { class: "spacer" }), state), liveBox,
    h("h2", {}, "History"),
    h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); histOffset = 0; loadHistory(); } },
      fAgent, fRule, fSev, fFrom, h("button", { type: "submit" }, "Filter")), histBox);

  function drawActive() {
    const list = [...active.values()].sort((a, b) => String(b.since).localeCompare(String(a.since)));
    if (!list.length) return mount(liveBox, h("p", { class: "muted empty-alerts" }, "No active alert."));
    mount(liveBox, table(["Alert", "Agent", "Status", "Value", "Since", ""], list.map((a) => h("tr", { dataset: { alert: a.id } },
      h("td", { "data-th": "Alert" }, h("strong", {}, a.rule_name), a.summary ? h("div", { class: "muted" }, a.summary) : null),
      h("td", { "data-th": "Agent" }, a.agent_id ? h("a", { href: `#/agents/${a.agent_id}` }, names.get(a.agent_id) || a.agent_id.slice(0, 8)) : pipelineSubject(a), a.metric ? h("div", { class: "muted" }, a.metric) : null),
      h("td", { "data-th": "Status" }, h("span", { class: "badge " + a.status }, a.status), " ",
        a.severity ? h("span", { class: "badge " + a.severity }, a.severity) : null),
      h("td", { "data-th": "Value", class: "num" }, fmtValue(a.value), a.threshold != null ? ` (threshold ${a.threshold})` : ""),
      h("td", { "data-th": "Since", title: when(a.since) }, ago(a.since)),
      h("td", { "data-th": "" }, a.ack
        ? h("span", { class: "muted acked" }, `acknowledged by ${a.ack.by} ${ago(a.ack.at)}`)
        : can("operator") ? h("button", { type: "button", class: "ack", onclick: () => ack(a) }, "Acknowledge") : null)))));
  }
  async function ack(a) {
    const comment = "";
    try {
      const r = await api("POST", `/api/v1/alerts/${encodeURIComponent(a.id)}/ack`, { comment });
      const cur = active.get(a.id);
      if (cur) { cur.ack = { by: r.by, at: r.at, comment: r.comment }; drawActive(); }
    } catch (e) { liveBox.prepend(banner(e)); }
  }

  let ws = null;
  let histTimer = 0;
  let closed = false;
  let retry = 1000;
  function connect() {
    const s = session();
    if (!s || closed) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/api/v1/ws/alerts?token=${encodeURIComponent(s.token)}`);
    ws.onopen = () => { state.textContent = "live"; retry = 1000; };
    ws.onmessage = (m) => {
      let msg;
      try { msg = JSON.parse(m.data); } catch { return; }
      if (msg.type === "snapshot") {
        active.clear();
        for (const a of msg.alerts || []) active.set(a.id, a);
      } else if (msg.type === "event" && msg.event) {
        const e = msg.event;
        if (e.to === "pending" || e.to === "firing") {
          const prev = active.get(e.alert_id) || {};
          active.set(e.alert_id, { ...prev, id: e.alert_id, rule_id: e.rule_id, rule_name: e.rule_name, kind: e.kind,
            agent_id: e.agent_id, series: e.series, metric: e.metric, status: e.to, severity: e.severity, value: e.value,
            threshold: e.threshold, since: e.at, labels: e.labels, summary: e.summary,
            ack: e.to === prev.status ? prev.ack : prev.ack });
        } else {
          active.delete(e.alert_id);
        }
        // The alerter records the transition in PostgreSQL as it publishes it: look a moment later.
        clearTimeout(histTimer);
        histTimer = setTimeout(loadHistory, 1500);
      }
      drawActive();
    };
    ws.onclose = () => {
      if (closed) return;
      state.textContent = "reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  async function loadHistory() {
    const q = new URLSearchParams({ limit: String(PAGE), offset: String(histOffset) });
    if (fAgent.value.trim()) q.set("agent", fAgent.value.trim());
    if (fRule.value.trim()) q.set("rule", fRule.value.trim());
    if (fSev.value) q.set("severity", fSev.value);
    if (fFrom.value) q.set("from", new Date(fFrom.value).toISOString());
    try {
      const r = await api("GET", "/api/v1/alerts/history?" + q);
      mount(histBox, r.events.length === 0 ? h("p", { class: "muted" }, "No alert history matches.") :
        table(["Time", "Rule", "Agent", "Change", "Severity", "Value"], r.events.map((e) => [
          when(e.at), e.rule_name, e.agent_id ? names.get(e.agent_id) || e.agent_id.slice(0, 8) : pipelineSubject(e), `${e.from} → ${e.to}`, e.severity, fmtValue(e.value)])),
      pager(r.total, PAGE, histOffset, (o) => { histOffset = o; loadHistory(); }));
    } catch (e) { mount(histBox, banner(e)); }
  }
  drawActive();
  connect();
  agentNames().then((m) => { names = m; drawActive(); loadHistory(); });
  // Acknowledgements by others are not pushed over the socket: re-read the active alerts now and
  // then (which also heals a missed event).
  async function resync() {
    try {
      const r = await api("GET", "/api/v1/alerts");
      active.clear();
      for (const a of r.alerts || []) active.set(a.id, a);
    } catch { /* the socket's view stays */ }
    drawActive();
    loadHistory();
  }
  const tick = setInterval(resync, 15000);
  return () => { closed = true; clearInterval(tick); clearTimeout(histTimer); if (ws) ws.close(); };
}

// ---------------------------------------------------------------------------------------------
// Rules

// pipelineSubject names what an alert without agent (a pipeline rule's) is about.
function pipelineSubject(a) { return "pipeline" + (a.series ? ": " + a.series : ""); }

// pipelineCondition describes a pipeline rule in the rules list.
function pipelineCondition(x) {
  const p = x.pipeline || {};
  const on = (p.groups || p.stores || []).join(", ");
  const what = { group_lag: `lag of ${on} > ${p.bound}`, dead_letters: "dead letters present",
    no_consumer: `no consumer of ${on} within ${p.idle}`, store_down: `${on} unreachable`, watchdog: "always firing (watchdog)" }[p.check] || p.check;
  return `${what}${x.for ? " for " + x.for : ""} (${x.severity})`;
}

function num(v) { return v === "" || v == null ? undefined : Number(v); }

function ruleForm(rule, done) {
  const r = rule || { kind: "threshold", operator: ">", aggregation: "last", enabled: true, thresholds: {} };
  const f = (name, input, label) => h("label", {}, h("span", {}, label), input);
  const input = (field, value, attrs) => h("input", { "data-field": field, name: field, value: value ?? "", ...attrs });
  const sel = (field, value, options) => h("select", { "data-field": field, name: field },
    options.map((o) => h("option", { value: o, selected: o === value }, o)));
  const name = input("name", r.name, { required: true });
  const kind = sel("kind", r.kind, ["threshold", "agent_silent", "pipeline"]);
  const pipeline = input("pipeline", r.pipeline ? JSON.stringify(r.pipeline) : "", { placeholder: '{"check":"group_lag","groups":["influx-writer"],"bound":100000}' });
  const metric = input("metric", r.metric, { placeholder: "cpu.usage_percent" });
  const agg = sel("aggregation", r.aggregation || "last", ["last", "avg", "min", "max", "count"]);
  const windowIn = input("window", r.window, { placeholder: "5m" });
  const op = sel("operator", r.operator || ">", [">", ">=", "<", "<=", "==", "!="]);
  const warn = input("thresholds.warning.value", r.thresholds?.warning?.value, { type: "number", step: "any" });
  const crit = input("thresholds.critical.value", r.thresholds?.critical?.value, { type: "number", step: "any" });
  const forIn = input("for", r.for, { placeholder: "0s" });
  const after = input("after", r.after, { placeholder: "5m" });
  const severity = sel("severity", r.severity || "critical", ["warning", "critical"]);
  const agentLabels = input("agents", Object.entries(r.agents?.labels || {}).map(([k, v]) => `${k}=${v}`).join(","), { placeholder: "env=prod (empty: every agent)" });
  const channels = input("channels", (r.channels || []).join(","), { placeholder: "channel ids, comma separated" });
  const summary = input("summary", r.summary);
  const enabled = h("input", { type: "checkbox", "data-field": "enabled", checked: r.enabled });
  const form = h("form", { class: "card rule-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { name: name.value, kind: kind.value, enabled: enabled.checked };
    const sel = Object.fromEntries(agentLabels.value.split(",").map((s) => s.trim()).filter(Boolean).map((s) => s.split("=")));
    if (Object.keys(sel).length) body.agents = { labels: sel };
    if (channels.value.trim()) body.channels = channels.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (summary.value) body.summary = summary.value;
    if (kind.value === "threshold") {
      Object.assign(body, { metric: metric.value, aggregation: agg.value, operator: op.value, thresholds: {} });
      if (windowIn.value) body.window = windowIn.value;
      if (forIn.value) body.for = forIn.value;
      if (warn.value !== "") body.thresholds.warning = { value: num(warn.value) };
      if (crit.value !== "") body.thresholds.critical = { value: num(crit.value) };
    } else if (kind.value === "pipeline") {
      body.severity = severity.value;
      if (forIn.value) body.for = forIn.value;
      delete body.agents;
      try { body.pipeline = pipeline.value.trim() ? JSON.parse(pipeline.value) : undefined; }
      catch { return showErrors(form, { details: ["pipeline"], message: "pipeline: not valid JSON" }); }
    } else {
      Object.assign(body, { after: after.value, severity: severity.value });
    }
    try {
      if (r.id) await api("PUT", `/api/v1/alert-rules/${encodeURIComponent(r.id)}`, body);
      else await api("POST", "/api/v1/alert-rules", body);
      done();
    } catch (e) { showErrors(form, e); }
  } },
  h("h2", {}, r.id ? "Edit rule" : "New rule"),
  h("div", { class: "grid2" }, f("name", name, "Name"), f("kind", kind, "Kind"), f("metric", metric, "Metric (measurement.field)"),
    f("aggregation", agg, "Aggregation"), f("window", windowIn, "Window"), f("operator", op, "Operator"),
    f("w", warn, "Warning threshold"), f("c", crit, "Critical threshold"), f("for", forIn, "For (hold time)"),
    f("after", after, "Silent after (agent_silent)"), f("severity", severity, "Severity (agent_silent, pipeline)"),
    f("pipeline", pipeline, "Pipeline check (JSON, pipeline)"),
    f("agents", agentLabels, "Agents by label"), f("channels", channels, "Notification channels"), f("summary", summary, "Summary template")),
  h("label", {}, enabled, " Enabled"),
  h("div", { class: "row" }, h("button", { class: "primary", type: "submit" }, r.id ? "Save" : "Create"),
    h("button", { type: "button", onclick: done }, "Cancel")));
  return form;
}

function rulesPage() {
  const box = h("div");
  const formBox = h("div");
  mount(main, h("div", { class: "row" }, h("h1", {}, "Alert rules"), h("span", { class: "spacer" }),
    can("operator") ? h("button", { type: "button", class: "primary", id: "new-rule", onclick: () => edit(null) }, "New rule") : null),
  formBox, box);
  function edit(rule) { mount(formBox, ruleForm(rule, () => { mount(formBox); load(); })); formBox.scrollIntoView(); }
  async function toggle(rule) {
    try { await api("PUT", `/api/v1/alert-rules/${encodeURIComponent(rule.id)}`, { ...rule, id: undefined, enabled: !rule.enabled }); load(); }
    catch (e) { box.prepend(banner(e)); }
  }
  async function del(rule) {
    if (!confirm(`Delete rule ${rule.name}?`)) return;
    try { await api("DELETE", `/api/v1/alert-rules/${encodeURIComponent(rule.id)}`); load(); } catch (e) { box.prepend(banner(e)); }
  }
  async function load() {
    try {
      const r = await api("GET", "/api/v1/alert-rules");
      const rules = r.rules || [];
      mount(box, rules.length === 0 ? h("p", { class: "muted" }, "No rule yet.") :
        table(["Name", "Condition", "Enabled", ""], rules.map((x) => [
          x.name,
          x.kind === "threshold"
            ? `${x.aggregation || "last"}(${x.metric}${x.window ? ", " + x.window : ""}) ${x.operator} ` +
              [x.thresholds?.warning ? `warning ${x.thresholds.warning.value}` : "", x.thresholds?.critical ? `critical ${x.thresholds.critical.value}` : ""].filter(Boolean).join(", ")
            : x.kind === "pipeline" ? pipelineCondition(x) : `silent for ${x.after} (${x.severity})`,
          h("span", { class: "badge " + (x.enabled ? "ok" : "never") }, x.enabled ? "enabled" : "disabled"),
          can("operator") ? h("div", { class: "row" },
            h("button", { type: "button", onclick: () => edit(x) }, "Edit"),
            h("button", { type: "button", onclick: () => toggle(x) }, x.enabled ? "Disable" : "Enable"),
            h("button", { type: "button", class: "danger", onclick: () => del(x) }, "Delete")) : ""])));
    } catch (e) { mount(box, banner(e)); }
  }
  load();
}

// ---------------------------------------------------------------------------------------------
// Silences

function silencesPage() {
  const box = h("div");
  const rule = h("input", { "data-field": "matchers.rule_id", placeholder: "rule id (optional)" });
  const agent = h("input", { "data-field": "matchers.agent_id", placeholder: "agent id (optional)" });
  const matchers = h("input", { "data-field": "matchers.labels", placeholder: "alert labels env=prod (optional)" });
  const hours = h("input", { type: "number", min: "0.1", step: "any", value: "2", "data-field": "ends_at" });
  const comment = h("input", { "data-field": "comment" });
  const form = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault();
    const m = {};
    if (rule.value.trim()) m.rule_id = rule.value.trim();
    if (agent.value.trim()) m.agent_id = agent.value.trim();
    for (const part of matchers.value.split(",").map((s) => s.trim()).filter(Boolean)) {
      const [k, ...v] = part.split("=");
      m.labels = { ...(m.labels || {}), [k.trim()]: v.join("=").trim() };
    }
    const now = new Date();
    try {
      await api("POST", "/api/v1/silences", { matchers: m, starts_at: now.toISOString(),
        ends_at: new Date(now.getTime() + Number(hours.value) * 3600e3).toISOString(), comment: comment.value });
      load();
    } catch (e) { showErrors(form, e); }
  } }, h("h2", {}, "New silence"), h("div", { class: "grid2" },
    h("label", {}, h("span", {}, "Rule"), rule), h("label", {}, h("span", {}, "Agent"), agent),
    h("label", {}, h("span", {}, "Labels"), matchers),
    h("label", {}, h("span", {}, "Hours from now"), hours),
    h("label", {}, h("span", {}, "Comment"), comment)), h("button", { class: "primary", type: "submit" }, "Create"));
  mount(main, h("h1", {}, "Silences"), can("operator") ? form : null, box);
  async function load() {
    try {
      const r = await api("GET", "/api/v1/silences");
      const list = r.silences || [];
      mount(box, list.length === 0 ? h("p", { class: "muted" }, "No silence.") :
        table(["Matchers", "When", "Comment", ""], list.map((s) => [
          h("code", {}, JSON.stringify(s.matchers)),
          s.weekly ? h("code", {}, JSON.stringify(s.weekly)) : `${when(s.starts_at)} – ${when(s.ends_at)}`,
          s.comment || "",
          can("operator") ? h("button", { type: "button", class: "danger", onclick: async () => {
            try { await api("DELETE", `/api/v1/silences/${encodeURIComponent(s.id)}`); load(); } catch (e) { box.prepend(banner(e)); }
          } }, "Delete") : ""])));
    } catch (e) { mount(box, banner(e)); }
  }
  load();
}

// ---------------------------------------------------------------------------------------------
// Notification channels

function channelsPage() {
  const box = h("div");
  const formBox = h("div");
  mount(main, h("div", { class: "row" }, h("h1", {}, "Notification channels"), h("span", { class: "spacer" }),
    h("button", { type: "button", class: "primary", onclick: () => edit(null) }, "New channel")), formBox, box);
  function edit(ch) {
    const c = ch || { type: "webhook", enabled: true, headers: {} };
    const name = h("input", { "data-field": "name", value: c.name || "", required: true });
    const type = h("select", { "data-field": "type" }, ["webhook", "slack", "email"].map((t) => h("option", { value: t, selected: t === c.type }, t)));
    const url = h("input", { "data-field": "url", value: c.url || "", type: "url", placeholder: "webhook and slack" });
    const to = h("input", { "data-field": "to", value: (c.to || []).join(","), placeholder: "email: addresses, comma separated" });
    const secret = h("input", { "data-field": "secret", type: "password", placeholder: c.has_secret ? "unchanged" : "" });
    const repeat = h("input", { "data-field": "repeat_interval", value: c.repeat_interval && c.repeat_interval !== "0s" ? c.repeat_interval : "", placeholder: "never (e.g. 4h)" });
    const groupBy = h("input", { "data-field": "group_by", value: (c.group_by || []).join(","), placeholder: "none (e.g. alertname,agent)" });
    const groupWait = h("input", { "data-field": "group_wait", value: c.group_wait && c.group_wait !== "0s" ? c.group_wait : "", placeholder: "e.g. 30s" });
    const enabled = h("input", { type: "checkbox", checked: c.enabled, "data-field": "enabled" });
    const form = h("form", { class: "card", onsubmit: async (ev) => {
      ev.preventDefault();
      const body = { name: name.value, type: type.value, url: url.value, enabled: enabled.checked, headers: type.value === "email" ? {} : c.headers || {},
        to: to.value.split(",").map((s) => s.trim()).filter(Boolean),
        repeat_interval: repeat.value.trim() || "0s",
        group_by: groupBy.value.split(",").map((s) => s.trim()).filter(Boolean), group_wait: groupWait.value.trim() || "0s" };
      if (secret.value) body.secret = secret.value;
      try {
        if (c.id) await api("PUT", `/api/v1/notification-channels/${encodeURIComponent(c.id)}`, body);
        else await api("POST", "/api/v1/notification-channels", body);
        mount(formBox); load();
      } catch (e) { showErrors(form, e); }
    } }, h("h2", {}, c.id ? "Edit channel" : "New channel"),
    h("div", { class: "grid2" }, h("label", {}, h("span", {}, "Name"), name), h("label", {}, h("span", {}, "Type"), type),
      h("label", {}, h("span", {}, "URL"), url), h("label", {}, h("span", {}, "E-mail recipients"), to),
      h("label", {}, h("span", {}, "Secret (HMAC signing)"), secret),
      h("label", {}, h("span", {}, "Repeat while firing, every"), repeat),
      h("label", {}, h("span", {}, "Group by labels"), groupBy), h("label", {}, h("span", {}, "Group wait"), groupWait)),
    h("label", {}, enabled, " Enabled"),
    h("div", { class: "row" }, h("button", { class: "primary", type: "submit" }, "Save"), h("button", { type: "button", onclick: () => mount(formBox) }, "Cancel")));
    mount(formBox, form);
  }
  async function test(ch, out) {
    out.textContent = "sending…";
    try { await api("POST", `/api/v1/notification-channels/${encodeURIComponent(ch.id)}/test`); out.textContent = "test sent"; }
    catch (e) { out.textContent = e.message; out.className = "error"; }
  }
  async function load() {
    try {
      const r = await api("GET", "/api/v1/notification-channels");
      const list = r.channels || [];
      mount(box, list.length === 0 ? h("p", { class: "muted" }, "No channel: alerts are only shown here.") :
        table(["Name", "Type", "Destination", "Repeat", "Enabled", "ID", ""], list.map((c) => {
          const out = h("span", { class: "muted" });
          return [c.name, c.type, c.type === "email" ? (c.to || []).join(", ") : c.url, c.repeat_interval && c.repeat_interval !== "0s" ? c.repeat_interval : "never", c.enabled ? "yes" : "no", h("code", {}, c.id), h("div", { class: "row" },
            h("button", { type: "button", onclick: () => edit(c) }, "Edit"),
            h("button", { type: "button", onclick: () => test(c, out) }, "Send test"),
            h("button", { type: "button", class: "danger", onclick: async () => {
              if (!confirm(`Delete channel ${c.name}?`)) return;
              try { await api("DELETE", `/api/v1/notification-channels/${encodeURIComponent(c.id)}`); load(); } catch (e) { box.prepend(banner(e)); }
            } }, "Delete"), out)];
        })));
    } catch (e) { mount(box, banner(e)); }
  }
  load();
}

// ---------------------------------------------------------------------------------------------
// Agents admin: register (key shown once), rotate, delete

function keyCard(title, name, key) {
  return h("div", { class: "card new-key" }, h("h2", {}, title),
    h("p", {}, "The key of ", h("strong", {}, name), " is shown only now. Store it in the agent's configuration."),
    h("div", { class: "row" }, h("code", { class: "key", id: "new-key" }, key), copyButton(key)),
    h("p", {}, "Telegraf (telegraf.conf):"), h("pre", {}, telegrafSnippet(key)),
    h("p", {}, "Or one point with curl:"), h("pre", {}, curlSnippet(key)));
}

function agentsAdminPage() {
  let offset = 0;
  const box = h("div");
  const keyBox = h("div");
  const name = h("input", { "data-field": "name", name: "name", required: true, id: "agent-name" });
  const lbls = h("input", { "data-field": "labels", name: "labels", placeholder: "env=prod,role=web", id: "agent-labels" });
  const form = h("form", { class: "card", id: "register-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const labelMap = {};
    for (const p of lbls.value.split(",").map((s) => s.trim()).filter(Boolean)) {
      const [k, ...v] = p.split("=");
      labelMap[k.trim()] = v.join("=").trim();
    }
    try {
      const a = await api("POST", "/api/v1/agents", { name: name.value, labels: labelMap });
      name.value = ""; lbls.value = "";
      showErrors(form, null);
      mount(keyBox, keyCard("Agent registered", a.name, a.api_key));
      load();
    } catch (e) { showErrors(form, e); }
  } }, h("h2", {}, "Register an agent"), h("div", { class: "grid2" },
    h("label", {}, h("span", {}, "Name"), name), h("label", {}, h("span", {}, "Labels"), lbls)),
  h("button", { class: "primary", type: "submit", id: "register" }, "Register"));
  mount(main, h("h1", {}, "Agents"), can("operator") ? form : null, keyBox, box);
  async function load() {
    try {
      const r = await api("GET", `/api/v1/agents?limit=${PAGE}&offset=${offset}`);
      mount(box, r.total === 0 ? h("p", { class: "muted" }, "No agent registered.") :
        table(["Name", "Labels", "Registered", "Status", ""], r.agents.map((a) => [
          h("a", { href: `#/agents/${a.id}` }, a.name), labels(a.labels), when(a.created_at),
          h("div", { dataset: { agent: a.id } }, a.status, previousKey(a, load, (e) => box.prepend(banner(e)))),
          can("operator") ? h("div", { class: "row", dataset: { agent: a.id } },
            h("button", { type: "button", class: "edit-agent", onclick: () => {
              mount(keyBox, editAgentForm(a, () => { mount(keyBox); load(); }, () => mount(keyBox)));
              keyBox.scrollIntoView();
            } }, "Edit"),
            h("button", { type: "button", class: "rotate-key", onclick: () => {
              mount(keyBox, rotateForm(a, (k) => {
                const card = keyCard("Key rotated", a.name, k.api_key);
                card.querySelector("p").after(h("p", { class: "muted", id: "old-key-note" }, k.previous_key_expires_at
                  ? `The old key keeps working until ${when(k.previous_key_expires_at)}.` : "The old key has stopped working."));
                mount(keyBox, card);
                load();
              }, () => mount(keyBox)));
              keyBox.scrollIntoView();
            } }, "Rotate key"),
            h("button", { type: "button", class: "danger", onclick: async () => {
              if (!confirm(`Delete agent ${a.name}?`)) return;
              try { await api("DELETE", `/api/v1/agents/${a.id}`); load(); } catch (e) { box.prepend(banner(e)); }
            } }, "Delete")) : ""])),
      pager(r.total, PAGE, offset, (o) => { offset = o; load(); }));
    } catch (e) { mount(box, banner(e)); }
  }
  load();
}

// ---------------------------------------------------------------------------------------------
// Users (admin)

function usersPage() {
  const box = h("div");
  const username = h("input", { "data-field": "username", required: true, autocomplete: "off" });
  const password = h("input", { "data-field": "password", type: "password", required: true, autocomplete: "new-password" });
  const role = h("select", { "data-field": "role" }, ["viewer", "operator", "admin"].map((r) => h("option", { value: r }, r)));
  const form = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/api/v1/users", { username: username.value, password: password.value, role: role.value });
      username.value = ""; password.value = ""; showErrors(form, null); load();
    } catch (e) { showErrors(form, e); }
  } }, h("h2", {}, "New user"), h("div", { class: "grid2" },
    h("label", {}, h("span", {}, "User name"), username), h("label", {}, h("span", {}, "Password"), password),
    h("label", {}, h("span", {}, "Role"), role)), h("button", { class: "primary", type: "submit" }, "Create"));
  mount(main, h("h1", {}, "Users"), form, box);
  async function load() {
    try {
      const r = await api("GET", "/api/v1/users");
      mount(box, table(["User", "Role", "Created", ""], (r.users || []).map((u) => [u.username, roleSelect(u, load), when(u.created_at),
        u.username === session()?.username ? "" : h("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm(`Delete user ${u.username}?`)) return;
          try { await api("DELETE", `/api/v1/users/${encodeURIComponent(u.username)}`); load(); } catch (e) { box.prepend(banner(e)); }
        } }, "Delete")])));
    } catch (e) { mount(box, banner(e)); }
  }
  load();
}

// ---------------------------------------------------------------------------------------------
// Pipeline (operators): lag, consumers, dead letters, store health

function pipelinePage() {
  const box = h("div");
  const dlBox = h("div");
  let dlOffset = 0;
  mount(main, h("h1", {}, "Pipeline"), box, h("h2", {}, "Dead letters"),
    h("p", { class: "muted" }, "A replayed entry goes back to the group that gave up on it only; fix the cause first (the reason says what the store refused)."), dlBox);
  async function load() {
    try {
      const p = await api("GET", "/api/v1/pipeline");
      const rows = [];
      for (const g of p.groups || []) {
        rows.push([g.stream, g.group, String(g.lag ?? ""), String(g.pending ?? ""),
          g.throughput_per_second != null ? g.throughput_per_second.toFixed(1) + "/s" : "",
          (g.consumers || []).map((c) => h("div", {}, `${c.name}: idle ${Math.round(c.idle_ms / 1000)}s, pending ${c.pending}`)),
          String(g.dead_letters ?? 0)]);
      }
      mount(box, h("div", { class: "grid2" }, Object.entries(p.stores || {}).map(([name, s]) =>
        h("div", { class: "card" }, h("strong", {}, name), " ", h("span", { class: "badge " + (s.ok ? "ok" : "firing") }, s.ok ? "ok" : "down"),
          s.error ? h("div", { class: "error" }, s.error) : null,
          Object.entries(s.info || {}).map(([k, v]) => h("div", { class: "muted" }, `${k}: ${v}`))))),
      table(["Stream", "Group", "Lag", "Pending", "Throughput", "Consumers", "Dead letters"], rows));
    } catch (e) { mount(box, banner(e)); }
  }
  async function replay(ids) {
    try { const r = await api("POST", "/api/v1/pipeline/dead-letters/replay", ids ? { ids } : { all: true }); dlBox.prepend(h("p", {}, `${r.replayed} replayed`)); loadDL(); }
    catch (e) { dlBox.prepend(banner(e)); }
  }
  async function loadDL() {
    try {
      const r = await api("GET", `/api/v1/pipeline/dead-letters?limit=${PAGE}&offset=${dlOffset}`);
      const list = r.dead_letters || [];
      mount(dlBox, list.length === 0 ? h("p", { class: "muted" }, "No dead letter.") : [
        h("button", { type: "button", onclick: () => replay(null) }, "Replay all"),
        table(["Time", "Group", "Stream", "Reason", ""], list.map((d) => [when(d.time), d.group, d.stream, d.reason,
          d.replayable ? h("button", { type: "button", onclick: () => replay([d.id]) }, "Replay") : h("span", { class: "muted" }, "not replayable")])),
        pager(r.total, PAGE, dlOffset, (o) => { dlOffset = o; loadDL(); })]);
    } catch (e) { mount(dlBox, banner(e)); }
  }
  load();
  loadDL();
  const poll = setInterval(load, 5000);
  return () => clearInterval(poll);
}

// ---------------------------------------------------------------------------------------------
// Routing

page(/^#\/fleet$/, "viewer", "Fleet", fleetPage, true);
page(/^#\/agents\/([0-9a-fA-F-]{36})$/, "viewer", "Agent", agentPage, false);
page(/^#\/alerts$/, "viewer", "Alerts", alertsPage, true);
page(/^#\/rules$/, "viewer", "Rules", rulesPage, true);
page(/^#\/silences$/, "viewer", "Silences", silencesPage, true);
page(/^#\/channels$/, "operator", "Channels", channelsPage, true);
page(/^#\/admin\/agents$/, "viewer", "Agents", agentsAdminPage, true);
page(/^#\/users$/, "admin", "Users", usersPage, true);
page(/^#\/pipeline$/, "operator", "Pipeline", pipelinePage, true);
page(/^#\/account$/, "viewer", "Account", () => passwordPage(main), false);

function drawNav(hash) {
  const nav = document.getElementById("nav");
  mount(nav, pages.filter((p) => p.nav && can(p.role)).map((p) => {
    const href = p.pattern.source.replace(/^\^/, "").replace(/\$$/, "").replace(/\\\//g, "/");
    return h("a", { href, class: hash === href ? "active" : null }, p.title);
  }));
  const s = session();
  document.getElementById("who").textContent = s ? `${s.username} (${s.role})` : "";
}

function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const hash = location.hash || "#/fleet";
  if (!session()) {
    if (hash !== "#/login") sessionStorage.setItem("agentmonitor.after", hash);
    if (hash !== "#/login") { location.hash = "#/login"; return; }
    loginPage();
    return;
  }
  if (hash === "#/login") { location.hash = "#/fleet"; return; }
  document.getElementById("top").hidden = false;
  drawNav(hash);
  for (const p of pages) {
    const m = hash.match(p.pattern);
    if (!m) continue;
    document.title = p.title + " · Agent Monitor";
    if (!can(p.role)) { mount(main, h("p", {}, "This page needs role " + p.role + ".")); return; }
    cleanup = p.render(...m.slice(1)) || null;
    return;
  }
  mount(main, h("p", {}, "No such page. ", h("a", { href: "#/fleet" }, "Go to the fleet.")));
}

whenUnauthorized(() => { location.hash = "#/login"; route(); });
document.getElementById("logout").addEventListener("click", async () => { await logout(); location.hash = "#/login"; });
document.getElementById("menu-toggle").addEventListener("click", (ev) => {
  const open = document.getElementById("nav").classList.toggle("open");
  ev.currentTarget.setAttribute("aria-expanded", String(open));
});
window.addEventListener("hashchange", () => { document.getElementById("nav").classList.remove("open"); route(); });
route();
