// Nightmarket protocol client: the HTTP API and the WebSocket session of one show, in one
// dependency-free ES module. Every console page uses it, and a partner site may embed it.
//
// - `Api`: fetch() over /api/... with the cookie session (same-origin) or a bearer token;
//   every non-2xx answer becomes an `ApiError` carrying the server's stable `code`.
// - `ShowConnection`: one show's WebSocket. It keeps a state object (show, pinned product,
//   flash, price, stock, feed, my claims, my waitlist, viewers) up to date from hello /
//   snapshot / event / stock / feed / viewers frames, tracks the event sequence, reconnects
//   with jittered backoff and resumes with `last_seq`, and retries claims with the same
//   client-generated claim id until the server gives a definite answer.
//
// docs/protocol.md is the reference for every message; docs/client.md documents this module.

/** Protocol version this client speaks (`hello.protocol`). */
export const PROTOCOL = 1;

/** Feed items kept for the "just sold" ticker. */
const FEED_KEPT = 50;
/** Attempts for a claim or cancel refused `unavailable`/`rate_limited` before giving up. */
const MAX_RETRIES = 6;
/** A claim, cancel or command without an answer for this long on an open socket: the link is
 * probably dead, so the socket is recycled (claims and cancels are then resent). */
const ANSWER_TIMEOUT_MS = 8000;

/**
 * An HTTP API refusal, or a network failure (`status` 0, `code` "network").
 */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {unknown} [details]
   */
  constructor(status, code, message, details) {
    super(message || code);
    this.name = "ApiError";
    /** HTTP status (0: no answer). */
    this.status = status;
    /** Stable error code from docs/protocol.md §6 (or a contract code such as `csrf_rejected`). */
    this.code = code;
    /** Structured detail (`not_admitted`: `[{product_id, reason, message}]`). */
    this.details = details;
  }
}

/**
 * A seller command or waitlist request the server refused (an `error` frame), or one that
 * lost its connection before an answer (`code` "connection_lost").
 */
export class CommandError extends Error {
  /** @param {string} code @param {string} [message] */
  constructor(code, message) {
    super(message || code);
    this.name = "CommandError";
    this.code = code;
  }
}

/** A fresh claim id (a UUID v4). */
export function newClaimId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  c.getRandomValues(b);
  b[6] = (b[6] & 15) | 64;
  b[8] = (b[8] & 63) | 128;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function defaultBase() {
  const loc = globalThis.location;
  return loc && /^https?:$/.test(loc.protocol) ? loc.origin : "";
}

// ---------------------------------------------------------------------------------------
// HTTP API
// ---------------------------------------------------------------------------------------

/**
 * @typedef {object} ApiOptions
 * @property {string} [baseUrl] origin of the server, e.g. "https://market.example.vn"; default
 *   the page's origin
 * @property {string|null} [token] a bearer token; without one the cookie session is used
 * @property {typeof fetch} [fetch] a fetch implementation (default the global one)
 */

/** Most items a list endpoint returns in one page (the server's `MAX_PAGE_SIZE`). */
export const MAX_PAGE_SIZE = 1000;

