//! The in-process proxy facing untrusted clients, over real sockets on 127.0.0.1: slow clients
//! are dropped, the connection limit holds, `X-Forwarded-For` cannot be spoofed into first
//! place, requests framed two ways are refused, and error answers say nothing of the inside.
//!
//! The clients and the target here are raw TCP, so that what is on the wire is what is checked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bluegreen_core::{Error, Router, Target};
use bluegreen_vm::LocalProxyRouter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A target that records the head of every request it receives and answers `200 ok`
/// (after `delay`), one request per connection.
struct Upstream {
    address: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    async fn start(delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(end) = find(&buf, b"\r\n\r\n") {
                            break end + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    // Read the body too, so that closing does not reset the connection.
                    let lower = head.to_ascii_lowercase();
                    let length = lower
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse::<usize>().unwrap());
                    let chunked = lower.contains("transfer-encoding: chunked");
                    recorded.lock().unwrap().push(head);
                    loop {
                        let body = &buf[head_end..];
                        let done = match length {
                            Some(n) => body.len() >= n,
                            None if chunked => body.ends_with(b"0\r\n\r\n"),
                            None => true,
                        };
                        if done {
                            break;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    tokio::time::sleep(delay).await;
                    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { address, heads }
    }

    fn target(&self) -> Target {
        Target { id: "t-1".into(), address: self.address.clone(), zone: None, version: "v1".into(), tag: None }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A proxy with one pool `blue` holding `upstream`.
async fn proxy_to(
    upstream: &Upstream,
    configure: impl FnOnce(bluegreen_vm::LocalProxyRouterBuilder) -> bluegreen_vm::LocalProxyRouterBuilder,
) -> LocalProxyRouter {
    let proxy = configure(LocalProxyRouter::builder().pool("blue")).build().await.unwrap();
    proxy.add_targets(&"blue".into(), &[upstream.target()]).await.unwrap();
    proxy
}

/// Sends `request` as is and reads until the proxy closes the connection (at most 5 s).
async fn exchange(proxy: &LocalProxyRouter, request: &str) -> String {
    let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("no complete answer to {request:?}: {:?}", String::from_utf8_lossy(&answer)))
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_client_is_dropped_after_the_header_read_timeout() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let proxy = proxy_to(&upstream, |b| b.header_read_timeout(Duration::from_millis(300))).await;

    // A slowloris: a byte of header at a time, never the end of it.
    let started = Instant::now();
    let stream = TcpStream::connect(proxy.address()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        let _ = writer.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if writer.write_all(b"X").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), reader.read_to_end(&mut answer)).await;
    let elapsed = started.elapsed();
    trickle.abort();
    assert!(closed.is_ok(), "the slow client was still connected after 3 s");
    assert!(elapsed >= Duration::from_millis(250), "dropped before the timeout: {elapsed:?}");
    assert!(upstream.heads().is_empty(), "nothing reaches the target");
    // A prompt client is served as before.
    let answer = exchange(&proxy, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_holds() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let proxy = proxy_to(&upstream, |b| b.max_connections(2).header_read_timeout(Duration::from_secs(20))).await;

    // Two idle connections take both places.
    let first = TcpStream::connect(proxy.address()).await.unwrap();
    let _second = TcpStream::connect(proxy.address()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The third is not served while they are open...
    let mut third = TcpStream::connect(proxy.address()).await.unwrap();
    third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(600), third.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "a third connection was served over a limit of 2: {:?}", String::from_utf8_lossy(&answer));
    assert!(upstream.heads().is_empty());
    // ...and is once one of them closes.
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer))
        .await
        .expect("the third connection is served once a place is free")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_forwarded_for_ends_up_as_one_field_ending_with_the_real_client() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let proxy = proxy_to(&upstream, |b| b).await;
    let answer = exchange(
        &proxy,
        "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7, 8.8.8.8\r\n\
         X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let heads = upstream.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let fields = |name: &str| -> Vec<String> {
        heads[0]
            .lines()
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    };
    assert_eq!(fields("x-forwarded-for"), ["6.6.6.6, 7.7.7.7, 8.8.8.8, 127.0.0.1"], "{}", heads[0]);
    // The proxy speaks plain HTTP: a client cannot claim otherwise.
    assert_eq!(fields("x-forwarded-proto"), ["http"], "{}", heads[0]);

    // Without a client value: the client alone.
    exchange(&proxy, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let heads = upstream.heads();
    let last = heads.last().unwrap().to_ascii_lowercase();
    assert_eq!(last.matches("x-forwarded-for:").count(), 1, "{last}");
    assert!(last.contains("x-forwarded-for: 127.0.0.1\r\n"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_both_transfer_encoding_and_content_length_is_refused() {
    let upstream = Upstream::start(Duration::ZERO).await;
    let proxy = proxy_to(&upstream, |b| b).await;
    for request in [
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
    ] {
        let answer = exchange(&proxy, request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
    }
    assert!(upstream.heads().is_empty(), "a request framed two ways reached the target: {:?}", upstream.heads());

    // On a kept-alive connection, after requests framed one way (bodies that look like headers
    // included), the one framed two ways is still found.
    let looks_like_headers = "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
    let n = looks_like_headers.len();
    let pipelined = format!(
        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n{looks_like_headers}\
         POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{n:x};ext=1\r\n{looks_like_headers}\r\n0\r\nX-Trailer: 1\r\n\r\n\
         GET /c HTTP/1.1\r\nHost: x\r\n\r\n\
         POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let answer = exchange(&proxy, &pipelined).await;
    let statuses: Vec<&str> = answer.match_indices("HTTP/1.1 ").map(|(i, _)| &answer[i + 9..i + 12]).collect();
    assert_eq!(statuses, ["200", "200", "200", "400"], "{answer}");
    let paths: Vec<String> =
        upstream.heads().iter().map(|h| h.split_whitespace().nth(1).unwrap_or_default().to_owned()).collect();
    assert_eq!(paths, ["/a", "/b", "/c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_errors_are_generic() {
    // A target that refuses connections.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let proxy = LocalProxyRouter::builder().pool("blue").build().await.unwrap();
    let target =
        Target { id: "t-secret".into(), address: address.to_string(), zone: None, version: "v1".into(), tag: None };
    proxy.add_targets(&"blue".into(), &[target]).await.unwrap();
    let answer = exchange(&proxy, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    let text = body(&answer);
    assert_eq!(text, "bluegreen proxy: bad gateway\n", "{answer}");
    for secret in [address.to_string(), address.port().to_string(), "refused".to_owned(), "t-secret".to_owned()] {
        assert!(!text.contains(&secret), "the 502 body tells {secret:?}: {text}");
    }
    assert_eq!(proxy.stats().total.failed, 1);

    // A target that does not answer in time: 504, as generic.
    let upstream = Upstream::start(Duration::from_secs(30)).await;
    let proxy = proxy_to(&upstream, |b| b.response_timeout(Duration::from_millis(300))).await;
    let started = Instant::now();
    let answer = exchange(&proxy, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(body(&answer), "bluegreen proxy: gateway timeout\n", "{answer}");
    assert!(!answer.contains(&upstream.address), "{answer}");
    assert_eq!(proxy.stats().total.failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_address_that_is_not_loopback_needs_an_opt_in() {
    for address in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0"] {
        let err = LocalProxyRouter::builder().pool("blue").listen(address).build().await.unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{address}: {err}");
        assert!(err.to_string().contains("allow_non_loopback"), "{address}: {err}");
    }
    // Loopback needs nothing.
    let proxy = LocalProxyRouter::builder().pool("blue").listen("127.0.0.1:0").build().await.unwrap();
    assert!(proxy.address().ip().is_loopback());
}
