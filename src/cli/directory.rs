//! `keygate directory serve --input keygate.yaml --listen HOST:PORT [--token-env NAME]`: a small
//! directory source (`docs/directory.md`) serving the declaration's `applications`, following
//! edits of the file (checked every 200 ms). A declaration that no longer parses is reported and
//! the last good one stays served. One thread per connection, HTTP/1.1 with keep-alive; every
//! request is logged on stderr (method, target, status).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::declaration::validate;
use crate::cli::directory_history::{Answer, Served};
use crate::config::ApplicationConfig;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Serve a declaration's applications as a directory source, following edits of the file.
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The declaration (keygate.yaml) whose `applications` are served.
    #[arg(long)]
    pub input: PathBuf,
    /// Address to listen on, HOST:PORT (port 0: any free port, printed on the first line).
    #[arg(long)]
    pub listen: String,
    /// Environment variable holding the bearer token gateways must send (`Authorization:
    /// Bearer <token>`); omitted: no authentication.
    #[arg(long)]
    pub token_env: Option<String>,
    /// Changes kept for `/v1/changes`; a gateway further behind gets 410 and a snapshot.
    #[arg(long, default_value_t = 100_000)]
    pub history: usize,
}

/// Largest request head read, bytes.
const MAX_HEAD: usize = 16 * 1024;
/// How often the declaration is checked for edits.
const POLL: Duration = Duration::from_millis(200);

pub fn run(args: Args) -> i32 {
    match args.command {
        Command::Serve(args) => serve(args),
    }
}

/// The part of a declaration the source serves (the rest is `generate`'s to judge).
#[derive(serde::Deserialize)]
struct Applications {
    #[serde(default)]
    applications: Vec<ApplicationConfig>,
}

/// The applications of the declaration at `path`, or why not. Only `applications` is read (a
/// JSON declaration with serde_json, which reads 100,000 applications in well under a second;
/// YAML with the declaration's parser and budget).
pub fn read_applications(path: &Path) -> Result<Vec<ApplicationConfig>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let at = |e: String| format!("{}: {e}", path.display());
    if text.trim_start().starts_with('{') {
        let parsed: Applications = serde_json::from_str(&text).map_err(|e| at(e.to_string()))?;
        return Ok(parsed.applications);
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = validate::MAX_YAML_NODES;
    budget.max_events = validate::MAX_YAML_EVENTS;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let parsed: Applications =
        serde_saphyr::from_str_with_options(&text, options).map_err(|e| at(e.to_string()))?;
    Ok(parsed.applications)
}

fn serve(args: ServeArgs) -> i32 {
    let token = match &args.token_env {
        None => None,
        Some(name) => match std::env::var(name) {
            Ok(token) if !token.is_empty() => Some(token),
            _ => {
                eprintln!("keygate directory serve: --token-env {name}: the variable is not set");
                return 2;
            }
        },
    };
    let applications = match read_applications(&args.input) {
        Ok(apps) => apps,
        Err(err) => {
            eprintln!("keygate directory serve: {err}");
            return 1;
        }
    };
    let listener = match TcpListener::bind(&args.listen) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("keygate directory serve: --listen {}: {err}", args.listen);
            return 2;
        }
    };
    let run = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let served = Served::new(run, applications, args.history).with_token(token);
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!(
        "DIRECTORY READY http://{address} ({} applications, version {})",
        served.len(),
        served.version()
    );
    let _ = std::io::stdout().flush();
    let served = Arc::new(Mutex::new(served));
    let watched = Arc::clone(&served);
    let input = args.input.clone();
    std::thread::spawn(move || follow(&input, &watched));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let served = Arc::clone(&served);
        std::thread::spawn(move || connection(stream, &served));
    }
    0
}

/// Polls the declaration and applies its edits (modification time, size and contents).
fn follow(input: &Path, served: &Mutex<Served>) {
    let stamp = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut last = stamp(input);
    let mut last_text = std::fs::read(input).ok();
    loop {
        std::thread::sleep(POLL);
        let now = stamp(input);
        if now == last {
            continue;
        }
        last = now;
        let text = std::fs::read(input).ok();
        if text == last_text {
            continue;
        }
        last_text = text;
        match read_applications(input) {
            Ok(apps) => {
                let Ok(mut served) = served.lock() else {
                    return;
                };
                let changed = served.update(apps);
                if changed > 0 {
                    eprintln!(
                        "directory: {} changed: {changed} change(s), version {} ({} applications)",
                        input.display(),
                        served.version(),
                        served.len()
                    );
                }
            }
            Err(err) => {
                eprintln!("directory: edit not applied, still serving the last good one: {err}")
            }
        }
    }
}

/// One client connection: requests until it closes (or sends `Connection: close`).
fn connection(stream: TcpStream, served: &Mutex<Served>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_head(&mut reader) else {
            return;
        };
        let answer = match served.lock() {
            Ok(mut served) => served.answer(
                &request.method,
                &request.target,
                request.header("if-none-match"),
                request.header("authorization"),
            ),
            Err(_) => return,
        };
        eprintln!(
            "directory: {} {} -> {}",
            request.method, request.target, answer.status
        );
        let close = request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if write_answer(&mut writer, &answer, request.method == "HEAD", close).is_err() || close {
            return;
        }
    }
}

struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_head(reader: &mut BufReader<TcpStream>) -> Option<Head> {
    let mut lines = Vec::new();
    let mut size = 0;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).ok()?;
        if n == 0 {
            return None;
        }
        size += n;
        if size > MAX_HEAD {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            break;
        }
        lines.push(line);
    }
    let mut first = lines.first()?.split_whitespace();
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    // A request body (none is expected) is read and dropped.
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(0);
    if length > 0 {
        let mut sink = Vec::new();
        reader.by_ref().take(length).read_to_end(&mut sink).ok()?;
    }
    Some(Head {
        method,
        target,
        headers,
    })
}

fn write_answer(
    out: &mut TcpStream,
    answer: &Answer,
    head: bool,
    close: bool,
) -> std::io::Result<()> {
    let reason = match answer.status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        _ => "Error",
    };
    let mut text = format!("HTTP/1.1 {} {reason}\r\n", answer.status);
    for (name, value) in &answer.headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if answer.status != 304 {
        text.push_str(&format!("content-length: {}\r\n", answer.body.len()));
    }
    if close {
        text.push_str("connection: close\r\n");
    }
    text.push_str("\r\n");
    out.write_all(text.as_bytes())?;
    if !head && answer.status != 304 {
        out.write_all(&answer.body)?;
    }
    out.flush()
}
