-- Issue 16: the SSH public keys a person added with /keys add. They go into
-- every environment that person creates (PVE's ssh-public-keys), beside the
-- team's keys from the configuration and Slipway's own provisioning key.
CREATE TABLE ssh_keys (
    id          INTEGER PRIMARY KEY,
    owner       TEXT NOT NULL,      -- the person: 'discord:123', 'matrix:@a:b', 'console:alice'
    fingerprint TEXT NOT NULL,      -- 'SHA256:…', as ssh-keygen -lf prints it
    line        TEXT NOT NULL,      -- 'ssh-ed25519 AAAA… comment'
    kind        TEXT NOT NULL,      -- 'ed25519', 'rsa 4096 bits', …
    added_at    INTEGER NOT NULL,
    UNIQUE (owner, fingerprint)
);
