// The operator console (/operator), for the coordination office: markets with their weekly
// schedule and exceptions, the calendar of nights with their slots, sellers with their sign-in
// links, products and admissions, the live board, reports and webhooks. Past nights are
// read-only.

import {
  loadI18n, lang, t, errorText, dong, num, hhmm, dayName, when, localDate, stars, h, $, fill, field, say, values, int,
  api, me, topBar, group, status, csvButton, ApiError,
} from "./common.js";

const TABS = ["markets", "sellers", "live", "reports", "webhooks"];
const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const GROUPS = ["food", "beverages", "herbs", "handicrafts", "fabric_garments", "rural_tourism"];
const DOC_KINDS = ["ocop_certificate", "origin_proof", "quality_label"];
const WEBHOOK_EVENTS = ["show.scheduled", "show.live", "show.closed", "show.settled"];
/** Nights listed per market in the calendar, and how far back it starts. */
const NIGHTS_LISTED = 8;
const CALENDAR_BACK_DAYS = 14;
/** Live board refresh period. */
const BOARD_MS = 2000;

await loadI18n();
const main = $("#main");
let user = null;
try { user = await me(); } catch { user = null; }
topBar("operator.title", user);
window.addEventListener("hashchange", route);

/** Periodic work of the current tab, stopped when the tab changes. */
let timers = [];

if (!user || user.role !== "operator") {
  fill(main, h("h1", { text: t("operator.title") }), h("p", { class: "notice info", text: user ? t("operator.wrong_role") : t("operator.sign_in_first") }));
} else {
  route();
}

function route() {
  if (!user || user.role !== "operator") return;
  for (const x of timers) clearInterval(x);
  timers = [];
  const tab = TABS.includes(location.hash.slice(1).split("/")[0]) ? location.hash.slice(1).split("/")[0] : "markets";
  const nav = h("nav", { class: "tabs", "aria-label": t("operator.title") },
    TABS.map((k) => h("a", { href: `#${k}`, "aria-current": k === tab ? "page" : null, text: t(`operator.tab_${k}`) })));
  const body = h("div");
  fill(main, nav, body);
  ({ markets, sellers, live: board, reports, webhooks })[tab](body).catch((e) => body.append(h("p", { class: "notice err", role: "alert", text: errorText(e) })));
}

const notice = () => h("div", { class: "notice", hidden: true, "aria-live": "polite" });

async function run(form, out, fn) {
  const btn = form.querySelector("button[type=submit]");
  if (btn) btn.disabled = true;
  try { return await fn(); } catch (e) { say(out, "err", errorText(e)); return undefined; } finally { if (btn) btn.disabled = false; }
}

// --- markets and the calendar ----------------------------------------------------------

async function markets(body) {
  const list = await api.markets();
  const detail = h("section");
  fill(body, h("h1", { text: t("operator.markets") }),
    list.length ? h("ul", { class: "list" }, list.map((m) => h("li", null,
      h("div", null, h("b", { text: m.name }), h("div", { class: "muted small", text: schedule(m) })),
      h("button", { type: "button", class: "secondary", onclick: () => marketDetail(m, detail), text: t("operator.open_calendar") }))))
      : h("p", { class: "muted", text: t("operator.no_markets") }),
    detail, marketForm());
  if (list.length === 1) marketDetail(list[0], detail);
}

function schedule(m) {
  return `${m.weekdays.map((w) => t(`weekdays.${w}`)).join(", ")} · ${m.start_time} · ${t("operator.minutes", { n: m.duration_minutes })} · ${m.time_zone} · ${t("operator.min_stars", { n: m.min_stars })}`;
}

