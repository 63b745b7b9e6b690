//! The HTTP and TCP probes and the HTTP success-rate analysis, against real servers on
//! loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::Redirect;
use axum::routing::get;
use bluegreen_core::{
    Analysis, AnalysisContext, Error, Health, HealthProbe, HttpProbe, HttpSuccessRate, Split, Target, TcpProbe, Verdict,
};

/// Serves `app` on an ephemeral loopback port until the test ends.
async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A loopback address where nothing listens.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

fn target(addr: SocketAddr) -> Target {
    Target { id: "t-1".into(), address: addr.to_string(), zone: None, version: "v2".into(), tag: None }
}

/// A server with the routes the probe tests use.
async fn app() -> SocketAddr {
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "status: ok" }))
        .route("/down", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route("/moved", get(|| async { Redirect::temporary("/missing") }))
        .route(
            "/needs-token",
            get(|headers: HeaderMap| async move {
                if headers.get("x-token").is_some_and(|v| v == "secret") {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        );
    serve(app).await
}

fn unhealthy(reason: &str) -> Health {
    Health::unhealthy(reason)
}

#[tokio::test]
async fn http_probe_healthy_on_200() {
    let addr = app().await;
    let probe = HttpProbe::builder("/healthz").build().unwrap();
    assert_eq!(probe.check(&target(addr)).await, Health::Healthy);
}

#[tokio::test]
async fn http_probe_unhealthy_on_503_with_status_reason() {
    let addr = app().await;
    let probe = HttpProbe::builder("/down").build().unwrap();
    assert_eq!(probe.check(&target(addr)).await, unhealthy("status 503"));
}

#[tokio::test]
async fn http_probe_404_is_outside_default_range() {
    let addr = app().await;
    let probe = HttpProbe::builder("/missing").build().unwrap();
    assert_eq!(probe.check(&target(addr)).await, unhealthy("status 404"));
}

#[tokio::test]
async fn http_probe_times_out_on_slow_handler() {
    let addr = app().await;
    let probe = HttpProbe::builder("/slow").timeout(Duration::from_millis(200)).build().unwrap();
    let started = Instant::now();
    let health = probe.check(&target(addr)).await;
    assert_eq!(health, unhealthy("timed out after 200ms"));
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn http_probe_body_contains_passes_and_fails() {
    let addr = app().await;
    let ok = HttpProbe::builder("/healthz").body_contains("ok").build().unwrap();
    assert_eq!(ok.check(&target(addr)).await, Health::Healthy);

    let ready = HttpProbe::builder("/healthz").body_contains("ready").build().unwrap();
    assert_eq!(ready.check(&target(addr)).await, unhealthy("body does not contain \"ready\""));
}

#[tokio::test]
async fn http_probe_status_is_checked_before_body() {
    let addr = app().await;
    let probe = HttpProbe::builder("/down").body_contains("down").build().unwrap();
    assert_eq!(probe.check(&target(addr)).await, unhealthy("status 503"));
}

#[tokio::test]
async fn http_probe_connection_refused_on_closed_port() {
    let addr = closed_port().await;
    let probe = HttpProbe::builder("/healthz").build().unwrap();
    assert_eq!(probe.check(&target(addr)).await, unhealthy("connection refused"));
}

#[tokio::test]
async fn http_probe_does_not_follow_redirects() {
    let addr = app().await;
    // /moved redirects to /missing (404): followed, the default range would refuse it.
    let default_range = HttpProbe::builder("/moved").build().unwrap();
    assert_eq!(default_range.check(&target(addr)).await, Health::Healthy);

    let only_2xx = HttpProbe::builder("/moved").expect_status(200..=299).build().unwrap();
    assert_eq!(only_2xx.check(&target(addr)).await, unhealthy("status 307"));
}

#[tokio::test]
async fn http_probe_sends_configured_headers() {
    let addr = app().await;
    let without = HttpProbe::builder("/needs-token").build().unwrap();
    assert_eq!(without.check(&target(addr)).await, unhealthy("status 401"));

    let with = HttpProbe::builder("/needs-token").header("X-Token", "secret").build().unwrap();
    assert_eq!(with.check(&target(addr)).await, Health::Healthy);
}

#[tokio::test]
async fn http_probe_https_against_plain_http_is_unhealthy() {
    let addr = app().await;
    let probe = HttpProbe::builder("/healthz").scheme("https").build().unwrap();
    let health = probe.check(&target(addr)).await;
    // The TLS handshake fails; the reason says it happened while connecting.
    match health {
        Health::Unhealthy { reason } => assert!(reason.starts_with("cannot connect: "), "{reason}"),
        Health::Healthy => panic!("a TLS probe of a plain HTTP server passed"),
    }
}

#[tokio::test]
async fn http_probe_builder_refuses_bad_input() {
    let field = |result: Result<HttpProbe, Error>| result.unwrap_err().field().map(str::to_owned);

    assert_eq!(field(HttpProbe::builder("healthz").build()).as_deref(), Some("path"));
    assert_eq!(field(HttpProbe::builder("/").scheme("ftp").build()).as_deref(), Some("scheme"));
    #[allow(clippy::reversed_empty_ranges)]
    let empty = 300..=200;
    assert_eq!(field(HttpProbe::builder("/").expect_status(empty).build()).as_deref(), Some("expect_status"));
    assert_eq!(field(HttpProbe::builder("/").expect_status(0..=99).build()).as_deref(), Some("expect_status"));
    assert_eq!(field(HttpProbe::builder("/").body_contains("").build()).as_deref(), Some("body_contains"));
    assert_eq!(field(HttpProbe::builder("/").timeout(Duration::ZERO).build()).as_deref(), Some("timeout"));
    assert_eq!(field(HttpProbe::builder("/").header("bad name", "x").build()).as_deref(), Some("header"));
    assert_eq!(
        field(HttpProbe::builder("/").header("X-Ok", "line\nbreak").build()).as_deref(),
        Some("header \"X-Ok\"")
    );
    assert!(HttpProbe::builder("/ready?full=1").expect_status(200..=200).build().is_ok());
}

#[tokio::test]
async fn tcp_probe_open_and_closed_port() {
    let addr = app().await;
    let probe = TcpProbe::new(Duration::from_secs(1));
    assert_eq!(probe.check(&target(addr)).await, Health::Healthy);

    let closed = closed_port().await;
    assert_eq!(probe.check(&target(closed)).await, unhealthy("connection refused"));
}

// --- HttpSuccessRate ---

fn context() -> AnalysisContext {
    AnalysisContext {
        deployment_id: "d-1".to_owned(),
        service: "web".to_owned(),
        version: "v2".to_owned(),
        split: Split::new([("blue", 90), ("green", 10)]).unwrap(),
        candidates: Vec::new(),
    }
}

/// A server whose every `n`th request (counting from 1) answers 500; the others 200.
async fn fails_every(n: u64) -> (SocketAddr, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    let app = axum::Router::new().route(
        "/",
        get(move || {
            let counter = counter.clone();
            async move {
                let k = counter.fetch_add(1, Ordering::SeqCst) + 1;
                if k.is_multiple_of(n) {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    (serve(app).await, count)
}

#[tokio::test]
async fn success_rate_goes_inconclusive_pass_fail_as_window_fills() {
    // Request 20 fails: 100% until then, 95% after it.
    let (addr, count) = fails_every(20).await;
    let analysis = HttpSuccessRate::new(format!("http://{addr}/"), 96.0, Duration::from_secs(60))
        .with_requests_per_check(5)
        .with_min_requests(10);
    let ctx = context();

    assert_eq!(analysis.evaluate(&ctx).await, Verdict::Inconclusive, "5 of 10 required requests");
    assert_eq!(analysis.evaluate(&ctx).await, Verdict::Pass, "10/10");
    assert_eq!(analysis.evaluate(&ctx).await, Verdict::Pass, "15/15");
    assert_eq!(
        analysis.evaluate(&ctx).await,
        Verdict::Fail { reason: "success rate 95.0% < 96.0% over 1m (19/20)".to_owned() }
    );
    assert_eq!(count.load(Ordering::SeqCst), 20, "5 requests per evaluation");
}

#[tokio::test]
async fn success_rate_forgets_results_older_than_the_window() {
    let (addr, _) = fails_every(1).await;
    let analysis = HttpSuccessRate::new(format!("http://{addr}/"), 50.0, Duration::from_millis(300))
        .with_requests_per_check(4)
        .with_min_requests(4);
    let ctx = context();

    let fail = |n: usize| Verdict::Fail { reason: format!("success rate 0.0% < 50.0% over 300ms (0/{n})") };
    assert_eq!(analysis.evaluate(&ctx).await, fail(4));
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Without pruning this would be 0/8.
    assert_eq!(analysis.evaluate(&ctx).await, fail(4));
}

#[tokio::test]
async fn success_rate_counts_timeouts_and_refusals_as_failures() {
    let app = axum::Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "late"
        }),
    );
    let slow = serve(app).await;
    let analysis = HttpSuccessRate::new(format!("http://{slow}/"), 90.0, Duration::from_secs(60))
        .with_requests_per_check(3)
        .with_min_requests(3)
        .with_timeout(Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(
        analysis.evaluate(&context()).await,
        Verdict::Fail { reason: "success rate 0.0% < 90.0% over 1m (0/3)".to_owned() }
    );
    assert!(started.elapsed() < Duration::from_secs(2), "requests run concurrently: {:?}", started.elapsed());

    let closed = closed_port().await;
    let refused = HttpSuccessRate::new(format!("http://{closed}/"), 90.0, Duration::from_secs(60))
        .with_requests_per_check(2)
        .with_min_requests(2);
    assert_eq!(
        refused.evaluate(&context()).await,
        Verdict::Fail { reason: "success rate 0.0% < 90.0% over 1m (0/2)".to_owned() }
    );
}

#[tokio::test]
async fn success_rate_counts_redirects_as_successes() {
    let app = axum::Router::new().route("/", get(|| async { Redirect::temporary("/elsewhere") }));
    let addr = serve(app).await;
    let analysis = HttpSuccessRate::new(format!("http://{addr}/"), 100.0, Duration::from_secs(60))
        .with_requests_per_check(2)
        .with_min_requests(2);
    assert_eq!(analysis.evaluate(&context()).await, Verdict::Pass);
}

#[tokio::test]
async fn success_rate_with_invalid_url_fails() {
    let analysis = HttpSuccessRate::new("not a url", 90.0, Duration::from_secs(60));
    match analysis.evaluate(&context()).await {
        Verdict::Fail { reason } => {
            assert!(reason.starts_with("invalid URL \"not a url\""), "{reason}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}
