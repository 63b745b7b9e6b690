//! Host fleets: a fixed inventory of hosts, updated in place by an [`Updater`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use bluegreen_core::{Error, Fleet, FleetCapabilities, PoolName, ProvisionRequest, Result, Target, TargetId, Version};

mod config;
mod updater;

pub use config::{HostEntry, HostFleetConfig};
pub use updater::Updater;

/// Targets are a fixed inventory of hosts (VMs, machines, long-lived processes), each updated
/// in place by an [`Updater`]. With rolling in-place deploys the executor drains a host in
/// the router, runs the updater, gates it on the health probe and puts it back. With hosts in
/// two standing pools ([`with_standing_pools`](HostFleet::with_standing_pools)), blue-green,
/// canary and linear update the idle pool's hosts in place and switch traffic to them; the
/// old pool stays warm on the old version.
///
/// # Guarantees
/// - [`update`](Fleet::update) of a host already on the version returns at once, without
///   running the updater; otherwise it runs the updater and records the new version only when
///   the updater succeeded.
/// - [`list`](Fleet::list) returns the inventory's hosts not retired, with the versions the
///   updater last installed successfully, or the recorded deployments left them on
///   ([`learn_versions`](Fleet::learn_versions)), or else the inventory's.
/// - Updates of different hosts run concurrently; the inventory is never locked across an
///   update.
///
/// # Assumptions
/// - The updater is the only thing that changes a host's version (there is no way to ask a
///   host what it runs: the inventory gives the first versions, the state store's deployments
///   the later ones). The executor's health gate, not the
///   fleet, verifies that the new version serves.
/// - The executor drained the host before [`update`](Fleet::update) (the updater may restart
///   the service).
///
/// # Errors
/// - [`provision`](Fleet::provision): [`Error::Invalid`] — a fixed inventory cannot create
///   hosts (the executor never asks: it plans standing pools or rolling in place instead).
/// - [`retire`](Fleet::retire) marks hosts as out of the inventory (they leave
///   [`list`](Fleet::list)); it does not stop or delete machines. Unknown ids are ignored;
///   [`HostFleet::readmit`] brings a host back.
/// - [`update`](Fleet::update): [`Error::NotFound`] for an unknown or retired host; the
///   updater's errors (see [`Updater::run`]), which name the host and end with its output tail.
pub struct HostFleet {
    name: String,
    hosts: Mutex<BTreeMap<TargetId, Host>>,
    updater: Updater,
}

struct Host {
    target: Target,
    pool: Option<PoolName>,
    retired: bool,
    last_output: Option<String>,
}

impl fmt::Debug for HostFleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFleet")
            .field("name", &self.name)
            .field("hosts", &self.lock().len())
            .field("updater", &self.updater)
            .finish()
    }
}

