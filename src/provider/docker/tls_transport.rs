//! The TLS connection to a dockerd on TCP: Slipway's own rustls client
//! configuration, handed to bollard as a custom transport.
//!
//! bollard's `connect_with_ssl` trusts the machine's root store (or
//! webpki-roots) besides `ca_file`, so any publicly trusted certificate for
//! the host's name would pass for dockerd. Here `ca_file` is the only trust
//! anchor, the client identity is loaded (and checked against its
//! certificate) up front, and the crypto provider is ring, named explicitly.

use bollard::{BollardRequest, Docker};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Why a client configuration could not be made: which file, and what is wrong with it.
#[derive(Debug)]
pub(super) struct ConfigProblem {
    pub file: &'static str,
    pub path: String,
    pub what: String,
}

/// A rustls client configuration trusting only the certificates in `ca`,
/// presenting `cert` (its chain) with `key`.
pub(super) fn client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<rustls::ClientConfig, ConfigProblem> {
    let problem = |file: &'static str, path: &Path, what: String| ConfigProblem {
        file,
        path: path.display().to_string(),
        what,
    };
    let read = |file: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| problem(file, path, format!("cannot be read ({e})")))
    };
    let certs = |file: &'static str, path: &Path| -> Result<Vec<CertificateDer<'static>>, _> {
        let pem = read(file, path)?;
        let found: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .filter_map(Result::ok)
            .collect();
        if found.is_empty() {
            return Err(problem(
                file,
                path,
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        Ok(found)
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs("ca_file", ca)? {
        roots.add(c).map_err(|e| {
            problem(
                "ca_file",
                ca,
                format!("is not a usable CA certificate ({e})"),
            )
        })?;
    }
    let chain = certs("cert_file", cert)?;
    let key_der = PrivateKeyDer::from_pem_slice(&read("key_file", key)?).map_err(|_| {
        problem(
            "key_file",
            key,
            "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".into(),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| problem("ca_file", ca, format!("no TLS version to use ({e})")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| {
            problem(
                "key_file",
                key,
                format!(
                    "cannot be used with cert_file {} ({e}); is it that certificate's key?",
                    cert.display()
                ),
            )
        })
}

/// bollard over HTTPS to `url` (`tcp://HOST:PORT`) with `config`; requests
/// time out after `timeout_secs`.
pub(super) fn connect(
    url: &str,
    config: rustls::ClientConfig,
    timeout_secs: u64,
) -> Result<Docker, bollard::errors::Error> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let mut builder = Client::builder(TokioExecutor::new());
    // As bollard's own HTTPS transport: no idle connections kept between calls.
    builder.pool_max_idle_per_host(0);
    let client = Arc::new(builder.build(https));
    let address = url
        .strip_prefix("tcp://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    Docker::connect_with_custom_transport(
        move |req: BollardRequest| {
            let client = Arc::clone(&client);
            async move {
                client
                    .request(req)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some(format!("https://{address}")),
        timeout_secs,
        bollard::API_DEFAULT_VERSION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn write_identity(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = CertificateParams::new(vec!["client".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = write_identity(dir.path());
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let (_, other_key) = write_identity(&other);
        let p = client_config(&cert, &cert, &other_key).unwrap_err();
        assert_eq!(p.file, "key_file");
        assert!(p.what.contains("is it that certificate's key"), "{p:?}");
    }

    #[test]
    fn a_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_identity(dir.path());
        let p = client_config(&key, &cert, &key).unwrap_err();
        assert_eq!(p.file, "ca_file");
        assert!(p.what.contains("no PEM certificate"), "{p:?}");
    }
}
