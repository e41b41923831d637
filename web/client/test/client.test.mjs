// The protocol client against the real server: HTTP API errors, a seller and viewers on one
// show, claims with idempotent ids, cancels, resume after a dropped connection, flash prices.
// Node 20 needs `--experimental-websocket` (web/test/run.sh passes it).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Api, ApiError, CommandError, ShowConnection, connectShow, newClaimId } from "../nightmarket.js";
import { startServer, productBody, until } from "../../test/server.mjs";

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
let op, sellerId, honey, tea, showId, sellerToken;

before(async () => {
  srv = await startServer();
  op = new Api({ baseUrl: srv.url, token: await srv.token("operator", "office") });
  const seller = await op.createSeller({ name: "HTX Mật ong Ba Vì", district: "Ba Vì" });
  sellerId = seller.id;
  honey = await op.createProduct(productBody(sellerId, "Mật ong hoa nhãn Ba Vì 500ml", 250000));
  tea = await op.createProduct(productBody(sellerId, "Chè Shan tuyết Ba Vì 200g", 180000, 3));
  const show = await op.createShow({
    seller_id: sellerId, title: "Đêm chợ OCOP Ba Vì",
    lineup: [{ product_id: honey.id, stock: 5, buyer_limit: 5 }, { product_id: tea.id, stock: 50, buyer_limit: 3 }],
  });
  showId = show.id;
  sellerToken = await srv.token("seller", sellerId);
});

after(async () => { await srv?.stop(); });

/** @param {string} token @param {object} [extra] */
function open(token, extra = {}) {
  return connectShow({ showId, baseUrl: srv.url, token, minBackoffMs: 100, maxBackoffMs: 1000, ...extra });
}

function waitState(conn, pred, what, ms = 3000) {
  return until(() => pred(conn.state), ms, what);
}

test("HTTP errors carry the server's code and status", async () => {
  const viewer = new Api({ baseUrl: srv.url, token: await srv.token("viewer", "buyer-http") });
  await assert.rejects(viewer.createSeller({ name: "x" }), (e) => e instanceof ApiError && e.status === 403 && e.code === "forbidden");
  await assert.rejects(op.createSeller({ name: "   " }), (e) => e instanceof ApiError && e.status === 400 && e.code === "bad_request");
  await assert.rejects(op.show("no-such-show"), (e) => e instanceof ApiError && e.status === 404 && e.code === "not_found");
  const anonymous = new Api({ baseUrl: srv.url });
  await assert.rejects(anonymous.createSeller({ name: "x" }), (e) => e instanceof ApiError && e.code === "unauthorized");
  const offline = new Api({ baseUrl: "http://127.0.0.1:9" });
  await assert.rejects(offline.shows(), (e) => e instanceof ApiError && e.status === 0 && e.code === "network");
  const shows = await anonymous.shows();
  assert.ok(shows.some((s) => s.id === showId), "shows are public");
});

test("lists page with a cursor; all() follows Next-Cursor to the last page", async () => {
  for (let n = 0; n < 3; n++) await op.createSeller({ name: `HTX trang ${n}`, district: "Ba Vì" });
  const every = await op.sellers();
  assert.ok(every.length >= 4, "all() reads every seller");
  const walked = [];
  let cursor = null;
  do {
    const p = await op.page("/api/sellers", { limit: 2, cursor });
    assert.ok(p.items.length <= 2, "a page holds at most its limit");
    walked.push(...p.items);
    cursor = p.next;
  } while (cursor);
  assert.deepEqual(walked.map((s) => s.id), every.map((s) => s.id), "pages in order, each seller once");
  const last = await op.page("/api/sellers", { limit: 1000 });
  assert.equal(last.next, null, "the last page has no cursor");
  await assert.rejects(op.page("/api/sellers", { cursor: "not-a-cursor" }), (e) => e instanceof ApiError && e.status === 400 && e.code === "bad_cursor");
  await assert.rejects(op.page("/api/sellers", { limit: 0 }), (e) => e instanceof ApiError && e.code === "bad_request");
});

