//! Writing: the change batch that turns what was read into what a step wants, sent once,
//! waited for until `INSYNC` and read back; and how its errors map.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use aws_sdk_route53::error::SdkError;
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use bluegreen_aws::error::aws_error;
use bluegreen_core::{Adoption, Error, PoolName, Result};
use tokio::time::Instant;

use super::read::State;
use super::records::{txt_value, Answer, DesiredPool};
use super::{Inner, BACKEND};
use crate::bookkeeping::MemberRecord;

/// Maps an error of `ChangeResourceRecordSets`. A retried batch that the first attempt already
/// applied (its answer was lost) meets its own DELETE: Route53 answers `InvalidChangeBatch`,
/// "tried to delete … but it was not found". That is retryable: the step reads the zone again
/// and computes what is left (usually nothing).
fn change_error(resource: &str, err: SdkError<ChangeResourceRecordSetsError>) -> Error {
    match err.as_service_error().and_then(|e| deleted_set_gone(resource, e)) {
        Some(gone) => gone,
        None => aws_error("route53:ChangeResourceRecordSets", resource, err),
    }
}

/// The retryable error for an `InvalidChangeBatch` whose DELETE found nothing; `None` for
/// every other error.
fn deleted_set_gone(resource: &str, err: &ChangeResourceRecordSetsError) -> Option<Error> {
    let ChangeResourceRecordSetsError::InvalidChangeBatch(bad) = err else { return None };
    let texts: Vec<&str> = bad.messages().iter().map(String::as_str).chain(bad.message()).collect();
    deleted_set_missing(&texts).then(|| {
        Error::transient(
            BACKEND,
            format!(
                "route53:ChangeResourceRecordSets on {resource}: InvalidChangeBatch: {}: a record set the batch \
                 deletes is gone (an earlier attempt of the same batch may have been applied); read again and \
                 recompute",
                texts.join("; ")
            ),
        )
    })
}

/// Whether `InvalidChangeBatch` messages say a record set to delete was not found.
fn deleted_set_missing(messages: &[&str]) -> bool {
    messages.iter().any(|m| {
        let m = m.to_ascii_lowercase();
        m.contains("delete") && m.contains("not found")
    })
}

/// When a change batch was seen `INSYNC`, and whether Route53 said so in its answer to the batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Synced {
    /// When it was seen `INSYNC`.
    pub(super) at: Instant,
    /// Whether Route53's answer to the batch said so already.
    pub(super) at_once: bool,
}

fn built<T, E: std::error::Error>(what: &str, r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| Error::permanent(BACKEND, format!("cannot build the {what}: {e}")))
}

fn describe(answer: Option<&Answer>) -> String {
    match answer {
        Some(a) => format!(
            "weight {} ttl {} [{}]{}",
            a.weight,
            a.ttl,
            a.values.join(", "),
            a.health_check.as_deref().map(|h| format!(" health check {h}")).unwrap_or_default()
        ),
        None => "no record set".to_owned(),
    }
}

fn txt_values(members: &[MemberRecord]) -> Vec<String> {
    let mut v: Vec<String> = members.iter().map(txt_value).collect();
    v.sort();
    v
}

impl Inner {
    fn answer_set(&self, pool: &PoolName, answer: &Answer) -> Result<ResourceRecordSet> {
        let records = answer
            .values
            .iter()
            .map(|v| built("resource record", ResourceRecord::builder().value(v).build()))
            .collect::<Result<Vec<_>>>()?;
        built(
            "record set",
            ResourceRecordSet::builder()
                .name(&self.name)
                .r#type(self.rr_type())
                .set_identifier(pool.as_str())
                .weight(answer.weight)
                .ttl(answer.ttl)
                .set_resource_records(Some(records))
                .set_health_check_id(answer.health_check.clone())
                .build(),
        )
    }

    fn members_set(&self, pool: &PoolName, members: &[MemberRecord]) -> Result<ResourceRecordSet> {
        let records = txt_values(members)
            .into_iter()
            .map(|v| built("resource record", ResourceRecord::builder().value(v).build()))
            .collect::<Result<Vec<_>>>()?;
        built(
            "record set",
            ResourceRecordSet::builder()
                .name(&self.pool_meta[pool])
                .r#type(RrType::Txt)
                .ttl(self.ttl)
                .set_resource_records(Some(records))
                .build(),
        )
    }

