//! The AWS kinds end to end against moto server (the AWS API emulator, started on 127.0.0.1 by
//! the harnesses shared with bluegreen-aws's tests and, for Route53, bluegreen-dns's): `kind = "alb"` with the DynamoDB state
//! store, the ARNs fed from a `terraform output -json` file. Moto reports registered targets
//! `healthy` at once, so the ALB health gate passes on its first look here.
//!
//! Without moto the tests fail when `CI=true` and are skipped with a notice otherwise;
//! `scripts/test` installs it.

#[path = "../../bluegreen-aws/tests/moto/ecs_on_alb.rs"]
mod ecs_on_alb;
#[path = "../../bluegreen-aws/tests/moto/mod.rs"]
mod moto;
#[path = "../../bluegreen-dns/tests/moto/mod.rs"]
mod route53_moto;

use std::path::Path;
use std::process::{Command, Output};
use tempfile::TempDir;

use aws_sdk_elasticloadbalancingv2::Client as ElbClient;
use bluegreen_testkit::moto::MotoServer;
use moto::Moto;
use serde_json::Value;

mod common;

use common::{temp_dir, BLUEGREEN};

const HOSTS: [&str; 2] = ["172.31.1.10:8080", "172.31.1.11:8080"];

fn dir(name: &str) -> TempDir {
    temp_dir(&format!("aws-{name}"))
}

fn bluegreen(dir: &Path, args: &[&str]) -> Output {
    Command::new(BLUEGREEN)
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .args(args)
        .output()
        .expect("run bluegreen")
}

/// Writes `dir/deploy.toml`: `body`, then quick health checks with `deadline`, then
/// `[backend.aws]` pointing at `moto`.
fn write_deploy_file(dir: &Path, moto: &MotoServer, deadline: &str, body: &str) {
    let file = format!(
        "{body}\n[health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\nhealthy_threshold = 1\nmin_healthy_time = \"0s\"\n\
         deadline = \"{deadline}\"\n\n[backend.aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        moto.endpoint
    );
    std::fs::write(dir.join("deploy.toml"), file).unwrap();
}

/// `bluegreen deploy -f deploy.toml --output json` plus `args`, which must exit 0: its JSON lines
/// and the outcome (the last one).
fn deploy_json(dir: &Path, args: &[&str]) -> (String, Value) {
    let mut all = vec!["deploy", "-f", "deploy.toml", "--output", "json"];
    all.extend_from_slice(args);
    let deploy = bluegreen(dir, &all);
    let stdout = String::from_utf8_lossy(&deploy.stdout).into_owned();
    assert_eq!(deploy.status.code(), Some(0), "deploy: {stdout}\n{}", String::from_utf8_lossy(&deploy.stderr));
    let outcome: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("outcome json");
    (stdout, outcome)
}

