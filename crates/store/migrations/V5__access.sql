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
