// Acknowledge, resolve (with a comment and the operator's verdict) and shelve (minutes and a reason):
// one modal dialog; the server's refusal is shown in it as the error envelope's message.

import { ApiError, post } from "./api.js";
import { h, severityBadge } from "./dom.js";
import { store } from "./store.js";

const TITLES = { acknowledge: "Acknowledge alert", resolve: "Resolve alert", shelve: "Shelve alert" };
const VERDICTS = [["", "No verdict"], ["real", "Real"], ["false_alarm", "False alarm"],
                  ["planned", "Planned (operating change)"]];

function fields(action) {
  if (action === "shelve") {
    return [
      h("label", {}, "For (minutes)", h("input", { name: "minutes", type: "number", min: 1, max: 10080,
                                                    value: 120, required: true })),
      h("label", {}, "Reason", h("textarea", { name: "reason", rows: 3, maxlength: 1000, required: true })),
    ];
  }
  return [
    h("label", {}, "Comment", h("textarea", { name: "comment", rows: 3, maxlength: 2000 })),
    h("label", {}, "Verdict", h("select", { name: "verdict" },
      VERDICTS.map(([v, t]) => h("option", { value: v }, t)))),
  ];
}

function bodyOf(action, data) {
  if (action === "shelve") return { minutes: Number(data.minutes), reason: data.reason };
  const body = {};
  if (data.comment.trim()) body.comment = data.comment.trim();
  if (data.verdict) body.verdict = data.verdict;
  return body;
}

export function openActionDialog(alert, action) {
  const opener = document.activeElement;
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const form = h("form", { method: "dialog" },
    h("h2", {}, TITLES[action]),
    h("p", {}, severityBadge(alert.severity), ` ${alert.equipment_id}: ${alert.message}`),
    fields(action), error,
    h("div", { class: "buttons" },
      h("button", { type: "button", value: "cancel", class: "cancel" }, "Cancel"),
      h("button", { type: "submit", class: "primary" }, TITLES[action].split(" ")[0])));
  const dialog = h("dialog", { class: "action-dialog", "aria-label": TITLES[action] }, form);
  const close = () => { dialog.close(); dialog.remove(); if (opener && opener.isConnected) opener.focus(); };
  form.querySelector(".cancel").addEventListener("click", close);
  dialog.addEventListener("cancel", (e) => { e.preventDefault(); close(); });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const answer = await post(`/v1/alerts/${alert.id}/${action}`, bodyOf(action, Object.fromEntries(new FormData(form))));
      store.update(answer.data);
      close();
    } catch (exc) {
      error.textContent = exc instanceof ApiError ? exc.readable : String(exc);
      error.hidden = false;
      submit.disabled = false;
    }
  });
  document.body.append(dialog);
  dialog.showModal();
  form.querySelector("textarea, input, select").focus();
}
