//! The README's "Testing your own release strategy" snippet, run as the test it shows. A doctest
//! cannot run a `#[tokio::test]` function (rustdoc drops `#[test]` items), so the README marks
//! that block `ignore` and this file holds it; `the_readme_shows_this_test_verbatim` keeps the
//! two the same text.

// README BEGIN
use bluegreen::sim::{Sim, VersionBehaviour};
use bluegreen::{Executor, Rolling, Spec, Status, Strategy};

#[tokio::test(start_paused = true)] // tokio with "macros", "rt" and "test-util"
async fn a_broken_release_is_caught() {
    let sim =
        Sim::builder().pool("web", 10, "v1").capacity_floor(8).version("v2", VersionBehaviour::never_healthy()).build();
    let executor = Executor::builder(sim.router(), sim.fleet(), sim.probe()).shared_sink(sim.sink()).build();
    let outcome = executor.deploy(&Spec::new("web", "v2", Strategy::Rolling(Rolling::in_place(2)))).await.unwrap();
    assert_eq!(outcome.status, Status::RolledBack);
    assert!(sim.violations().is_empty());
}
// README END

#[test]
fn the_readme_shows_this_test_verbatim() {
    let this = include_str!("readme.rs");
    let (_, rest) = this.split_once("// README BEGIN\n").unwrap();
    let (snippet, _) = rest.split_once("// README END\n").unwrap();
    let readme = include_str!("../README.md");
    assert!(readme.contains(&format!("```rust,ignore\n{snippet}```")), "README.md no longer shows tests/readme.rs");
}
