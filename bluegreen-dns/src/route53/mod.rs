//! [`Route53Router`]: blue-green and weighted splits over Route53 weighted record sets.

mod builder;
mod records;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_route53::error::SdkError;
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError;
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use aws_sdk_route53::Client;
use bluegreen_core::state::Clock;
use bluegreen_core::{
    Capabilities, DrainReport, Error, Member, MemberState, PoolName, Result, Router, Split, Target, TargetId,
};
use tokio::time::Instant;

pub use builder::Route53RouterBuilder;
pub use records::Route53RecordType;
use records::{desired, in_zone, normalize, served_split, storable, Answer, DesiredPool, MemberRecord, Weights};

use bluegreen_aws::error::aws_error;

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
///   [`Draining`](MemberState::Draining) until that time + TTL + margin, then `Disabled`, and a
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
    record_type: Route53RecordType,
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
}

impl fmt::Debug for Route53Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Route53Router")
            .field("hosted_zone_id", &i.zone_id)
            .field("name", &i.name)
            .field("record_type", &i.record_type)
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
        if self.inner.pools.contains(pool) {
            Ok(())
        } else {
            let known: Vec<&str> = self.inner.pools.iter().map(PoolName::as_str).collect();
            Err(Error::not_found(format!(
                "pool \"{pool}\" (the {BACKEND} router for {} knows {})",
                self.inner.name,
                known.join(", ")
            )))
        }
    }
}

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
struct Synced {
    at: Instant,
    at_once: bool,
}

fn built<T, E: std::error::Error>(what: &str, r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| Error::permanent(BACKEND, format!("cannot build the {what}: {e}")))
}

/// Everything the router keeps in the zone, as read in one pass.
#[derive(Debug, Clone, Default)]
struct State {
    /// The pools' weighted sets: as listed (for DELETE, which must match exactly) and as answer.
    answers: BTreeMap<PoolName, (ResourceRecordSet, Answer)>,
    /// Weighted sets at the name that are no pool of this router: `(SetIdentifier, weight)`.
    foreign: Vec<(String, i64)>,
    /// The longest TTL of those foreign sets that get traffic (weight above 0).
    foreign_ttl: i64,
    /// The pools' TXT sets as listed, and their members.
    members: BTreeMap<PoolName, (Option<ResourceRecordSet>, Vec<MemberRecord>)>,
}

impl State {
    fn members(&self) -> BTreeMap<PoolName, Vec<MemberRecord>> {
        self.members.iter().map(|(p, (_, m))| (p.clone(), m.clone())).collect()
    }

    fn answers(&self) -> BTreeMap<PoolName, Answer> {
        self.answers.iter().map(|(p, (_, a))| (p.clone(), a.clone())).collect()
    }

    /// The longest TTL on the weighted sets that may have been answered with: the pools' and
    /// foreign ones with traffic.
    fn ttl_seen(&self) -> i64 {
        self.answers.values().map(|(_, a)| a.ttl).fold(self.foreign_ttl, i64::max)
    }

    /// The split Route53 answers with, over every weighted set at the name.
    fn split(&self) -> Result<Split> {
        let mut sets: Vec<(PoolName, i64)> = self.answers.iter().map(|(p, (_, a))| (p.clone(), a.weight)).collect();
        sets.extend(self.foreign.iter().map(|(id, w)| (PoolName::from(id.as_str()), *w)));
        served_split(&sets)
    }
}

/// What to do with a record set listed by `ListResourceRecordSets`.
enum Listed {
    Take,
    Skip,
    Stop,
}

fn answer_of(set: &ResourceRecordSet) -> Answer {
    let mut values: Vec<String> = set.resource_records().iter().map(|r| r.value().to_owned()).collect();
    values.sort();
    values.dedup();
    Answer {
        weight: set.weight().unwrap_or(0),
        ttl: set.ttl().unwrap_or(0),
        values,
        health_check: set.health_check_id().map(str::to_owned),
    }
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
    let mut v: Vec<String> = members.iter().map(MemberRecord::txt).collect();
    v.sort();
    v
}

