//! The state-store suite: records, the fenced lease, the queue, commands and event logs.

use std::time::Duration;

use crate::error::Error;
use crate::events::{Event, EventKind};
use crate::model::{Split, Target};
use crate::plan::{Plan, Snapshot};
use crate::spec::{Spec, Strategy};
use crate::state::{Command, DeploymentRecord, ManualClock, Phase, StateStore};

/// Runs every state-store test. `clock` must be the wall clock the store reads (give the
/// store [`ManualClock::clock`](crate::state::ManualClock::clock)), so lease expiry can be
/// tested without waiting. `prefix` keeps this run's services and ids apart from others'.
pub async fn state_store_suite(store: &dyn StateStore, clock: &ManualClock, prefix: &str) {
    records_round_trip_and_list_in_order(store, prefix).await;
    unknown_deployment_is_not_found(store, prefix).await;
    lock_is_exclusive_and_names_its_holder(store, prefix).await;
    expired_lock_is_stolen_and_the_stale_owner_is_fenced(store, clock, prefix).await;
    released_lock_is_free_with_a_higher_fence(store, prefix).await;
    queue_is_first_come_first_served(store, clock, prefix).await;
    commands_are_numbered_and_read_after_a_sequence(store, prefix).await;
    events_are_kept_in_order_and_fenced(store, prefix).await;
}

fn sample_plan(service: &str) -> Plan {
    let spec = Spec::new(service, "v2", Strategy::BlueGreen(crate::spec::BlueGreen::default()));
    let target = Target::new("t-1", "127.0.0.1:1", "v1");
    let before = Snapshot {
        split: Split::all_to(&"blue".into()),
        pools: [("blue".into(), vec![target]), ("green".into(), vec![])].into_iter().collect(),
        ..Snapshot::default()
    };
    Plan::compile(&spec, &before, &crate::router::Capabilities::load_balancer()).expect("the sample plan compiles")
}

const TTL: Duration = Duration::from_secs(30);

/// A saved record loads back equal; history lists a service's records oldest first; a
/// duplicate id is refused.
pub async fn records_round_trip_and_list_in_order(store: &dyn StateStore, prefix: &str) {
    let service = format!("{prefix}-records");
    let lease = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    let mut first = DeploymentRecord::new(format!("{prefix}-r1"), sample_plan(&service), "owner-a", 1_000);
    let second = DeploymentRecord::new(format!("{prefix}-r2"), sample_plan(&service), "owner-a", 2_000);
    store.create(&first, &lease).await.expect("create failed");
    store.create(&second, &lease).await.expect("create failed");
    let err = store.create(&first, &lease).await.expect_err("a duplicate id must be refused");
    assert!(matches!(err, Error::Conflict { .. }), "duplicate create: {err}");
    first.completed_steps = 3;
    first.phase = Phase::RollingBack;
    first.failure = Some("analysis failed".into());
    store.save(&first, &lease).await.expect("save failed");
    assert_eq!(store.load(&first.id).await.expect("load failed"), first, "a record must load back as saved");
    let ids: Vec<String> = store.history(&service).await.expect("history failed").into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![first.id.clone(), second.id.clone()], "history must be oldest first");
    store.release(&lease).await.expect("release failed");
}

/// Loading or commanding an unknown deployment is `NotFound`.
pub async fn unknown_deployment_is_not_found(store: &dyn StateStore, prefix: &str) {
    let id = format!("{prefix}-no-such-deployment");
    let err = store.load(&id).await.expect_err("load of an unknown id must fail");
    assert!(matches!(err, Error::NotFound { .. }), "load(unknown): {err}");
    let err = store.send(&id, Command::Abort).await.expect_err("a command to an unknown id must fail");
    assert!(matches!(err, Error::NotFound { .. }), "send(unknown): {err}");
}

