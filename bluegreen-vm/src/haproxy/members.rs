//! Membership: servers added (`add server`) or re-enabled for targets, removed (`del server`),
//! and listed with their states and sessions.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use bluegreen_core::{Error, Member, MemberState, PoolName, Result, Target, TargetId};
use tokio::time::Instant;

use super::error::HaproxyError;
use super::router::{valid_name, Admin, HaproxyRouter};
use super::state::{ServerStat, ServerState};

impl HaproxyRouter {
    /// [`Router::add_targets`](bluegreen_core::Router::add_targets).
    pub(super) async fn add_members(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.check_pool(pool)?;
        let wanted_addresses = self.wanted_addresses(pool, targets)?;
        let _writes = self.inner.writes.lock().await;
        let servers = self.servers().await?;
        let current = self.served_split(&servers)?;
        // Check everything before the first write.
        let Membership { to_create, to_move, to_enable } =
            self.membership(&self.inner.backend, &servers, &wanted_addresses)?;
        let command_prefix = if to_create.is_empty() { "" } else { self.dynamic_servers("add server").await? };
        let change: BTreeMap<String, Admin> = to_create
            .iter()
            .map(|(n, _)| n.clone())
            .chain(to_enable.iter().cloned())
            .map(|n| (n, Admin::Ready))
            .collect();
        let ready = self.ready_after(&servers, &change);
        let wanted = self.wanted_after(current, &ready, pool);
        let desired = self.weights_for(&ready, &wanted)?;
        let expected = self.expected_split(&ready, &desired);

        // Writes: new servers (in maintenance), weights of the servers entering service,
        // raised weights, servers entering service, lowered weights.
        for (name, address) in &to_create {
            let weight = desired.get(name).copied().unwrap_or(0);
            self.create_server(command_prefix, &self.inner.backend, name, *address, weight).await?;
        }
        for (name, address) in &to_move {
            self.move_server(&self.inner.backend, name, *address).await?;
        }
        let entering: BTreeSet<String> = change.keys().cloned().collect();
        for name in &to_enable {
            let weight = desired.get(name).copied().unwrap_or(0);
            if servers.iter().find(|s| s.name == *name).is_some_and(|s| s.uweight != weight) {
                self.set_weight(name, weight).await?;
            }
        }
        let (up, down) = Self::weight_changes(&servers, &desired, &entering);
        for (name, weight) in up {
            self.set_weight(&name, weight).await?;
        }
        for name in to_create.iter().map(|(n, _)| n).chain(&to_enable) {
            self.set_state(name, Admin::Ready).await?;
        }
        for (name, weight) in down {
            self.set_weight(&name, weight).await?;
        }
        let names: Vec<(String, Option<Admin>)> =
            wanted_addresses.iter().map(|(n, _)| (n.clone(), Some(Admin::Ready))).collect();
        let servers = self.verify(&names, expected.as_ref()).await?;
        for (name, address) in &wanted_addresses {
            let observed = servers.iter().find(|s| s.name == *name).map(ServerState::address).unwrap_or_default();
            if observed.parse::<SocketAddr>().ok() != Some(*address) {
                return Err(Error::ReadBackMismatch {
                    what: format!("address of server {}", self.server_ref(name)),
                    expected: address.to_string(),
                    observed,
                });
            }
        }
        Ok(())
    }

    /// [`Router::remove_targets`](bluegreen_core::Router::remove_targets).
    pub(super) async fn remove_members(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.check_pool(pool)?;
        let _writes = self.inner.writes.lock().await;
        let servers = self.servers().await?;
        let present = self.present(pool, targets, &servers);
        if present.is_empty() {
            return Ok(());
        }
        let prefix = self.dynamic_servers("del server").await?;
        let leaving: Vec<&ServerState> = present.iter().copied().filter(|s| s.ready()).collect();
        let mut expected = None;
        if !leaving.is_empty() {
            let current = self.served_split(&servers)?;
            let change: BTreeMap<String, Admin> = leaving.iter().map(|s| (s.name.clone(), Admin::Maint)).collect();
            let ready = self.ready_after(&servers, &change);
            if let Some(current) = current {
                let desired = self.weights_for(&ready, &current)?;
                let (up, _) = Self::weight_changes(&servers, &desired, &BTreeSet::new());
                for (name, weight) in up {
                    self.set_weight(&name, weight).await?;
                }
                expected = self.expected_split(&ready, &desired);
            }
        }
        for server in present.iter().filter(|s| !s.in_maintenance()) {
            self.set_state(&server.name, Admin::Maint).await?;
        }
        for server in &present {
            self.delete_server(prefix, &self.inner.backend, &server.name).await?;
        }
        let names: Vec<(String, Option<Admin>)> = present.iter().map(|s| (s.name.clone(), None)).collect();
        self.verify(&names, expected.as_ref()).await?;
        Ok(())
    }

