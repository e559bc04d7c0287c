-- Issue 15: the journal names a step by its stable id, not by the label people
-- read. Jobs written by earlier releases stored labels; rewrite them to ids, so
-- that a job stopped mid-create or mid-rollback resumes after the upgrade.
UPDATE job_steps SET name = CASE name
    WHEN 'allocate address' THEN 'allocate_ip'
    WHEN 'create container' THEN 'create_guest'
    WHEN 'start container' THEN 'start_guest'
    WHEN 'wait for network' THEN 'await_address'
    WHEN 'add HA resource' THEN 'add_ha'
    WHEN 'initial snapshot' THEN 'initial_snapshot'
    WHEN 'mark ready' THEN 'mark_ready'
    WHEN 'remove HA resource' THEN 'remove_ha'
    WHEN 'shut down' THEN 'shutdown_guest'
    WHEN 'delete snapshots' THEN 'delete_snapshots'
    WHEN 'delete container' THEN 'delete_guest'
    WHEN 'release allocations' THEN 'release_allocations'
    WHEN 'stop' THEN 'stop_guest'
    WHEN 'start' THEN 'start_stopped_guest'
    WHEN 'publish route' THEN 'publish_route'
    WHEN 'register DNS' THEN 'register_dns'
    WHEN 'add monitoring' THEN 'add_monitoring'
    WHEN 'remove route' THEN 'unpublish_route'
    WHEN 'remove DNS record' THEN 'remove_dns'
    WHEN 'remove monitoring' THEN 'remove_monitoring'
    WHEN 'pull image' THEN 'pull_image'
    WHEN 'create app container' THEN 'create_app_container'
    WHEN 'start app container' THEN 'start_app_container'
    WHEN 'check health' THEN 'check_health'
    WHEN 'switch route' THEN 'switch_route'
    WHEN 'remove old container' THEN 'remove_old_container'
    WHEN 'restart app' THEN 'restart_app'
    WHEN 'stop app' THEN 'stop_app'
    WHEN 'start app' THEN 'start_app'
    WHEN 'remove app containers' THEN 'remove_app_containers'
    ELSE name END
WHERE name IN ('allocate address', 'create container', 'start container', 'wait for network', 'add HA resource', 'initial snapshot', 'mark ready', 'remove HA resource', 'shut down', 'delete snapshots', 'delete container', 'release allocations', 'stop', 'start', 'publish route', 'register DNS', 'add monitoring', 'remove route', 'remove DNS record', 'remove monitoring', 'pull image', 'create app container', 'start app container', 'check health', 'switch route', 'remove old container', 'restart app', 'stop app', 'start app', 'remove app containers');
UPDATE job_steps SET name = 'post_provision:' || substr(name, length('post-provision: ') + 1)
WHERE name LIKE 'post-provision: %';
