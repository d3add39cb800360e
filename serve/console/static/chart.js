// A trend chart drawn by hand in SVG: the values (with the min-max envelope of buckets), the expected band
// from the predictions, and the alert periods as shaded spans. Drag across it to zoom into a time span.

import { h, number, s } from "./dom.js";

const W = 800;
const H = 220;
const PAD = { left: 70, right: 14, top: 12, bottom: 30 };

function timeLabel(ms, span) {
  const d = new Date(ms);
  return span > 2 * 86400_000 ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" })
    : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

export function trendChart({ sensor, unit, points, start, end, band, alerts, onZoom }) {
  const values = points.flatMap((p) => [p.v, p.min ?? p.v, p.max ?? p.v]);
  if (band) values.push(band.low, band.high);
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const margin = (hi - lo) * 0.08;
  lo -= margin; hi += margin;
  const x = (t) => PAD.left + ((t - start) / (end - start)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
  const plotTop = PAD.top;
  const plotHeight = H - PAD.top - PAD.bottom;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
                         "aria-label": `${sensor} from ${new Date(start).toLocaleString()} to `
                           + `${new Date(end).toLocaleString()}: ${points.length} points, `
                           + `${alerts.length} alert period${alerts.length === 1 ? "" : "s"}` });
  for (const alert of alerts) {
    const from = Math.max(start, Date.parse(alert.opened_at));
    const to = Math.min(end, alert.resolved_at ? Date.parse(alert.resolved_at) : Date.now());
    if (to < start || from > end) continue;
    const rect = s("rect", { class: `alert-period sev-${alert.severity}`, x: x(from), y: plotTop,
                             width: Math.max(2, x(to) - x(from)), height: plotHeight },
                   s("title", {}, `${alert.severity}: ${alert.message} (${alert.state})`));
    rect.dataset.alertId = alert.id;
    svg.append(rect);
  }
  if (band) {
    const top = y(Math.min(hi, band.high));
    svg.append(s("rect", { class: "expected-band", x: PAD.left, y: top, width: W - PAD.left - PAD.right,
                           height: Math.max(1, y(Math.max(lo, band.low)) - top) },
                 s("title", {}, `expected ${number(band.low)} to ${number(band.high)} ${unit}`)));
  }
  if (points.some((p) => p.min !== undefined)) {
    const upper = points.map((p) => `${x(p.t)},${y(p.max)}`);
    const lower = points.map((p) => `${x(p.t)},${y(p.min)}`).reverse();
    svg.append(s("polygon", { class: "envelope", points: [...upper, ...lower].join(" ") }));
  }
  if (points.length) {
    svg.append(s("polyline", { class: "line", points: points.map((p) => `${x(p.t)},${y(p.v)}`).join(" ") }));
  }
  svg.append(
    s("line", { class: "axis", x1: PAD.left, x2: PAD.left, y1: plotTop, y2: plotTop + plotHeight }),
    s("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: plotTop + plotHeight, y2: plotTop + plotHeight }),
    s("text", { class: "tick", x: PAD.left - 4, y: y(hi - margin) + 4, "text-anchor": "end" }, number(hi - margin)),
    s("text", { class: "tick", x: PAD.left - 4, y: y(lo + margin) + 4, "text-anchor": "end" }, number(lo + margin)),
    s("text", { class: "tick", x: PAD.left, y: H - 8 }, timeLabel(start, end - start)),
    s("text", { class: "tick", x: W - PAD.right, y: H - 8, "text-anchor": "end" }, timeLabel(end, end - start)));
  if (!points.length) {
    svg.append(s("text", { class: "no-data", x: W / 2, y: H / 2, "text-anchor": "middle" }, "no readings"));
  }
  if (onZoom) enableZoom(svg, (px) => start + ((px - PAD.left) / (W - PAD.left - PAD.right)) * (end - start),
                         plotTop, plotHeight, onZoom);
  return h("figure", { class: "trend", dataset: { sensor } },
    h("figcaption", {}, h("strong", {}, sensor), unit ? ` (${unit})` : ""), svg);
}

function enableZoom(svg, timeAt, top, height, onZoom) {
  let from = null;
  const selection = s("rect", { class: "selection", y: top, height, width: 0, x: 0 });
  const toViewBox = (event) => {
    const box = svg.getBoundingClientRect();
    return ((event.clientX - box.left) / box.width) * W;
  };
  svg.addEventListener("pointerdown", (event) => {
    from = toViewBox(event);
    svg.setPointerCapture(event.pointerId);
    selection.setAttribute("x", from);
    selection.setAttribute("width", 0);
    svg.append(selection);
  });
  svg.addEventListener("pointermove", (event) => {
    if (from === null) return;
    const at = toViewBox(event);
    selection.setAttribute("x", Math.min(from, at));
    selection.setAttribute("width", Math.abs(at - from));
  });
  svg.addEventListener("pointerup", (event) => {
    if (from === null) return;
    const at = toViewBox(event);
    selection.remove();
    const [a, b] = [Math.min(from, at), Math.max(from, at)];
    from = null;
    if (b - a > 8) onZoom(timeAt(a), timeAt(b));
  });
}
