// The alarm board: open and recent alerts, live; sorted by severity and age; filtered from the URL hash
// (so a reload, a shared link or a sign-in after an expired session keeps the filters).

import { post } from "./api.js";
import { SEVERITY_RANK, age, clear, h, severityBadge, stateBadge, when } from "./dom.js";
import { store } from "./store.js";
import { showError } from "./app.js";
import { openActionDialog } from "./actions.js";

const FILTERS_KEY = "wp.alarm-filters";
const STATE_CHOICES = [["active", "Active (not resolved)"], ["open", "Unacknowledged"],
                       ["acknowledged", "Acknowledged"], ["shelved", "Shelved"], ["suppressed", "Suppressed"],
                       ["resolved", "Resolved (24 h)"], ["all", "All"]];
const SEVERITY_CHOICES = [["", "Any severity"], ["critical", "Critical"], ["warning", "Warning and worse"],
                          ["info", "Info and worse"]];

function filtersFrom(params) {
  if (![...params.keys()].length) {
    const saved = sessionStorage.getItem(FILTERS_KEY);
    if (saved) params = new URLSearchParams(saved);
  }
  return { severity: params.get("severity") || "", state: params.get("state") || "active",
           type: params.get("type") || "", well: params.get("well") || "" };
}

function matches(alert, f) {
  if (f.severity && SEVERITY_RANK[alert.severity] < SEVERITY_RANK[f.severity]) return false;
  if (f.state === "active" && alert.state === "resolved") return false;
  if (!["active", "all"].includes(f.state) && alert.state !== f.state) return false;
  const equipment = store.equipment.get(alert.equipment_id);
  if (f.type && (!equipment || equipment.type !== f.type)) return false;
  if (f.well && (!equipment || !equipment.well_ids.includes(f.well))) return false;
  return true;
}

// Unresolved first, then the most severe, then unacknowledged, then the newest.
function compare(a, b) {
  return (a.state === "resolved") - (b.state === "resolved")
    || SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity]
    || (b.state === "open") - (a.state === "open")
    || Date.parse(b.opened_at) - Date.parse(a.opened_at);
}

function select(name, label, choices, value) {
  return h("label", {}, label, h("select", { name },
    choices.map(([v, text]) => h("option", { value: v, selected: v === value }, text))));
}

function filterBar(f, onChange) {
  const types = [...new Set([...store.equipment.values()].map((e) => e.type))].sort();
  const wells = [...new Set([...store.equipment.values()].flatMap((e) => e.well_ids))].sort();
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter alerts" },
    select("severity", "Severity", SEVERITY_CHOICES, f.severity),
    select("state", "State", STATE_CHOICES, f.state),
    select("type", "Equipment type", [["", "Any type"], ...types.map((t) => [t, t.replace("_", " ")])], f.type),
    select("well", "Well", [["", "Any well"], ...wells.map((w) => [w, w])], f.well));
  form.addEventListener("change", () => onChange(Object.fromEntries(new FormData(form))));
  form.addEventListener("submit", (e) => e.preventDefault());
  return form;
}

function actionButtons(alert) {
  const buttons = [];
  if (store.can("alerts:acknowledge")) {
    if (alert.state === "open") {
      buttons.push(h("button", { type: "button", class: "primary", "data-action": "acknowledge",
                                 onclick: () => openActionDialog(alert, "acknowledge") }, "Acknowledge"));
    }
    if (["open", "acknowledged", "shelved"].includes(alert.state)) {
      buttons.push(h("button", { type: "button", "data-action": "resolve",
                                 onclick: () => openActionDialog(alert, "resolve") }, "Resolve"));
    }
  }
  if (store.can("alerts:silence")) {
    if (["open", "acknowledged"].includes(alert.state)) {
      buttons.push(h("button", { type: "button", "data-action": "shelve",
                                 onclick: () => openActionDialog(alert, "shelve") }, "Shelve"));
    } else if (alert.state === "shelved") {
      buttons.push(h("button", { type: "button", "data-action": "unshelve", onclick: async () => {
        try { store.update((await post(`/v1/alerts/${alert.id}/unshelve`)).data); } catch (e) { showError(e); }
      } }, "Unshelve"));
    }
  }
  return buttons;
}

function row(alert, now) {
  const equipment = store.equipment.get(alert.equipment_id);
  const unack = alert.state === "open";
  const who = alert.acknowledged_by
    ? h("span", {}, `${alert.acknowledged_by}`, alert.ack_comment ? h("span", { class: "comment" },
                                                                       ` “${alert.ack_comment}”`) : null)
    : alert.shelved_until ? `shelved until ${when(alert.shelved_until)}` : "—";
  return h("tr", { class: `alert-row sev-row-${alert.severity}${unack ? " unack" : ""}`,
                   dataset: { alertId: alert.id, state: alert.state } },
    h("td", {}, severityBadge(alert.severity), unack ? h("span", { class: "new-tag" }, "unacknowledged") : null),
    h("td", {}, stateBadge(alert.state)),
    h("td", {}, h("a", { href: `#/equipment/${encodeURIComponent(alert.equipment_id)}` }, alert.equipment_id),
      equipment ? h("span", { class: "muted" }, ` ${equipment.type.replace("_", " ")}`) : null),
    h("td", { class: "message" }, alert.message),
    h("td", { title: when(alert.opened_at) }, age(alert.opened_at, now),
      alert.resolved_at ? h("span", { class: "muted" }, ` (lasted ${age(alert.opened_at,
                                                                        Date.parse(alert.resolved_at))})`) : null),
    h("td", {}, who),
    h("td", { class: "actions" }, actionButtons(alert)));
}

export function renderAlarms(main, params) {
  let filters = filtersFrom(params);
  const body = h("tbody");
  const summary = h("p", { class: "summary", "aria-live": "polite" });
  const table = h("table", { class: "alerts" },
    h("caption", { class: "visually-hidden" }, "Alerts, most severe first"),
    h("thead", {}, h("tr", {}, ["Severity", "State", "Equipment", "Message", "Age", "Acknowledged", "Actions"]
      .map((t) => h("th", { scope: "col" }, t)))),
    body);

  function paint() {
    const now = Date.now();
    const rows = [...store.alerts.values()].filter((a) => matches(a, filters)).sort(compare);
    const focused = document.activeElement && document.activeElement.closest("tr[data-alert-id]");
    const focusKey = focused ? [focused.dataset.alertId, document.activeElement.dataset.action] : null;
    clear(body).append(...rows.map((a) => row(a, now)));
    if (!rows.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No alerts match.")));
    if (focusKey) {
      const again = body.querySelector(`tr[data-alert-id="${focusKey[0]}"] [data-action="${focusKey[1]}"]`);
      if (again) again.focus();
    }
    const unack = rows.filter((a) => a.state === "open").length;
    summary.textContent = `${rows.length} alert${rows.length === 1 ? "" : "s"}, ${unack} unacknowledged`;
  }

  function onChange(next) {
    filters = { ...filters, ...next };
    const q = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    sessionStorage.setItem(FILTERS_KEY, q.toString());
    window.history.replaceState(null, "", `#/alerts?${q.toString()}`); // no re-render: focus stays put
    paint();
  }

  main.append(h("section", { class: "board" }, h("h1", {}, "Alarms"), filterBar(filters, onChange), summary,
                h("div", { class: "table-wrap" }, table)));
  paint();
  const onStore = () => paint();
  store.addEventListener("change", onStore);
  const ticker = setInterval(paint, 15_000); // ages move on
  return () => { store.removeEventListener("change", onStore); clearInterval(ticker); };
}
