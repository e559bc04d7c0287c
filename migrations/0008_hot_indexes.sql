-- The lifetime scheduler asks "which live environment expires next, and which
-- have expired" on every wake; without this each question read every row.
CREATE INDEX environments_live_expiry ON environments(expires_at)
    WHERE state IN ('ready', 'stopped') AND expires_at IS NOT NULL;

-- A team's usage (checked on every create) is summed from the index alone.
CREATE INDEX environments_team_usage ON environments(team, state, cores, memory_mb, disk_gb);
DROP INDEX environments_team_state;
