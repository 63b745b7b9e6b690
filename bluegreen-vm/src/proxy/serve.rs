//! The HTTP side of the proxy: accepting connections, relaying requests, counting outcomes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bluegreen_core::BoxError;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::counters::{Outcome, Ticket};
use super::framing::{Heads, Watched};
use super::table::{NoRoute, Route, Table};

/// The body of a request sent to a target.
pub(super) type UpstreamBody = UnsyncBoxBody<Bytes, hyper::Error>;
/// The body of an answer to a client.
pub(super) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Response header naming the pool that served a request.
pub(super) const POOL_HEADER: &str = "x-bluegreen-pool";
/// Response header naming the target that served a request.
pub(super) const TARGET_HEADER: &str = "x-bluegreen-target";

/// The body of every `502` answer: nothing about the target or the error (they are logged at
/// debug level instead).
const BAD_GATEWAY: &str = "bluegreen proxy: bad gateway\n";
/// The body of every `504` answer.
const GATEWAY_TIMEOUT: &str = "bluegreen proxy: gateway timeout\n";

/// The limits a client connection is served under.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) header_read_timeout: Duration,
    pub(super) response_timeout: Duration,
    pub(super) max_connections: usize,
}

/// What the accept loop, the connections and the router handle share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) table: Mutex<Table>,
    pub(super) client: Client<HttpConnector, UpstreamBody>,
    pub(super) retry_connect_failures: bool,
    limits: Limits,
    /// One permit per client connection served (`limits.max_connections`).
    connection_permits: Arc<Semaphore>,
    open_connections: AtomicUsize,
    connections_closed: Notify,
}

impl Shared {
    pub(super) fn new(table: Table, connect_timeout: Duration, retry_connect_failures: bool, limits: Limits) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            table: Mutex::new(table),
            client,
            retry_connect_failures,
            limits,
            connection_permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            open_connections: AtomicUsize::new(0),
            connections_closed: Notify::new(),
        }
    }

    /// The routing table (a poisoned lock is taken over: every write leaves it consistent).
    pub(super) fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until every client connection is closed or `deadline` passes; whether they are.
    pub(super) async fn connections_closed_by(&self, deadline: Instant) -> bool {
        loop {
            let closed = self.connections_closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open_connections.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                return self.open_connections.load(Ordering::SeqCst) == 0;
            }
        }
    }
}

/// Counts one open client connection.
struct ConnectionGuard(Arc<Shared>);

impl ConnectionGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open_connections.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.open_connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.connections_closed.notify_waiters();
        }
    }
}

