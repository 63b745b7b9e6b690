//! The Route53 provider: [`Route53Router`], blue-green and weighted splits over Route53 weighted
//! record sets. `read` lists what the router keeps in the zone, `change` writes one batch and
//! waits for it, `drain` runs the shared DNS drain with Route53's `INSYNC` time, `records` is
//! the plain data (record sets wanted, TXT values, names), `builder` the settings.

mod builder;
mod change;
mod config;
mod drain;
mod read;
mod records;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_route53::types::RrType;
use aws_sdk_route53::Client;
use bluegreen_core::state::Clock;
use bluegreen_core::{
    Adoption, Capabilities, DrainReport, Error, Member, PoolName, Result, Router, Split, Target, TargetId,
};
use tokio::time::Instant;

pub use builder::Route53RouterBuilder;
pub use config::Route53RouterConfig;
use read::State;
pub use records::Route53RecordType;
use records::{desired, normalize, parse_txt, Weights};

use crate::bookkeeping::{self, unix_now, Family};
use crate::settings;

/// The label under the record name that holds bluegreen's bookkeeping records.
const META: &str = "_bluegreen";
/// The router's name in events and errors.
const BACKEND: &str = "route53";
/// Record sets asked for per `ListResourceRecordSets` page.
const PAGE: i32 = 100;

