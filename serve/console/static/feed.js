// The live alert feed: the WebSocket /v1/alerts/ws (the session cookie authenticates it), resumed with
// `since` (the last event's seq) after a drop, with a back-off, and its state for the header to show.

export class AlertFeed extends EventTarget {
  constructor(checkSession) {
    super();
    this.checkSession = checkSession; // resolves false when the session is gone (the app signs out)
    this.since = null;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    this.everOpened = false;
    this.status = "offline";
  }

  start(since = null) {
    this.stopped = false;
    this.everOpened = false;
    if (since !== null) this.since = since;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(1000); }
    this.setStatus("offline");
  }

  url() {
    const url = new URL("/v1/alerts/ws", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.since !== null) url.searchParams.set("since", String(this.since));
    return url.toString();
  }

  connect() {
    if (this.stopped) return;
    this.setStatus(this.attempt ? "reconnecting" : "connecting");
    const resumed = this.since !== null;
    const ws = new WebSocket(this.url());
    this.ws = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      this.attempt = 0;
      this.setStatus("live");
      // Back without a cursor (no event had come yet): what happened meanwhile is in the list only.
      if (this.everOpened && !resumed) this.dispatchEvent(new CustomEvent("resync"));
      this.everOpened = true;
    });
    ws.addEventListener("message", (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      if (typeof event.seq === "number") this.since = Math.max(this.since ?? 0, event.seq);
      this.dispatchEvent(new CustomEvent("alert-event", { detail: event }));
    });
    ws.addEventListener("close", (close) => {
      if (this.ws !== ws || this.stopped) return;
      this.ws = null;
      this.reconnect(!opened || close.code === 1008);
    });
  }

  async reconnect(maybeSignedOut) {
    this.attempt += 1;
    this.setStatus("reconnecting");
    // A refused handshake looks like a network error to a page: ask the API whether the session still lives.
    if (maybeSignedOut && !(await this.checkSession())) { this.stop(); return; }
    const delay = Math.min(10_000, 400 * 2 ** Math.min(this.attempt - 1, 5)) * (0.75 + Math.random() * 0.5);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: status }));
  }
}
