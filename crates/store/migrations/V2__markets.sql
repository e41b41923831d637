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
