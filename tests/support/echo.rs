//! An in-process upstream: a thread serving HTTP/1.1 on 127.0.0.1 that answers every request 200
//! with `{"method", "path", "headers": {...}}` and records what it received, so tests can check
//! which headers reached it and that denied requests never did.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct EchoedRequest {
    pub method: String,
    pub path: String,
    /// Lower-cased names; repeated headers joined with ", " (as the JSON reply shows them).
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl EchoedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

pub struct EchoUpstream {
    port: u16,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<EchoedRequest>>>,
    thread: Option<JoinHandle<()>>,
}

impl EchoUpstream {
    pub fn start() -> EchoUpstream {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind echo upstream");
        let port = listener.local_addr().expect("echo address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            let received = Arc::clone(&received);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let received = Arc::clone(&received);
                    // One thread per connection: Envoy may hold one open while opening another.
                    std::thread::spawn(move || serve(stream, &received));
                }
            })
        };
        EchoUpstream {
            port,
            stop,
            received,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<EchoedRequest> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn request_count(&self) -> usize {
        self.received.lock().map(|r| r.len()).unwrap_or_default()
    }

    pub fn last_request(&self) -> Option<EchoedRequest> {
        self.received.lock().ok().and_then(|r| r.last().cloned())
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves requests on one connection until the peer closes it or a read times out.
fn serve(stream: TcpStream, received: &Mutex<Vec<EchoedRequest>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let reply = serde_json::json!({
            "method": request.method,
            "path": request.path,
            "headers": request.headers,
        })
        .to_string();
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if let Ok(mut r) = received.lock() {
            r.push(request);
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(reply.as_bytes()).is_err()
        {
            return;
        }
        let _ = writer.flush();
        if close {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<EchoedRequest> {
    let mut line = String::new();
    if read_line_lossy(reader, &mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut h = String::new();
        if read_line_lossy(reader, &mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            let v = v.trim().to_string();
            headers
                .entry(k)
                .and_modify(|old| {
                    old.push_str(", ");
                    old.push_str(&v);
                })
                .or_insert(v);
        }
    }
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked(reader)?
    } else {
        let len = headers
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
        body
    };
    Some(EchoedRequest {
        method,
        path,
        headers,
        body,
    })
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        read_line_lossy(reader, &mut size_line).ok()?;
        let size_hex = size_line.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            loop {
                let mut t = String::new();
                read_line_lossy(reader, &mut t).ok()?;
                if t.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        chunk.truncate(size);
        body.extend_from_slice(&chunk);
    }
}

/// A line of the request as text, bytes that are not UTF-8 replaced (a header value may hold
/// obs-text, which Envoy forwards).
fn read_line_lossy(reader: &mut impl BufRead, line: &mut String) -> std::io::Result<usize> {
    let mut bytes = Vec::new();
    let n = reader.read_until(b'\n', &mut bytes)?;
    line.push_str(&String::from_utf8_lossy(&bytes));
    Ok(n)
}
