// The console's entry point: the session, the header, the live feed and the hash router.
//   #/signin   #/alerts?severity=..&state=..&type=..&well=..   #/equipment/<id>?range=..   #/fleet   #/wells

import { ApiError, get, onSignedOut, post } from "./api.js";
import { AlertFeed } from "./feed.js";
import { clear, h } from "./dom.js";
import { store } from "./store.js";
import { renderAlarms } from "./alarms.js";
import { renderEquipment } from "./equipment.js";
import { renderFleet, renderWells } from "./fleet.js";
import { renderSignIn } from "./signin.js";
import { Alerter } from "./alerter.js";

const RETURN_KEY = "wp.return";
const main = document.getElementById("main");
const header = document.querySelector("header.top");
const banner = document.querySelector(".banner");
const status = document.querySelector(".feed-status");
const STATUS_TEXT = { live: "● Live", connecting: "○ Connecting…", reconnecting: "⟳ Reconnecting…",
                      offline: "○ Offline" };

async function checkSession() {
  try {
    await get("/v1/auth/me");
    return true;
  } catch (error) {
    return !(error instanceof ApiError && error.status === 401);
  }
}

const feed = new AlertFeed(checkSession);
feed.addEventListener("alert-event", (e) => store.apply(e.detail));
feed.addEventListener("resync", () => store.loadAlerts().catch(showError));
feed.addEventListener("status", (e) => {
  status.textContent = STATUS_TEXT[e.detail] || e.detail;
  status.dataset.state = e.detail;
  document.body.dataset.feed = e.detail;
});
const alerter = new Alerter(document.getElementById("sound-toggle"));
store.addEventListener("change", (e) => alerter.changed(e.detail, store.openCriticalUnacknowledged()));

export function showError(error) {
  const text = error instanceof ApiError ? error.readable : String(error && error.message ? error.message : error);
  banner.hidden = false;
  clear(banner).append(h("span", {}, text), " ",
                       h("button", { type: "button", class: "link", onclick: () => { banner.hidden = true; } },
                         "Dismiss"));
}

export function clearError() { banner.hidden = true; }

export function route() {
  const hash = window.location.hash || "#/alerts";
  const [path, search] = hash.slice(1).split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(search) };
}

export function navigate(hash, { replace = false } = {}) {
  if (replace) window.history.replaceState(null, "", hash);
  else window.history.pushState(null, "", hash);
  render();
}

let session = "unknown"; // unknown | signed-in | signed-out

// Back to the sign-in view; the view the operator was on (its filters are in the hash) comes back after it.
function signedOut({ keepPlace = true } = {}) {
  if (session === "signed-out") return;
  session = "signed-out";
  feed.stop();
  store.reset();
  alerter.reset();
  const here = window.location.hash;
  if (keepPlace && here && !here.startsWith("#/signin")) sessionStorage.setItem(RETURN_KEY, here);
  header.hidden = true;
  window.history.replaceState(null, "", "#/signin");
  render();
}
onSignedOut(() => signedOut());

async function startSession() {
  const me = await get("/v1/auth/me");
  store.me = me.data;
  session = "signed-in";
  header.hidden = false;
  header.querySelector(".who").textContent = `${me.data.email} · ${me.data.role} · ${me.data.tenant_id}`;
  feed.start();
  await Promise.all([store.loadEquipment(), store.loadAlerts()]);
}

export async function signedIn() {
  clearError();
  await startSession();
  const back = sessionStorage.getItem(RETURN_KEY);
  sessionStorage.removeItem(RETURN_KEY);
  navigate(back && !back.startsWith("#/signin") ? back : "#/alerts", { replace: true });
}

async function signOut() {
  try { await post("/v1/auth/logout"); } catch { /* the session may be gone already */ }
  sessionStorage.removeItem(RETURN_KEY);
  signedOut({ keepPlace: false });
}
document.getElementById("sign-out").addEventListener("click", signOut);

let current = null; // the rendered view's clean-up
function render() {
  if (current) { current(); current = null; }
  const { parts, params } = route();
  const view = parts[0] || "alerts";
  for (const link of header.querySelectorAll("nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clear(main);
  if (session !== "signed-in" || view === "signin") {
    if (session === "signed-in") { navigate("#/alerts", { replace: true }); return; }
    current = renderSignIn(main);
    return;
  }
  const views = {
    alerts: () => renderAlarms(main, params),
    equipment: () => renderEquipment(main, parts[1], params),
    fleet: () => renderFleet(main),
    wells: () => renderWells(main),
  };
  current = (views[view] || views.alerts)();
}
window.addEventListener("hashchange", () => { clearError(); render(); });

async function boot() {
  try {
    await startSession();
  } catch (error) {
    if (session !== "signed-out") {
      if (!(error instanceof ApiError && error.status === 401)) showError(error);
      signedOut();
    }
    return;
  }
  if (route().parts[0] === "signin") {
    const back = sessionStorage.getItem(RETURN_KEY);
    sessionStorage.removeItem(RETURN_KEY);
    window.history.replaceState(null, "", back || "#/alerts");
  }
  render();
}

boot();
