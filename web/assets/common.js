// What every console page shares: the language files and their switch, plain-words messages
// for every server refusal, money and time formats, small DOM helpers, and the signed-in user.

import { Api, ApiError, CommandError } from "/web/client/nightmarket.js";

export { Api, ApiError, CommandError };

/** Languages with a file under /web/assets/i18n/; the first is the default. */
export const LANGS = ["vi", "en"];
const LANG_KEY = "nightmarket.lang";

/** @type {Record<string, any>} */
let dict = {};
/** @type {Record<string, any>} */
let fallback = {};
export let lang = "vi";

/** Loads the chosen language (and Vietnamese as the fallback for any missing key). */
export async function loadI18n() {
  let want = "vi";
  try { want = localStorage.getItem(LANG_KEY) || "vi"; } catch { /* storage off */ }
  if (!LANGS.includes(want)) want = "vi";
  lang = want;
  const get = async (l) => (await fetch(`/web/assets/i18n/${l}.json`, { cache: "no-cache" })).json();
  fallback = await get("vi");
  dict = lang === "vi" ? fallback : await get(lang);
  document.documentElement.lang = lang;
}

/** @param {any} d @param {string} key */
function lookup(d, key) {
  return key.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), d);
}

/**
 * The text for `key` with `{name}` placeholders filled in.
 * @param {string} key @param {Record<string, any>} [vars]
 */
export function t(key, vars) {
  let s = lookup(dict, key);
  if (typeof s !== "string") s = lookup(fallback, key);
  if (typeof s !== "string") return key;
  return vars ? s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] == null ? "" : String(vars[k]))) : s;
}

/** Whether a key exists. @param {string} key */
export function has(key) { return typeof lookup(dict, key) === "string" || typeof lookup(fallback, key) === "string"; }

/**
 * Plain words for a refusal: an ApiError, a CommandError, a refused claim/cancel/waitlist
 * result, or a bare code. Never shows a raw code; `bad_request` names the field it is about.
 * @param {any} err
 */
export function errorText(err) {
  if (err == null) return t("errors._unknown");
  const code = typeof err === "string" ? err : err.code || err.reason || "";
  const message = typeof err === "object" && typeof err.message === "string" ? err.message : "";
  let text = has(`errors.${code}`) ? t(`errors.${code}`) : t("errors._unknown");
  if (code === "bad_request" && message) {
    // The server's message starts with the field it is about ("name: 1–200 characters").
    const m = /^([a-z_]+)(?:\[(\d+)\])?(?:\.([a-z_]+))?:/.exec(message);
    const field = m && (m[3] || m[1]);
    if (field && has(`fields.${field}`)) text += ` — ${t(`fields.${field}`)}`;
  }
  if (code === "not_admitted" && Array.isArray(err.details)) {
    const reasons = [...new Set(err.details.map((d) => d.reason))];
    text += ": " + reasons.map((r) => (has(`admission.${r}`) ? t(`admission.${r}`) : t("errors._unknown"))).join("; ");
  }
  return text;
}

// --- formats ---

/** @param {number|null|undefined} v đồng */
export function dong(v) {
  if (v == null || Number.isNaN(v)) return "—";
  return `${Math.round(v).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ".")}\u00a0₫`;
}

/** @param {number} n */
export function num(n) { return n == null ? "—" : Number(n).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB"); }

const TZ = "Asia/Ho_Chi_Minh";

/** Local time (market zone) of an instant, "20:30". @param {number} ms */
export function hhmm(ms) {
  return new Intl.DateTimeFormat(lang === "vi" ? "vi-VN" : "en-GB", { timeZone: TZ, hour: "2-digit", minute: "2-digit", hour12: false }).format(ms);
}

/** "Thứ Sáu, 27/11/2026" for a YYYY-MM-DD local date. @param {string} date */
export function dayName(date) {
  const [y, m, d] = date.split("-").map(Number);
  return new Intl.DateTimeFormat(lang === "vi" ? "vi-VN" : "en-GB", { timeZone: "UTC", weekday: "long", day: "2-digit", month: "2-digit", year: "numeric" })
    .format(Date.UTC(y, m - 1, d));
}

/** Date and time of an instant in the market's zone. @param {number} ms */
export function when(ms) {
  return new Intl.DateTimeFormat(lang === "vi" ? "vi-VN" : "en-GB", { timeZone: TZ, dateStyle: "short", timeStyle: "short" }).format(ms);
}

/** Today's local date in the market's zone, YYYY-MM-DD. @param {number} [ms] */
export function localDate(ms = Date.now()) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit" }).format(ms);
}

/** ★★★★☆ @param {number} n */
export function stars(n) {
  const k = Math.max(0, Math.min(5, n | 0));
  return "★".repeat(k) + "☆".repeat(5 - k);
}

/** Seconds as m:ss. @param {number} s */
export function clock(s) {
  const v = Math.max(0, Math.ceil(s));
  return `${Math.floor(v / 60)}:${String(v % 60).padStart(2, "0")}`;
}

// --- DOM ---

