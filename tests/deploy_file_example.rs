//! The `deploy_file` example (a deploy file read, planned and run through the library alone)
//! run for real: an HAProxy file against a real HAProxy in front of two HTTP servers of this
//! test, and an ECS file against moto server; a bad field's `file:line:column` from both.
//!
//! Without haproxy or moto the tests fail when `CI=true` and are skipped otherwise;
//! `scripts/test` installs both.

#[path = "../bluegreen-aws/tests/moto/ecs_on_alb.rs"]
mod ecs_on_alb;
#[allow(dead_code, reason = "the example's main is not called here")]
#[path = "../examples/deploy_file.rs"]
mod example;
#[path = "../bluegreen-aws/tests/moto/mod.rs"]
mod moto;

use std::path::Path;

use bluegreen_testkit::haproxy::{self, HaproxyProcess, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An HTTP server on 127.0.0.1 answering `200 ok` to every request (its health checks, the
/// probe's, HAProxy's), until the test ends.
async fn http_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    address
}

/// A rolling update of two hosts behind HAProxy, batch 1; the hosts' updater is `true` (the
/// servers answer whatever they run), so the deploy is HAProxy's drains and re-enables.
fn haproxy_file(socket: &Path, hosts: &[String]) -> String {
    let mut file = format!(
        r#"service = "web"
version = "v2"

[strategy]
kind = "rolling"
batch = 1

{checks}

[backend]
kind = "haproxy"
socket = "{}"
haproxy_backend = "web"
updater = "true {{id}} {{version}}"

[backend.probe]
path = "/healthz"

[state]
kind = "memory"
"#,
        socket.display(),
        checks = bluegreen_testkit::QUICK_CHECKS
    );
    for (i, address) in hosts.iter().enumerate() {
        file.push_str(&format!(
            "\n[[backend.hosts]]\nid = \"web-{}\"\naddress = \"{address}\"\nversion = \"v1\"\n",
            i + 1
        ));
    }
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_plans_and_deploys_an_haproxy_file_against_a_real_haproxy() {
    let Some(binary) = haproxy::require("the_example_plans_and_deploys_an_haproxy_file_against_a_real_haproxy") else {
        return;
    };
    let hosts = vec![http_server().await, http_server().await];
    let servers: Vec<Server> =
        hosts.iter().enumerate().map(|(i, address)| Server::new(format!("blue.web-{}", i + 1), address, 1)).collect();
    let haproxy = HaproxyProcess::start(&binary, None, &servers, "");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, haproxy_file(&haproxy.socket(), &hosts)).expect("write");

    let plan = example::plan_or_deploy(&path, false).await.expect("plan");
    assert!(plan.starts_with("web → v2 (rolling), "), "{plan}");
    assert!(plan.contains("batch 2/2"), "{plan}");

    let report = example::plan_or_deploy(&path, true).await.expect("deploy");
    assert!(report.contains(" succeeded: "), "{report}");
    assert!(report.ends_with("serving v2"), "{report}");

    // A bad field: refused at its place, before HAProxy is asked anything.
    std::fs::write(&path, haproxy_file(&haproxy.socket(), &hosts).replace("batch = 1", "batch = \"one\""))
        .expect("write");
    let error = example::plan_or_deploy(&path, true).await.expect_err("a bad batch").to_string();
    let at = format!("{}:6:9: invalid strategy.batch", path.display());
    assert!(error.starts_with(&at), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_deploys_an_ecs_file_against_moto() {
    use bluegreen::{Fleet as _, Router as _};
    let Some(moto) = moto::Moto::start() else { return };
    // The example loads `[backend.aws]` as the command does: credentials from the environment
    // (moto's fake ones), and never the instance metadata service (not on loopback).
    let (key, secret) = bluegreen_testkit::moto::CREDENTIALS;
    std::env::set_var("AWS_ACCESS_KEY_ID", key);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", secret);
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::remove_var("AWS_PROFILE");
    let seeded = moto.serving_ecs_service("web", "v1", 2).await;
    let file = format!(
        r#"service = "web"
version = "v2"

[strategy]
kind = "blue_green"

[health]
interval = "100ms"
timeout = "100ms"
healthy_threshold = 1
min_healthy_time = "0s"
deadline = "20s"

[drain]
timeout = "5s"

[state]
kind = "memory"

{}
[backend.aws]
region = "{}"
endpoint_url = "{}"
"#,
        seeded.backend_section(),
        bluegreen_testkit::moto::REGION,
        moto.endpoint
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, &file).expect("write");

    let report = example::plan_or_deploy(&path, true).await.expect("deploy");
    assert!(report.contains(" succeeded: "), "{report}");
    assert!(report.ends_with("serving v2"), "{report}");
    let split = seeded.router.split().await.expect("split");
    assert!(split.same_traffic(&bluegreen::Split::all_to(&"green".into())), "{split}");
    let tasks = seeded.fleet.list().await.expect("tasks");
    assert!(tasks.len() == 2 && tasks.iter().all(|t| t.version.as_str() == "v2"), "{tasks:?}");

    std::fs::write(&path, file.replace("kind = \"ecs\"", "kind = \"ecs\"\nclustr = \"x\"")).expect("write");
    let error = example::plan_or_deploy(&path, true).await.expect_err("a typo").to_string();
    assert!(error.contains("deploy.toml:22:10: invalid backend: unknown field `clustr`"), "{error}");
}
