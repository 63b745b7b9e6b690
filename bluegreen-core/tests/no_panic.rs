//! Inputs that used to panic the process (exit 101, the lock left held): each is now a bounded
//! value or a typed error.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bluegreen_core::layers::RouterOp;
use bluegreen_core::sim::{Fault, Sim};
use bluegreen_core::{BlueGreen, Error, Executor, MemoryStore, RetryPolicy, Spec, StateStore, Status, Strategy};
use support::*;

fn steep() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 40,
        initial_backoff: Duration::from_millis(200),
        max_backoff: secs(10),
        multiplier: 10.0,
    }
}

#[test]
fn a_backoff_that_would_overflow_stays_at_its_maximum() {
    let retry = steep();
    assert_eq!(retry.backoff(1), Duration::from_millis(200));
    assert_eq!(retry.backoff(2), secs(2));
    for attempt in [3, 20, 21, 25, 40, u32::MAX] {
        assert_eq!(retry.backoff(attempt), secs(10), "attempt {attempt}");
    }
}

#[tokio::test(start_paused = true)]
async fn twenty_five_retryable_failures_with_multiplier_ten_retry_and_release_the_lock() {
    let sim = Sim::builder()
        .pool("blue", 2, "v1")
        .pool("green", 0, "v1")
        .fault(Fault::transient(RouterOp::SetSplit, 1, 25))
        .build();
    let store = Arc::new(MemoryStore::new());
    let exec = Executor::builder(sim.router(), sim.fleet(), sim.probe()).state_store(store.clone(), "ci").build();
    let spec = quick(Spec::new("shop", "v2", Strategy::BlueGreen(BlueGreen::default()))).with_retry(steep());
    let outcome = exec.deploy(&spec).await.unwrap();
    assert_eq!(outcome.status, Status::Succeeded, "{:?}", outcome.reason);
    assert_eq!(store.holder("shop").await.unwrap(), None, "the lock is free");
}

#[tokio::test]
async fn a_corrupt_world_file_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("world.json");
    std::fs::write(&world, "{ not a world").unwrap();
    let err = Sim::builder().pool("blue", 2, "v1").shared_file(&world).try_build().unwrap_err();
    assert!(matches!(&err, Error::Corrupt { path, .. } if path.contains("world.json")), "{err}");
    assert_eq!(std::fs::read_to_string(&world).unwrap(), "{ not a world", "left as it is");

    // A missing file is created, and a second builder reads it.
    let fresh = dir.path().join("fresh.json");
    let sim = Sim::builder().pool("blue", 2, "v1").shared_file(&fresh).try_build().unwrap();
    assert_eq!(sim.targets().len(), 2);
    let again = Sim::builder().shared_file(&fresh).try_build().unwrap();
    assert_eq!(again.targets().len(), 2);
}
