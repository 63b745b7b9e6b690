//! Mutated state files never panic the file store: a deployment's record, event log, lock and
//! command files are written by a real deploy on the simulator, then one of them is mutated
//! (bytes replaced, removed or inserted; truncated) and every read the commands make — `load`,
//! `history`, `events`, `holder`, `commands` — answers or fails with a typed error.
//!
//! 2,000 cases by default; `BLUEGREEN_FUZZ_CASES=200000` for the longer run.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bluegreen_core::sim::Sim;
use bluegreen_core::{BlueGreen, Command, Executor, FileStore, Spec, StateStore, Status, Strategy as Deploy};
use proptest::prelude::*;
use support::quick;

/// A state directory a real deploy wrote, and its deployment id.
fn written_state() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let id = rt.block_on(async {
        let store = Arc::new(FileStore::open(dir.path()).unwrap());
        let sim = Sim::builder().pool("blue", 2, "v1").pool("green", 0, "v1").build();
        let exec = Executor::builder(sim.router(), sim.fleet(), sim.probe()).state_store(store.clone(), "ci").build();
        let outcome = exec.deploy(&quick(Spec::new("web", "v2", Deploy::BlueGreen(BlueGreen::default())))).await;
        assert_eq!(outcome.unwrap().status, Status::Succeeded);
        let id = store.history("web").await.unwrap().remove(0).id;
        store.send(&id, Command::Pause).await.unwrap();
        id
    });
    (dir, id)
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn copy_tree(from: &Path, to: &Path) {
    for file in files(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy(&file, &target).unwrap();
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace { at: usize, byte: u8 },
    Remove { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<prop::sample::Index>().prop_map(|i| i.index(usize::MAX));
    prop_oneof![
        (at.clone(), any::<u8>()).prop_map(|(at, byte)| Mutation::Replace { at, byte }),
        (at.clone(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        (at.clone(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        at.prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match mutation {
        Mutation::Replace { at, byte } => {
            let at = at % bytes.len();
            bytes[at] = *byte;
        }
        Mutation::Remove { at, len } => {
            let at = at % bytes.len();
            bytes.drain(at..(at + len).min(bytes.len()));
        }
        Mutation::Insert { at, bytes: new } => {
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Truncate { at } => bytes.truncate(at % bytes.len()),
    }
}

fn cases() -> u32 {
    std::env::var("BLUEGREEN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

#[test]
fn mutated_state_files_are_read_or_refused() {
    let (written, id) = written_state();
    let originals = files(written.path());
    assert!(originals.len() >= 3, "a record, an event log and a lock at least: {originals:?}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let config = ProptestConfig { cases: cases(), max_shrink_iters: 500, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let strategy = (0..originals.len(), proptest::collection::vec(mutation(), 1..4));
    runner
        .run(&strategy, |(file, mutations)| {
            let copy = tempfile::tempdir().unwrap();
            copy_tree(written.path(), copy.path());
            let target = copy.path().join(originals[file].strip_prefix(written.path()).unwrap());
            let mut bytes = fs::read(&target).unwrap();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            fs::write(&target, &bytes).unwrap();
            rt.block_on(async {
                let store = FileStore::open(copy.path()).unwrap();
                // Each answers or fails with a typed error; a panic fails the case.
                let _ = store.load(&id).await;
                let _ = store.history("web").await;
                let _ = store.events(&id).await;
                let _ = store.holder("web").await;
                let _ = store.commands(&id, 0).await;
            });
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
