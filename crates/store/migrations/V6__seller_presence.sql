-- When a live show last had its seller: a seller's connection (or command) on any node moves it
-- forward, and a live show whose seller stayed away past `market.seller_absent_close_ms` is
-- closed by the scheduler. NULL until the seller is first seen; going live counts as seen.
ALTER TABLE shows ADD COLUMN seller_seen_at BIGINT;
-- Why a transition happened when its actor alone does not say (e.g. `seller_absent`).
ALTER TABLE show_transitions ADD COLUMN reason TEXT;
