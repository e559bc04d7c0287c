-- Issue 16: the SSH host keys a guest presented at first contact
-- (trust on first use, per environment). Post-provisioning checks them from
-- then on; /env info shows their fingerprint.
CREATE TABLE host_keys (
    env_id      INTEGER PRIMARY KEY REFERENCES environments (id),
    known_hosts TEXT NOT NULL,      -- known_hosts lines: 'ADDRESS ssh-ed25519 AAAA…'
    learned_at  INTEGER NOT NULL
);