/** The HTTP API. Methods resolve with the parsed JSON body and reject with `ApiError`. */
export class Api {
  /** @param {ApiOptions} [options] */
  constructor(options = {}) {
    this.baseUrl = (options.baseUrl ?? defaultBase()).replace(/\/$/, "");
    this.token = options.token ?? null;
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /**
   * One request. `body` is sent as JSON; `query` values that are null/undefined are left out.
   * @param {string} method
   * @param {string} path
   * @param {{body?: unknown, query?: Record<string, string|number|boolean|null|undefined>, text?: boolean, page?: boolean}} [opts]
   * @returns {Promise<any>} the JSON body (null for 202/204), or the text with `text: true`, or
   *   with `page: true` `{items, next}`: the body and the `Next-Cursor` header (null on the last page)
   */
  async request(method, path, opts = {}) {
    let url = this.baseUrl + path;
    if (opts.query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(opts.query)) if (v != null) q.set(k, String(v));
      const s = q.toString();
      if (s) url += (url.includes("?") ? "&" : "?") + s;
    }
    /** @type {Record<string, string>} */
    const headers = { Accept: opts.text ? "text/csv, text/plain, */*" : "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    /** @type {RequestInit} */
    const init = { method, headers, credentials: "same-origin" };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    let res;
    try {
      res = await this.fetchImpl(url, init);
    } catch (e) {
      throw new ApiError(0, "network", e instanceof Error ? e.message : String(e));
    }
    if (!res.ok) {
      let code = `http_${res.status}`, message = res.statusText, details;
      try {
        const j = await res.json();
        if (j && j.error) ({ code, message, details } = j.error);
      } catch {
        // Not JSON (a 405 has an empty body): the status code stands for it.
      }
      throw new ApiError(res.status, code, message, details);
    }
    if (opts.text) return res.text();
    if (res.status === 204 || res.status === 202) return null;
    const text = await res.text();
    const body = text ? JSON.parse(text) : null;
    if (opts.page) return { items: body ?? [], next: res.headers.get("Next-Cursor") };
    return body;
  }

  /**
   * One page of a list endpoint (docs/protocol.md §9, "Lists: pages"). `cursor` is the `next`
   * of the page before, passed back untouched; `next` is null on the last page.
   * @param {string} path
   * @param {{limit?: number, cursor?: string|null, query?: Record<string, string|number|boolean|null|undefined>}} [q]
   * @returns {Promise<{items: any[], next: string|null}>}
   */
  page(path, q = {}) {
    const query = { ...(q.query ?? {}), limit: q.limit, cursor: q.cursor ?? undefined };
    return this.request("GET", path, { query, page: true });
  }

  /**
   * Every item of a list endpoint: its pages of `MAX_PAGE_SIZE` items, following `Next-Cursor`
   * to the last. Not for a market's nights, whose calendar may never end.
   * @param {string} path
   * @param {Record<string, string|number|boolean|null|undefined>} [query]
   * @returns {Promise<any[]>}
   */
  async all(path, query) {
    const items = [];
    let cursor = null;
    do {
      const p = await this.page(path, { limit: MAX_PAGE_SIZE, cursor, query });
      items.push(...p.items);
      cursor = p.next;
    } while (cursor);
    return items;
  }

  /** @param {string} path @param {any} [query] */ get(path, query) { return this.request("GET", path, { query }); }
  /** @param {string} path @param {unknown} [body] */ post(path, body) { return this.request("POST", path, { body }); }

  // --- sign-in and sessions ---
  me() { return this.get("/api/me"); }
  /** @param {string} code */ redeem(code) { return this.post("/api/auth/redeem", { code }); }
  /** @param {string} displayName */ guest(displayName) { return this.post("/api/auth/guest", { display_name: displayName }); }
  signout() { return this.post("/api/auth/signout"); }
  /** @param {"seller"|"operator"} role @param {string} subject */
  createInvite(role, subject) { return this.post("/api/invites", { role, subject }); }

  // --- catalog ---
  sellers() { return this.all("/api/sellers"); }
  /** @param {string} id */ seller(id) { return this.get(`/api/sellers/${enc(id)}`); }
  /** @param {{name: string, kind?: string, district?: string}} body */ createSeller(body) { return this.post("/api/sellers", body); }
  /** @param {string} sellerId */ products(sellerId) { return this.all("/api/products", { seller_id: sellerId }); }
  /** @param {string} id */ product(id) { return this.get(`/api/products/${enc(id)}`); }
  /** @param {object} body */ createProduct(body) { return this.post("/api/products", body); }

  // --- shows ---
  shows() { return this.all("/api/shows"); }
  /** @param {string} id */ show(id) { return this.get(`/api/shows/${enc(id)}`); }
  /** @param {object} body */ createShow(body) { return this.post("/api/shows", body); }
  /** @param {string} id */ goLive(id) { return this.post(`/api/shows/${enc(id)}/live`); }
  /** @param {string} id */ closeShow(id) { return this.post(`/api/shows/${enc(id)}/close`); }
  /** @param {string} id */ liveStats(id) { return this.get(`/api/shows/${enc(id)}/live-stats`); }
  /** @param {string} id */ transitions(id) { return this.all(`/api/shows/${enc(id)}/transitions`); }
  /** @param {string} sellerId */ sellerShows(sellerId) { return this.all(`/api/sellers/${enc(sellerId)}/shows`); }
  /** @param {string} id */ showReport(id) { return this.get(`/api/shows/${enc(id)}/report`); }
  /** @param {string} id @returns {Promise<string>} */
  showReportCsv(id) { return this.request("GET", `/api/shows/${enc(id)}/report`, { query: { format: "csv" }, text: true }); }

  // --- markets and nights ---
  markets() { return this.all("/api/markets"); }
  /** @param {string} id */ market(id) { return this.get(`/api/markets/${enc(id)}`); }
  /** @param {object} body */ createMarket(body) { return this.post("/api/markets", body); }
  /** One page of nights: the calendar may never end, so page with `page()` to read on.
   * @param {string} id @param {{from?: string, after?: number, limit?: number}} [q] */
  nights(id, q) { return this.get(`/api/markets/${enc(id)}/nights`, q); }
  /** @param {string} id */ exceptions(id) { return this.all(`/api/markets/${enc(id)}/exceptions`); }
  /** @param {string} id @param {object} body */ createException(id, body) { return this.post(`/api/markets/${enc(id)}/exceptions`, body); }
  /** @param {string} id @param {{product_id: string, approved: boolean, reason?: string}} body */
  decide(id, body) { return this.post(`/api/markets/${enc(id)}/admissions`, body); }
  /** @param {string} id @param {string} [productId] */
  decisions(id, productId) { return this.all(`/api/markets/${enc(id)}/admissions`, { product_id: productId }); }
  /** @param {string} id @param {string} date @param {string} statement */
  commit(id, date, statement) { return this.post(`/api/markets/${enc(id)}/nights/${enc(date)}/commitments`, { statement }); }
  /** @param {string} id @param {string} date */ nightShows(id, date) { return this.all(`/api/markets/${enc(id)}/nights/${enc(date)}/shows`); }
  /** @param {string} id @param {string} date */ nightCommitments(id, date) { return this.all(`/api/markets/${enc(id)}/nights/${enc(date)}/commitments`); }
  /** @param {string} id @param {string} date @param {object} body */
  scheduleShow(id, date, body) { return this.post(`/api/markets/${enc(id)}/nights/${enc(date)}/shows`, body); }
  /** @param {string} id @param {string} date */ nightReport(id, date) { return this.get(`/api/markets/${enc(id)}/nights/${enc(date)}/report`); }
  /** @param {string} id @param {string} date @returns {Promise<string>} */
  nightReportCsv(id, date) {
    return this.request("GET", `/api/markets/${enc(id)}/nights/${enc(date)}/report`, { query: { format: "csv" }, text: true });
  }
  warnings() { return this.all("/api/schedule/warnings"); }

  // --- orders ---
  myOrders() { return this.all("/api/me/orders"); }
  myCheckouts() { return this.all("/api/me/checkouts"); }

  // --- webhooks ---
  webhooks() { return this.all("/api/webhooks"); }
  /** @param {{url: string, events: string[]}} body */ createWebhook(body) { return this.post("/api/webhooks", body); }
  /** @param {string} id */ deleteWebhook(id) { return this.request("DELETE", `/api/webhooks/${enc(id)}`); }
  /** The newest page of a webhook's deliveries (`page()` reads on). @param {string} id */
  deliveries(id) { return this.get(`/api/webhooks/${enc(id)}/deliveries`); }
  /** @param {string} id @param {string} delivery */
  redeliver(id, delivery) { return this.post(`/api/webhooks/${enc(id)}/deliveries/${enc(delivery)}/redeliver`); }
}

/** @param {string} s */
function enc(s) { return encodeURIComponent(s); }

// ---------------------------------------------------------------------------------------
// WebSocket session
// ---------------------------------------------------------------------------------------

/**
 * @typedef {object} ShowState
 * @property {"idle"|"connecting"|"open"|"reconnecting"|"expired"|"not_found"|"closed"} connection
 * @property {boolean} resumed the last connection resumed (no reload, no snapshot needed)
 * @property {number} reconnects connections opened after the first
 * @property {number} failures consecutive attempts that ended before a `hello`
 * @property {string|null} role @property {string|null} subject
 * @property {{max_frame_bytes: number, messages_per_second: number, message_burst: number, max_claim_quantity: number}|null} limits
 * @property {{id: string, title: string, seller_id: string, seller_name: string, status: string}|null} show
 * @property {string|null} pinned
 * @property {any|null} flash the flash on the pinned product (fields of `flash_started`, `sold` kept current)
 * @property {Array<{product: any, allotted: number, left: number, buyer_limit: number}>} lineup
 * @property {Array<{claim_id: string, product_id: string, quantity: number, unit_price: number, status: string, at: number}>} myClaims
 * @property {Array<{product_id: string, position: number|null, quantity: number}>} myWaitlist
 * @property {Array<{product_id: string, quantity: number, unit_price: number, at: number}>} feed newest last
 * @property {number} totalClaims
 * @property {number|null} viewers
 * @property {number|null} lastSeq
 * @property {number} clockOffset server time minus local time, ms
 */

/**
 * @typedef {object} ConnectOptions
 * @property {string} showId
 * @property {string} [baseUrl] http(s) origin; default the page's origin
 * @property {string|null} [token] a bearer token sent as `?token=` (partners, API clients);
 *   without one the cookie session is used
 * @property {typeof WebSocket} [WebSocket] constructor (default the global one)
 * @property {number} [minBackoffMs] first reconnect delay (default 500)
 * @property {number} [maxBackoffMs] longest reconnect delay (default 15000)
 * @property {number} [answerTimeoutMs] see ANSWER_TIMEOUT_MS
 * @property {Api} [api] used to tell a missing show from a refused token when the socket
 *   closes before `hello`
 */

/** One show's WebSocket session. Create it, subscribe with `on`, then `connect()`. */
export class ShowConnection {
  /** @param {ConnectOptions} options */
  constructor(options) {
    if (!options || !options.showId) throw new TypeError("showId is required");
    this.options = options;
    this.showId = options.showId;
    this.baseUrl = (options.baseUrl ?? defaultBase()).replace(/\/$/, "");
    this.token = options.token ?? null;
    this.WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WS !== "function") {
      throw new TypeError("no WebSocket implementation: pass options.WebSocket (Node 20: the ws package, or --experimental-websocket)");
    }
    this.minBackoff = options.minBackoffMs ?? 500;
    this.maxBackoff = options.maxBackoffMs ?? 15000;
    this.answerTimeout = options.answerTimeoutMs ?? ANSWER_TIMEOUT_MS;
    this.api = options.api ?? new Api({ baseUrl: this.baseUrl, token: this.token });
    /** @type {ShowState} */
    this.state = {
      connection: "idle", resumed: false, reconnects: 0, failures: 0,
      role: null, subject: null, limits: null, show: null, pinned: null, flash: null,
      lineup: [], myClaims: [], myWaitlist: [], feed: [], totalClaims: 0, viewers: null,
      lastSeq: null, clockOffset: 0,
    };
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
    /** @type {WebSocket|null} */
    this.ws = null;
    this.ready = false; // `hello` received on the current socket
    this.stopped = false;
    this.everOpened = false;
    this.attempt = 0;
    this.retryTimer = null;
    this.watchdog = null;
    /** price to show until the next event: the snapshot's or a `stale_price` refusal's */
    this.priceOverride = null;
    /** @type {Map<string, {msg: any, resolve: Function, tries: number, sentAt: number}>} */
    this.claims = new Map();
    /** @type {Map<string, {msg: any, resolve: Function, tries: number, sentAt: number}>} */
    this.cancels = new Map();
    /** @type {Map<string, {resolve: Function, reject: Function, sentAt: number}>} */
    this.commands = new Map();
    this.reqCounter = 0;
  }