function marketForm() {
  const out = notice();
  const form = h("form", { class: "card", novalidate: true },
    h("h2", { text: t("operator.new_market") }),
    field("name", t("fields.name"), { required: true, maxlength: 200 }),
    h("fieldset", null, h("legend", { class: "muted", text: t("fields.weekdays") }),
      h("div", { class: "row" }, WEEKDAYS.map((w) => h("label", null, h("input", { type: "checkbox", name: "weekday", value: w, checked: w === "friday" }), ` ${t(`weekdays.${w}`)}`)))),
    h("div", { class: "fields" },
      field("start_time", t("fields.start_time"), { type: "time", value: "20:30", required: true }),
      field("duration_minutes", t("fields.duration_minutes"), { inputmode: "numeric", value: "150", required: true }),
      field("first_date", t("fields.first_date"), { type: "date", value: localDate(), required: true }),
      field("min_stars", t("fields.min_stars"), { tag: "select", options: [1, 2, 3, 4, 5].map((n) => [String(n), `${n}★`]) }),
      field("time_zone", t("fields.time_zone"), { value: "Asia/Ho_Chi_Minh" })),
    h("button", { type: "submit", text: t("operator.create_market") }), out);
  form.querySelector("select[name=min_stars]").value = "3";
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = values(form);
    const weekdays = [...form.querySelectorAll("input[name=weekday]:checked")].map((i) => i.value);
    const duration = int(v.duration_minutes);
    if (!v.name) return say(out, "err", t("operator.need_name"));
    if (!weekdays.length) return say(out, "err", t("operator.need_weekday"));
    if (duration == null || duration < 1 || duration > 720) return say(out, "err", t("operator.bad_duration"));
    const m = await run(form, out, () => api.createMarket({ name: v.name, weekdays, start_time: v.start_time, duration_minutes: duration,
      first_date: v.first_date, min_stars: Number(v.min_stars), time_zone: v.time_zone || undefined }));
    if (m) { say(out, "ok", t("operator.created")); setTimeout(route, 300); }
  });
  return form;
}

async function marketDetail(m, box) {
  fill(box, h("h2", { text: m.name }), h("p", { class: "muted", text: t("common.loading") }));
  const from = localDate(Date.now() - CALENDAR_BACK_DAYS * 86_400_000);
  const [nights, exceptions, sellerList] = await Promise.all([
    api.nights(m.id, { from, limit: NIGHTS_LISTED }), api.exceptions(m.id), api.sellers().catch(() => []),
  ]);
  const exOut = notice();
  const exForm = h("form", { class: "card", novalidate: true },
    h("h3", { text: t("operator.new_exception") }),
    h("div", { class: "fields" },
      field("night_date", t("fields.night_date"), { type: "date", required: true }),
      field("kind", t("fields.kind"), { tag: "select", options: [["cancelled", t("operator.cancelled")], ["moved", t("operator.moved")]] }),
      field("moved_to", t("fields.moved_to"), { type: "datetime-local" }),
      field("reason", t("fields.reason"), { required: true, maxlength: 200, placeholder: "Tết Nguyên Đán" })),
    h("button", { type: "submit", class: "secondary", text: t("operator.add_exception") }), exOut);
  exForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = values(exForm);
    if (!v.night_date) return say(exOut, "err", t("operator.need_date"));
    if (!v.reason) return say(exOut, "err", t("operator.need_reason"));
    if (v.kind === "moved" && !v.moved_to) return say(exOut, "err", t("operator.need_moved_to"));
    const r = await run(exForm, exOut, () => api.createException(m.id, { night_date: v.night_date, kind: v.kind, reason: v.reason, moved_to: v.kind === "moved" ? v.moved_to.slice(0, 16) : undefined }));
    if (r) marketDetail(m, box);
  });
  const now = Date.now();
  const nightCards = [];
  for (const n of nights) {
    const past = n.ends_at_ms < now;
    const shows = n.status === "cancelled" ? [] : await api.nightShows(m.id, n.date).catch(() => []);
    const commitments = n.status === "cancelled" ? [] : await api.nightCommitments(m.id, n.date).catch(() => []);
    nightCards.push(h("div", { class: "card", "data-night": n.date },
      h("div", { class: "row" }, h("b", { class: "grow", text: `${dayName(n.date)} · ${n.local_start.slice(11)}–${n.local_end.slice(11)}` }),
        h("span", { class: `badge ${n.status === "cancelled" ? "closed" : past ? "" : "ok"}`, text: n.status === "cancelled" ? t("operator.cancelled") : n.status === "moved" ? t("operator.moved") : past ? t("operator.past") : t("operator.upcoming") })),
      n.reason ? h("div", { class: "muted small", text: n.reason }) : null,
      shows.length ? h("ul", { class: "list" }, shows.map((s) => h("li", null,
        h("span", { text: `${hhmm(s.schedule.slot_start_ms)}–${hhmm(s.schedule.slot_end_ms)} · ${s.title} · ${sellerList.find((x) => x.id === s.seller_id)?.name ?? ""}` }),
        h("span", { class: `badge ${s.status}`, text: status(s.status) }))))
        : h("p", { class: "muted small", text: t("operator.no_slots") }),
      h("h4", { text: t("operator.commitments") }),
      commitments.length ? h("ul", { class: "list", "data-commitments": n.date }, commitments.map((c) => h("li", null,
        h("span", { text: `${sellerList.find((x) => x.id === c.seller_id)?.name ?? c.seller_id}: “${c.statement}”` }),
        h("span", { class: "r", text: `${hhmm(c.signed_at)}` }))))
        : h("p", { class: "muted small", text: t("operator.no_commitments") }),
      past || n.status === "cancelled" ? h("p", { class: "muted small", text: t("operator.read_only") }) : scheduleForm(m, n, sellerList, () => marketDetail(m, box))));
  }
  fill(box, h("h2", { text: `${m.name}` }), h("p", { class: "muted", text: schedule(m) }),
    h("h3", { text: t("operator.exceptions") }),
    exceptions.length ? h("ul", { class: "list" }, exceptions.map((e) => h("li", null, h("span", { text: `${dayName(e.night_date)} · ${e.kind === "cancelled" ? t("operator.cancelled") : `${t("operator.moved")} → ${e.moved_to}`}` }), h("span", { class: "r", text: e.reason }))))
      : h("p", { class: "muted small", text: t("operator.no_exceptions") }),
    exForm,
    h("h3", { text: t("operator.calendar") }), nightCards);
}

