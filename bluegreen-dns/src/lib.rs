//! DNS backends for bluegreen.
//!
//! - [`Rfc2136Router`]: a [`Router`](bluegreen_core::Router) that moves traffic by sending
//!   dynamic DNS UPDATE messages (RFC 2136) signed with TSIG (RFC 8945) to an authoritative
//!   server (knot, BIND, PowerDNS). Pools are sets of A records (one IPv4 address per target)
//!   under one name; every change is **one** UPDATE message whose prerequisites pin the data it
//!   was computed from, so a concurrent change is detected instead of overwritten. Weighted
//!   splits are approximated by record multiplicity; the granularity and the TTL-based
//!   propagation delay are reported in [`capabilities()`](bluegreen_core::Router::capabilities).
//! - [`PropagationCheck`]: asks every authoritative server of a zone directly and succeeds only
//!   when all of them serve the expected records, naming the laggards otherwise.
//!
//! See `docs/dns.md` for TTL pacing, the multiplicity approximation with a worked example, the
//! server setup RFC 2136 needs, and the limitations.

mod bookkeeping;
mod propagation;
mod router;
mod tsig;
mod wire;

pub use propagation::{PropagationCheck, PropagationReport, ServerAnswer};
pub use router::{Rfc2136Router, Rfc2136RouterBuilder};
pub use tsig::{TsigAlgorithm, TsigKey};
