//! Caddy service definitions committed to Git (the GitOps mode): a YAML file
//! per exposed environment, `<dir>/<domain>.yaml` with the fields `name`,
//! `type`, `domain`, `headers`, `auth` and `backend`, in Slipway's own working
//! copy of the configured repository; each publish and each removal is one
//! commit with a clear message, pushed to the configured branch. The
//! deployment pipeline that turns these files into Caddy configuration is not
//! Slipway's.
//!
//! Safety: git runs with an argv (never a shell) and literal pathspecs; only
//! the one file under the configured directory is staged, and the commit is
//! refused if anything else would be in it; a directory or file that is a
//! symbolic link is refused, so a link committed into the repository cannot
//! make Slipway write elsewhere. A file Slipway did not write (no
//! `# slipway-env-id:` line) or that belongs to another environment is never
//! overwritten or removed.
//!
//! Concurrency: one operation at a time per process (an async mutex) and per
//! working copy (an exclusive `flock` on `<clone_dir>.lock`). Holding both, any
//! `index.lock` left in the working copy is from a git run that died, so it is
//! removed. Each attempt starts from the remote branch's tip (fetch, then
//! reset), so a crash between commit and push leaves nothing that a retry would
//! trip over; when a push is rejected because someone else pushed first, the
//! change is made again on the new tip — which is what a rebase of a one-file
//! change amounts to, without its conflicts — a bounded number of times.

use super::config::GitOpsConfig;
use super::{PublishError, Route, Router};
use crate::domain::domain_name::Domain;
use async_trait::async_trait;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use tokio::process::Command;

/// The line that marks a file as Slipway's, and whose.
const OWNER_TAG: &str = "# slipway-env-id: ";

/// Publishes routes as service YAML files in a Git repository.
#[derive(Debug)]
pub struct GitOps {
    cfg: GitOpsConfig,
    lock: tokio::sync::Mutex<()>,
}

/// What one operation does to the service file.
enum Edit {
    Write { env_id: i64, text: String },
    Remove { env_id: i64 },
}

/// The outcome of one push.
enum Pushed {
    Done,
    Rejected(String),
}

