//! Debian's PostgreSQL 15 for the console's store tests: `initdb` in a fresh directory under the
//! system temp dir, `postgres` on 127.0.0.1 with a free port (its Unix socket in that directory),
//! trust authentication for the user `keygate`, stopped by PID on drop (SIGINT, a fast shutdown,
//! then SIGKILL if it lingers). `initdb` and `postgres` refuse to run as root: as root, both run
//! as `nobody` through `setpriv` (which execs, so the PID held is the server's), in a directory
//! chowned to it. A missing installation fails the test with the package to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::paths::free_port;
use super::process::ProcessGuard;

/// Where Debian's postgresql-15 package puts the server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Postgres {
    process: ProcessGuard,
    pub port: u16,
    dir: PathBuf,
    root: bool,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` from PG_BIN, as `nobody` when we are root.
fn command(program: &str, root: bool) -> Command {
    let path = Path::new(PG_BIN).join(program);
    if root {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(path);
        cmd
    } else {
        Command::new(path)
    }
}

/// `postgres` on `dir/data`, 127.0.0.1:`port`, its socket in `dir`, logging to `dir/postgres.log`.
fn spawn(dir: &Path, port: u16, root: bool) -> ProcessGuard {
    let log = dir.join("postgres.log");
    let child = command("postgres", root)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=20",
            "-c",
            "shared_buffers=16MB",
        ])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap(),
        )
        .spawn()
        .expect("start postgres");
    ProcessGuard::new("postgres", child, Some(log))
}

impl Postgres {
    pub fn start() -> Postgres {
        assert!(
            Path::new(PG_BIN).join("initdb").exists() && Path::new(PG_BIN).join("postgres").exists(),
            "PostgreSQL 15 is not installed ({PG_BIN}/initdb and postgres are missing): `make deps` \
             installs Debian's postgresql-15 (or: sudo apt-get install postgresql-15)"
        );
        let root = is_root();
        let dir = std::env::temp_dir().join(format!(
            "keygate-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if root {
            let chown = Command::new("chown")
                .arg("nobody:nogroup")
                .arg(&dir)
                .status()
                .unwrap();
            assert!(chown.success(), "chown nobody {}", dir.display());
        }
        let data = dir.join("data");
        let init = command("initdb", root)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "keygate",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--wal-segsize=1",
            ])
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb: {}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        let port = free_port();
        let process = spawn(&dir, port, root);
        let mut pg = Postgres {
            process,
            port,
            dir,
            root,
        };
        pg.wait_ready();
        pg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if postgres::Client::connect(&self.url("postgres"), postgres::NoTls).is_ok() {
                break;
            }
            assert!(
                self.process.is_running() && Instant::now() < deadline,
                "postgres did not start:\n{}",
                self.process.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown: clients are disconnected) and starts it again on the
    /// same data and port.
    pub fn restart(&mut self) {
        self.shut_down();
        self.process = spawn(&self.dir, self.port, self.root);
        self.wait_ready();
    }

    fn shut_down(&mut self) {
        if let Some(pid) = self.process.pid() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.process.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.process.stop();
    }

    /// The URL of database `db` (`postgres` exists from the start).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://keygate@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database; its URL.
    pub fn create_database(&self, name: &str) -> String {
        let mut client = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.url(name)
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.shut_down();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
