// Type declarations of nightmarket.js (see docs/client.md and docs/protocol.md).

export const PROTOCOL: 1;

export class ApiError extends Error {
  status: number;
  code: string;
  details?: unknown;
  constructor(status: number, code: string, message: string, details?: unknown);
}

export class CommandError extends Error {
  code: string;
  constructor(code: string, message?: string);
}

export function newClaimId(): string;

export interface ApiOptions {
  baseUrl?: string;
  token?: string | null;
  fetch?: typeof fetch;
}

export interface Me { role: "operator" | "seller" | "viewer"; subject: string; name: string; via: "cookie" | "bearer"; }
export interface Invite { code: string; url: string; role: string; subject: string; expires_at: number; }

/** Most items a list endpoint returns in one page (the server's `MAX_PAGE_SIZE`). */
export const MAX_PAGE_SIZE: number;

export class Api {
  constructor(options?: ApiOptions);
  baseUrl: string;
  token: string | null;
  request(method: string, path: string, opts?: { body?: unknown; query?: Record<string, string | number | boolean | null | undefined>; text?: boolean; page?: boolean }): Promise<any>;
  get(path: string, query?: Record<string, unknown>): Promise<any>;
  post(path: string, body?: unknown): Promise<any>;
  /** One page of a list endpoint; `next` is the cursor of the next page, null on the last. */
  page(path: string, q?: { limit?: number; cursor?: string | null; query?: Record<string, string | number | boolean | null | undefined> }): Promise<{ items: any[]; next: string | null }>;
  /** Every item of a list endpoint, following `Next-Cursor` (not for a market's nights). */
  all(path: string, query?: Record<string, string | number | boolean | null | undefined>): Promise<any[]>;
  me(): Promise<Me>;
  redeem(code: string): Promise<{ role: string; subject: string; name: string }>;
  guest(displayName: string): Promise<{ role: "viewer"; subject: string; name: string }>;
  signout(): Promise<null>;
  createInvite(role: "seller" | "operator", subject: string): Promise<Invite>;
  sellers(): Promise<any[]>;
  seller(id: string): Promise<any>;
  createSeller(body: { name: string; kind?: string; district?: string }): Promise<any>;
  products(sellerId: string): Promise<any[]>;
  product(id: string): Promise<any>;
  createProduct(body: object): Promise<any>;
  shows(): Promise<Show[]>;
  show(id: string): Promise<Show>;
  createShow(body: object): Promise<Show>;
  goLive(id: string): Promise<Show>;
  closeShow(id: string): Promise<Show>;
  liveStats(id: string): Promise<LiveStats>;
  transitions(id: string): Promise<any[]>;
  sellerShows(sellerId: string): Promise<Show[]>;
  showReport(id: string): Promise<any>;
  showReportCsv(id: string): Promise<string>;
  markets(): Promise<any[]>;
  market(id: string): Promise<any>;
  createMarket(body: object): Promise<any>;
  nights(id: string, q?: { from?: string; after?: number; limit?: number }): Promise<any[]>;
  exceptions(id: string): Promise<any[]>;
  createException(id: string, body: object): Promise<any>;
  decide(id: string, body: { product_id: string; approved: boolean; reason?: string }): Promise<any>;
  decisions(id: string, productId?: string): Promise<any[]>;
  commit(id: string, date: string, statement: string): Promise<any>;
  nightShows(id: string, date: string): Promise<Show[]>;
  /** The quality commitments signed for a night (operators: all; a seller: its own). */
  nightCommitments(id: string, date: string): Promise<Array<{ market_id: string; night_date: string; seller_id: string; statement: string; signed_by: string; signed_at: number }>>;
  scheduleShow(id: string, date: string, body: object): Promise<Show>;
  nightReport(id: string, date: string): Promise<any>;
  nightReportCsv(id: string, date: string): Promise<string>;
  warnings(): Promise<any[]>;
  myOrders(): Promise<any[]>;
  myCheckouts(): Promise<any[]>;
  webhooks(): Promise<any[]>;
  createWebhook(body: { url: string; events: string[] }): Promise<any>;
  deleteWebhook(id: string): Promise<null>;
  deliveries(id: string): Promise<any[]>;
  redeliver(id: string, delivery: string): Promise<null>;
}

export interface Show {
  id: string; seller_id: string; title: string; status: "scheduled" | "live" | "closed";
  lineup: Array<{ product_id: string; stock: number; buyer_limit: number; product?: Product }>;
  created_at: number; stock?: Array<{ product_id: string; left: number }>; seq: number;
  schedule?: { market_id: string; night_date: string; slot_start: string; slot_end: string; slot_start_ms: number; slot_end_ms: number; stream_url: string };
  live_at?: number; closed_at?: number;
}

