// The seller console (/seller): tonight's and upcoming shows, quality commitments for the
// coming nights, and one show on one screen: go live, pin, flash price, live figures, close,
// then the settlement and the report. Phone first: it is held next to the camera.

import {
  loadI18n, t, errorText, dong, num, hhmm, dayName, stars, clock, h, $, fill, field, say, values, int,
  api, me, topBar, group, status, csvButton, ApiError,
} from "./common.js";
import { ShowConnection } from "/web/client/nightmarket.js";

/** Bounds of start_flash (docs/protocol.md §3 and §8), shown before sending. */
const FLASH = { maxDuration: 10800, maxCountdown: 600, maxCap: 10_000_000 };
/** Live figures refresh period. */
const STATS_MS = 1000;
/** Settlement status refresh period after the close. */
const SETTLE_POLL_MS = 2000;
/** Nights shown per market for commitments. */
const NIGHTS_AHEAD = 3;

await loadI18n();
const main = $("#main");
let user = null;
try { user = await me(); } catch (e) {
  topBar("seller.title", null);
  fill(main, h("p", { class: "notice err", role: "alert", text: errorText(e) }));
}
topBar("seller.title", user);
window.addEventListener("hashchange", () => location.reload());

if (!user || user.role !== "seller") {
  fill(main, h("h1", { text: t("seller.title") }),
    h("p", { class: "notice info", text: user ? t("seller.wrong_role") : t("seller.sign_in_first") }));
} else {
  const showId = new URLSearchParams(location.search).get("show") || new URLSearchParams(location.hash.slice(1)).get("show");
  if (showId) await showPanel(showId);
  else await home();
}

// --- my shows and commitments ----------------------------------------------------------

async function home() {
  fill(main, h("h1", { text: t("seller.hello", { name: user.name || "" }) }), h("p", { class: "muted", text: t("common.loading") }));
  let shows = [];
  try {
    shows = await api.sellerShows(user.subject);
  } catch (e) {
    main.append(h("p", { class: "notice err", role: "alert", text: errorText(e) }));
    return;
  }
  const slot = (s) => (s.schedule ? s.schedule.slot_start_ms : s.created_at);
  const liveNow = shows.filter((s) => s.status === "live");
  const coming = shows.filter((s) => s.status === "scheduled").sort((a, b) => slot(a) - slot(b));
  const past = shows.filter((s) => s.status === "closed").sort((a, b) => (b.closed_at || 0) - (a.closed_at || 0)).slice(0, 10);
  const row = (s) => h("li", null,
    h("div", null, h("a", { href: `/seller?show=${encodeURIComponent(s.id)}`, text: s.title }),
      h("div", { class: "muted small", text: s.schedule ? `${dayName(s.schedule.night_date)} · ${hhmm(s.schedule.slot_start_ms)}–${hhmm(s.schedule.slot_end_ms)}` : t("seller.no_slot") })),
    h("span", { class: `badge ${s.status}`, text: status(s.status) }));
  const list = (items, empty) => (items.length ? h("ul", { class: "list" }, items.map(row)) : h("p", { class: "muted", text: empty }));
  const commitments = h("section");
  fill(main,
    h("h1", { text: t("seller.hello", { name: user.name || "" }) }),
    h("h2", { text: t("seller.live_now") }), list(liveNow, t("seller.none_live")),
    h("h2", { text: t("seller.coming") }), list(coming, t("seller.none_coming")),
    h("h2", { text: t("seller.commitments") }), commitments,
    h("h2", { text: t("seller.past") }), list(past, t("seller.none_past")));
  await renderCommitments(commitments);
}

async function renderCommitments(box) {
  fill(box, h("p", { class: "muted small", text: t("seller.commitment_intro") }));
  let markets = [];
  try { markets = await api.markets(); } catch (e) { box.append(h("p", { class: "notice err", text: errorText(e) })); return; }
  for (const m of markets) {
    let nights = [];
    try { nights = await api.nights(m.id, { limit: NIGHTS_AHEAD }); } catch { continue; }
    for (const n of nights.filter((x) => x.status !== "cancelled")) {
      const out = h("span", { class: "notice", hidden: true });
      const form = h("form", { class: "card" },
        h("div", { class: "row" }, h("b", { class: "grow", text: `${m.name} · ${dayName(n.local_start.slice(0, 10))} ${n.local_start.slice(11)}` })),
        field("statement", t("seller.statement"), { tag: "textarea", rows: 2, required: true, maxlength: 200 }),
        h("button", { type: "submit", class: "secondary", text: t("seller.sign") }), out);
      form.querySelector("textarea").value = t("seller.statement_default");
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const v = values(form);
        if (!v.statement) { say(out, "err", t("seller.statement_empty")); return; }
        const c = await submitOn(form, out, () => api.commit(m.id, n.date, v.statement));
        if (c) say(out, "ok", t("seller.signed", { at: hhmm(c.signed_at) }));
      });
      box.append(form);
    }
  }
  if (!markets.length) box.append(h("p", { class: "muted", text: t("seller.no_markets") }));
}

