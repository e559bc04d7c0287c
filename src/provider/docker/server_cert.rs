//! dockerd's server certificate for a docker-host environment.
//!
//! Slipway reaches a docker-host environment's dockerd over TCP with TLS and
//! trusts it with `docker.env_tls.ca_file`. So that this works without anyone
//! making certificates by hand, Slipway signs dockerd's certificate itself
//! with that CA's key (`docker.env_tls.ca_key_file`): a new P-256 key, the
//! environment's address and hostname as names, server use only. The files
//! (`ca.pem`, `cert.pem`, `key.pem`) are written into a private temporary
//! directory for the post-provision step that installs them, and removed
//! when the step ends. The CA key is read for signing and never written.
//!
//! Every issued certificate is verified against the CA before it is handed
//! out, so a `ca_key_file` that is not `ca_file`'s key is reported at once,
//! not as a TLS failure on the first `/app deploy`.

use super::DockerError;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long an issued certificate is valid: longer than any environment's
/// TTL may be extended to in one go, and within what TLS clients accept.
pub const VALIDITY: Duration = Duration::from_secs(397 * 24 * 3600);

/// Clock skew allowed between Slipway and the new container.
const BACKDATE: Duration = Duration::from_secs(300);

/// What a post-provision step is given as `docker_tls`: where the files are
/// (`{{ docker_tls.ca_file }}` …) and the port dockerd is to listen on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DockerdTls {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    /// `docker.env_port`: where Slipway will look for dockerd.
    pub port: u16,
}

/// Issued files in their private directory, removed on drop.
pub struct IssuedFiles {
    pub values: DockerdTls,
    _dir: tempfile::TempDir,
}

/// A certificate and its key, PEM-encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Signs a server certificate for `address` and `hostname` with the CA
/// (`ca_pem`, `ca_key_pem`), valid from `now` (less five minutes) for [`VALIDITY`].
pub fn issue(
    ca_pem: &str,
    ca_key_pem: &str,
    address: Ipv4Addr,
    hostname: &str,
    now: SystemTime,
) -> Result<Issued, DockerError> {
    let bad_key = |why: String| DockerError::Config(format!("docker.env_tls.ca_key_file: {why}"));
    if ca_key_pem.contains("ENCRYPTED PRIVATE KEY") || ca_key_pem.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(bad_key(
            "the key is encrypted; Slipway needs it unencrypted in PKCS#8 \
             (openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8)"
                .into(),
        ));
    }
    if !ca_key_pem.contains("BEGIN PRIVATE KEY") {
        return Err(bad_key(
            "not a PKCS#8 private key ('BEGIN PRIVATE KEY'); convert it with \
             openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8"
                .into(),
        ));
    }
    let ca_key = KeyPair::from_pem(ca_key_pem)
        .map_err(|e| bad_key(format!("not a key Slipway can sign with ({e})")))?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(|e| {
        DockerError::Config(format!(
            "docker.env_tls.ca_file: not a PEM CA certificate ({e})"
        ))
    })?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| DockerError::Config(format!("could not make a key for dockerd: {e}")))?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::IpAddress(address.into())];
    if let Ok(name) = hostname.try_into() {
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + VALIDITY).into();
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| bad_key(format!("could not sign dockerd's certificate ({e})")))?;

    verify(ca_pem, cert.der(), address, now)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Checks `cert` the way Slipway's client will: signed by the CA in `ca_pem`, for `address`.
fn verify(
    ca_pem: &str,
    cert: &CertificateDer<'_>,
    address: Ipv4Addr,
    now: SystemTime,
) -> Result<(), DockerError> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()).flatten() {
        let _ = roots.add(ca);
    }
    let mismatch = |e: String| {
        DockerError::Config(format!(
            "the certificate signed with docker.env_tls.ca_key_file does not verify against \
             docker.env_tls.ca_file ({e}); is ca_key_file the key of ca_file, and is it a CA?"
        ))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| mismatch(e.to_string()))?;
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    verifier
        .verify_server_cert(
            cert,
            &[],
            &ServerName::IpAddress(std::net::IpAddr::V4(address).into()),
            &[],
            UnixTime::since_unix_epoch(since_epoch),
        )
        .map(|_| ())
        .map_err(|e| mismatch(e.to_string()))
}