async fn blue_members(client: &ElbClient, arn: &str) -> Vec<String> {
    let health = client.describe_target_health().target_group_arn(arn).send().await.expect("target health");
    let mut ids: Vec<String> = health
        .target_health_descriptions()
        .iter()
        .filter_map(|d| d.target())
        .map(|t| format!("{}:{}", t.id().unwrap_or_default(), t.port().unwrap_or_default()))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alb_backend_with_dynamodb_state_plans_and_deploys_a_rolling_update() {
    let Some(moto) = Moto::start() else { return };
    let sdk = moto.config().load().await;
    let elb = ElbClient::new(&sdk);
    let alb = moto.create_alb(&elb).await;
    moto.create_state_table(&aws_sdk_dynamodb::Client::new(&sdk), "bluegreen-state").await;
    // Before: both hosts are blue's members and blue has all of the traffic.
    let router = bluegreen_aws::AlbRouter::new(
        &sdk,
        &alb.listener_arn,
        [("blue", alb.blue_arn.clone()), ("green", alb.green_arn.clone())],
    )
    .expect("router");
    use bluegreen_core::Router as _;
    let targets: Vec<bluegreen_core::Target> = HOSTS
        .iter()
        .map(|a| bluegreen_core::Target {
            id: (*a).into(),
            address: (*a).into(),
            zone: None,
            version: "v1".into(),
            tag: None,
        })
        .collect();
    router.add_targets(&"blue".into(), &targets).await.expect("register");

    let dir = dir("alb");
    let tf = serde_json::json!({
        "listener_arn": { "value": alb.listener_arn, "type": "string", "sensitive": false },
        "blue_tg_arn": { "value": alb.blue_arn, "type": "string", "sensitive": false },
        "green_tg_arn": { "value": alb.green_arn, "type": "string", "sensitive": false },
    });
    std::fs::write(dir.path().join("tf.json"), tf.to_string()).unwrap();
    let body = format!(
        r#"service = "sales-area-graphql"
version = "v87"

[strategy]
kind = "rolling"
batch = 1

[backend]
kind = "alb"
updater = "true"
hosts = [
  {{ id = "{h0}", address = "{h0}", version = "v86" }},
  {{ id = "{h1}", address = "{h1}", version = "v86" }},
]

[backend.alb]
listener_arn = "${{tf.listener_arn}}"
target_groups = {{ blue = "${{tf.blue_tg_arn}}", green = "${{tf.green_tg_arn}}" }}
drain_poll = "50ms"

[state]
kind = "dynamodb"
table = "bluegreen-state"

[state.aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
"#,
        h0 = HOSTS[0],
        h1 = HOSTS[1],
        endpoint = moto.endpoint,
    );
    write_deploy_file(dir.path(), &moto, "10s", &body);

    let plan = bluegreen(dir.path(), &["plan", "-f", "deploy.toml", "--tf-outputs", "tf.json"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(0), "plan: {text}\n{}", String::from_utf8_lossy(&plan.stderr));
    assert!(text.contains("sales-area-graphql v86 → v87 (rolling)"), "plan: {text}");

    let (stdout, outcome) = deploy_json(dir.path(), &["--tf-outputs", "tf.json"]);
    assert_eq!(outcome["outcome"]["status"], "succeeded", "{outcome}");
    assert_eq!(outcome["outcome"]["serving_versions"], serde_json::json!(["v87"]), "{outcome}");
    assert_eq!(stdout.lines().filter(|l| l.contains("\"event\":\"target_updated\"")).count(), 2, "{stdout}");
    // Each host was drained (deregistered) and registered again: blue holds both, as before.
    assert_eq!(blue_members(&elb, &alb.blue_arn).await, HOSTS.to_vec());

    // The record is in DynamoDB: `status` from another process reads it.
    let status = bluegreen(dir.path(), &["status", "-f", "deploy.toml", "--tf-outputs", "tf.json", "--output", "json"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "status: {text}\n{}", String::from_utf8_lossy(&status.stderr));
    assert!(text.contains("v87") && text.contains("succeeded"), "status: {text}");

    // Another runner (a fresh directory: no local state at all) reads the event log from
    // DynamoDB too, and plots it.
    let other = tempfile::tempdir().unwrap();
    for name in ["deploy.toml", "tf.json"] {
        std::fs::copy(dir.path().join(name), other.path().join(name)).unwrap();
    }
    let args = ["report", "-f", "deploy.toml", "--tf-outputs", "tf.json", "--out", "report.svg"];
    let report = bluegreen(other.path(), &args);
    assert_eq!(report.status.code(), Some(0), "report from another runner: {report:?}");
    let svg = std::fs::read_to_string(other.path().join("report.svg")).unwrap();
    assert!(svg.contains("sales-area-graphql v86 → v87"), "the plot of the deploy");
}

/// `kind = "ecs"`: the seed's flow from the command line — a blue-green of an ECS service's task
/// sets on the `/reporting*` rule, gated by the ALB's target health (moto: healthy once
/// registered), the old task set gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_backend_deploys_blue_green_on_a_rule() {
    let Some(moto) = Moto::start() else { return };
    // Before: the v86 tasks are blue's members.
    let seeded = moto.serving_ecs_service("sales-area-graphql", "v86", 2).await;
    let elb = ElbClient::new(&moto.config().load().await);

    let dir = dir("ecs");
    let body = format!(
        r#"service = "sales-area-graphql"
version = "v87"

[strategy]
kind = "blue_green"

[drain]
timeout = "5s"

[state]
path = "state"

{}"#,
        seeded.backend_section()
    );
    write_deploy_file(dir.path(), &moto, "20s", &body);
    let (_, outcome) = deploy_json(dir.path(), &[]);
    assert_eq!(outcome["outcome"]["status"], "succeeded", "{outcome}");
    assert_eq!(outcome["outcome"]["serving_versions"], serde_json::json!(["v87"]), "{outcome}");
    use bluegreen_core::{Fleet as _, Router as _};
    let split = seeded.router.split().await.expect("split");
    assert!(split.same_traffic(&bluegreen_core::Split::all_to(&"green".into())));
    let now = seeded.fleet.list().await.expect("tasks");
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.iter().all(|t| t.version.as_str() == "v87"), "{now:?}");
    assert!(blue_members(&elb, &seeded.alb.blue_arn).await.is_empty(), "the v86 tasks were deregistered");
    assert_eq!(blue_members(&elb, &seeded.alb.green_arn).await.len(), 2);
}

/// `kind = "route53"`: a rolling update of two hosts whose A records are blue's weighted record
/// set, each host drained by removing its address and waiting the TTL (1 s here); the hosts
/// are two TCP listeners on 127.0.0.21 / .22 for the `tcp` probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route53_backend_deploys_a_rolling_update() {
    use bluegreen_core::Router as _;
    use route53_moto::Route53Moto as _;
    let Some(moto) = MotoServer::start() else { return };
    let sdk = moto.config().load().await;
    let r53 = aws_sdk_route53::Client::new(&sdk);
    let zone = moto.create_zone(&r53, "example.test.").await;
    let mut hosts = Vec::new();
    for ip in ["127.0.0.21", "127.0.0.22"] {
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind");
        let address = listener.local_addr().expect("addr").to_string();
        std::thread::spawn(move || for _ in listener.incoming() {});
        hosts.push(address);
    }
    let router = bluegreen_dns::Route53Router::builder(&sdk, &zone, "www.example.test.")
        .ttl(std::time::Duration::from_secs(1))
        .resolver_margin(std::time::Duration::ZERO)
        .pool("blue")
        .pool("green")
        .build()
        .expect("router");
    let targets: Vec<bluegreen_core::Target> = hosts
        .iter()
        .enumerate()
        .map(|(i, a)| bluegreen_core::Target {
            id: format!("web-{i}").into(),
            address: a.clone(),
            zone: None,
            version: "v1".into(),
            tag: None,
        })
        .collect();
    router.add_targets(&"blue".into(), &targets).await.expect("register");
    router.set_split(&bluegreen_core::Split::all_to(&"blue".into())).await.expect("all to blue");

    let dir = dir("route53");
    let body = format!(
        r#"service = "www"
version = "v2"

[strategy]
kind = "rolling"
batch = 1

[backend]
kind = "route53"
hosted_zone_id = "{zone}"
name = "www.example.test."
ttl = "1s"
margin = "0s"
updater = "true"
hosts = [
  {{ id = "web-0", address = "{h0}", version = "v1" }},
  {{ id = "web-1", address = "{h1}", version = "v1" }},
]

[backend.probe]
kind = "tcp"

[state]
path = "state"
"#,
        h0 = hosts[0],
        h1 = hosts[1],
    );
    write_deploy_file(dir.path(), &moto, "10s", &body);
    let started = std::time::Instant::now();
    let (stdout, _) = deploy_json(dir.path(), &[]);
    let took = started.elapsed();
    assert_eq!(stdout.lines().filter(|l| l.contains("\"event\":\"target_updated\"")).count(), 2, "{stdout}");
    // Each of the two drains waited the TTL (1 s) after its change was in sync.
    assert!(took >= std::time::Duration::from_secs(2), "{took:?}\n{stdout}");
    let members = router.members(&"blue".into()).await.expect("members");
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m.state == bluegreen_core::MemberState::Serving), "{members:?}");
    assert!(router.split().await.expect("split").same_traffic(&bluegreen_core::Split::all_to(&"blue".into())));
}