async function submitOn(form, out, fn) {
  const btn = form.querySelector("button[type=submit]");
  if (btn) btn.disabled = true;
  try { return await fn(); } catch (e) { say(out, "err", errorText(e)); return undefined; } finally { if (btn) btn.disabled = false; }
}

// --- one show --------------------------------------------------------------------------

async function showPanel(id) {
  let show;
  try { show = await api.show(id); } catch (e) {
    fill(main, h("p", { class: "notice err", role: "alert", text: errorText(e) }), h("a", { href: "/seller", text: t("seller.back") }));
    return;
  }
  if (show.seller_id !== user.subject) {
    fill(main, h("p", { class: "notice err", role: "alert", text: errorText("forbidden") }), h("a", { href: "/seller", text: t("seller.back") }));
    return;
  }
  const conn = new ShowConnection({ showId: id });
  const el = {
    head: h("div"),
    conn: h("div", { class: "conn", role: "status" }),
    action: h("section"),
    notice: h("div", { class: "notice", hidden: true, "aria-live": "assertive" }),
    stats: h("section", { "aria-label": t("seller.live_panel") }),
    flash: h("section"),
    lineup: h("section"),
    feed: h("ul", { class: "list" }),
    close: h("section"),
    report: h("section"),
  };
  fill(main, h("p", { class: "small" }, h("a", { href: "/seller", text: t("seller.back") })), el.head, el.conn, el.action, el.notice,
    el.stats, el.flash, h("h2", { text: t("seller.lineup") }), el.lineup,
    h("h2", { text: t("seller.recent_claims") }), el.feed, el.close, el.report);
  const notice = (kind, text) => say(el.notice, kind, text);

  let stats = null, statsMissing = false, statsTimer = null, closing = false, reportShown = false;
  async function pollStats() {
    if (conn.state.show?.status !== "live" && stats) return;
    try {
      stats = await api.liveStats(id);
      statsMissing = false;
    } catch (e) {
      statsMissing = e instanceof ApiError && e.status === 404;
    }
    renderStats();
  }

  let frame = 0;
  conn.on("change", () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); }); });
  conn.on("error", (m) => notice("err", errorText(m)));
  setInterval(() => { renderFlash(false); }, 250);

  function status_() { return conn.state.show?.status ?? show.status; }

  function render() {
    const s = conn.state;
    const st = status_();
    fill(el.head, h("h1", { text: show.title }),
      h("div", { class: "row muted small" },
        h("span", { class: `badge ${st}`, "data-testid": "status", text: status(st) }),
        show.schedule ? h("span", { text: `${dayName(show.schedule.night_date)} · ${hhmm(show.schedule.slot_start_ms)}–${hhmm(show.schedule.slot_end_ms)}` }) : null,
        s.viewers != null ? h("span", { text: t("seller.viewers_now", { n: num(s.viewers) }) }) : null));
    const c = s.connection;
    el.conn.textContent = c === "open" ? (s.reconnects ? t("viewer.conn_resumed") : t("viewer.conn_live")) : c === "reconnecting" ? t("viewer.conn_lost") : c === "expired" ? t("viewer.conn_expired") : t("viewer.conn_connecting");
    el.conn.className = `conn${c === "reconnecting" || c === "expired" ? " bad" : ""}`;
    renderAction(st);
    renderStats();
    renderFlash(true);
    renderLineup();
    renderFeed();
    renderClose(st);
    if (st === "live" && !statsTimer) { pollStats(); statsTimer = setInterval(pollStats, STATS_MS); }
    if (st === "closed") {
      if (statsTimer) { clearInterval(statsTimer); statsTimer = null; pollStats(); }
      if (!reportShown) { reportShown = true; settlement(); }
    }
  }

  function renderAction(st) {
    if (st !== "scheduled") { fill(el.action); return; }
    if (el.action.childElementCount) return;
    const btn = h("button", { type: "button", class: "big", "data-testid": "go-live", onclick: async () => {
      btn.disabled = true;
      try {
        show = await api.goLive(id);
        notice("ok", t("seller.went_live"));
      } catch (e) {
        notice("err", errorText(e));
      } finally {
        btn.disabled = false;
      }
    }, text: t("seller.go_live") });
    fill(el.action, btn, show.schedule ? h("p", { class: "muted small", text: t("seller.go_live_rule", { at: hhmm(show.schedule.slot_start_ms - 15 * 60_000) }) }) : null);
  }

  function renderStats() {
    const s = conn.state;
    if (status_() === "scheduled") { fill(el.stats); return; }
    const st = stats;
    const cell = (label, value, testid) => h("div", { class: "stat" }, h("b", { "data-testid": testid, text: value }), h("span", { text: label }));
    const unitsSold = st ? st.units_sold : s.lineup.reduce((a, e) => a + (e.allotted - e.left), 0);
    fill(el.stats, h("h2", { text: t("seller.live_panel") }),
      h("div", { class: "stats" },
        cell(t("seller.viewers"), num(st ? st.viewers : s.viewers), "viewers"),
        cell(t("seller.peak"), st ? num(st.peak_viewers) : "—", "peak"),
        cell(t("seller.claims_min"), st ? num(st.claims_last_minute) : "—", "cpm"),
        cell(t("seller.units_sold"), num(unitsSold), "units"),
        cell(t("seller.gmv"), st ? dong(st.gmv) : "—", "gmv"),
        cell(t("seller.claims"), num(st ? st.accepted_claims : s.totalClaims), "claims")),
      statsMissing ? h("p", { class: "muted small", text: t("seller.stats_missing") }) : null);
  }

  let flashForm = null;
  function renderFlash(full) {
    const s = conn.state;
    const pinned = s.pinned ? conn.entry(s.pinned) : null;
    const f = s.flash;
    const now = conn.now();
    const progress = $("#flash-progress", el.flash);
    if (progress && f) {
      progress.textContent = flashText(f, now);
    }
    if (!full) return;
    if (status_() !== "live" || !pinned) { fill(el.flash, status_() === "live" ? h("p", { class: "muted", text: t("seller.pin_first") }) : null); flashForm = null; return; }
    if (f) {
      if (el.flash.dataset.flash === String(f.flash_id)) return;
      el.flash.dataset.flash = String(f.flash_id);
      flashForm = null;
      fill(el.flash, h("h2", { text: t("seller.flash") }),
        h("div", { class: "flash", id: "flash-progress", "data-testid": "flash-progress", text: flashText(f, now) }),
        h("button", { type: "button", class: "danger", style: "margin-top:8px", onclick: async (ev) => {
          ev.target.disabled = true;
          try { await conn.endFlash(); notice("ok", t("seller.flash_ended")); } catch (e) { notice("err", errorText(e)); ev.target.disabled = false; }
        }, text: t("seller.end_flash") }));
      return;
    }
    el.flash.dataset.flash = "";
    if (flashForm && flashForm.dataset.product === pinned.product.id && el.flash.contains(flashForm)) {
      return; // keep what the seller is typing
    }
    const list = pinned.product.list_price;
    const out = h("div", { class: "notice", hidden: true });
    flashForm = h("form", { class: "card", novalidate: true, "data-product": pinned.product.id },
      h("h3", { text: t("seller.flash_on", { name: pinned.product.name }) }),
      h("div", { class: "fields" },
        field("price", t("seller.flash_price"), { inputmode: "numeric", required: true, hint: t("seller.rule_price", { list: dong(list) }) }),
        field("duration", t("seller.flash_duration"), { inputmode: "numeric", required: true, value: "120", hint: t("seller.rule_duration", { max: FLASH.maxDuration }) }),
        field("cap", t("seller.flash_cap"), { inputmode: "numeric", hint: t("seller.rule_cap", { left: pinned.left }) }),
        field("countdown", t("seller.flash_countdown"), { inputmode: "numeric", value: "10", hint: t("seller.rule_countdown", { max: FLASH.maxCountdown }) })),
      h("button", { type: "submit", text: t("seller.start_flash") }), out);
    flashForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const v = values(flashForm);
      const e = conn.entry(pinned.product.id);
      const price = int(v.price), duration = int(v.duration), cap = v.cap ? int(v.cap) : null, countdown = v.countdown ? int(v.countdown) : 0;
      // The server's rules, checked before sending (docs/protocol.md, start_flash).
      let bad = null;
      if (price == null || price < 1) bad = t("seller.bad_price");
      else if (price > list) bad = t("seller.bad_price_above", { list: dong(list) });
      else if (duration == null || duration < 1 || duration > FLASH.maxDuration) bad = t("seller.bad_duration", { max: FLASH.maxDuration });
      else if (v.cap && (cap == null || cap < 1 || cap > Math.min(FLASH.maxCap, e.left))) bad = t("seller.bad_cap", { left: e.left });
      else if (countdown == null || countdown < 0 || countdown > FLASH.maxCountdown) bad = t("seller.bad_countdown", { max: FLASH.maxCountdown });
      if (bad) { say(out, "err", bad); return; }
      const btn = flashForm.querySelector("button[type=submit]");
      btn.disabled = true;
      try {
        await conn.startFlash({ productId: pinned.product.id, price, durationS: duration, quantityCap: cap, countdownS: countdown });
        notice("ok", t("seller.flash_started"));
      } catch (err) {
        say(out, "err", errorText(err));
      } finally {
        btn.disabled = false;
      }
    });
    fill(el.flash, h("h2", { text: t("seller.flash") }), flashForm);
  }

  function flashText(f, now) {
    const cap = f.quantity_cap != null ? ` · ${t("viewer.flash_sold", { sold: Math.min(f.sold || 0, f.quantity_cap), cap: f.quantity_cap })}` : ` · ${t("seller.flash_sold_nocap", { n: f.sold || 0 })}`;
    if (now < f.starts_at) return t("viewer.flash_in", { price: dong(f.price), time: clock((f.starts_at - now) / 1000) }) + cap;
    if (now < f.ends_at) return `${t("seller.flash_running", { price: dong(f.price), time: clock((f.ends_at - now) / 1000) })}${cap}`;
    return t("seller.flash_over");
  }

  function renderLineup() {
    const s = conn.state;
    const liveNow = status_() === "live";
    const per = new Map((stats?.products || []).map((p) => [p.product_id, p]));
    const items = s.lineup.length ? s.lineup : show.lineup.map((l) => ({ product: l.product, allotted: l.stock, left: l.stock, buyer_limit: l.buyer_limit }));
    // Re-render only on a visible change, so a tap is never lost to a replaced button.
    const sig = JSON.stringify([liveNow, s.pinned, items.map((e) => e.left), [...per.values()].map((p) => [p.units_sold, p.gmv])]);
    if (el.lineup.dataset.sig === sig) return;
    el.lineup.dataset.sig = sig;
    fill(el.lineup, items.filter((e) => e.product).map((e) => {
      const p = e.product;
      const pinnedNow = s.pinned === p.id;
      const sold = per.get(p.id);
      return h("div", { class: `card${pinnedNow ? " pick" : ""}`, "data-product": p.id },
        h("div", { class: "row" },
          h("div", { class: "grow" }, h("b", { text: p.name }),
            h("div", { class: "small" }, h("span", { class: "stars", text: stars(p.stars) }), h("span", { class: "ocop", text: `OCOP ${p.stars}★` }), ` ${dong(p.list_price)}`)),
          liveNow ? h("button", { type: "button", class: pinnedNow ? "secondary" : "", "data-testid": pinnedNow ? "unpin" : "pin", onclick: async (ev) => {
            ev.target.disabled = true;
            try {
              if (pinnedNow) await conn.unpin(); else await conn.pin(p.id);
            } catch (err) {
              notice("err", errorText(err));
              ev.target.disabled = false;
            }
          }, text: pinnedNow ? t("seller.unpin") : t("seller.pin") }) : null),
        h("div", { class: "small", style: "margin-top:6px" },
          h("span", { "data-testid": "left", text: t("seller.left", { n: num(e.left), of: num(e.allotted) }) }),
          sold ? ` · ${t("seller.sold_gmv", { n: num(sold.units_sold), gmv: dong(sold.gmv) })}` : null),
        h("div", { class: "muted small", text: `${group(p.group)} · ${p.commune}, ${p.district} · ${p.origin_document} · ${p.quality_label}` }));
    }));
  }

  function renderFeed() {
    const items = conn.state.feed.slice(-8).reverse();
    fill(el.feed, items.length ? items.map((it) => h("li", null,
      h("span", { text: `${it.quantity} × ${conn.entry(it.product_id)?.product.name ?? ""}` }),
      h("span", { class: "r", text: `${dong(it.unit_price)} · ${hhmm(it.at)}` })))
      : h("li", { class: "muted", text: t("viewer.feed_empty") }));
  }

  function renderClose(st) {
    if (st !== "live") { fill(el.close); return; }
    if (el.close.dataset.step === (closing ? "confirm" : "ask")) return;
    el.close.dataset.step = closing ? "confirm" : "ask";
    if (!closing) {
      fill(el.close, h("h2", { text: t("seller.close_title") }),
        h("button", { type: "button", class: "danger", "data-testid": "close", onclick: () => { closing = true; renderClose(status_()); $("[data-testid=close-confirm]", el.close)?.focus(); }, text: t("seller.close") }));
      return;
    }
    fill(el.close, h("h2", { text: t("seller.close_title") }),
      h("p", { class: "notice info", role: "alertdialog", text: t("seller.close_confirm") }),
      h("div", { class: "row" },
        h("button", { type: "button", class: "danger", "data-testid": "close-confirm", onclick: async (ev) => {
          ev.target.disabled = true;
          try { show = await api.closeShow(id); notice("ok", t("seller.closed")); } catch (e) { notice("err", errorText(e)); ev.target.disabled = false; }
        }, text: t("seller.close_yes") }),
        h("button", { type: "button", class: "secondary", onclick: () => { closing = false; renderClose(status_()); }, text: t("seller.close_no") })));
  }

  async function settlement() {
    const line = h("p", { class: "notice wait", "data-testid": "settlement", text: t("seller.settling") });
    fill(el.report, h("h2", { text: t("seller.report") }), line);
    for (;;) {
      try {
        const r = await api.showReport(id);
        say(line, "ok", t("seller.settled", { at: hhmm(r.settled_at) }));
        el.report.append(reportView(r), csvButton(t("seller.download_csv"), `show-${id}-report.csv`, () => api.showReportCsv(id)));
        return;
      } catch (e) {
        if (!(e instanceof ApiError) || e.code !== "not_settled") { say(line, "err", errorText(e)); return; }
        line.textContent = t("seller.settling");
      }
      await new Promise((r) => setTimeout(r, SETTLE_POLL_MS));
    }
  }

  conn.connect();
  render();
}