/// A [`Router`] over one DNS name in a Route53 hosted zone, by weighted record sets.
///
/// - **Pools** are weighted `A` (or `AAAA`) record sets at the record name, one per pool, whose
///   `SetIdentifier` is the pool name. A pool's values are the addresses of its serving
///   members. Route53 needs at least one value per record set, so a pool without serving
///   members has no record set and cannot be given traffic.
/// - **Membership** (target id, address, serving or drained) is kept in a TXT record set per
///   pool at `pool-<pool>._bluegreen.<name>`, in the same zone, so that
///   [`members`](Router::members) reads ids back from Route53 and another process sees the same.
/// - **The split** is the sets' weights, written as percents (Route53 weights are 0–255). Each
///   change is **one** `ChangeResourceRecordSets` batch, which Route53 applies atomically; a
///   split change is UPSERTs only, so no answer is ever missing a record. Every write waits
///   until Route53 reports the change `INSYNC` (polling `GetChange` with backoff, bounded by
///   [`change_timeout`](Route53RouterBuilder::change_timeout)), then reads the record sets back
///   and compares them with what was asked.
/// - **Draining** removes the targets' values in one batch and then waits TTL + resolver
///   margin after `INSYNC` (bounded by the drain's timeout): resolvers may hand out a removed
///   value until their cached answer expires. DNS cannot see requests in flight. The member is
///   recorded `disabled` with the time (unix seconds, rounded up) its change was seen `INSYNC`:
///   the batch carries the time it was sent, and when Route53 answered `PENDING`, a second
///   batch (TXT only) corrects it. [`members`](Router::members) reports it
///   [`Draining`](bluegreen_core::MemberState::Draining) until that time + TTL + margin, then `Disabled`, and a
///   drain that finds its targets already disabled waits what is left of that, so a step
///   resumed after a crash still waits the TTL out. Records without a time (the format before)
///   count as long drained. The time is read with the router's
///   [`clock`](Route53RouterBuilder::clock).
/// - **A longer TTL already on the sets** (sets taken over from before bluegreen, or a foreign
///   set with traffic): resolvers keep the answers from before a change that long, so
///   [`set_split`](Router::set_split) and [`drain`](Router::drain) wait that TTL + margin after
///   `INSYNC` instead (with a `tracing` warning); every write puts the configured TTL on the
///   pools' sets, so this happens once.
/// - Writes from clones of one router are serialized, so concurrent drains (a rolling batch)
///   each compute their batch from the state the previous one left.
/// - [`capabilities`](Router::capabilities): weighted at 1 %, atomic swap, no per-target drain
///   (every target of a drain ends at the same TTL, and one batch per target would cost one
///   `INSYNC` wait each), `propagation_delay` = TTL + margin.
/// - **Health checks** (optional, [`health_check`](Route53RouterBuilder::health_check)): a
///   Route53 health check attached to a pool's record set; Route53 then answers without the
///   set while the check fails. A health check already on a set is kept.
///
/// Weighted sets at the name with another `SetIdentifier` are reported by
/// [`split`](Router::split) under that identifier and left alone, but a split change is refused
/// while one of them gets traffic. A simple (unweighted) record at the name is a conflict.
/// Values in a pool's set that belong to no member (records that predate bluegreen) are kept.
/// Route53 answers with every weight-0 set when no set has a positive weight, so when the last
/// live pool loses its last serving member, every set goes (nothing is answered) rather than
/// sending traffic to pools that were asked for 0%; membership alone serves nothing either.
///
/// # Errors
/// As the [`Router`] trait says, and: [`Error::NotFound`] for a hosted zone that does not exist;
/// [`Error::Invalid`] (`record_name`) for a name outside the zone, (`split`) for a split giving
/// traffic to a pool without serving members; [`Error::Timeout`] naming the change when it is
/// still `PENDING` after the change timeout (the step fails; a re-run waits for that change);
/// [`Error::ReadBackMismatch`] when the record sets read back differ; [`Error::Drift`] for a
/// simple record at the name, or a foreign weighted set with traffic on a split change.
/// Throttling and `PriorRequestNotComplete` are retried by the SDK's standard retry mode, then
/// surface as retryable [`Error::Backend`]s. `InvalidChangeBatch` saying a record set to delete
/// was not found (a retried batch that the first attempt applied) is a retryable
/// [`Error::Backend`] too: the re-run reads the zone again and computes what is left.
///
/// # Limits
/// - The id of a change not yet seen `INSYNC` is kept in memory only. A re-run in the same
///   process waits for it; after a crash, a re-run that finds nothing left to change does not
///   (low risk: the executor still waits the propagation delay after a traffic step or drain).
///   Likewise, a drain cut off while its batch was still `PENDING` has the time it was sent on
///   record, so a resumed drain counts TTL + margin from then, not from `INSYNC`.
/// - The longer TTL of sets taken over is known only before the first write replaces it: a
///   step resumed after a crash in that wait waits the configured TTL + margin. A resumed drain
///   waits from its recorded time with the configured TTL + margin, too.
/// - Recorded drain times are wall-clock seconds: processes that read them should have clocks
///   in sync (NTP); a clock that runs behind shortens the resumed wait by that much.
///
/// IAM actions: `route53:GetHostedZone`, `route53:ListResourceRecordSets`,
/// `route53:ChangeResourceRecordSets`, `route53:GetChange`.
#[derive(Clone)]
pub struct Route53Router {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    zone_id: String,
    name: String,
    /// `A` or `AAAA` records.
    family: Family,
    ttl: i64,
    margin: Duration,
    pools: Vec<PoolName>,
    meta: String,
    pool_meta: BTreeMap<PoolName, String>,
    health_checks: BTreeMap<PoolName, String>,
    change_timeout: Duration,
    poll_interval: Duration,
    /// Set once the hosted zone was found and the record name is in it.
    zone_checked: tokio::sync::OnceCell<()>,
    /// Held from the read a write is computed from until it is read back.
    write_lock: tokio::sync::Mutex<()>,
    /// The last change sent and not yet seen `INSYNC`, and when it was sent: a write re-run
    /// after a timeout waits for it even when nothing is left to change.
    unsynced: std::sync::Mutex<Option<(String, Instant)>>,
    batches_sent: AtomicU64,
    /// The wall clock drain times are recorded with (see [`Route53RouterBuilder::clock`]).
    clock: Clock,
    /// The inventory's hosts ([`Route53RouterBuilder::host`]): served addresses of theirs with
    /// no member record are read as their members, unmanaged until adopted.
    hosts: Vec<bookkeeping::DescribedHost>,
}

impl fmt::Debug for Route53Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Route53Router")
            .field("hosted_zone_id", &i.zone_id)
            .field("name", &i.name)
            .field("record_type", &i.family.record_type())
            .field("ttl", &i.ttl)
            .field("pools", &i.pools)
            .finish_non_exhaustive()
    }
}

