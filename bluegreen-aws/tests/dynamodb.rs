//! `DynamoDbStore` with the real aws-sdk-dynamodb client against moto server (see `moto/mod.rs`):
//! the core `StateStore` conformance suite, unreadable items, racing owners, a missing table, and
//! a durable deploy journaled in DynamoDB. Moto's conditional writes and transactions behave like
//! DynamoDB's, so everything here runs against it; throttling and AccessDenied, which moto does
//! not produce, are covered by the unit tests of `src/error.rs`.

mod moto;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use bluegreen_aws::DynamoDbStore;
use bluegreen_core::sim::Sim;
use bluegreen_core::state::ManualClock;
use bluegreen_core::{
    BlueGreen, DeploymentRecord, Error, Executor, HealthPolicy, Phase, Spec, StateStore, Status, Strategy,
};
use moto::Moto;

const TABLE: &str = "bluegreen-state";

async fn store(moto: &Moto) -> (DynamoDbStore, Client) {
    let sdk = moto.config().load().await;
    let client = Client::new(&sdk);
    moto.create_state_table(&client, TABLE).await;
    (DynamoDbStore::new(&sdk, TABLE), client)
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_owned(), AttributeValue::S(pk.into())), ("sk".to_owned(), AttributeValue::S(sk.into()))])
}

async fn raw_item(client: &Client, pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    client
        .get_item()
        .table_name(TABLE)
        .set_key(Some(key(pk, sk)))
        .consistent_read(true)
        .send()
        .await
        .expect("get_item")
        .item
        .expect("the item exists")
}

/// A record of the conformance suite's shape, created under a fresh lease.
async fn created_record(store: &DynamoDbStore, service: &str, id: &str) -> (DeploymentRecord, bluegreen_core::Lease) {
    let lease = store.acquire(service, "owner-a", Duration::from_secs(30)).await.expect("acquire");
    let spec = Spec::new(service, "v2", Strategy::BlueGreen(BlueGreen::default()));
    let sim = Sim::builder().pool("blue", 1, "v1").pool("green", 0, "v1").build();
    let exec = Executor::builder(sim.router(), sim.fleet(), sim.probe()).build();
    let plan = exec.plan(&spec).await.expect("plan");
    let record = DeploymentRecord::new(id, plan, "owner-a", 1_000);
    store.create(&record, &lease).await.expect("create");
    (record, lease)
}