/**
 * Builds an element. Attributes starting with "on" are listeners; `text` sets textContent;
 * children may be strings, nodes, arrays or null.
 * @param {string} tag @param {Record<string, any>|null} [attrs] @param {...any} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "class") el.className = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  const add = (c) => {
    if (c == null || c === false) return;
    if (Array.isArray(c)) c.forEach(add);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  };
  children.forEach(add);
  return el;
}

/** @param {string} sel @param {ParentNode} [root] @returns {any} */
export function $(sel, root = document) { return root.querySelector(sel); }

/** Replaces the children of `el`. @param {Element} el @param {...any} children */
export function fill(el, ...children) {
  el.replaceChildren();
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
}

/**
 * A form field with its label: `field("name", t("fields.name"), {type:"text", required:true})`.
 * @param {string} name @param {string} label @param {Record<string, any>} [attrs]
 */
export function field(name, label, attrs = {}) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 7)}`;
  const input = attrs.tag === "select"
    ? h("select", { id, name, ...omit(attrs, ["tag", "options"]) }, (attrs.options || []).map(([v, l]) => h("option", { value: v, text: l })))
    : attrs.tag === "textarea"
      ? h("textarea", { id, name, ...omit(attrs, ["tag"]) })
      : h("input", { id, name, type: "text", ...attrs });
  return h("div", { class: "field" }, h("label", { for: id, text: label }), input, attrs.hint ? h("small", { class: "hint", text: attrs.hint }) : null);
}

function omit(o, keys) { const r = { ...o }; for (const k of keys) delete r[k]; return r; }

/**
 * Shows a status line inside `el`: kind "ok", "err", "wait" or "info". Refusals are given as
 * errors and shown in plain words.
 * @param {Element} el @param {string} kind @param {string} text
 */
export function say(el, kind, text) {
  el.hidden = false;
  el.className = `notice ${kind}`;
  el.setAttribute("role", kind === "err" ? "alert" : "status");
  el.textContent = text;
}

/**
 * Runs an async action for a form: disables its submit button, shows the refusal in plain
 * words in `out`, and returns the result (undefined on failure).
 * @template T @param {HTMLFormElement} form @param {Element} out @param {() => Promise<T>} fn
 * @returns {Promise<T|undefined>}
 */
export async function submitting(form, out, fn) {
  const btn = form.querySelector("button[type=submit]");
  if (btn) btn.disabled = true;
  try {
    return await fn();
  } catch (e) {
    say(out, "err", errorText(e));
    return undefined;
  } finally {
    if (btn) btn.disabled = false;
  }
}

/** The form's values as strings, trimmed. @param {HTMLFormElement} form */
export function values(form) {
  /** @type {Record<string, string>} */
  const v = {};
  for (const [k, val] of new FormData(form).entries()) v[k] = String(val).trim();
  return v;
}

/** A whole number from a form value, or null. @param {string} s */
export function int(s) {
  if (s == null || s === "" || !/^-?\d+$/.test(s.replace(/[.\s]/g, ""))) return null;
  return Number(s.replace(/[.\s]/g, ""));
}

// --- page frame ---

export const api = new Api();

/** The signed-in user, or null (no session). Other errors propagate. */
export async function me() {
  try {
    return await api.me();
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 404)) return null;
    throw e;
  }
}

/**
 * Puts the shared top bar (title, user, language switch, sign-out) into `#top`.
 * @param {string} titleKey @param {{name?: string, role?: string, via?: string}|null} user
 */
export function topBar(titleKey, user) {
  const bar = $("#top");
  if (!bar) return;
  const switcher = h("select", { id: "lang", "aria-label": t("common.language"), onchange: (ev) => {
    try { localStorage.setItem(LANG_KEY, ev.target.value); } catch { /* storage off */ }
    location.reload();
  } }, LANGS.map((l) => h("option", { value: l, text: t(`common.lang_${l}`), selected: l === lang })));
  const out = user && user.via === "cookie"
    ? h("button", { type: "button", class: "link", onclick: async () => {
      try { await api.signout(); } catch { /* signed out either way */ }
      location.href = "/";
    }, text: t("common.signout") })
    : null;
  fill(bar,
    h("a", { href: "/", class: "brand", text: t("common.brand") }),
    h("span", { class: "grow", text: t(titleKey) }),
    user ? h("span", { class: "who", text: user.name || user.subject || "" }) : null,
    out,
    h("label", { class: "sr", for: "lang", text: t("common.language") }),
    switcher,
  );
  document.title = `${t(titleKey)} · ${t("common.brand")}`;
}

/** Fills static `data-i18n` texts of the page. */
export function translateStatic() {
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.getAttribute("data-i18n"));
}

/** A link that downloads a CSV with the session (cookie or bearer) and saves it. */
export function csvButton(label, filename, load) {
  const out = h("span", { class: "notice", hidden: true });
  const btn = h("button", { type: "button", class: "secondary", onclick: async () => {
    btn.disabled = true;
    try {
      const text = await load();
      const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
      const a = h("a", { href: url, download: filename });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      say(out, "err", errorText(e));
    } finally {
      btn.disabled = false;
    }
  }, text: label });
  return h("span", null, btn, out);
}

/** Product group name. @param {string} g */
export function group(g) { return has(`groups.${g}`) ? t(`groups.${g}`) : g; }

/** Show status name. @param {string} s */
export function status(s) { return has(`status.${s}`) ? t(`status.${s}`) : s; }
