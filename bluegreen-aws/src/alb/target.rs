//! How the router and the probe name an ALB target (`ip:port`, `i-…:port`), and what the ALB's
//! target states mean for a member.

use std::net::{IpAddr, SocketAddr};

use aws_sdk_elasticloadbalancingv2::types::{TargetDescription, TargetHealthStateEnum};
use bluegreen_core::{Error, MemberState, Result};

/// Whether the ALB sends (or will send, once healthy) new requests to a target in this state.
pub(super) fn serving(state: &TargetHealthStateEnum) -> bool {
    member_state(state) == MemberState::Serving
}

/// What a target in this ALB state is as a member of its pool.
pub(super) fn member_state(state: &TargetHealthStateEnum) -> MemberState {
    match state {
        TargetHealthStateEnum::Draining | TargetHealthStateEnum::UnhealthyDraining => MemberState::Draining,
        TargetHealthStateEnum::Unused => MemberState::Disabled,
        _ => MemberState::Serving,
    }
}

/// The name of the ALB's target `id` (an IP address or an instance id) on `port`: `10.0.0.7:80`,
/// `[2001:db8::7]:80`, `i-0abc:80` — the form [`description`] reads.
pub(super) fn target_name(id: &str, port: i32) -> String {
    match (id.parse::<IpAddr>(), u16::try_from(port)) {
        (Ok(ip), Ok(port)) => SocketAddr::new(ip, port).to_string(),
        _ => format!("{id}:{port}"),
    }
}

/// The ALB's description of a target named `ip:port` (an `ip` target group) or `i-…:port` (an
/// `instance` target group).
pub(super) fn description(id: &str) -> Result<TargetDescription> {
    if let Ok(addr) = id.parse::<SocketAddr>() {
        return Ok(TargetDescription::builder().id(addr.ip().to_string()).port(i32::from(addr.port())).build());
    }
    let instance = id.rsplit_once(':').and_then(|(instance, port)| Some((instance, port.parse::<u16>().ok()?)));
    match instance {
        Some((instance, port))
            if instance.starts_with("i-") && instance[2..].chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            Ok(TargetDescription::builder().id(instance).port(i32::from(port)).build())
        }
        _ => Err(Error::invalid(
            format!("target {id}"),
            "an ALB target is named ip:port (ip target groups) or i-…:port (instance target groups)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_round_trip_through_the_albs_descriptions() {
        for name in ["10.0.0.7:8080", "[2001:db8::7]:8080", "i-0abc123:8080"] {
            let d = description(name).unwrap();
            assert_eq!(target_name(d.id().unwrap(), d.port().unwrap()), name);
        }
        assert!(description("web-1").is_err());
        assert!(description("i-0abc").is_err(), "an instance target needs its port");
    }
}
