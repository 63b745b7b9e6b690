//! Membership and drains in the backend-per-pool layout: each pool's servers are in its own
//! backend, named by target id (or as an operator named them), and the split is the map's
//! business, so no operation here touches another pool or rebalances weights.
//!
//! A server that enters service with weight 0 is given weight 1: alone in its pool's backend
//! it would otherwise take none of the pool's share (weights an operator gave are kept).

use std::net::SocketAddr;
use std::time::Duration;

use bluegreen_core::{Error, Member, MemberState, PoolName, Result, Target, TargetId};
use tokio::time::Instant;

use super::error::HaproxyError;
use super::members::Membership;
use super::router::{Admin, HaproxyRouter};
use super::state::{ServerStat, ServerState};

/// The weight of a server entering service that had none.
const WEIGHT: u32 = 1;

impl HaproxyRouter {
    /// [`Router::add_targets`](bluegreen_core::Router::add_targets) into `backend`.
    pub(super) async fn add_to_backend(&self, pool: &PoolName, backend: &str, targets: &[Target]) -> Result<()> {
        let wanted = self.wanted_addresses(pool, targets)?;
        let _writes = self.inner.writes.lock().await;
        let servers = self.servers_in(backend).await?;
        let Membership { to_create, to_move, to_enable } = self.membership(backend, &servers, &wanted)?;
        let prefix = if to_create.is_empty() { "" } else { self.dynamic_servers("add server").await? };
        for (name, address) in &to_create {
            self.create_server(prefix, backend, name, *address, WEIGHT).await?;
        }
        for (name, address) in &to_move {
            self.move_server(backend, name, *address).await?;
        }
        for name in &to_enable {
            if servers.iter().find(|s| s.name == *name).is_some_and(|s| s.uweight == 0) {
                self.set_weight_in(backend, name, WEIGHT).await?;
            }
        }
        for name in to_create.iter().map(|(n, _)| n).chain(&to_enable) {
            self.set_state_in(backend, name, Admin::Ready).await?;
        }
        let names: Vec<(String, Option<Admin>)> = wanted.iter().map(|(n, _)| (n.clone(), Some(Admin::Ready))).collect();
        let servers = self.verify_in(backend, &names).await?;
        for (name, address) in &wanted {
            let observed = servers.iter().find(|s| s.name == *name).map(ServerState::address).unwrap_or_default();
            if observed.parse::<SocketAddr>().ok() != Some(*address) {
                return Err(Error::ReadBackMismatch {
                    what: format!("address of server {backend}/{name}"),
                    expected: address.to_string(),
                    observed,
                });
            }
        }
        Ok(())
    }

    /// [`Router::drain`](bluegreen_core::Router::drain) in `backend`.
    pub(super) async fn drain_in_backend(
        &self,
        pool: &PoolName,
        backend: &str,
        ids: &[TargetId],
        timeout: Duration,
    ) -> Result<bluegreen_core::DrainReport> {
        let started = Instant::now();
        let names: Vec<String> = ids.iter().map(|id| self.server_name(pool, id)).collect();
        let watch: Vec<String> = {
            let _writes = self.inner.writes.lock().await;
            let servers = self.servers_in(backend).await?;
            for (id, name) in ids.iter().zip(&names) {
                if !servers.iter().any(|s| s.name == *name) {
                    return Err(HaproxyError::NotAMember {
                        target: id.to_string(),
                        pool: pool.to_string(),
                        backend: backend.to_owned(),
                        server: name.clone(),
                    }
                    .into());
                }
            }
            let to_drain: Vec<&ServerState> = servers.iter().filter(|s| names.contains(&s.name) && s.ready()).collect();
            for server in &to_drain {
                self.set_state_in(backend, &server.name, Admin::Drain).await?;
            }
            if !to_drain.is_empty() {
                let draining: Vec<(String, Option<Admin>)> =
                    to_drain.iter().map(|s| (s.name.clone(), Some(Admin::Drain))).collect();
                self.verify_in(backend, &draining).await?;
            }
            servers.iter().filter(|s| names.contains(&s.name) && !s.in_maintenance()).map(|s| s.name.clone()).collect()
        };
        self.observe_drain(backend, &names, watch, started, timeout).await
    }

    /// [`Router::remove_targets`](bluegreen_core::Router::remove_targets) from `backend`.
    pub(super) async fn remove_from_backend(&self, pool: &PoolName, backend: &str, ids: &[TargetId]) -> Result<()> {
        let _writes = self.inner.writes.lock().await;
        let servers = self.servers_in(backend).await?;
        let present = self.present(pool, ids, &servers);
        if present.is_empty() {
            return Ok(());
        }
        let prefix = self.dynamic_servers("del server").await?;
        for server in present.iter().filter(|s| !s.in_maintenance()) {
            self.set_state_in(backend, &server.name, Admin::Maint).await?;
        }
        for server in &present {
            self.delete_server(prefix, backend, &server.name).await?;
        }
        let names: Vec<(String, Option<Admin>)> = present.iter().map(|s| (s.name.clone(), None)).collect();
        self.verify_in(backend, &names).await?;
        Ok(())
    }

    /// [`Router::members`](bluegreen_core::Router::members) of `backend`: every server of it.
    pub(super) async fn members_of_backend(&self, pool: &PoolName, backend: &str) -> Result<Vec<Member>> {
        let servers = self.servers_in(backend).await?;
        let stats = self.stats_in(backend).await?;
        Ok(servers
            .iter()
            .map(|s| {
                let state = match Admin::of(s) {
                    Admin::Maint => MemberState::Disabled,
                    Admin::Drain => MemberState::Draining,
                    Admin::Ready => MemberState::Serving,
                };
                let in_flight = stats.iter().find(|st| st.name == s.name).map(ServerStat::in_flight);
                Member { id: TargetId::from(self.owner_in(pool, &s.name)), state, in_flight }
            })
            .collect())
    }
}