impl Route53Router {
    /// A router for the weighted records at `record_name` in the hosted zone `hosted_zone_id`
    /// (`Z…` or `/hostedzone/Z…`), through a client made from `config` (see
    /// [`AwsConfig`](bluegreen_aws::AwsConfig), whose endpoint override the tests use).
    ///
    /// ```
    /// # async fn example() -> bluegreen_core::Result<()> {
    /// use std::time::Duration;
    /// use bluegreen_core::Router;
    /// let sdk = bluegreen_aws::AwsConfig::new().region("us-east-1").load().await;
    /// let router = bluegreen_dns::Route53Router::builder(&sdk, "Z0123456789ABC", "www.example.com")
    ///     .ttl(Duration::from_secs(30))
    ///     .pool("blue")
    ///     .pool("green")
    ///     .build()?;
    /// assert_eq!(router.capabilities().propagation_delay, Duration::from_secs(35));
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(config: &SdkConfig, hosted_zone_id: &str, record_name: &str) -> Route53RouterBuilder {
        Self::builder_from_client(Client::new(config), hosted_zone_id, record_name)
    }

    /// Like [`builder`](Self::builder), through an existing client.
    pub fn builder_from_client(client: Client, hosted_zone_id: &str, record_name: &str) -> Route53RouterBuilder {
        Route53RouterBuilder {
            client,
            zone_id: hosted_zone_id.to_owned(),
            name: record_name.to_owned(),
            record_type: Route53RecordType::A,
            ttl: Duration::from_secs(60),
            any_ttl: false,
            margin: Duration::from_secs(5),
            pools: Vec::new(),
            health_checks: Vec::new(),
            change_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
            clock: None,
            hosts: Vec::new(),
        }
    }

    /// How many `ChangeResourceRecordSets` batches this router (and its clones) sent.
    pub fn change_batches_sent(&self) -> u64 {
        self.inner.batches_sent.load(Ordering::Relaxed)
    }

    /// The TTL of the records written.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.inner.ttl).unwrap_or(0))
    }

    /// The record name, normalized (lower case, final dot).
    pub fn record_name(&self) -> &str {
        &self.inner.name
    }

    /// Checks that the hosted zone exists and the record name is in it (once per router; every
    /// other call does this first, so no change is sent into a wrong zone).
    ///
    /// # Errors
    /// [`Error::NotFound`] naming the hosted zone; [`Error::Invalid`] (`record_name`) when the
    /// name is outside the zone; [`Error::Backend`] when Route53 cannot be asked.
    pub async fn check(&self) -> Result<()> {
        self.inner.ensure_zone().await
    }

    fn known(&self, pool: &PoolName) -> Result<()> {
        settings::known(&self.inner.pools, pool, BACKEND, &self.inner.name)
    }
}

impl Inner {
    fn rr_type(&self) -> RrType {
        match self.family {
            Family::V4 => RrType::A,
            Family::V6 => RrType::Aaaa,
        }
    }

    fn zone(&self) -> String {
        format!("hosted zone {}", self.zone_id)
    }

    /// How long a change takes to be in effect, and a drain lasts: TTL + margin.
    fn delay(&self) -> Duration {
        self.wait_for(self.ttl)
    }

    /// How long answers cached before a change may still be handed out after it is `INSYNC`:
    /// the longer of the configured TTL and `seen` (the TTL on the sets before the change), plus
    /// the margin.
    fn wait_for(&self, seen: i64) -> Duration {
        Duration::from_secs(u64::try_from(seen.max(self.ttl)).unwrap_or(0)) + self.margin
    }

    /// The wait after a change from `state`, warning when the sets had a TTL above the
    /// configured one (record sets taken over, or a foreign set with traffic).
    fn wait_after(&self, state: &State, what: &str) -> Duration {
        let seen = state.ttl_seen();
        if seen > self.ttl {
            tracing::warn!(
                name = %self.name,
                ttl_seen = seen,
                ttl = self.ttl,
                "Route53 {what}: weighted record sets at the name had a TTL of {seen} s, above the configured {} s; \
                 resolvers may keep their answers that long, so the wait is {seen} s + margin",
                self.ttl
            );
        }
        self.wait_for(seen)
    }
}