impl Inner {
    fn rr_type(&self) -> RrType {
        match self.record_type {
            Route53RecordType::A => RrType::A,
            Route53RecordType::Aaaa => RrType::Aaaa,
        }
    }

    fn zone(&self) -> String {
        format!("hosted zone {}", self.zone_id)
    }

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

    /// The wall time, since the Unix epoch.
    fn wall(&self) -> Duration {
        (self.clock)().duration_since(UNIX_EPOCH).unwrap_or_default()
    }

    /// The wall time in unix seconds, rounded up (a drain's time errs late).
    fn wall_secs(&self) -> u64 {
        let now = self.wall();
        now.as_secs() + u64::from(now.subsec_nanos() > 0)
    }

    async fn ensure_zone(&self) -> Result<()> {
        self.zone_checked
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_hosted_zone()
                    .id(&self.zone_id)
                    .send()
                    .await
                    .map_err(|e| aws_error("route53:GetHostedZone", &self.zone(), e))?;
                let zone = normalize(out.hosted_zone().map(|z| z.name()).unwrap_or_default());
                if !in_zone(&self.name, &zone) {
                    return Err(Error::invalid(
                        "record_name",
                        format!("{} is outside {} ({zone})", self.name, self.zone()),
                    ));
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Lists record sets from `(name, rtype)` on, keeping what `pick` takes, until it stops.
    async fn list(
        &self,
        name: &str,
        rtype: Option<RrType>,
        pick: impl Fn(&ResourceRecordSet) -> Listed,
    ) -> Result<Vec<ResourceRecordSet>> {
        let resource = format!("{name} in {}", self.zone());
        let (mut next_name, mut next_type, mut next_id) = (Some(name.to_owned()), rtype, None::<String>);
        let mut out = Vec::new();
        loop {
            let page = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(&self.zone_id)
                .set_start_record_name(next_name.take())
                .set_start_record_type(next_type.take())
                .set_start_record_identifier(next_id.take())
                .max_items(PAGE)
                .send()
                .await
                .map_err(|e| aws_error("route53:ListResourceRecordSets", &resource, e))?;
            for set in page.resource_record_sets() {
                match pick(set) {
                    Listed::Take => out.push(set.clone()),
                    Listed::Skip => {}
                    Listed::Stop => return Ok(out),
                }
            }
            if !page.is_truncated() || page.next_record_name().is_none() {
                return Ok(out);
            }
            next_name = page.next_record_name().map(str::to_owned);
            next_type = page.next_record_type().cloned();
            next_id = page.next_record_identifier().map(str::to_owned);
        }
    }

    /// The record sets at the name with the pools' type.
    async fn answer_sets(&self) -> Result<Vec<ResourceRecordSet>> {
        let rtype = self.rr_type();
        self.list(&self.name, Some(rtype.clone()), |set| {
            if normalize(set.name()) == self.name && *set.r#type() == rtype {
                Listed::Take
            } else {
                Listed::Stop
            }
        })
        .await
    }

    /// The bookkeeping TXT sets under `_bluegreen.<name>` (one listing: they sort together).
    async fn meta_sets(&self) -> Result<Vec<ResourceRecordSet>> {
        let suffix = format!(".{}", self.meta);
        self.list(&self.meta, None, |set| {
            let name = normalize(set.name());
            if name == self.meta {
                Listed::Skip
            } else if name.ends_with(&suffix) {
                if *set.r#type() == RrType::Txt {
                    Listed::Take
                } else {
                    Listed::Skip
                }
            } else {
                Listed::Stop
            }
        })
        .await
    }

