-- IF NOT EXISTS: data directories created before migrations were tracked already hold
-- these tables, with the same columns.
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
