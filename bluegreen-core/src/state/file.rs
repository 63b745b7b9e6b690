//! The file state store: a directory per service, readable JSON, atomic fsynced writes.
//!
//! ```text
//! ROOT/
//!   SERVICE/
//!     lock.json                 the lease, its fence, the queue
//!     .guard                    flock(2)-ed around every read-modify-write of the service
//!     deployments/ID.json       one DeploymentRecord per deployment
//!     commands/ID.json          the commands sent to deployment ID
//!     events/ID.jsonl           deployment ID's events, one JSON object a line
//! ```
//!
//! Every write goes to a temporary file in the same directory (created exclusively, with a
//! random name, so a planted symlink is never followed), is fsynced, renamed over the old file
//! and the directory fsynced, so a crash leaves the old or the new file, never a mix.
//! Event logs are appended and fsynced instead; a last line cut short by a crash is ignored.
//! A file that cannot be read (empty, truncated, not JSON, a newer format) gives
//! [`Error::Corrupt`] naming it, and is never overwritten.
//!
//! The directories the store creates are 0700 and its files 0600 from the moment they exist
//! (whatever the umask): records and events can hold what a deploy was given. Directories that
//! exist already keep their modes; a root that others can read is reported by a warning.
//!
//! The I/O is synchronous: a few small files per step, under an advisory lock held for
//! microseconds.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::memory::LockState;
use super::{millis, system_clock, Clock, Command, CommandRecord, DeploymentRecord, Lease, StateStore, FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::private_files;

/// Keeps state in a directory tree of JSON files, shared by every process that opens it.
#[derive(Clone)]
pub struct FileStore {
    root: PathBuf,
    clock: Clock,
    /// Where each deployment seen so far lives, so that the running executor's command poll
    /// (once a second) does not scan every service directory.
    found: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("root", &self.root).finish_non_exhaustive()
    }
}

/// `lock.json` and `commands/ID.json` carry the format version around their content.
#[derive(Serialize, Deserialize)]
struct Versioned<T> {
    format_version: u32,
    #[serde(flatten)]
    content: T,
}

#[derive(Serialize, Deserialize, Default)]
struct CommandLog {
    commands: Vec<CommandRecord>,
}

impl FileStore {
    /// A store rooted at `root` (created if missing), on the system clock.
    ///
    /// # Errors
    /// [`Error::Backend`] if the directory cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with_clock(root, system_clock())
    }

    /// A store rooted at `root`, reading `clock` for lease times.
    ///
    /// # Errors
    /// [`Error::Backend`] if the directory cannot be created.
    pub fn open_with_clock(root: impl Into<PathBuf>, clock: Clock) -> Result<Self> {
        let root = root.into();
        private_files::create_dir_all(&root).map_err(|e| io_error(&root, "create", e))?;
        if let Ok(meta) = fs::metadata(&root) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    root = %root.display(),
                    mode = format!("{:o}", meta.permissions().mode() & 0o777),
                    "file store: the state directory can be read by other users (chmod 700 it)"
                );
            }
        }
        Ok(Self { root, clock, found: Default::default() })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn now(&self) -> u64 {
        millis(&self.clock)
    }

    fn service_dir(&self, service: &str) -> Result<PathBuf> {
        check_name("service", service)?;
        Ok(self.root.join(service))
    }

    /// Runs `f` holding the service's advisory lock (shared by all processes).
    fn guarded<T>(&self, service: &str, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        let dir = self.service_dir(service)?;
        for sub in ["deployments", "commands", "events"] {
            let sub = dir.join(sub);
            private_files::create_dir_all(&sub).map_err(|e| io_error(&sub, "create", e))?;
        }
        let guard_path = dir.join(".guard");
        let guard = private_files::open_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&guard_path)
            .map_err(|e| io_error(&guard_path, "open", e))?;
        guard.lock().map_err(|e| io_error(&guard_path, "lock", e))?;
        let result = f(&dir);
        let _ = guard.unlock();
        result
    }

    fn lock_state(dir: &Path) -> Result<LockState> {
        Ok(read_versioned::<LockState>(&dir.join("lock.json"))?.unwrap_or_default())
    }

    fn write_lock_state(dir: &Path, state: &LockState) -> Result<()> {
        write_json(&dir.join("lock.json"), &Versioned { format_version: FORMAT_VERSION, content: state })
    }

    /// The service directory holding deployment `id`.
    fn find(&self, id: &str) -> Result<PathBuf> {
        check_name("deployment id", id)?;
        let file = format!("{id}.json");
        let mut found = self.found.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(dir) = found.get(id).filter(|dir| dir.join("deployments").join(&file).exists()) {
            return Ok(dir.clone());
        }
        let entries = fs::read_dir(&self.root).map_err(|e| io_error(&self.root, "read", e))?;
        for entry in entries.flatten() {
            let dir = entry.path();
            if dir.join("deployments").join(&file).exists() {
                found.insert(id.to_owned(), dir.clone());
                return Ok(dir);
            }
        }
        Err(Error::not_found(format!("deployment {id} in {}", self.root.display())))
    }

    fn update_lock<T>(&self, service: &str, f: impl FnOnce(&mut LockState) -> Result<T>) -> Result<T> {
        self.guarded(service, |dir| {
            let mut state = Self::lock_state(dir)?;
            let out = f(&mut state)?;
            Self::write_lock_state(dir, &state)?;
            Ok(out)
        })
    }
}

