//! Keys made with OpenSSH's ssh-keygen (tests/data/ssh), with the fingerprints
//! `ssh-keygen -lf` printed for them.

use super::*;

fn fixture(name: &str) -> (String, String) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ssh/");
    let read = |ext: &str| std::fs::read_to_string(format!("{dir}{name}.{ext}")).unwrap();
    (read("pub"), read("fingerprint").trim().to_string())
}

#[test]
fn ed25519_ecdsa_and_long_rsa_keys_are_accepted_with_ssh_keygens_fingerprint() {
    for (name, kind) in [
        ("k_ed25519", "ed25519"),
        ("k_ecdsab256", "ecdsa-sha2-nistp256"),
        ("k_rsab3072", "rsa 3072 bits"),
    ] {
        let (line, fingerprint) = fixture(name);
        let key = SshKey::parse(&line).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.fingerprint, fingerprint, "{name}");
        assert_eq!(key.kind, kind);
        assert_eq!(key.line, line.trim(), "stored as pasted");
        assert!(key.comment.starts_with("test-"));
    }
}

#[test]
fn dsa_and_short_rsa_keys_are_refused_with_what_to_do() {
    let (dsa, _) = fixture("k_dsa");
    assert_eq!(SshKey::parse(&dsa), Err(KeyError::Dsa));
    let (rsa, _) = fixture("k_rsab2048");
    let e = SshKey::parse(&rsa).unwrap_err();
    assert_eq!(e, KeyError::ShortRsa(2048));
    assert!(e.to_string().contains("at least 3072"), "{e}");
}

#[test]
fn options_several_keys_and_garbage_are_refused() {
    let (ed, _) = fixture("k_ed25519");
    let (ec, _) = fixture("k_ecdsab256");
    let with_command = format!("command=\"/bin/date\",no-pty {ed}");
    assert!(matches!(
        SshKey::parse(&with_command),
        Err(KeyError::Options(o)) if o.starts_with("command=")
    ));
    assert!(matches!(
        SshKey::parse(&format!("from=\"10.0.0.0/8\" {ed}")),
        Err(KeyError::Options(_))
    ));
    assert_eq!(
        SshKey::parse(&format!("{}\n{}", ed.trim(), ec.trim())),
        Err(KeyError::Several(2))
    );
    assert_eq!(
        SshKey::parse(&format!("{} {}", ed.trim(), ec.trim())),
        Err(KeyError::Several(2))
    );
    assert!(matches!(
        SshKey::parse("hello world"),
        Err(KeyError::Garbage(_))
    ));
    assert!(matches!(
        SshKey::parse("ssh-ed25519 AAAAnotbase64!!"),
        Err(KeyError::Garbage(_))
    ));
    assert_eq!(SshKey::parse("   "), Err(KeyError::Empty));
}

#[test]
fn a_pasted_private_key_is_recognised_and_called_exposed() {
    let pasted = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----";
    let e = SshKey::parse(pasted).unwrap_err();
    assert_eq!(e, KeyError::PrivateKey);
    assert!(e.to_string().contains("exposed"), "{e}");
    assert!(
        !e.to_string().contains("b3BlbnNz"),
        "the key is not quoted back"
    );
    assert_eq!(
        SshKey::parse("-----BEGIN RSA PRIVATE KEY-----\nMIIEow"),
        Err(KeyError::PrivateKey)
    );
}

#[test]
fn bit_lengths_count_from_the_first_set_bit() {
    assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
    assert_eq!(bit_length(&[0x01]), 1);
    assert_eq!(bit_length(&[]), 0);
}
