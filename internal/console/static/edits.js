// Edits of existing things: an agent's name and labels, its key rotation with a grace period and
// the early end of the old key, a user's role, and one's own password.
import { api, ApiError, can, session } from "./api.js";
import { h, mount, showErrors, when } from "./dom.js";

/** parseLabels reads "env=prod, role=web" into a label map. */
export function parseLabels(text) {
  const m = {};
  for (const p of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [k, ...v] = p.split("=");
    m[k.trim()] = v.join("=").trim();
  }
  return m;
}

/** formatLabels writes a label map as "k=v,k=v" (the form's syntax). */
export function formatLabels(m) {
  return Object.entries(m || {}).sort().map(([k, v]) => `${k}=${v}`).join(",");
}

// fieldErrors shows an API error next to the field it is about: the gateway names the field as the
// message's first word ("name is required", "labels: key …", "new_password must …") when it
// gives no details.
export function fieldErrors(form, err) {
  if (err && !(err.details || []).length && err.message) {
    const m = err.message.match(/^([a-z_]+)\b/);
    if (m && form.querySelector(`[data-field="${m[1]}"]`)) err = new ApiError(err.status, err.message, [m[1]]);
  }
  showErrors(form, err);
}

/** editAgentForm is the card editing an agent's name and labels (PATCH); done(agent) after saving. */
export function editAgentForm(a, done, cancel) {
  const name = h("input", { "data-field": "name", name: "name", required: true, id: "edit-agent-name", value: a.name });
  const lbls = h("input", { "data-field": "labels", name: "labels", placeholder: "env=prod,role=web", id: "edit-agent-labels", value: formatLabels(a.labels) });
  const form = h("form", { class: "card edit-agent-form", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const updated = await api("PATCH", `/api/v1/agents/${encodeURIComponent(a.id)}`, { name: name.value, labels: parseLabels(lbls.value) });
      done(updated);
    } catch (e) { fieldErrors(form, e); }
  } }, h("h2", {}, "Edit agent ", h("strong", {}, a.name)),
  h("p", { class: "muted" }, "Labels replace the whole set; rules that select agents by label follow within a minute."),
  h("div", { class: "grid2" }, h("label", {}, h("span", {}, "Name"), name), h("label", {}, h("span", {}, "Labels"), lbls)),
  h("div", { class: "row" }, h("button", { class: "primary", type: "submit", id: "save-agent" }, "Save"),
    h("button", { type: "button", onclick: cancel }, "Cancel")));
  return form;
}

/** rotateForm is the card rotating an agent's key with a grace period; done(answer) after it. */
export function rotateForm(a, done, cancel) {
  const custom = h("input", { "data-field": "grace", name: "grace", placeholder: "e.g. 90m, 6h, 72h", id: "rotate-custom", hidden: true, "aria-label": "Custom grace period" });
  const grace = h("select", { id: "rotate-grace", "aria-label": "Old key keeps working", onchange: () => { custom.hidden = grace.value !== "custom"; } },
    h("option", { value: "" }, "stops at once"), h("option", { value: "1h" }, "for 1 hour"),
    h("option", { value: "24h" }, "for 24 hours"), h("option", { value: "custom" }, "for a custom duration"));
  const form = h("form", { class: "card rotate-key-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const g = grace.value === "custom" ? custom.value.trim() : grace.value;
    try {
      done(await api("POST", `/api/v1/agents/${encodeURIComponent(a.id)}/rotate-key`, g ? { grace: g } : undefined));
    } catch (e) { fieldErrors(form, e); }
  } }, h("h2", {}, "Rotate the key of ", h("strong", {}, a.name)),
  h("p", { class: "muted" }, "The new key is shown once. Keep the old one working a while to re-key the agent without losing data (at most 30 days)."),
  h("label", {}, h("span", {}, "The old key"), grace), custom,
  h("div", { class: "row" }, h("button", { class: "primary", type: "submit", id: "rotate" }, "Rotate key"),
    h("button", { type: "button", onclick: cancel }, "Cancel")));
  return form;
}

/** previousKey is the "old key valid until" line, with the early revocation for operators. */
export function previousKey(a, revoked, onError) {
  if (!a.previous_key_expires_at || new Date(a.previous_key_expires_at) <= new Date()) return null;
  return h("div", { class: "previous-key muted" }, "old key valid until ", h("time", { datetime: a.previous_key_expires_at }, when(a.previous_key_expires_at)), " ",
    can("operator") ? h("button", { type: "button", class: "link revoke-previous", onclick: async () => {
      if (!confirm(`Stop the old key of ${a.name} now?`)) return;
      try { await api("DELETE", `/api/v1/agents/${encodeURIComponent(a.id)}/previous-key`); revoked(); } catch (e) { onError(e); }
    } }, "Revoke old key now") : null);
}

/** roleSelect changes a user's role (admin); the last admin keeps theirs (the API's 409 shows). */
export function roleSelect(u, changed) {
  const out = h("span");
  const sel = h("select", { class: "role-select", "aria-label": `Role of ${u.username}`, dataset: { user: u.username, role: u.role }, onchange: async () => {
    out.replaceChildren();
    try {
      await api("PATCH", `/api/v1/users/${encodeURIComponent(u.username)}`, { role: sel.value });
      changed();
    } catch (e) {
      sel.value = u.role;
      out.append(h("div", { class: "field-error", role: "alert" }, e.message));
    }
  } }, ["viewer", "operator", "admin"].map((r) => h("option", { value: r, selected: r === u.role }, r)));
  return h("div", {}, sel, out);
}

/** passwordPage lets the signed-in user change their own password. */
export function passwordPage(main) {
  const old = h("input", { "data-field": "current_password", type: "password", required: true, autocomplete: "current-password", id: "pw-old" });
  const pw = h("input", { "data-field": "new_password", type: "password", required: true, autocomplete: "new-password", id: "pw-new" });
  const again = h("input", { "data-field": "confirm", type: "password", required: true, autocomplete: "new-password", id: "pw-confirm" });
  const notice = h("div");
  const form = h("form", { class: "card password-form", onsubmit: async (ev) => {
    ev.preventDefault();
    mount(notice);
    if (pw.value !== again.value) return showErrors(form, new ApiError(400, "the two new passwords differ", ["confirm"]));
    try {
      await api("POST", "/api/v1/auth/password", { current_password: old.value, new_password: pw.value });
      old.value = ""; pw.value = ""; again.value = "";
      showErrors(form, null);
      mount(notice, h("div", { class: "banner ok", role: "status", id: "password-changed" },
        "Password changed. Your other sessions have ended; this one stays signed in."));
    } catch (e) { fieldErrors(form, e); }
  } }, h("h2", {}, "Change password"),
  h("label", {}, h("span", {}, "Current password"), old),
  h("label", {}, h("span", {}, "New password"), pw),
  h("label", {}, h("span", {}, "New password again"), again),
  h("button", { class: "primary", type: "submit", id: "change-password" }, "Change password"));
  mount(main, h("h1", {}, "Your account"), h("p", { class: "muted" }, `Signed in as ${session()?.username}.`), notice, form);
}
