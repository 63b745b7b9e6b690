//! Who this deployer is in the service's lock, and whether another holder is gone.
//!
//! The default owner is `bluegreen-<host>-<pid>`. A restarted job on the same host finds the
//! lock held under the name of a process that no longer runs: that lock is taken over at once
//! (the executor says so in a `warning` event) instead of waiting out its lease. Holders on
//! other hosts, and names the command did not make, keep the lease rule.

use bluegreen_core::Lease;

const PREFIX: &str = "bluegreen-";

/// This host's name: `HOSTNAME`, else `/etc/hostname`, else `localhost`.
fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The default owner name of this process.
pub(crate) fn this_process() -> String {
    format!("{PREFIX}{}-{}", host(), std::process::id())
}

/// Whether `lease` was taken by a `bluegreen` process of this host that no longer runs.
pub(crate) fn is_gone(lease: &Lease) -> bool {
    gone_on(&host(), &lease.owner, |pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// Whether `owner` names a process of `host` that `runs` says is not running (never this one).
fn gone_on(host: &str, owner: &str, runs: impl Fn(u32) -> bool) -> bool {
    let Some((owner_host, pid)) = owner.strip_prefix(PREFIX).and_then(|rest| rest.rsplit_once('-')) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else { return false };
    // Without /proc nothing can be said: keep the lease rule.
    let can_tell = std::path::Path::new("/proc/self").exists();
    owner_host == host && pid != std::process::id() && can_tell && !runs(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_process_of_this_host_is_gone() {
        let dead = |_| false;
        let alive = |_| true;
        assert!(gone_on("ci-7", "bluegreen-ci-7-27711", dead));
        assert!(gone_on("web-host-1", "bluegreen-web-host-1-27711", dead), "hosts with dashes");
        assert!(!gone_on("ci-7", "bluegreen-ci-7-27711", alive), "still running");
        assert!(!gone_on("ci-7", "bluegreen-ci-8-27711", dead), "another host");
        assert!(!gone_on("ci-7", "pipeline-42", dead), "a name the command did not make");
        assert!(!gone_on("ci-7", "bluegreen-ci-7-x", dead));
        assert!(!gone_on("ci-7", &format!("bluegreen-ci-7-{}", std::process::id()), dead), "this process");
    }

    #[test]
    fn this_process_is_running() {
        assert!(!is_gone(&Lease { service: "s".into(), owner: this_process(), fence: 1, expires_at: 0 }));
    }
}
