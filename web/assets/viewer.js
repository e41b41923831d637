// The viewer page (/): tonight's shows without signing in; a show joined as a guest (or with a
// partner's `#token=`); the pinned product with its OCOP proof, price and flash countdown;
// "Mua ngay"; the waitlist when sold out; my claims; my orders after the show.

import {
  loadI18n, t, errorText, dong, num, hhmm, stars, clock, h, $, fill, field, say, values,
  api, me, topBar, group, status, Api, ApiError,
} from "./common.js";
import { ShowConnection, newClaimId } from "/web/client/nightmarket.js";

/** Longest guest display name (contract: 1..40 characters). */
const MAX_NAME = 40;
/** Feed items shown. */
const FEED_SHOWN = 6;
/** How long after the close the page keeps asking for the orders settlement makes. */
const ORDERS_POLL_MS = 90_000;

await loadI18n();
const main = $("#main");
const hash = new URLSearchParams(location.hash.slice(1));
const partnerToken = hash.get("token");
// The show is in the query (links between pages) or, from partners, in the fragment.
const showId = new URLSearchParams(location.search).get("show") || hash.get("show");
let user = null;
if (!partnerToken) {
  try { user = await me(); } catch { user = null; }
}
topBar("viewer.title", user);
window.addEventListener("hashchange", () => location.reload());

if (showId) await openShow(showId);
else await listShows();

// --- tonight's shows -------------------------------------------------------------------

async function listShows() {
  fill(main, h("h1", { text: t("viewer.tonight") }), h("p", { class: "muted", text: t("common.loading") }));
  let shows;
  try {
    shows = await api.shows();
  } catch (e) {
    fill(main, h("h1", { text: t("viewer.tonight") }), h("p", { class: "notice err", role: "alert", text: errorText(e) }));
    return;
  }
  const now = Date.now();
  const slot = (s) => (s.schedule ? s.schedule.slot_start_ms : s.created_at);
  const live = shows.filter((s) => s.status === "live");
  // Upcoming: scheduled for the next day (or ad-hoc ones without a slot).
  const upcoming = shows.filter((s) => s.status === "scheduled" && (!s.schedule || (s.schedule.slot_end_ms > now && s.schedule.slot_start_ms < now + 86_400_000)))
    .sort((a, b) => slot(a) - slot(b));
  const ended = shows.filter((s) => s.status === "closed" && s.closed_at && now - s.closed_at < 12 * 3_600_000);
  const names = await sellerNames([...live, ...upcoming, ...ended]);
  const keep = partnerToken ? `#token=${encodeURIComponent(partnerToken)}` : "";
  const card = (s) => h("li", null,
    h("div", null,
      h("a", { href: `/?show=${encodeURIComponent(s.id)}${keep}`, class: "pname-link", text: s.title }),
      h("div", { class: "muted small", text: [names.get(s.seller_id), s.schedule ? `${hhmm(s.schedule.slot_start_ms)}–${hhmm(s.schedule.slot_end_ms)}` : null].filter(Boolean).join(" · ") })),
    h("span", { class: `badge ${s.status}`, text: status(s.status) }));
  const section = (title, list, empty) => [h("h2", { text: title }),
    list.length ? h("ul", { class: "list" }, list.map(card)) : h("p", { class: "muted", text: empty })];
  fill(main,
    h("h1", { text: t("viewer.tonight") }),
    h("p", { class: "muted", text: t("viewer.intro") }),
    section(t("viewer.live_now"), live, t("viewer.none_live")),
    section(t("viewer.upcoming"), upcoming, t("viewer.none_upcoming")),
    ended.length ? section(t("viewer.ended"), ended, "") : null,
    h("footer", { text: t("common.motto") }));
}

async function sellerNames(shows) {
  const ids = [...new Set(shows.map((s) => s.seller_id))];
  const out = new Map();
  await Promise.all(ids.map(async (id) => {
    try { out.set(id, (await api.seller(id)).name); } catch { /* name stays unknown */ }
  }));
  return out;
}

// --- joining ---------------------------------------------------------------------------