// ---- A deploy file that names the wrong ALB resources: refused, nothing changed -------------

/// An ALB whose blue group serves both hosts, all traffic on blue.
async fn alb_serving_blue(moto: &Moto) -> (ElbClient, moto::Alb) {
    use bluegreen_core::Router as _;
    let sdk = moto.config().load().await;
    let elb = ElbClient::new(&sdk);
    let alb = moto.create_alb(&elb).await;
    let router = bluegreen_aws::AlbRouter::new(
        &sdk,
        &alb.listener_arn,
        [("blue", alb.blue_arn.clone()), ("green", alb.green_arn.clone())],
    )
    .expect("router");
    let targets: Vec<bluegreen_core::Target> = HOSTS
        .iter()
        .map(|a| bluegreen_core::Target {
            id: (*a).into(),
            address: (*a).into(),
            zone: None,
            version: "v1".into(),
            tag: None,
        })
        .collect();
    router.add_targets(&"blue".into(), &targets).await.expect("register");
    (elb, alb)
}

/// Runs `bluegreen plan` and `bluegreen deploy` on a rolling deploy of the two hosts whose
/// `[backend.alb]` section is `alb_section`: both must exit `code`, and nothing may have
/// changed — every listener's and rule's actions, the groups' registrations and tags (so no
/// write reached moto), no host updated (the updater would leave a file), no deployment in
/// `bluegreen history`, the service's lock free. Returns the deploy's stderr and the file.
async fn refused(moto: &Moto, elb: &ElbClient, alb: &moto::Alb, alb_section: &str, code: i32) -> (String, String) {
    let dir = dir("refused");
    let body = format!(
        r#"service = "sales-area-graphql"
version = "v87"

[strategy]
kind = "rolling"
batch = 1

[backend]
kind = "alb"
updater = "touch updated-{{id}}"
hosts = [
  {{ id = "{h0}", address = "{h0}", version = "v86" }},
  {{ id = "{h1}", address = "{h1}", version = "v86" }},
]

[backend.alb]
{alb_section}
drain_poll = "50ms"

[state]
path = "state"
"#,
        h0 = HOSTS[0],
        h1 = HOSTS[1],
    );
    write_deploy_file(dir.path(), moto, "10s", &body);
    let groups = [alb.blue_arn.as_str(), alb.green_arn.as_str()];
    let before = alb.state(elb, &groups).await;
    for command in ["plan", "deploy", "deploy"] {
        let out = bluegreen(dir.path(), &[command, "-f", "deploy.toml"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // The second deploy would exit 4 (lock conflict) had the first kept the lock.
        assert_eq!(out.status.code(), Some(code), "{command}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout));
    }
    assert_eq!(alb.state(elb, &groups).await, before, "a refused deploy changed the load balancer");
    let files: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!files.iter().any(|f| f.starts_with("updated-")), "a host was updated: {files:?}");
    if code == 2 {
        // The file is refused, so `history` cannot read it either: look at the store itself.
        let records = std::fs::read_dir(dir.path().join("state/sales-area-graphql/deployments"))
            .map(|entries| entries.count())
            .unwrap_or(0);
        assert_eq!(records, 0, "a refused deploy left a record");
    } else {
        let history = bluegreen(dir.path(), &["history", "-f", "deploy.toml", "--output", "json"]);
        assert_eq!(history.status.code(), Some(0), "{history:?}");
        let history: Value = serde_json::from_slice(&history.stdout).expect("history json");
        assert_eq!(history["history"], serde_json::json!([]), "a refused deploy left a record");
    }
    let lock = dir.path().join("state/sales-area-graphql/lock.json");
    if let Ok(text) = std::fs::read_to_string(&lock) {
        let lock: Value = serde_json::from_str(&text).expect("lock json");
        let held = lock.get("content").unwrap_or(&lock).get("held");
        assert_ne!(held, Some(&Value::Bool(true)), "the lock is still held: {text}");
    }
    let out = bluegreen(dir.path(), &["deploy", "-f", "deploy.toml"]);
    let file = std::fs::read_to_string(dir.path().join("deploy.toml")).unwrap();
    (String::from_utf8_lossy(&out.stderr).into_owned(), file)
}

/// The 1-based line of `file` that starts with `key` (the command points at the value on it).
fn line_of(file: &str, key: &str) -> usize {
    file.lines().position(|l| l.starts_with(key)).map(|i| i + 1).expect("the key is in the file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_of_another_listener_is_refused_at_its_line() {
    let Some(moto) = Moto::start() else { return };
    let (elb, alb) = alb_serving_blue(&moto).await;
    let (listener_b, rule_b) = alb.add_listener(&elb, 8081).await;
    let section = format!(
        "listener_arn = \"{}\"\nrule_arn = \"{rule_b}\"\ntarget_groups = {{ blue = \"{}\", green = \"{}\" }}",
        alb.listener_arn, alb.blue_arn, alb.green_arn
    );
    let (stderr, file) = refused(&moto, &elb, &alb, &section, 2).await;
    let at = format!("deploy.toml:{}:", line_of(&file, "rule_arn"));
    assert!(stderr.contains(&at), "not pointed at {at}: {stderr}");
    assert!(stderr.contains("backend.alb.rule_arn") && stderr.contains(&listener_b), "{stderr}");
    // The test listener is the production listener itself.
    let section = format!(
        "listener_arn = \"{0}\"\ntest_listener_arn = \"{0}\"\ntarget_groups = {{ blue = \"{1}\", green = \"{2}\" }}",
        alb.listener_arn, alb.blue_arn, alb.green_arn
    );
    let (stderr, file) = refused(&moto, &elb, &alb, &section, 2).await;
    let at = format!("deploy.toml:{}:", line_of(&file, "test_listener_arn"));
    assert!(stderr.contains(&at) && stderr.contains("backend.alb.test_listener_arn"), "not pointed at {at}: {stderr}");
}

/// Exit 6 needs the command to map `Error::NotFound` / `Error::Drift` from a backend to
/// "the backend is not in the state the deploy file describes".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_does_not_exist_exits_6_with_nothing_changed() {
    let Some(moto) = Moto::start() else { return };
    let (elb, alb) = alb_serving_blue(&moto).await;
    let ghost = moto::ghost_arn(&alb.listener_arn);
    let section = format!(
        "listener_arn = \"{ghost}\"\ntarget_groups = {{ blue = \"{}\", green = \"{}\" }}",
        alb.blue_arn, alb.green_arn
    );
    let (stderr, _) = refused(&moto, &elb, &alb, &section, 6).await;
    assert!(stderr.contains(&ghost), "the listener is not named: {stderr}");
}

/// Exit 6: as above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_group_that_does_not_exist_exits_6_with_nothing_changed() {
    let Some(moto) = Moto::start() else { return };
    let (elb, alb) = alb_serving_blue(&moto).await;
    let ghost = moto::ghost_arn(&alb.green_arn);
    let section = format!(
        "listener_arn = \"{}\"\ntarget_groups = {{ blue = \"{}\", green = \"{ghost}\" }}",
        alb.listener_arn, alb.blue_arn
    );
    let (stderr, _) = refused(&moto, &elb, &alb, &section, 6).await;
    assert!(stderr.contains(&ghost), "the target group is not named: {stderr}");
}

/// Exit 6: as above. The live traffic goes to a group the file does not name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_forwarding_to_a_group_the_file_does_not_name_exits_6_with_nothing_changed() {
    let Some(moto) = Moto::start() else { return };
    let (elb, alb) = alb_serving_blue(&moto).await;
    let other = alb.add_target_group(&elb, "other").await;
    let forward_other = aws_sdk_elasticloadbalancingv2::types::Action::builder()
        .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
        .target_group_arn(&other)
        .build();
    elb.modify_listener().listener_arn(&alb.listener_arn).default_actions(forward_other).send().await.expect("modify");
    let section = format!(
        "listener_arn = \"{}\"\ntarget_groups = {{ blue = \"{}\", green = \"{}\" }}",
        alb.listener_arn, alb.blue_arn, alb.green_arn
    );
    let (stderr, _) = refused(&moto, &elb, &alb, &section, 6).await;
    assert!(stderr.contains(&other), "the group with the traffic is not named: {stderr}");
}