test("a viewer and the seller follow one show; claims, duplicates, cancels and flash prices", async () => {
  await op.goLive(showId);
  const seller = open(sellerToken);
  const lan = open(await srv.token("viewer", "buyer-lan"));
  const minh = open(await srv.token("viewer", "buyer-minh"));
  try {
    await waitState(seller, (s) => s.connection === "open" && s.show?.status === "live", "seller snapshot");
    await waitState(lan, (s) => s.show?.status === "live" && s.lineup.length === 2, "viewer snapshot");
    assert.equal(lan.state.role, "viewer");
    assert.equal(lan.state.subject, "buyer-lan");
    assert.equal(seller.state.role, "seller");

    // Seller commands are matched to their ack by req; refusals reject with the code.
    const ack = await seller.pin(honey.id);
    assert.equal(typeof ack.seq, "number");
    await waitState(lan, (s) => s.pinned === honey.id, "pin reaches the viewer");
    assert.equal(lan.price(), 250000);
    await assert.rejects(seller.startFlash({ price: 300000, durationS: 60 }), (e) => e instanceof CommandError && e.code === "price_above_list");
    await assert.rejects(lan.pin(tea.id), (e) => e instanceof CommandError && e.code === "forbidden");

    // A flash with a countdown: the price switches at starts_at without an event.
    await seller.startFlash({ price: 199000, durationS: 60, quantityCap: 3, countdownS: 1 });
    await waitState(lan, (s) => s.flash && s.flash.price === 199000, "flash_started");
    assert.equal(lan.price(), 250000, "list price during the countdown");
    await until(() => lan.price() === 199000, 3000, "flash price after the countdown");

    // Claim: accepted; the stock drops for the seller and the other viewer within a tick.
    const claimId = newClaimId();
    const r = await lan.claim({ quantity: 2, claimId });
    assert.equal(r.outcome, "accepted");
    assert.equal(r.unit_price, 199000);
    assert.equal(r.stock_left, 3);
    assert.equal(lan.held(honey.id), 2);
    await waitState(seller, (s) => s.lineup[0].left === 3, "seller sees the stock drop", 1000);
    await waitState(minh, (s) => s.lineup[0].left === 3 && s.feed.length >= 1 && s.totalClaims >= 1, "feed reaches the other viewer", 1000);
    assert.equal(minh.state.feed.at(-1).quantity, 2);

    // The same claim id again is answered `duplicate`, never a second claim.
    const again = await lan.claim({ quantity: 2, claimId });
    assert.equal(again.outcome, "duplicate");
    assert.equal(lan.state.myClaims.length, 1);

    // Over the cap: refused with what is available.
    const over = await minh.claim({ quantity: 2 });
    assert.equal(over.outcome, "refused");
    assert.equal(over.reason, "sold_out");
    assert.equal(over.available, 1);

    // A stale price is refused with the current price, which the client then offers.
    await seller.endFlash();
    await waitState(minh, (s) => s.flash == null, "flash_ended");
    const stale = await minh.claim({ quantity: 1, price: 199000 });
    assert.equal(stale.reason, "stale_price");
    assert.equal(minh.price(), 250000);

    // Cancel gives the units back.
    const c = await lan.cancel(claimId);
    assert.equal(c.outcome, "cancelled");
    assert.equal(c.stock_left, 5);
    assert.equal(lan.state.myClaims[0].status, "cancelled");
    assert.equal(lan.held(honey.id), 0);
    await waitState(seller, (s) => s.lineup[0].left === 5, "seller sees the units back", 1000);
  } finally {
    seller.close(); lan.close(); minh.close();
  }
});

test("a dropped connection resumes with last_seq, and a claim made meanwhile goes through once", async () => {
  const seller = open(sellerToken);
  const hoa = open(await srv.token("viewer", "buyer-hoa"));
  try {
    await waitState(hoa, (s) => s.connection === "open" && s.lastSeq != null, "viewer open");
    await waitState(seller, (s) => s.connection === "open", "seller open");
    const before = hoa.state.lastSeq;
    // Drop the viewer's socket; the seller pins tea while it is away.
    const changes = [];
    hoa.on("connection", (c) => changes.push(c));
    hoa.ws.close();
    await seller.pin(tea.id);
    // A claim asked while disconnected is sent on the next hello.
    const pending = hoa.claim({ productId: tea.id, quantity: 1, price: 180000 });
    assert.equal(hoa.pendingClaims().length, 1);
    await waitState(hoa, (s) => s.connection === "open" && s.reconnects === 1, "reconnected");
    assert.ok(changes.includes("reconnecting"), "the page is told it is reconnecting");
    assert.equal(hoa.state.resumed, true, "resumed, no snapshot");
    await waitState(hoa, (s) => s.pinned === tea.id && s.lastSeq > before, "missed pin replayed");
    const r = await pending;
    assert.equal(r.outcome, "accepted");
    assert.equal(hoa.pendingClaims().length, 0);

    // A fresh session of the same buyer retrying that claim id gets `duplicate`: exactly once.
    const fresh = open(await srv.token("viewer", "buyer-hoa"));
    try {
      await waitState(fresh, (s) => s.myClaims.length === 1, "my_claims in the snapshot");
      const dup = await fresh.claim({ claimId: r.claim_id, productId: tea.id, quantity: 1, price: 180000 });
      assert.equal(dup.outcome, "duplicate");
      assert.equal(fresh.state.myClaims.length, 1);
    } finally {
      fresh.close();
    }
  } finally {
    seller.close(); hoa.close();
  }
});