function scheduleForm(m, n, sellerList, done) {
  const out = notice();
  const lineup = h("div");
  const form = h("form", { novalidate: true },
    h("details", null, h("summary", { text: t("operator.schedule_show") }),
      h("div", { class: "fields" },
        field("seller_id", t("fields.seller"), { tag: "select", options: [["", "—"], ...sellerList.map((s) => [s.id, s.name])] }),
        field("title", t("fields.title"), { required: true, maxlength: 200 }),
        field("slot_start", t("fields.slot_start"), { type: "datetime-local", value: n.local_start, required: true }),
        field("slot_end", t("fields.slot_end"), { type: "datetime-local", value: n.local_end, required: true }),
        field("stream_url", t("fields.stream_url"), { type: "url", placeholder: "https://", required: true })),
      lineup,
      h("button", { type: "submit", text: t("operator.schedule") }), out));
  const sel = form.querySelector("select[name=seller_id]");
  sel.addEventListener("change", async () => {
    fill(lineup);
    if (!sel.value) return;
    try {
      const products = await api.products(sel.value);
      fill(lineup, h("p", { class: "muted small", text: t("operator.lineup_hint") }), products.map((p) => h("div", { class: "row", "data-product": p.id },
        h("label", { class: "grow" }, h("input", { type: "checkbox", name: "pick", value: p.id }), ` ${p.name} `, h("span", { class: "stars", text: stars(p.stars) })),
        h("label", { class: "sr", for: `stock-${p.id}`, text: t("fields.stock") }),
        h("input", { id: `stock-${p.id}`, name: `stock-${p.id}`, inputmode: "numeric", placeholder: t("fields.stock"), style: "width:7em" }),
        h("label", { class: "sr", for: `limit-${p.id}`, text: t("fields.buyer_limit") }),
        h("input", { id: `limit-${p.id}`, name: `limit-${p.id}`, inputmode: "numeric", placeholder: t("fields.buyer_limit"), style: "width:7em" }))));
    } catch (e) { say(out, "err", errorText(e)); }
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = values(form);
    if (!v.seller_id) return say(out, "err", t("operator.need_seller"));
    if (!v.title) return say(out, "err", t("operator.need_title"));
    const items = [];
    for (const box of form.querySelectorAll("input[name=pick]:checked")) {
      const stock = int(v[`stock-${box.value}`]), limit = int(v[`limit-${box.value}`]);
      if (stock == null || stock < 0) return say(out, "err", t("operator.bad_stock"));
      if (limit == null || limit < 1) return say(out, "err", t("operator.bad_limit"));
      items.push({ product_id: box.value, stock, buyer_limit: limit });
    }
    if (!items.length) return say(out, "err", t("operator.need_lineup"));
    const s = await run(form, out, () => api.scheduleShow(m.id, n.date, { seller_id: v.seller_id, title: v.title, slot_start: v.slot_start.slice(0, 16),
      slot_end: v.slot_end.slice(0, 16), stream_url: v.stream_url, lineup: items }));
    if (s) { say(out, "ok", t("operator.scheduled")); setTimeout(done, 300); }
  });
  return form;
}

