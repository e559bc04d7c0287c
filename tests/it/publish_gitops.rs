//! Caddy GitOps against a real bare repository (`git init --bare`): one
//! commit per publish and per unpublish touching only the allowed path;
//! repeated operations add no commit; concurrent publishes, from one process
//! and from two working copies racing to push, all land; a stale
//! `index.lock` is survived; escapes through a path or a symbolic link, and
//! files Slipway did not write, are left alone.

use crate::publish_support::*;
use slipway::provider::publish::gitops::GitOps;
use slipway::provider::publish::{PublishError, Router};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Remote {
    bare: PathBuf,
}

fn git(dir: &Path) -> Command {
    let mut cmd = Command::new(program("git", "git"));
    cmd.current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost");
    cmd
}

/// A bare repository with one commit on `main` (a README and an unrelated file).
fn remote(dir: &Path) -> Remote {
    let bare = dir.join("caddy.git");
    run(git(dir)
        .args(["init", "--quiet", "--bare", "--initial-branch=main"])
        .arg(&bare));
    let seed = dir.join("seed");
    run(git(dir).args(["clone", "--quiet"]).arg(&bare).arg(&seed));
    std::fs::write(seed.join("README.md"), "Caddy services\n").unwrap();
    std::fs::create_dir(seed.join("other")).unwrap();
    std::fs::write(seed.join("other/keep.yaml"), "name: keep\n").unwrap();
    run(git(&seed).args(["add", "."]));
    run(git(&seed).args(["commit", "--quiet", "-m", "seed"]));
    run(git(&seed).args(["push", "--quiet", "origin", "HEAD:refs/heads/main"]));
    Remote { bare }
}

impl Remote {
    fn commits(&self) -> usize {
        let out = stdout(git(&self.bare).args(["rev-list", "--count", "main"]));
        out.trim().parse().unwrap()
    }

    /// Files touched by the commit `rev` (e.g. "main", "main~1").
    fn touched(&self, rev: &str) -> Vec<String> {
        let out = stdout(git(&self.bare).args(["show", "--name-only", "--format=", rev]));
        out.lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    fn subject(&self, rev: &str) -> String {
        stdout(git(&self.bare).args(["log", "-1", "--format=%s", rev]))
            .trim()
            .to_string()
    }

    fn file(&self, path: &str) -> Option<String> {
        let out = git(&self.bare)
            .args(["show", &format!("main:{path}")])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn gitops(remote: &Remote, dir: &Path, clone: &str) -> Box<dyn Router> {
    let toml = format!(
        r#"
        router = "caddy-git"
        zones = ["{ZONE}"]
        [caddy_git]
        repo = "{}"
        branch = "main"
        dir = "services/slipway"
        clone_dir = "{clone}"
        author_name = "Slipway Bot"
        author_email = "slipway@test.example"
        "#,
        remote.bare.display()
    );
    publishers(&toml, dir).router.unwrap()
}

const SHOP: &str = "services/slipway/shop.test.example.yaml";

#[tokio::test]
async fn a_publish_is_one_commit_touching_only_the_service_file() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path());
    let router = gitops(&remote, dir.path(), "work");

    router
        .publish(&route(12, "shop", Ipv4Addr::new(10, 20, 0, 12), 8080))
        .await
        .unwrap();

    assert_eq!(remote.commits(), 2);
    assert_eq!(remote.touched("main"), vec![SHOP]);
    assert_eq!(
        remote.subject("main"),
        "Publish shop.test.example for environment shop (#12)"
    );
    assert_eq!(
        remote.file(SHOP).unwrap(),
        "# Written by Slipway for environment shop (team web); removed on teardown. Do not edit.\n\
         # slipway-env-id: 12\n\
         name: \"shop.test.example\"\n\
         type: \"proxy\"\n\
         domain: \"shop.test.example\"\n\
         headers: true\n\
         auth: false\n\
         backend: \"10.20.0.12:8080\"\n"
    );
    let author = stdout(git(&remote.bare).args(["log", "-1", "--format=%an <%ae>", "main"]));
    assert_eq!(author.trim(), "Slipway Bot <slipway@test.example>");
}

#[tokio::test]
async fn publish_and_unpublish_are_each_one_commit_and_repeats_add_none() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path());
    let router = gitops(&remote, dir.path(), "work");
    let shop = route(12, "shop", Ipv4Addr::new(10, 20, 0, 12), 8080);

    router.publish(&shop).await.unwrap();
    router.publish(&shop).await.unwrap();
    assert_eq!(remote.commits(), 2);

    router.unpublish(12, &shop.domain).await.unwrap();
    router.unpublish(12, &shop.domain).await.unwrap();

    assert_eq!(remote.commits(), 3);
    assert_eq!(remote.touched("main"), vec![SHOP]);
    assert_eq!(
        remote.subject("main"),
        "Unpublish shop.test.example (environment #12)"
    );
    assert!(remote.file(SHOP).is_none());
    assert!(remote.file("other/keep.yaml").is_some());
}