    /// The pools' weighted sets and the foreign ones (one listing; enough for the split).
    async fn read_answers(&self) -> Result<State> {
        let mut state = State::default();
        for set in self.answer_sets().await? {
            let Some(id) = set.set_identifier() else {
                return Err(Error::drift(format!(
                    "{} has a simple (unweighted) {} record in {}: a weighted record set cannot be next to it",
                    self.name,
                    self.record_type.as_str(),
                    self.zone()
                )));
            };
            let Some(weight) = set.weight() else {
                return Err(Error::drift(format!(
                    "{} {} record set {id:?} in {} has a routing policy other than weighted",
                    self.name,
                    self.record_type.as_str(),
                    self.zone()
                )));
            };
            let pool = PoolName::from(id);
            if self.pools.contains(&pool) {
                let answer = answer_of(&set);
                state.answers.insert(pool, (set, answer));
            } else {
                if weight > 0 {
                    state.foreign_ttl = state.foreign_ttl.max(set.ttl().unwrap_or(0));
                }
                state.foreign.push((id.to_owned(), weight));
            }
        }
        Ok(state)
    }

    /// Everything: the weighted sets and the members.
    async fn read(&self) -> Result<State> {
        let mut state = self.read_answers().await?;
        let meta = self.meta_sets().await?;
        for (pool, name) in &self.pool_meta {
            let set = meta.iter().find(|s| normalize(s.name()) == *name).cloned();
            let members = set
                .iter()
                .flat_map(|s| s.resource_records())
                .filter_map(|r| MemberRecord::parse(r.value(), self.record_type))
                .collect();
            state.members.insert(pool.clone(), (set, members));
        }
        Ok(state)
    }

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
            .map_err(|e| change_error(&format!("{} in {}", self.name, self.zone()), e))?;
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
        self.verify(desired).await?;
        Ok(Some(synced))
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
                    what: format!("the {} record set of pool {pool} at {}", self.record_type.as_str(), self.name),
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
    async fn update(
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
    }

    async fn pools(&self) -> Result<Vec<PoolName>> {
        self.inner.ensure_zone().await?;
        Ok(self.inner.pools.clone())
    }