/// Issues dockerd's certificate with the CA files and writes it, its key and
/// the CA certificate into a new private directory (mode 0700; key 0600).
pub fn issue_files(
    ca_file: &Path,
    ca_key_file: &Path,
    address: Ipv4Addr,
    hostname: &str,
    port: u16,
) -> Result<IssuedFiles, DockerError> {
    let read = |what: &str, p: &Path| {
        std::fs::read_to_string(p).map_err(|e| {
            DockerError::Config(format!(
                "docker.env_tls.{what}: cannot read {}: {e}",
                p.display()
            ))
        })
    };
    let ca_pem = read("ca_file", ca_file)?;
    let ca_key_pem = read("ca_key_file", ca_key_file)?;
    let issued = issue(&ca_pem, &ca_key_pem, address, hostname, SystemTime::now())?;
    let write_err = |e: std::io::Error| {
        DockerError::Config(format!(
            "could not write dockerd's certificate files into the temporary directory: {e}"
        ))
    };
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("slipway-dockerd-tls-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(write_err)?;
    let path = |name: &str| dir.path().join(name);
    write_private(&path("key.pem"), &issued.key_pem).map_err(write_err)?;
    std::fs::write(path("cert.pem"), &issued.cert_pem).map_err(write_err)?;
    std::fs::write(path("ca.pem"), &ca_pem).map_err(write_err)?;
    let values = DockerdTls {
        ca_file: path("ca.pem").display().to_string(),
        cert_file: path("cert.pem").display().to_string(),
        key_file: path("key.pem").display().to_string(),
        port,
    };
    Ok(IssuedFiles { values, _dir: dir })
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA made the way `rcgen` would make one (PKCS#8 P-256 key).
    fn ca() -> (String, String) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn addr() -> Ipv4Addr {
        Ipv4Addr::new(10, 20, 0, 51)
    }

    #[test]
    fn an_issued_certificate_verifies_for_the_address_against_the_ca() {
        let (ca_pem, ca_key) = ca();
        let now = SystemTime::now();
        let issued = issue(&ca_pem, &ca_key, addr(), "dock", now).unwrap();
        assert!(issued.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(issued.key_pem.contains("BEGIN PRIVATE KEY"));
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        verify(&ca_pem, &der, addr(), now).unwrap();
        // Not for another address, and not once it has expired.
        let other = verify(&ca_pem, &der, Ipv4Addr::new(10, 20, 0, 52), now).unwrap_err();
        assert!(other.to_string().contains("does not verify"), "{other}");
        let later = now + VALIDITY + Duration::from_secs(60);
        assert!(verify(&ca_pem, &der, addr(), later).is_err());
    }

    #[test]
    fn a_key_that_is_not_the_cas_is_refused_before_anything_is_written() {
        let (ca_pem, _) = ca();
        let (_, other_key) = ca();
        let e = issue(&ca_pem, &other_key, addr(), "dock", SystemTime::now())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("is ca_key_file the key of ca_file"), "{e}");
    }

    #[test]
    fn encrypted_and_non_pkcs8_keys_are_explained() {
        let (ca_pem, _) = ca();
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let e = issue(&ca_pem, enc, addr(), "dock", SystemTime::now())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("encrypted") && e.contains("openssl pkcs8"),
            "{e}"
        );
        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let e = issue(&ca_pem, rsa, addr(), "dock", SystemTime::now())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a PKCS#8 private key"), "{e}");
        // Neither message carries the key.
        assert!(!e.contains("AAAA"));
    }

    #[test]
    fn files_are_private_and_gone_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let (ca_pem, ca_key) = ca();
        let dir = tempfile::tempdir().unwrap();
        let (ca_file, key_file) = (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"));
        std::fs::write(&ca_file, &ca_pem).unwrap();
        std::fs::write(&key_file, &ca_key).unwrap();
        let issued = issue_files(&ca_file, &key_file, addr(), "dock", 2376).unwrap();
        let key = Path::new(&issued.values.key_file).to_path_buf();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let parent = key.parent().unwrap().to_path_buf();
        let dmode = std::fs::metadata(&parent).unwrap().permissions().mode();
        assert_eq!(dmode & 0o077, 0, "{dmode:o}");
        assert_eq!(
            std::fs::read_to_string(&issued.values.ca_file).unwrap(),
            ca_pem
        );
        drop(issued);
        assert!(!parent.exists());
    }
}
