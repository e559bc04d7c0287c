-- Slipway's first schema: environments, jobs with their step journal and log,
-- approvals, address allocations and the audit log.

CREATE TABLE environments (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    team          TEXT NOT NULL,
    owner         TEXT NOT NULL,          -- platform:user id
    owner_display TEXT NOT NULL,
    profile       TEXT NOT NULL,
    node          TEXT NOT NULL,
    vmid          INTEGER,
    cores         INTEGER NOT NULL,
    memory_mb     INTEGER NOT NULL,
    swap_mb       INTEGER NOT NULL,
    disk_gb       INTEGER NOT NULL,
    address       TEXT,
    state         TEXT NOT NULL,
    reason        TEXT,                   -- why it failed or was denied
    request_key   TEXT NOT NULL UNIQUE,   -- the chat event that asked for it
    ttl_secs      INTEGER,
    expires_at    INTEGER,                -- unix seconds; NULL: kept
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
-- A name belongs to one live environment at a time.
CREATE UNIQUE INDEX environments_live_name ON environments(name)
    WHERE state NOT IN ('destroyed', 'failed', 'denied');
-- A VMID is reserved by one live environment at a time.
CREATE UNIQUE INDEX environments_live_vmid ON environments(vmid)
    WHERE vmid IS NOT NULL AND state NOT IN ('destroyed', 'failed', 'denied');
CREATE INDEX environments_team_state ON environments(team, state);

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY,
    env_id          INTEGER NOT NULL REFERENCES environments(id),
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    requested_by    TEXT NOT NULL,
    reply_to        TEXT NOT NULL,        -- JSON: where progress is reported
    progress_ref    TEXT,                 -- JSON: the message progress edits
    lease_owner     TEXT,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER
);
CREATE INDEX jobs_state ON jobs(state);
CREATE INDEX jobs_env ON jobs(env_id);

CREATE TABLE job_steps (
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    data        TEXT NOT NULL DEFAULT '{}', -- JSON: inputs and outputs (vmid, upid, ...)
    error       TEXT,
    started_at  INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE job_log (
    id      INTEGER PRIMARY KEY,
    job_id  INTEGER NOT NULL REFERENCES jobs(id),
    at_ms   INTEGER NOT NULL,
    level   TEXT NOT NULL,
    line    TEXT NOT NULL
);
CREATE INDEX job_log_job ON job_log(job_id, id);

CREATE TABLE approvals (
    id             INTEGER PRIMARY KEY,
    env_id         INTEGER NOT NULL REFERENCES environments(id),
    team           TEXT NOT NULL,
    requester      TEXT NOT NULL,
    reason         TEXT NOT NULL,        -- JSON ApprovalReason
    over_quota     INTEGER NOT NULL,     -- 1 if it was over quota when requested
    state          TEXT NOT NULL,        -- pending, approved, denied, expired
    decided_by     TEXT,
    decided_at     INTEGER,
    deny_reason    TEXT,
    reply_to       TEXT NOT NULL,        -- JSON: where the requester asked
    created_at     INTEGER NOT NULL
);
CREATE INDEX approvals_state ON approvals(state);

CREATE TABLE ip_allocations (
    address TEXT PRIMARY KEY,
    team    TEXT NOT NULL,
    env_id  INTEGER NOT NULL REFERENCES environments(id)
);

CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    outcome  TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT ''
);

-- One running Slipway owns the database; a second one refuses to start.
CREATE TABLE instance (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    owner     TEXT NOT NULL,
    heartbeat INTEGER NOT NULL
);
