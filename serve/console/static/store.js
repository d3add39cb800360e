// What the console knows of the tenant: who is signed in, its equipment, and its open and recent alerts
// (loaded once, then kept current by the feed's events). Views read it and re-render on "change".

import { get, getAll } from "./api.js";
import { SEVERITY_RANK } from "./dom.js";

const ACTIVE = ["open", "acknowledged", "shelved", "suppressed"];
const RECENT_HOURS = 24;
const MESSAGE_KINDS = new Set(["opened", "updated", "escalated"]);

class Store extends EventTarget {
  constructor() {
    super();
    this.reset();
  }

  reset() {
    this.me = null;
    this.equipment = new Map();
    this.alerts = new Map();
    this.pendingEvents = [];
    this.loaded = false;
    this.refetch = new Map();
  }

  can(permission) {
    return Boolean(this.me && this.me.permissions.includes(permission));
  }

  async loadEquipment() {
    const rows = await getAll("/v1/equipment", { sort: "id" });
    this.equipment = new Map(rows.map((e) => [e.id, e]));
  }

  async loadAlerts() {
    const since = new Date(Date.now() - RECENT_HOURS * 3600_000).toISOString();
    const [active, recent] = await Promise.all([
      getAll("/v1/alerts", { state: `in:${ACTIVE.join(",")}`, sort: "-opened_at" }, 10),
      getAll("/v1/alerts", { state: "resolved", updated_at: `gte:${since}`, sort: "-updated_at" }, 2),
    ]);
    this.alerts = new Map([...recent, ...active].map((a) => [a.id, a]));
    this.loaded = true;
    for (const event of this.pendingEvents.splice(0)) this.apply(event, false);
    this.changed(null);
  }

  // One event of the feed (see schema/alerts.py AlertEvent); the full row is fetched again shortly after.
  apply(event, live = true) {
    if (typeof event.alert_id !== "number") return;
    if (!this.loaded) { this.pendingEvents.push(event); return; }
    const known = this.alerts.get(event.alert_id);
    const alert = known || {
      id: event.alert_id, equipment_id: event.equipment_id, rule_id: event.rule_id, details: event.details || {},
      opened_at: event.occurred_at, sensors: [], occurrences: 1,
    };
    Object.assign(alert, { state: event.state, severity: event.severity, updated_at: event.occurred_at });
    if (!known || MESSAGE_KINDS.has(event.kind)) alert.message = event.message; // others say what happened
    if (event.kind === "acknowledged") Object.assign(alert, { acknowledged_at: event.occurred_at,
                                                              acknowledged_by: event.actor });
    if (event.state === "resolved" && !alert.resolved_at) alert.resolved_at = event.occurred_at;
    this.alerts.set(alert.id, alert);
    this.scheduleRefetch(alert.id);
    this.changed({ alert, event, isNew: !known, live });
  }

  scheduleRefetch(id) {
    clearTimeout(this.refetch.get(id));
    this.refetch.set(id, setTimeout(async () => {
      this.refetch.delete(id);
      try {
        const body = await get(`/v1/alerts/${id}`);
        const { events, ...row } = body.data;
        this.alerts.set(id, row);
        this.changed(null);
      } catch { /* the event's fields stay; the next load corrects them */ }
    }, 400));
  }

  update(row) {
    this.alerts.set(row.id, row);
    this.changed(null);
  }

  changed(detail) {
    this.dispatchEvent(new CustomEvent("change", { detail }));
  }

  openCriticalUnacknowledged() {
    let n = 0;
    for (const a of this.alerts.values()) if (a.state === "open" && a.severity === "critical") n += 1;
    return n;
  }

  // The worst open alert of each equipment.
  worstByEquipment() {
    const worst = new Map();
    for (const a of this.alerts.values()) {
      if (a.state === "resolved") continue;
      const w = worst.get(a.equipment_id);
      if (!w || SEVERITY_RANK[a.severity] > SEVERITY_RANK[w.severity]
          || (a.severity === w.severity && a.opened_at < w.opened_at)) worst.set(a.equipment_id, a);
    }
    return worst;
  }
}

export const store = new Store();