/// No credentials anywhere (no keys, no profile, no config files, the instance metadata service
/// off): the first AWS call fails before anything is sent, exit 3, in one sentence that says
/// where credentials come from — not the SDK's kilobyte of debug output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_credential_is_one_sentence_and_exit_3() {
    let Some(moto) = Moto::start() else { return };
    let (_, alb) = alb_serving_blue(&moto).await;
    let dir = dir("no-credentials");
    let body = format!(
        r#"service = "web"
version = "v2"

[strategy]
kind = "rolling"
batch = 1

[backend]
kind = "alb"
updater = "true"
hosts = [{{ id = "{h0}", address = "{h0}", version = "v1" }}]

[backend.alb]
listener_arn = "{listener}"
target_groups = {{ blue = "{blue}", green = "{green}" }}

[state]
path = "state"
"#,
        h0 = HOSTS[0],
        listener = alb.listener_arn,
        blue = alb.blue_arn,
        green = alb.green_arn,
    );
    write_deploy_file(dir.path(), &moto, "10s", &body);
    let out = Command::new(BLUEGREEN)
        .current_dir(dir.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        // No shared config or credentials files, and never the metadata service (not loopback).
        .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["plan", "-f", "deploy.toml"])
        .output()
        .expect("run bluegreen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let error = stderr.lines().find(|l| l.starts_with("bluegreen: ")).unwrap_or_default();
    assert!(error.contains("no AWS credentials") && error.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
    assert!(error.len() < 500, "{} characters: {error}", error.len());
    assert!(!stderr.contains("DispatchFailure") && !stderr.contains("ConnectorError"), "{stderr}");
}
