// A new critical alert: a short tone (switchable, remembered in this browser) and the count of open
// unacknowledged critical alerts in the tab title, so a console in a background tab still says so.

const SOUND_KEY = "wp.sound";
const TITLE = "WellPulse";

export class Alerter {
  constructor(toggle) {
    this.toggle = toggle;
    this.audio = null;
    toggle.checked = localStorage.getItem(SOUND_KEY) !== "off";
    toggle.addEventListener("change", () => {
      localStorage.setItem(SOUND_KEY, toggle.checked ? "on" : "off");
      if (toggle.checked) this.unlock();
    });
    // Browsers let audio start only from a user gesture: the first click or key on the page.
    for (const type of ["pointerdown", "keydown"]) {
      document.addEventListener(type, () => this.unlock(), { once: true, capture: true });
    }
  }

  unlock() {
    const audio = this.toggle.checked ? this.context() : null;
    if (audio && audio.state === "suspended") audio.resume().catch(() => {});
  }

  reset() {
    document.title = TITLE;
  }

  context() {
    if (!this.audio) {
      const Context = window.AudioContext || window.webkitAudioContext;
      this.audio = Context ? new Context() : null;
    }
    return this.audio;
  }

  changed(change, criticalCount) {
    document.title = criticalCount ? `(${criticalCount}) ${TITLE}` : TITLE;
    if (!change || !change.isNew || change.alert.severity !== "critical" || change.alert.state !== "open") return;
    document.body.dataset.lastCritical = String(change.alert.id);
    if (this.toggle.checked) this.beep();
  }

  beep() {
    const audio = this.context();
    if (!audio || audio.state === "closed") return;
    const now = audio.currentTime;
    for (const [offset, freq] of [[0, 880], [0.18, 660], [0.36, 880]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, now + offset);
      gain.gain.exponentialRampToValueAtTime(0.2, now + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.15);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + offset);
      osc.stop(now + offset + 0.16);
    }
  }
}