// --- sellers, products, admissions ------------------------------------------------------

async function sellers(body) {
  const [list, marketList] = await Promise.all([api.sellers(), api.markets()]);
  const out = notice();
  const form = h("form", { class: "card", novalidate: true },
    h("h2", { text: t("operator.new_seller") }),
    h("div", { class: "fields" },
      field("name", t("fields.name"), { required: true, maxlength: 200 }),
      field("kind", t("fields.seller_kind"), { tag: "select", options: ["cooperative", "enterprise", "household"].map((k) => [k, t(`kinds.${k}`)]) }),
      field("district", t("fields.district"), { maxlength: 200 })),
    h("button", { type: "submit", text: t("operator.create_seller") }), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = values(form);
    if (!v.name) return say(out, "err", t("operator.need_name"));
    const s = await run(form, out, () => api.createSeller({ name: v.name, kind: v.kind, district: v.district || undefined }));
    if (s) { say(out, "ok", t("operator.created")); setTimeout(route, 300); }
  });
  const detail = h("section");
  fill(body, h("h1", { text: t("operator.sellers") }),
    list.length ? h("ul", { class: "list" }, list.map((s) => h("li", { "data-seller": s.id },
      h("div", null, h("b", { text: s.name }), h("div", { class: "muted small", text: `${t(`kinds.${s.kind}`)}${s.district ? ` · ${s.district}` : ""}` })),
      h("button", { type: "button", class: "secondary", onclick: () => sellerDetail(s, marketList, detail), text: t("operator.open_seller") }))))
      : h("p", { class: "muted", text: t("operator.no_sellers") }),
    detail, form);
}