/// Accepts connections until `stop` changes (or its sender is dropped); each connection is
/// then shut down gracefully (its current request finishes, then it closes). At most
/// `max_connections` are served at once: the next one is accepted when one closes (until
/// then it waits in the listen backlog).
pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    if *stop.borrow_and_update() {
        return;
    }
    let permits = shared.connection_permits.clone();
    loop {
        if permits.available_permits() == 0 {
            tracing::debug!(limit = shared.limits.max_connections, "local proxy: connection limit reached");
        }
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, peer, shared.clone(), stop.clone(), permit));
                }
                Err(error) => {
                    // Out of file descriptors and the like: do not spin.
                    tracing::warn!(%error, "local proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
    tracing::debug!(address = ?listener.local_addr().ok(), "local proxy: stopped accepting");
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _open = ConnectionGuard::new(shared.clone());
    // The client's address, appended to `X-Forwarded-For` on every request of the connection.
    let client = peer.ip().to_string();
    let heads = Heads::new();
    let watched = Watched::new(stream, heads.clone());
    let header_read_timeout = shared.limits.header_read_timeout;
    let service = service_fn(move |request| handle(shared.clone(), client.clone(), heads.framed_two_ways(), request));
    let connection = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(watched), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "local proxy: client connection ended with an error");
            }
        }
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Relays one request to a member chosen by the table.
async fn handle(
    shared: Arc<Shared>,
    client: String,
    framed_two_ways: bool,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // RFC 9112 §6.1: a request framed two ways is how requests are smuggled past a proxy.
    if framed_two_ways {
        tracing::debug!(%client, "local proxy: refused a request with both Transfer-Encoding and Content-Length");
        let mut answer = local_answer(
            StatusCode::BAD_REQUEST,
            "bluegreen proxy: a request with both Transfer-Encoding and Content-Length is refused\n",
        );
        answer.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(answer);
    }
    let routed = shared.table().route();
    let (route, pool_ticket) = match routed {
        Ok(routed) => routed,
        Err(NoRoute::NoPool) => {
            return Ok(local_answer(StatusCode::SERVICE_UNAVAILABLE, "bluegreen proxy: no pool receives traffic\n"));
        }
        Err(NoRoute::NoServingMember(pool)) => {
            tracing::debug!(%pool, "local proxy: no serving member");
            let body = format!("bluegreen proxy: pool {pool} has no serving target\n");
            return Ok(local_answer(StatusCode::SERVICE_UNAVAILABLE, &body));
        }
    };
    let (parts, body) = request.into_parts();
    // A request that never reached a target can be sent again only if it has no body to
    // replay and repeating it is harmless.
    let replayable = shared.retry_connect_failures && idempotent(&parts.method) && body.is_end_stream();
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_owned();
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    set_forwarded(&mut headers, &client);
    let first_body = if replayable { empty_body() } else { body.boxed_unsync() };

    let Some(upstream) = upstream_request(&parts.method, &route.address, &path, &headers, first_body) else {
        route.member.finish(Outcome::Failed);
        pool_ticket.finish(Outcome::Failed);
        tracing::debug!(target = %route.target, address = %route.address, %path, "local proxy: cannot form the upstream request");
        return Ok(local_answer(StatusCode::BAD_GATEWAY, BAD_GATEWAY));
    };
    let mut route = route;
    let mut result = send(&shared, upstream).await;
    if replayable {
        if let Err(Upstream::Failed(error)) = &result {
            if error.is_connect() {
                let retry = shared.table().route_again(&route.pool, &route.target);
                if let Some(next) = retry {
                    tracing::debug!(from = %route.target, to = %next.target, %error, "local proxy: retrying elsewhere");
                    pool_ticket.retried();
                    let failed = std::mem::replace(&mut route, next);
                    failed.member.finish(Outcome::Failed);
                    if let Some(again) = upstream_request(&parts.method, &route.address, &path, &headers, empty_body())
                    {
                        result = send(&shared, again).await;
                    }
                }
            }
        }
    }
    match result {
        Ok(response) => Ok(relay(response, route, pool_ticket)),
        Err(failure) => {
            let (status, body) = match &failure {
                Upstream::Failed(error) => {
                    let error = root(error);
                    tracing::debug!(target = %route.target, address = %route.address, %error, "local proxy: upstream failed");
                    (StatusCode::BAD_GATEWAY, BAD_GATEWAY)
                }
                Upstream::TimedOut => {
                    let after = shared.limits.response_timeout;
                    tracing::debug!(target = %route.target, address = %route.address, ?after, "local proxy: upstream did not answer in time");
                    (StatusCode::GATEWAY_TIMEOUT, GATEWAY_TIMEOUT)
                }
            };
            route.member.finish(Outcome::Failed);
            pool_ticket.finish(Outcome::Failed);
            Ok(local_answer(status, body))
        }
    }
}

/// Why a request sent to a target got no answer.
enum Upstream {
    Failed(hyper_util::client::legacy::Error),
    TimedOut,
}

/// Sends `request` to its target, waiting for the answer's head up to the response timeout.
async fn send(shared: &Shared, request: Request<UpstreamBody>) -> Result<Response<Incoming>, Upstream> {
    match tokio::time::timeout(shared.limits.response_timeout, shared.client.request(request)).await {
        Ok(result) => result.map_err(Upstream::Failed),
        Err(_) => Err(Upstream::TimedOut),
    }
}

