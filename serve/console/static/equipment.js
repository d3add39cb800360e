// One equipment: current values with units, a trend per sensor (raw for short spans, buckets for long ones)
// with its alert periods and expected band, the models' predictions, maintenance and alert history.

import { ApiError, get, getAll, post, query } from "./api.js";
import { age, clear, h, number, severityBadge, stateBadge, when } from "./dom.js";
import { trendChart } from "./chart.js";
import { store } from "./store.js";
import { navigate, showError } from "./app.js";
import { STANDARD_SENSORS } from "./units.js";

const RANGES = [["15m", 900e3], ["1h", 3600e3], ["6h", 6 * 3600e3], ["24h", 86400e3], ["7d", 7 * 86400e3], ["30d", 30 * 86400e3]];

function bucketFor(span) {
  if (span <= 2 * 3600e3) return null; // raw
  if (span <= 12 * 3600e3) return "1m";
  if (span <= 3 * 86400e3) return "5m";
  if (span <= 45 * 86400e3) return "1h";
  return "1d";
}

function windowOf(params) {
  const from = Number(params.get("from"));
  const to = Number(params.get("to"));
  if (from && to && to > from) return { start: from, end: to, label: "zoomed" };
  const label = params.get("range") || "1h";
  const span = (RANGES.find(([r]) => r === label) || RANGES[1])[1];
  const end = Date.now();
  return { start: end - span, end, label };
}

async function series(id, sensor, start, end) {
  const bucket = bucketFor(end - start);
  const body = await get(`/v1/equipment/${encodeURIComponent(id)}/readings` + query({
    sensor, from: new Date(start).toISOString(), to: new Date(end).toISOString(), bucket, limit: 10000 }));
  return body.data.map((r) => (bucket ? { t: Date.parse(r.bucket), v: r.avg, min: r.min, max: r.max }
                                      : { t: Date.parse(r.ts), v: r.value }));
}

// Unit of each sensor: the equipment's own configuration, else its type's standard sensor.
function unitsOf(equipment) {
  const units = new Map(Object.entries(STANDARD_SENSORS[equipment.type] || {}).map(([name, s]) => [name, s.unit]));
  for (const sensor of equipment.sensors) units.set(sensor.name, sensor.unit);
  return units;
}

function section(title, ...content) {
  return h("section", { class: "card" }, h("h2", {}, title), ...content);
}

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c)))))));
}

async function optional(promise) {
  try { return await promise; } catch (error) {
    if (error instanceof ApiError && error.status === 401) throw error;
    return { error };
  }
}

function valuesSection(equipment, latest, predictions) {
  const units = unitsOf(equipment);
  const bySensor = new Map(((predictions && predictions.anomaly && predictions.anomaly.sensors) || [])
    .map((p) => [p.sensor, p]));
  const rows = latest.map((v) => {
    const p = bySensor.get(v.sensor);
    return [v.sensor, h("span", { class: "value" }, number(v.value)), units.get(v.sensor) || "",
            h("span", { title: when(v.ts) }, `${age(v.ts)} ago`),
            p ? `${number(p.expected_mean - 2 * p.expected_std)} – ${number(p.expected_mean + 2 * p.expected_std)}` : "—",
            p ? `${Math.round(p.anomaly_score * 100)} %` : "—"];
  });
  return section("Current values", table(["Sensor", "Value", "Unit", "Age", "Expected (±2σ)", "Anomaly"], rows,
                                         "No readings yet."));
}

