//! The conformance suite: public async test functions every backend runs against its own
//! [`Router`], [`Fleet`] and [`StateStore`] (enable the `conformance` feature in `dev-dependencies`).
//!
//! Each function panics with a message naming the broken rule, like an `assert!`. Behaviour a
//! router does not claim in its [`Capabilities`] is skipped, not failed.
//!
//! ```no_run
//! # async fn example(router: &dyn bluegreen_core::Router, targets: Vec<bluegreen_core::Target>) {
//! use bluegreen_core::conformance::{router_suite, RouterFixture};
//! let fixture = RouterFixture { pools: ["blue".into(), "green".into()], targets };
//! router_suite(router, &fixture).await;
//! # }
//! ```

mod fleet;
mod ids;
mod router;
mod state_store;

pub use fleet::*;
pub use router::*;
pub use state_store::*;