/// A live lock refuses another owner with a message naming the holder; the holder's owner name
/// may take it again, which is a takeover: a higher fence, and the first lease is then stale.
pub async fn lock_is_exclusive_and_names_its_holder(store: &dyn StateStore, prefix: &str) {
    let service = format!("{prefix}-exclusive");
    let lease = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    let err = store.acquire(&service, "owner-b", TTL).await.expect_err("a held lock must refuse another owner");
    match &err {
        Error::Conflict { what } => assert!(what.contains("owner-a"), "the conflict must name the holder: {what}"),
        other => panic!("acquire of a held lock: {other}"),
    }
    let record = DeploymentRecord::new(format!("{prefix}-taken-over"), sample_plan(&service), "owner-a", 1_000);
    store.create(&record, &lease).await.expect("create failed");
    let again = store.acquire(&service, "owner-a", TTL).await.expect("the holder may acquire again");
    assert!(
        again.fence > lease.fence,
        "re-acquiring one's own live lock takes it over with a higher fence: {} then {}",
        lease.fence,
        again.fence
    );
    assert_eq!(store.holder(&service).await.expect("holder failed").map(|l| l.owner), Some("owner-a".into()));
    let mut stale = record.clone();
    stale.completed_steps = 5;
    let err = store.save(&stale, &lease).await.expect_err("the taken-over lease's write must be refused");
    assert!(matches!(err, Error::Conflict { .. }), "save under the taken-over lease: {err}");
    let err = store.renew(&lease, TTL).await.expect_err("the taken-over lease's renewal must be refused");
    assert!(matches!(err, Error::Conflict { .. }), "renew under the taken-over lease: {err}");
    assert_eq!(
        store.load(&record.id).await.expect("load failed").completed_steps,
        0,
        "the taken-over lease's write changed the record"
    );
    store.release(&lease).await.expect("release under the taken-over lease is a no-op");
    assert_eq!(
        store.holder(&service).await.expect("holder failed").map(|l| l.fence),
        Some(again.fence),
        "releasing the taken-over lease must not free the lock"
    );
    store.save(&stale, &again).await.expect("the new lease may write");
    store.release(&again).await.expect("release failed");
}

/// After expiry another owner takes the lock with a higher fence, and the old owner's writes
/// and renewals are refused.
pub async fn expired_lock_is_stolen_and_the_stale_owner_is_fenced(
    store: &dyn StateStore,
    clock: &ManualClock,
    prefix: &str,
) {
    let service = format!("{prefix}-fencing");
    let old = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    let record = DeploymentRecord::new(format!("{prefix}-fenced"), sample_plan(&service), "owner-a", 1_000);
    store.create(&record, &old).await.expect("create failed");
    clock.advance(TTL + Duration::from_secs(1));
    let new = store.acquire(&service, "owner-b", TTL).await.expect("an expired lock must be taken over");
    assert!(new.fence > old.fence, "a new owner needs a higher fence: {} then {}", old.fence, new.fence);
    let mut stale = record.clone();
    stale.completed_steps = 5;
    let err = store.save(&stale, &old).await.expect_err("a stale owner's write must be refused");
    assert!(matches!(err, Error::Conflict { .. }), "stale save: {err}");
    let err = store.renew(&old, TTL).await.expect_err("a stale owner's renewal must be refused");
    assert!(matches!(err, Error::Conflict { .. }), "stale renew: {err}");
    assert_eq!(
        store.load(&record.id).await.expect("load failed").completed_steps,
        0,
        "the stale write changed the record"
    );
    store.save(&record, &new).await.expect("the new owner's write must succeed");
    store.release(&old).await.expect("releasing a lost lease is a no-op");
    assert_eq!(store.holder(&service).await.expect("holder failed").map(|l| l.owner), Some("owner-b".into()));
    store.release(&new).await.expect("release failed");
}