test("sold out: the waitlist, or a clear refusal from a server without it", async (t) => {
  const show = await op.createShow({
    seller_id: sellerId, title: "Phiên chờ hàng",
    lineup: [{ product_id: honey.id, stock: 1, buyer_limit: 1 }],
  });
  await op.goLive(show.id);
  const opts = { showId: show.id, baseUrl: srv.url, minBackoffMs: 100 };
  const seller = connectShow({ ...opts, token: sellerToken });
  const first = connectShow({ ...opts, token: await srv.token("viewer", "buyer-first") });
  const second = connectShow({ ...opts, token: await srv.token("viewer", "buyer-second") });
  try {
    await waitState(seller, (s) => s.connection === "open", "seller open");
    await seller.pin(honey.id);
    await waitState(first, (s) => s.pinned === honey.id, "pinned");
    const got = await first.claim({ quantity: 1 });
    assert.equal(got.outcome, "accepted");
    await waitState(second, (s) => s.lineup[0].left === 0, "sold out reaches the second viewer");
    const refused = await second.claim({ quantity: 1 });
    assert.equal(refused.reason, "sold_out");
    let joined;
    try {
      joined = await second.waitlistJoin(honey.id, 1);
    } catch (e) {
      assert.ok(e instanceof CommandError);
      assert.equal(e.code, "unknown_type", "a server without waitlists says unknown_type");
      t.diagnostic("this server has no waitlist messages yet: promotion not checked");
      return;
    }
    assert.equal(joined.outcome, "joined");
    assert.equal(joined.position, 1);
    assert.deepEqual(second.state.myWaitlist.map((w) => w.product_id), [honey.id]);
    const promoted = new Promise((r) => second.on("waitlist", (m) => m.outcome === "promoted" && r(m)));
    await first.cancel(got.claim_id);
    const p = await promoted;
    assert.ok(p.claim_id);
    await waitState(second, (s) => s.myClaims.some((c) => c.claim_id === p.claim_id && c.status === "accepted") && s.myWaitlist.length === 0, "promoted claim is mine");
  } finally {
    seller.close(); first.close(); second.close();
  }
});

test("closing the show reaches every connection; after close claims are refused", async () => {
  const seller = open(sellerToken);
  const viewer = open(await srv.token("viewer", "buyer-late"));
  try {
    await waitState(viewer, (s) => s.connection === "open" && s.show, "viewer open");
    await op.closeShow(showId);
    await waitState(viewer, (s) => s.show.status === "closed" && s.pinned == null, "show_closed");
    await waitState(seller, (s) => s.show.status === "closed", "seller sees the close");
    const r = await viewer.claim({ productId: tea.id, quantity: 1, price: 180000 });
    assert.equal(r.reason, "show_not_live");
  } finally {
    seller.close(); viewer.close();
  }
});

test("a missing show is reported once, not retried forever", async () => {
  const conn = connectShow({ showId: "no-such-show", baseUrl: srv.url, token: await srv.token("viewer", "buyer-x"), minBackoffMs: 50 });
  try {
    await waitState(conn, (s) => s.connection === "not_found", "not_found", 5000);
  } finally {
    conn.close();
  }
});

test("a refused token is reported as expired, not retried forever", async () => {
  const conn = connectShow({ showId, baseUrl: srv.url, token: "not-a-token", minBackoffMs: 50 });
  try {
    await waitState(conn, (s) => s.connection === "expired", "expired", 5000);
  } finally {
    conn.close();
  }
});

