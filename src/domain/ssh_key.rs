//! SSH public keys people add to log in to what they create (`/keys add`).
//! One OpenSSH public-key line: ed25519, ECDSA, or RSA of at least 3072 bits.
//! Everything else is refused with the reason — and a private key pasted by
//! mistake is recognised, never stored, and reported as exposed.

use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

/// RSA keys shorter than this are refused (NIST: 2048-bit RSA ends in 2030).
pub const MIN_RSA_BITS: usize = 3072;

/// A public key that may log in to an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    /// `ALGORITHM BASE64 [COMMENT]`, as `authorized_keys` and PVE take it.
    pub line: String,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// "ed25519", "ecdsa-sha2-nistp256", "rsa 4096 bits", …
    pub kind: String,
    pub comment: String,
}

/// Why a pasted key was refused. The text is for the person who pasted it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("that is a PRIVATE key. It was not stored, but it has now been shown in this chat: treat it as exposed. Make a new key pair (ssh-keygen -t ed25519), remove the old public key wherever it is trusted, and add the new PUBLIC key (the .pub file)")]
    PrivateKey,
    #[error(
        "no key was given; paste one line of your .pub file, e.g. `ssh-ed25519 AAAA… you@laptop`"
    )]
    Empty,
    #[error("that holds {0} keys; add one key at a time")]
    Several(usize),
    #[error("authorized_keys options ({0}) are not accepted; paste the key alone, starting with its algorithm (e.g. ssh-ed25519)")]
    Options(String),
    #[error("DSA keys (ssh-dss) are refused: OpenSSH disabled them as too weak. Make an ed25519 key (ssh-keygen -t ed25519) and add its .pub file")]
    Dsa,
    #[error("this RSA key has {0} bits; at least {MIN_RSA_BITS} are required. Make an ed25519 key (ssh-keygen -t ed25519) or a {MIN_RSA_BITS}-bit RSA key")]
    ShortRsa(usize),
    #[error("{0} keys are not accepted; use ed25519, ECDSA or RSA (at least {MIN_RSA_BITS} bits)")]
    Unsupported(String),
    #[error("'{0}' is not an OpenSSH public key; paste one line of your .pub file, e.g. `ssh-ed25519 AAAA… you@laptop`")]
    Garbage(String),
}

/// The algorithms a key line may start with (OpenSSH's names).
const ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "ssh-dss",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Option names `authorized_keys` allows before a key.
const OPTIONS: &[&str] = &[
    "command=",
    "from=",
    "environment=",
    "permitopen=",
    "permitlisten=",
    "principals=",
    "tunnel=",
    "expiry-time=",
    "no-",
    "restrict",
    "cert-authority",
    "agent-forwarding",
    "port-forwarding",
    "pty",
    "user-rc",
    "x11-forwarding",
    "verify-required",
    "touch-required",
];

impl SshKey {
    /// Parses one pasted public key.
    pub fn parse(raw: &str) -> Result<SshKey, KeyError> {
        let text = raw.trim();
        if text.contains("PRIVATE KEY") || text.contains("PuTTY-User-Key-File") {
            return Err(KeyError::PrivateKey);
        }
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        let keys = text
            .split_whitespace()
            .filter(|w| ALGORITHMS.contains(w))
            .count();
        let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
        if keys > 1 || lines > 1 {
            return Err(KeyError::Several(keys.max(lines)));
        }
        let first = text.split_whitespace().next().unwrap_or_default();
        if !ALGORITHMS.contains(&first) {
            if OPTIONS.iter().any(|o| first.starts_with(o)) {
                let shown: String = first.chars().take(40).collect();
                return Err(KeyError::Options(shown));
            }
            return Err(KeyError::Garbage(shorten(text)));
        }
        if first == "ssh-dss" {
            return Err(KeyError::Dsa);
        }
        let key = PublicKey::from_openssh(text).map_err(|_| KeyError::Garbage(shorten(text)))?;
        let kind = match key.key_data() {
            KeyData::Ed25519(_) => "ed25519".to_string(),
            KeyData::Ecdsa(k) => k.algorithm().as_str().to_string(),
            KeyData::Rsa(k) => {
                let bits = k.n.as_positive_bytes().map_or(0, bit_length);
                if bits < MIN_RSA_BITS {
                    return Err(KeyError::ShortRsa(bits));
                }
                format!("rsa {bits} bits")
            }
            KeyData::Dsa(_) => return Err(KeyError::Dsa),
            other => return Err(KeyError::Unsupported(other.algorithm().to_string())),
        };
        let line = key
            .to_openssh()
            .map_err(|_| KeyError::Garbage(shorten(text)))?;
        Ok(SshKey {
            line,
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            kind,
            comment: key.comment().to_string(),
        })
    }
}

/// Bits of a big-endian positive integer.
fn bit_length(bytes: &[u8]) -> usize {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    match bytes.get(skip) {
        Some(first) => (bytes.len() - skip) * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// What of a refused paste the reply quotes back.
fn shorten(text: &str) -> String {
    let mut out: String = text.chars().take(24).collect();
    if text.chars().count() > 24 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