/// A deployment's events are kept in `seq` order across appends (more than one write's worth),
/// a retried append changes nothing, and an owner whose lease was taken over adds none.
pub async fn events_are_kept_in_order_and_fenced(store: &dyn StateStore, prefix: &str) {
    let service = format!("{prefix}-events");
    let lease = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    let record = DeploymentRecord::new(format!("{prefix}-logged"), sample_plan(&service), "owner-a", 1_000);
    store.create(&record, &lease).await.expect("create failed");
    assert!(store.events(&record.id).await.expect("events failed").is_empty(), "a new deployment has no events");
    let event = |seq: u64| Event {
        deployment_id: record.id.clone(),
        seq,
        at: Duration::from_millis(seq * 10),
        kind: EventKind::StepStarted { index: usize::try_from(seq).unwrap_or(0), step: format!("step {seq}") },
    };
    let first: Vec<Event> = (0..150).map(event).collect();
    store.append_events(&record.id, &first, &lease).await.expect("append failed");
    store.append_events(&record.id, &first[140..], &lease).await.expect("a retried append failed");
    store.append_events(&record.id, &[event(150)], &lease).await.expect("append failed");
    let read = store.events(&record.id).await.expect("events failed");
    assert_eq!(read.len(), 151, "{} events read back", read.len());
    assert!(read.iter().enumerate().all(|(i, e)| e.seq == i as u64), "not in seq order, or repeated");
    assert_eq!(read[150], event(150));

    let taken = store.acquire(&service, "owner-a", TTL).await.expect("takeover failed");
    let err = store.append_events(&record.id, &[event(151)], &lease).await.expect_err("a stale owner's events");
    assert!(matches!(err, Error::Conflict { .. }), "stale append: {err}");
    assert_eq!(store.events(&record.id).await.expect("events failed").len(), 151, "the stale append added events");
    store.release(&taken).await.expect("release failed");
}

/// A released lock is free at once, under a higher fence.
pub async fn released_lock_is_free_with_a_higher_fence(store: &dyn StateStore, prefix: &str) {
    let service = format!("{prefix}-release");
    let first = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    store.release(&first).await.expect("release failed");
    assert_eq!(store.holder(&service).await.expect("holder failed"), None);
    let second = store.acquire(&service, "owner-b", TTL).await.expect("a released lock must be free");
    assert!(second.fence > first.fence);
    let renewed = store.renew(&second, TTL * 2).await.expect("renew failed");
    assert!(renewed.expires_at > second.expires_at);
    store.release(&renewed).await.expect("release failed");
}

/// Waiters are served in arrival order; entries that are not refreshed expire.
pub async fn queue_is_first_come_first_served(store: &dyn StateStore, clock: &ManualClock, prefix: &str) {
    let service = format!("{prefix}-queue");
    assert_eq!(store.enqueue(&service, "a", TTL).await.expect("enqueue failed"), vec!["a"]);
    assert_eq!(store.enqueue(&service, "b", TTL).await.expect("enqueue failed"), vec!["a", "b"]);
    assert_eq!(
        store.enqueue(&service, "a", TTL).await.expect("refresh failed"),
        vec!["a", "b"],
        "a refresh keeps the place"
    );
    store.dequeue(&service, "a").await.expect("dequeue failed");
    assert_eq!(store.enqueue(&service, "c", TTL).await.expect("enqueue failed"), vec!["b", "c"]);
    clock.advance(TTL + Duration::from_secs(1));
    assert_eq!(store.enqueue(&service, "c", TTL).await.expect("enqueue failed"), vec!["c"], "b expired");
    store.dequeue(&service, "c").await.expect("dequeue failed");
}

/// Commands are numbered from 1 and read after a sequence number.
pub async fn commands_are_numbered_and_read_after_a_sequence(store: &dyn StateStore, prefix: &str) {
    let service = format!("{prefix}-commands");
    let lease = store.acquire(&service, "owner-a", TTL).await.expect("acquire failed");
    let record = DeploymentRecord::new(format!("{prefix}-commanded"), sample_plan(&service), "owner-a", 1_000);
    store.create(&record, &lease).await.expect("create failed");
    assert_eq!(store.send(&record.id, Command::Pause).await.expect("send failed"), 1);
    assert_eq!(store.send(&record.id, Command::Promote).await.expect("send failed"), 2);
    let all: Vec<Command> =
        store.commands(&record.id, 0).await.expect("commands failed").into_iter().map(|c| c.command).collect();
    assert_eq!(all, vec![Command::Pause, Command::Promote]);
    let later = store.commands(&record.id, 1).await.expect("commands failed");
    assert_eq!(later.len(), 1);
    assert_eq!((later[0].seq, later[0].command), (2, Command::Promote));
    store.release(&lease).await.expect("release failed");
}
