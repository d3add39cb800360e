// Small DOM helpers: elements are built with h(), never from HTML strings (no injection, CSP-friendly).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export const SEVERITIES = ["critical", "warning", "info"];
export const SEVERITY_RANK = { info: 0, warning: 1, critical: 2 };
const SEVERITY_ICON = { critical: "▲", warning: "◆", info: "●" };

// Severity by text and shape as well as colour.
export function severityBadge(severity) {
  return h("span", { class: `sev sev-${severity}` },
    h("span", { class: "sev-icon", "aria-hidden": "true" }, SEVERITY_ICON[severity] || "●"), ` ${severity}`);
}

export function stateBadge(state) {
  return h("span", { class: `state state-${state}` }, state.replace("_", " "));
}

export function age(iso, now = Date.now()) {
  if (!iso) return "—";
  let secs = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (secs < 60) return `${secs}s`;
  const mins = Math.floor(secs / 60);
  if (mins < 60) return `${mins}m`;
  const hours = Math.floor(mins / 60);
  if (hours < 48) return `${hours}h ${mins % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function number(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  const abs = Math.abs(value);
  return value.toLocaleString(undefined, { maximumFractionDigits: abs >= 100 ? 0 : abs >= 10 ? 1 : digits });
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}