#[tokio::test]
async fn dynamodb_store_passes_the_state_store_suite() {
    let Some(moto) = Moto::start() else { return };
    let started = Instant::now();
    let (store, _) = store(&moto).await;
    let clock = ManualClock::new();
    let store = store.with_clock(clock.clock());
    bluegreen_core::conformance::state_store_suite(&store, &clock, "conformance").await;
    eprintln!("state_store_suite against moto: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_record_of_a_newer_format_is_corrupt_named_and_left_as_it_is() {
    let Some(moto) = Moto::start() else { return };
    let (store, client) = store(&moto).await;
    let (record, lease) = created_record(&store, "shop", "shop-1").await;
    // A newer bluegreen rewrote the item.
    let mut item = raw_item(&client, "service#shop", "deployment#shop-1").await;
    item.insert("format_version".into(), AttributeValue::N("2".into()));
    client.put_item().table_name(TABLE).set_item(Some(item.clone())).send().await.expect("put_item");

    for err in [store.load("shop-1").await.expect_err("load"), store.save(&record, &lease).await.expect_err("save")] {
        match &err {
            Error::Corrupt { path, reason } => {
                assert_eq!(path, "dynamodb://bluegreen-state/service#shop/deployment#shop-1");
                assert!(reason.contains("newer bluegreen"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other}"),
        }
    }
    let err = store.history("shop").await.expect_err("history reads every record");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_eq!(raw_item(&client, "service#shop", "deployment#shop-1").await, item, "the item was changed");
}

#[tokio::test]
async fn a_garbled_record_is_corrupt_and_not_overwritten() {
    let Some(moto) = Moto::start() else { return };
    let (store, client) = store(&moto).await;
    let (record, lease) = created_record(&store, "shop", "shop-1").await;
    for garbage in ["", "{\"format_version\": 1, \"id\": \"shop-1\"", "[]"] {
        let mut item = raw_item(&client, "service#shop", "deployment#shop-1").await;
        item.insert("record".into(), AttributeValue::S(garbage.into()));
        client.put_item().table_name(TABLE).set_item(Some(item.clone())).send().await.expect("put_item");
        let err = store.load("shop-1").await.expect_err("load of a garbled record");
        assert!(matches!(&err, Error::Corrupt { path, .. } if path.ends_with("/deployment#shop-1")), "{err}");
        let err = store.save(&record, &lease).await.expect_err("save over a garbled record");
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_eq!(raw_item(&client, "service#shop", "deployment#shop-1").await, item, "{garbage:?} was overwritten");
    }
}

#[tokio::test]
async fn a_lock_item_of_a_newer_format_is_never_taken_over() {
    let Some(moto) = Moto::start() else { return };
    let (store, client) = store(&moto).await;
    let lease = store.acquire("shop", "owner-a", Duration::from_secs(30)).await.expect("acquire");
    store.release(&lease).await.expect("release");
    let mut item = raw_item(&client, "service#shop", "lock").await;
    item.insert("format_version".into(), AttributeValue::N("9".into()));
    client.put_item().table_name(TABLE).set_item(Some(item.clone())).send().await.expect("put_item");
    let err = store.acquire("shop", "owner-b", Duration::from_secs(30)).await.expect_err("acquire");
    assert!(matches!(&err, Error::Corrupt { path, .. } if path.ends_with("service#shop/lock")), "{err}");
    assert_eq!(raw_item(&client, "service#shop", "lock").await, item);
}

#[tokio::test]
async fn of_owners_racing_for_a_free_lock_exactly_one_wins() {
    let Some(moto) = Moto::start() else { return };
    let (store, _) = store(&moto).await;
    for round in 0..3 {
        let service = format!("race-{round}");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                let service = service.clone();
                tokio::spawn(
                    async move { store.acquire(&service, &format!("owner-{i}"), Duration::from_secs(30)).await },
                )
            })
            .collect();
        let mut won = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                Ok(lease) => won.push(lease),
                Err(Error::Conflict { what }) => assert!(what.contains("locked by"), "{what}"),
                Err(other) => panic!("acquire: {other}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: {} owners got the lock: {won:?}", won.len());
        let holder = store.holder(&service).await.expect("holder").expect("held");
        assert_eq!(holder, won[0]);
    }
}

#[tokio::test]
async fn a_missing_table_is_a_permanent_error_naming_table_and_action() {
    let Some(moto) = Moto::start() else { return };
    let sdk = moto.config().load().await;
    let store = DynamoDbStore::new(&sdk, "no-such-table");
    let err = store.acquire("shop", "owner-a", Duration::from_secs(30)).await.expect_err("acquire");
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("no-such-table") && text.contains("dynamodb:GetItem"), "{text}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_retryable_error() {
    // Nothing listens on port 9 of the loopback interface.
    let sdk = bluegreen_aws::AwsConfig::new()
        .region("us-east-1")
        .endpoint_url("http://127.0.0.1:9")
        .static_credentials("testing", "testing")
        .max_attempts(1)
        .load()
        .await;
    let err = DynamoDbStore::new(&sdk, TABLE).holder("shop").await.expect_err("holder");
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn a_durable_blue_green_deploy_is_journaled_in_dynamodb() {
    let Some(moto) = Moto::start() else { return };
    let (store, _) = store(&moto).await;
    let store = Arc::new(store);
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
    let exec = Executor::builder(sim.router(), sim.fleet(), sim.probe())
        .shared_sink(sim.sink())
        .state_store(store.clone(), "ci-1")
        .poll_interval(Duration::from_millis(200))
        .build();
    let health = HealthPolicy {
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(40),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
        min_healthy_time: Duration::ZERO,
        deadline: Duration::from_secs(30),
    };
    let spec = Spec::new("shop", "v2", Strategy::BlueGreen(BlueGreen::default())).with_health(health);
    let outcome = exec.deploy(&spec).await.expect("deploy");
    assert_eq!(outcome.status, Status::Succeeded);
    let record = store.load(&outcome.deployment_id).await.expect("load");
    assert_eq!(record.phase, Phase::Finished);
    assert_eq!(record.completed_steps, record.plan.steps.len());
    assert_eq!(store.holder("shop").await.expect("holder"), None, "the lock is released");
    let history = exec.history("shop").await.expect("history");
    assert_eq!(history.len(), 1);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn an_event_larger_than_an_item_is_stored_as_a_warning_and_does_not_block_the_log() {
    use bluegreen_core::{Event, EventKind};
    let Some(moto) = Moto::start() else { return };
    let (store, _) = store(&moto).await;
    let (record, lease) = created_record(&store, "huge", "huge-1").await;
    let event = |seq: u64, message: String| Event {
        deployment_id: record.id.clone(),
        seq,
        at: Duration::from_millis(seq),
        kind: EventKind::Warning { message },
    };
    // 500 KB: above DynamoDB's 400 KB per item; then enough events to need several writes.
    let mut batch = vec![event(0, "x".repeat(500_000))];
    batch.extend((1..=120).map(|seq| event(seq, format!("event {seq}"))));
    store.append_events(&record.id, &batch, &lease).await.expect("append");
    let log = store.events(&record.id).await.expect("events");
    assert_eq!(log.len(), 121);
    assert!(
        matches!(&log[0].kind, EventKind::Warning { message } if message.contains("larger than a DynamoDB item")),
        "{:?}",
        log[0].kind
    );
    assert_eq!(log[1..], batch[1..], "the rest is stored as it was");
}
