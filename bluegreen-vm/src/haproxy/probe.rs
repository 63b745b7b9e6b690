//! HAProxy's own health checks as a [`HealthProbe`].

use async_trait::async_trait;
use bluegreen_core::{Health, HealthProbe, Target};

use super::router::HaproxyRouter;

/// HAProxy's view of a target's health: the `status` and `check_status` that `show stat`
/// reports for the target's server (in whichever pool it is a member).
///
/// **A second opinion only.** HAProxy reports a server `UP` the moment it leaves maintenance,
/// before any check ran, even when the process behind it is down (measured on 2.6: `UP 1/2`
/// with the `L7OK` of the check before maintenance). Gate targets on a probe that talks to the
/// target itself (`HttpProbe`, bluegreen-core's feature `http-probe`), and use this one to watch, or
/// combine both in a [`FnProbe`](bluegreen_core::FnProbe).
///
/// # Guarantees
/// - Reads `show stat` on every call; never a cached answer.
/// - Healthy only when the status is exactly `UP` (not `UP 1/3`, going down; not `DRAIN`,
///   `MAINT`, `DOWN`, `no check`) and the last completed check passed (`L4OK`, `L6OK`, `L7OK`,
///   `L7OKC`).
///
/// # Assumptions
/// - The target's server has `check` configured (for servers the router adds, put `check` in
///   [`server_options`](super::HaproxyRouterBuilder::server_options)).
///
/// # Errors
/// - None: an unreachable socket or a target without a server is [`Health::Unhealthy`] with
///   the reason.
#[derive(Debug, Clone)]
pub struct HaproxyCheckProbe {
    router: HaproxyRouter,
}

impl HaproxyRouter {
    /// HAProxy's own health checks of the backend's servers, as a [`HealthProbe`](bluegreen_core::HealthProbe).
    pub fn check_probe(&self) -> HaproxyCheckProbe {
        HaproxyCheckProbe { router: self.clone() }
    }
}

/// Check results that mean "passed": layer 4, layer 6 (SSL), layer 7, layer 7 conditionally.
const PASSED: [&str; 4] = ["L4OK", "L6OK", "L7OK", "L7OKC"];

#[async_trait]
impl HealthProbe for HaproxyCheckProbe {
    async fn check(&self, target: &Target) -> Health {
        let mut servers = match self.router.target_stats(&target.id).await {
            Ok(servers) => servers,
            Err(e) => return Health::unhealthy(format!("cannot read HAProxy's checks: {e}")),
        };
        // A target in two pools: judge the member that is in service, if any.
        servers.sort_by_key(|(_, s)| s.status == "MAINT");
        let Some((backend, server)) = servers.first() else {
            return Health::unhealthy(format!(
                "target {} has no server in HAProxy {}",
                target.id,
                self.router.describe()
            ));
        };
        let check = server.check_status.trim_start_matches("* ").trim();
        if server.status == "UP" && PASSED.contains(&check) {
            return Health::Healthy;
        }
        let detail =
            if server.check_desc.is_empty() { check.to_owned() } else { format!("{check}: {}", server.check_desc) };
        Health::unhealthy(format!(
            "HAProxy reports {}/{} {}{}",
            backend,
            server.name,
            server.status,
            if detail.is_empty() { String::new() } else { format!(" ({detail})") }
        ))
    }
}