    /// The changes that turn `state` into `desired`: UPSERTs for sets that change or appear,
    /// DELETEs (of the set exactly as listed) for sets that must go.
    fn changes(&self, state: &State, desired: &BTreeMap<PoolName, DesiredPool>) -> Result<Vec<Change>> {
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for pool in &self.pools {
            let want = &desired[pool];
            match (state.answers.get(pool), &want.answer) {
                (None, Some(a)) => upserts.push(self.answer_set(pool, a)?),
                (Some((_, current)), Some(a)) if !current.same(a) => upserts.push(self.answer_set(pool, a)?),
                (Some((set, _)), None) => deletes.push(set.clone()),
                _ => {}
            }
            let (set, current) = state.members.get(pool).map(|(s, m)| (s.as_ref(), m.as_slice())).unwrap_or_default();
            if txt_values(current) != txt_values(&want.members) {
                match set {
                    Some(set) if want.members.is_empty() => deletes.push(set.clone()),
                    _ if want.members.is_empty() => {}
                    _ => upserts.push(self.members_set(pool, &want.members)?),
                }
            }
        }
        let change = |action: ChangeAction, set: ResourceRecordSet| {
            built("change", Change::builder().action(action).resource_record_set(set).build())
        };
        let mut changes = Vec::new();
        // A simple set (taken over) goes first, in the batch that creates the weighted sets
        // beside which Route53 allows none; also when nothing is to be answered any more.
        if let Some((simple, _)) = &state.simple {
            if !upserts.is_empty() || !deletes.is_empty() || desired.values().all(|d| d.answer.is_none()) {
                changes.push(change(ChangeAction::Delete, simple.clone())?);
            }
        }
        for set in upserts {
            changes.push(change(ChangeAction::Upsert, set)?);
        }
        for set in deletes {
            changes.push(change(ChangeAction::Delete, set)?);
        }
        Ok(changes)
    }

    /// Writes `desired` in one change batch (nothing when nothing changes), waits until it is
    /// `INSYNC` and reads it back. Returns when it became `INSYNC`, if a batch was sent.
    async fn apply(&self, state: &State, desired: &BTreeMap<PoolName, DesiredPool>) -> Result<Option<Synced>> {
        let changes = self.changes(state, desired)?;
        if changes.is_empty() {
            // A step re-run after its change outlasted the timeout: it is in effect only once
            // that change is in sync.
            let unsynced = self.unsynced.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            if let Some((id, _)) = unsynced {
                self.await_insync(&id, Instant::now()).await?;
            }
            return Ok(None);
        }
        let synced = self.send(changes, false).await?;
        self.verify(desired).await?;
        Ok(Some(synced))
    }

    /// Sends `changes` as one batch and waits until it is `INSYNC`. With `pinned`, the batch's
    /// DELETEs and CREATEs stand for "as read": Route53 refusing it (`InvalidChangeBatch`) means
    /// another writer changed those sets, a retryable error.
    async fn send(&self, changes: Vec<Change>, pinned: bool) -> Result<Synced> {
        let batch = built(
            "change batch",
            ChangeBatch::builder().comment(format!("bluegreen: {}", self.name)).set_changes(Some(changes)).build(),
        )?;
        self.batches_sent.fetch_add(1, Ordering::Relaxed);
        let submitted = Instant::now();
        let out = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(&self.zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| {
                let resource = format!("{} in {}", self.name, self.zone());
                let refused =
                    matches!(e.as_service_error(), Some(ChangeResourceRecordSetsError::InvalidChangeBatch(_)));
                if pinned && refused {
                    Error::transient(
                        BACKEND,
                        format!(
                            "route53:ChangeResourceRecordSets on {resource}: InvalidChangeBatch: {}: the record sets \
                             changed since they were read (another writer is active); nothing was changed",
                            aws_sdk_route53::error::DisplayErrorContext(&e)
                        ),
                    )
                } else {
                    change_error(&resource, e)
                }
            })?;
        let info = out.change_info();
        let id = info.and_then(|i| i.id().rsplit('/').next()).unwrap_or_default().to_owned();
        let synced = if info.is_some_and(|i| *i.status() == ChangeStatus::Insync) {
            // Route53 applies a zone's changes in order: an older change that outlasted its
            // timeout is in sync too.
            *self.unsynced.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            Synced { at: Instant::now(), at_once: true }
        } else {
            *self.unsynced.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((id.clone(), submitted));
            Synced { at: self.await_insync(&id, submitted).await?, at_once: false }
        };
        Ok(synced)
    }