    async fn split(&self) -> Result<Split> {
        self.inner.ensure_zone().await?;
        self.inner.read_answers().await?.split()
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
        let mut added = Vec::new();
        for (n, t) in targets.iter().enumerate() {
            storable(&format!("targets[{n}].id"), "a target id", t.id.as_str())?;
            storable(&format!("targets[{n}].address"), "a target address", &t.address)?;
            let ip = i.record_type.address_of(&t.address).ok_or_else(|| {
                Error::invalid(
                    format!("targets[{n}].address"),
                    format!(
                        "target {}: an {} record needs an IP{} address (or address:port), not {:?}",
                        t.id,
                        i.record_type.as_str(),
                        if i.record_type == Route53RecordType::A { "v4" } else { "v6" },
                        t.address
                    ),
                )
            })?;
            added.push(MemberRecord {
                id: t.id.clone(),
                address: t.address.clone(),
                ip,
                state: MemberState::Serving,
                disabled_at: None,
            });
        }
        i.update(|state| {
            let old = state.members();
            let mut members = old.clone();
            let list = members.entry(pool.clone()).or_default();
            for new in added {
                match list.iter_mut().find(|m| m.id == new.id) {
                    Some(m) => *m = new,
                    None => list.push(new),
                }
            }
            desired(&i.pools, &state.answers(), &old, &members, Weights::Current, i.ttl)
        })
        .await?;
        Ok(())
    }

    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: Duration) -> Result<DrainReport> {
        self.known(pool)?;
        let started = Instant::now();
        let i = &self.inner;
        let mut drained_at = 0;
        let (state, want, synced) = i
            .update(|state| {
                let old = state.members();
                let mut members = old.clone();
                let list = members.entry(pool.clone()).or_default();
                let mut newly = Vec::new();
                for id in targets {
                    let m = list
                        .iter_mut()
                        .find(|m| m.id == *id)
                        .ok_or_else(|| Error::not_found(format!("target {id} in pool {pool}")))?;
                    // A member already disabled keeps its record (and the time of its drain).
                    if m.state == MemberState::Serving {
                        m.state = MemberState::Disabled;
                        newly.push(m.id.clone());
                    }
                }
                let mut desired = desired(&i.pools, &state.answers(), &old, &members, Weights::Current, i.ttl)?;
                // The drain's time goes with the members whose value this batch withdraws (an
                // estimate, corrected once the batch is `INSYNC`); the others have nothing to
                // wait for.
                drained_at = i.wall_secs();
                let has = |a: Option<&Answer>, ip: IpAddr| {
                    a.is_some_and(|a| a.values.iter().any(|v| v.parse::<IpAddr>().ok() == Some(ip)))
                };
                let before = state.answers.get(pool).map(|(_, a)| a);
                if let Some(want) = desired.get_mut(pool) {
                    let after = want.answer.clone();
                    for m in want.members.iter_mut().filter(|m| newly.contains(&m.id)) {
                        m.disabled_at = (has(before, m.ip) && !has(after.as_ref(), m.ip)).then_some(drained_at);
                    }
                }
                Ok(desired)
            })
            .await?;
        // DNS draining is TTL-based: a resolver may hand out a removed value until the answer
        // it cached before the change was in sync expires.
        let withdrawn = state.answers.iter().any(|(pool, (_, before))| {
            let after = want.get(pool).and_then(|d| d.answer.as_ref());
            before.values.iter().any(|v| !after.is_some_and(|a| a.values.contains(v)))
        });
        // When the members this batch drained are recorded as in sync (if it drained any).
        let mut recorded = want
            .get(pool)
            .is_some_and(|w| w.members.iter().any(|m| targets.contains(&m.id) && m.disabled_at == Some(drained_at)))
            .then_some(drained_at);
        let mut until = None::<Instant>;
        if let (true, Some(synced)) = (withdrawn, synced) {
            until = Some(synced.at + i.wait_after(&state, "drain"));
            if let (false, Some(at)) = (synced.at_once, recorded) {
                // The batch was PENDING for a while: record when it was seen INSYNC, so that a
                // resumed drain (or another process) waits from then.
                let mut now = at;
                let confirmed = i
                    .update(|state| {
                        let old = state.members();
                        let mut members = old.clone();
                        now = i.wall_secs();
                        for m in members.entry(pool.clone()).or_default() {
                            if targets.contains(&m.id) && m.state == MemberState::Disabled && m.disabled_at == Some(at)
                            {
                                m.disabled_at = Some(now);
                            }
                        }
                        desired(&i.pools, &state.answers(), &old, &members, Weights::Current, i.ttl)
                    })
                    .await;
                match confirmed {
                    Ok(_) => recorded = Some(now),
                    Err(err) => tracing::warn!(
                        name = %i.name, pool = %pool, error = %err,
                        "could not record when the drain's change was INSYNC"
                    ),
                }
            }
        }
        // The recorded time is rounded up: wait for it too, so that members() reports the
        // targets disabled once this returns. Targets drained before (a step re-run after a
        // crash, another process): the rest of their wait, from the time recorded with them.
        let now = i.wall();
        let members = state.members.get(pool).map(|(_, m)| m.as_slice()).unwrap_or_default();
        let before = members.iter().filter(|m| targets.contains(&m.id) && m.state == MemberState::Disabled);
        for at in before.filter_map(|m| m.disabled_at).chain(recorded) {
            let end = Duration::from_secs(at) + i.delay();
            if end > now {
                let end = Instant::now() + (end - now);
                until = Some(until.map_or(end, |u| u.max(end)));
            }
        }
        let mut timed_out = false;
        if let Some(until) = until {
            let deadline = started + timeout;
            timed_out = until > deadline;
            tokio::time::sleep_until(until.min(deadline)).await;
        }
        Ok(DrainReport { in_flight_at_start: None, in_flight_at_end: None, timed_out, elapsed: started.elapsed() })
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
        let name = &i.pool_meta[pool];
        let sets = i.meta_sets().await?;
        let now = i.wall();
        Ok(sets
            .iter()
            .filter(|s| normalize(s.name()) == *name)
            .flat_map(|s| s.resource_records())
            .filter_map(|r| MemberRecord::parse(r.value(), i.record_type))
            .map(|m| Member { state: m.state_at(now, i.delay()), id: m.id, in_flight: None })
            .collect())
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
