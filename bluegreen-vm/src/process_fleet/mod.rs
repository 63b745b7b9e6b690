//! [`LocalProcessFleet`]: targets are real local server processes of a version.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bluegreen_core::{Error, Fleet, ProvisionRequest, Result, Target, TargetId, Version};
use futures::future::join_all;
use tokio::process::Child;

mod process;

use process::{stop, Process, Program, NAME};

/// The stand-in application server's binary name.
pub const TARGET_BINARY: &str = "bluegreen-target";

/// Environment variable naming the target binary, checked first by
/// [`LocalProcessFleet::find_target_binary`].
pub const TARGET_BINARY_ENV: &str = "BLUEGREEN_TARGET_BIN";

/// Targets are real local processes of the `bluegreen-target` binary (or any server that
/// takes the same arguments), one per target, each on its own loopback port.
///
/// - [`provision`](Fleet::provision) starts processes on free ports
///   (`--version V --listen 127.0.0.1:0`), reads the `listening on ADDR` line each prints, and
///   tags them; ids are `web-01`, `web-02`, … and zones are given round-robin from the
///   request's zones (or the builder's).
/// - [`update`](Fleet::update) sends the process SIGTERM (it stops accepting and finishes its
///   in-flight requests), waits for it to exit, and starts the new version **on the same
///   port**, so the router's membership stays valid.
/// - [`retire`](Fleet::retire) sends SIGTERM, waits up to the stop timeout, then SIGKILL.
/// - Per version, the arguments can be overridden ([`version_args`](LocalProcessFleetBuilder::version_args),
///   [`set_version_args`](Self::set_version_args)): `--fail-health` or `--error-rate 0.5` make
///   a broken release, `--startup-ms 500` a slow one.
///
/// Clones share one fleet. Every process is killed (SIGKILL) when the last clone is dropped;
/// [`shutdown`](Self::shutdown) stops them gracefully first.
///
/// ```no_run
/// # async fn example() -> bluegreen_core::Result<()> {
/// use bluegreen_vm::LocalProcessFleet;
/// let (fleet, targets) = LocalProcessFleet::builder().zones(["a", "b"]).start("v1", 10).await?;
/// assert_eq!(targets[0].id.as_str(), "web-01");
/// # Ok(()) }
/// ```
///
/// # Guarantees (beyond the [`Fleet`] trait's)
/// - A target keeps its id and address for life; only its process and version change.
/// - Operations on different targets run concurrently; two on one target run one after the
///   other.
/// - [`list`](Fleet::list) includes a target whose process died on its own (it is still the
///   fleet's; a health probe finds it down). Updating such a target to its own version starts
///   it again.
///
/// # Assumptions
/// - The binary takes `--version V --listen ADDR` plus the configured arguments, prints
///   `listening on ADDR` once bound, and drains itself on SIGTERM (as `bluegreen-target` does).
/// - The executor drains a target in the router before updating or retiring it.
///
/// # Errors
/// - [`Error::NotFound`] for an unknown target in `update` (and from the builder when the
///   binary cannot be found).
/// - [`Error::Invalid`] for an empty version, or one with whitespace or a leading `-`.
/// - [`Error::Backend`] when a process cannot be started or does not report listening within
///   the ready timeout, with its stderr; retryable when the port was taken meanwhile.
#[derive(Clone)]
pub struct LocalProcessFleet {
    inner: Arc<Inner>,
}

struct Inner {
    program: Program,
    id_prefix: String,
    zones: Vec<String>,
    args: Vec<String>,
    version_args: Mutex<HashMap<Version, Vec<String>>>,
    stop_timeout: Duration,
    next_id: AtomicU64,
    targets: Mutex<BTreeMap<TargetId, Entry>>,
    /// Serializes provisioning, so two concurrent calls with one tag do not both start targets.
    provisioning: tokio::sync::Mutex<()>,
}

struct Entry {
    target: Target,
    port: u16,
    process: Arc<tokio::sync::Mutex<Process>>,
}

impl fmt::Debug for LocalProcessFleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProcessFleet")
            .field("binary", &self.inner.program.binary)
            .field("targets", &self.inner.targets().len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`LocalProcessFleet`]; see [`LocalProcessFleet::builder`].