    /// [`Router::members`](bluegreen_core::Router::members).
    pub(super) async fn list_members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.check_pool(pool)?;
        let servers = self.servers().await?;
        let stats = self.stats().await?;
        Ok(servers
            .iter()
            .filter_map(|s| {
                let (owner, id) = self.owner(&s.name)?;
                (owner == pool).then(|| {
                    let state = match Admin::of(s) {
                        Admin::Maint => MemberState::Disabled,
                        Admin::Drain => MemberState::Draining,
                        Admin::Ready => MemberState::Serving,
                    };
                    let in_flight = stats.iter().find(|st| st.name == s.name).map(ServerStat::in_flight);
                    Member { id: TargetId::from(id), state, in_flight }
                })
            })
            .collect())
    }

    /// The server name and address of each target, checked (`Invalid` naming `targets[i]`).
    pub(super) fn wanted_addresses(
        &self,
        pool: &PoolName,
        targets: &[Target],
    ) -> Result<Vec<(String, SocketAddr)>, HaproxyError> {
        let mut wanted = Vec::with_capacity(targets.len());
        for (i, target) in targets.iter().enumerate() {
            if !valid_name(target.id.as_str()) {
                return Err(HaproxyError::Invalid {
                    field: format!("targets[{i}].id"),
                    reason: format!(
                        "{:?} cannot be part of an HAProxy server name (letters, digits, . - _ : only)",
                        target.id
                    ),
                });
            }
            wanted.push((self.server_name(pool, &target.id), socket_address(i, target)?));
        }
        Ok(wanted)
    }

    /// What `add_targets` must do in `backend` (read as `servers`) for `wanted` servers: which
    /// to create, move (in maintenance, at another address) and put into service. Refuses to
    /// move a server that is not in maintenance.
    pub(super) fn membership(
        &self,
        backend: &str,
        servers: &[ServerState],
        wanted: &[(String, SocketAddr)],
    ) -> Result<Membership, HaproxyError> {
        let mut plan = Membership::default();
        for (name, address) in wanted {
            match servers.iter().find(|s| s.name == *name) {
                None => plan.to_create.push((name.clone(), *address)),
                Some(s) => {
                    let same = s.address().parse::<SocketAddr>().ok() == Some(*address);
                    if !same && !s.in_maintenance() {
                        return Err(HaproxyError::Drift {
                            what: format!(
                                "server {backend}/{name} serves {} but the target is at {address}; drain it before \
                                 moving it",
                                s.address()
                            ),
                        });
                    }
                    if !same {
                        plan.to_move.push((name.clone(), *address));
                    }
                    if !s.ready() {
                        plan.to_enable.push(name.clone());
                    }
                }
            }
        }
        Ok(plan)
    }

    /// `add server` (in maintenance, as HAProxy creates them) with `weight` and the configured
    /// options, then `enable health` when they have `check`.
    pub(super) async fn create_server(
        &self,
        prefix: &str,
        backend: &str,
        name: &str,
        address: SocketAddr,
        weight: u32,
    ) -> Result<(), HaproxyError> {
        let command =
            format!("{prefix}add server {backend}/{name} {address} weight {weight} {}", self.inner.server_options);
        let answer = self.inner.cli.run(command.trim_end()).await?;
        if !answer.contains("New server registered") {
            return Err(HaproxyError::Answer { command, answer: answer.trim().to_owned() });
        }
        if self.inner.server_options.split_whitespace().any(|w| w == "check") {
            self.quiet(format!("enable health {backend}/{name}")).await?;
        }
        Ok(())
    }

    /// `set server … addr … port …` for a server in maintenance whose host moved.
    pub(super) async fn move_server(&self, backend: &str, name: &str, address: SocketAddr) -> Result<(), HaproxyError> {
        let command = format!("set server {backend}/{name} addr {} port {}", address.ip(), address.port());
        let answer = self.inner.cli.run(&command).await?;
        if !answer.contains("changed") && !answer.contains("no need to change") {
            return Err(HaproxyError::Answer { command, answer: answer.trim().to_owned() });
        }
        Ok(())
    }

    /// `del server`, retried while HAProxy still holds connections to it (up to `delete_wait`).
    pub(super) async fn delete_server(&self, prefix: &str, backend: &str, name: &str) -> Result<(), HaproxyError> {
        let command = format!("{prefix}del server {backend}/{name}");
        let deadline = Instant::now() + self.inner.delete_wait;
        loop {
            match self.inner.cli.run(&command).await {
                Ok(answer) if answer.contains("Server deleted") => return Ok(()),
                Ok(answer) if answer.contains("connections") && Instant::now() < deadline => {
                    tokio::time::sleep(self.inner.drain_poll).await;
                }
                Ok(answer) if answer.contains("connections") => {
                    return Err(HaproxyError::Busy {
                        backend: backend.to_owned(),
                        server: name.to_owned(),
                        after: self.inner.delete_wait,
                    })
                }
                Ok(answer) => return Err(HaproxyError::Answer { command, answer: answer.trim().to_owned() }),
                // Deleted meanwhile: that is what was asked.
                Err(HaproxyError::UnknownServer { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Which command prefix `add server` / `del server` need on this version, or why they
    /// cannot be used.
    pub(super) async fn dynamic_servers(&self, command: &str) -> Result<&'static str, HaproxyError> {
        let version = self.inner.cli.run("show version").await?.trim().to_owned();
        let mut parts = version.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        match (major, minor) {
            (0..=1, _) | (2, 0..=3) => Err(HaproxyError::Unsupported {
                version,
                command: command.to_owned(),
                what_instead: "it needs HAProxy 2.4 or later; declare the server in haproxy.cfg (or a \
                               server-template slot) and reload HAProxy"
                    .to_owned(),
            }),
            (2, 4) => Ok("experimental-mode on; "),
            _ => Ok(""),
        }
    }
}

/// What `add_targets` does to a backend's servers.
#[derive(Debug, Default)]
pub(super) struct Membership {
    /// Servers to create: (name, address).
    pub(super) to_create: Vec<(String, SocketAddr)>,
    /// Servers in maintenance to move to another address.
    pub(super) to_move: Vec<(String, SocketAddr)>,
    /// Servers to put into service.
    pub(super) to_enable: Vec<String>,
}

/// A target's address as HAProxy takes it.
fn socket_address(index: usize, target: &Target) -> Result<SocketAddr, HaproxyError> {
    target.address.parse().map_err(|_| HaproxyError::Invalid {
        field: format!("targets[{index}].address"),
        reason: format!(
            "target {} has address {:?}; HAProxy servers added at runtime need ip:port",
            target.id, target.address
        ),
    })
}
