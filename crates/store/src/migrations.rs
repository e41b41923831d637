//! The schema, as migrations in the portable dialect (see [`crate::sql`]). Append only: a
//! released migration never changes; a new behaviour gets a new version.

use crate::sql::Migration;

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "catalog",
        // IF NOT EXISTS: data directories created before migrations were tracked already hold
        // these tables, with the same columns.
        sql: r#"
CREATE TABLE IF NOT EXISTS sellers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    district    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    id              TEXT PRIMARY KEY,
    seller_id       TEXT NOT NULL REFERENCES sellers(id),
    name            TEXT NOT NULL,
    product_group   TEXT NOT NULL,
    stars           BIGINT NOT NULL CHECK (stars BETWEEN 1 AND 5),
    district        TEXT NOT NULL,
    commune         TEXT NOT NULL,
    producer        TEXT NOT NULL,
    list_price      BIGINT NOT NULL CHECK (list_price > 0),
    origin_document TEXT NOT NULL,
    quality_label   TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS shows (
    id          TEXT PRIMARY KEY,
    seller_id   TEXT NOT NULL REFERENCES sellers(id),
    title       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('scheduled', 'live', 'closed')),
    created_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS show_lineup (
    show_id      TEXT NOT NULL REFERENCES shows(id),
    position     BIGINT NOT NULL,
    product_id   TEXT NOT NULL REFERENCES products(id),
    stock        BIGINT NOT NULL CHECK (stock >= 0),
    buyer_limit  BIGINT NOT NULL CHECK (buyer_limit >= 1),
    proof        TEXT NOT NULL,
    PRIMARY KEY (show_id, position),
    UNIQUE (show_id, product_id)
);
"#,
    },
    Migration {
        version: 2,
        name: "markets",
        sql: r#"
-- Bumped by every scheduling transaction of the seller: the row lock that serialises them.
ALTER TABLE sellers ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
-- The product's documents (OCOP certificate, origin proof, quality label) with validity, JSON.
ALTER TABLE products ADD COLUMN documents TEXT NOT NULL DEFAULT '[]';
ALTER TABLE shows ADD COLUMN market_id TEXT;
ALTER TABLE shows ADD COLUMN night_date TEXT;
ALTER TABLE shows ADD COLUMN slot_start BIGINT;
ALTER TABLE shows ADD COLUMN slot_end BIGINT;
ALTER TABLE shows ADD COLUMN stream_url TEXT;
ALTER TABLE shows ADD COLUMN live_at BIGINT;
ALTER TABLE shows ADD COLUMN closed_at BIGINT;
CREATE INDEX shows_by_night ON shows (market_id, night_date);
CREATE INDEX shows_by_seller ON shows (seller_id, slot_start);
CREATE INDEX shows_by_status ON shows (status, slot_start);

CREATE TABLE markets (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    weekdays         TEXT NOT NULL,
    start_time       TEXT NOT NULL,
    duration_minutes BIGINT NOT NULL,
    time_zone        TEXT NOT NULL,
    first_date       TEXT NOT NULL,
    last_date        TEXT,
    min_stars        BIGINT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE TABLE night_exceptions (
    market_id   TEXT NOT NULL REFERENCES markets(id),
    night_date  TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('cancelled', 'moved')),
    moved_to    TEXT,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (market_id, night_date)
);
-- Every admission decision ever taken; the latest per (market, product) is in force.
CREATE TABLE admission_decisions (
    id          TEXT PRIMARY KEY,
    market_id   TEXT NOT NULL REFERENCES markets(id),
    product_id  TEXT NOT NULL REFERENCES products(id),
    approved    BIGINT NOT NULL,
    reason      TEXT,
    decided_by  TEXT NOT NULL,
    decided_at  BIGINT NOT NULL
);
CREATE INDEX admission_by_product ON admission_decisions (market_id, product_id, decided_at);
CREATE TABLE commitments (
    market_id   TEXT NOT NULL REFERENCES markets(id),
    night_date  TEXT NOT NULL,
    seller_id   TEXT NOT NULL REFERENCES sellers(id),
    statement   TEXT NOT NULL,
    signed_by   TEXT NOT NULL,
    signed_at   BIGINT NOT NULL,
    PRIMARY KEY (market_id, night_date, seller_id)
);
CREATE TABLE lineup_sets (
    id          TEXT PRIMARY KEY,
    seller_id   TEXT NOT NULL REFERENCES sellers(id),
    name        TEXT NOT NULL,
    items       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (seller_id, name)
);
-- One row per status a show reached: who moved it and when. The primary key makes a second
-- writer of the same transition fail even if a compare-and-set were bypassed.
CREATE TABLE show_transitions (
    show_id      TEXT NOT NULL REFERENCES shows(id),
    to_status    TEXT NOT NULL,
    from_status  TEXT NOT NULL,
    actor        TEXT NOT NULL,
    at           BIGINT NOT NULL,
    PRIMARY KEY (show_id, to_status)
);
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    events      TEXT NOT NULL,
    active      BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
-- One row per (event, webhook): the id is derived from both, so an event is enqueued once.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    webhook_id       TEXT NOT NULL REFERENCES webhooks(id),
    event_id         TEXT NOT NULL,
    event            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    last_status      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at);
