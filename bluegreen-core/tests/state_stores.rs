//! The state stores: the conformance suite on memory and file stores, and the file store's
//! handling of unreadable files.

use std::fs;
use std::time::Duration;

use bluegreen_core::conformance::state_store_suite;
use bluegreen_core::state::ManualClock;
use bluegreen_core::{Error, FileStore, MemoryStore, StateStore};

#[tokio::test]
async fn the_memory_store_conforms() {
    let clock = ManualClock::new();
    state_store_suite(&MemoryStore::with_clock(clock.clock()), &clock, "mem").await;
}

#[tokio::test]
async fn the_file_store_conforms() {
    let dir = tempdir();
    let clock = ManualClock::new();
    let store = FileStore::open_with_clock(dir.path(), clock.clock()).unwrap();
    state_store_suite(&store, &clock, "file").await;
    // Readable JSON, one directory per service.
    let record = fs::read_to_string(dir.path().join("file-records/deployments/file-r1.json")).unwrap();
    assert!(record.contains("\"format_version\": 1"), "{record}");
    assert!(record.contains("\"completed_steps\": 3"), "{record}");
}

/// A temporary directory removed on drop (no extra dependency for one helper).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "bluegreen-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    fs::create_dir_all(&path).unwrap();
    TempDir(path)
}

#[tokio::test]
async fn unreadable_state_files_give_a_clear_error_and_are_left_as_they_were() {
    let dir = tempdir();
    let store = FileStore::open(dir.path()).unwrap();
    // A real record to damage.
    let clock = ManualClock::new();
    let good = FileStore::open_with_clock(dir.path(), clock.clock()).unwrap();
    let lease = good.acquire("shop", "me", Duration::from_secs(30)).await.unwrap();
    let plan = {
        let sim = bluegreen_core::sim::Sim::builder().pool("blue", 1, "v1").pool("green", 0, "v1").build();
        let exec = bluegreen_core::Executor::builder(sim.router(), sim.fleet(), sim.probe()).build();
        let spec = bluegreen_core::Spec::new("shop", "v2", bluegreen_core::Strategy::BlueGreen(Default::default()));
        exec.plan(&spec).await.unwrap()
    };
    let record = bluegreen_core::DeploymentRecord::new("shop-1", plan, "me", 1);
    good.create(&record, &lease).await.unwrap();
    let path = dir.path().join("shop/deployments/shop-1.json");
    let valid = fs::read_to_string(&path).unwrap();

    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "empty"),
        ("truncated", valid[..valid.len() / 2].to_owned(), "not valid JSON"),
        ("garbage", "{not json".to_owned(), "not valid JSON"),
        (
            "future format",
            valid.replace("\"format_version\": 1", "\"format_version\": 99"),
            "newer bluegreen (format 99",
        ),
        ("no format", valid.replace("\"format_version\": 1,", ""), "no format_version"),
        ("wrong shape", r#"{"format_version": 1, "id": 7}"#.to_owned(), "at "),
    ];
    for (name, content, expected) in cases {
        fs::write(&path, &content).unwrap();
        let err = store.load("shop-1").await.expect_err(name);
        let message = err.to_string();
        assert!(matches!(err, Error::Corrupt { .. }), "{name}: {message}");
        assert!(message.contains("shop-1.json"), "{name}: the error must name the file: {message}");
        assert!(message.contains(expected), "{name}: {message}");
        let err = good.save(&record, &lease).await.expect_err(name);
        assert!(matches!(err, Error::Corrupt { .. }), "{name}: save over an unreadable file: {err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), content, "{name}: the file was changed");
        let err = store.history("shop").await.expect_err(name);
        assert!(matches!(err, Error::Corrupt { .. }), "{name}: history: {err}");
    }

    // The lock file too.
    let lock = dir.path().join("shop/lock.json");
    fs::write(&lock, "{\"format_version\": 2}").unwrap();
    let err = store.acquire("shop", "me", Duration::from_secs(30)).await.unwrap_err();
    assert!(err.to_string().contains("lock.json") && err.to_string().contains("format 2"), "{err}");
    assert_eq!(fs::read_to_string(&lock).unwrap(), "{\"format_version\": 2}");
}

#[tokio::test]
async fn names_that_could_leave_the_directory_are_refused() {
    let dir = tempdir();
    let store = FileStore::open(dir.path()).unwrap();
    for bad in ["../etc", "a/b", "", ".hidden"] {
        let err = store.acquire(bad, "me", Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{bad:?}: {err}");
    }
}

#[tokio::test]
async fn an_event_line_cut_short_by_a_crash_is_dropped_and_the_log_goes_on() {
    use bluegreen_core::{DeploymentRecord, Event, EventKind, Plan, Spec, Strategy};
    let dir = tempdir();
    let store = FileStore::open(dir.path()).unwrap();
    let lease = store.acquire("shop", "me", Duration::from_secs(30)).await.unwrap();
    let snapshot = bluegreen_core::Snapshot {
        split: bluegreen_core::Split::all_to(&"blue".into()),
        pools: [
            (
                "blue".into(),
                vec![bluegreen_core::Target {
                    id: "t-1".into(),
                    address: "127.0.0.1:1".into(),
                    zone: None,
                    version: "v1".into(),
                    tag: None,
                }],
            ),
            ("green".into(), vec![]),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let spec = Spec::new("shop", "v2", Strategy::BlueGreen(bluegreen_core::BlueGreen::default()));
    let plan = Plan::compile(&spec, &snapshot, &bluegreen_core::Capabilities::load_balancer()).unwrap();
    let record = DeploymentRecord::new("d-1", plan, "me", 1);
    store.create(&record, &lease).await.unwrap();
    let event = |seq: u64| Event {
        deployment_id: "d-1".into(),
        seq,
        at: Duration::from_millis(seq),
        kind: EventKind::Warning { message: format!("évènement {seq} — with multi-byte text") },
    };
    store.append_events("d-1", &[event(0), event(1)], &lease).await.unwrap();
    // A crash in the middle of the next append: half a line, cut inside a multi-byte character.
    let log = dir.path().join("shop/events/d-1.jsonl");
    let line = serde_json::to_vec(&event(2)).unwrap();
    let cut = line.iter().position(|b| *b >= 0x80).unwrap() + 1;
    let mut file = fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut file, &line[..cut]).unwrap();
    drop(file);
    let read = store.events("d-1").await.unwrap();
    assert_eq!(read, [event(0), event(1)], "the cut line is not an event");
    // The resumed run appends: the cut line is dropped, not glued to the next one.
    store.append_events("d-1", &[event(2), event(3)], &lease).await.unwrap();
    assert_eq!(store.events("d-1").await.unwrap(), [event(0), event(1), event(2), event(3)]);
}
