#![cfg(not(target_arch = "wasm32"))]
//! The fault proxy against a std-only upstream on 127.0.0.1: every mode as a client sees it,
//! the counters, and that dropping the proxy stops it (even with a hanging request).

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use support::faultproxy::{FaultProxy, Mode};

const UPSTREAM_BODY: &str = r#"{"keys":[{"kty":"oct","kid":"upstream"}]}"#;

/// A tiny JWKS server: answers every request with `UPSTREAM_BODY` and a `max-age`, then closes.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start() -> io::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (stop2, served2) = (Arc::clone(&stop), Arc::clone(&served));
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = answer(stream, &served2);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Upstream {
            addr,
            stop,
            served,
            thread: Some(thread),
        })
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

/// Counts the request before answering, so a client that got the answer sees the count.
fn answer(mut stream: TcpStream, served: &AtomicUsize) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&byte);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    // The proxy must ask the upstream to close, so relaying until EOF terminates.
    let closes = text.contains("\r\nconnection: close\r\n");
    served.fetch_add(1, Ordering::SeqCst);
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=60\r\n\
         connection: keep-alive\r\nx-asked-to-close: {closes}\r\n\
         content-length: {}\r\n\r\n{UPSTREAM_BODY}",
        UPSTREAM_BODY.len()
    );
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// GET with a deadline, as Envoy's JWKS fetch would; reads until the server closes.
fn get(port: u16, path: &str, timeout: Duration) -> io::Result<Reply> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: jwks.test\r\nconnection: keep-alive\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(io::ErrorKind::UnexpectedEof)?;
    let (head, rest) = raw
        .split_at_checked(end)
        .ok_or(io::ErrorKind::InvalidData)?;
    let head = String::from_utf8_lossy(head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(io::ErrorKind::InvalidData)?;
    Ok(Reply {
        status,
        head,
        body: rest.get(4..).unwrap_or_default().to_vec(),
    })
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.head.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const T: Duration = Duration::from_secs(5);

#[test]
fn pass_relays_upstream_and_counts_by_path() {
    let upstream = Upstream::start().unwrap();
    let proxy = FaultProxy::start(upstream.addr).unwrap();
    let reply = get(proxy.port(), "/jwks?x=1", T).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, UPSTREAM_BODY.as_bytes());
    assert_eq!(header(&reply, "cache-control"), Some("max-age=60"));
    assert_eq!(header(&reply, "connection"), Some("close"));
    assert_eq!(header(&reply, "x-asked-to-close"), Some("true"));
    get(proxy.port(), "/jwks", T).unwrap();
    get(proxy.port(), "/other", T).unwrap();
    assert_eq!(proxy.fetch_count(), 3);
    assert_eq!(proxy.fetch_count_path("/jwks"), 2);
    assert_eq!(proxy.fetch_count_path("/other"), 1);
    assert_eq!(upstream.served(), 3);
    proxy.reset_count();
    assert_eq!(proxy.fetch_count(), 0);
    assert!(proxy.counts().is_empty());
}

