//! # bluegreen
//!
//! Zero-downtime releases as a library: blue-green switches, canary and linear traffic shifts
//! and batched rolling replacements, with health gates, bakes with analyses, hooks, observed
//! draining and a rollback computed from wherever a deploy stands.
//!
//! This crate is the one to depend on. It re-exports the engine ([`bluegreen_core`]: the
//! traits, [`Spec`], [`Plan`], [`Executor`], events, state stores and the simulator) at its
//! root, and each backend behind a feature:
//!
//! | feature | what it brings | crate |
//! |---|---|---|
//! | `http-probe` (default) | [`HttpProbe`], the `http_success_rate` analysis | `bluegreen-core` (reqwest, rustls) |
//! | `sim` (default) | [`sim`]: the simulator, for tests and rehearsals | `bluegreen-core` |
//! | `mock` | `MockRouter`, `MockFleet`, `MockHealthProbe` (mockall) | `bluegreen-core` |
//! | `conformance` | `conformance`: the suites a backend runs against itself | `bluegreen-core` |
//! | `deploy-file` | `deploy_file` (the deploy file reader) and [`deploy`] (its `[backend]` and `[state]` built with the backends compiled in) | `bluegreen-core` (toml_edit) |
//! | `haproxy` | `HaproxyRouter`, `HaproxyCheckProbe` (HAProxy's runtime API) | `bluegreen::vm` |
//! | `hosts` | `HostFleet` and `Updater`: fixed hosts updated in place | `bluegreen::vm` |
//! | `local-proxy` | `LocalProxyRouter`: an in-process HTTP proxy (hyper) | `bluegreen::vm` |
//! | `rfc2136` | `Rfc2136Router` (dynamic DNS with TSIG), `PropagationCheck` | `bluegreen::dns` |
//! | `route53` | `Route53Router` (weighted record sets; the Route53 SDK) | `bluegreen::dns` |
//! | `alb` | `AlbRouter`, `AlbTargetHealth` (the ELBv2 SDK) | `bluegreen::aws` |
//! | `ecs` | `EcsFleet`: ECS task sets (the ECS SDK) | `bluegreen::aws` |
//! | `dynamodb` | `DynamoDbStore`: state and lock on one table (the DynamoDB SDK) | `bluegreen::aws` |
//!
//! The defaults are enough to write and unit-test a release strategy; no backend is on by
//! default, so a program compiles only the SDKs and servers it names. A backend crate's types
//! are at this crate's root (`bluegreen::HaproxyRouter`) and in its module (`bluegreen::vm`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use bluegreen::sim::Sim;
//! use bluegreen::{Executor, Rolling, Spec, Status, Strategy};
//!
//! // Ten servers of v1 in one pool; update them two at a time.
//! let sim = Sim::builder().pool("blue", 10, "v1").build();
//! let executor = Executor::builder(sim.router(), sim.fleet(), sim.probe()).build();
//! let spec = Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2)));
//! let outcome = executor.deploy(&spec).await.unwrap();
//! assert_eq!(outcome.status, Status::Succeeded);
//! assert!(sim.violations().is_empty());
//! # }
//! ```
//!
//! Waiting in the engine is tokio time, so tests run long deploys in milliseconds on a paused
//! clock: that needs tokio's `test-util` feature in the embedder's dev-dependencies
//! (`tokio = { version = "1", features = ["macros", "rt", "test-util"] }`).
//!
//! [`TracingSink`] writes events through `tracing`: install a subscriber (for example
//! `tracing_subscriber::fmt::init()`) to see them, or use [`JsonLinesSink`] / [`ChannelSink`].

pub use bluegreen_core::*;

#[cfg(feature = "deploy-file")]
pub mod deploy;

/// Hosts and VMs, and local use: HAProxy, fixed host fleets, the in-process proxy
/// (`bluegreen-vm`; features `haproxy`, `hosts`, `local-proxy`).
#[cfg(any(feature = "haproxy", feature = "hosts", feature = "local-proxy"))]
pub use bluegreen_vm as vm;
#[cfg(feature = "haproxy")]
pub use bluegreen_vm::{HaproxyCheckProbe, HaproxyEndpoint, HaproxyRouter, HaproxyRouterBuilder};
#[cfg(feature = "hosts")]
pub use bluegreen_vm::{HostFleet, Updater};
#[cfg(feature = "local-proxy")]
pub use bluegreen_vm::{LocalProxyRouter, LocalProxyRouterBuilder};

/// DNS: one weighting model with two providers, RFC 2136 and Route53 (`bluegreen-dns`;
/// features `rfc2136`, `route53`).
#[cfg(any(feature = "rfc2136", feature = "route53"))]
pub use bluegreen_dns as dns;
#[cfg(feature = "rfc2136")]
pub use bluegreen_dns::{PropagationCheck, Rfc2136Router, Rfc2136RouterBuilder, TsigAlgorithm, TsigKey};
#[cfg(feature = "route53")]
pub use bluegreen_dns::{Route53RecordType, Route53Router, Route53RouterBuilder};

/// AWS: ALB, ECS, DynamoDB and the shared, rate-limited SDK client (`bluegreen-aws`;
/// features `alb`, `ecs`, `dynamodb`; `route53` brings it for `AwsConfig`).
#[cfg(any(feature = "alb", feature = "ecs", feature = "dynamodb", feature = "route53"))]
pub use bluegreen_aws as aws;
#[cfg(feature = "dynamodb")]
pub use bluegreen_aws::DynamoDbStore;
#[cfg(feature = "alb")]
pub use bluegreen_aws::{AlbRouter, AlbTargetHealth};
#[cfg(any(feature = "alb", feature = "ecs", feature = "dynamodb", feature = "route53"))]
pub use bluegreen_aws::{AwsConfig, CallLog};
#[cfg(feature = "ecs")]
pub use bluegreen_aws::{EcsFleet, EcsFleetBuilder};

/// Every Rust snippet in the README and in docs/ is compiled (and run, unless marked `no_run`)
/// as a doctest of this crate, each page when the features its snippets use are on; the
/// workspace's `cargo test` has them all on (the command enables every backend feature), and
/// `cargo test -p bluegreen --all-features --doc` runs them alone.
#[cfg(doctest)]
mod snippets {
    #[cfg(all(feature = "http-probe", feature = "sim"))]
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[cfg(all(feature = "alb", feature = "dynamodb"))]
    #[doc = include_str!("../docs/aws.md")]
    struct Aws;
    #[cfg(feature = "rfc2136")]
    #[doc = include_str!("../docs/dns.md")]
    struct Dns;
    #[doc = include_str!("../docs/durable-deployments.md")]
    struct DurableDeployments;
    #[cfg(all(feature = "haproxy", feature = "hosts", feature = "http-probe"))]
    #[doc = include_str!("../docs/haproxy.md")]
    struct Haproxy;
    #[doc = include_str!("../docs/cli.md")]
    struct Cli;
}
