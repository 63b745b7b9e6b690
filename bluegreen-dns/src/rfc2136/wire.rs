//! DNS over TCP: one request, one answer per connection. hickory-proto builds, signs and parses
//! the messages; the exchange itself is a few lines of tokio, so no client runtime is needed.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bluegreen_core::{Error, Result};
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "rfc2136";

static NEXT_ID: AtomicU16 = AtomicU16::new(0);

fn next_id() -> u16 {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    // Truncation is the point: a message id is 16 bits.
    (seed as u16) ^ NEXT_ID.fetch_add(0x9e37, Ordering::Relaxed)
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
    if let Some(mut verify) = verifier {
        verify(&raw).map_err(|e| {
            Error::permanent(
                BACKEND,
                format!("{server}: the answer to the update of {zone} failed TSIG verification: {e}"),
            )
        })?;
    }
    Ok(())
}