#[tokio::test]
async fn concurrent_publishes_from_one_process_both_land() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path());
    let router = gitops(&remote, dir.path(), "work");
    let (a, b) = (
        route(1, "shop", Ipv4Addr::new(10, 20, 0, 1), 80),
        route(2, "blog", Ipv4Addr::new(10, 20, 0, 2), 80),
    );

    let (ra, rb) = tokio::join!(router.publish(&a), router.publish(&b));
    ra.unwrap();
    rb.unwrap();

    assert_eq!(remote.commits(), 3);
    assert!(remote.file(SHOP).is_some());
    assert!(remote
        .file("services/slipway/blog.test.example.yaml")
        .is_some());
    let fsck = git(&remote.bare)
        .args(["fsck", "--strict"])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}

#[tokio::test]
async fn two_working_copies_racing_to_push_both_land() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path());
    let first = gitops(&remote, dir.path(), "work-a");
    let second = gitops(&remote, dir.path(), "work-b");
    // Clone both before the race so the pushes, not the clones, collide.
    first
        .publish(&route(1, "warm-a", Ipv4Addr::new(10, 20, 0, 1), 80))
        .await
        .unwrap();
    second
        .publish(&route(2, "warm-b", Ipv4Addr::new(10, 20, 0, 2), 80))
        .await
        .unwrap();

    let mut ours = Vec::new();
    for i in 0..3 {
        let a = route(10 + i, &format!("a{i}"), Ipv4Addr::new(10, 20, 1, 1), 80);
        let b = route(20 + i, &format!("b{i}"), Ipv4Addr::new(10, 20, 2, 1), 80);
        // Both push at once: one is rejected and must redo its change on the new tip.
        let (ra, rb) = tokio::join!(first.publish(&a), second.publish(&b));
        ra.unwrap();
        rb.unwrap();
        ours.extend([a, b]);
    }

    assert_eq!(remote.commits(), 1 + 2 + 6);
    for r in &ours {
        let path = format!("services/slipway/{}.yaml", r.domain);
        assert!(remote.file(&path).is_some(), "{path} missing");
    }
}

#[tokio::test]
async fn a_stale_index_lock_left_by_a_crash_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path());
    let router = gitops(&remote, dir.path(), "work");
    let shop = route(12, "shop", Ipv4Addr::new(10, 20, 0, 12), 8080);
    router.publish(&shop).await.unwrap();
    std::fs::write(dir.path().join("work/.git/index.lock"), "").unwrap();
    std::fs::write(dir.path().join("work/.git/refs/heads/main.lock"), "").unwrap();

    router.unpublish(12, &shop.domain).await.unwrap();

    assert_eq!(remote.commits(), 3);
    assert!(!dir.path().join("work/.git/index.lock").exists());
    assert!(!dir.path().join("work/.git/refs/heads/main.lock").exists());
}

#[tokio::test]
async fn a_path_outside_the_configured_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path());
    let cfg = slipway::provider::publish::config::GitOpsConfig {
        repo: remote.bare.display().to_string(),
        branch: "main".into(),
        dir: "services/slipway".into(),
        clone_dir: dir.path().join("work"),
        author_name: "Slipway".into(),
        author_email: "slipway@localhost".into(),
        service_type: "proxy".into(),
        headers: true,
        auth: false,
        push_attempts: 3,
        timeout: std::time::Duration::from_secs(30),
    };
    let gitops = GitOps::new(&cfg);

    for escape in [
        "../../README.md",
        "../other/keep.yaml",
        "/etc/passwd",
        "..",
        ".git",
        "a/b.yaml",
    ] {
        let err = gitops.path_for(escape).unwrap_err();
        assert!(matches!(err, PublishError::Refused(_)), "{escape}: {err}");
    }
    assert_eq!(
        gitops.path_for("shop.test.example.yaml").unwrap(),
        PathBuf::from(SHOP)
    );
    assert_eq!(remote.commits(), 1);
}