  // --- subscriptions ---

  /**
   * Subscribe. Kinds: "change" (state changed; arg: the state), "message" (every frame),
   * "event" (sequenced event frame), "claim" (a claim_result), "cancel" (a cancel_result),
   * "waitlist" (a waitlist_result, including unsolicited `promoted`/`skipped`), "error" (an
   * `error` frame answering no pending command), "connection" (connection state changed).
   * @param {string} kind @param {Function} fn @returns {() => void} unsubscribe
   */
  on(kind, fn) {
    let set = this.listeners.get(kind);
    if (!set) this.listeners.set(kind, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  /** @param {string} kind @param {...any} args */
  emit(kind, ...args) {
    const set = this.listeners.get(kind);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(...args); } catch (e) { console.error(e); }
    }
  }

  changed() { this.emit("change", this.state); }

  /** @param {ShowState["connection"]} c */
  setConnection(c) {
    if (this.state.connection === c) return;
    this.state.connection = c;
    this.emit("connection", c);
    this.changed();
  }

  // --- lifecycle ---

  /** Open the session (again, after `close()`). */
  connect() {
    this.stopped = false;
    this.open();
    if (!this.watchdog) this.watchdog = setInterval(() => this.checkAnswers(), 1000);
    return this;
  }

  /** End the session for good; pending claims stay unanswered and their promises pending. */
  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.watchdog);
    this.watchdog = null;
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    if (ws) { try { ws.close(1000); } catch { /* already closing */ } }
    this.failCommands("connection_lost");
    this.setConnection("closed");
  }

  url() {
    const base = this.baseUrl || "";
    const wsBase = base.replace(/^http/, "ws");
    const q = new URLSearchParams();
    if (this.token) q.set("token", this.token);
    if (this.state.lastSeq != null && this.state.lastSeq > 0) q.set("last_seq", String(this.state.lastSeq));
    const qs = q.toString();
    return `${wsBase}/ws/shows/${enc(this.showId)}${qs ? "?" + qs : ""}`;
  }

  open() {
    clearTimeout(this.retryTimer);
    if (this.stopped) return;
    this.ready = false;
    this.setConnection(this.everOpened ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new this.WS(this.url());
    } catch {
      this.scheduleReconnect(false);
      return;
    }
    this.ws = ws;
    let sawHello = false;
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let m;
      try { m = JSON.parse(typeof ev.data === "string" ? ev.data : String(ev.data)); } catch { return; }
      if (m && m.type === "hello") sawHello = true;
      this.handle(m);
    };
    const lost = (/** @type {number} */ code) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.ready = false;
      this.failCommands("connection_lost");
      if (this.stopped) return;
      if (code >= 4100 && code < 4200) {
        // Final for these credentials (token_expired): the page must sign in again.
        this.stopped = true;
        this.setConnection("expired");
        return;
      }
      if (!sawHello) {
        this.state.failures++;
        this.probe();
      }
      // 4000–4099 (resync, write_timeout): reconnect at once with last_seq.
      this.scheduleReconnect(code >= 4000 && code < 4100);
    };
    ws.onclose = (ev) => lost(ev.code);
    // Some implementations (Node 20's) report a refused handshake with `error` and no `close`.
    ws.onerror = () => setTimeout(() => lost(1006), 300);
  }

  /** The socket closed before `hello`: a missing show, or credentials the server refuses
   * (an expired session, a bad token), are final; anything else is retried. */
  async probe() {
    if (this.state.failures < 2) return;
    /** @param {ShowState["connection"]} c */
    const final = (c) => {
      this.stopped = true;
      clearTimeout(this.retryTimer);
      const ws = this.ws;
      this.ws = null;
      if (ws) { try { ws.close(); } catch { /* closing */ } }
      this.setConnection(c);
    };
    try {
      await this.api.show(this.showId);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) final("not_found");
      return;
    }
    try {
      await this.api.me();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) final("expired");
    }
  }

  /** @param {boolean} quick */
  scheduleReconnect(quick) {
    if (this.stopped) return;
    this.attempt++;
    const base = quick ? 100 : Math.min(this.maxBackoff, this.minBackoff * 2 ** Math.min(this.attempt - 1, 10));
    // Jitter: a server restart sends every viewer back at once.
    const delay = base * (0.5 + Math.random());
    this.setConnection("reconnecting");
    this.retryTimer = setTimeout(() => this.open(), delay);
  }

  /** Recycle the socket now (as if the network dropped): resumes with `last_seq`. */
  reconnectNow() {
    const ws = this.ws;
    if (ws) { try { ws.close(); } catch { /* closing */ } } else if (!this.stopped) this.open();
  }

  /** @param {any} msg @returns {boolean} sent */
  send(msg) {
    const ws = this.ws;
    if (!ws || !this.ready || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  // --- frames ---

  /** @param {any} m */
  handle(m) {
    if (!m || typeof m !== "object") return;
    this.emit("message", m);
    switch (m.type) {
      case "hello": this.onHello(m); break;
      case "snapshot": this.onSnapshot(m); break;
      case "event": this.onEvent(m); return; // onEvent notifies
      case "catch_up": this.onCatchUp(m); break;
      case "stock": this.onStock(m); break;
      case "feed": this.onFeed(m); break;
      case "viewers": if (typeof m.count === "number") this.state.viewers = m.count; break;
      case "claim_result": this.onClaimResult(m); break;
      case "cancel_result": this.onCancelResult(m); break;
      case "waitlist_result": this.onWaitlistResult(m); break;
      case "ack": this.onAck(m); break;
      case "error": this.onError(m); break;
      default: return; // a newer server's message type: ignored
    }
    this.changed();
  }

  /** @param {any} m */
  onHello(m) {
    const s = this.state;
    this.ready = true;
    this.attempt = 0;
    s.failures = 0;
    if (this.everOpened) s.reconnects++;
    this.everOpened = true;
    s.role = m.role ?? null;
    s.subject = m.subject ?? null;
    s.limits = m.limits ?? null;
    s.resumed = m.start === "resume";
    this.setConnection("open");
    // Whatever was in flight goes again with the same ids: the server answers `duplicate`
    // for a claim that went through, and "already cancelled" for a cancel.
    for (const p of this.claims.values()) { p.sentAt = Date.now(); this.send(p.msg); }
    for (const p of this.cancels.values()) { p.sentAt = Date.now(); this.send(p.msg); }
  }

  /** @param {any} m */
  onSnapshot(m) {
    const s = this.state;
    s.show = m.show ?? s.show;
    s.pinned = m.pinned ?? null;
    s.flash = m.flash ? { ...m.flash } : null;
    s.lineup = Array.isArray(m.lineup) ? m.lineup.map((l) => ({ ...l })) : [];
    s.viewers = typeof m.viewers === "number" ? m.viewers : s.viewers;
    if (typeof m.server_time === "number") s.clockOffset = m.server_time - Date.now();
    s.lastSeq = m.seq;
    const mine = Array.isArray(m.my_claims) ? m.my_claims.map((c) => ({ ...c })) : [];
    s.myClaims = mine;
    if (Array.isArray(m.my_waitlist)) s.myWaitlist = m.my_waitlist.map((w) => ({ ...w }));
    if (Array.isArray(m.recent_claims)) {
      s.feed = m.recent_claims.slice(-FEED_KEPT);
    }
    if (typeof m.total_claims === "number") s.totalClaims = m.total_claims;
    this.priceOverride = m.price == null ? null : { key: this.priceKey(), price: m.price };
    // A claim answered `pending` whose real answer was lost with the connection shows up here.
    for (const c of mine) {
      const p = this.claims.get(c.claim_id);
      if (p && c.status === "accepted") {
        this.claims.delete(c.claim_id);
        p.resolve({ type: "claim_result", claim_id: c.claim_id, outcome: "accepted", product_id: c.product_id,
          quantity: c.quantity, unit_price: c.unit_price, stock_left: this.entry(c.product_id)?.left });
      }
    }
  }

  /** @param {any} m */
  onEvent(m) {
    const s = this.state;
    if (typeof m.seq !== "number") return;
    if (s.lastSeq != null && m.seq <= s.lastSeq) return; // already applied
    if (s.lastSeq != null && m.seq !== s.lastSeq + 1) {
      // A gap: never apply out of order. Reconnect and resume from what we have.
      this.reconnectNow();
      return;
    }
    s.lastSeq = m.seq;
    this.priceOverride = null;
    const ev = m.event || {};
    switch (ev.kind) {
      case "show_live": if (s.show) s.show.status = "live"; break;
      case "show_closed":
        if (s.show) s.show.status = "closed";
        s.pinned = null;
        s.flash = null;
        s.myWaitlist = [];
        for (const l of ev.final_stock || []) this.setLeft(l.product_id, l.left);
        break;
      case "pinned":
        s.pinned = ev.product_id;
        if (s.flash && s.flash.product_id !== ev.product_id) s.flash = null;
        break;
      case "unpinned": s.pinned = null; s.flash = null; break;
      case "flash_started": s.flash = { ...ev }; delete s.flash.kind; break;
      case "flash_ended":
        if (s.flash && s.flash.flash_id === ev.flash_id) s.flash = null;
        break;
      default: break; // an unknown kind still counts in the sequence
    }
    this.emit("event", m);
    this.changed();
  }

  /**
   * The connection fell behind: the show's public state as of `m.seq` stands in for the events
   * up to it (stock, feed and viewers follow as their own frames).
   * @param {any} m
   */
  onCatchUp(m) {
    const s = this.state;
    if (typeof m.seq !== "number") return;
    if (s.lastSeq != null && m.seq <= s.lastSeq) return; // nothing newer in it
    s.lastSeq = m.seq;
    if (s.show && typeof m.status === "string") s.show.status = m.status;
    s.pinned = m.pinned ?? null;
    s.flash = m.flash ? { ...m.flash } : null;
    if (s.show?.status === "closed") s.myWaitlist = [];
    this.priceOverride = m.price == null ? null : { key: this.priceKey(), price: m.price };
    this.emit("catch_up", m);
  }

  /** @param {any} m */
  onStock(m) {
    for (const l of m.levels || []) this.setLeft(l.product_id, l.left);
    const f = this.state.flash;
    if (m.flash && f && m.flash.flash_id === f.flash_id) f.sold = m.flash.sold;
  }

  /** @param {any} m */
  onFeed(m) {
    const s = this.state;
    if (Array.isArray(m.items)) s.feed = s.feed.concat(m.items).slice(-FEED_KEPT);
    if (typeof m.total_claims === "number") s.totalClaims = m.total_claims;
  }

  /** @param {any} m */
  onClaimResult(m) {
    const p = this.claims.get(m.claim_id);
    if (m.outcome === "pending") {
      // The server does not know yet; the real answer follows (or the next snapshot has it).
      if (p) p.sentAt = Date.now();
      this.emit("claim", m);
      return;
    }
    if ((m.reason === "unavailable" || m.reason === "rate_limited") && p && p.tries < MAX_RETRIES) {
      p.tries++;
      p.sentAt = Infinity; // waiting on our own timer, not on the server
      const delay = Math.min(8000, 400 * 2 ** p.tries) * (0.5 + Math.random());
      setTimeout(() => {
        if (!this.claims.has(m.claim_id)) return;
        p.sentAt = Date.now();
        this.send(p.msg);
      }, delay);
      this.emit("claim", { ...m, retrying: true });
      return;
    }
    if (m.outcome === "accepted" || m.outcome === "duplicate") {
      const cancelled = m.outcome === "duplicate" && typeof m.message === "string" && /cancel/i.test(m.message);
      this.upsertClaim({ claim_id: m.claim_id, product_id: m.product_id, quantity: m.quantity,
        unit_price: m.unit_price, status: cancelled ? "cancelled" : "accepted", at: Date.now() + this.state.clockOffset });
      this.setLeft(m.product_id, m.stock_left);
    } else if (m.reason === "stale_price" && typeof m.current_price === "number") {
      this.priceOverride = { key: this.priceKey(), price: m.current_price };
    }
    if (p) { this.claims.delete(m.claim_id); p.resolve(m); }
    this.emit("claim", m);
  }

  /** @param {any} m */
  onCancelResult(m) {
    const p = this.cancels.get(m.claim_id);
    if ((m.reason === "unavailable" || m.reason === "rate_limited") && p && p.tries < MAX_RETRIES) {
      p.tries++;
      p.sentAt = Infinity;
      setTimeout(() => { if (this.cancels.has(m.claim_id)) { p.sentAt = Date.now(); this.send(p.msg); } },
        Math.min(8000, 400 * 2 ** p.tries));
      return;
    }
    if (m.outcome === "cancelled") {
      const c = this.state.myClaims.find((x) => x.claim_id === m.claim_id);
      if (c) {
        c.status = "cancelled";
        this.setLeft(c.product_id, m.stock_left);
      }
    }
    if (p) { this.cancels.delete(m.claim_id); p.resolve(m); }
    this.emit("cancel", m);
  }

  /** @param {any} m */
  onWaitlistResult(m) {
    const s = this.state;
    const pid = m.product_id;
    s.myWaitlist = s.myWaitlist.filter((w) => w.product_id !== pid);
    if (m.outcome === "joined") {
      s.myWaitlist.push({ product_id: pid, position: m.position ?? null, quantity: m.quantity ?? 1 });
    } else if (m.outcome === "promoted" && m.claim_id) {
      this.upsertClaim({ claim_id: m.claim_id, product_id: pid, quantity: m.quantity ?? 1,
        unit_price: m.unit_price ?? 0, status: "accepted", at: Date.now() + s.clockOffset });
    }
    // The answer to my join/leave: by `req` when the server echoes it, else by product.
    if (m.outcome === "joined" || m.outcome === "left" || m.outcome === "refused") {
      let key = m.req != null && this.commands.has(m.req) ? m.req : null;
      if (key == null) {
        for (const [req, c] of this.commands) if (c.waitlist === pid) { key = req; break; }
      }
      if (key != null) {
        const c = this.commands.get(key);
        this.commands.delete(key);
        c.resolve(m);
      }
    }
    this.emit("waitlist", m);
  }

  /** @param {any} m */
  onAck(m) {
    const c = m.req != null ? this.commands.get(m.req) : undefined;
    if (c) { this.commands.delete(m.req); c.resolve(m); }
  }

  /** @param {any} m */
  onError(m) {
    const c = m.req != null ? this.commands.get(m.req) : undefined;
    if (c) {
      this.commands.delete(m.req);
      c.reject(new CommandError(m.code, m.message));
    } else {
      this.emit("error", m);
    }
  }

  /** @param {string} code */
  failCommands(code) {
    for (const [req, c] of this.commands) {
      this.commands.delete(req);
      c.reject(new CommandError(code, "the connection closed before an answer"));
    }
  }

  checkAnswers() {
    const now = Date.now();
    if (!this.ready) return;
    for (const p of [...this.claims.values(), ...this.cancels.values(), ...this.commands.values()]) {
      if (now - p.sentAt > this.answerTimeout) {
        this.reconnectNow();
        return;
      }
    }
  }

  // --- state helpers ---

  /** @param {string} productId */
  entry(productId) { return this.state.lineup.find((l) => l.product && l.product.id === productId) || null; }

  /** @param {string} productId @param {number} left */
  setLeft(productId, left) {
    const e = this.entry(productId);
    if (e && typeof left === "number") e.left = left;
  }

  /** @param {any} c */
  upsertClaim(c) {
    const list = this.state.myClaims;
    const i = list.findIndex((x) => x.claim_id === c.claim_id);
    if (i < 0) list.push(c);
    else if (list[i].status !== "cancelled") list[i] = { ...list[i], ...c, at: list[i].at };
  }

  /** Server time now (ms), from the snapshot's clock. */
  now() { return Date.now() + this.state.clockOffset; }

  /** The flash price applies now (started, not ended, cap not reached). */
  flashActive() {
    const f = this.state.flash, t = this.now();
    return !!f && f.product_id === this.state.pinned && f.starts_at <= t && t < f.ends_at &&
      (f.quantity_cap == null || (f.sold || 0) < f.quantity_cap);
  }

  priceKey() {
    const f = this.state.flash;
    return `${this.state.pinned}|${f ? f.flash_id : 0}|${this.flashActive()}`;
  }

  /** The unit price a claim on the pinned product must carry now, or null. */
  price() {
    const s = this.state;
    if (!s.pinned) return null;
    if (this.priceOverride && this.priceOverride.key === this.priceKey()) return this.priceOverride.price;
    if (this.flashActive()) return s.flash.price;
    const e = this.entry(s.pinned);
    return e ? e.product.list_price : null;
  }

  /** Units of `productId` the signed-in viewer holds (accepted claims). */
  held(productId) {
    return this.state.myClaims.filter((c) => c.product_id === productId && c.status === "accepted")
      .reduce((a, c) => a + c.quantity, 0);
  }

  // --- viewer actions ---

  /**
   * Claim units of the pinned product. Resolves with the definite `claim_result` (accepted,
   * duplicate or refused); retried with the same claim id across reconnects, `pending`,
   * `unavailable` and `rate_limited`.
   * @param {{productId?: string, quantity: number, price?: number, claimId?: string}} req
   * @returns {Promise<any>}
   */
  claim(req) {
    const productId = req.productId ?? this.state.pinned;
    const price = req.price ?? this.price();
    const claimId = req.claimId ?? newClaimId();
    if (!productId || price == null) {
      return Promise.resolve({ type: "claim_result", claim_id: claimId, outcome: "refused", reason: "not_pinned" });
    }
    const existing = this.claims.get(claimId);
    if (existing) return existing.promise;
    const msg = { type: "claim", claim_id: claimId, product_id: productId, quantity: req.quantity, price };
    /** @type {any} */
    const p = { msg, tries: 0, sentAt: Date.now() };
    p.promise = new Promise((resolve) => { p.resolve = resolve; });
    this.claims.set(claimId, p);
    this.send(msg); // when not connected, hello sends it
    return p.promise;
  }

  /** Claims sent and not answered yet: `[{claim_id, product_id, quantity, price}]`. */
  pendingClaims() { return [...this.claims.values()].map((p) => ({ ...p.msg })); }

  /**
   * Cancel one of my accepted claims. Resolves with the `cancel_result`.
   * @param {string} claimId @returns {Promise<any>}
   */
  cancel(claimId) {
    const existing = this.cancels.get(claimId);
    if (existing) return existing.promise;
    /** @type {any} */
    const p = { msg: { type: "cancel", claim_id: claimId }, tries: 0, sentAt: Date.now() };
    p.promise = new Promise((resolve) => { p.resolve = resolve; });
    this.cancels.set(claimId, p);
    this.send(p.msg);
    return p.promise;
  }

  /**
   * Join a sold-out product's waitlist. Resolves with the `waitlist_result` (joined or
   * refused); rejects with CommandError `unknown_type` on a server without waitlists.
   * @param {string} productId @param {number} [quantity]
   */
  waitlistJoin(productId, quantity = 1) {
    return this.command({ type: "waitlist_join", product_id: productId, quantity }, productId);
  }

  /** @param {string} productId */
  waitlistLeave(productId) { return this.command({ type: "waitlist_leave", product_id: productId }, productId); }

  // --- seller commands ---

  /** @param {string} productId */ pin(productId) { return this.command({ type: "pin", product_id: productId }); }
  unpin() { return this.command({ type: "unpin" }); }
  /**
   * @param {{productId?: string, price: number, durationS: number, quantityCap?: number|null, countdownS?: number}} f
   */
  startFlash(f) {
    /** @type {any} */
    const msg = { type: "start_flash", product_id: f.productId ?? this.state.pinned, price: f.price, duration_s: f.durationS };
    if (f.quantityCap != null) msg.quantity_cap = f.quantityCap;
    if (f.countdownS) msg.countdown_s = f.countdownS;
    return this.command(msg);
  }
  endFlash() { return this.command({ type: "end_flash" }); }

  /**
   * Send a message with a fresh `req`; resolves with the `ack` (or `waitlist_result`), rejects
   * with CommandError on an `error` frame or a lost connection. Not retried: a seller command
   * is not idempotent (a second `start_flash` is refused `flash_active`).
   * @param {any} msg @param {string} [waitlist] the product a waitlist request is about
   * @returns {Promise<any>}
   */
  command(msg, waitlist) {
    const req = `r-${++this.reqCounter}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...msg, req })) {
        reject(new CommandError("connection_lost", "not connected"));
        return;
      }
      this.commands.set(req, { resolve, reject, sentAt: Date.now(), waitlist });
    });
  }
}

/**
 * Open a show's session: `connectShow({showId, token})`.
 * @param {ConnectOptions} options @returns {ShowConnection}
 */
export function connectShow(options) {
  return new ShowConnection(options).connect();
}