/** The show report: totals and one row per product. @param {any} r */
function reportView(r) {
  const tt = r.totals;
  return h("div", null,
    h("div", { class: "stats" },
      h("div", { class: "stat" }, h("b", { "data-testid": "report-revenue", text: dong(tt.revenue) }), h("span", { text: t("report.revenue") })),
      h("div", { class: "stat" }, h("b", { text: num(tt.units) }), h("span", { text: t("report.units") })),
      h("div", { class: "stat" }, h("b", { text: num(r.orders) }), h("span", { text: t("report.orders") })),
      h("div", { class: "stat" }, h("b", { text: num(r.buyers) }), h("span", { text: t("report.buyers") })),
      h("div", { class: "stat" }, h("b", { text: dong(tt.discount) }), h("span", { text: t("report.discount") })),
      h("div", { class: "stat" }, h("b", { text: num(r.peak_viewers) }), h("span", { text: t("report.peak") }))),
    h("div", { class: "scroll" }, h("table", null,
      h("thead", null, h("tr", null, h("th", { text: t("report.product") }), h("th", { class: "n", text: t("report.units") }), h("th", { class: "n", text: t("report.flash_units") }), h("th", { class: "n", text: t("report.revenue") }), h("th", { class: "n", text: t("report.sell_through") }))),
      h("tbody", null, r.products.map((p) => h("tr", null, h("td", { text: p.name }), h("td", { class: "n", text: num(p.units) }), h("td", { class: "n", text: num(p.flash_units) }),
        h("td", { class: "n", text: dong(p.revenue) }), h("td", { class: "n", text: p.sell_through_bp == null ? "—" : `${(p.sell_through_bp / 100).toFixed(1)}%` })))))));
}