async function openShow(id) {
  let info = null;
  try { info = await api.show(id); } catch (e) {
    fill(main, h("p", { class: "notice err", role: "alert", text: errorText(e) }), h("a", { href: "/", text: t("viewer.back") }));
    return;
  }
  if (partnerToken || user) {
    live(id, partnerToken);
    return;
  }
  // A guest session: a display name, then the server issues the cookie.
  const out = h("p", { class: "notice", hidden: true });
  const form = h("form", { novalidate: true },
    field("display_name", t("viewer.display_name"), { required: true, maxlength: MAX_NAME, autocomplete: "nickname", hint: t("viewer.display_name_hint") }),
    h("button", { type: "submit", class: "big", text: t("viewer.join") }), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const name = values(form).display_name || "";
    // The server's rule, checked before sending: 1..40 characters, no control characters.
    if (!name || [...name].length > MAX_NAME || /[\u0000-\u001f\u007f]/.test(name)) {
      say(out, "err", t("viewer.display_name_bad"));
      return;
    }
    const btn = form.querySelector("button");
    btn.disabled = true;
    try {
      user = await api.guest(name);
      topBar("viewer.title", { ...user, via: "cookie" });
      live(id, null);
    } catch (e) {
      say(out, "err", errorText(e));
      btn.disabled = false;
    }
  });
  fill(main, h("h1", { text: info.title }), h("p", { class: "muted", text: t("viewer.guest_intro") }), form, h("a", { href: "/", text: t("viewer.back") }));
  form.querySelector("input").focus();
}

// --- the show --------------------------------------------------------------------------

