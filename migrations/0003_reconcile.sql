-- Reconciliation: drift of live environments and containers Slipway owns
-- that no live environment accounts for.

-- Why the environment's container does not match its record (NULL: it does).
ALTER TABLE environments ADD COLUMN drift TEXT;

CREATE TABLE orphans (
    vmid       INTEGER PRIMARY KEY,
    node       TEXT NOT NULL,
    tags       TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    reported   INTEGER NOT NULL DEFAULT 0,
    removed_at INTEGER
);