/// Holds the exclusive lock on the working copy until dropped.
struct CloneLock(#[allow(dead_code)] fs::File);

impl GitOps {
    pub fn new(cfg: &GitOpsConfig) -> GitOps {
        GitOps {
            cfg: cfg.clone(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The service file of `domain`, relative to the repository's root.
    pub fn service_path(&self, domain: &Domain) -> Result<PathBuf, PublishError> {
        self.path_for(&format!("{domain}.yaml"))
    }

    /// `<dir>/<file_name>`, refusing any name that is not one plain file name
    /// (a `/`, `..`, a hidden or empty name): nothing outside the configured
    /// directory can be addressed.
    pub fn path_for(&self, file_name: &str) -> Result<PathBuf, PublishError> {
        let mut parts = Path::new(file_name).components();
        let plain = matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        ) && !file_name.starts_with('.')
            && !file_name.contains(['/', '\\']);
        if !plain {
            return Err(PublishError::Refused(format!(
                "{} is not a plain file name; Slipway writes only directly under {}",
                crate::domain::names::shown(file_name),
                self.cfg.dir.display()
            )));
        }
        Ok(self.cfg.dir.join(file_name))
    }

    /// The service file's whole content for `route`.
    pub fn render(&self, route: &Route) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("strings always serialize");
        format!(
            "# Written by Slipway for environment {} (team {}); removed on teardown. Do not edit.\n\
             {OWNER_TAG}{}\n\
             name: {}\ntype: {}\ndomain: {}\nheaders: {}\nauth: {}\nbackend: {}\n",
            route.env_name,
            one_line(&route.team),
            route.env_id,
            q(route.domain.as_str()),
            q(&self.cfg.service_type),
            q(route.domain.as_str()),
            self.cfg.headers,
            self.cfg.auth,
            q(&format!("{}:{}", route.address, route.port)),
        )
    }

    /// Runs git in the working copy and returns its stdout.
    async fn git(&self, args: &[&str]) -> Result<String, PublishError> {
        let out = self.git_output(&self.cfg.clone_dir, args).await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(git_error(args, &out))
        }
    }

    async fn git_output(
        &self,
        cwd: &Path,
        args: &[&str],
    ) -> Result<std::process::Output, PublishError> {
        let mut cmd = Command::new("git");
        cmd.arg("-c")
            .arg(format!("user.name={}", self.cfg.author_name))
            .arg("-c")
            .arg(format!("user.email={}", self.cfg.author_email))
            .arg("--literal-pathspecs")
            .args(args)
            .current_dir(cwd)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let run = cmd.output();
        match tokio::time::timeout(self.cfg.timeout, run).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(PublishError::Config(format!(
                "cannot run git: {e}; install it (apt-get install -y git)"
            ))),
            Err(_) => Err(PublishError::Timeout {
                what: format!("`git {}`", args.join(" ")),
                after: self.cfg.timeout,
            }),
        }
    }

    /// Takes the working copy's lock, clones it if needed and clears what a
    /// crashed git run may have left.
    async fn prepare(&self) -> Result<CloneLock, PublishError> {
        let lock_path = self.cfg.clone_dir.with_extension("lock");
        let lock = tokio::task::spawn_blocking(move || -> Result<CloneLock, PublishError> {
            if let Some(parent) = lock_path.parent() {
                fs::create_dir_all(parent).map_err(|e| PublishError::file("create", parent, e))?;
            }
            let f = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| PublishError::file("open", &lock_path, e))?;
            f.lock()
                .map_err(|e| PublishError::file("lock", &lock_path, e))?;
            Ok(CloneLock(f))
        })
        .await
        .map_err(|e| PublishError::Config(format!("the lock task panicked: {e}")))??;
        let git_dir = self.cfg.clone_dir.join(".git");
        if !git_dir.is_dir() {
            self.clone_repo().await?;
        }
        let b = &self.cfg.branch;
        let stale = [
            "index.lock".to_string(),
            "HEAD.lock".to_string(),
            "config.lock".to_string(),
            "shallow.lock".to_string(),
            format!("refs/heads/{b}.lock"),
            format!("refs/remotes/origin/{b}.lock"),
        ];
        for name in stale {
            let path = git_dir.join(name);
            if path.exists() {
                tracing::warn!(path = %path.display(), "removing a lock left by an interrupted git run");
                fs::remove_file(&path).map_err(|e| PublishError::file("remove", &path, e))?;
            }
        }
        self.git(&["remote", "set-url", "origin", &self.cfg.repo])
            .await?;
        Ok(lock)
    }

    async fn clone_repo(&self) -> Result<(), PublishError> {
        let dir = &self.cfg.clone_dir;
        if dir.exists() && fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(PublishError::Config(format!(
                "publish.caddy_git.clone_dir: {} exists but is not a git working copy; remove it or choose another directory",
                dir.display()
            )));
        }
        let parent = dir.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(|e| PublishError::file("create", parent, e))?;
        let target = dir.to_string_lossy();
        let args = [
            "clone",
            "--quiet",
            "--single-branch",
            "--branch",
            &self.cfg.branch,
            "--",
            &self.cfg.repo,
            &target,
        ];
        let out = self.git_output(parent, &args).await?;
        if out.status.success() {
            Ok(())
        } else {
            let _ = fs::remove_dir_all(dir);
            Err(git_error(&args, &out))
        }
    }

    /// Makes the working copy exactly the remote branch's tip.
    async fn sync(&self) -> Result<(), PublishError> {
        let b = &self.cfg.branch;
        let refspec = format!("+refs/heads/{b}:refs/remotes/origin/{b}");
        self.git(&["fetch", "--quiet", "origin", &refspec]).await?;
        let tip = format!("refs/remotes/origin/{b}");
        self.git(&["checkout", "--quiet", "--force", "-B", b, &tip])
            .await?;
        self.git(&["clean", "--quiet", "-f", "-d", "-x"]).await?;
        Ok(())
    }

    /// The absolute path of `rel`, after checking that no directory on the
    /// way and not the file itself is a symbolic link. With `create`, missing
    /// directories are made (after the check, so never through a link).
    fn checked_path(&self, rel: &Path, create: bool) -> Result<Option<PathBuf>, PublishError> {
        let root = &self.cfg.clone_dir;
        let mut at = root.clone();
        for part in rel.components() {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(PublishError::Refused(format!(
                        "{} in the repository is a symbolic link; Slipway writes only real files under {}",
                        rel_display(root, &at),
                        self.cfg.dir.display()
                    )))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(PublishError::file("inspect", &at, e)),
            }
        }
        let abs = root.join(rel);
        let dir = abs.parent().expect("a service path has a directory");
        if !dir.is_dir() {
            if !create {
                return Ok(None);
            }
            fs::create_dir_all(dir).map_err(|e| PublishError::file("create", dir, e))?;
        }
        Ok(Some(abs))
    }

    /// Applies `edit` to the domain's service file and pushes it, redoing it
    /// on the new tip when the push is rejected.
    async fn change(
        &self,
        domain: &Domain,
        edit: Edit,
        message: &[String],
    ) -> Result<(), PublishError> {
        let rel = self.service_path(domain)?;
        let _one = self.lock.lock().await;
        let _lock = self.prepare().await?;
        let mut last_rejection = String::new();
        for attempt in 1..=self.cfg.push_attempts {
            self.sync().await?;
            if !self.stage(domain, &rel, &edit).await? {
                return Ok(());
            }
            let mut args = vec!["commit", "--quiet", "--no-verify"];
            for m in message {
                args.extend(["-m", m.as_str()]);
            }
            self.git(&args).await?;
            match self.push().await? {
                Pushed::Done => return Ok(()),
                Pushed::Rejected(why) => {
                    tracing::info!(file = %rel.display(), %why, "push rejected; redoing the change on the new tip");
                    last_rejection = why;
                    // Jitter, so two writers that collided do not collide again in step.
                    let pause = rand::random_range(20..150 * u64::from(attempt));
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
            }
        }
        Err(PublishError::Git {
            args: format!("push origin HEAD:{}", self.cfg.branch),
            status: format!("rejected {} times", self.cfg.push_attempts),
            stderr: format!(
                "{last_rejection}; other writers keep pushing to {}: raise publish.caddy_git.push_attempts or retry later",
                self.cfg.branch
            ),
        })
    }

    /// Makes the edit in the freshly synced working copy and stages it.
    /// `false` when there is nothing to commit: already done, or not ours.
    async fn stage(&self, domain: &Domain, rel: &Path, edit: &Edit) -> Result<bool, PublishError> {
        let rel_str = rel.to_string_lossy();
        let Some(abs) = self.checked_path(rel, matches!(edit, Edit::Write { .. }))? else {
            return Ok(false);
        };
        let owner = match fs::read_to_string(&abs) {
            Ok(text) => Some(owner_of(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(PublishError::file("read", &abs, e)),
        };
        match (edit, owner) {
            (Edit::Write { env_id, .. }, Some(o)) if o != Some(*env_id) => {
                return Err(PublishError::Conflict {
                    domain: domain.to_string(),
                    owner: describe_owner(o, &rel_str),
                });
            }
            (Edit::Write { text, .. }, _) => {
                super::files::write_atomic_blocking(
                    abs.parent().expect("has a directory"),
                    &abs.file_name().expect("has a name").to_string_lossy(),
                    text.as_bytes(),
                )?;
                self.git(&["add", "--", &rel_str]).await?;
            }
            (Edit::Remove { .. }, None) => return Ok(false),
            (Edit::Remove { env_id }, Some(o)) if o != Some(*env_id) => {
                tracing::warn!(file = %rel_str, env_id, "not removing a service file that is not this environment's");
                return Ok(false);
            }
            (Edit::Remove { .. }, Some(_)) => {
                self.git(&["rm", "--quiet", "--", &rel_str]).await?;
            }
        }
        let staged = self.git(&["diff", "--cached", "--name-only", "-z"]).await?;
        let staged: Vec<&str> = staged.split('\0').filter(|s| !s.is_empty()).collect();
        if !staged.is_empty() && staged != [rel_str.as_ref()] {
            return Err(PublishError::Refused(format!(
                "the commit would touch {staged:?}, not only {rel_str}; nothing was committed"
            )));
        }
        Ok(!staged.is_empty())
    }

    async fn push(&self) -> Result<Pushed, PublishError> {
        let dest = format!("HEAD:refs/heads/{}", self.cfg.branch);
        let args = ["push", "--quiet", "--porcelain", "origin", &dest];
        let out = self.git_output(&self.cfg.clone_dir, &args).await?;
        if out.status.success() {
            return Ok(Pushed::Done);
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let rejected = stdout.lines().any(|l| l.starts_with('!'))
            || [
                "[rejected]",
                "non-fast-forward",
                "fetch first",
                "cannot lock ref",
                "failed to update ref",
            ]
            .iter()
            .any(|s| stderr.contains(s));
        if rejected {
            Ok(Pushed::Rejected(
                stdout
                    .lines()
                    .chain(stderr.lines())
                    .find(|l| l.starts_with('!') || l.contains("rejected"))
                    .unwrap_or("rejected")
                    .trim()
                    .to_string(),
            ))
        } else {
            Err(git_error(&args, &out))
        }
    }
}

#[async_trait]
impl Router for GitOps {
    fn kind(&self) -> &'static str {
        "caddy-git"
    }

    async fn publish(&self, route: &Route) -> Result<(), PublishError> {
        let message = vec![
            format!(
                "Publish {} for environment {} (#{})",
                route.domain, route.env_name, route.env_id
            ),
            format!(
                "Backend {}:{}, team {}, profile {}. Written by Slipway.",
                route.address,
                route.port,
                one_line(&route.team),
                one_line(&route.profile)
            ),
        ];
        let edit = Edit::Write {
            env_id: route.env_id,
            text: self.render(route),
        };
        self.change(&route.domain, edit, &message).await
    }

    async fn unpublish(&self, env_id: i64, domain: &Domain) -> Result<(), PublishError> {
        let message = vec![
            format!("Unpublish {domain} (environment #{env_id})"),
            "Removed by Slipway on teardown.".to_string(),
        ];
        self.change(domain, Edit::Remove { env_id }, &message).await
    }
}

/// `Some(id)` for a file Slipway wrote for environment `id`, `None` for one it did not write.
fn owner_of(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(OWNER_TAG))
        .and_then(|id| id.trim().parse().ok())
}

fn describe_owner(owner: Option<i64>, rel: &str) -> String {
    match owner {
        Some(id) => format!("environment #{id} ({rel})"),
        None => format!("{rel}, a file Slipway did not write"),
    }
}

fn one_line(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

fn rel_display(root: &Path, at: &Path) -> String {
    at.strip_prefix(root).unwrap_or(at).display().to_string()
}

fn git_error(args: &[&str], out: &std::process::Output) -> PublishError {
    let stderr = String::from_utf8_lossy(&out.stderr);
    PublishError::Git {
        args: args.join(" "),
        status: out.status.to_string(),
        stderr: stderr
            .trim()
            .lines()
            .take(6)
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_read_from_the_tag_line() {
        assert_eq!(owner_of("# x\n# slipway-env-id: 12\nname: a\n"), Some(12));
        assert_eq!(owner_of("name: a\n"), None);
    }
}
