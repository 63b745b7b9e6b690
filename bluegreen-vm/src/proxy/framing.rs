//! Finds requests framed two ways (`Transfer-Encoding` and `Content-Length` both), which hyper
//! accepts by dropping `Content-Length` before the service sees the request.
//!
//! A client connection is read through [`Watched`], which follows the HTTP/1.1 message
//! framing of the bytes hyper reads (heads, `Content-Length` bodies, chunked bodies with their
//! trailers) and notes, for each request head in order, whether it carried both headers. The
//! service takes one note per request ([`Heads::framed_two_ways`]): hyper reads a request's
//! whole head before calling the service, and calls it for one request at a time, in order.
//!
//! When the bytes stop making sense (a line too long, a bad chunk size, a request hyper will
//! refuse anyway), the watch gives up for the rest of the connection: hyper answers or closes
//! such a connection itself.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest line followed (hyper's default limit on a whole head is about 400 KiB).
const MAX_LINE: usize = 512 * 1024;

/// Where the framing of the byte stream stands.
#[derive(Debug)]
enum State {
    /// Reading a request head, line by line.
    Head { te: Option<bool>, cl: bool, length: Option<u64>, started: bool },
    /// Inside a body of known length: this many bytes left.
    Fixed(u64),
    /// A chunk-size line.
    ChunkSize,
    /// Inside a chunk: this many bytes left, then its CRLF.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// The trailer section after the last chunk, up to an empty line.
    Trailers,
    /// Not followed any more.
    Lost,
}

impl State {
    fn head() -> Self {
        Self::Head { te: None, cl: false, length: None, started: false }
    }
}

#[derive(Debug)]
struct Tracker {
    state: State,
    line: Vec<u8>,
    /// One note per request head seen, oldest first: framed two ways?
    notes: VecDeque<bool>,
}

/// The notes of one connection, shared by its reader and its service.
#[derive(Debug, Clone)]
pub(super) struct Heads(Arc<Mutex<Tracker>>);

impl Heads {
    pub(super) fn new() -> Self {
        Self(Arc::new(Mutex::new(Tracker { state: State::head(), line: Vec::new(), notes: VecDeque::new() })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the request the service is called for now (the oldest not asked about) carried
    /// both `Transfer-Encoding` and `Content-Length`.
    pub(super) fn framed_two_ways(&self) -> bool {
        self.lock().notes.pop_front().unwrap_or(false)
    }

    fn feed(&self, mut bytes: &[u8]) {
        let mut tracker = self.lock();
        while !bytes.is_empty() {
            match tracker.state {
                State::Lost => return,
                State::Fixed(left) | State::ChunkData(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[take..];
                    let left = left - take as u64;
                    tracker.state = match tracker.state {
                        State::Fixed(_) if left == 0 => State::head(),
                        State::Fixed(_) => State::Fixed(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                }
                _ => match bytes.iter().position(|b| *b == b'\n') {
                    Some(end) => {
                        tracker.line.extend_from_slice(&bytes[..end]);
                        bytes = &bytes[end + 1..];
                        let mut line = std::mem::take(&mut tracker.line);
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        tracker.on_line(&line);
                    }
                    None => {
                        tracker.line.extend_from_slice(bytes);
                        if tracker.line.len() > MAX_LINE {
                            tracker.state = State::Lost;
                        }
                        return;
                    }
                },
            }
        }
    }
}

impl Tracker {
    fn on_line(&mut self, line: &[u8]) {
        // `Lost` stays if this returns early.
        self.state = match std::mem::replace(&mut self.state, State::Lost) {
            State::Head { te, cl, length, started } => {
                if line.is_empty() {
                    if !started {
                        // Empty lines before a request line are ignored.
                        State::head()
                    } else {
                        let two_ways = te.is_some() && cl;
                        self.notes.push_back(two_ways);
                        match (two_ways, te, length) {
                            // Refused and the connection closed: nothing more to follow.
                            (true, _, _) => State::Lost,
                            (false, Some(true), _) => State::ChunkSize,
                            // A transfer coding other than chunked: hyper refuses the request.
                            (false, Some(false), _) => State::Lost,
                            (false, None, Some(n)) if n > 0 => State::Fixed(n),
                            _ => State::head(),
                        }
                    }
                } else if !started {
                    State::Head { te, cl, length, started: true }
                } else {
                    let (mut te, mut cl, mut length) = (te, cl, length);
                    if let Some(colon) = line.iter().position(|b| *b == b':') {
                        let name = String::from_utf8_lossy(&line[..colon]).trim().to_ascii_lowercase();
                        let value = String::from_utf8_lossy(&line[colon + 1..]).trim().to_owned();
                        match name.as_str() {
                            "transfer-encoding" => {
                                let last = value.rsplit(',').next().unwrap_or_default().trim();
                                te = Some(last.eq_ignore_ascii_case("chunked"));
                            }
                            "content-length" => {
                                cl = true;
                                match value.parse::<u64>() {
                                    Ok(n) => length = Some(n),
                                    // hyper refuses it (or it is framed two ways anyway).
                                    Err(_) if te.is_none() => return,
                                    Err(_) => {}
                                }
                            }
                            _ => {}
                        }
                    }
                    State::Head { te, cl, length, started }
                }
            }
            State::ChunkSize => {
                let size = line.split(|b| *b == b';').next().unwrap_or_default();
                let size = String::from_utf8_lossy(size);
                match u64::from_str_radix(size.trim(), 16) {
                    Ok(0) => State::Trailers,
                    Ok(n) => State::ChunkData(n),
                    Err(_) => State::Lost,
                }
            }
            State::ChunkEnd if line.is_empty() => State::ChunkSize,
            State::Trailers if line.is_empty() => State::head(),
            State::Trailers => State::Trailers,
            State::ChunkEnd | State::Fixed(_) | State::ChunkData(_) | State::Lost => State::Lost,
        };
    }
}

/// A client stream whose incoming bytes are followed by [`Heads`].
#[derive(Debug)]
pub(super) struct Watched<S> {
    inner: S,
    heads: Heads,
}

impl<S> Watched<S> {
    pub(super) fn new(inner: S, heads: Heads) -> Self {
        Self { inner, heads }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.heads.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notes(stream: &[u8], split_every: usize) -> Vec<bool> {
        let heads = Heads::new();
        for piece in stream.chunks(split_every.max(1)) {
            heads.feed(piece);
        }
        let n = heads.lock().notes.len();
        (0..n).map(|_| heads.framed_two_ways()).collect()
    }

    #[test]
    fn heads_are_followed_through_bodies_of_both_kinds_whatever_the_reads() {
        let stream = b"\r\nPOST /a HTTP/1.1\r\nContent-Length: 28\r\n\r\nTransfer-Encoding: chunked\r\n\
            POST /b HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n5;x=y\r\nab\ncd\r\n0\r\nT: 1\r\n\r\n\
            GET /c HTTP/1.1\n\n\
            POST /d HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /e HTTP/1.1\r\n\r\n";
        for split in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(notes(stream, split), [false, false, false, true], "reads of {split} bytes");
        }
    }

    #[test]
    fn nonsense_stops_the_watch() {
        assert_eq!(
            notes(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n", 5),
            [false]
        );
        assert_eq!(notes(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\nGET / HTTP/1.1\r\n\r\n", 5), Vec::<bool>::new());
    }
}
