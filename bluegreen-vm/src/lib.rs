//! # bluegreen-vm
//!
//! bluegreen backends for hosts and VMs, and for local use:
//!
//! - [`HaproxyRouter`]: drives a real HAProxy through its runtime API;
//! - [`HostFleet`]: hosts updated by a user-supplied [`Updater`] (a shell command template or a
//!   closure);
//! - [`LocalProxyRouter`]: an in-process HTTP reverse proxy with weighted pools, per-target
//!   drain and request counters — the embedded default for local use and `bluegreen demo`;
//! - [`LocalProcessFleet`]: targets are real local server processes of a version, with
//!   [`LoadGenerator`] and the stand-in server [`target`] (the demo kit).
//!
//! All routers pass `bluegreen_core::conformance`.
//!
//! # Features
//!
//! Each backend is a Cargo feature, so a program compiles only what it uses:
//!
//! | feature | default | brings | dependencies |
//! |---|---|---|---|
//! | `haproxy` | yes | [`HaproxyRouter`], [`HaproxyRouterBuilder`], [`HaproxyEndpoint`], [`HaproxyCheckProbe`] | thiserror, humantime (no HTTP stack) |
//! | `hosts` | yes | [`HostFleet`], [`Updater`] | none |
//! | `local-proxy` | yes | [`LocalProxyRouter`], [`LocalProxyRouterBuilder`], [`ProxyStats`], [`PoolStats`], [`MemberStats`], [`Counts`] | hyper, hyper-util, http-body-util, bytes, serde |
//! | `demo` | no | [`LoadGenerator`], [`LoadGeneratorBuilder`], [`LoadReport`], [`LocalProcessFleet`], [`LocalProcessFleetBuilder`], [`target`] and the `bluegreen-target` binary | hyper & co., futures, rustix |
//!
//! The default set is what a deployer of hosts and VMs needs; `demo` is for demos and tests
//! (`bluegreen demo` enables it).
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "haproxy")]
mod haproxy;
#[cfg(feature = "hosts")]
mod host_fleet;
#[cfg(feature = "demo")]
mod load;
#[cfg(feature = "demo")]
mod process_fleet;
#[cfg(feature = "local-proxy")]
mod proxy;
/// The stand-in application server behind `bluegreen-target`. Feature `demo`.
#[cfg(feature = "demo")]
pub mod target;

/// Feature `haproxy`.
#[cfg(feature = "haproxy")]
pub use haproxy::{
    HaproxyCheckProbe, HaproxyEndpoint, HaproxyLayout, HaproxyRouter, HaproxyRouterBuilder, HaproxyRouterConfig,
};
/// Feature `hosts`.
#[cfg(feature = "hosts")]
pub use host_fleet::{HostEntry, HostFleet, HostFleetConfig, Updater};
/// Feature `demo`.
#[cfg(feature = "demo")]
pub use load::{LoadGenerator, LoadGeneratorBuilder, LoadReport, MAX_RATE, MIN_RATE};
/// Feature `demo`.
#[cfg(feature = "demo")]
pub use process_fleet::{LocalProcessFleet, LocalProcessFleetBuilder, TARGET_BINARY, TARGET_BINARY_ENV};
/// Feature `local-proxy`.
#[cfg(feature = "local-proxy")]
pub use proxy::{Counts, LocalProxyRouter, LocalProxyRouterBuilder, MemberStats, PoolStats, ProxyStats};