// The close codes a test cannot make the real server send on demand (4000 when a connection
// lags 512 events, 4100 when a token expires mid-session), played by a scripted socket.
test("close 4000 reconnects at once with last_seq; 41xx is final", async () => {
  const urls = [];
  const sockets = [];
  class ScriptedSocket {
    constructor(url) { this.url = url; this.readyState = 1; urls.push(url); sockets.push(this); queueMicrotask(() => this.start()); }
    start() {
      const n = sockets.length;
      this.deliver({ type: "hello", protocol: 1, show_id: "s", role: "viewer", subject: "b", start: n === 1 ? "snapshot" : "resume", limits: null });
      if (n === 1) {
        this.deliver({ type: "snapshot", seq: 7, server_time: Date.now(), show: { id: "s", title: "t", seller_id: "x", seller_name: "y", status: "live" },
          pinned: null, flash: null, price: null, lineup: [], my_claims: [], viewers: 3 });
        this.end(4000);
      } else if (n === 2) {
        this.deliver({ type: "event", seq: 8, at: Date.now(), event: { kind: "a_future_kind" } });
        this.deliver({ type: "event", seq: 10, at: Date.now(), event: { kind: "show_live" } }); // a gap
      } else {
        this.end(4100);
      }
    }
    deliver(m) { this.onmessage?.({ data: JSON.stringify(m) }); }
    end(code) { this.readyState = 3; this.onclose?.({ code }); }
    send() {}
    close() { this.end(1000); }
  }
  const conn = new ShowConnection({ showId: "s", baseUrl: "http://127.0.0.1:1", token: "t", WebSocket: /** @type {any} */ (ScriptedSocket), minBackoffMs: 5 });
  conn.connect();
  try {
    await waitState(conn, (s) => s.connection === "expired", "expired after 4100");
    assert.equal(urls.length, 3);
    assert.ok(!urls[0].includes("last_seq"));
    assert.match(urls[1], /last_seq=7/, "resync resumes from the snapshot's seq");
    assert.match(urls[2], /last_seq=8/, "an unknown event kind still advances the sequence; the gap is not applied");
    assert.equal(conn.state.lastSeq, 8);
  } finally {
    conn.close();
  }
});

/** A WebSocket stand-in that delivers `frames` once opened. @param {object[]} frames */
function scriptedSocket(frames) {
  return class {
    constructor(url) { this.url = url; this.readyState = 1; queueMicrotask(() => { for (const m of frames) this.deliver(m); }); }
    deliver(m) { this.onmessage?.({ data: JSON.stringify(m) }); }
    end(code) { this.readyState = 3; this.onclose?.({ code }); }
    send() {}
    close() { this.end(1000); }
  };
}

const SCRIPTED_HELLO = { type: "hello", protocol: 1, show_id: "s", role: "viewer", subject: "b", start: "snapshot", limits: null };

/** @param {object} state */
function scriptedSnapshot(state) {
  return { type: "snapshot", seq: 7, server_time: Date.now(), show: { id: "s", title: "t", seller_id: "x", seller_name: "y", status: "live" },
    pinned: null, flash: null, price: null, lineup: [], my_claims: [], viewers: 3, ...state };
}

/** @param {object[]} frames */
function scriptedConnection(frames) {
  return new ShowConnection({ showId: "s", baseUrl: "http://127.0.0.1:1", token: "t", WebSocket: /** @type {any} */ (scriptedSocket(frames)), minBackoffMs: 5 });
}

test("a catch_up replaces the show state and the sequence; later events follow it", async () => {
  const conn = scriptedConnection([
    SCRIPTED_HELLO,
    scriptedSnapshot({ pinned: "p1", price: 100 }),
    { type: "event", seq: 8, at: Date.now(), event: { kind: "unpinned", product_id: "p1" } },
    // Fell behind: events 9..40 are replaced by the state as of 40.
    { type: "catch_up", seq: 40, status: "live", pinned: "p2", flash: null, price: 250 },
    { type: "event", seq: 41, at: Date.now(), event: { kind: "show_closed", final_stock: [] } },
  ]);
  const caught = [];
  conn.on("catch_up", (m) => caught.push(m.seq));
  conn.connect();
  try {
    await waitState(conn, (s) => s.lastSeq === 41, "the event after the catch-up applied");
    assert.deepEqual(caught, [40]);
    assert.equal(conn.state.show.status, "closed");
    assert.equal(conn.state.reconnects, 0, "no reconnect: the catch-up bridged the gap");
  } finally {
    conn.close();
  }
});

test("a catch_up's pin and price stand until the next event", async () => {
  const conn = scriptedConnection([
    SCRIPTED_HELLO,
    scriptedSnapshot({}),
    { type: "catch_up", seq: 12, status: "live", pinned: "p2", flash: null, price: 250 },
  ]);
  conn.connect();
  try {
    await waitState(conn, (s) => s.lastSeq === 12, "caught up");
    assert.equal(conn.state.pinned, "p2");
    assert.equal(conn.price(), 250);
  } finally {
    conn.close();
  }
});