    /// Records the members of `adoptions` (see [`Router::adopt`](bluegreen_core::Router::adopt)
    /// on [`Route53Router`](super::Route53Router)): one batch writes each pool's member set with
    /// the adopted hosts (DELETE as read + UPSERT, or CREATE when it had none) and deletes and
    /// puts back, unchanged, the address record sets that serve them, so the batch applies only
    /// to the zone as read and no answer changes. Then reads back that none is unmanaged.
    pub(super) async fn adopt(&self, adoptions: &[Adoption]) -> Result<()> {
        self.ensure_zone().await?;
        let _guard = self.write_lock.lock().await;
        let state = self.read().await?;
        let mut pools: BTreeMap<PoolName, Vec<MemberRecord>> = BTreeMap::new();
        for adoption in adoptions {
            let recorded =
                state.members.get(&adoption.pool).is_some_and(|(_, m)| m.iter().any(|m| m.id == adoption.target));
            let host = state.unmanaged.iter().find(|h| h.pool == adoption.pool && h.member.id == adoption.target);
            match host {
                Some(host) => pools.entry(host.pool.clone()).or_default().push(host.member.clone()),
                None if recorded => {}
                None => {
                    return Err(Error::drift(format!(
                        "{} no longer serves {} as target {} of pool {}: plan again",
                        self.name, adoption.what, adoption.target, adoption.pool
                    )));
                }
            }
        }
        if pools.is_empty() {
            return Ok(());
        }
        let change = |action: ChangeAction, set: ResourceRecordSet| {
            built("change", Change::builder().action(action).resource_record_set(set).build())
        };
        let mut changes = Vec::new();
        // The address sets that serve the adopted hosts, pinned: deleted as read, created the same.
        let ips: Vec<String> = pools.values().flatten().map(|m| m.ip.to_string()).collect();
        let serving = state
            .simple
            .iter()
            .map(|(set, a)| (set, a))
            .chain(state.answers.values().map(|(set, a)| (set, a)))
            .filter(|(_, a)| a.values.iter().any(|v| ips.contains(v)));
        // (DELETE fails unless the set is exactly as listed; the UPSERT after it puts it back.
        // Route53 applies a batch in order and atomically, so nothing answered changes.)
        for (set, _) in serving {
            changes.push(change(ChangeAction::Delete, set.clone())?);
            changes.push(change(ChangeAction::Upsert, set.clone())?);
        }
        for (pool, adopted) in &pools {
            let (set, _) = &state.members[pool];
            let unmanaged = |m: &MemberRecord| state.unmanaged.iter().any(|h| h.pool == *pool && h.member.id == m.id);
            let recorded: Vec<MemberRecord> = state.members[pool].1.iter().filter(|m| !unmanaged(m)).cloned().collect();
            let members: Vec<MemberRecord> = recorded.into_iter().chain(adopted.iter().cloned()).collect();
            // As read: DELETE the set listed (then UPSERT), or CREATE (fails if one appeared).
            let action = match set {
                Some(set) => {
                    changes.push(change(ChangeAction::Delete, set.clone())?);
                    ChangeAction::Upsert
                }
                None => ChangeAction::Create,
            };
            changes.push(change(action, self.members_set(pool, &members)?)?);
        }
        self.send(changes, true).await?;
        let after = self.read().await?;
        if let Some(left) =
            after.unmanaged.iter().find(|h| pools.get(&h.pool).is_some_and(|a| a.iter().any(|m| m.id == h.member.id)))
        {
            return Err(Error::ReadBackMismatch {
                what: format!("the members of pool {} at {}", left.pool, self.pool_meta[&left.pool]),
                expected: format!("target {} recorded", left.member.id),
                observed: "not recorded".to_owned(),
            });
        }
        Ok(())
    }

