//! The fleet suite: what every [`Fleet`] must do, and what its
//! [`FleetCapabilities`](crate::FleetCapabilities) claim.

use super::ids::ids;
use crate::error::Error;
use crate::fleet::{Fleet, ProvisionRequest};
use crate::model::{Target, TargetId, Version};

/// What a fleet's conformance run may use.
#[derive(Debug, Clone)]
pub struct FleetFixture {
    /// A version the fleet can run.
    pub version: Version,
    /// Another version the fleet can update targets to.
    pub other_version: Version,
    /// A tag unique to this run.
    pub tag: String,
}

/// Runs every fleet test: what the fleet's [`FleetCapabilities`](crate::FleetCapabilities)
/// claim, and that what they do not claim is refused with `Error::Invalid`, changing nothing.
/// A fleet that cannot provision is updated on a target it lists (at least one).
pub async fn fleet_suite(fleet: &dyn Fleet, fixture: &FleetFixture) {
    targets_reads_the_targets_asked_for(fleet).await;
    let can = fleet.capabilities();
    if can.provisions {
        provision_is_ensure(fleet, fixture).await;
        retire_is_idempotent(fleet, fixture).await;
    } else {
        provision_is_refused(fleet, fixture).await;
    }
    if can.updates_in_place {
        update_in_place_reads_back(fleet, fixture).await;
        update_of_unknown_target_is_not_found(fleet, fixture).await;
    } else {
        update_is_refused(fleet, fixture).await;
    }
}

/// `targets` answers what `list` says of the ids asked for, leaving out ids the fleet does not
/// run.
pub async fn targets_reads_the_targets_asked_for(fleet: &dyn Fleet) {
    let listed = fleet.list().await.expect("list failed");
    let mut asked: Vec<TargetId> = listed.iter().take(2).map(|t| t.id.clone()).collect();
    asked.push(TargetId::from("bluegreen-conformance-no-such-target"));
    let mut found = fleet.targets(&asked).await.expect("targets failed");
    let mut expected: Vec<Target> = listed.into_iter().filter(|t| asked.contains(&t.id)).collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(found, expected, "{}: targets disagrees with list", fleet.name());
}

/// A target to update: a provisioned one, or the first listed by a fleet that cannot provision.
async fn target_to_update(fleet: &dyn Fleet, fixture: &FleetFixture, tag: &str) -> (Target, bool) {
    if fleet.capabilities().provisions {
        let request =
            ProvisionRequest { version: fixture.version.clone(), count: 1, zones: Vec::new(), tag: tag.to_owned() };
        (fleet.provision(&request).await.expect("provision failed").remove(0), true)
    } else {
        let listed = fleet.list().await.expect("list failed");
        let first = listed.into_iter().next();
        (
            first.unwrap_or_else(|| panic!("{}: a fleet that cannot provision needs a target to update", fleet.name())),
            false,
        )
    }
}

/// A fleet that does not provision refuses to, with `Invalid`, and lists the same targets after.
pub async fn provision_is_refused(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let before = ids(&fleet.list().await.expect("list failed"));
    let request =
        ProvisionRequest { version: fixture.version.clone(), count: 1, zones: Vec::new(), tag: fixture.tag.clone() };
    let err = fleet.provision(&request).await.expect_err("a fleet that does not provision must refuse to");
    assert!(matches!(err, Error::Invalid { .. }), "{}: provision refused with {err}, not Invalid", fleet.name());
    assert_eq!(
        ids(&fleet.list().await.expect("list failed")),
        before,
        "{}: a refused provision changed the fleet",
        fleet.name()
    );
}

/// A fleet that does not update in place refuses to move a target to another version, with
/// `Invalid`, and the target keeps its version.
pub async fn update_is_refused(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let (target, provisioned) = target_to_update(fleet, fixture, &format!("{}-no-update", fixture.tag)).await;
    let err = fleet.update(&target.id, &fixture.other_version).await.expect_err("an in-place update must be refused");
    assert!(matches!(err, Error::Invalid { .. }), "{}: update refused with {err}, not Invalid", fleet.name());
    let listed = fleet.list().await.expect("list failed");
    let seen = listed.iter().find(|t| t.id == target.id).expect("the target vanished");
    assert_eq!(seen.version, target.version, "{}: a refused update changed the version", fleet.name());
    if provisioned {
        fleet.retire(std::slice::from_ref(&target.id)).await.expect("retire failed");
    }
}

/// Provisioning by tag creates only what is missing.
pub async fn provision_is_ensure(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let request = |count| ProvisionRequest {
        version: fixture.version.clone(),
        count,
        zones: Vec::new(),
        tag: fixture.tag.clone(),
    };
    let first = fleet.provision(&request(2)).await.expect("provision failed");
    assert_eq!(first.len(), 2, "{}: provision(2) returned {}", fleet.name(), first.len());
    assert!(first.iter().all(|t| t.version == fixture.version && t.tag.as_deref() == Some(fixture.tag.as_str())));
    let again = fleet.provision(&request(2)).await.expect("provision again failed");
    let mut a = ids(&first);
    let mut b = ids(&again);
    a.sort();
    b.sort();
    assert_eq!(a, b, "{}: provisioning the same tag again created targets", fleet.name());
    let more = fleet.provision(&request(3)).await.expect("provision(3) failed");
    assert_eq!(more.len(), 3, "{}: provision(3) after 2 returned {}", fleet.name(), more.len());
    let listed = fleet.list().await.expect("list failed");
    for t in &more {
        assert!(listed.iter().any(|l| l.id == t.id), "{}: {} not listed", fleet.name(), t.id);
    }
    fleet.retire(&ids(&more)).await.expect("retire failed");
}

/// An in-place update reads back; updating to the same version again changes nothing.
pub async fn update_in_place_reads_back(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let (target, provisioned) = target_to_update(fleet, fixture, &format!("{}-update", fixture.tag)).await;
    let updated = fleet.update(&target.id, &fixture.other_version).await.expect("update failed");
    assert_eq!(updated.version, fixture.other_version, "{}: update returned the old version", fleet.name());
    let listed = fleet.list().await.expect("list failed");
    let seen = listed.iter().find(|t| t.id == target.id).expect("updated target vanished");
    assert_eq!(seen.version, fixture.other_version, "{}: list shows the old version after update", fleet.name());
    fleet.update(&target.id, &fixture.other_version).await.expect("update to the same version failed");
    if provisioned {
        fleet.retire(std::slice::from_ref(&target.id)).await.expect("retire failed");
    }
}

/// Updating a target that does not exist is `NotFound`.
pub async fn update_of_unknown_target_is_not_found(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let err = fleet
        .update(&TargetId::from("bluegreen-conformance-no-such-target"), &fixture.other_version)
        .await
        .expect_err("update of an unknown target must fail");
    assert!(matches!(err, Error::NotFound { .. }), "{}: update(unknown): {err}", fleet.name());
}

/// Retired targets leave the list; retiring them again succeeds.
pub async fn retire_is_idempotent(fleet: &dyn Fleet, fixture: &FleetFixture) {
    let request = ProvisionRequest {
        version: fixture.version.clone(),
        count: 2,
        zones: Vec::new(),
        tag: format!("{}-retire", fixture.tag),
    };
    let targets = fleet.provision(&request).await.expect("provision failed");
    fleet.retire(&ids(&targets)).await.expect("retire failed");
    fleet.retire(&ids(&targets)).await.expect("retire again failed");
    let listed = fleet.list().await.expect("list failed");
    for t in &targets {
        assert!(!listed.iter().any(|l| l.id == t.id), "{}: retired {} still listed", fleet.name(), t.id);
    }
}
