//! The stand-in application server behind `bluegreen-target` (and `bluegreen demo`): a small HTTP server that stands in for an application under deployment
//! (tests, examples and `bluegreen demo`). It says which version it runs, and can be told to be
//! slow to start, to fail its health check, or to fail a share of its requests.
//!
//! ```text
//! bluegreen-target --version v2 [--listen 127.0.0.1:0] [--startup-ms N] [--fail-health] [--error-rate 0.2]
//! ```
//!
//! Prints `listening on ADDR` once bound. Endpoints:
//! - `GET /healthz` — 200 `ok`, or 503 while starting up or with `--fail-health`;
//! - `GET /` — 200 with the version as body and in `x-version` (500 for the `--error-rate` share);
//! - `GET /sleep/MS` — the same after holding the request MS milliseconds (a long request).
//!
//! On SIGTERM it stops accepting connections, lets each open connection finish the request in
//! progress (its answer fully written) and close, and exits when all are closed (30 s at most).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

struct Config {
    version: String,
    started: Instant,
    startup: Duration,
    fail_health: bool,
    /// Fail one request in `1 / error_rate`, deterministically.
    error_every: Option<u64>,
    served: AtomicU64,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// How to call it.
pub const USAGE: &str =
    "usage: bluegreen-target --version V [--listen ADDR] [--startup-ms N] [--fail-health] [--error-rate R]";

fn response(status: StatusCode, version: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("x-version", version)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn handle(config: Arc<Config>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let version = config.version.as_str();
    if path == "/healthz" {
        let up = config.started.elapsed() >= config.startup && !config.fail_health;
        return Ok(if up {
            response(StatusCode::OK, version, "ok\n".into())
        } else {
            response(StatusCode::SERVICE_UNAVAILABLE, version, "unhealthy\n".into())
        });
    }
    if let Some(ms) = path.strip_prefix("/sleep/").and_then(|ms| ms.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let n = config.served.fetch_add(1, Ordering::SeqCst) + 1;
    if config.error_every.is_some_and(|every| n.is_multiple_of(every)) {
        return Ok(response(StatusCode::INTERNAL_SERVER_ERROR, version, format!("{version} failed\n")));
    }
    Ok(response(StatusCode::OK, version, format!("{version}\n")))
}

/// Serves until SIGTERM, then lets open requests finish; `args` are the command-line
/// arguments after the program name. Returns the process's exit code: 0 after a SIGTERM, 1 if
/// it cannot listen, 2 for bad arguments.
pub async fn serve(args: &[String]) -> i32 {
    let parsed = (|| -> Option<(String, SocketAddr, Duration, f64)> {
        let version = arg(args, "--version")?;
        let listen = arg(args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into()).parse().ok()?;
        let startup = Duration::from_millis(match arg(args, "--startup-ms") {
            Some(v) => v.parse().ok()?,
            None => 0,
        });
        let error_rate = match arg(args, "--error-rate") {
            Some(v) => v.parse().ok()?,
            None => 0.0,
        };
        Some((version, listen, startup, error_rate))
    })();
    let Some((version, listen, startup, error_rate)) = parsed else {
        eprintln!("{USAGE}");
        return 2;
    };
    let config = Arc::new(Config {
        version,
        started: Instant::now(),
        startup,
        fail_health: args.iter().any(|a| a == "--fail-health"),
        error_every: (error_rate > 0.0).then(|| (1.0 / error_rate.min(1.0)).round().max(1.0) as u64),
        served: AtomicU64::new(0),
    });
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            return 1;
        }
    };
    // Handle SIGTERM before anyone can know the address.
    let (Ok(mut term), Ok(local)) = (signal(SignalKind::terminate()), listener.local_addr()) else {
        eprintln!("cannot handle SIGTERM or read the bound address");
        return 1;
    };
    println!("listening on {local}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let open = Arc::new(AtomicU64::new(0));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let config = config.clone();
                let mut stop = stop_rx.clone();
                let open = open.clone();
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(config.clone(), req));
                    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        _ = stop.changed() => {
                            // Finish the request in progress (its answer is written), then close;
                            // an idle keep-alive connection closes at once.
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
            _ = term.recv() => break,
        }
    }
    // Stop accepting; let every open connection finish its request in progress and close
    // (bounded, so a stuck client cannot hold us).
    drop(listener);
    stop_tx.send_replace(true);
    let deadline = Instant::now() + Duration::from_secs(30);
    while open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    0
}
