//! Post-provision steps: a configured local program (such as ansible-playbook)
//! run with an argv whose elements are templates over validated values only —
//! never a shell string — with its output streamed into the job log.

use serde::Serialize;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// The values a post-provision argument may use. Each was validated before it got here.
#[derive(Debug, Clone, Serialize)]
pub struct StepValues {
    pub env_id: i64,
    pub hostname: String,
    pub vmid: u32,
    pub node: String,
    /// Absent when the guest reported none (a step that uses it checks first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub team: String,
    pub profile: String,
    pub packages: Vec<String>,
    /// For profiles with `docker_tls = true`: dockerd's certificate files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_tls: Option<crate::provider::docker::server_cert::DockerdTls>,
    /// For steps that log in to the guest: how.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshValues>,
}

/// `{{ ssh.user }}`, `{{ ssh.key_file }}` (Slipway's private key) and
/// `{{ ssh.known_hosts }}` (a file with the host key recorded at first contact).
#[derive(Debug, Clone, Serialize)]
pub struct SshValues {
    pub user: String,
    pub key_file: String,
    pub known_hosts: String,
}

/// Why a program failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    #[error("argument {index} ('{template}') could not be rendered: {message}")]
    Template {
        index: usize,
        template: String,
        message: String,
    },
    #[error("could not start {program}: {message}; is it installed and on PATH?")]
    Spawn { program: String, message: String },
    #[error("{program} exited with {status}{}", last(.tail))]
    Exit {
        program: String,
        status: String,
        tail: Vec<String>,
    },
    #[error("{program} did not finish within {timeout:?} and was killed")]
    Timeout { program: String, timeout: Duration },
}

fn last(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {}", tail.join(" | "))
    }
}

/// Renders each argv element on its own: a value can never become a second argument.
pub fn render_argv(templates: &[String], values: &StepValues) -> Result<Vec<String>, RunError> {
    let mut env = minijinja::Environment::new();
    // A value the step does not have is an error, never an empty argument.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    templates
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let fail = |message: String| RunError::Template {
                index,
                template: t.clone(),
                message,
            };
            let rendered = env.render_str(t, values).map_err(|e| fail(e.to_string()))?;
            if rendered.contains('\0') {
                return Err(fail("the result contains a NUL byte".into()));
            }
            Ok(rendered)
        })
        .collect()
}

/// Runs `argv` in `workdir`, sending each output line to `lines`.
pub async fn run(
    argv: &[String],
    workdir: &PathBuf,
    timeout: Duration,
    lines: mpsc::UnboundedSender<String>,
) -> Result<(), RunError> {
    let program = argv.first().cloned().unwrap_or_default();
    let mut child = tokio::process::Command::new(&program)
        .args(&argv[1..])
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RunError::Spawn {
            program: program.clone(),
            message: e.to_string(),
        })?;
    let (tail_tx, mut tail_rx) = mpsc::unbounded_channel::<String>();
    let mut readers = Vec::new();
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    for stream in [stdout, stderr].into_iter().flatten() {
        let lines = lines.clone();
        let tail_tx = tail_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = tail_tx.send(line.clone());
                let _ = lines.send(line);
            }
        }));
    }
    drop(tail_tx);
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            return Err(RunError::Spawn {
                program,
                message: e.to_string(),
            })
        }
        Err(_) => {
            let _ = child.kill().await;
            return Err(RunError::Timeout { program, timeout });
        }
    };
    for r in readers {
        let _ = r.await;
    }
    let mut tail = Vec::new();
    while let Ok(line) = tail_rx.try_recv() {
        tail.push(line);
    }
    let skip = tail.len().saturating_sub(3);
    let tail: Vec<String> = tail.into_iter().skip(skip).collect();
    if status.success() {
        Ok(())
    } else {
        Err(RunError::Exit {
            program,
            status: status.to_string(),
            tail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> StepValues {
        StepValues {
            env_id: 1,
            hostname: "shop".into(),
            vmid: 200,
            node: "pve1".into(),
            address: Some("10.0.0.5".into()),
            team: "web".into(),
            profile: "web-app".into(),
            packages: vec!["nginx".into(), "curl".into()],
            docker_tls: None,
            ssh: None,
        }
    }

    #[test]
    fn each_argument_is_rendered_on_its_own() {
        let argv = render_argv(
            &[
                "ansible-playbook".into(),
                "-i".into(),
                "{{ address }},".into(),
                "-e".into(),
                "pkgs={{ packages | join(',') }}".into(),
            ],
            &values(),
        )
        .unwrap();
        assert_eq!(
            argv,
            vec![
                "ansible-playbook",
                "-i",
                "10.0.0.5,",
                "-e",
                "pkgs=nginx,curl"
            ]
        );
    }

    #[test]
    fn an_unknown_template_syntax_is_an_error() {
        assert!(render_argv(&["{{ oops".into()], &values()).is_err());
    }

    #[test]
    fn a_value_the_step_does_not_have_is_an_error_not_an_empty_argument() {
        let e = render_argv(&["--cert={{ docker_tls.cert_file }}".into()], &values())
            .unwrap_err()
            .to_string();
        assert!(e.contains("docker_tls.cert_file"), "{e}");
        let mut v = values();
        v.docker_tls = Some(crate::provider::docker::server_cert::DockerdTls {
            ca_file: "/t/ca.pem".into(),
            cert_file: "/t/cert.pem".into(),
            key_file: "/t/key.pem".into(),
            port: 2376,
        });
        let argv = render_argv(&["--cert={{ docker_tls.cert_file }}".into()], &v).unwrap();
        assert_eq!(argv, vec!["--cert=/t/cert.pem"]);
    }

    #[tokio::test]
    async fn output_lines_are_streamed_and_a_failure_is_reported() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let dir = std::env::temp_dir();
        let argv = vec![
            "sh".to_string(),
            "-c".to_string(),
            "echo hello; echo oops >&2; exit 3".to_string(),
        ];
        let err = run(&argv, &dir, Duration::from_secs(10), tx)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("exit status: 3"), "{err}");
        let mut got = Vec::new();
        while let Ok(l) = rx.try_recv() {
            got.push(l);
        }
        got.sort();
        assert_eq!(got, vec!["hello", "oops"]);
    }

    #[tokio::test]
    async fn a_missing_program_says_to_install_it() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let err = run(
            &["no-such-program-xyz".into()],
            &std::env::temp_dir(),
            Duration::from_secs(5),
            tx,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("is it installed"), "{err}");
    }
}