/// One `X-Forwarded-For` field: the values the request came with (all its fields, in order),
/// then the client's address; and `X-Forwarded-Proto: http`, whatever the client said (the
/// proxy serves plain HTTP). Upstreams that read the first field or the last value both get
/// something consistent, and the last value is always the real client.
fn set_forwarded(headers: &mut HeaderMap, client: &str) {
    let name = HeaderName::from_static("x-forwarded-for");
    let mut values: Vec<&str> = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    values.push(client);
    let joined = values.join(", ");
    match HeaderValue::from_str(&joined).or_else(|_| HeaderValue::from_str(client)) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
    headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
}

/// The answer to the client: the target's, with hop-by-hop headers removed and the pool and
/// target named; its body keeps the request in flight until it ends.
fn relay(response: Response<Incoming>, route: Route, pool_ticket: Ticket) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Ok(value) = HeaderValue::from_str(route.pool.as_str()) {
        parts.headers.insert(HeaderName::from_static(POOL_HEADER), value);
    }
    if let Ok(value) = HeaderValue::from_str(route.target.as_str()) {
        parts.headers.insert(HeaderName::from_static(TARGET_HEADER), value);
    }
    let server_error = parts.status.is_server_error();
    let body = Relayed { inner: body, tickets: Some((route.member, pool_ticket)), server_error };
    Response::from_parts(parts, body.boxed_unsync())
}

fn upstream_request(
    method: &Method,
    address: &str,
    path: &str,
    headers: &HeaderMap,
    body: UpstreamBody,
) -> Option<Request<UpstreamBody>> {
    let uri: Uri = format!("http://{address}{path}").parse().ok()?;
    let mut request = Request::builder().method(method.clone()).uri(uri).version(Version::HTTP_11).body(body).ok()?;
    *request.headers_mut() = headers.clone();
    Some(request)
}

fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn empty_body() -> UpstreamBody {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync()
}

fn local_answer(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(text.to_owned())).map_err(|never| match never {}).boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the `Connection` header
/// names. `Transfer-Encoding` goes too: hyper frames each side's body itself.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in HOP_BY_HOP.iter().copied().chain(named.iter().map(String::as_str)) {
        headers.remove(name);
    }
    headers.remove(hyper::header::TRANSFER_ENCODING);
}

/// The innermost error's message.
fn root(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// A target's answer body on its way to the client; the request stays in flight on its
/// member and pool until the body has been read to its end (or fails, or the client leaves).
struct Relayed {
    inner: Incoming,
    tickets: Option<(Ticket, Ticket)>,
    server_error: bool,
}

impl Relayed {
    fn finish(&mut self, outcome: Outcome) {
        if let Some((member, pool)) = self.tickets.take() {
            member.finish(outcome);
            pool.finish(outcome);
        }
    }
}

impl Body for Relayed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let served = Outcome::Served { server_error: this.server_error };
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.finish(served);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.finish(served);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.finish(Outcome::Failed);
                Poll::Ready(Some(Err(Box::new(error))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        let outcome = if self.inner.is_end_stream() {
            Outcome::Served { server_error: self.server_error }
        } else {
            Outcome::Cancelled
        };
        self.finish(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_one_field_ending_with_the_client() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static(" 6.6.6.6 "));
        headers.append("x-forwarded-for", HeaderValue::from_static(""));
        headers.append("x-forwarded-for", HeaderValue::from_static("7.7.7.7, 8.8.8.8"));
        headers.append("x-forwarded-proto", HeaderValue::from_static("https"));
        set_forwarded(&mut headers, "127.0.0.1");
        let xff: Vec<&HeaderValue> = headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(xff, ["6.6.6.6, 7.7.7.7, 8.8.8.8, 127.0.0.1"]);
        let proto: Vec<&HeaderValue> = headers.get_all("x-forwarded-proto").iter().collect();
        assert_eq!(proto, ["http"]);
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("keep-alive, x-secret"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }
}
