//! The propagation check: every authoritative server, asked directly, serves the new data.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bluegreen_core::{Error, Result};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::time::Instant;

use super::wire;

/// What one authoritative server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAnswer {
    /// The server's name (its NS name, or the label it was given).
    pub server: String,
    /// Where it was asked.
    pub address: SocketAddr,
    /// The addresses it serves for the name, or why it could not be asked.
    pub observed: std::result::Result<BTreeSet<Ipv4Addr>, String>,
    /// Whether it serves exactly the expected addresses.
    pub in_sync: bool,
}

impl fmt::Display for ServerAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.observed {
            Ok(ips) => {
                let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
                write!(f, "{} ({}) serves [{}]", self.server, self.address, ips.join(", "))
            }
            Err(e) => write!(f, "{} ({}) did not answer: {e}", self.server, self.address),
        }
    }
}

/// One round of answers from every authoritative server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropagationReport {
    /// Each server's answer, in the order the servers were given.
    pub answers: Vec<ServerAnswer>,
}

impl PropagationReport {
    /// Whether every server serves the expected data.
    pub fn all_agree(&self) -> bool {
        self.answers.iter().all(|a| a.in_sync)
    }

    /// The servers that do not serve the expected data yet.
    pub fn laggards(&self) -> Vec<&ServerAnswer> {
        self.answers.iter().filter(|a| !a.in_sync).collect()
    }
}

/// Asks every authoritative server of a zone directly (no resolver, no cache) for a name's A
/// records, and succeeds only when all of them serve the expected set.
///
/// ```no_run
/// # async fn example() -> bluegreen_core::Result<()> {
/// use std::collections::BTreeSet;
/// use std::time::Duration;
/// use bluegreen_dns::PropagationCheck;
/// let check = PropagationCheck::new("www.example.test.")?
///     .server("ns1.example.test.", "127.0.0.1:5301".parse().unwrap())
///     .server("ns2.example.test.", "127.0.0.1:5302".parse().unwrap());
/// let expected: BTreeSet<_> = ["127.0.0.21".parse().unwrap()].into();
/// let report = check.wait(&expected, Duration::from_secs(30)).await?;
/// assert!(report.all_agree());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PropagationCheck {
    name: Name,
    servers: Vec<(String, SocketAddr)>,
    interval: Duration,
    query_timeout: Duration,
}

impl PropagationCheck {
    /// A check of the A records at `name`, with no servers yet.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `name` is not a domain name.
    pub fn new(name: &str) -> Result<Self> {
        let name = Name::from_ascii(name).map_err(|e| Error::invalid("name", format!("{name:?}: {e}")))?;
        Ok(Self {
            name,
            servers: Vec::new(),
            interval: Duration::from_millis(250),
            query_timeout: Duration::from_secs(2),
        })
    }

    /// Adds an authoritative server, named `label` in reports.
    #[must_use]
    pub fn server(mut self, label: impl Into<String>, address: SocketAddr) -> Self {
        self.servers.push((label.into(), address));
        self
    }

    /// Finds the zone's authoritative servers: asks `via` for the NS records of `zone`, then
    /// for each NS name's A records, and asks each of them on `port` (53 in production; tests
    /// use a high port).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad zone name; [`Error::NotFound`] when the zone has no NS
    /// records or an NS name has no address; [`Error::Backend`] when `via` cannot be asked.
    pub async fn discover(mut self, zone: &str, via: SocketAddr, port: u16) -> Result<Self> {
        let zone_name = Name::from_ascii(zone).map_err(|e| Error::invalid("zone", format!("{zone:?}: {e}")))?;
        let ns = wire::query(via, &zone_name, RecordType::NS, self.query_timeout).await?;
        let names: Vec<Name> = ns
            .iter()
            .filter_map(|r| match r.data() {
                RData::NS(ns) => Some(ns.0.clone()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err(Error::not_found(format!("NS records of zone {zone} at {via}")));
        }
        for ns_name in names {
            let addresses = wire::query(via, &ns_name, RecordType::A, self.query_timeout).await?;
            let mut found = false;
            for ip in wire::ipv4s(&addresses) {
                found = true;
                self.servers.push((ns_name.to_string(), SocketAddr::new(ip.into(), port)));
            }
            if !found {
                return Err(Error::not_found(format!("an address for nameserver {ns_name} of zone {zone}")));
            }
        }
        Ok(self)
    }

    /// How often [`wait`](Self::wait) asks again (default 250 ms).
    #[must_use]
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every;
        self
    }

    /// How long one server may take to answer (default 2 s).
    #[must_use]
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// The servers asked, as `(label, address)`.
    pub fn servers(&self) -> &[(String, SocketAddr)] {
        &self.servers
    }

    /// Asks every server once, concurrently.
    pub async fn check(&self, expected: &BTreeSet<Ipv4Addr>) -> PropagationReport {
        let asks = self.servers.iter().map(|(label, address)| async move {
            let observed = wire::query(*address, &self.name, RecordType::A, self.query_timeout)
                .await
                .map(|records| wire::ipv4s(&records).collect::<BTreeSet<Ipv4Addr>>())
                .map_err(|e| e.to_string());
            let in_sync = observed.as_ref().is_ok_and(|ips| ips == expected);
            ServerAnswer { server: label.clone(), address: *address, observed, in_sync }
        });
        PropagationReport { answers: futures::future::join_all(asks).await }
    }

    /// Asks every server until all serve `expected`, for at most `deadline`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when no server was given; [`Error::Timeout`] naming each laggard and
    /// what it serves when the deadline passes.
    pub async fn wait(&self, expected: &BTreeSet<Ipv4Addr>, deadline: Duration) -> Result<PropagationReport> {
        if self.servers.is_empty() {
            return Err(Error::invalid("servers", "a propagation check needs at least one authoritative server"));
        }
        let end = Instant::now() + deadline;
        let mut last_laggards: Vec<String> = Vec::new();
        loop {
            let report = self.check(expected).await;
            if report.all_agree() {
                tracing::debug!(name = %self.name, "all {} authoritative servers agree", report.answers.len());
                return Ok(report);
            }
            let laggards: Vec<String> = report.laggards().iter().map(ToString::to_string).collect();
            if laggards != last_laggards {
                tracing::info!(name = %self.name, "waiting for authoritative servers: {}", laggards.join("; "));
                last_laggards = laggards.clone();
            }
            if Instant::now() + self.interval > end {
                let want: Vec<String> = expected.iter().map(ToString::to_string).collect();
                return Err(Error::Timeout {
                    what: format!(
                        "propagation of {} A [{}] to every authoritative server; lagging: {}",
                        self.name,
                        want.join(", "),
                        laggards.join("; ")
                    ),
                    after: deadline,
                });
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}
