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