    /// Polls `GetChange` until the change is `INSYNC`, pausing longer each time, at most until
    /// `since` + the change timeout.
    async fn await_insync(&self, id: &str, since: Instant) -> Result<Instant> {
        let deadline = since + self.change_timeout;
        let mut pause = self.poll_interval;
        loop {
            let out = self
                .client
                .get_change()
                .id(id)
                .send()
                .await
                .map_err(|e| aws_error("route53:GetChange", &format!("change {id} in {}", self.zone()), e))?;
            let now = Instant::now();
            if out.change_info().is_some_and(|i| *i.status() == ChangeStatus::Insync) {
                let mut unsynced = self.unsynced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if unsynced.as_ref().is_some_and(|(u, _)| u == id) {
                    *unsynced = None;
                }
                return Ok(now);
            }
            if now >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "Route53 change {id} ({} in {}) to be INSYNC: it is still PENDING, so the step cannot \
                         count as in effect (Route53 keeps the change and applies it later)",
                        self.name,
                        self.zone()
                    ),
                    after: now - since,
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(self.poll_interval * 4);
        }
    }

    /// Reads the record sets back and compares them with `desired`.
    async fn verify(&self, desired: &BTreeMap<PoolName, DesiredPool>) -> Result<()> {
        let state = self.read().await?;
        for pool in &self.pools {
            let want = &desired[pool];
            let got = state.answers.get(pool).map(|(_, a)| a);
            let same = match (got, &want.answer) {
                (Some(g), Some(w)) => g.same(w),
                (None, None) => true,
                _ => false,
            };
            if !same {
                return Err(Error::ReadBackMismatch {
                    what: format!("the {} record set of pool {pool} at {}", self.family.record_type(), self.name),
                    expected: describe(want.answer.as_ref()),
                    observed: describe(got),
                });
            }
            let members = state.members.get(pool).map(|(_, m)| m.as_slice()).unwrap_or_default();
            if txt_values(members) != txt_values(&want.members) {
                return Err(Error::ReadBackMismatch {
                    what: format!("the members of pool {pool} at {}", self.pool_meta[pool]),
                    expected: txt_values(&want.members).join(" "),
                    observed: txt_values(members).join(" "),
                });
            }
        }
        Ok(())
    }

    /// Reads, computes the change with `change` (new members and weights) and applies it,
    /// holding the write lock throughout. Returns the state read and when the change synced.
    pub(super) async fn update(
        &self,
        change: impl FnOnce(&State) -> Result<BTreeMap<PoolName, DesiredPool>>,
    ) -> Result<(State, BTreeMap<PoolName, DesiredPool>, Option<Synced>)> {
        self.ensure_zone().await?;
        let _guard = self.write_lock.lock().await;
        let state = self.read().await?;
        let mut desired = change(&state)?;
        // The configured health check, else the one already on the set (an operator's).
        for (pool, want) in &mut desired {
            if let Some(answer) = &mut want.answer {
                answer.health_check = self
                    .health_checks
                    .get(pool)
                    .cloned()
                    .or_else(|| state.answers.get(pool).and_then(|(_, a)| a.health_check.clone()));
            }
        }
        let synced = self.apply(&state, &desired).await?;
        Ok((state, desired, synced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_that_finds_nothing_is_retryable_other_invalid_batches_are_not() {
        let gone = "Tried to delete resource record set [name='www.example.test.', type='A', set-identifier='blue'] \
                    but it was not found";
        assert!(deleted_set_missing(&[gone]));
        assert!(deleted_set_missing(&["something else", &gone.to_ascii_uppercase()]));
        let mismatch = "Tried to create resource record set [name='www.example.test.', type='A', \
                        set-identifier='blue'] but it already exists";
        assert!(!deleted_set_missing(&[mismatch]));
        assert!(!deleted_set_missing(&[]));

        let err = |messages: &[&str]| {
            let bad = aws_sdk_route53::types::error::InvalidChangeBatch::builder()
                .set_messages(Some(messages.iter().map(|m| (*m).to_owned()).collect()))
                .meta(aws_sdk_route53::error::ErrorMetadata::builder().code("InvalidChangeBatch").build())
                .build();
            deleted_set_gone(
                "www.example.test. in hosted zone Z1",
                &ChangeResourceRecordSetsError::InvalidChangeBatch(bad),
            )
        };
        let retry = err(&[gone]).expect("mapped");
        assert!(retry.is_retryable() && retry.to_string().contains("not found"), "{retry}");
        assert!(err(&[mismatch]).is_none(), "left to the usual mapping (permanent)");
    }
}
