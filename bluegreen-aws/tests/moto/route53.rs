//! Route53 set-up in moto for the tests, and the helpers the Route53 router tests share: a
//! sim fleet with real IPv4 addresses, a router wrapper that counts change batches per call, and
//! listings of the zone as Route53 serves it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_route53::types::RrType;
use bluegreen_aws::Route53Router;
use bluegreen_core::{
    Capabilities, DrainReport, Fleet, Member, PoolName, ProvisionRequest, Result, Router, Split, Target, TargetId,
    Version,
};

use super::Moto;

/// The zone the tests create, and the name they route.
pub(crate) const ZONE: &str = "example.test.";
/// The record name the tests route.
pub(crate) const NAME: &str = "www.example.test.";

impl Moto {
    /// Creates a public hosted zone named `name`; returns its id without `/hostedzone/`.
    pub(crate) async fn create_zone(&self, client: &aws_sdk_route53::Client, name: &str) -> String {
        let out = client
            .create_hosted_zone()
            .name(name)
            .caller_reference(format!("bluegreen-test-{name}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("create_hosted_zone: {}", aws_sdk_route53::error::DisplayErrorContext(e)));
        let id = out.hosted_zone().expect("a hosted zone").id();
        id.trim_start_matches("/hostedzone/").to_owned()
    }
}

/// Every record set of the zone, one line each (sorted), as `ListResourceRecordSets` returns it.
pub(crate) async fn zone_listing(client: &aws_sdk_route53::Client, zone_id: &str) -> Vec<String> {
    let out =
        client.list_resource_record_sets().hosted_zone_id(zone_id).max_items(300).send().await.unwrap_or_else(|e| {
            panic!("list_resource_record_sets: {}", aws_sdk_route53::error::DisplayErrorContext(e))
        });
    assert!(!out.is_truncated(), "more than 300 record sets in the test zone");
    let mut lines: Vec<String> = out.resource_record_sets().iter().map(|s| format!("{s:?}")).collect();
    lines.sort();
    lines
}

/// The weighted A record sets at `name`: `SetIdentifier` → (weight, values).
pub(crate) async fn weights_at(
    client: &aws_sdk_route53::Client,
    zone_id: &str,
    name: &str,
) -> BTreeMap<String, (i64, Vec<String>)> {
    let out = client
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(name)
        .start_record_type(RrType::A)
        .send()
        .await
        .expect("list_resource_record_sets");
    out.resource_record_sets()
        .iter()
        .filter(|s| s.name() == name && *s.r#type() == RrType::A)
        .map(|s| {
            let values = s.resource_records().iter().map(|r| r.value().to_owned()).collect();
            (s.set_identifier().unwrap_or("-").to_owned(), (s.weight().unwrap_or(-1), values))
        })
        .collect()
}

/// One `set_split` through [`Counting`]: what was asked and how many change batches it sent.
#[derive(Debug, Clone)]
pub(crate) struct SplitCall {
    /// The split asked for.
    pub(crate) split: Split,
    /// Change batches sent by this call.
    pub(crate) batches: u64,
}

/// A [`Route53Router`] that records, for every `set_split`, the change batches it sent.
#[derive(Debug)]
pub(crate) struct Counting {
    pub(crate) router: Route53Router,
    pub(crate) calls: Mutex<Vec<SplitCall>>,
}

impl Counting {
    pub(crate) fn new(router: Route53Router) -> Arc<Self> {
        Arc::new(Self { router, calls: Mutex::new(Vec::new()) })
    }

    pub(crate) fn calls(&self) -> Vec<SplitCall> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Router for Counting {
    fn name(&self) -> &str {
        self.router.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.router.capabilities()
    }
    async fn pools(&self) -> Result<Vec<PoolName>> {
        self.router.pools().await
    }
    async fn split(&self) -> Result<Split> {
        self.router.split().await
    }
    async fn set_split(&self, split: &Split) -> Result<()> {
        let before = self.router.change_batches_sent();
        let result = self.router.set_split(split).await;
        let batches = self.router.change_batches_sent() - before;
        self.calls.lock().unwrap().push(SplitCall { split: split.clone(), batches });
        result
    }
    async fn add_targets(&self, pool: &PoolName, targets: &[Target]) -> Result<()> {
        self.router.add_targets(pool, targets).await
    }
    async fn drain(&self, pool: &PoolName, targets: &[TargetId], timeout: std::time::Duration) -> Result<DrainReport> {
        self.router.drain(pool, targets, timeout).await
    }
    async fn remove_targets(&self, pool: &PoolName, targets: &[TargetId]) -> Result<()> {
        self.router.remove_targets(pool, targets).await
    }
    async fn members(&self, pool: &PoolName) -> Result<Vec<Member>> {
        self.router.members(pool).await
    }
}

/// The simulator's fleet with IPv4 addresses (10.1.0.x), so its targets can be A records.
#[derive(Debug)]
pub(crate) struct Ipv4Fleet {
    inner: Arc<dyn Fleet>,
    addresses: Mutex<BTreeMap<TargetId, Ipv4Addr>>,
}

impl Ipv4Fleet {
    pub(crate) fn new(inner: Arc<dyn Fleet>) -> Arc<Self> {
        Arc::new(Self { inner, addresses: Mutex::new(BTreeMap::new()) })
    }

    fn with_address(&self, mut t: Target) -> Target {
        let mut map = self.addresses.lock().unwrap();
        let next = Ipv4Addr::new(10, 1, 0, u8::try_from(map.len() + 1).unwrap());
        let ip = *map.entry(t.id.clone()).or_insert(next);
        t.address = format!("{ip}:8080");
        t
    }
}

#[async_trait]
impl Fleet for Ipv4Fleet {
    fn name(&self) -> &str {
        "sim-ipv4"
    }
    async fn provision(&self, request: &ProvisionRequest) -> Result<Vec<Target>> {
        Ok(self.inner.provision(request).await?.into_iter().map(|t| self.with_address(t)).collect())
    }
    async fn update(&self, target: &TargetId, version: &Version) -> Result<Target> {
        Ok(self.with_address(self.inner.update(target, version).await?))
    }
    async fn retire(&self, targets: &[TargetId]) -> Result<()> {
        self.inner.retire(targets).await
    }
    async fn list(&self) -> Result<Vec<Target>> {
        Ok(self.inner.list().await?.into_iter().map(|t| self.with_address(t)).collect())
    }
}
