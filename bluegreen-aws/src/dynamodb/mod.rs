//! The DynamoDB state store: one table, conditional writes, lease fencing.
//!
//! The table layout and the write protocol are documented on [`DynamoDbStore`].
//!
//! One idea a file, imports pointing one way (leaves first):
//!
//! - `keys`: the table's keys (`pk`, `sk`) for every kind of item, and which strings can be keys;
//! - `item`: attribute values, and reading them back (the format version, corrupt items);
//! - `access`: the calls to DynamoDB (get, query, conditional writes, transactions);
//! - `lease`: the lock item: taking, renewing and releasing a lease, and fencing writes with it;
//! - `records`: deployment records and the pointer from a deployment to its service;
//! - `queue`: the queue of deployments waiting for a service's lock;
//! - `commands`: the numbered command log of a deployment;
//! - `events`: the event log of a deployment, written in chunks under the lease.
//!
//! This file holds the [`DynamoDbStore`] type and its [`StateStore`] impl, which hands every call
//! to those modules.

use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use bluegreen_core::state::lease::millis as ms;
use bluegreen_core::state::{system_clock, Clock, Command, CommandRecord, DeploymentRecord, Lease, StateStore};
use bluegreen_core::{Error, Event, Result};

mod access;
mod config;

pub use config::DynamoDbStateConfig;
mod commands;
mod events;
mod item;
mod keys;
mod lease;
mod queue;
mod records;

use item::{check_version, Item};

/// Keeps deployments, locks, queues and commands in one DynamoDB table shared by every process
/// and host that uses it.
///
/// # Table
///
/// One table with a string partition key `pk` and a string sort key `sk` (on-demand capacity is
/// enough: a deployment writes a few items per step). Items:
///
/// | pk | sk | what | attributes |
/// |---|---|---|---|
/// | `service#<service>` | `lock` | the service's lease | `owner`, `fence`, `expires_at`, `held`, `rev` |
/// | `service#<service>` | `deployment#<id>` | one [`DeploymentRecord`] | `record` (the record as JSON), `id`, `service`, `phase`, `owner`, `created_at`, `updated_at` |
/// | `service#<service>` | `queue#<id>` | a deployment waiting for the lock | `id`, `seq`, `expires_at` |
/// | `service#<service>` | `queue-seq` | the queue's arrival counter | `n` |
/// | `deployment#<id>` | `deployment` | which service deployment `<id>` belongs to | `service` |
/// | `deployment#<id>` | `command#<seq, 20 digits>` | one command sent to it | `seq`, `command`, `sent_at` |
/// | `deployment#<id>` | `event#<seq, 20 digits>` | one event of its log | `seq`, `event` (the event as JSON) |
///
/// Every item but the counter carries `format_version`; an item of a newer format, or whose
/// record does not parse, gives [`Error::Corrupt`] naming it (`dynamodb://TABLE/PK/SK`) and is
/// never overwritten. Times are Unix milliseconds from the store's clock.
///
/// # Writes
///
/// - The lock item changes only by conditional writes: taking it is a put conditioned on the
///   `rev` read just before (or on the item not existing), so of two racing owners one wins and
///   the other reads again and sees the lock held (or, under the same owner name, takes it over
///   with the next fence); renewal and release are updates conditioned on `held`, `fence` and
///   `owner` matching the caller's lease.
/// - A record is created and saved in a transaction with a condition check on the lock item
///   (held, same fence, same owner): a write from an owner whose lease was taken over is refused
///   with [`Error::Conflict`], atomically.
/// - Commands are numbered by a put conditioned on the next sequence number being free, so the
///   log has no gaps and a reader that has seen `n` never misses a later command.
/// - Events are put in transactions of up to 99 with the same condition check on the lock item,
///   so an owner whose lease was taken over adds none; each event's item is keyed by its `seq`, so
///   a retried append rewrites the same items.
///
/// # IAM
///
/// On the table: `dynamodb:GetItem`, `dynamodb:PutItem`, `dynamodb:UpdateItem`,
/// `dynamodb:DeleteItem`, `dynamodb:Query` and `dynamodb:ConditionCheckItem`. `create` and `save`
/// call `TransactWriteItems`, which IAM authorizes per contained operation (a condition check and
/// one or two puts), so it needs no action of its own.
#[derive(Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
    clock: Clock,
}

impl std::fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbStore").field("table", &self.table).finish_non_exhaustive()
    }
}

impl DynamoDbStore {
    /// A store on `table`, with clients from `config` (see [`AwsConfig`](crate::AwsConfig)), on
    /// the system clock. The table must exist (see [the layout](DynamoDbStore#table)).
    pub fn new(config: &SdkConfig, table: impl Into<String>) -> Self {
        Self::from_client(Client::new(config), table)
    }

    /// A store on `table` through an existing client.
    pub fn from_client(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), clock: system_clock() }
    }

    /// Reads `clock` for lease and queue times instead of the system clock (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The DynamoDB client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn now(&self) -> u64 {
        (self.clock)().duration_since(UNIX_EPOCH).map_or(0, ms)
    }

    fn item_name(&self, pk: &str, sk: &str) -> String {
        format!("dynamodb://{}/{pk}/{sk}", self.table)
    }

    /// The name of a queried item of partition `pk`, once its format is one this build reads.
    fn readable(&self, pk: &str, item: &Item) -> Result<String> {
        let sk = item.get("sk").and_then(|v| v.as_s().ok()).map_or("", String::as_str);
        let name = self.item_name(pk, sk);
        check_version(item, &name)?;
        Ok(name)
    }
}

#[async_trait]
impl StateStore for DynamoDbStore {
    async fn create(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
        self.create_record(record, lease).await
    }

    async fn save(&self, record: &DeploymentRecord, lease: &Lease) -> Result<()> {
        self.save_record(record, lease).await
    }

    async fn load(&self, id: &str) -> Result<DeploymentRecord> {
        let service = self.service_of(id).await?.ok_or_else(|| Error::not_found(format!("deployment {id}")))?;
        self.read_record(&service, id).await?.ok_or_else(|| Error::not_found(format!("deployment {id}")))
    }

    async fn history(&self, service: &str) -> Result<Vec<DeploymentRecord>> {
        self.record_history(service).await
    }

    async fn acquire(&self, service: &str, owner: &str, ttl: Duration) -> Result<Lease> {
        self.acquire_lease(service, owner, ttl).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        self.renew_lease(lease, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.release_lease(lease).await
    }

    async fn holder(&self, service: &str) -> Result<Option<Lease>> {
        self.lease_holder(service).await
    }

    async fn enqueue(&self, service: &str, id: &str, ttl: Duration) -> Result<Vec<String>> {
        self.join_queue(service, id, ttl).await
    }

    async fn dequeue(&self, service: &str, id: &str) -> Result<()> {
        self.leave_queue(service, id).await
    }

    async fn send(&self, id: &str, command: Command) -> Result<u64> {
        self.send_command(id, command).await
    }

    async fn commands(&self, id: &str, after: u64) -> Result<Vec<CommandRecord>> {
        self.read_commands(id, after).await
    }

    async fn append_events(&self, id: &str, events: &[Event], lease: &Lease) -> Result<()> {
        self.write_events(id, events, lease).await
    }

    async fn events(&self, id: &str) -> Result<Vec<Event>> {
        self.read_events(id).await
    }
}