async function sellerDetail(s, marketList, box) {
  fill(box, h("h2", { text: s.name }), h("p", { class: "muted", text: t("common.loading") }));
  const products = await api.products(s.id);
  const inviteOut = notice();
  const inviteBox = h("div");
  const invite = h("button", { type: "button", "data-testid": "invite", onclick: async () => {
    invite.disabled = true;
    try {
      const inv = await api.createInvite("seller", s.id);
      const input = h("input", { readonly: true, value: inv.url, "aria-label": t("operator.signin_link"), "data-testid": "invite-url" });
      fill(inviteBox, h("div", { class: "copy" }, input, h("button", { type: "button", class: "secondary", onclick: async () => {
        input.select();
        try { await navigator.clipboard.writeText(inv.url); say(inviteOut, "ok", t("operator.copied")); } catch { say(inviteOut, "info", t("operator.copy_by_hand")); }
      }, text: t("operator.copy") })), h("p", { class: "muted small", text: t("operator.link_expires", { at: when(inv.expires_at) }) }));
    } catch (e) { say(inviteOut, "err", errorText(e)); }
    invite.disabled = false;
  }, text: t("operator.send_link") });

  const market = marketList[0];
  const marketSel = marketList.length > 1 ? h("select", { "aria-label": t("fields.market"), onchange: () => renderProducts() }, marketList.map((mk) => h("option", { value: mk.id, text: mk.name }))) : null;
  const productBox = h("div");
  async function renderProducts() {
    const mk = marketSel ? marketList.find((x) => x.id === marketSel.value) : market;
    const cards = [];
    for (const p of products) {
      const decisions = mk ? await api.decisions(mk.id, p.id).catch(() => []) : [];
      const last = decisions.at(-1);
      const out = notice();
      const reason = h("input", { name: "reason", maxlength: 200, "aria-label": t("fields.refuse_reason"), placeholder: t("fields.refuse_reason") });
      const decide = async (approved) => {
        if (!mk) return say(out, "err", t("operator.need_market"));
        if (!approved && !reason.value.trim()) return say(out, "err", t("operator.need_reason"));
        try {
          await api.decide(mk.id, { product_id: p.id, approved, reason: approved ? undefined : reason.value.trim() });
          say(out, "ok", approved ? t("operator.admitted") : t("operator.refused"));
          setTimeout(renderProducts, 300);
        } catch (e) { say(out, "err", errorText(e)); }
      };
      cards.push(h("div", { class: "card", "data-product": p.id },
        h("div", { class: "row" }, h("b", { class: "grow", text: p.name }), h("span", { class: "stars", text: stars(p.stars) }), h("span", { class: "ocop", text: `OCOP ${p.stars}★` })),
        h("div", { class: "muted small", text: `${group(p.group)} · ${p.commune}, ${p.district} · ${p.producer} · ${dong(p.list_price)}` }),
        h("div", { class: "small", text: `${t("proof.origin_document")}: ${p.origin_document} · ${t("proof.quality_label")}: ${p.quality_label}` }),
        (p.documents || []).length ? h("table", null, h("tbody", null, p.documents.map((d) => h("tr", null,
          h("td", { text: t(`documents.${d.kind}`) }), h("td", { text: d.reference }), h("td", { text: `${d.valid_from} → ${d.valid_until}` })))))
          : h("p", { class: "notice info", text: t("operator.no_documents") }),
        mk ? h("p", { class: "small", "data-testid": "decision" }, `${mk.name}: `, last ? h("span", { class: `badge ${last.approved ? "ok" : "closed"}`, text: last.approved ? t("operator.admitted") : `${t("operator.refused")}: ${last.reason ?? ""}` }) : h("span", { class: "badge", text: t("operator.undecided") })) : null,
        mk ? h("div", { class: "row" },
          h("button", { type: "button", "data-testid": "admit", onclick: () => decide(true), text: t("operator.admit") }),
          h("div", { class: "grow" }, reason),
          h("button", { type: "button", class: "danger", onclick: () => decide(false), text: t("operator.refuse") })) : null,
        out));
    }
    fill(productBox, cards.length ? cards : h("p", { class: "muted", text: t("operator.no_products") }));
  }
  await renderProducts();
  fill(box, h("h2", { text: s.name }),
    h("div", { class: "card" }, h("h3", { text: t("operator.signin_link") }), h("p", { class: "muted small", text: t("operator.signin_link_hint") }), invite, inviteBox, inviteOut),
    h("h3", { text: t("operator.products") }), marketSel ? h("div", { class: "row" }, h("span", { text: t("fields.market") }), marketSel) : null, productBox,
    productForm(s, () => sellerDetail(s, marketList, box)));
}

