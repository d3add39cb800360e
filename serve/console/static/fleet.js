// The fleet: every equipment with its status, worst open alert and the age of its last reading; and the
// wells, each with its equipment.

import { ApiError, get, getAll } from "./api.js";
import { SEVERITY_RANK, age, append, clear, h, severityBadge, when } from "./dom.js";
import { store } from "./store.js";

const OFFLINE_AFTER_MS = 15 * 60e3;

async function lastReadings(ids) {
  const out = new Map();
  for (let i = 0; i < ids.length; i += 100) {
    const chunk = ids.slice(i, i + 100).map(encodeURIComponent).join(",");
    const body = await get(`/v1/telemetry/latest?equipment=${chunk}`);
    for (const e of body.data) {
      const newest = e.sensors.reduce((m, s) => (!m || s.ts > m ? s.ts : m), null);
      out.set(e.equipment_id, newest);
    }
  }
  return out;
}

// Running, stopped, maintenance or offline: what the operator needs at a glance.
function statusOf(equipment, last, now) {
  if (equipment.status === "maintenance") return "maintenance";
  if (equipment.status === "failed" || equipment.status === "decommissioned") return "stopped";
  if (!last || now - Date.parse(last) > OFFLINE_AFTER_MS) return "offline";
  return "running";
}

function equipmentRow(e, worst, last, now) {
  const status = statusOf(e, last, now);
  return h("tr", { dataset: { equipmentId: e.id, status } },
    h("td", {}, h("a", { href: `#/equipment/${encodeURIComponent(e.id)}` }, e.name),
      e.name !== e.id ? h("span", { class: "muted" }, ` ${e.id}`) : null),
    h("td", {}, e.type.replace("_", " ")),
    h("td", {}, h("span", { class: `status status-${status}` }, status)),
    h("td", {}, worst ? [severityBadge(worst.severity), ` ${worst.message}`] : h("span", { class: "muted" }, "none")),
    h("td", { title: when(last) }, last ? `${age(last, now)} ago` : "never"));
}

function equipmentTable(list, worst, last, now) {
  const sorted = [...list].sort((a, b) => {
    const wa = worst.get(a.id);
    const wb = worst.get(b.id);
    return (wb ? SEVERITY_RANK[wb.severity] + 1 : 0) - (wa ? SEVERITY_RANK[wa.severity] + 1 : 0)
      || a.id.localeCompare(b.id);
  });
  return h("div", { class: "table-wrap" }, h("table", { class: "fleet" },
    h("thead", {}, h("tr", {}, ["Equipment", "Type", "Status", "Worst open alert", "Last reading"]
      .map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, sorted.map((e) => equipmentRow(e, worst.get(e.id), last.get(e.id), now)))));
}

function view(main, title, build) {
  let alive = true;
  const root = h("section", {}, h("h1", {}, title), h("p", { class: "loading" }, "Loading…"));
  main.append(root);
  const paint = async () => {
    try {
      const content = await build();
      if (alive) append(clear(root), [h("h1", {}, title), content]);
    } catch (error) {
      if (alive) clear(root).append(h("h1", {}, title), h("p", { class: "form-error", role: "alert" },
        error instanceof ApiError ? error.readable : String(error)));
    }
  };
  paint();
  const timer = setInterval(paint, 30_000);
  return () => { alive = false; clearInterval(timer); };
}

export function renderFleet(main) {
  return view(main, "Fleet", async () => {
    const list = [...store.equipment.values()];
    const last = await lastReadings(list.map((e) => e.id));
    const now = Date.now();
    const counts = {};
    for (const e of list) { const st = statusOf(e, last.get(e.id), now); counts[st] = (counts[st] || 0) + 1; }
    const summary = Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(" · ") || "no equipment";
    return [h("p", { class: "summary" }, summary), equipmentTable(list, store.worstByEquipment(), last, now)];
  });
}

export function renderWells(main) {
  return view(main, "Wells", async () => {
    const wells = await getAll("/v1/wells", { sort: "id" });
    const list = [...store.equipment.values()];
    const last = await lastReadings(list.map((e) => e.id));
    const worst = store.worstByEquipment();
    const now = Date.now();
    if (!wells.length) return h("p", { class: "muted" }, "No wells yet.");
    return wells.map((w) => h("section", { class: "card well", dataset: { wellId: w.id } },
      h("h2", {}, w.name, h("span", { class: "muted" }, ` ${w.id} · ${w.api_number} · ${w.status.replaceAll("_", " ")}`)),
      equipmentTable(list.filter((e) => w.equipment_ids.includes(e.id)), worst, last, now)));
  });
}
