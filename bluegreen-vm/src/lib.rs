//! # bluegreen-vm
//!
//! bluegreen backends for hosts and VMs, and for local use:
//!
//! - [`LocalProxyRouter`]: an in-process HTTP reverse proxy with weighted pools, per-target
//!   drain and request counters — the embedded default for local use and `bluegreen demo`;
//! - [`LocalProcessFleet`]: targets are real local server processes of a version;
//! - [`HaproxyRouter`]: drives a real HAProxy through its runtime API;
//! - [`HostFleet`]: hosts updated by a user-supplied [`Updater`] (a shell command template or a
//!   closure).
//!
//! All routers pass `bluegreen_core::conformance`.

mod haproxy;
mod host_fleet;
mod load;
mod process_fleet;
mod proxy;
pub mod target;

pub use haproxy::{HaproxyCheckProbe, HaproxyEndpoint, HaproxyRouter, HaproxyRouterBuilder};
pub use host_fleet::{HostFleet, Updater};
pub use load::{LoadGenerator, LoadGeneratorBuilder, LoadReport, MAX_RATE, MIN_RATE};
pub use process_fleet::{LocalProcessFleet, LocalProcessFleetBuilder, TARGET_BINARY, TARGET_BINARY_ENV};
pub use proxy::{Counts, LocalProxyRouter, LocalProxyRouterBuilder, MemberStats, PoolStats, ProxyStats};