function productForm(s, done) {
  const out = notice();
  const year = new Date().getFullYear();
  const form = h("form", { class: "card", novalidate: true },
    h("h3", { text: t("operator.new_product") }),
    h("div", { class: "fields" },
      field("name", t("fields.name"), { required: true, maxlength: 200 }),
      field("group", t("fields.group"), { tag: "select", options: GROUPS.map((g) => [g, group(g)]) }),
      field("stars", t("fields.stars"), { tag: "select", options: [1, 2, 3, 4, 5].map((n) => [String(n), `${n}★`]) }),
      field("list_price", t("fields.list_price"), { inputmode: "numeric", required: true }),
      field("district", t("fields.district"), { required: true, value: s.district || "" }),
      field("commune", t("fields.commune"), { required: true }),
      field("producer", t("fields.producer"), { required: true, value: s.name }),
      field("origin_document", t("fields.origin_document"), { required: true }),
      field("quality_label", t("fields.quality_label"), { required: true })),
    h("h3", { text: t("operator.documents") }),
    DOC_KINDS.map((k) => h("div", { class: "fields" },
      field(`${k}_ref`, `${t(`documents.${k}`)} — ${t("fields.reference")}`, {}),
      field(`${k}_from`, t("fields.valid_from"), { type: "date", value: `${year}-01-01` }),
      field(`${k}_until`, t("fields.valid_until"), { type: "date", value: `${year + 2}-12-31` }))),
    h("button", { type: "submit", text: t("operator.create_product") }), out);
  form.querySelector("select[name=stars]").value = "4";
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = values(form);
    const price = int(v.list_price);
    for (const k of ["name", "district", "commune", "producer", "origin_document", "quality_label"]) {
      if (!v[k]) return say(out, "err", t("operator.need_field", { field: t(`fields.${k}`) }));
    }
    if (price == null || price < 1 || price > 1_000_000_000) return say(out, "err", t("operator.bad_price"));
    const documents = DOC_KINDS.filter((k) => v[`${k}_ref`]).map((k) => ({ kind: k, reference: v[`${k}_ref`], valid_from: v[`${k}_from`], valid_until: v[`${k}_until`] }));
    const p = await run(form, out, () => api.createProduct({ seller_id: s.id, name: v.name, group: v.group, stars: Number(v.stars), district: v.district,
      commune: v.commune, producer: v.producer, list_price: price, origin_document: v.origin_document, quality_label: v.quality_label, documents }));
    if (p) { say(out, "ok", t("operator.created")); setTimeout(done, 300); }
  });
  return form;
}

// --- live board ------------------------------------------------------------------------

async function board(body) {
  const grid = h("div", { class: "cols3" });
  const stamp = h("p", { class: "muted small", role: "status" });
  fill(body, h("h1", { text: t("operator.live_board") }), stamp, grid);
  const names = new Map();
  async function refresh() {
    const now = Date.now();
    const shows = (await api.shows()).filter((s) => s.status === "live" ||
      (s.schedule && s.schedule.night_date === localDate(now)) || (s.status === "closed" && s.closed_at && now - s.closed_at < 12 * 3_600_000));
    const cards = [];
    for (const s of shows) {
      if (!names.has(s.seller_id)) names.set(s.seller_id, (await api.seller(s.seller_id).catch(() => null))?.name ?? "");
      let st = null;
      if (s.status !== "scheduled") st = await api.liveStats(s.id).catch(() => null);
      cards.push(h("div", { class: "card", "data-show": s.id },
        h("div", { class: "row" }, h("b", { class: "grow", text: s.title }), h("span", { class: `badge ${s.status}`, text: status(s.status) })),
        h("div", { class: "muted small", text: `${names.get(s.seller_id)}${s.schedule ? ` · ${hhmm(s.schedule.slot_start_ms)}–${hhmm(s.schedule.slot_end_ms)}` : ""}` }),
        st ? h("div", { class: "stats", style: "margin-top:8px" },
          h("div", { class: "stat" }, h("b", { text: num(st.viewers) }), h("span", { text: t("seller.viewers") })),
          h("div", { class: "stat" }, h("b", { text: num(st.accepted_claims) }), h("span", { text: t("seller.claims") })),
          h("div", { class: "stat" }, h("b", { text: num(st.units_sold) }), h("span", { text: t("seller.units_sold") })),
          h("div", { class: "stat" }, h("b", { "data-testid": "board-gmv", text: dong(st.gmv) }), h("span", { text: t("seller.gmv") }))) : null));
    }
    fill(grid, cards.length ? cards : h("p", { class: "muted", text: t("operator.no_shows_tonight") }));
    stamp.textContent = t("operator.updated", { at: new Date().toLocaleTimeString(lang === "vi" ? "vi-VN" : "en-GB") });
  }
  await refresh();
  let busy = false;
  timers.push(setInterval(async () => {
    if (busy) return;
    busy = true;
    try { await refresh(); } catch (e) { stamp.textContent = errorText(e); } finally { busy = false; }
  }, BOARD_MS));
}

