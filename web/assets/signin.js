// The sign-in page (/signin#code=...): redeems a one-time invite for a cookie session, then
// opens the operator or seller console. The code stays in the fragment, so it never reaches a
// server log; it is removed from the address bar once used.

import { loadI18n, t, errorText, h, $, fill, api, me, topBar } from "./common.js";

await loadI18n();
const main = $("#main");
topBar("signin.title", null);
const code = new URLSearchParams(location.hash.slice(1)).get("code");
const consoleOf = (role) => (role === "operator" ? "/operator" : role === "seller" ? "/seller" : "/");

if (!code) {
  let user = null;
  try { user = await me(); } catch { user = null; }
  fill(main, h("h1", { text: t("signin.title") }),
    user ? h("p", null, t("signin.already", { name: user.name || user.subject }), " ", h("a", { href: consoleOf(user.role), text: t("signin.open_console") }))
      : h("p", { class: "muted", text: t("signin.no_code") }));
} else {
  fill(main, h("h1", { text: t("signin.title") }), h("p", { class: "muted", role: "status", text: t("signin.checking") }));
  try {
    const who = await api.redeem(code);
    history.replaceState(null, "", location.pathname);
    fill(main, h("h1", { text: t("signin.title") }), h("p", { class: "notice ok", role: "status", text: t("signin.welcome", { name: who.name || who.subject }) }));
    location.replace(consoleOf(who.role));
  } catch (e) {
    history.replaceState(null, "", location.pathname);
    fill(main, h("h1", { text: t("signin.title") }), h("p", { class: "notice err", role: "alert", text: errorText(e) }), h("p", { class: "muted", text: t("signin.ask_again") }));
  }
}
