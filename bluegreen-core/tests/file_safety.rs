//! What the file state store and the simulator's shared world write, tried as an attacker on
//! the same machine would: a symlink planted at the temporary names the stores used to use
//! must not make them write through it, and state, lock and event files are private (0600 in
//! 0700 directories) whatever the umask.
//!
//! Every test here sets the umask to the usual 022 (the process's umask: this file's tests
//! all want the same one).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bluegreen_core::sim::Sim;
use bluegreen_core::state::ManualClock;
use bluegreen_core::{
    Command, DeploymentRecord, Event, EventKind, FileStore, Lease, Plan, Snapshot, Spec, Split, StateStore, Strategy,
    Target,
};

fn umask_022() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
}

/// What an attacker wants overwritten: a file outside the state directory.
struct Outside {
    path: PathBuf,
    content: &'static str,
}

impl Outside {
    fn new(dir: &Path) -> Self {
        let path = dir.join("precious");
        let content = "precious content: bluegreen must never write here\n";
        fs::write(&path, content).unwrap();
        Self { path, content }
    }

    fn plant(&self, at: &Path) {
        std::os::unix::fs::symlink(&self.path, at).unwrap_or_else(|e| panic!("plant {}: {e}", at.display()));
    }

    fn assert_unchanged(&self, what: &str) {
        let now = fs::read_to_string(&self.path).unwrap();
        assert_eq!(now, self.content, "{what}: bluegreen wrote through a planted symlink into {}", self.path.display());
    }
}

fn record(id: &str) -> DeploymentRecord {
    let snapshot = Snapshot {
        split: Split::all_to(&"blue".into()),
        pools: [
            (
                "blue".into(),
                vec![Target {
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
    DeploymentRecord::new(id, plan, "me", 1)
}

fn event(id: &str, seq: u64) -> Event {
    Event {
        deployment_id: id.into(),
        seq,
        at: Duration::from_millis(seq),
        kind: EventKind::Warning { message: format!("event {seq}") },
    }
}

/// Every kind of write the file store makes: the lock (acquire, renew, queue, release), a
/// record (create, save), the command log, the event log.
async fn every_write(store: &FileStore) -> Lease {
    let ttl = Duration::from_secs(30);
    let lease = store.acquire("shop", "me", ttl).await.unwrap();
    let lease = store.renew(&lease, ttl).await.unwrap();
    let mut record = record("d-1");
    store.create(&record, &lease).await.unwrap();
    record.owner = "me, again".into();
    store.save(&record, &lease).await.unwrap();
    store.send("d-1", Command::Pause).await.unwrap();
    store.append_events("d-1", &[event("d-1", 0), event("d-1", 1)], &lease).await.unwrap();
    store.enqueue("shop", "d-2", ttl).await.unwrap();
    store.dequeue("shop", "d-2").await.unwrap();
    assert_eq!(store.load("d-1").await.unwrap().owner, "me, again");
    assert_eq!(store.commands("d-1", 0).await.unwrap().len(), 1);
    assert_eq!(store.events("d-1").await.unwrap().len(), 2);
    lease
}

#[tokio::test]
async fn symlinks_planted_at_the_old_temporary_names_are_not_followed() {
    umask_022();
    let scratch = tempfile::tempdir().unwrap();
    let outside = Outside::new(scratch.path());
    let root = scratch.path().join("state");
    let service = root.join("shop");
    for sub in ["deployments", "commands", "events"] {
        fs::create_dir_all(service.join(sub)).unwrap();
    }
    // The names the store used for its temporary files: `.<name>.<pid>.tmp` beside each file.
    let pid = std::process::id();
    let planted = [
        service.join(format!(".lock.json.{pid}.tmp")),
        service.join(format!("deployments/.d-1.json.{pid}.tmp")),
        service.join(format!("commands/.d-1.json.{pid}.tmp")),
        service.join(format!("events/.d-1.jsonl.{pid}.tmp")),
    ];
    for at in &planted {
        outside.plant(at);
    }

    let clock = ManualClock::new();
    let store = FileStore::open_with_clock(&root, clock.clock()).unwrap();
    let lease = every_write(&store).await;
    store.release(&lease).await.unwrap();
    outside.assert_unchanged("file store");

    // The state files are real files, not the planted links renamed into place.
    for file in ["lock.json", "deployments/d-1.json", "commands/d-1.json", "events/d-1.jsonl"] {
        let meta = fs::symlink_metadata(service.join(file)).unwrap();
        assert!(meta.file_type().is_file(), "{file} is not a regular file");
    }
    // Nothing left behind but the planted links.
    for dir in [service.clone(), service.join("deployments"), service.join("commands"), service.join("events")] {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let expected = planted.contains(&path)
                || [".guard", "lock.json", "d-1.json", "d-1.jsonl", "deployments", "commands", "events"]
                    .contains(&name.as_str());
            assert!(expected, "left behind: {}", path.display());
        }
    }

    // The simulator's shared world: `<world>.tmp<pid>` beside it (`world.tmp<pid>` for
    // `world.json`).
    let world = scratch.path().join("sim").join("world.json");
    fs::create_dir_all(world.parent().unwrap()).unwrap();
    outside.plant(&world.with_extension(format!("tmp{pid}")));
    let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").shared_file(&world).try_build().unwrap();
    outside.assert_unchanged("creating the simulated world");
    let router = sim.router();
    router.set_split(&Split::all_to(&"blue".into())).await.unwrap();
    let _ = router.members(&"blue".into()).await.unwrap();
    drop(router);
    drop(sim);
    outside.assert_unchanged("a simulated world write");
    assert!(fs::symlink_metadata(&world).unwrap().file_type().is_file(), "the world is not a regular file");
    let again = Sim::builder().shared_file(&world).try_build().unwrap();
    assert_eq!(again.router().split().await.unwrap(), Split::all_to(&"blue".into()));
}

/// The permission bits, in octal (`"700"`), so a failure reads as modes do.
fn mode(path: &Path) -> String {
    format!("{:o}", fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).mode() & 0o777)
}

#[tokio::test]
async fn state_files_are_0600_and_their_directories_0700_under_umask_022() {
    umask_022();
    let scratch = tempfile::tempdir().unwrap();
    // Two levels the store creates itself.
    let root = scratch.path().join("state").join("tree");
    let store = FileStore::open(&root).unwrap();
    every_write(&store).await;
    for dir in [scratch.path().join("state"), root.clone(), root.join("shop")] {
        assert_eq!(mode(&dir), "700", "{}", dir.display());
    }
    for sub in ["deployments", "commands", "events"] {
        assert_eq!(mode(&root.join("shop").join(sub)), "700", "{sub}");
    }
    for file in ["lock.json", ".guard", "deployments/d-1.json", "commands/d-1.json", "events/d-1.jsonl"] {
        assert_eq!(mode(&root.join("shop").join(file)), "600", "{file}");
    }

    // The simulator's world, created through its config as the command does.
    let world = scratch.path().join("sim").join("nested").join("world.json");
    let config: bluegreen_core::config::SimConfig =
        serde_json::from_value(serde_json::json!({ "world": world })).unwrap();
    let sim = config.open().unwrap();
    sim.router().set_split(&Split::all_to(&"blue".into())).await.unwrap();
    for dir in [scratch.path().join("sim"), world.parent().unwrap().to_owned()] {
        assert_eq!(mode(&dir), "700", "{}", dir.display());
    }
    assert_eq!(mode(&world), "600", "the world");
    assert_eq!(mode(&world.with_extension("lock")), "600", "the world's lock");
}
