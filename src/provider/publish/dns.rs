//! DNS: one A record (or a CNAME to the ingress) per exposed environment, set
//! and removed through RFC 2136 dynamic update signed with TSIG (RFC 8945),
//! over TCP to the zone's primary.
//!
//! `hickory-proto` builds the update messages and signs and verifies them; this
//! module only moves the bytes. An upsert is a single update that deletes the
//! name's A and CNAME RRsets and adds the new record, so the server applies all
//! or nothing and repeating it changes nothing. Deleting an RRset that is not
//! there is silently accepted by the server (RFC 2136 §2.5.2), which makes
//! removal idempotent as well.

use super::config::DnsConfig;
use super::{Dns, DnsTarget, PublishError};
use crate::domain::domain_name::Domain;
use async_trait::async_trait;
use hickory_proto::op::{update_message, Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType, TSigner};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Seconds of clock difference the server may accept (RFC 8945 recommends 300).
const FUDGE: u16 = 300;

/// Sends signed dynamic updates to one primary server for one zone.
#[derive(Clone)]
pub struct DnsUpdate {
    server: SocketAddr,
    zone: Name,
    signer: TSigner,
    key_name: String,
    ttl: u32,
    timeout: Duration,
}

impl std::fmt::Debug for DnsUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsUpdate")
            .field("server", &self.server)
            .field("zone", &self.zone.to_ascii())
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl DnsUpdate {
    pub fn new(cfg: &DnsConfig) -> Result<DnsUpdate, PublishError> {
        let bad = |key: &str, e: &dyn std::fmt::Display| {
            PublishError::Config(format!("publish.dns.{key}: {e}"))
        };
        let zone = fqdn(&cfg.zone).map_err(|e| bad("zone", &e))?;
        let key_name = fqdn(&cfg.key_name).map_err(|e| bad("key_name", &e))?;
        let algorithm = TsigAlgorithm::from_name(
            Name::from_ascii(&cfg.algorithm).map_err(|e| bad("key_algorithm", &e))?,
        );
        let secret = cfg.secret_bytes().map_err(|e| bad("key secret", &e))?;
        let signer = TSigner::new(secret, algorithm, key_name, FUDGE)
            .map_err(|e| bad("key_algorithm", &e))?;
        Ok(DnsUpdate {
            server: cfg.server,
            zone,
            signer,
            key_name: cfg.key_name.clone(),
            ttl: cfg.ttl,
            timeout: cfg.timeout,
        })
    }

    fn name_of(&self, domain: &Domain) -> Result<Name, PublishError> {
        let name = fqdn(domain.as_str()).map_err(|e| PublishError::Refused(e.to_string()))?;
        if !self.zone.zone_of(&name) || self.zone == name {
            return Err(PublishError::Refused(format!(
                "{domain} is not inside the DNS zone {}; set publish.dns.zone to a zone that contains publish.zones",
                self.zone
            )));
        }
        Ok(name)
    }

    /// Signs `msg`, sends it and checks the signed answer.
    async fn send(&self, mut msg: Message, name: &Name) -> Result<(), PublishError> {
        msg.metadata.id = rand::random();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut verifier = msg
            .finalize(&self.signer, now)
            .map_err(|e| PublishError::Config(format!("cannot sign the DNS update: {e}")))?
            .ok_or_else(|| PublishError::Config("TSIG gave no verifier".into()))?;
        let bytes = msg
            .to_vec()
            .map_err(|e| PublishError::Config(format!("cannot encode the DNS update: {e}")))?;
        let answer = tokio::time::timeout(self.timeout, self.exchange(&bytes))
            .await
            .map_err(|_| PublishError::Timeout {
                what: format!("the DNS update of {name} at {}", self.server),
                after: self.timeout,
            })??;
        let rcode = match verifier.verify(&answer) {
            Ok(resp) => resp.metadata.response_code,
            // An answer that fails verification is not to be trusted, except
            // to explain why the server refused our signature: it names the
            // TSIG problem (BADSIG, BADKEY, BADTIME) unsigned.
            Err(e) => {
                let Ok(unsigned) = Message::from_vec(&answer) else {
                    return Err(self.refusal(name, None, &format!(" ({e})")));
                };
                let tsig_error = unsigned
                    .signature
                    .as_ref()
                    .and_then(|s| s.data.error.as_ref())
                    .map(|e| format!(" (TSIG error {})", tsig_error_name(e)))
                    .unwrap_or_default();
                let code = unsigned.metadata.response_code;
                if code == ResponseCode::NoError {
                    return Err(self.refusal(
                        name,
                        None,
                        " (the answer's signature does not verify)",
                    ));
                }
                return Err(self.refusal(name, Some(code), &tsig_error));
            }
        };
        if rcode == ResponseCode::NoError {
            Ok(())
        } else {
            Err(self.refusal(name, Some(rcode), ""))
        }
    }

    fn refusal(&self, name: &Name, rcode: Option<ResponseCode>, extra: &str) -> PublishError {
        let hint = match rcode {
            Some(ResponseCode::NotAuth) => format!(
                "; the server does not accept the TSIG key '{}': check publish.dns.key_name, the algorithm and the secret",
                self.key_name
            ),
            Some(ResponseCode::Refused) => format!(
                "; allow the key '{}' to update the zone (allow-update or update-policy)",
                self.key_name
            ),
            Some(ResponseCode::NotZone) => format!(
                "; the server is not authoritative for {}: check publish.dns.zone and server",
                self.zone
            ),
            _ => String::new(),
        };
        PublishError::Dns {
            server: self.server.to_string(),
            name: name.to_string(),
            rcode: rcode.map_or("no valid answer".into(), |c| {
                format!("{c:?}").to_ascii_uppercase()
            }),
            hint: format!("{hint}{extra}"),
        }
    }

    /// One request and one answer over TCP (two-byte length prefix, RFC 1035 §4.2.2).
    async fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, PublishError> {
        let net = |e: std::io::Error| PublishError::Network {
            what: format!("the DNS server {}", self.server),
            message: e.to_string(),
        };
        let mut stream = TcpStream::connect(self.server).await.map_err(net)?;
        let len = u16::try_from(request.len())
            .map_err(|_| PublishError::Config("the DNS update is too large".into()))?;
        let mut framed = Vec::with_capacity(request.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(request);
        stream.write_all(&framed).await.map_err(net)?;
        let answer_len = stream.read_u16().await.map_err(net)?;
        let mut answer = vec![0; usize::from(answer_len)];
        stream.read_exact(&mut answer).await.map_err(net)?;
        Ok(answer)
    }

    /// One update that deletes the name's A and CNAME RRsets.
    fn delete_message(&self, name: &Name) -> Message {
        let a = Record::update0(name.clone(), 0, RecordType::A);
        let mut msg = update_message::delete_rrset(a, self.zone.clone(), false);
        let mut cname = Record::update0(name.clone(), 0, RecordType::CNAME);
        cname.dns_class = hickory_proto::rr::DNSClass::ANY;
        msg.authorities.push(cname);
        msg
    }
}

fn tsig_error_name(e: &TsigError) -> String {
    match e {
        TsigError::BadSig => "BADSIG: the secret differs".into(),
        TsigError::BadKey => "BADKEY: the server has no key of that name and algorithm".into(),
        TsigError::BadTime => "BADTIME: this machine's clock is off".into(),
        other => format!("{other:?}"),
    }
}

fn fqdn(raw: &str) -> Result<Name, hickory_proto::ProtoError> {
    let mut name = Name::from_ascii(raw)?;
    name.set_fqdn(true);
    Ok(name)
}

#[async_trait]
impl Dns for DnsUpdate {
    async fn upsert(&self, domain: &Domain, target: &DnsTarget) -> Result<(), PublishError> {
        let name = self.name_of(domain)?;
        let rdata = match target {
            DnsTarget::Address(address) => RData::A(A(*address)),
            DnsTarget::Alias(alias) => RData::CNAME(CNAME(fqdn(alias).map_err(|e| {
                PublishError::Config(format!("publish.dns.ingress: '{alias}': {e}"))
            })?)),
        };
        let mut msg = self.delete_message(&name);
        msg.authorities
            .push(Record::from_rdata(name.clone(), self.ttl, rdata));
        self.send(msg, &name).await
    }

    async fn delete(&self, domain: &Domain) -> Result<(), PublishError> {
        let name = self.name_of(domain)?;
        let msg = self.delete_message(&name);
        self.send(msg, &name).await
    }
}