// --- reports ---------------------------------------------------------------------------

async function reports(body) {
  const marketList = await api.markets();
  const out = h("section");
  const msel = h("select", { id: "r-market", name: "market" }, marketList.map((m) => h("option", { value: m.id, text: m.name })));
  const dsel = h("select", { id: "r-night", name: "night" });
  async function loadNights() {
    fill(dsel);
    if (!msel.value) return;
    const from = localDate(Date.now() - 60 * 86_400_000);
    const nights = await api.nights(msel.value, { from, limit: 20 }).catch(() => []);
    // Nights that have started, or start within the next hours (tonight's, before it opens).
    const soon = Date.now() + 12 * 3_600_000;
    const items = nights.filter((n) => n.starts_at_ms <= soon).reverse();
    fill(dsel, items.map((n) => h("option", { value: n.date, text: dayName(n.date) })));
  }
  msel.addEventListener("change", loadNights);
  const form = h("form", { class: "card" }, h("div", { class: "fields" },
    h("div", { class: "field" }, h("label", { for: "r-market", text: t("fields.market") }), msel),
    h("div", { class: "field" }, h("label", { for: "r-night", text: t("fields.night_date") }), dsel)),
    h("button", { type: "submit", text: t("operator.show_report") }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!msel.value || !dsel.value) { fill(out, h("p", { class: "notice err", text: t("operator.need_night") })); return; }
    try {
      const r = await api.nightReport(msel.value, dsel.value);
      fill(out, nightReport(r), csvButton(t("seller.download_csv"), `night-${dsel.value}-report.csv`, () => api.nightReportCsv(msel.value, dsel.value)));
    } catch (e) { fill(out, h("p", { class: "notice err", role: "alert", text: errorText(e) })); }
  });
  fill(body, h("h1", { text: t("operator.reports") }), marketList.length ? form : h("p", { class: "muted", text: t("operator.no_markets") }), out);
  await loadNights();
}

function nightReport(r) {
  const tt = r.totals;
  const table = (title, rows, key) => h("div", null, h("h3", { text: title }), h("div", { class: "scroll" }, h("table", null,
    h("thead", null, h("tr", null, h("th", { text: t("report.key") }), h("th", { class: "n", text: t("report.units") }), h("th", { class: "n", text: t("report.revenue") }), h("th", { class: "n", text: t("report.discount") }))),
    h("tbody", null, rows.map((g) => h("tr", null, h("td", { text: key(g) }), h("td", { class: "n", text: num(g.units) }), h("td", { class: "n", text: dong(g.revenue) }), h("td", { class: "n", text: dong(g.discount) })))))));
  return h("div", null,
    h("p", { class: `notice ${r.complete ? "ok" : "wait"}`, text: r.complete ? t("report.complete") : t("report.incomplete", { n: r.pending.length }) }),
    h("div", { class: "stats" },
      h("div", { class: "stat" }, h("b", { "data-testid": "night-revenue", text: dong(tt.revenue) }), h("span", { text: t("report.revenue") })),
      h("div", { class: "stat" }, h("b", { "data-testid": "night-units", text: num(tt.units) }), h("span", { text: t("report.units") })),
      h("div", { class: "stat" }, h("b", { text: num(r.orders) }), h("span", { text: t("report.orders") })),
      h("div", { class: "stat" }, h("b", { text: num(r.buyers) }), h("span", { text: t("report.buyers") })),
      h("div", { class: "stat" }, h("b", { text: dong(tt.discount) }), h("span", { text: t("report.discount") })),
      h("div", { class: "stat" }, h("b", { text: num(r.peak_viewers) }), h("span", { text: t("report.peak") }))),
    r.pending.length ? h("ul", { class: "list" }, r.pending.map((p) => h("li", null, h("span", { text: `${p.title} · ${p.seller_name}` }), h("span", { class: "badge warn", text: p.settlement === "mismatch" ? t("report.mismatch") : t("report.pending") })))) : null,
    h("div", { class: "cols" },
      table(t("report.by_group"), r.programme.groups, (g) => group(g.key)),
      table(t("report.by_district"), r.programme.districts, (g) => g.key),
      table(t("report.by_stars"), r.programme.stars, (g) => `${g.key}★`),
      table(t("report.by_seller"), r.programme.sellers, (g) => g.seller_name || g.key)));
}