impl HostFleet {
    /// A fleet of `hosts` (their ids, addresses, zones and current versions), updated by
    /// `updater`. Tags on the hosts are dropped.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty inventory or a duplicate host id.
    pub fn new(hosts: impl IntoIterator<Item = Target>, updater: Updater) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (i, mut target) in hosts.into_iter().enumerate() {
            target.tag = None;
            if map.contains_key(&target.id) {
                return Err(Error::invalid(format!("hosts[{i}].id"), format!("host {} is listed twice", target.id)));
            }
            map.insert(target.id.clone(), Host { target, pool: None, retired: false, last_output: None });
        }
        if map.is_empty() {
            return Err(Error::invalid("hosts", "the inventory is empty"));
        }
        Ok(Self { name: "hosts".to_owned(), hosts: Mutex::new(map), updater })
    }

    /// Renames the fleet for events and errors (default `hosts`).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Puts hosts into standing pools (host id → pool): blue-green, canary and linear then
    /// run between the pools, updating the idle one's hosts in place. Hosts left out stand in
    /// no pool (the router's membership alone decides).
    ///
    /// # Errors
    /// [`Error::NotFound`] for a host that is not in the inventory.
    pub fn with_standing_pools(self, pools: impl IntoIterator<Item = (TargetId, PoolName)>) -> Result<Self> {
        {
            let mut hosts = self.lock();
            for (id, pool) in pools {
                let host = hosts.get_mut(&id).ok_or_else(|| Error::not_found(format!("host {id} in the inventory")))?;
                host.pool = Some(pool);
            }
        }
        Ok(self)
    }

    /// The output tail of the last update of `host` (successful or not), if one ran.
    pub fn last_output(&self, host: &TargetId) -> Option<String> {
        self.lock().get(host).and_then(|h| h.last_output.clone())
    }

    /// Puts a retired host back into the inventory.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a host that was never in the inventory.
    pub fn readmit(&self, host: &TargetId) -> Result<()> {
        let mut hosts = self.lock();
        let entry = hosts.get_mut(host).ok_or_else(|| Error::not_found(format!("host {host}")))?;
        entry.retired = false;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TargetId, Host>> {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Fleet for HostFleet {
    fn name(&self) -> &str {
        &self.name
    }

    /// A fixed inventory: updated in place, never provisioned; what a host runs is known from
    /// the inventory and the recorded deployments, not read from the host.
    fn capabilities(&self) -> FleetCapabilities {
        FleetCapabilities::all().with_provisions(false).with_reads_versions(false)
    }

    fn standing_pools(&self) -> BTreeMap<TargetId, PoolName> {
        self.lock().iter().filter_map(|(id, h)| Some((id.clone(), h.pool.clone()?))).collect()
    }

    fn learn_versions(&self, recorded: &BTreeMap<TargetId, Version>) {
        let mut hosts = self.lock();
        for (id, version) in recorded {
            if let Some(host) = hosts.get_mut(id) {
                host.target.version = version.clone();
            }
        }
    }

    async fn provision(&self, request: &ProvisionRequest) -> Result<Vec<Target>> {
        if request.count == 0 {
            return Ok(Vec::new());
        }
        Err(Error::invalid(
            "strategy",
            format!(
                "fleet {} is a fixed inventory of {} hosts and cannot create hosts (asked for {} of {}); \
                 use a rolling deploy in place, or a fleet that can provision for blue-green, canary and \
                 rolling replace",
                self.name,
                self.lock().len(),
                request.count,
                request.version
            ),
        ))
    }

    async fn update(&self, target: &TargetId, version: &Version) -> Result<Target> {
        let host = {
            let hosts = self.lock();
            match hosts.get(target) {
                Some(h) if !h.retired => h.target.clone(),
                _ => return Err(Error::not_found(format!("host {target} in fleet {}", self.name))),
            }
        };
        if host.version == *version {
            return Ok(host);
        }
        let result = self.updater.run(&host, version).await;
        let mut hosts = self.lock();
        let entry = hosts.get_mut(target).ok_or_else(|| Error::not_found(format!("host {target}")))?;
        match result {
            Ok(output) => {
                if !output.is_empty() {
                    tracing::info!(host = %target, %version, output = output.as_str(), "updater output");
                }
                entry.last_output = Some(output);
                entry.target.version = version.clone();
                Ok(entry.target.clone())
            }
            Err(e) => {
                entry.last_output = Some(e.to_string());
                Err(e)
            }
        }
    }

    async fn retire(&self, targets: &[TargetId]) -> Result<()> {
        let mut hosts = self.lock();
        for id in targets {
            if let Some(host) = hosts.get_mut(id) {
                host.retired = true;
            }
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Target>> {
        Ok(self.lock().values().filter(|h| !h.retired).map(|h| h.target.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn host(id: &str, address: &str) -> Target {
        Target { id: id.into(), address: address.into(), zone: None, version: "v1".into(), tag: None }
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_output_tail() {
        let updater = Updater::command("echo deploying {version} to {id}; for i in $(seq 1 30); do echo line $i; done; echo 'disk full' >&2; exit 3");
        let fleet = HostFleet::new([host("web-1", "127.0.0.1:1")], updater).unwrap();
        let err = fleet.update(&"web-1".into(), &"v2".into()).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Backend { retryable: false, .. }), "{text}");
        assert!(text.contains("host web-1") && text.contains("exit status 3") && text.contains("disk full"), "{text}");
        assert!(text.contains("line 30") && !text.contains("line 5\n"), "only the tail is kept: {text}");
        assert_eq!(fleet.list().await.unwrap()[0].version, "v1".into(), "a failed update keeps the old version");
        assert!(fleet.last_output(&"web-1".into()).unwrap().contains("disk full"));
    }

    #[tokio::test]
    async fn a_successful_command_updates_and_same_version_does_not_run() {
        let marker = std::env::temp_dir().join(format!("bluegreen-hostfleet-{}", std::process::id()));
        let updater =
            Updater::command(format!("echo \"$BLUEGREEN_HOST_ID $BLUEGREEN_VERSION\" >> {}", marker.display()));
        let fleet = HostFleet::new([host("web-1", "127.0.0.1:1")], updater).unwrap();
        let updated = fleet.update(&"web-1".into(), &"v2".into()).await.unwrap();
        assert_eq!(updated.version, "v2".into());
        fleet.update(&"web-1".into(), &"v2".into()).await.unwrap();
        let runs = std::fs::read_to_string(&marker).unwrap();
        let _ = std::fs::remove_file(&marker);
        assert_eq!(runs, "web-1 v2\n", "the second update to the same version must not run");
    }

    #[tokio::test]
    async fn timeouts_kill_the_command() {
        let updater = Updater::command("echo started; sleep 30").with_timeout(Duration::from_millis(300));
        let fleet = HostFleet::new([host("web-1", "127.0.0.1:1")], updater).unwrap();
        let started = std::time::Instant::now();
        let err = fleet.update(&"web-1".into(), &"v2".into()).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(err, Error::Timeout { .. }) && err.to_string().contains("started"), "{err}");
    }

    #[tokio::test]
    async fn a_cancelled_update_kills_the_whole_command() {
        let marker = std::env::temp_dir().join(format!("bluegreen-hostfleet-cancel-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        // A child of the shell that would write the marker after 600 ms.
        let updater = Updater::command(format!("(sleep 0.6; touch {}) & wait", marker.display()));
        let fleet = HostFleet::new([host("web-1", "127.0.0.1:1")], updater).unwrap();
        let (id, version) = (TargetId::from("web-1"), Version::from("v2"));
        let update = fleet.update(&id, &version);
        assert!(tokio::time::timeout(Duration::from_millis(200), update).await.is_err());
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(!marker.exists(), "the command's child outlived the cancelled update");
        assert_eq!(fleet.list().await.unwrap()[0].version, "v1".into());
    }

    #[tokio::test]
    async fn fixed_inventory_cannot_provision_and_retire_marks_out() {
        let updater = Updater::from_fn(|_, _| async { Ok(String::new()) });
        let fleet = HostFleet::new([host("a", "127.0.0.1:1"), host("b", "127.0.0.1:2")], updater).unwrap();
        let request = ProvisionRequest { version: "v2".into(), count: 2, zones: vec![], tag: "t".into() };
        let err = fleet.provision(&request).await.unwrap_err();
        assert!(err.to_string().contains("cannot create hosts"), "{err}");
        fleet.retire(&["a".into(), "nope".into()]).await.unwrap();
        assert_eq!(fleet.list().await.unwrap().len(), 1);
        assert!(matches!(fleet.update(&"a".into(), &"v2".into()).await, Err(Error::NotFound { .. })));
        fleet.readmit(&"a".into()).unwrap();
        assert_eq!(fleet.list().await.unwrap().len(), 2);
        assert!(HostFleet::new([host("a", "x"), host("a", "y")], Updater::command("true")).is_err());
    }
}
