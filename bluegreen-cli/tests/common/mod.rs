//! What the command's integration tests share: a temporary directory per test, and real host
//! processes (`bluegreen serve-target`) for the backends with a host inventory.

#![allow(dead_code)] // each test file uses a part

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `bluegreen` binary under test.
pub(crate) const BLUEGREEN: &str = env!("CARGO_BIN_EXE_bluegreen");

/// A fresh directory for one test (`bluegreen-<name>-…` under the system's temp dir), removed
/// when dropped.
pub(crate) fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("bluegreen-{name}-")).tempdir().expect("a temporary directory")
}

/// `update.sh ID ADDRESS VERSION`: stops the host's process (SIGTERM, waits until it is gone),
/// starts `bluegreen serve-target` with the new version on the same address in the background
/// and waits until it listens. It is also the deploy files' `updater`.
const UPDATE_SH: &str = r#"#!/bin/sh
set -u
dir=$(dirname "$0")
id=$1; address=$2; version=$3
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^Z'; }
if [ -f "$dir/$id.pid" ]; then
    old=$(cat "$dir/$id.pid")
    kill "$old" 2>/dev/null || true
    i=0
    while alive "$old"; do
        i=$((i + 1)); [ "$i" -gt 200 ] && { echo "$id: process $old did not stop"; exit 1; }
        sleep 0.05
    done
fi
log="$dir/$id-$version.log"
nohup "@BLUEGREEN@" serve-target --version "$version" --listen "$address" >"$log" 2>&1 </dev/null &
echo $! >"$dir/$id.pid"
i=0
until grep -q "listening on" "$log" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -gt 200 ] && { echo "$id: $version does not listen"; cat "$log"; exit 1; }
    sleep 0.05
done
echo "$id now runs $version on $address"
"#;

/// Host processes started by `dir/update.sh` (pids in `dir/<id>.pid`), stopped when dropped.
pub(crate) struct Hosts {
    dir: PathBuf,
    ids: Vec<String>,
}

impl Hosts {
    /// Writes `dir/update.sh` and starts each `(id, address)` on v1.
    pub(crate) fn start(dir: &Path, hosts: &[(String, String)]) -> Self {
        std::fs::write(dir.join("update.sh"), UPDATE_SH.replace("@BLUEGREEN@", BLUEGREEN)).expect("update.sh");
        let started = Self { dir: dir.to_owned(), ids: hosts.iter().map(|(id, _)| id.clone()).collect() };
        for (id, address) in hosts {
            let out = Command::new("sh").arg(dir.join("update.sh")).args([id, address, "v1"]).output().expect("sh");
            assert!(out.status.success(), "starting {id}: {}", String::from_utf8_lossy(&out.stdout));
        }
        started
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Only the hosts' pid files (the updater script's): a server under test may keep its
        // own in the directory too.
        for id in &self.ids {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(format!("{id}.pid"))) {
                let _ = Command::new("kill").arg("-TERM").arg(pid.trim()).stderr(Stdio::null()).status();
            }
        }
    }
}
