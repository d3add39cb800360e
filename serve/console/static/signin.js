// Sign in: tenant, email, password, and the TOTP code when the account has MFA (asked once the server says so).

import { ApiError, post } from "./api.js";
import { h } from "./dom.js";
import { signedIn } from "./app.js";

const TENANT_KEY = "wp.tenant";

export function renderSignIn(main) {
  const error = h("p", { class: "form-error", role: "alert", id: "signin-error", hidden: true });
  const totpRow = h("label", { hidden: true }, "Authenticator code",
                    h("input", { name: "totp", inputmode: "numeric", autocomplete: "one-time-code",
                                 pattern: "[0-9]{6}", maxlength: "6" }));
  const form = h("form", { class: "signin card", "aria-describedby": "signin-error", novalidate: true },
    h("h1", {}, "Sign in to WellPulse"),
    h("label", {}, "Tenant", h("input", { name: "tenant", required: true, autocomplete: "organization",
                                           value: localStorage.getItem(TENANT_KEY) || "" })),
    h("label", {}, "Email", h("input", { name: "email", type: "email", required: true, autocomplete: "username" })),
    h("label", {}, "Password", h("input", { name: "password", type: "password", required: true,
                                             autocomplete: "current-password" })),
    totpRow, error,
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const body = { tenant: data.tenant.trim(), email: data.email.trim(), password: data.password, client: "web" };
    if (data.totp) body.totp = data.totp.trim();
    const button = form.querySelector("button");
    button.disabled = true;
    error.hidden = true;
    try {
      const answer = await post("/v1/auth/login", body);
      localStorage.setItem(TENANT_KEY, body.tenant);
      if (answer.data.mfa_setup_required) {
        throw new ApiError(403, "MFA_SETUP_REQUIRED", "this account must set up multi-factor sign-in first "
                           + "(POST /v1/auth/mfa/setup, then /v1/auth/mfa/enable)");
      }
      await signedIn();
    } catch (exc) {
      if (exc instanceof ApiError && exc.code === "MFA_REQUIRED") {
        totpRow.hidden = false;
        totpRow.querySelector("input").focus();
      }
      error.textContent = exc instanceof ApiError ? exc.readable : String(exc);
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  const first = [...form.querySelectorAll("input")].find((i) => !i.value) || form.querySelector("input");
  first.focus();
  return null;
}
