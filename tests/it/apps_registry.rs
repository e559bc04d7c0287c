//! Private images: a real registry (Debian's docker-registry) that wants a
//! password. Without `[[docker.registries]]` the deploy fails and says what
//! to configure; with a wrong password it says which entry to check; with
//! the right one dockerd pulls the image and the app runs. The password is
//! never shown or stored.

use crate::apps_support::registry::Registry;
use crate::apps_support::*;
use crate::common::{job_of, Opts, Running};
use slipway::domain::lifecycle::JobState;

/// Appends `[[docker.registries]]` for `reg` with `password` (written to a file).
fn configure(w: &World, reg: &Registry, password: &str) {
    let file = w.env.dir.path().join("registry-password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let mut text = std::fs::read_to_string(&w.env.config_path).unwrap();
    if !text.contains("[[docker.registries]]") {
        text.push_str(&format!(
            "\n[[docker.registries]]\nserver = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\n",
            reg.server,
            reg.username,
            file.display()
        ));
    }
    std::fs::write(&w.env.config_path, text).unwrap();
}

/// Deploys `image` as `name`; the job's end state and what the user was told.
async fn deploy(w: &World, image: &str, name: &str) -> (JobState, String, Running) {
    let s = w.env.start();
    let reply = s
        .say(
            "bob",
            &format!("/app deploy image:{image} name:{name} env:GREETING=private"),
        )
        .await;
    let job = s.finished(job_of(&reply)).await;
    let reason = s.env(name).await.reason.unwrap_or_default();
    let log = s.dispatcher.store.job_log(job.id).await.unwrap();
    let logged: Vec<String> = log.into_iter().map(|l| l.line).collect();
    let all = format!("{reason}\n{}\n{}", everything_said(&s), logged.join("\n"));
    (job.state, all, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_image_is_pulled_with_its_registrys_credentials() {
    let w = World::new(false, Opts::default()).await;
    let reg = Registry::start().await;
    let image = reg.push(&w.dockerd, "slipway-test/web:v1", "team/web:v1");

    // No credentials: refused, and the user is told what to configure.
    let (state, said, s) = deploy(&w, &image, "nocreds").await;
    assert_eq!(state, JobState::Failed, "{said}");
    assert!(said.contains("[[docker.registries]]"), "{said}");
    assert!(
        said.contains(&format!("server = \"{}\"", reg.server)),
        "{said}"
    );
    s.stop().await;

    // A wrong password: the entry to check is named; the password is not shown.
    configure(&w, &reg, "not-the-password");
    let (state, said, s) = deploy(&w, &image, "wrongpw").await;
    assert_eq!(state, JobState::Failed, "{said}");
    assert!(said.contains("check its username and password"), "{said}");
    assert!(said.contains(&reg.username), "{said}");
    assert!(!said.contains("not-the-password"), "{said}");
    s.stop().await;

    // The right password: pulled, running, serving.
    configure(&w, &reg, &reg.password);
    let (state, said, s) = deploy(&w, &image, "shop").await;
    assert_eq!(state, JobState::Succeeded, "{said}");
    assert!(!said.contains(&reg.password), "{said}");
    let id = app_id(&s, "shop").await;
    let containers = w.dockerd.app_containers(&s.dispatcher.docker, id).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert!(containers[0].running(), "{:?}", containers[0]);
    assert_eq!(containers[0].image, image);
    let mut secrets = s.secrets.clone();
    secrets.push(reg.password.clone());
    for (_, text) in s.sink.all() {
        crate::common::assert_no_secret(&secrets, &text, "a chat message");
    }
    s.stop().await;
}

/// Operator credentials go only where the operator says: a registry entry
/// whose `hosts` leaves this Docker host out is not sent there (the same rule
/// keeps every entry away from a team's docker-host environment), and the
/// user is told why the pull was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_not_sent_to_a_host_they_are_not_for() {
    let w = World::new(false, Opts::default()).await;
    let reg = Registry::start().await;
    let image = reg.push(&w.dockerd, "slipway-test/web:v1", "team/web:v2");
    configure(&w, &reg, &reg.password);
    let text = std::fs::read_to_string(&w.env.config_path).unwrap();
    let text = text.replace("password_file = \"", "hosts = []\npassword_file = \"");
    std::fs::write(&w.env.config_path, text).unwrap();

    let (state, said, s) = deploy(&w, &image, "scoped").await;
    assert_eq!(state, JobState::Failed, "{said}");
    assert!(
        said.contains(&format!(
            "Slipway's credentials for {} are not given to",
            reg.server
        )),
        "{said}"
    );
    assert!(!said.contains(&reg.password), "{said}");
    s.stop().await;
}
