//! Just enough HTTP/1.1 for the fault proxy: read one request, rewrite heads so every
//! connection closes after one exchange, and read/write with deadlines that honour the stop flag.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Socket timeout per read/write call, so loops can look at the stop flag.
const POLL: Duration = Duration::from_millis(50);
const MAX_HEAD: usize = 64 * 1024;
const MAX_REQUEST_BODY: usize = 1024 * 1024;

pub struct Request {
    /// Request line and headers, without the final empty line.
    pub head: String,
    pub path: String,
    pub body: Vec<u8>,
}

impl Request {
    /// The request as sent upstream: same line and headers, but `connection: close`.
    pub fn to_upstream(&self) -> Vec<u8> {
        let mut out = without_connection_header(&self.head);
        out.push_str("connection: close\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn without_connection_header(head: &str) -> String {
    let mut out = String::with_capacity(head.len() + 32);
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let is_connection = line
            .split_once(':')
            .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("connection"));
        if !is_connection {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn check(stop: &AtomicBool, deadline: Instant) -> io::Result<()> {
    if stop.load(Ordering::SeqCst) {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "proxy stopping"));
    }
    if Instant::now() >= deadline {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Read one request head and its `Content-Length` body.
pub fn read_request(
    stream: &mut TcpStream,
    stop: &AtomicBool,
    deadline: Instant,
) -> io::Result<Request> {
    stream.set_read_timeout(Some(POLL))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too large"));
        }
        check(stop, deadline)?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(e),
        }
    };
    let (head, rest) = buf.split_at_checked(head_end).unwrap_or((&buf, &[]));
    let head = String::from_utf8_lossy(head).into_owned();
    let mut body = rest.get(4..).unwrap_or_default().to_vec();
    let path = head
        .split_whitespace()
        .nth(1)
        .map(|target| target.split('?').next().unwrap_or(target).to_string())
        .unwrap_or_default();
    let length = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST_BODY);
    while body.len() < length {
        check(stop, deadline)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(e),
        }
    }
    body.truncate(length);
    Ok(Request { head, path, body })
}

/// First value of a header in a head (name case-insensitive).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Read until the peer closes (the upstream was asked to close).
pub fn read_to_end(
    stream: &mut TcpStream,
    stop: &AtomicBool,
    deadline: Instant,
) -> io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(POLL))?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        check(stop, deadline)?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Write everything, a slice at a time, giving up when stopping or past the deadline.
pub fn write_all(
    stream: &mut TcpStream,
    mut bytes: &[u8],
    stop: &AtomicBool,
    deadline: Instant,
) -> io::Result<()> {
    stream.set_write_timeout(Some(POLL))?;
    while !bytes.is_empty() {
        check(stop, deadline)?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(e),
        }
    }
    stream.flush()
}

/// The upstream's response with its `Connection` header replaced by `connection: close`.
pub fn close_response(raw: &[u8]) -> io::Result<Vec<u8>> {
    let end = find(raw, b"\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no response head"))?;
    let (head, rest) = raw.split_at_checked(end).unwrap_or((raw, &[]));
    let mut out = without_connection_header(&String::from_utf8_lossy(head));
    out.push_str("connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(rest.get(4..).unwrap_or_default());
    Ok(bytes)
}

/// A complete response of our own.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Fault",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
