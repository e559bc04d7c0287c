//! Throwaway certificates for dockerd's TLS listener, made per test run with
//! the `openssl` CLI (EC P-256, valid two days): a CA that signs dockerd's
//! server certificate (SAN 127.0.0.1 and localhost) and Slipway's client
//! certificate, and a second, unrelated CA with a client certificate of its
//! own — what a host configured with the wrong files looks like.

use super::Dockerd;
use crate::publish_support::{program, run};
use slipway::provider::docker::{DockerConfig, DockerHosts, HostConfig};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The name of the TCP+TLS host in [`super::World::with_tls`]'s configuration.
pub const TLS_HOST: &str = "tls1";

/// A client identity as `[[docker.hosts]]` names it: the CA Slipway trusts
/// dockerd's certificate with, and its own certificate and key.
#[derive(Debug, Clone)]
pub struct Identity {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every file of one test's public-key infrastructure.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA dockerd trusts clients with and that signed its certificate.
    pub ca: PathBuf,
    /// Its private key (PKCS#8, as `openssl genpkey` writes it).
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Signed by `ca`: dockerd lets it in.
    pub client: Identity,
    /// The other CA: trusting it instead of `ca` does not trust dockerd.
    pub other_ca: PathBuf,
    /// A certificate signed by the other CA (with `ca` to trust dockerd).
    pub foreign_client: Identity,
}

const CA_EXT: &str = "basicConstraints = critical, CA:TRUE\n\
                      keyUsage = critical, keyCertSign, cRLSign\n\
                      subjectKeyIdentifier = hash\n";
const SERVER_EXT: &str = "basicConstraints = critical, CA:FALSE\n\
                          keyUsage = critical, digitalSignature\n\
                          extendedKeyUsage = serverAuth\n\
                          subjectAltName = IP:127.0.0.1, DNS:localhost\n";
const CLIENT_EXT: &str = "basicConstraints = critical, CA:FALSE\n\
                          keyUsage = critical, digitalSignature\n\
                          extendedKeyUsage = clientAuth\n";

fn openssl() -> Command {
    Command::new(program("openssl", "openssl"))
}

/// `DIR/NAME-key.pem` (a new P-256 key) and `DIR/NAME.pem`, its certificate
/// for `cn` with extensions `ext`, signed by `issuer` (cert, key) or by itself.
fn issue(
    dir: &Path,
    name: &str,
    cn: &str,
    ext: &str,
    issuer: Option<(&Path, &Path)>,
) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}-key.pem"));
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.pem"));
    let ext_file = dir.join(format!("{name}.ext"));
    std::fs::write(&ext_file, ext).unwrap();
    run(openssl()
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt"])
        .arg("ec_paramgen_curve:P-256")
        .arg("-out")
        .arg(&key));
    run(openssl()
        .args(["req", "-new", "-subj"])
        .arg(format!("/CN={cn}"))
        .arg("-key")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    let mut sign = openssl();
    sign.args(["x509", "-req", "-days", "2", "-in"])
        .arg(&csr)
        .arg("-extfile")
        .arg(&ext_file)
        .arg("-set_serial")
        .arg(format!("0x{:x}", rand_serial()))
        .arg("-out")
        .arg(&cert);
    match issuer {
        Some((ca, ca_key)) => sign.arg("-CA").arg(ca).arg("-CAkey").arg(ca_key),
        None => sign.arg("-signkey").arg(&key),
    };
    run(&mut sign);
    (cert, key)
}

/// Serials must differ between certificates of one issuer.
fn rand_serial() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) >> 1
}

impl Pki {
    /// Makes every file in `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let (ca, ca_key) = issue(dir, "ca", "slipway test CA", CA_EXT, None);
        let (server_cert, server_key) =
            issue(dir, "server", "dockerd", SERVER_EXT, Some((&ca, &ca_key)));
        let (cert, key) = issue(dir, "client", "slipway", CLIENT_EXT, Some((&ca, &ca_key)));
        let (other_ca, other_key) = issue(dir, "other-ca", "someone else's CA", CA_EXT, None);
        let (foreign_cert, foreign_key) = issue(
            dir,
            "foreign",
            "slipway",
            CLIENT_EXT,
            Some((&other_ca, &other_key)),
        );
        Pki {
            client: Identity {
                ca: ca.clone(),
                cert,
                key,
            },
            foreign_client: Identity {
                ca: ca.clone(),
                cert: foreign_cert,
                key: foreign_key,
            },
            ca,
            ca_key,
            server_cert,
            server_key,
            other_ca,
        }
    }
}

/// A host's `url` and TLS files as `[[docker.hosts]]` writes them.
pub fn connection(url: &str, id: &Identity) -> String {
    format!(
        "url = \"{url}\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
        id.ca.display(),
        id.cert.display(),
        id.key.display()
    )
}

impl Dockerd {
    /// `tcp://127.0.0.1:PORT`, dockerd's TLS listener.
    pub fn tcp_url(&self) -> String {
        let tls = self.tls.as_ref().expect("dockerd was started with TLS");
        format!("tcp://127.0.0.1:{}", tls.port)
    }

    /// The TLS listener with Slipway's good client identity, as configuration.
    pub fn tls_connection(&self) -> String {
        let tls = self.tls.as_ref().expect("dockerd was started with TLS");
        connection(&self.tcp_url(), &tls.pki.client)
    }

    /// `config` with its hosts replaced by `local` on dockerd's unix socket:
    /// what the test checks through, independently of the TLS path under test.
    pub fn over_socket(&self, config: &DockerConfig) -> DockerHosts {
        let mut config = config.clone();
        let template = config.hosts[0].clone();
        config.hosts = vec![HostConfig {
            name: "local".into(),
            url: self.url(),
            tls: None,
            ..template
        }];
        DockerHosts::new(config)
    }
}
