//! A Docker host declared as `tcp://HOST:PORT` with ca_file, cert_file and
//! key_file, against a real dockerd listening there with `--tlsverify` and
//! certificates of a throwaway CA: `/app deploy` runs the container over
//! TLS; a client certificate of another CA, a missing client identity and a
//! CA that did not sign dockerd's certificate are each refused with an error
//! that names the host and says which file to check, never its contents.

use crate::apps_support::tls::{connection, Identity, TLS_HOST};
use crate::apps_support::*;
use crate::common::{job_of, Opts, Running};
use slipway::config::Config;
use slipway::domain::lifecycle::{EnvState, JobState};
use slipway::provider::docker::{LABEL_APP, LABEL_APP_ID, LABEL_OWNER, LABEL_TEAM};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_deploys_to_a_tcp_host_over_tls_and_runs_with_its_labels() {
    let w = World::with_tls(Opts::default()).await;
    let s = w.env.start();
    let socket = w.dockerd.over_socket(&s.dispatcher.config.docker);

    let reply = s
        .say(
            "bob",
            "/app deploy image:slipway-test/web:v1 name:shop env:GREETING=hello",
        )
        .await;
    let job = s.finished(job_of(&reply)).await;

    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let id = app_id(&s, "shop").await;
    let containers = w.dockerd.app_containers(&socket, id).await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    let c = &containers[0];
    assert!(c.running(), "{c:?}");
    assert_eq!(c.image, "slipway-test/web:v1");
    assert_eq!(c.labels[LABEL_OWNER], "slipway");
    assert_eq!(c.labels[LABEL_APP_ID], id.to_string());
    assert_eq!(c.labels[LABEL_APP], "shop");
    assert_eq!(c.labels[LABEL_TEAM], "web");
    let info = s.say("bob", "/app info shop").await.text;
    assert!(info.contains("live: running, up "), "{info}");

    let remove = s.say("bob", "/app remove shop").await;
    assert_eq!(s.finished(job_of(&remove)).await.state, JobState::Succeeded);
    assert!(w.dockerd.all_containers().is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerd_refuses_a_client_certificate_of_another_ca_and_the_user_is_told_what_to_check() {
    let w = World::with_tls(Opts::default()).await;
    let pki = &w.dockerd.tls.as_ref().unwrap().pki;
    use_identity(&w, &pki.foreign_client);

    let said = deploy_refused(&w, "shop").await;

    assert!(
        said.contains("refused Slipway's client certificate"),
        "{said}"
    );
    assert!(
        said.contains(&pki.foreign_client.cert.display().to_string()),
        "{said}"
    );
    assert!(said.contains("--tlscacert"), "{said}");
    assert_no_key_material(&said, &pki.foreign_client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_file_that_did_not_sign_dockerd_s_certificate_does_not_trust_dockerd() {
    let w = World::with_tls(Opts::default()).await;
    let pki = &w.dockerd.tls.as_ref().unwrap().pki;
    use_identity(
        &w,
        &Identity {
            ca: pki.other_ca.clone(),
            ..pki.client.clone()
        },
    );

    let said = deploy_refused(&w, "shop").await;

    assert!(
        said.contains("does not trust the certificate dockerd presented"),
        "{said}"
    );
    assert!(said.contains(&pki.other_ca.display().to_string()), "{said}");
    assert_no_key_material(&said, &pki.client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_machines_trusted_roots_do_not_vouch_for_dockerd_only_ca_file_does() {
    let w = World::with_tls(Opts::default()).await;
    let pki = &w.dockerd.tls.as_ref().unwrap().pki;
    // The machine trusts the CA that signed dockerd's certificate (as it
    // trusts public CAs); Slipway's ca_file names another CA.
    let before = std::env::var_os("SSL_CERT_FILE");
    std::env::set_var("SSL_CERT_FILE", &pki.ca);
    use_identity(
        &w,
        &Identity {
            ca: pki.other_ca.clone(),
            ..pki.client.clone()
        },
    );

    let said = deploy_refused(&w, "shop").await;
    match before {
        Some(v) => std::env::set_var("SSL_CERT_FILE", v),
        None => std::env::remove_var("SSL_CERT_FILE"),
    }

    assert!(
        said.contains("does not trust the certificate dockerd presented"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_host_without_a_client_identity_is_refused() {
    let w = World::with_tls(Opts::default()).await;
    let pki = &w.dockerd.tls.as_ref().unwrap().pki;
    let url = w.dockerd.tcp_url();

    // No cert_file and key_file: the configuration does not load.
    w.env.edit_config(
        &connection(&url, &pki.client),
        &format!("url = \"{url}\"\nca_file = \"{}\"", pki.ca.display()),
    );
    let problems = format!("{:?}", Config::load(&w.env.config_path).unwrap_err());
    assert!(
        problems.contains(&format!("docker.hosts.{TLS_HOST}")),
        "{problems}"
    );
    assert!(
        problems.contains("give all of ca_file, cert_file and key_file"),
        "{problems}"
    );

    // Files that hold no identity: refused before anything is sent to dockerd.
    let empty = w.env.dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    w.env.edit_config(
        &format!("url = \"{url}\"\nca_file = \"{}\"", pki.ca.display()),
        &connection(
            &url,
            &Identity {
                cert: empty.clone(),
                ..pki.client.clone()
            },
        ),
    );
    let said = deploy_refused(&w, "shop").await;
    assert!(said.contains("cert_file"), "{said}");
    assert!(said.contains(&empty.display().to_string()), "{said}");
    assert_no_key_material(&said, &pki.client);
}

/// Points the configured host at `id`'s files instead of the good client identity.
fn use_identity(w: &World, id: &Identity) {
    let url = w.dockerd.tcp_url();
    let good = &w.dockerd.tls.as_ref().unwrap().pki.client;
    w.env
        .edit_config(&connection(&url, good), &connection(&url, id));
}

/// Deploys `name`, expects the job to fail on the TLS host, and returns
/// everything the user was told (the failure reason included).
async fn deploy_refused(w: &World, name: &str) -> String {
    let s: Running = w.env.start();
    let reply = s
        .say(
            "bob",
            &format!("/app deploy image:slipway-test/web:v1 name:{name}"),
        )
        .await;
    let job = s.finished(job_of(&reply)).await;

    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let env = s.env(name).await;
    assert_eq!(env.state, EnvState::Failed);
    let reason = env.reason.unwrap_or_default();
    let said = everything_said(&s);
    let log = s.dispatcher.store.job_log(job.id).await.unwrap();
    let logged = log.iter().map(|l| l.line.as_str()).collect::<Vec<_>>();
    let all = format!("{reason}\n{said}\n{}", logged.join("\n"));
    // The host by name and address, so the operator knows which entry to fix.
    assert!(reason.contains(TLS_HOST), "{reason}");
    assert!(reason.contains(&w.dockerd.tcp_url()), "{reason}");
    assert!(said.contains(TLS_HOST), "{said}");
    assert!(w.dockerd.all_containers().is_empty());
    s.stop().await;
    all
}

/// No line of the private key (nor its PEM armour) reached the user or the job log.
fn assert_no_key_material(said: &str, id: &Identity) {
    assert!(!said.contains("PRIVATE KEY"), "{said}");
    let key = std::fs::read_to_string(&id.key).unwrap();
    for line in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!said.contains(line), "a line of the key was shown: {said}");
    }
}