#[derive(Debug, Clone)]
pub struct LocalProcessFleetBuilder {
    binary: Option<PathBuf>,
    leading_args: Vec<String>,
    host: IpAddr,
    id_prefix: String,
    zones: Vec<String>,
    args: Vec<String>,
    version_args: HashMap<Version, Vec<String>>,
    ready_timeout: Duration,
    stop_timeout: Duration,
}

impl LocalProcessFleetBuilder {
    /// The server binary (default: [`LocalProcessFleet::find_target_binary`]).
    #[must_use]
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Arguments placed before `--version …`: a subcommand, for a binary that serves targets
    /// through one (`bluegreen serve-target` runs [`crate::target::serve`]).
    #[must_use]
    pub fn leading_args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.leading_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// The address processes listen on (`127.0.0.1` by default).
    #[must_use]
    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    /// Target ids are `{prefix}-01`, `{prefix}-02`, … (`web` by default).
    #[must_use]
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefix = prefix.into();
        self
    }

    /// Zones given round-robin to targets started by [`start`](Self::start),
    /// [`LocalProcessFleet::launch`], and provision requests that name none.
    #[must_use]
    pub fn zones(mut self, zones: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.zones = zones.into_iter().map(Into::into).collect();
        self
    }

    /// Extra arguments for every process (after `--version V --listen ADDR`), unless its
    /// version has its own.
    #[must_use]
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Extra arguments for processes of `version`, instead of the common ones
    /// (`["--fail-health"]`, `["--error-rate", "0.5"]`, `["--startup-ms", "500"]`).
    #[must_use]
    pub fn version_args(
        mut self,
        version: impl Into<Version>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.version_args.insert(version.into(), args.into_iter().map(Into::into).collect());
        self
    }

    /// How long a new process may take to print `listening on` (10 s by default).
    #[must_use]
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// How long a process may take to exit after SIGTERM before it is killed (10 s by default).
    #[must_use]
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// The fleet, with no process yet.
    ///
    /// # Errors
    /// [`Error::NotFound`] when no binary was given and none is found, or the given path is
    /// not a file.
    pub fn build(self) -> Result<LocalProcessFleet> {
        let binary = match self.binary {
            Some(path) if path.is_file() => path,
            Some(path) => return Err(Error::not_found(format!("server binary {}", path.display()))),
            None => LocalProcessFleet::find_target_binary()?,
        };
        Ok(LocalProcessFleet {
            inner: Arc::new(Inner {
                program: Program {
                    binary,
                    leading_args: self.leading_args,
                    host: self.host,
                    ready_timeout: self.ready_timeout,
                },
                id_prefix: self.id_prefix,
                zones: self.zones,
                args: self.args,
                version_args: Mutex::new(self.version_args),
                stop_timeout: self.stop_timeout,
                next_id: AtomicU64::new(1),
                targets: Mutex::new(BTreeMap::new()),
                provisioning: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Builds the fleet and starts `count` untagged targets of `version` (the set-up before a
    /// deploy), returning them in id order.
    ///
    /// # Errors
    /// As [`build`](Self::build) and [`LocalProcessFleet::launch`].
    pub async fn start(self, version: impl Into<Version>, count: usize) -> Result<(LocalProcessFleet, Vec<Target>)> {
        let fleet = self.build()?;
        let targets = fleet.launch(&version.into(), count).await?;
        Ok((fleet, targets))
    }
}

impl LocalProcessFleet {
    /// A builder with defaults: the binary found by [`find_target_binary`](Self::find_target_binary),
    /// `127.0.0.1`, ids `web-NN`, no zones, no extra arguments, 10 s ready and stop timeouts.
    pub fn builder() -> LocalProcessFleetBuilder {
        LocalProcessFleetBuilder {
            binary: None,
            leading_args: Vec::new(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            id_prefix: "web".to_owned(),
            zones: Vec::new(),
            args: Vec::new(),
            version_args: HashMap::new(),
            ready_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(10),
        }
    }

    /// Finds the `bluegreen-target` binary, in this order: the path in `BLUEGREEN_TARGET_BIN`
    /// if set; next to the current executable; in its parent directory (cargo puts test and
    /// example executables in `target/<profile>/deps` and `…/examples`, binaries one up); in
    /// `$CARGO_TARGET_DIR/debug` and `…/release`; on `PATH`.
    ///
    /// # Errors
    /// [`Error::NotFound`] naming the places looked in (build it with
    /// `cargo build -p bluegreen-vm --bin bluegreen-target`).
    pub fn find_target_binary() -> Result<PathBuf> {
        if let Some(path) = std::env::var_os(TARGET_BINARY_ENV) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(Error::not_found(format!("{TARGET_BINARY} at {} (from {TARGET_BINARY_ENV})", path.display())))
            };
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(exe_dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
            dirs.extend(exe_dir.ancestors().take(2).map(Path::to_path_buf));
        }
        if let Some(target_dir) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
            dirs.push(target_dir.join("debug"));
            dirs.push(target_dir.join("release"));
        }
        let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        dirs.extend(std::env::var_os("PATH").iter().flat_map(std::env::split_paths));
        if let Some(found) = dirs.iter().map(|dir| dir.join(TARGET_BINARY)).find(|path| path.is_file()) {
            return Ok(found);
        }
        Err(Error::not_found(format!(
            "{TARGET_BINARY} binary (looked in {} and on PATH; set {TARGET_BINARY_ENV} or run \
             `cargo build -p bluegreen-vm --bin {TARGET_BINARY}`)",
            looked.join(", ")
        )))
    }

    /// The server binary this fleet starts.
    pub fn binary(&self) -> &Path {
        &self.inner.program.binary
    }

    /// Sets the extra arguments for processes of `version` started from now on, instead of
    /// the common ones (an empty list runs it with no extra arguments).
    pub fn set_version_args(&self, version: impl Into<Version>, args: impl IntoIterator<Item = impl Into<String>>) {
        let args = args.into_iter().map(Into::into).collect();
        self.inner.version_args.lock().unwrap_or_else(PoisonError::into_inner).insert(version.into(), args);
    }

    /// Starts `count` more untagged targets of `version`, zones round-robin from the builder's,
    /// and returns them in id order.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad version; [`Error::Backend`] when a process does not start
    /// (the ones that did start stay in the fleet).
    pub async fn launch(&self, version: &Version, count: usize) -> Result<Vec<Target>> {
        check_version(version)?;
        let zones = self.inner.zones.clone();
        let started = join_all((0..count).map(|i| self.inner.start_new(version, zone_for(&zones, i), None))).await;
        started.into_iter().collect()
    }

    /// The process id of a target's process, if it runs.
    pub async fn pid(&self, target: &TargetId) -> Option<u32> {
        let process = self.inner.targets().get(target).map(|e| e.process.clone())?;
        let mut process = process.lock().await;
        process.running().then(|| process.pid()).flatten()
    }

    /// Kills a target's process with SIGKILL and leaves the target in the fleet, as a crash
    /// would (for failure tests and demos).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown target.
    pub async fn kill(&self, target: &TargetId) -> Result<()> {
        let process = self.inner.process(target)?;
        let mut process = process.lock().await;
        if let Some(child) = process.child.as_mut() {
            let _ = child.kill().await;
        }
        Ok(())
    }

    /// Stops every process gracefully (as [`retire`](Fleet::retire)) and empties the fleet.
    pub async fn shutdown(&self) {
        let ids: Vec<TargetId> = self.inner.targets().keys().cloned().collect();
        let _ = self.retire(&ids).await;
    }
}

#[async_trait]
impl Fleet for LocalProcessFleet {
    fn name(&self) -> &str {
        NAME
    }

    /// Starts the missing processes concurrently. When some fail to start, the ones that
    /// started are kept with the tag (a re-run starts only the rest) and the first error is
    /// returned.
    async fn provision(&self, request: &ProvisionRequest) -> Result<Vec<Target>> {
        check_version(&request.version)?;
        let _one_at_a_time = self.inner.provisioning.lock().await;
        let have = self.inner.tagged(&request.tag).len();
        let zones = if request.zones.is_empty() { &self.inner.zones } else { &request.zones };
        let started = join_all(
            (have..request.count)
                .map(|i| self.inner.start_new(&request.version, zone_for(zones, i), Some(request.tag.clone()))),
        )
        .await;
        if let Some(error) = started.into_iter().find_map(Result::err) {
            return Err(error);
        }
        Ok(self.inner.tagged(&request.tag))
    }

    /// Drains the old process with SIGTERM, waits for it to exit (SIGKILL after the stop
    /// timeout), and starts `version` on the same port, retrying for a few seconds if the port
    /// is briefly taken. A target already running `version` is left alone.
    async fn update(&self, target: &TargetId, version: &Version) -> Result<Target> {
        check_version(version)?;
        let process = self.inner.process(target)?;
        let mut process = process.lock().await;
        let (current, port) = {
            let targets = self.inner.targets();
            let entry = targets.get(target).ok_or_else(|| Error::not_found(format!("target {target}")))?;
            (entry.target.clone(), entry.port)
        };
        if current.version == *version && process.running() {
            return Ok(current);
        }
        if let Some(mut child) = process.child.take() {
            stop(&mut child, self.inner.stop_timeout).await;
        }
        let child = self.inner.spawn_on_port(target, version, port).await?;
        process.child = Some(child);
        let mut targets = self.inner.targets();
        let entry = targets.get_mut(target).ok_or_else(|| Error::not_found(format!("target {target}")))?;
        entry.target.version = version.clone();
        tracing::debug!(%target, from = %current.version, to = %version, port, "local fleet: updated");
        Ok(entry.target.clone())
    }

    /// Stops the targets concurrently; targets not in the fleet are ignored.
    async fn retire(&self, targets: &[TargetId]) -> Result<()> {
        join_all(targets.iter().map(|id| self.inner.retire_one(id))).await;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Target>> {
        Ok(self.inner.targets().values().map(|e| e.target.clone()).collect())
    }
}

impl Inner {
    fn targets(&self) -> MutexGuard<'_, BTreeMap<TargetId, Entry>> {
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn process(&self, id: &TargetId) -> Result<Arc<tokio::sync::Mutex<Process>>> {
        self.targets().get(id).map(|e| e.process.clone()).ok_or_else(|| Error::not_found(format!("target {id}")))
    }

    fn tagged(&self, tag: &str) -> Vec<Target> {
        self.targets().values().filter(|e| e.target.tag.as_deref() == Some(tag)).map(|e| e.target.clone()).collect()
    }

    fn args_for(&self, version: &Version) -> Vec<String> {
        let overrides = self.version_args.lock().unwrap_or_else(PoisonError::into_inner);
        overrides.get(version).cloned().unwrap_or_else(|| self.args.clone())
    }

    /// Starts a new target on a free port.
    async fn start_new(&self, version: &Version, zone: Option<String>, tag: Option<String>) -> Result<Target> {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let id = TargetId::from(format!("{}-{n:02}", self.id_prefix));
        let (child, address) = self.program.spawn(&id, version, 0, self.args_for(version)).await?;
        let target = Target { id: id.clone(), address: address.to_string(), zone, version: version.clone(), tag };
        let entry = Entry {
            target: target.clone(),
            port: address.port(),
            process: Arc::new(tokio::sync::Mutex::new(Process { child: Some(child) })),
        };
        self.targets().insert(id, entry);
        tracing::debug!(target = %target.id, %address, %version, "local fleet: started");
        Ok(target)
    }

    /// Starts `version` on `port`, again and again for a few seconds while the port is taken
    /// (another socket may hold it for a moment after the old process exits).
    async fn spawn_on_port(&self, id: &TargetId, version: &Version, port: u16) -> Result<Child> {
        let mut backoff = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        loop {
            match self.program.spawn(id, version, port, self.args_for(version)).await {
                Ok((child, _)) => return Ok(child),
                Err(error) if error.is_retryable() && waited < Duration::from_secs(5) => {
                    tracing::debug!(%id, port, %error, "local fleet: port busy, trying again");
                    tokio::time::sleep(backoff).await;
                    waited += backoff;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn retire_one(&self, id: &TargetId) {
        let Ok(process) = self.process(id) else { return };
        let mut process = process.lock().await;
        if let Some(mut child) = process.child.take() {
            stop(&mut child, self.stop_timeout).await;
        }
        self.targets().remove(id);
        tracing::debug!(target = %id, "local fleet: retired");
    }
}

fn zone_for(zones: &[String], i: usize) -> Option<String> {
    (!zones.is_empty()).then(|| zones[i % zones.len()].clone())
}

fn check_version(version: &Version) -> Result<()> {
    let v = version.as_str();
    if v.is_empty() || v.starts_with('-') || v.chars().any(char::is_whitespace) {
        return Err(Error::invalid("version", format!("{v:?} cannot be passed as --version")));
    }
    Ok(())
}
