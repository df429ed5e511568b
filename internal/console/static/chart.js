// Charts of one metric, drawn with uPlot. Drag across a chart to zoom, double-click to zoom out.
import uPlot from "./vendor/uPlot.esm.js";
import { api, ApiError } from "./api.js";
import { h, mount } from "./dom.js";

/** The series colours, in order. The first is what the browser tests look for on the canvas. */
export const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

/** RANGES are the range buttons: 5 min from the hot cache, the others from the history API. */
export const RANGES = [
  { key: "5m", label: "5 min" },
  { key: "1h", label: "1 h" },
  { key: "24h", label: "24 h" },
  { key: "7d", label: "7 d" },
  { key: "30d", label: "30 d" },
];

function tagKey(tags) {
  const e = Object.entries(tags || {}).filter(([k]) => k !== "agent").sort();
  return e.length ? e.map(([k, v]) => `${k}=${v}`).join(",") : "value";
}

/** axis styles an axis from the page's colours, so that light and dark schemes both read well. */
function axis() {
  const css = getComputedStyle(document.documentElement);
  const line = css.getPropertyValue("--line").trim() || "#d9dde5";
  return { stroke: css.getPropertyValue("--muted").trim() || "#5b6475", grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 } };
}

/** align turns [{name, points:[[tMillis, v]]}] into uPlot's columns: shared x, one y per series. */
export function align(series) {
  const xs = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const data = [xs.map((x) => x / 1000)];
  for (const s of series) {
    const ys = new Array(xs.length).fill(null);
    for (const [t, v] of s.points) ys[index.get(t)] = v;
    data.push(ys);
  }
  return data;
}

function numeric(v) {
  if (typeof v === "number") return v;
  if (typeof v === "boolean") return v ? 1 : 0;
  return null;
}

/** load fetches one metric over a range: [{name, points}] or throws an ApiError. */
async function load(agentID, metric, range) {
  const id = encodeURIComponent(agentID);
  const m = encodeURIComponent(metric);
  if (range === "5m") {
    const r = await api("GET", `/api/v1/agents/${id}/metrics/recent?metric=${m}`);
    const groups = new Map();
    for (const s of r.samples || []) {
      const k = tagKey(s.tags);
      if (!groups.has(k)) groups.set(k, []);
      const v = numeric(s.value);
      if (v !== null) groups.get(k).push([new Date(s.time).getTime(), v]);
    }
    return [...groups].map(([name, points]) => ({ name, points }));
  }
  const r = await api("GET", `/api/v1/agents/${id}/metrics/history?metric=${m}&start=-${range}&fn=mean`);
  return (r.series || []).map((s) => ({
    name: tagKey(s.tags),
    points: (s.points || []).filter((p) => p.value !== null).map((p) => [new Date(p.time).getTime(), numeric(p.value)]),
  }));
}

/**
 * Chart is one metric's card: range buttons and a uPlot. refresh() reloads the current range
 * (the agent page calls it every few seconds for the 5 min range).
 */
export class Chart {
  constructor(agentID, metric, onRemove) {
    this.agentID = agentID;
    this.metric = metric;
    this.range = "5m";
    this.plot = null;
    this.msg = h("p", { class: "muted" });
    this.area = h("div", { class: "plot" });
    this.buttons = RANGES.map((r) => h("button", {
      type: "button", "aria-pressed": String(r.key === this.range), dataset: { range: r.key },
      onclick: () => this.setRange(r.key),
    }, r.label));
    this.el = h("section", { class: "chart card", dataset: { metric } },
      h("div", { class: "head" }, h("strong", {}, metric), h("span", { class: "spacer" }), this.buttons,
        h("button", { type: "button", class: "link", onclick: () => { this.destroy(); onRemove(this); } }, "Remove")),
      this.msg, this.area);
    this.resize = () => { if (this.plot) this.plot.setSize(this.size()); };
    window.addEventListener("resize", this.resize);
  }

  size() { return { width: Math.max(240, this.area.clientWidth || this.el.clientWidth - 32), height: 220 }; }

  setRange(key) {
    this.range = key;
    for (const b of this.buttons) b.setAttribute("aria-pressed", String(b.dataset.range === key));
    this.refresh(true);
  }

  async refresh(reset) {
    let series;
    try {
      series = await load(this.agentID, this.metric, this.range);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && this.range !== "5m") {
        this.msg.textContent = "History is not available from this gateway (no history API yet): only the last 5 minutes can be shown.";
      } else {
        this.msg.textContent = "Could not load " + this.metric + ": " + e.message;
      }
      this.drop();
      return;
    }
    const points = series.reduce((n, s) => n + s.points.length, 0);
    this.el.dataset.points = String(points);
    if (!points) {
      this.msg.textContent = "No numeric samples of " + this.metric + " in this range.";
      this.drop();
      return;
    }
    this.msg.textContent = "";
    const data = align(series);
    const names = series.map((s) => s.name).join("|");
    if (this.plot && !reset && names === this.names) {
      const zoomed = this.plot.scales.x.min !== this.plot.data[0][0] || this.plot.scales.x.max !== this.plot.data[0].at(-1);
      this.plot.setData(data, !zoomed);
      return;
    }
    this.drop();
    this.names = names;
    const opts = {
      ...this.size(),
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true } },
      axes: [axis(), axis()],
      series: [{}, ...series.map((s, i) => ({ label: s.name, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
      hooks: {
        // data-zoomed tells (people's tools and the browser tests) that a drag narrowed the x range.
        setScale: [(u, key) => {
          if (key !== "x" || !u.data[0].length) return;
          const zoomed = u.scales.x.min > u.data[0][0] + 1e-6 || u.scales.x.max < u.data[0].at(-1) - 1e-6;
          this.el.dataset.zoomed = String(zoomed);
        }],
      },
    };
    mount(this.area);
    this.plot = new uPlot(opts, data, this.area);
  }

  drop() {
    if (this.plot) { this.plot.destroy(); this.plot = null; }
    mount(this.area);
  }

  destroy() {
    window.removeEventListener("resize", this.resize);
    this.drop();
  }
}
