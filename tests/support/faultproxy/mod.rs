//! A fault-injecting HTTP/1.1 reverse proxy for product tests: it sits between Envoy's JWKS
//! cluster and the real key manager on 127.0.0.1 and, per request, passes, fails, delays or
//! replaces the answer. Std only; every thread it starts ends when the proxy is dropped.
//!
//! One request per connection: requests go upstream with `connection: close` and every answer
//! carries `connection: close`, so the client never reuses a connection whose fate belongs to an
//! earlier mode.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

mod http;

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long an idle loop waits before looking at the stop flag and the mode again.
const TICK: Duration = Duration::from_millis(5);
/// Longest time spent on one request in any mode but `Delay`, so no thread can live forever.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// What the proxy does with the next requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Forward to the upstream and relay its answer.
    Pass,
    /// Accept, read the request, then close the connection without an answer (the client sees
    /// the upstream reset before any header).
    Down,
    /// Stop listening: connections are refused until another mode is set.
    Refuse,
    /// Answer this status with a short text body; the upstream is not contacted.
    Status(u16),
    /// Wait this long, then pass. Longer than the client's timeout, it is a hang.
    Delay(Duration),
    /// Answer 200 with this body (garbage JSON, `{"keys":[]}`, 10 MB, ...); no upstream.
    Body(Vec<u8>),
}

pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    port: u16,
    mode: Mutex<Mode>,
    stop: AtomicBool,
    /// Requests seen, by path (without the query).
    counts: Mutex<BTreeMap<String, usize>>,
    /// Connections closed without an answer in `Down` mode.
    dropped: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking connection thread must not take the test harness down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FaultProxy {
    /// Listen on a free port of 127.0.0.1 and forward to `upstream`, in `Mode::Pass`.
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream,
            port,
            mode: Mutex::new(Mode::Pass),
            stop: AtomicBool::new(false),
            counts: Mutex::new(BTreeMap::new()),
            dropped: AtomicUsize::new(0),
        });
        listener.set_nonblocking(true)?;
        let for_thread = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name(format!("faultproxy-{port}"))
            .spawn(move || accept_loop(&for_thread, listener))?;
        Ok(FaultProxy {
            port,
            shared,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Applies to requests read from now on.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    pub fn mode(&self) -> Mode {
        lock(&self.shared.mode).clone()
    }

    /// Requests seen in every mode (refused connections are not requests).
    pub fn fetch_count(&self) -> usize {
        lock(&self.shared.counts).values().sum()
    }

    /// Requests seen for one path (query ignored).
    pub fn fetch_count_path(&self, path: &str) -> usize {
        lock(&self.shared.counts).get(path).copied().unwrap_or(0)
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        lock(&self.shared.counts).clone()
    }

    /// Connections closed without an answer in `Down` mode.
    pub fn dropped_count(&self) -> usize {
        self.shared.dropped.load(Ordering::SeqCst)
    }

    /// Set every counter back to zero.
    pub fn reset_count(&self) {
        lock(&self.shared.counts).clear();
        self.shared.dropped.store(0, Ordering::SeqCst);
    }

    /// Wait until at least `n` requests were seen; false on timeout.
    pub fn wait_for_fetches(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.fetch_count() < n {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(TICK);
        }
        true
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let mut listener = Some(listener);
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        connections.retain(|c| !c.is_finished());
        if *lock(&shared.mode) == Mode::Refuse {
            // Closing the listening socket makes the kernel refuse new connections.
            listener = None;
            thread::sleep(TICK);
            continue;
        }
        let Some(active) = listener.as_ref() else {
            listener = rebind(shared.port);
            if listener.is_none() {
                thread::sleep(TICK);
            }
            continue;
        };
        match active.accept() {
            Ok((stream, _)) => {
                let for_thread = Arc::clone(shared);
                let spawned = thread::Builder::new()
                    .name("faultproxy-conn".to_string())
                    .spawn(move || {
                        let _ = serve(&for_thread, stream);
                    });
                if let Ok(handle) = spawned {
                    connections.push(handle);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(TICK),
            Err(_) => thread::sleep(TICK),
        }
    }
    drop(listener);
    for connection in connections {
        let _ = connection.join();
    }
}

fn rebind(port: u16) -> Option<TcpListener> {
    let listener = TcpListener::bind(("127.0.0.1", port)).ok()?;
    listener.set_nonblocking(true).ok()?;
    Some(listener)
}

fn serve(shared: &Shared, mut client: TcpStream) -> io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_nodelay(true)?;
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let request = http::read_request(&mut client, &shared.stop, deadline)?;
    *lock(&shared.counts)
        .entry(request.path.clone())
        .or_insert(0) += 1;
    let mode = lock(&shared.mode).clone();
    match mode {
        Mode::Down | Mode::Refuse => {
            shared.dropped.fetch_add(1, Ordering::SeqCst);
            client.shutdown(std::net::Shutdown::Both)
        }
        Mode::Status(status) => {
            let answer = http::response(status, "text/plain", b"fault injected");
            http::write_all(&mut client, &answer, &shared.stop, deadline)
        }
        Mode::Body(body) => {
            let answer = http::response(200, "application/json", &body);
            http::write_all(&mut client, &answer, &shared.stop, deadline)
        }
        Mode::Delay(delay) => {
            if sleep_unless_stopped(&shared.stop, delay) {
                pass(shared, &mut client, &request)
            } else {
                Ok(())
            }
        }
        Mode::Pass => pass(shared, &mut client, &request),
    }
}

/// Sleep in small steps; false when the proxy is stopping.
fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) -> bool {
    let end = Instant::now() + total;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        thread::sleep(TICK.min(end.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::SeqCst)
}

fn pass(shared: &Shared, client: &mut TcpStream, request: &http::Request) -> io::Result<()> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let answer = match forward(shared, request, deadline) {
        Ok(answer) => answer,
        Err(_) => http::response(502, "text/plain", b"upstream unreachable"),
    };
    http::write_all(client, &answer, &shared.stop, deadline)
}

fn forward(shared: &Shared, request: &http::Request, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut upstream = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(2))?;
    upstream.set_nodelay(true)?;
    http::write_all(
        &mut upstream,
        &request.to_upstream(),
        &shared.stop,
        deadline,
    )?;
    let raw = http::read_to_end(&mut upstream, &shared.stop, deadline)?;
    http::close_response(&raw)
}