#[tokio::test]
async fn a_service_directory_that_is_a_symbolic_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path());
    // Someone commits services/slipway as a link to a directory outside the repository.
    let seed = dir.path().join("seed");
    std::fs::create_dir(seed.join("services")).unwrap();
    std::os::unix::fs::symlink("/tmp", seed.join("services/slipway")).unwrap();
    run(git(&seed).args(["add", "services"]));
    run(git(&seed).args(["commit", "--quiet", "-m", "link"]));
    run(git(&seed).args(["push", "--quiet", "origin", "HEAD:refs/heads/main"]));
    let router = gitops(&remote, dir.path(), "work");

    let err = router
        .publish(&route(12, "shop", Ipv4Addr::new(10, 20, 0, 12), 8080))
        .await
        .unwrap_err();

    assert!(err.to_string().contains("is a symbolic link"), "{err}");
    assert!(!Path::new("/tmp/shop.test.example.yaml").exists());
    assert_eq!(remote.commits(), 2);
}

#[tokio::test]
async fn a_domain_published_by_another_environment_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path());
    let router = gitops(&remote, dir.path(), "work");
    router
        .publish(&route(12, "shop", Ipv4Addr::new(10, 20, 0, 12), 8080))
        .await
        .unwrap();

    let err = router
        .publish(&route(13, "shop", Ipv4Addr::new(10, 20, 0, 13), 8080))
        .await
        .unwrap_err();
    router
        .unpublish(13, &route(13, "shop", Ipv4Addr::LOCALHOST, 1).domain)
        .await
        .unwrap();

    assert!(
        matches!(&err, PublishError::Conflict { owner, .. } if owner.contains("#12")),
        "{err}"
    );
    assert_eq!(remote.commits(), 2);
    assert!(remote.file(SHOP).unwrap().contains("10.20.0.12:8080"));
}

#[tokio::test]
async fn a_file_slipway_did_not_write_is_neither_overwritten_nor_removed() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path());
    let seed = dir.path().join("seed");
    std::fs::create_dir_all(seed.join("services/slipway")).unwrap();
    std::fs::write(
        seed.join(SHOP),
        "name: shop.test.example\nbackend: 10.0.0.1:80\n",
    )
    .unwrap();
    run(git(&seed).args(["add", "services"]));
    run(git(&seed).args(["commit", "--quiet", "-m", "by hand"]));
    run(git(&seed).args(["push", "--quiet", "origin", "HEAD:refs/heads/main"]));
    let router = gitops(&remote, dir.path(), "work");
    let shop = route(12, "shop", Ipv4Addr::new(10, 20, 0, 12), 8080);

    let err = router.publish(&shop).await.unwrap_err();
    router.unpublish(12, &shop.domain).await.unwrap();

    assert!(
        err.to_string().contains("a file Slipway did not write"),
        "{err}"
    );
    assert_eq!(remote.commits(), 2);
    assert!(remote.file(SHOP).unwrap().contains("10.0.0.1:80"));
}

#[tokio::test]
async fn a_missing_branch_is_reported_by_git() {
    let dir = tempfile::tempdir().unwrap();
    let remote = remote(dir.path());
    let toml = format!(
        "router = \"caddy-git\"\nzones = [\"{ZONE}\"]\n[caddy_git]\nrepo = \"{}\"\nbranch = \"deploy\"\ndir = \"services\"\nclone_dir = \"work\"\n",
        remote.bare.display()
    );
    let router = publishers(&toml, dir.path()).router.unwrap();

    let err = router
        .publish(&route(12, "shop", Ipv4Addr::new(10, 20, 0, 12), 8080))
        .await
        .unwrap_err();

    assert!(
        matches!(&err, PublishError::Git { stderr, .. } if stderr.contains("deploy")),
        "{err}"
    );
    assert!(!dir.path().join("work").exists());
}