#[async_trait]
impl StateStore for FileStore {
    async fn create(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
        check_name("deployment id", &record.id)?;
        self.guarded(&record.service, |dir| {
            Self::lock_state(dir)?.check(lease)?;
            let path = dir.join("deployments").join(format!("{}.json", record.id));
            if path.exists() {
                return Err(Error::conflict(format!("deployment {} exists already ({})", record.id, path.display())));
            }
            write_json(&path, record)
        })
    }

    async fn save(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
        check_name("deployment id", &record.id)?;
        self.guarded(&record.service, |dir| {
            Self::lock_state(dir)?.check(lease)?;
            let path = dir.join("deployments").join(format!("{}.json", record.id));
            // Refuse to overwrite what cannot be read: it may be someone's newer state.
            if read_record(&path)?.is_none() {
                return Err(Error::not_found(format!("deployment {} ({})", record.id, path.display())));
            }
            write_json(&path, record)
        })
    }

    async fn load(&self, id: &str) -> Result<DeploymentRecord> {
        let dir = self.find(id)?;
        let path = dir.join("deployments").join(format!("{id}.json"));
        read_record(&path)?.ok_or_else(|| Error::not_found(format!("deployment {id}")))
    }

    async fn history(&self, service: &str) -> Result<Vec<DeploymentRecord>> {
        let dir = self.service_dir(service)?.join("deployments");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir, "read", e)),
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "json") {
                records.extend(read_record(&path)?);
            }
        }
        records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(records)
    }

    async fn acquire(&self, service: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        let now = self.now();
        self.update_lock(service, |state| state.acquire(service, owner, ttl, now))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let now = self.now();
        self.update_lock(&lease.service, |state| state.renew(lease, ttl, now))
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.update_lock(&lease.service, |state| {
            state.release(lease);
            Ok(())
        })
    }

    async fn holder(&self, service: &str) -> Result<Option<Lease>> {
        let now = self.now();
        let dir = self.service_dir(service)?;
        Ok(Self::lock_state(&dir)?.holder(now))
    }

    async fn enqueue(&self, service: &str, id: &str, ttl: Duration) -> Result<Vec<String>> {
        let now = self.now();
        self.update_lock(service, |state| Ok(state.enqueue(id, ttl, now)))
    }

    async fn dequeue(&self, service: &str, id: &str) -> Result<()> {
        self.update_lock(service, |state| {
            state.dequeue(id);
            Ok(())
        })
    }

    async fn send(&self, id: &str, command: Command) -> Result<u64> {
        let dir = self.find(id)?;
        let service = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let now = self.now();
        self.guarded(&service, |dir| {
            let path = dir.join("commands").join(format!("{id}.json"));
            let mut log = read_versioned::<CommandLog>(&path)?.unwrap_or_default();
            let seq = log.commands.len() as u64 + 1;
            log.commands.push(CommandRecord { seq, command, sent_at: now });
            write_json(&path, &Versioned { format_version: FORMAT_VERSION, content: log })?;
            Ok(seq)
        })
    }

    async fn commands(&self, id: &str, after: u64) -> Result<Vec<CommandRecord>> {
        let dir = self.find(id)?;
        let path = dir.join("commands").join(format!("{id}.json"));
        let log = read_versioned::<CommandLog>(&path)?.unwrap_or_default();
        Ok(log.commands.into_iter().filter(|c| c.seq > after).collect())
    }

    async fn append_events(&self, id: &str, events: &[Event], lease: &Lease) -> Result<()> {
        check_name("deployment id", id)?;
        self.guarded(&lease.service, |dir| {
            Self::lock_state(dir)?.check(lease)?;
            let path = dir.join("events").join(format!("{id}.jsonl"));
            let mut lines = Vec::new();
            for event in events {
                serde_json::to_writer(&mut lines, event).map_err(|e| corrupt(&path, format!("cannot encode: {e}")))?;
                lines.push(b'\n');
            }
            let mut file = private_files::open_options()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)
                .map_err(|e| io_error(&path, "open", e))?;
            // A line cut short by a crash (or a full disk) is dropped first, so the next one
            // does not glue onto it.
            let len = file.metadata().map_err(|e| io_error(&path, "read", e))?.len();
            let whole = complete_len(&file, len).map_err(|e| io_error(&path, "read", e))?;
            if whole < len {
                file.set_len(whole).map_err(|e| io_error(&path, "truncate", e))?;
            }
            file.write_all(&lines).map_err(|e| io_error(&path, "append to", e))?;
            file.sync_data().map_err(|e| io_error(&path, "fsync", e))
        })
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        let path = self.find(id)?.join("events").join(format!("{id}.jsonl"));
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&path, "read", e)),
        };
        let mut log = std::collections::BTreeMap::new();
        // Only whole lines count: a crash in the middle of an append leaves the last one short.
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for (i, line) in bytes[..whole].split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: Event =
                serde_json::from_slice(line).map_err(|e| corrupt(&path, format!("line {}: {e}", i + 1)))?;
            log.insert(event.seq, event);
        }
        Ok(log.into_values().collect())
    }
}

