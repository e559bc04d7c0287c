-- Reconciliation of apps: containers on Docker hosts that carry Slipway's
-- ownership labels and that no live app accounts for (app orphans), with when
-- they were first seen so they are removed only after the grace period.
-- (Drift of a live app is kept in environments.drift, like an environment's.)

CREATE TABLE app_orphans (
    host       TEXT NOT NULL,     -- a [[docker.hosts]] name, or env:<id>
    container  TEXT NOT NULL,     -- Docker's container id
    name       TEXT NOT NULL,     -- the container's name, for people
    app_id     INTEGER NOT NULL,  -- its io.slipway.app-id label
    first_seen INTEGER NOT NULL,
    reported   INTEGER NOT NULL DEFAULT 0,
    removed_at INTEGER,
    PRIMARY KEY (host, container)
);
