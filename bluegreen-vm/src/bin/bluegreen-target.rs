//! `bluegreen-target`: a small HTTP server that stands in for an application under deployment
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    std::process::exit(runtime.block_on(bluegreen_vm::target::serve(&args)));
}
