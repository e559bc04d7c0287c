//! Bad input gets a clear error and stores nothing; a dry run shows the plan
//! and sends nothing to Proxmox; `slipway check` names the broken file.

use crate::common::{Opts, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_nothing_is_stored() {
    let t = TestEnv::new(Opts {
        max_ttl: "7d",
        ..Opts::default()
    });
    let s = t.start();
    let long = "a".repeat(64);
    let cases: Vec<(String, &str)> = vec![
        (
            "/env create profile:web-app name:sh`op".into(),
            "name: 'sh`op' contains a backtick",
        ),
        (
            "/env create profile:web-app \"name:my shop\"".into(),
            "contains a space",
        ),
        (
            "/env create profile:web-app name:Shop".into(),
            "use lower case (shop)",
        ),
        (
            format!("/env create profile:web-app name:{long}"),
            "64 characters is more than the 63 allowed",
        ),
        (
            "/env create profile:web-app name:shop dryrun:true".into(),
            "unknown option dryrun for /env create; did you mean dry-run? Its options: profile, name,",
        ),
        (
            "/env create profile:web-app name:shop colour:red".into(),
            "unknown option colour for /env create. Its options:",
        ),
        (
            "/env create profile:web-app name:shop dry-run".into(),
            "give dry-run a value: dry-run:true",
        ),
        (
            "/env create profile:nope name:shop".into(),
            "profile: 'nope' is not one of:",
        ),
        (
            "/env create profile:web-app name:shop cpu:9".into(),
            "cpu: 9 is above the maximum of 8 for profile web-app",
        ),
        (
            "/env create profile:web-app name:shop cpu:65".into(),
            "cpu: 65 is above the maximum of 64",
        ),
        (
            "/env create profile:web-app name:shop ttl:10d".into(),
            "ttl: 10d is longer than team web's maximum of 7d",
        ),
        (
            "/env create profile:web-app name:shop ttl:60d".into(),
            "ttl: 60d is longer than the maximum of 30d for profile web-app",
        ),
        (
            "/env create profile:web-app name:shop ttl:soon".into(),
            "ttl: 'soon' is not a duration",
        ),
        (
            "/env create profile:web-app".into(),
            "missing name:<string>",
        ),
        ("/env explode".into(), "/env has no subcommand 'explode'"),
        ("/frobnicate".into(), "unknown command '/frobnicate'"),
        (
            "/env create profile:web-app name:$(reboot)".into(),
            "contains '$'",
        ),
        (
            "/env create profile:web-app name:{{x}}".into(),
            "contains '{'",
        ),
        (
            "/env create profile:web-app name:a\u{1b}b".into(),
            "contains control characters",
        ),
    ];
    for (line, expected) in cases {
        let reply = s.say("bob", &line).await;
        assert!(reply.private, "{line}: errors are private");
        assert!(reply.job.is_none() && reply.approval.is_none(), "{line}");
        assert!(
            reply.text.contains(expected),
            "{line}\n  got: {}\n  expected: {expected}",
            reply.text
        );
    }
    assert_eq!(s.count("SELECT COUNT(*) FROM environments").await, 0);
    assert_eq!(s.count("SELECT COUNT(*) FROM jobs").await, 0);
    assert!(t.pve.writes().await.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_without_a_team_is_told_how_to_get_one() {
    let t = TestEnv::new(Opts::default());
    let s = t.start();
    let reply = s.say("eve", "/env create profile:web-app name:shop").await;
    assert!(
        reply.text.contains("eve is not in any team"),
        "{}",
        reply.text
    );
    // Anyone may read the help and the profiles.
    assert!(s.say("eve", "/help").await.text.contains("/env create"));
    assert!(s.say("eve", "/profiles").await.text.contains("docker-host"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_the_plan_and_sends_nothing() {
    let t = TestEnv::new(Opts {
        quota: "cores = 4, environments = 3".into(),
        ..Opts::default()
    });
    let s = t.start();
    t.pve.clear_requests().await;
    let reply = s
        .say(
            "bob",
            "/env create profile:web-app name:shop cpu:2 dry-run:true",
        )
        .await;
    assert!(reply.job.is_none());
    let text = &reply.text;
    for expected in [
        "Plan for shop (dry run, nothing was created)",
        "profile web-app, team web, node pve1",
        "2 cores, 2048 MB memory",
        "quota: cores 0 → 2",
        "environments 0 → 1",
        "would start at once",
        "create container → start container → wait for network → wait for SSH → post-provision: install packages → initial snapshot → mark ready",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let over = s
        .say(
            "bob",
            "/env create profile:web-app name:big cpu:8 dry-run:true",
        )
        .await;
    assert!(
        over.text.contains(
            "would need an admin's approval: over the team's quota: cores 8 of 4 (4 over)"
        ),
        "{}",
        over.text
    );
    // Only the reconcile loop's look at /cluster/resources may reach Proxmox.
    let requests: Vec<_> = t
        .pve
        .requests()
        .await
        .into_iter()
        .filter(|r| r["path"] != "/api2/json/cluster/resources")
        .collect();
    assert!(
        requests.is_empty(),
        "a dry run talked to Proxmox: {requests:?}"
    );
    assert_eq!(s.count("SELECT COUNT(*) FROM environments").await, 0);
    s.stop().await;
}

#[test]
fn check_accepts_the_shipped_configuration_and_names_a_broken_profile() {
    let t = TestEnv::new(Opts::default());
    let ok = t.slipway(&["check"], "");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ok"));

    let broken = t.dir.path().join("profiles/web-app.toml");
    let text = std::fs::read_to_string(&broken).unwrap();
    std::fs::write(
        &broken,
        text.replace(
            "default = 2, min = 1, max = 8",
            "default = 20, min = 1, max = 8",
        )
        .replace("bridge = \"vmbr0\"", "bridge = \"vmbr9\""),
    )
    .unwrap();
    std::fs::write(
        t.dir.path().join("profiles/typo.toml"),
        "name = \"typo\"\ndescripton = \"x\"\n",
    )
    .unwrap();
    let out = t.slipway(&["check"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let web_app = broken.display().to_string();
    assert!(
        err.contains(&format!(
            "{web_app}: resources.cores: needs min <= default <= max (got 1 <= 20 <= 8)"
        )),
        "{err}"
    );
    assert!(
        err.contains("typo.toml") && err.contains("unknown field `descripton`"),
        "{err}"
    );
}

#[test]
fn check_lists_every_configuration_problem() {
    let t = TestEnv::new(Opts::default());
    let cfg = std::fs::read_to_string(&t.config_path).unwrap();
    let bad = cfg
        .replace(
            "token_secret_file = \"pve-token\"",
            "token_secret_env = \"SLIPWAY_TEST_NO_SUCH_VARIABLE\"",
        )
        .replace(
            "vmids = { first = 900, last = 999 }",
            "vmids = { first = 250, last = 260 }",
        )
        .replace("timeout = \"10s\"", "timeout = \"ten seconds\"");
    std::fs::write(&t.config_path, bad).unwrap();
    let out = t.slipway(&["check"], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the environment variable SLIPWAY_TEST_NO_SUCH_VARIABLE is not set"),
        "{err}"
    );
    assert!(
        err.contains("teams.web.vmids overlaps teams.data.vmids"),
        "{err}"
    );
    assert!(err.contains("proxmox.timeout: 'ten seconds'"), "{err}");
}
