-- Publishing: the domain an environment is exposed under, unique among live environments.
ALTER TABLE environments ADD COLUMN domain TEXT;
CREATE UNIQUE INDEX environments_live_domain ON environments(domain)
    WHERE domain IS NOT NULL AND state NOT IN ('destroyed', 'failed', 'denied');