export interface LiveStats {
  status: string; viewers: number; peak_viewers: number; accepted_claims: number; claims_last_minute: number;
  units_sold: number; gmv: number;
  products: Array<{ product_id: string; name: string; allotted: number; left: number; units_sold: number; gmv: number }>;
}

export interface Product {
  id: string; name: string; group: string; stars: number; district: string; commune: string; producer: string;
  list_price: number; origin_document: string; quality_label: string;
  documents?: Array<{ kind: string; reference: string; valid_from: string; valid_until: string }>;
}

export interface Flash {
  flash_id: number; product_id: string; price: number; list_price: number; starts_at: number; ends_at: number;
  quantity_cap: number | null; sold: number;
}

export interface MyClaim { claim_id: string; product_id: string; quantity: number; unit_price: number; status: "accepted" | "cancelled"; at: number; }
export interface FeedItem { product_id: string; quantity: number; unit_price: number; at: number; }

export interface ShowState {
  connection: "idle" | "connecting" | "open" | "reconnecting" | "expired" | "not_found" | "closed";
  resumed: boolean;
  reconnects: number;
  failures: number;
  role: string | null;
  subject: string | null;
  limits: { max_frame_bytes: number; messages_per_second: number; message_burst: number; max_claim_quantity: number } | null;
  show: { id: string; title: string; seller_id: string; seller_name: string; status: string } | null;
  pinned: string | null;
  flash: Flash | null;
  lineup: Array<{ product: Product; allotted: number; left: number; buyer_limit: number }>;
  myClaims: MyClaim[];
  myWaitlist: Array<{ product_id: string; position: number | null; quantity: number }>;
  feed: FeedItem[];
  totalClaims: number;
  viewers: number | null;
  lastSeq: number | null;
  clockOffset: number;
}

export interface ClaimResult {
  type: "claim_result"; claim_id: string; outcome: "accepted" | "duplicate" | "refused" | "pending";
  reason?: string; product_id?: string; quantity?: number; unit_price?: number; stock_left?: number;
  available?: number; limit_left?: number; current_price?: number; message?: string; retrying?: boolean;
}

export interface CancelResult { type: "cancel_result"; claim_id: string; outcome: "cancelled" | "refused"; reason?: string; stock_left?: number; message?: string; }

export interface WaitlistResult {
  type: "waitlist_result"; product_id: string; outcome: "joined" | "left" | "refused" | "promoted" | "skipped";
  position?: number; quantity?: number; claim_id?: string; unit_price?: number; reason?: string; message?: string;
}

export interface ConnectOptions {
  showId: string;
  baseUrl?: string;
  token?: string | null;
  WebSocket?: typeof WebSocket;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  answerTimeoutMs?: number;
  api?: Api;
}

export class ShowConnection {
  constructor(options: ConnectOptions);
  readonly showId: string;
  readonly state: ShowState;
  on(kind: "change", fn: (state: ShowState) => void): () => void;
  on(kind: "connection", fn: (c: ShowState["connection"]) => void): () => void;
  on(kind: "claim", fn: (m: ClaimResult) => void): () => void;
  on(kind: "cancel", fn: (m: CancelResult) => void): () => void;
  on(kind: "waitlist", fn: (m: WaitlistResult) => void): () => void;
  /** `catch_up`: the connection fell behind and its show state was replaced (see docs/client.md). */
  on(kind: "event" | "catch_up" | "message" | "error", fn: (m: any) => void): () => void;
  connect(): this;
  close(): void;
  reconnectNow(): void;
  now(): number;
  flashActive(): boolean;
  price(): number | null;
  held(productId: string): number;
  entry(productId: string): ShowState["lineup"][number] | null;
  claim(req: { productId?: string; quantity: number; price?: number; claimId?: string }): Promise<ClaimResult>;
  pendingClaims(): Array<{ type: "claim"; claim_id: string; product_id: string; quantity: number; price: number }>;
  cancel(claimId: string): Promise<CancelResult>;
  waitlistJoin(productId: string, quantity?: number): Promise<WaitlistResult>;
  waitlistLeave(productId: string): Promise<WaitlistResult>;
  pin(productId: string): Promise<{ type: "ack"; req: string; seq: number }>;
  unpin(): Promise<{ type: "ack"; req: string; seq: number }>;
  startFlash(f: { productId?: string; price: number; durationS: number; quantityCap?: number | null; countdownS?: number }): Promise<{ type: "ack"; req: string; seq: number }>;
  endFlash(): Promise<{ type: "ack"; req: string; seq: number }>;
  command(msg: object): Promise<any>;
}

export function connectShow(options: ConnectOptions): ShowConnection;
