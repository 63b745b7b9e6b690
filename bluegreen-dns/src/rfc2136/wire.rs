//! DNS over TCP: one request, one answer per connection. hickory-proto builds, signs and parses
//! the messages; the exchange itself is a few lines of tokio, so no client runtime is needed.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bluegreen_core::{Error, Result};
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "rfc2136";

/// A random message id (from the thread's CSPRNG): an off-path attacker who cannot guess it
/// cannot answer in the server's place (RFC 5452).
fn next_id() -> u16 {
    rand::random()
}

/// The rcode's name as servers and `dig` print it.
pub(crate) fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}

/// The IPv4 addresses of the A records among `records`.
pub(crate) fn ipv4s(records: &[Record]) -> impl Iterator<Item = Ipv4Addr> + '_ {
    records.iter().filter_map(|r| match r.data() {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}

fn malformed(server: SocketAddr, e: impl std::fmt::Display) -> Error {
    Error::transient(BACKEND, format!("{server}: malformed answer: {e}"))
}

/// Sends `request` to `server` over TCP and returns the answer's bytes.
pub(crate) async fn exchange(server: SocketAddr, request: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let len = u16::try_from(request.len())
        .map_err(|_| Error::invalid("update", format!("a {} byte message is too long for DNS", request.len())))?;
    let io = async {
        let mut stream = TcpStream::connect(server).await?;
        let mut framed = Vec::with_capacity(request.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(request);
        stream.write_all(&framed).await?;
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(timeout, io).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(Error::Backend {
            backend: BACKEND.into(),
            message: format!("{server}: {e}"),
            retryable: true,
            source: Some(Box::new(e)),
        }),
        Err(_) => Err(Error::transient(BACKEND, format!("{server}: no answer within {timeout:?}"))),
    }
}

/// Asks `server` (without recursion) for the `rtype` records at `name`. A missing name or
/// type is an empty answer.
pub(crate) async fn query(
    server: SocketAddr,
    name: &Name,
    rtype: RecordType,
    timeout: Duration,
) -> Result<Vec<Record>> {
    let mut message = Message::new();
    message
        .set_id(next_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false);
    message.add_query(Query::query(name.clone(), rtype));
    let bytes = message.to_vec().map_err(|e| Error::invalid("query", e.to_string()))?;
    let raw = exchange(server, &bytes, timeout).await?;
    let answer = Message::from_vec(&raw).map_err(|e| malformed(server, e))?;
    if answer.id() != message.id() {
        return Err(malformed(server, "the answer's id does not match the query"));
    }
    match answer.response_code() {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(answer
            .answers()
            .iter()
            .filter(|r| r.name() == name && r.record_type() == rtype && r.dns_class() == DNSClass::IN)
            .cloned()
            .collect()),
        ResponseCode::ServFail => {
            Err(Error::transient(BACKEND, format!("{server}: query {name} {rtype} answered SERVFAIL")))
        }
        rcode => Err(Error::permanent(
            BACKEND,
            format!(
                "{server}: query {name} {rtype} answered {} (is this server authoritative for the zone?)",
                rcode_name(rcode)
            ),
        )),
    }
}

/// Sends one UPDATE for `zone` with `prerequisites` and `updates`, signed with `signer`, and
/// checks the answer's rcode and TSIG signature.
pub(crate) async fn update(
    server: SocketAddr,
    zone: &Name,
    signer: &TSigner,
    prerequisites: Vec<Record>,
    updates: Vec<Record>,
    timeout: Duration,
) -> Result<()> {
    let mut message = Message::new();
    message
        .set_id(next_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Update)
        .set_recursion_desired(false);
    let mut zone_query = Query::new();
    zone_query.set_name(zone.clone()).set_query_class(DNSClass::IN).set_query_type(RecordType::SOA);
    message.add_zone(zone_query);
    message.add_pre_requisites(prerequisites);
    message.add_updates(updates);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let now = u32::try_from(now).unwrap_or(u32::MAX);
    let verifier = message
        .finalize(signer, now)
        .map_err(|e| Error::permanent(BACKEND, format!("cannot sign the update for {zone}: {e}")))?;
    let bytes = message.to_vec().map_err(|e| Error::invalid("update", e.to_string()))?;
    let raw = exchange(server, &bytes, timeout).await?;
    let answer = Message::from_vec(&raw).map_err(|e| malformed(server, e))?;
    if answer.id() != message.id() {
        return Err(malformed(server, "the answer's id does not match the update"));
    }
    let rcode = answer.response_code();
    // Every answer to a signed request is verified before what it says is believed: a forged
    // REFUSED or NXRRSET would otherwise pass for the server's. The one answer a server sends
    // unsigned is NOTAUTH when it could not verify the request (unknown key, bad signature:
    // RFC 8945 §5.3.2); it is reported as NOTAUTH, and fails the call either way.
    let verified = verifier.map_or(Ok(()), |mut verify| verify(&raw).map(drop).map_err(|e| e.to_string()));
    if let Err(reason) = verified {
        if rcode != ResponseCode::NotAuth {
            return Err(Error::permanent(
                BACKEND,
                format!(
                    "{server}: the answer ({}) to the update of {zone} failed TSIG verification: {reason}; it may not \
                     come from the server, and what it says was not believed",
                    rcode_name(rcode)
                ),
            ));
        }
    }
    match rcode {
        ResponseCode::NoError => {}
        ResponseCode::NotAuth => {
            return Err(Error::permanent(
                BACKEND,
                format!(
                    "update of zone {zone} refused by {server}: NOTAUTH (the TSIG key {} is unknown to the server, its \
                     secret or algorithm is wrong, it is not allowed to update this zone, or the clocks differ by \
                     more than the fudge); nothing was changed",
                    signer.signer_name()
                ),
            ))
        }
        ResponseCode::Refused => {
            return Err(Error::permanent(
                BACKEND,
                format!(
                    "update of zone {zone} refused by {server}: REFUSED (no ACL or update policy lets key {} update \
                     this zone, or the server is not its primary); nothing was changed",
                    signer.signer_name()
                ),
            ))
        }
        // The records changed between our read and our UPDATE: nothing was changed, and the
        // call is worth repeating, since every router call reads the zone afresh. (An UPDATE
        // of a process killed mid-exchange can land after its successor's read.)
        ResponseCode::NXRRSet | ResponseCode::YXRRSet | ResponseCode::NXDomain | ResponseCode::YXDomain => {
            return Err(Error::transient(
                BACKEND,
                format!(
                    "zone {zone} at {server}: the records changed since they were read (prerequisite failed: {}); \
                     another writer is active, nothing was changed",
                    rcode_name(rcode)
                ),
            ))
        }
        ResponseCode::ServFail => {
            return Err(Error::transient(BACKEND, format!("update of zone {zone} at {server}: SERVFAIL")));
        }
        other => {
            return Err(Error::permanent(
                BACKEND,
                format!("update of zone {zone} refused by {server}: {}", rcode_name(other)),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tokio::net::TcpListener;

    use super::*;
    use crate::rfc2136::tsig::TsigKey;

    /// A server on loopback that answers one request with `rcode`, unsigned: what an attacker
    /// in the path (or racing the server) can send. No real server sends these on demand.
    async fn forging_server(rcode: ResponseCode) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut prefix = [0u8; 2];
            stream.read_exact(&mut prefix).await.unwrap();
            let mut request = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
            stream.read_exact(&mut request).await.unwrap();
            let request = Message::from_vec(&request).unwrap();
            let mut answer = Message::new();
            answer
                .set_id(request.id())
                .set_message_type(MessageType::Response)
                .set_op_code(OpCode::Update)
                .set_response_code(rcode);
            let bytes = answer.to_vec().unwrap();
            let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&bytes);
            stream.write_all(&framed).await.unwrap();
        });
        address
    }

    async fn update_answered(rcode: ResponseCode) -> Error {
        let server = forging_server(rcode).await;
        let key = TsigKey::hmac_sha256("deploy-key.", "0u8p58dX9OJ2n5xd9A/AmyvLv8RUbKffZB9xnoNUQjE=").unwrap();
        let zone = Name::from_ascii("example.test.").unwrap();
        update(server, &zone, &key.signer().unwrap(), Vec::new(), Vec::new(), Duration::from_secs(5))
            .await
            .expect_err("an unsigned answer is not believed")
    }

    #[tokio::test]
    async fn an_unsigned_answer_is_not_believed_whatever_its_rcode() {
        for rcode in [ResponseCode::NoError, ResponseCode::Refused, ResponseCode::NXRRSet, ResponseCode::ServFail] {
            let error = update_answered(rcode).await;
            let text = error.to_string();
            assert!(text.contains("failed TSIG verification"), "{rcode:?}: {text}");
            assert!(text.contains(&rcode_name(rcode)), "{rcode:?}: {text}");
            // Not retried as if the server had said it: a forged NXRRSET is not "another writer".
            assert!(!error.is_retryable(), "{rcode:?}: {text}");
        }
    }

    /// The one answer servers send unsigned to a signed request: NOTAUTH, when they could not
    /// verify it. It is reported as such (and fails the call).
    #[tokio::test]
    async fn an_unsigned_notauth_is_reported_as_the_key_refused() {
        let text = update_answered(ResponseCode::NotAuth).await.to_string();
        assert!(text.contains("NOTAUTH") && text.contains("deploy-key"), "{text}");
        assert!(!text.contains("TSIG verification"), "{text}");
    }

    #[test]
    fn message_ids_are_not_predictable() {
        let ids: Vec<u16> = (0..256).map(|_| next_id()).collect();
        let distinct: BTreeSet<u16> = ids.iter().copied().collect();
        assert!(distinct.len() > 240, "{} distinct of 256", distinct.len());
        let steps: BTreeSet<u16> = ids.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        assert!(steps.len() > 200, "consecutive ids step by {} distinct amounts only", steps.len());
    }
}