/// The length of `file` (`len` bytes) up to and with its last newline: `len` when it ends with
/// one (the usual case, one byte read), else where its last whole line ends.
fn complete_len(file: &File, len: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8];
    if len == 0 || (file.read_exact_at(&mut last, len - 1).is_ok() && last[0] == b'\n') {
        return Ok(len);
    }
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i as u64 + 1))
}

/// Names become path components: refuse anything that could leave the directory.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(what, format!("{name:?} cannot name a file: use letters, digits and - _ . @ +")))
    }
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    let retryable = matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock);
    Error::Backend {
        backend: "file store".to_owned(),
        message: format!("cannot {what} {}: {e}", path.display()),
        retryable,
        source: Some(Box::new(e)),
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::Corrupt { path: path.display().to_string(), reason: reason.into() }
}

/// Reads and checks a JSON file: `None` if it does not exist.
fn read_checked(path: &Path) -> Result<Option<serde_json::Value>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, "read", e)),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt(path, "the file is empty"));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(path, format!("not valid JSON (truncated?): {e}")))?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| corrupt(path, "no format_version field"))?;
    if version > u64::from(FORMAT_VERSION) {
        return Err(corrupt(
            path,
            format!("written by a newer bluegreen (format {version}; this build reads up to {FORMAT_VERSION})"),
        ));
    }
    Ok(Some(value))
}

fn parse<T: DeserializeOwned>(path: &Path, value: serde_json::Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| corrupt(path, format!("at {}: {}", e.path(), e.inner())))
}

fn read_record(path: &Path) -> Result<Option<DeploymentRecord>> {
    read_checked(path)?.map(|v| parse(path, v)).transpose()
}

fn read_versioned<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    Ok(read_checked(path)?.map(|v| parse::<Versioned<T>>(path, v)).transpose()?.map(|v| v.content))
}

/// Writes `value` as pretty JSON: a new private temporary file, fsync, rename, fsync the
/// directory (see [`private_files::replace`]).
fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(value).map_err(|e| corrupt(path, format!("cannot encode: {e}")))?;
    json.push(b'\n');
    private_files::replace(path, &json, true).map_err(|e| io_error(path, e.step, e.error))
}