#[test]
fn status_and_body_modes_answer_without_upstream() {
    let upstream = Upstream::start().unwrap();
    let proxy = FaultProxy::start(upstream.addr).unwrap();
    proxy.set_mode(Mode::Status(500));
    assert_eq!(get(proxy.port(), "/jwks", T).unwrap().status, 500);
    proxy.set_mode(Mode::Status(503));
    assert_eq!(get(proxy.port(), "/jwks", T).unwrap().status, 503);
    proxy.set_mode(Mode::Body(b"{not json".to_vec()));
    let garbage = get(proxy.port(), "/jwks", T).unwrap();
    assert_eq!(
        (garbage.status, garbage.body.as_slice()),
        (200, &b"{not json"[..])
    );
    proxy.set_mode(Mode::Body(br#"{"keys":[]}"#.to_vec()));
    assert_eq!(
        get(proxy.port(), "/jwks", T).unwrap().body,
        br#"{"keys":[]}"#
    );
    let big = vec![b' '; 10 * 1024 * 1024];
    proxy.set_mode(Mode::Body(big.clone()));
    let reply = get(proxy.port(), "/jwks", T).unwrap();
    assert_eq!(header(&reply, "content-length"), Some("10485760"));
    assert_eq!(reply.body.len(), big.len());
    assert_eq!(upstream.served(), 0);
    assert_eq!(proxy.fetch_count_path("/jwks"), 5);
    proxy.set_mode(Mode::Pass);
    assert_eq!(
        get(proxy.port(), "/jwks", T).unwrap().body,
        UPSTREAM_BODY.as_bytes()
    );
    assert_eq!(upstream.served(), 1);
}

#[test]
fn down_closes_without_answer_and_refuse_stops_listening() {
    let upstream = Upstream::start().unwrap();
    let proxy = FaultProxy::start(upstream.addr).unwrap();
    proxy.set_mode(Mode::Down);
    for _ in 0..3 {
        let err = get(proxy.port(), "/jwks", T)
            .err()
            .expect("no answer while down");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ),
            "{err:?}"
        );
    }
    assert_eq!(proxy.dropped_count(), 3);
    assert_eq!(proxy.fetch_count(), 3);

    proxy.set_mode(Mode::Refuse);
    let deadline = Instant::now() + T;
    let refused = loop {
        match get(proxy.port(), "/jwks", T) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break true,
            _ if Instant::now() > deadline => break false,
            _ => thread::sleep(Duration::from_millis(10)),
        }
    };
    assert!(refused, "listener closed in Refuse mode");

    proxy.set_mode(Mode::Pass);
    let deadline = Instant::now() + T;
    let reply = loop {
        match get(proxy.port(), "/jwks", T) {
            Ok(reply) => break reply,
            Err(e) => {
                assert!(Instant::now() < deadline, "never listened again: {e:?}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    };
    assert_eq!(reply.status, 200, "same port serves again after Refuse");
    assert_eq!(upstream.served(), 1);
}

#[test]
fn delay_then_pass_and_hang_past_client_timeout() {
    let upstream = Upstream::start().unwrap();
    let proxy = FaultProxy::start(upstream.addr).unwrap();
    // A delay is a wait before passing: the reply can come no sooner (a lower bound, which a
    // loaded machine only makes longer).
    proxy.set_mode(Mode::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let reply = get(proxy.port(), "/jwks", T).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.body, UPSTREAM_BODY.as_bytes());

    // Longer than the client's timeout, it is a hang: the client gives up (its own timeout, not
    // a time measured here).
    proxy.set_mode(Mode::Delay(Duration::from_secs(3600)));
    let err = get(proxy.port(), "/jwks", Duration::from_millis(200))
        .err()
        .expect("client times out");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    assert_eq!(upstream.served(), 1);
    assert_eq!(proxy.fetch_count(), 2);
}

#[test]
fn pass_with_upstream_gone_answers_502() {
    // Reserve a port, then free it: nothing listens there.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = FaultProxy::start(dead).unwrap();
    assert_eq!(get(proxy.port(), "/jwks", T).unwrap().status, 502);
}

#[test]
fn drop_stops_everything_even_with_a_hanging_request() {
    let upstream = Upstream::start().unwrap();
    let proxy = FaultProxy::start(upstream.addr).unwrap();
    let port = proxy.port();
    proxy.set_mode(Mode::Delay(Duration::from_secs(3600)));
    let waiting = thread::spawn(move || get(port, "/jwks", Duration::from_secs(10)));
    assert!(proxy.wait_for_fetches(1, T), "request reached the proxy");
    // Dropping returns although the request would hang for an hour: polled, with a deadline far
    // below the hang and far above any scheduling delay.
    let dropping = thread::spawn(move || drop(proxy));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dropping.is_finished() {
        assert!(
            Instant::now() < deadline,
            "drop waited for the hanging request"
        );
        thread::sleep(Duration::from_millis(10));
    }
    dropping.join().unwrap();
    // The hanging request ends (connection closed) instead of waiting for its own timeout.
    let outcome = waiting.join().unwrap();
    assert!(outcome.is_err());
    assert_eq!(
        TcpStream::connect(("127.0.0.1", port)).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
}