"#,
    },
    Migration {
        version: 3,
        name: "orders",
        sql: r#"
-- The claim log as recorded from the inventory, in batches, so that losing Redis after a batch
-- is recorded cannot erase it. Claims and cancellations by position; the close marker is kept
-- on the checkpoint.
CREATE TABLE claim_log_entries (
    show_id     TEXT NOT NULL,
    pos         BIGINT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('claim', 'cancel')),
    claim_id    TEXT NOT NULL,
    buyer_id    TEXT NOT NULL,
    product_id  TEXT NOT NULL,
    quantity    BIGINT NOT NULL CHECK (quantity > 0),
    unit_price  BIGINT NOT NULL CHECK (unit_price > 0),
    flash_id    BIGINT,
    at          BIGINT NOT NULL,
    PRIMARY KEY (show_id, pos)
);
CREATE INDEX claim_log_by_claim ON claim_log_entries (show_id, claim_id, kind);
-- How far each show's log is recorded: the next position, the backend's resume token, and the
-- close marker once seen.
CREATE TABLE claim_log_checkpoints (
    show_id      TEXT PRIMARY KEY,
    next_pos     BIGINT NOT NULL,
    token        TEXT NOT NULL,
    closed_at    BIGINT,
    final_stock  TEXT,
    updated_at   BIGINT NOT NULL
);
-- The lineup a settlement priced against, one row per product, taken from the admitted
-- snapshot in show_lineup: list price and the programme's dimensions as plain columns, so
-- orders and reports aggregate in SQL on both engines.
CREATE TABLE settlement_products (
    show_id        TEXT NOT NULL,
    product_id     TEXT NOT NULL,
    position       BIGINT NOT NULL,
    name           TEXT NOT NULL,
    list_price     BIGINT NOT NULL,
    product_group  TEXT NOT NULL,
    district       TEXT NOT NULL,
    stars          BIGINT NOT NULL,
    allotted       BIGINT NOT NULL,
    buyer_limit    BIGINT NOT NULL,
    PRIMARY KEY (show_id, product_id)
);
-- One row per show the order service has reconciled: settled, or stopped by a mismatch with
-- the report saying exactly what disagrees.
CREATE TABLE show_settlements (
    show_id     TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('settled', 'mismatch')),
    claims      BIGINT NOT NULL,
    cancels     BIGINT NOT NULL,
    orders      BIGINT NOT NULL,
    units       BIGINT NOT NULL,
    revenue     BIGINT NOT NULL,
    report      TEXT NOT NULL,
    decided_by  TEXT NOT NULL,
    decided_at  BIGINT NOT NULL
);
-- A buyer's orders of one market night: one payment, one shipment per seller. Ad-hoc shows
-- outside a market get a checkout of their own.
CREATE TABLE checkouts (
    id          TEXT PRIMARY KEY,
    buyer_id    TEXT NOT NULL,
    market_id   TEXT,
    night_date  TEXT,
    show_id     TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX checkouts_by_buyer ON checkouts (buyer_id, created_at);
-- One order per buyer per show; the id is derived from both, so settling twice writes nothing.
CREATE TABLE orders (
    id           TEXT PRIMARY KEY,
    show_id      TEXT NOT NULL,
    buyer_id     TEXT NOT NULL,
    seller_id    TEXT NOT NULL,
    checkout_id  TEXT NOT NULL,
    market_id    TEXT,
    night_date   TEXT,
    status       TEXT NOT NULL CHECK (status IN ('pending_payment', 'paid', 'shipped', 'delivered', 'cancelled')),
    units        BIGINT NOT NULL,
    total        BIGINT NOT NULL,
    list_total   BIGINT NOT NULL,
    claims       BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    pay_by       BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    version      BIGINT NOT NULL,
    UNIQUE (show_id, buyer_id)
);
CREATE INDEX orders_by_buyer ON orders (buyer_id, created_at);
CREATE INDEX orders_by_checkout ON orders (checkout_id);
CREATE INDEX orders_by_night ON orders (market_id, night_date, seller_id);
CREATE INDEX orders_unpaid ON orders (status, pay_by);
-- What the buyer got: per product and the unit price its claims were accepted at.
CREATE TABLE order_lines (
    order_id    TEXT NOT NULL,
    show_id     TEXT NOT NULL,
    product_id  TEXT NOT NULL,
    unit_price  BIGINT NOT NULL,
    list_price  BIGINT NOT NULL,
    quantity    BIGINT NOT NULL,
    claims      BIGINT NOT NULL,
    flash       BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id, unit_price)
);
CREATE INDEX order_lines_by_show ON order_lines (show_id, product_id);
-- Every status an order reached, who moved it and why.
CREATE TABLE order_status_history (
    order_id     TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    actor        TEXT NOT NULL,
    reason       TEXT,
    at           BIGINT NOT NULL,
    PRIMARY KEY (order_id, seq)
);
-- Claims refused per show and reason, as each node counted them (a node's running total; the
-- show's figure is the sum over nodes).
CREATE TABLE show_refusals (
    show_id  TEXT NOT NULL,
    node_id  TEXT NOT NULL,
    reason   TEXT NOT NULL,
    count    BIGINT NOT NULL,
    PRIMARY KEY (show_id, node_id, reason)
);
-- Viewers per show, node and minute (the most seen in that minute); the show's peak is the
-- largest sum over nodes of one minute.
CREATE TABLE show_viewers (
    show_id  TEXT NOT NULL,
    node_id  TEXT NOT NULL,
    minute   BIGINT NOT NULL,
    viewers  BIGINT NOT NULL,
    PRIMARY KEY (show_id, node_id, minute)
);
"#,
    },
    Migration {
        version: 4,
        name: "claim_log_cancels",
        sql: r#"
-- Settlement sums claims and cancellations in one scan and looks up only the cancellations, so
-- an index over every claim costs a million index insertions per show for no reader. The
-- cancellations alone stay indexed, by the claim they name.
DROP INDEX IF EXISTS claim_log_by_claim;
CREATE INDEX claim_log_cancels ON claim_log_entries (show_id, claim_id) WHERE kind = 'cancel';
"#,
    },
    Migration {
        version: 5,
        name: "access",
        sql: r#"
-- One-time sign-in links. Only the SHA-256 of the code is kept: a copy of the database does not
-- sign anyone in. An invite is spent by the one transaction that sets used_at and opens the
-- session it names.
CREATE TABLE invites (
    code_hash   TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('operator', 'seller')),
    subject     TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    session_id  TEXT
);
-- Browser sessions behind the HttpOnly cookie. The cookie's signed token is short-lived and
-- refreshed; the row is what sign-out revokes and what bounds a session's whole life.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('operator', 'seller', 'viewer')),
    subject     TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
"#,
    },
];
