// Small DOM helpers. Text is always set with textContent: nothing from the API is parsed as HTML.

/** h creates an element: h("a", {href: "#/x", class: "c", onclick: fn}, "text", child...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** mount replaces the children of el. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
/** ago says how long ago t was ("12 seconds ago"); "never" for no time. */
export function ago(t, now = Date.now()) {
  if (!t) return "never";
  const s = Math.round((new Date(t).getTime() - now) / 1000);
  const a = Math.abs(s);
  if (a < 60) return rtf.format(s, "second");
  if (a < 3600) return rtf.format(Math.round(s / 60), "minute");
  if (a < 86400) return rtf.format(Math.round(s / 3600), "hour");
  return rtf.format(Math.round(s / 86400), "day");
}

const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
/** when formats a time in the browser's zone. */
export function when(t) { return t ? dtf.format(new Date(t)) : ""; }

/** labels renders a label map as chips. */
export function labels(m) {
  return Object.entries(m || {}).sort().map(([k, v]) => h("span", { class: "label" }, k + "=" + v));
}

/** table builds a table that stacks on narrow screens; rows are arrays of cells. */
export function table(headers, rows, attrs) {
  return h("table", { class: "responsive", ...attrs },
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((r) => {
      if (r instanceof Node) return r;
      return h("tr", {}, r.map((c, i) => h("td", { "data-th": headers[i] }, c)));
    })));
}

/** pager shows "1–50 of 120" with previous/next buttons calling go(offset). */
export function pager(total, limit, offset, go) {
  if (total <= limit && offset === 0) return null;
  return h("div", { class: "row pager" },
    h("button", { type: "button", disabled: offset === 0, onclick: () => go(Math.max(0, offset - limit)) }, "Previous"),
    h("span", { class: "muted" }, `${total ? offset + 1 : 0}–${Math.min(offset + limit, total)} of ${total}`),
    h("button", { type: "button", disabled: offset + limit >= total, onclick: () => go(offset + limit) }, "Next"));
}

/** showErrors puts an ApiError next to the form field its details name, else at the form's top. */
export function showErrors(form, err) {
  form.querySelectorAll(".field-error, .form-error").forEach((e) => e.remove());
  const fields = (err && err.details) || [];
  let placed = false;
  for (const f of fields) {
    const input = form.querySelector(`[data-field="${CSS.escape(f)}"]`) ||
      form.querySelector(`[data-field="${CSS.escape(f.split(".")[0])}"]`);
    if (input) {
      input.after(h("div", { class: "field-error", role: "alert" }, err.message));
      placed = true;
      break;
    }
  }
  if (!placed && err) form.prepend(h("div", { class: "banner error form-error", role: "alert" }, err.message));
}

/** copyButton copies text to the clipboard. */
export function copyButton(text, label = "Copy") {
  const b = h("button", { type: "button", onclick: async () => {
    try { await navigator.clipboard.writeText(text); b.textContent = "Copied"; }
    catch { b.textContent = "Select and copy by hand"; }
    setTimeout(() => { b.textContent = label; }, 2000);
  } }, label);
  return b;
}
