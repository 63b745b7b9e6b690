//! DNS backends for bluegreen: one weighting model, two providers.
//!
//! A pool is a set of address records under one name; a target contributes its address. Every
//! router keeps the same bookkeeping beside the records it weights (one TXT record per pool
//! member, with the time its drain withdrew it) and paces its changes by the records' TTL: a
//! change counts as in effect, and a drained target as gone, only TTL + a resolver margin after
//! it was written, and a drain cut off by a crash is finished by the resumed run. The providers
//! read each other's bookkeeping.
//!
//! - [`Rfc2136Router`] (feature `rfc2136`, on by default): a [`Router`](bluegreen_core::Router)
//!   that moves traffic by sending dynamic DNS UPDATE messages (RFC 2136) signed with TSIG
//!   (RFC 8945) to an authoritative server (knot, BIND, PowerDNS). Pools are sets of A records
//!   (one IPv4 address per target) under one name; every change is **one** UPDATE message whose
//!   prerequisites pin the data it was computed from, so a concurrent change is detected instead
//!   of overwritten. Weighted splits are approximated by record multiplicity; the granularity and
//!   the TTL-based propagation delay are reported in
//!   [`capabilities()`](bluegreen_core::Router::capabilities).
//! - [`PropagationCheck`] (feature `rfc2136`): asks every authoritative server of a zone directly
//!   and succeeds only when all of them serve the expected records, naming the laggards otherwise.
//! - [`Route53Router`] (feature `route53`): a [`Router`](bluegreen_core::Router) on Route53
//!   weighted record sets: exact weights, one change batch per step, waited for until `INSYNC`
//!   and read back. Its client comes from a `bluegreen_aws::AwsConfig`, shared with the other
//!   AWS backends (rate limits, call log).
//!
//! See `docs/dns.md` for TTL pacing, the multiplicity approximation with a worked example, the
//! server setup RFC 2136 needs, Route53, and the limitations.
//!
//! Built without a provider's feature, these docs link its items on docs.rs (built there with
//! every feature).
//!
#![cfg_attr(
    not(feature = "rfc2136"),
    doc = "[`Rfc2136Router`]: https://docs.rs/bluegreen-dns/latest/bluegreen_dns/struct.Rfc2136Router.html"
)]
#![cfg_attr(
    not(feature = "rfc2136"),
    doc = "[`PropagationCheck`]: https://docs.rs/bluegreen-dns/latest/bluegreen_dns/struct.PropagationCheck.html"
)]
#![cfg_attr(
    not(feature = "route53"),
    doc = "[`Route53Router`]: https://docs.rs/bluegreen-dns/latest/bluegreen_dns/struct.Route53Router.html"
)]

#[cfg_attr(
    not(any(feature = "rfc2136", feature = "route53")),
    allow(dead_code, reason = "the bookkeeping is used by the providers, which are features")
)]
mod bookkeeping;
#[cfg_attr(
    not(any(feature = "rfc2136", feature = "route53")),
    allow(dead_code, reason = "the drain is run by the providers, which are features")
)]
mod drain;
#[cfg(feature = "rfc2136")]
mod rfc2136;
#[cfg(feature = "route53")]
mod route53;
#[cfg_attr(
    not(any(feature = "rfc2136", feature = "route53")),
    allow(dead_code, reason = "the settings are checked by the providers, which are features")
)]
mod settings;

#[cfg(feature = "rfc2136")]
pub use rfc2136::propagation::{PropagationCheck, PropagationReport, ServerAnswer};
#[cfg(feature = "rfc2136")]
pub use rfc2136::tsig::{TsigAlgorithm, TsigKey};
#[cfg(feature = "rfc2136")]
pub use rfc2136::{Rfc2136Router, Rfc2136RouterBuilder, Rfc2136RouterConfig};
#[cfg(feature = "route53")]
pub use route53::{Route53RecordType, Route53Router, Route53RouterBuilder, Route53RouterConfig};