function predictionSection(predictions) {
  if (!predictions || predictions.error) {
    return section("Predictions", h("p", { class: "muted" },
      predictions && predictions.error ? predictions.error.readable : "No predictions."));
  }
  if (predictions.warming_up && !predictions.anomaly) {
    return section("Predictions", h("p", { class: "muted" }, "The models are still warming up."));
  }
  const items = [];
  if (predictions.anomaly) items.push(["Anomaly score", `${Math.round(predictions.anomaly.score * 100)} %`]);
  if (predictions.failure) {
    items.push([`Failure within ${number(predictions.failure.horizon_days)} days`,
                `${Math.round(predictions.failure.probability * 100)} %`]);
  }
  items.push(["Model updated", when(predictions.updated_at)]);
  return section("Predictions", h("dl", { class: "facts" }, items.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
}

function maintenanceSection(equipment, jobs) {
  if (jobs.error) return section("Maintenance", h("p", { class: "muted" }, jobs.error.readable));
  const last = jobs.find((j) => j.ended_at && j.kind === "preventive");
  const due = equipment.maintenance_interval_days && last
    ? new Date(Date.parse(last.ended_at) + equipment.maintenance_interval_days * 86400e3) : null;
  const dueText = equipment.maintenance_interval_days
    ? (due ? `Next preventive maintenance due ${due.toLocaleDateString()}${due < new Date() ? " (overdue)" : ""}`
           : `Every ${equipment.maintenance_interval_days} days; none recorded yet`) : null;
  return section("Maintenance", dueText ? h("p", {}, dueText) : null,
    table(["Kind", "Description", "Started", "Ended", "By"],
          jobs.map((j) => [j.kind.replace("_", " "), j.description, when(j.started_at),
                           j.ended_at ? when(j.ended_at) : "in progress", j.performed_by || j.created_by]),
          "No maintenance recorded."));
}

function alertHistory(alerts) {
  return section("Alert history", table(["Severity", "State", "Message", "Opened", "Duration", "Acknowledged by"],
    alerts.map((a) => [severityBadge(a.severity), stateBadge(a.state), a.message, when(a.opened_at),
                       a.resolved_at ? age(a.opened_at, Date.parse(a.resolved_at)) : `${age(a.opened_at)} (open)`,
                       a.acknowledged_by ? `${a.acknowledged_by}${a.ack_comment ? ` — “${a.ack_comment}”` : ""}` : "—"]),
    "No alerts."));
}

function silenceForm(id) {
  const form = h("form", { class: "inline-form" },
    h("label", {}, "Silence for (hours)", h("input", { name: "hours", type: "number", min: 1, max: 720, value: 4 })),
    h("label", {}, "Reason", h("input", { name: "reason", required: true, maxlength: 1000 })),
    h("button", { type: "submit" }, "Silence equipment"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    try {
      await post("/v1/silences", { equipment_id: id, reason: data.reason,
                                   ends_at: new Date(Date.now() + Number(data.hours) * 3600e3).toISOString() });
      form.replaceWith(h("p", { role: "status" }, `Silenced for ${data.hours} h.`));
    } catch (error) { showError(error); }
  });
  return form;
}

function rangeBar(id, win) {
  return h("nav", { class: "ranges", "aria-label": "Time range" },
    RANGES.map(([label]) => h("a", { href: `#/equipment/${encodeURIComponent(id)}?range=${label}`,
                                     "aria-current": win.label === label ? "true" : null }, label)),
    win.label === "zoomed" ? h("span", { class: "muted" }, " zoomed (drag across a chart to zoom)")
      : h("span", { class: "muted" }, " drag across a chart to zoom"));
}

async function charts(id, equipment, latest, predictions, alerts, win) {
  const names = [...new Set([...equipment.sensors.map((s) => s.name), ...latest.map((v) => v.sensor)])];
  const units = unitsOf(equipment);
  const bySensor = new Map(((predictions && predictions.anomaly && predictions.anomaly.sensors) || [])
    .map((p) => [p.sensor, p]));
  const data = await Promise.all(names.map((n) => series(id, n, win.start, win.end)));
  const zoom = (a, b) => navigate(`#/equipment/${encodeURIComponent(id)}?from=${Math.round(a)}&to=${Math.round(b)}`);
  return names.map((sensor, i) => {
    const p = bySensor.get(sensor);
    return trendChart({ sensor, unit: units.get(sensor) || "", points: data[i], start: win.start, end: win.end,
      band: p && !p.warming_up ? { low: p.expected_mean - 2 * p.expected_std,
                                   high: p.expected_mean + 2 * p.expected_std } : null,
      alerts: alerts.filter((a) => !a.sensors || !a.sensors.length || a.sensors.includes(sensor)), onZoom: zoom });
  });
}

export function renderEquipment(main, id, params) {
  let alive = true;
  const win = windowOf(params);
  const root = h("section", { class: "equipment" }, h("h1", {}, id), h("p", { class: "loading" }, "Loading…"));
  main.append(root);
  (async () => {
    const base = `/v1/equipment/${encodeURIComponent(id)}`;
    const [equipment, latest, predictions, jobs, alerts] = await Promise.all([
      get(base), get(`${base}/latest`), optional(get(`${base}/predictions`)),
      optional(getAll(`${base}/maintenance`, {}, 1)),
      getAll("/v1/alerts", { equipment_id: id, sort: "-opened_at" }, 2)]);
    const e = equipment.data;
    const pred = predictions.error ? predictions : predictions.data;
    const trend = await charts(id, e, latest.data, pred, alerts, win);
    if (!alive) return;
    clear(root).append(
      h("h1", {}, e.name, e.name !== e.id ? h("span", { class: "muted" }, ` ${e.id}`) : null),
      h("p", { class: "facts-line" }, `${e.type.replace("_", " ")} · status `, h("strong", {}, e.status),
        e.well_ids.length ? ` · wells ${e.well_ids.join(", ")}` : "", e.manufacturer ? ` · ${e.manufacturer}` : ""),
      store.can("alerts:silence") ? silenceForm(id) : null,
      h("div", { class: "grid" }, valuesSection(e, latest.data, pred), predictionSection(pred)),
      section("Trends", rangeBar(id, win), h("div", { class: "charts" }, trend)),
      h("div", { class: "grid" }, alertHistory(alerts), maintenanceSection(e, jobs)));
  })().catch((error) => {
    if (!alive) return;
    clear(root).append(h("h1", {}, id), h("p", { class: "form-error", role: "alert" },
      error instanceof ApiError ? error.readable : String(error)));
  });
  return () => { alive = false; };
}