// --- webhooks --------------------------------------------------------------------------

async function webhooks(body) {
  const list = await api.webhooks();
  const out = notice();
  const form = h("form", { class: "card", novalidate: true },
    h("h2", { text: t("operator.new_webhook") }),
    field("url", t("fields.url"), { type: "url", placeholder: "https://", required: true }),
    h("fieldset", null, h("legend", { class: "muted", text: t("fields.events") }),
      h("div", { class: "row" }, WEBHOOK_EVENTS.map((e) => h("label", null, h("input", { type: "checkbox", name: "event", value: e, checked: true }), ` ${t(`events.${e}`)}`)))),
    h("button", { type: "submit", text: t("operator.create_webhook") }), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = values(form);
    const events = [...form.querySelectorAll("input[name=event]:checked")].map((i) => i.value);
    if (!/^https?:\/\/\S+$/.test(v.url || "")) return say(out, "err", t("operator.bad_webhook_url"));
    if (!events.length) return say(out, "err", t("operator.need_event"));
    let w;
    try {
      w = await api.createWebhook({ url: v.url, events });
    } catch (e) {
      // The server keeps webhooks out of its own network unless configured otherwise: say so.
      const inside = e.code === "bad_request" && /allow_private_targets/.test(e.message || "");
      return say(out, "err", inside ? t("operator.private_webhook") : errorText(e));
    }
    say(out, "ok", t("operator.webhook_secret", { secret: w.secret }));
  });
  const detail = h("section");
  fill(body, h("h1", { text: t("operator.webhooks") }),
    list.length ? h("ul", { class: "list" }, list.map((w) => h("li", null,
      h("div", null, h("b", { text: w.url }), h("div", { class: "muted small", text: `${w.events.join(", ")} · ${w.active ? t("operator.active") : t("operator.inactive")}` })),
      h("div", { class: "row" },
        h("button", { type: "button", class: "secondary", onclick: () => deliveries(w, detail), text: t("operator.deliveries") }),
        w.active ? h("button", { type: "button", class: "danger", onclick: async () => { try { await api.deleteWebhook(w.id); route(); } catch (e) { say(out, "err", errorText(e)); } }, text: t("operator.turn_off") }) : null))))
      : h("p", { class: "muted", text: t("operator.no_webhooks") }),
    detail, form);
}

async function deliveries(w, box) {
  const out = notice();
  const rows = await api.deliveries(w.id);
  fill(box, h("h2", { text: `${t("operator.deliveries")} · ${w.url}` }), out,
    rows.length ? h("div", { class: "scroll" }, h("table", null,
      h("thead", null, h("tr", null, [t("operator.event"), t("operator.state"), t("operator.attempts"), t("operator.last"), ""].map((x) => h("th", { text: x })))),
      h("tbody", null, rows.map((d) => h("tr", null, h("td", { text: t(`events.${d.event}`) }), h("td", { text: t(`delivery.${d.state}`) }), h("td", { class: "n", text: d.attempts }),
        h("td", { text: d.last_status ? `HTTP ${d.last_status}` : d.last_error ? t("operator.unreachable") : "—" }),
        h("td", null, h("button", { type: "button", class: "secondary", onclick: async () => {
          try { await api.redeliver(w.id, d.id); say(out, "ok", t("operator.redelivering")); setTimeout(() => deliveries(w, box), 800); } catch (e) { say(out, "err", errorText(e)); }
        }, text: t("operator.redeliver") })))))))
      : h("p", { class: "muted", text: t("operator.no_deliveries") }));
}
