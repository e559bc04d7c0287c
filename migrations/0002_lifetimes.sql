-- Lifetimes: reminders before expiry, where an environment's lifecycle events
-- are announced, and approvals for extensions and keeping an environment.

ALTER TABLE environments ADD COLUMN announce_to TEXT;

CREATE TABLE reminders (
    id         INTEGER PRIMARY KEY,
    env_id     INTEGER NOT NULL REFERENCES environments(id),
    offset_secs INTEGER NOT NULL,          -- how long before expiry
    due_at     INTEGER NOT NULL,           -- unix seconds
    state      TEXT NOT NULL DEFAULT 'scheduled', -- scheduled, sent, skipped
    sent_at    INTEGER,
    UNIQUE (env_id, offset_secs, due_at)
);
CREATE INDEX reminders_due ON reminders(state, due_at);

-- What an approval grants: a new environment, a longer lifetime, or no expiry.
ALTER TABLE approvals ADD COLUMN kind TEXT NOT NULL DEFAULT 'create';
ALTER TABLE approvals ADD COLUMN extend_secs INTEGER;