function live(id, token) {
  const conn = new ShowConnection({ showId: id, token, api: token ? new Api({ token }) : api });
  const pendingKey = `nightmarket.pending.${id}`;
  let qty = 1;
  let lastResult = null; // {kind, text}
  let ordersShown = false;

  const el = {
    title: h("h1", { text: t("common.loading") }),
    sub: h("div", { class: "row muted small" }),
    conn: h("div", { class: "conn", role: "status", "aria-live": "polite" }),
    stage: h("section", { class: "card", "aria-live": "polite" }),
    buy: h("section"),
    result: h("div", { class: "notice", hidden: true, "aria-live": "assertive" }),
    feed: h("ul", { class: "list", "aria-label": t("viewer.feed") }),
    lineup: h("ul", { class: "list" }),
    mine: h("ul", { class: "list" }),
    orders: h("section", { hidden: true }),
  };
  fill(main, el.title, el.sub, el.conn, el.stage, el.buy, el.result,
    h("h2", { text: t("viewer.feed") }), el.feed,
    h("h2", { text: t("viewer.lineup") }), el.lineup,
    h("h2", { text: t("viewer.my_claims") }), el.mine,
    el.orders,
    h("p", { class: "small" }, h("a", { href: partnerToken ? `/#token=${encodeURIComponent(partnerToken)}` : "/", text: t("viewer.back") })),
    h("footer", { text: t("common.motto") }));

  const result = (kind, text) => { lastResult = { kind, text }; say(el.result, kind, text); };
  const pname = (pid) => conn.entry(pid)?.product.name ?? t("viewer.a_product");

  // Claims not answered before a reload are sent again with the same ids.
  const savePending = () => {
    try { sessionStorage.setItem(pendingKey, JSON.stringify(conn.pendingClaims())); } catch { /* storage off */ }
  };
  const claim = (msg) => {
    const p = conn.claim(msg);
    savePending();
    p.then((r) => { savePending(); claimDone(r); });
    return p;
  };
  function claimDone(r) {
    const name = pname(r.product_id);
    if (r.outcome === "accepted" || r.outcome === "duplicate") {
      result("ok", t(r.outcome === "accepted" ? "viewer.claimed" : "viewer.claimed_before",
        { qty: r.quantity, name, price: dong(r.unit_price) }));
      return;
    }
    let text = errorText(r.reason);
    if (r.reason === "sold_out" && r.available) text += " " + t("viewer.only_left", { n: r.available });
    if (r.reason === "limit_exceeded" && typeof r.limit_left === "number") text += " " + t("viewer.limit_left", { n: r.limit_left });
    if (r.reason === "stale_price" && typeof r.current_price === "number") text += " " + t("viewer.new_price", { price: dong(r.current_price) });
    result("err", text);
  }
  conn.on("claim", (m) => {
    if (m.retrying) result("wait", t("viewer.retrying"));
    else if (m.outcome === "pending") result("wait", t("viewer.pending"));
  });
  conn.on("waitlist", (m) => {
    const name = pname(m.product_id);
    if (m.outcome === "promoted") result("ok", t("viewer.promoted", { qty: m.quantity ?? 1, name, price: dong(m.unit_price) }));
    else if (m.outcome === "skipped") result("info", t("viewer.skipped", { name }) + (m.reason ? ` (${errorText(m.reason)})` : ""));
  });
  conn.on("error", (m) => result("err", errorText(m)));

  let frame = 0;
  conn.on("change", () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); }); });
  setInterval(renderStage, 250); // countdowns

  function render() {
    const s = conn.state;
    el.title.textContent = s.show?.title ?? t("common.loading");
    document.title = `${s.show?.title ?? ""} · ${t("common.brand")}`;
    fill(el.sub,
      s.show ? h("span", { text: s.show.seller_name }) : null,
      s.show ? h("span", { class: `badge ${s.show.status}`, text: status(s.show.status) }) : null,
      s.viewers != null ? h("span", { text: t("viewer.watching", { n: num(s.viewers) }) }) : null);
    renderConn();
    renderStage();
    renderFeed();
    renderLineup();
    renderMine();
    if (s.show?.status === "closed" && !ordersShown) { ordersShown = true; showOrders(); }
  }

  function renderConn() {
    const s = conn.state;
    let text = "", bad = false;
    switch (s.connection) {
      case "connecting": text = t("viewer.conn_connecting"); break;
      case "reconnecting": text = t("viewer.conn_lost"); bad = true; break;
      case "open":
        text = s.reconnects === 0 ? t("viewer.conn_live") : s.resumed ? t("viewer.conn_resumed") : t("viewer.conn_reloaded");
        if (s.role && s.role !== "viewer") text += " · " + t("viewer.not_a_buyer");
        break;
      case "expired": text = t("viewer.conn_expired"); bad = true; break;
      case "not_found": text = t("errors.not_found"); bad = true; break;
      default: text = "";
    }
    el.conn.textContent = text;
    el.conn.className = `conn${bad ? " bad" : ""}`;
  }

  function renderStage() {
    const s = conn.state;
    const e = s.pinned ? conn.entry(s.pinned) : null;
    if (!e) {
      fill(el.stage, h("div", { class: "pname", text: s.show?.status === "closed" ? t("viewer.closed") : s.show?.status === "scheduled" ? t("viewer.not_started") : t("viewer.preparing") }));
      fill(el.buy);
      return;
    }
    const p = e.product;
    const price = conn.price();
    const f = s.flash && s.flash.product_id === p.id ? s.flash : null;
    const now = conn.now();
    const active = conn.flashActive();
    const limitLeft = Math.max(0, e.buyer_limit - conn.held(p.id));
    let flashLine = null;
    if (f && now < f.starts_at) {
      flashLine = h("div", { class: "flash", "data-testid": "countdown", text: t("viewer.flash_in", { price: dong(f.price), time: clock((f.starts_at - now) / 1000) }) +
        (f.quantity_cap != null ? " · " + t("viewer.flash_cap", { n: f.quantity_cap }) : "") });
    } else if (f && active) {
      flashLine = h("div", { class: "flash", "data-testid": "countdown", text: t("viewer.flash_on", { time: clock((f.ends_at - now) / 1000) }) +
        (f.quantity_cap != null ? " · " + t("viewer.flash_sold", { sold: Math.min(f.sold || 0, f.quantity_cap), cap: f.quantity_cap }) : "") });
    }
    fill(el.stage,
      h("div", { class: "small", style: "color:var(--hot);font-weight:700", text: t("viewer.on_screen") }),
      h("div", { class: "pname", "data-testid": "pinned", text: p.name }),
      h("div", null, h("span", { class: "stars", "aria-label": t("viewer.stars", { n: p.stars }), text: stars(p.stars) }), h("span", { class: "ocop", text: `OCOP ${p.stars}★` })),
      h("div", { style: "margin-top:8px" },
        h("span", { class: `price${active ? " fl" : ""}`, "data-testid": "price", text: dong(price) }),
        price != null && price < p.list_price ? h("span", { class: "strike", text: dong(p.list_price) }) : null),
      flashLine,
      h("div", { class: "muted small", style: "margin-top:6px" },
        e.left > 0 ? h("span", { "data-testid": "stock", text: t("viewer.left", { n: e.left, of: e.allotted }) }) : h("span", { class: "out", "data-testid": "stock", text: t("viewer.sold_out") }),
        " · ", t("viewer.limit", { n: e.buyer_limit }),
        limitLeft < e.buyer_limit ? " " + t("viewer.you_may", { n: limitLeft }) : ""),
      proof(p));
    renderBuy(e, price, limitLeft);
  }

  function renderBuy(e, price, limitLeft) {
    const s = conn.state;
    if (s.show?.status !== "live" || (s.role && s.role !== "viewer")) { fill(el.buy); return; }
    const max = Math.max(1, Math.min(limitLeft || 1, e.left || 1, s.limits?.max_claim_quantity ?? 100));
    if (qty > max) qty = max;
    const busy = conn.pendingClaims().length > 0;
    const waiting = s.myWaitlist.find((w) => w.product_id === e.product.id);
    if (e.left === 0) {
      // Sold out: the waitlist instead of the buy button.
      const wlOut = h("span");
      const body = waiting
        ? [h("p", { "data-testid": "waitlist", text: t("viewer.waitlist_position", { n: waiting.position ?? "?" }) }),
          h("button", { type: "button", class: "secondary", onclick: () => conn.waitlistLeave(e.product.id).then(
            (r) => r.outcome === "refused" ? result("err", errorText(r.reason)) : result("ok", t("viewer.waitlist_left")),
            (err) => result("err", errorText(err))), text: t("viewer.waitlist_leave") })]
        : [h("button", { type: "button", class: "big", "data-testid": "waitlist-join", onclick: () => conn.waitlistJoin(e.product.id, qty).then(
          (r) => r.outcome === "joined" ? result("ok", t("viewer.waitlist_joined", { n: r.position ?? "?" })) : result("err", errorText(r.reason)),
          (err) => result("err", errorText(err))), text: t("viewer.waitlist_join") })];
      if (el.buy.dataset.mode === (waiting ? `wl${waiting.position}` : "out")) return;
      el.buy.dataset.mode = waiting ? `wl${waiting.position}` : "out";
      fill(el.buy, h("div", { class: "card" }, body, wlOut));
      return;
    }
    const mode = `buy${max}|${busy}|${price}`;
    if (el.buy.dataset.mode === mode) return; // keep focus and what is typed in the quantity field
    el.buy.dataset.mode = mode;
    const label = () => (busy ? t("viewer.sending_short") : `${t("viewer.buy")} · ${dong(price * qty)}`);
    const input = h("input", { id: "qty", type: "number", min: 1, max, value: qty, inputmode: "numeric" });
    const btn = h("button", { type: "button", class: "big", "data-testid": "buy", disabled: busy || price == null, onclick: () => {
      const q = Math.floor(Number(input.value));
      if (!Number.isFinite(q) || q < 1 || q > max) { result("err", t("viewer.qty_bad", { n: max })); return; }
      qty = q;
      result("wait", t("viewer.sending", { qty: q, name: e.product.name, price: dong(price) }));
      claim({ productId: e.product.id, quantity: q, price, claimId: newClaimId() });
      el.buy.dataset.mode = "";
      renderStage();
    }, text: label() });
    // Typing a quantity only relabels the button: re-rendering would move the focus.
    input.addEventListener("input", () => {
      const v = Math.floor(Number(input.value));
      if (Number.isFinite(v) && v >= 1 && v <= max) { qty = v; btn.textContent = label(); }
    });
    fill(el.buy, h("div", { class: "row" },
      h("label", { for: "qty", class: "muted", text: t("viewer.quantity") }), h("div", { style: "width:6em" }, input),
      h("span", { class: "muted small", text: t("viewer.max_qty", { n: max }) })), btn);
  }

  function renderFeed() {
    const items = conn.state.feed.slice(-FEED_SHOWN).reverse();
    fill(el.feed, items.length ? items.map((it) => h("li", null,
      h("span", { text: t("viewer.someone_bought", { qty: it.quantity, name: pname(it.product_id) }) }),
      h("span", { class: "r", text: `${dong(it.unit_price)} · ${hhmm(it.at)}` })))
      : h("li", { class: "muted", text: t("viewer.feed_empty") }));
    if (conn.state.totalClaims) el.feed.append(h("li", { class: "muted small", text: t("viewer.total_claims", { n: num(conn.state.totalClaims) }) }));
  }

  function renderLineup() {
    const s = conn.state;
    fill(el.lineup, s.lineup.map((e) => h("li", { class: e.product.id === s.pinned ? "pin" : "" },
      h("div", null, e.product.name, h("div", { class: "muted small" }, h("span", { class: "stars", text: stars(e.product.stars) }), ` · ${dong(e.product.list_price)}`)),
      h("div", { class: "r" }, e.left > 0 ? t("viewer.left_short", { n: e.left }) : h("span", { class: "out", text: t("viewer.sold_out") }),
        s.myWaitlist.some((w) => w.product_id === e.product.id) ? h("div", { class: "small", text: t("viewer.waitlist_position", { n: s.myWaitlist.find((w) => w.product_id === e.product.id).position ?? "?" }) }) : null))));
  }

  function renderMine() {
    const s = conn.state;
    const liveNow = s.show?.status === "live";
    const mine = s.myClaims.slice().reverse();
    // Re-render only on a visible change, so a tap on "Huỷ" is never lost to a replaced button.
    const sig = JSON.stringify([liveNow, mine.map((c) => [c.claim_id, c.status]), s.lineup.length]);
    if (el.mine.dataset.sig === sig) return;
    el.mine.dataset.sig = sig;
    fill(el.mine, mine.length ? mine.map((c) => h("li", { "data-claim": c.claim_id },
      h("div", null, `${c.quantity} × ${pname(c.product_id)}`,
        h("div", { class: "muted small", text: `${dong(c.unit_price)} · ${t("viewer.total", { v: dong(c.unit_price * c.quantity) })} · ${c.status === "accepted" ? t("viewer.held") : t("viewer.cancelled")}` })),
      c.status === "accepted" && liveNow ? h("button", { type: "button", class: "danger", onclick: async (ev) => {
        ev.target.disabled = true;
        const r = await conn.cancel(c.claim_id);
        if (r.outcome === "cancelled") result("ok", t("viewer.cancelled_one", { qty: c.quantity, name: pname(c.product_id) }));
        else result("err", errorText(r.reason));
      }, text: t("viewer.cancel") }) : null))
      : h("li", { class: "muted", text: t("viewer.no_claims") }));
  }

  async function showOrders() {
    el.orders.hidden = false;
    const out = h("div", { class: "muted", text: t("viewer.orders_wait") });
    fill(el.orders, h("h2", { text: t("viewer.my_orders") }), out);
    if (conn.state.role !== "viewer") { out.textContent = t("viewer.orders_none"); return; }
    const a = partnerToken ? new Api({ token: partnerToken }) : api;
    const until = Date.now() + ORDERS_POLL_MS;
    while (Date.now() < until) {
      try {
        const checkouts = (await a.myCheckouts()).filter((c) => c.orders.some((o) => o.show_id === id));
        if (checkouts.length || !conn.state.myClaims.some((c) => c.status === "accepted")) {
          fill(out, checkouts.length ? checkouts.map((c) => h("div", { class: "card" },
            h("div", { class: "row" }, h("b", { class: "grow", text: t("viewer.checkout", { total: dong(c.total) }) }),
              h("span", { class: `badge ${c.due > 0 ? "warn" : "ok"}`, text: c.due > 0 ? t("viewer.due", { v: dong(c.due) }) : t("viewer.paid") })),
            c.orders.map((o) => h("div", { class: "small" }, h("div", { text: `${t(`orders.${o.status}`)} · ${dong(o.total)}` }),
              o.lines.map((l) => h("div", { class: "muted", text: `${l.quantity} × ${l.name} · ${dong(l.unit_price)}` })))),
            c.due > 0 ? h("p", { class: "small muted", text: t("viewer.pay_hint") }) : null))
            : t("viewer.orders_none"));
          out.className = "";
          return;
        }
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 503) { out.textContent = errorText(e); return; }
      }
      await new Promise((r) => setTimeout(r, 3000));
    }
  }

  conn.connect();
  try {
    for (const m of JSON.parse(sessionStorage.getItem(pendingKey) || "[]")) {
      claim({ productId: m.product_id, quantity: m.quantity, price: m.price, claimId: m.claim_id });
    }
  } catch { /* nothing pending */ }
  render();
}

/** The OCOP proof of a product. @param {any} p */
function proof(p) {
  const docs = Array.isArray(p.documents) ? p.documents : [];
  return h("dl", { class: "proof" },
    h("dt", { text: t("proof.group") }), h("dd", { text: group(p.group) }),
    h("dt", { text: t("proof.origin") }), h("dd", { text: `${p.commune}, ${p.district}` }),
    h("dt", { text: t("proof.producer") }), h("dd", { text: p.producer }),
    h("dt", { text: t("proof.origin_document") }), h("dd", { text: p.origin_document }),
    h("dt", { text: t("proof.quality_label") }), h("dd", { text: p.quality_label }),
    docs.map((d) => [h("dt", { text: t(`documents.${d.kind}`) }), h("dd", { text: `${d.reference} (${t("proof.valid_until", { d: d.valid_until })})` })]));
}