#[async_trait]
impl Router for Route53Router {
    fn name(&self) -> &str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::load_balancer()
            .with_weighted_split(true)
            .with_weight_granularity(1)
            .with_per_target_drain(false)
            .with_atomic_swap(true)
            .with_propagation_delay(self.inner.delay())
            .with_observes_in_flight(false)
            .with_adopts(!self.inner.hosts.is_empty())
    }

    async fn pools(&self) -> Result<Vec<PoolName>> {
        self.inner.ensure_zone().await?;
        Ok(self.inner.pools.clone())
    }

    async fn split(&self) -> Result<Split> {
        let i = &self.inner;
        i.ensure_zone().await?;
        // A simple record set (taken over from before bluegreen) counts by its values' pools,
        // which the members say.
        let state = if i.hosts.is_empty() { i.read_answers().await? } else { i.read().await? };
        state.split()
    }

    async fn set_split(&self, split: &Split) -> Result<()> {
        split.validate("split")?;
        for (pool, _) in split.iter() {
            self.known(pool)?;
        }
        let i = &self.inner;
        let (state, synced) = i
            .update(|state| {
                if let Some((id, w)) = state.foreign.iter().find(|(_, w)| *w > 0) {
                    return Err(Error::drift(format!(
                        "weighted record set {id:?} at {} gets traffic (weight {w}) and is no pool of this router ({})",
                        i.name,
                        i.pools.iter().map(PoolName::as_str).collect::<Vec<_>>().join(", ")
                    )));
                }
                let members = state.members();
                desired(&i.pools, &state.answers(), &members, &members, Weights::Split(split), i.ttl)
            })
            .await
            .map(|(state, _, synced)| (state, synced))?;
        // The caller waits the configured TTL + margin; sets that had a longer TTL (taken over)
        // are cached longer, so that wait is done here.
        if let (Some(synced), true) = (synced, state.ttl_seen() > i.ttl) {
            tokio::time::sleep_until(synced.at + i.wait_after(&state, "split change")).await;
        }
        Ok(())
    }

    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.known(pool)?;
        let i = &self.inner;
        let added = i.family.members(targets)?;
        i.update(|state| {
            let old = state.members();
            let mut members = old.clone();
            let list = members.entry(pool.clone()).or_default();
            for new in added {
                bookkeeping::put(list, new);
            }
            desired(&i.pools, &state.answers(), &old, &members, Weights::Current, i.ttl)
        })
        .await?;
        Ok(())
    }

    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        self.known(pool)?;
        self.inner.drain(pool, targets, timeout).await
    }

    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.known(pool)?;
        let i = &self.inner;
        i.update(|state| {
            let old = state.members();
            let mut members = old.clone();
            if let Some(list) = members.get_mut(pool) {
                list.retain(|m| !targets.contains(&m.id));
            }
            desired(&i.pools, &state.answers(), &old, &members, Weights::Current, i.ttl)
        })
        .await?;
        Ok(())
    }

    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.known(pool)?;
        let i = &self.inner;
        i.ensure_zone().await?;
        if !i.hosts.is_empty() {
            // With hosts, values served unmanaged count as their hosts' members: the record
            // sets are read with the bookkeeping.
            let (now, delay) = (unix_now(&i.clock), i.delay());
            let mut state = i.read().await?;
            let members = state.members.remove(pool).map(|(_, m)| m).unwrap_or_default();
            return Ok(members.into_iter().map(|m| m.reported(now, delay)).collect());
        }
        let name = &i.pool_meta[pool];
        let sets = i.meta_sets().await?;
        let (now, delay) = (unix_now(&i.clock), i.delay());
        Ok(sets
            .iter()
            .filter(|s| normalize(s.name()) == *name)
            .flat_map(|s| s.resource_records())
            .filter_map(|r| parse_txt(r.value(), i.family))
            .map(|m| m.reported(now, delay))
            .collect())
    }

    /// The hosts ([`Route53RouterBuilder::host`]) whose addresses the name serves with no
    /// member record (`A 10.0.0.11 (www.example.test.)`).
    async fn unmanaged(&self) -> Result<Vec<Adoption>> {
        let i = &self.inner;
        if i.hosts.is_empty() {
            return Ok(Vec::new());
        }
        i.ensure_zone().await?;
        let state = i.read().await?;
        Ok(state.unmanaged.iter().map(|h| bookkeeping::adoption(h, i.family, &i.name)).collect())
    }

    /// Writes the member records of `adoptions` in one batch that also deletes and puts back,
    /// unchanged, every address record set holding them: Route53 applies the batch only if
    /// those sets are exactly as read and the member sets as read (a concurrent change fails
    /// it, retryably), and nothing answered changes. Adoptions already recorded send nothing.
    async fn adopt(&self, adoptions: &[Adoption]) -> Result<()> {
        self.inner.adopt(adoptions).await
    }
}
