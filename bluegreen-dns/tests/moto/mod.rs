//! Route53 in a `moto_server` (the AWS API emulator, started by `bluegreen_testkit::moto`) for
//! the tests, and the helpers the Route53 router tests share: a range of IPv4 addresses for the
//! simulated targets, a router wrapper that counts change batches per call, and listings of the
//! zone as Route53 serves it. The CLI's Route53 test uses it too.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::types::RrType;
use bluegreen_aws::AwsConfig;
use bluegreen_core::layers::{Recorder, RecordingRouter, RouterOp};
use bluegreen_core::{Router, Split};
use bluegreen_dns::Route53Router;
use bluegreen_testkit::moto::{MotoServer, CREDENTIALS, REGION};

/// The zone the tests create, and the name they route.
pub(crate) const ZONE: &str = "example.test.";
/// The record name the tests route.
pub(crate) const NAME: &str = "www.example.test.";

/// Route53 in a [`MotoServer`]: its clients' configuration and the zones the tests make.
pub(crate) trait Route53Moto {
    /// The configuration for Route53 clients of this server: fake static credentials,
    /// us-east-1, calls bounded to a minute, and no client-side rate limit worth the name
    /// (Route53's real one, 5 calls a second, would only slow the tests down: moto has none).
    fn config(&self) -> AwsConfig;

    /// Creates a public hosted zone named `name`; returns its id without `/hostedzone/`.
    async fn create_zone(&self, client: &aws_sdk_route53::Client, name: &str) -> String;
}

impl Route53Moto for MotoServer {
    fn config(&self) -> AwsConfig {
        AwsConfig::new()
            .region(REGION)
            .endpoint_url(&self.endpoint)
            .static_credentials(CREDENTIALS.0, CREDENTIALS.1)
            .operation_timeout(Duration::from_secs(60))
            .rate_limit("route53", 200.0, 200)
    }

    async fn create_zone(&self, client: &aws_sdk_route53::Client, name: &str) -> String {
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

/// A [`Route53Router`] under a [`RecordingRouter`] that counts, for every call, the change
/// batches it sent.
#[derive(Debug, Clone)]
pub(crate) struct Counting {
    /// The router itself, for reading it back outside the recording.
    pub(crate) router: Route53Router,
    /// The recording router, for the executor.
    pub(crate) recording: Arc<dyn Router>,
    recorder: Recorder,
}

impl Counting {
    pub(crate) fn new(router: Route53Router) -> Self {
        let counted = router.clone();
        let recording =
            RecordingRouter::new(Arc::new(router.clone())).with_counter(move || counted.change_batches_sent());
        Self { router, recorder: recording.recorder(), recording: Arc::new(recording) }
    }

    /// Every `set_split` so far, with the change batches each sent.
    pub(crate) fn calls(&self) -> Vec<SplitCall> {
        let calls = self.recorder.calls_of(RouterOp::SetSplit).into_iter();
        calls
            .map(|c| SplitCall { split: c.request.split.unwrap_or_default(), batches: c.counted.unwrap_or(0) })
            .collect()
    }
}

/// Where the tests' simulated targets take their IPv4 addresses from (`10.1.0.1`, `10.1.0.2`, …),
/// so they can be A records.
pub(crate) const IPV4_FROM: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
