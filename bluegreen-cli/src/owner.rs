//! Who this deployer is in the service's lock, and whether another holder is gone.
//!
//! The default owner is `bluegreen-<host>-<pid>-<boot>-<pidns>`: the host name, the process id,
//! the first 8 characters of the kernel's boot id and the inode of the process's PID namespace.
//! A restarted job on the same host finds the lock held under the name of a process that no
//! longer runs: that lock is taken over at once (the executor says so in a `warning` event)
//! instead of waiting out its lease.
//!
//! A holder is called gone only when all of this holds, so a live lock is never taken: its
//! name was made by this command; host, boot and PID namespace are this process's own (another
//! container with the same host name has another PID namespace; a reboot another boot id); the
//! host name is a real one (not the `localhost` fallback); and `kill(pid, 0)` says no such
//! process (`EPERM` — a process of another user — counts as alive). Every other holder keeps
//! the lease rule.

use bluegreen_core::Lease;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

const PREFIX: &str = "bluegreen-";
/// The host name when none can be read: never trusted to mean "this host".
const UNKNOWN_HOST: &str = "localhost";

/// This host's name: `HOSTNAME`, else `/etc/hostname`, else `localhost`.
fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| UNKNOWN_HOST.into())
}

/// Which boot of which PID namespace this process lives in (`<boot8>-<pidns inode>`), or `None`
/// where it cannot be read (not Linux, no /proc).
fn instance() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let boot: String = boot.trim().chars().filter(char::is_ascii_hexdigit).take(8).collect();
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let ns: String = ns.to_string_lossy().chars().filter(char::is_ascii_digit).collect();
    (boot.len() == 8 && !ns.is_empty()).then(|| format!("{boot}-{ns}"))
}

/// The default owner name of this process.
pub(crate) fn this_process() -> String {
    let instance = instance().unwrap_or_else(|| "unknown-0".into());
    format!("{PREFIX}{}-{}-{instance}", host(), std::process::id())
}

/// Whether `lease` was taken by a `bluegreen` process of this host, boot and PID namespace
/// that no longer runs.
pub(crate) fn is_gone(lease: &Lease) -> bool {
    let Some(instance) = instance() else { return false };
    gone_on(&host(), &instance, &lease.owner, |pid| kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH))
}

/// Whether `owner` names a process of `host` and `instance` that `runs` says is not running
/// (never this process).
fn gone_on(host: &str, instance: &str, owner: &str, runs: impl Fn(i32) -> bool) -> bool {
    let Some(rest) = owner.strip_prefix(PREFIX).and_then(|rest| rest.strip_suffix(instance)) else {
        return false;
    };
    let Some((owner_host, pid)) = rest.strip_suffix('-').and_then(|rest| rest.rsplit_once('-')) else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else { return false };
    host != UNKNOWN_HOST
        && owner_host == host
        && pid > 0
        && u32::try_from(pid).is_ok_and(|p| p != std::process::id())
        && !runs(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HERE: &str = "0a1b2c3d-4026531836";

    #[test]
    fn only_a_dead_process_of_this_host_boot_and_namespace_is_gone() {
        let dead = |_| false;
        let alive = |_| true;
        assert!(gone_on("ci-7", HERE, &format!("bluegreen-ci-7-27711-{HERE}"), dead));
        assert!(gone_on("web-host-1", HERE, &format!("bluegreen-web-host-1-27711-{HERE}"), dead), "dashes");
        assert!(!gone_on("ci-7", HERE, &format!("bluegreen-ci-7-27711-{HERE}"), alive), "still running");
        assert!(!gone_on("ci-7", HERE, &format!("bluegreen-ci-8-27711-{HERE}"), dead), "another host");
        assert!(!gone_on("ci-7", HERE, "bluegreen-ci-7-27711-0a1b2c3d-4026532000", dead), "another container");
        assert!(!gone_on("ci-7", HERE, "bluegreen-ci-7-27711-ffffffff-4026531836", dead), "before a reboot");
        assert!(!gone_on("ci-7", HERE, "bluegreen-ci-7-27711", dead), "a name without its instance");
        assert!(!gone_on("ci-7", HERE, "pipeline-42", dead), "a name the command did not make");
        assert!(!gone_on("localhost", HERE, &format!("bluegreen-localhost-27711-{HERE}"), dead), "no host name");
        let me = format!("bluegreen-ci-7-{}-{HERE}", std::process::id());
        assert!(!gone_on("ci-7", HERE, &me, dead), "this process");
    }

    #[test]
    fn a_process_that_exited_is_gone_and_a_running_one_is_not() {
        if instance().is_none() || host() == UNKNOWN_HOST {
            return; // not Linux, or no host name: nothing is ever gone
        }
        let lease = |owner: String| Lease { service: "s".into(), owner, fence: 1, expires_at: 0 };
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let owner = |pid: u32| format!("{PREFIX}{}-{pid}-{}", host(), instance().unwrap());
        assert!(!is_gone(&lease(owner(child.id()))), "a running process");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(is_gone(&lease(owner(child.id()))), "the same process after it exited");
        assert!(!is_gone(&lease(this_process())), "this process");
    }
}
