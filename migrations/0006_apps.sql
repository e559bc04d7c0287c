-- Apps: containers on Docker hosts. An app is an environment row of kind 'app',
-- so it holds quota, waits for approval, runs jobs and keeps its name and domain
-- unique exactly as an environment does; what only an app has is kept beside it.

ALTER TABLE environments ADD COLUMN kind TEXT NOT NULL DEFAULT 'lxc';

CREATE TABLE apps (
    env_id        INTEGER PRIMARY KEY REFERENCES environments(id),
    host          TEXT NOT NULL,              -- a [[docker.hosts]] name, or env:<id> (a docker-host environment)
    image         TEXT NOT NULL,              -- the image serving (the one asked for until the first deploy ends)
    next_image    TEXT,                       -- the image an update is rolling out
    env           TEXT NOT NULL DEFAULT '{}', -- JSON {KEY: VALUE}; values may be secrets: never shown or logged
    port          INTEGER NOT NULL,           -- the port the app listens on ($PORT in the container)
    health_path   TEXT NOT NULL,
    access        TEXT NOT NULL DEFAULT '{}', -- JSON: binds and what an admin allowed (privileged, devices, ...)
    container     TEXT,                       -- name of the serving container
    upstream_port INTEGER                     -- where the serving container is reached on its host
);

-- Host ports handed to app containers on hosts that use the host's network.
CREATE TABLE app_ports (
    host      TEXT NOT NULL,
    port      INTEGER NOT NULL,
    env_id    INTEGER NOT NULL REFERENCES environments(id),
    container TEXT NOT NULL,
    PRIMARY KEY (host, port)
);
CREATE UNIQUE INDEX app_ports_container ON app_ports(host, container);
