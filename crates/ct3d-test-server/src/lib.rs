//! A tiny HTTP/1.1 file server on 127.0.0.1 for the fetch tests, with fault injection, and a zip
//! builder. A dev-dependency of `ct3d-fetch` (its `tests/fetch.rs`) and of `ct3d` (its
//! `tests/cli_fetch.rs`); nothing that ships depends on it.
//!
//! The server answers GET with `Connection: close`, honours `Range: bytes=N-` (206 with
//! `Content-Range`, 416 past the end), answers 404 for unknown paths, and can be told, per path and
//! per request in order, to answer with a status or to drop the connection after some bytes. It
//! serves a bounded number of connections and records every request.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Cursor, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zip::write::SimpleFileOptions;

/// The most connections one server accepts before its thread ends.
const MAX_CONNECTIONS: usize = 200;

/// What to do with one request instead of serving it normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and an empty body.
    Status(u16),
    /// Send the headers (announcing the whole body) and this many body bytes, then hang up.
    DropAfter(usize),
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The path, e.g. `/CT-0.zip`.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

#[derive(Default)]
struct Route {
    body: Vec<u8>,
    faults: VecDeque<Fault>,
    ignore_range: bool,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    requests: Vec<Request>,
}

/// A running server; its thread stops after [`MAX_CONNECTIONS`] or with the test process.
pub struct Server {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Server {
    /// Binds 127.0.0.1:0 and serves on a background thread.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(MAX_CONNECTIONS) {
                let Ok(stream) = stream else { continue };
                let _ = serve(stream, &shared);
            }
        });
        Self { port, state }
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Serves `body` at `/name`.
    pub fn add(&self, name: &str, body: Vec<u8>) {
        let mut state = self.state.lock().unwrap();
        state.routes.entry(format!("/{name}")).or_default().body = body;
    }

    /// Queues a fault for the next request of `/name` that has none queued before it.
    pub fn fault(&self, name: &str, fault: Fault) {
        let mut state = self.state.lock().unwrap();
        let route = state.routes.entry(format!("/{name}")).or_default();
        route.faults.push_back(fault);
    }

    /// Makes `/name` answer 200 with the whole file even to range requests.
    pub fn ignore_range(&self, name: &str) {
        let mut state = self.state.lock().unwrap();
        state
            .routes
            .entry(format!("/{name}"))
            .or_default()
            .ignore_range = true;
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests for `/name`.
    pub fn requests_for(&self, name: &str) -> Vec<Request> {
        let path = format!("/{name}");
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_owned());
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));

    let (fault, body, ignore_range) = {
        let mut state = state.lock().unwrap();
        state.requests.push(Request {
            path: path.to_owned(),
            range: range.clone(),
        });
        match state.routes.get_mut(path) {
            Some(route) => (
                route.faults.pop_front(),
                Some(route.body.clone()),
                route.ignore_range,
            ),
            None => (None, None, false),
        }
    };
    let mut out = stream;
    if method != "GET" {
        return respond(&mut out, 405, &[], &[], None);
    }
    if let Some(Fault::Status(status)) = fault {
        return respond(&mut out, status, &[], &[], None);
    }
    let Some(body) = body else {
        return respond(&mut out, 404, &[], b"not found", None);
    };
    let drop_after = match fault {
        Some(Fault::DropAfter(n)) => Some(n),
        _ => None,
    };
    let start = range
        .as_deref()
        .filter(|_| !ignore_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    match start {
        Some(start) if start >= body.len() => {
            let header = format!("Content-Range: bytes */{}", body.len());
            respond(&mut out, 416, &[header], &[], None)
        }
        Some(start) => {
            let header = format!(
                "Content-Range: bytes {start}-{}/{}",
                body.len() - 1,
                body.len()
            );
            respond(&mut out, 206, &[header], &body[start..], drop_after)
        }
        None => respond(&mut out, 200, &[], &body, drop_after),
    }
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    headers: &[String],
    body: &[u8],
    drop_after: Option<usize>,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/zip\r\nConnection: close\r\n",
        body.len()
    );
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let sent = drop_after.map_or(body.len(), |n| n.min(body.len()));
    out.write_all(&body[..sent])?;
    out.flush()?;
    out.shutdown(Shutdown::Both)
}

/// Bytes that look like a small gzip file and do not compress (a fake `.nii.gz` scan).
pub fn fake_scan(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut bytes = vec![0x1f, 0x8b, 0x08, 0x00];
    while bytes.len() < len {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        bytes.push((state >> 33) as u8);
    }
    bytes.truncate(len);
    bytes
}

/// A deflate zip archive of `entries` (name → content); a name ending in `/` is a folder.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, content) in entries {
        if name.ends_with('/') {
            zip.add_directory(*name, options).unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(content).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

/// A zip with one symbolic link `name` → `target` (and one ordinary scan beside it).
pub fn zip_with_symlink(folder: &str, name: &str, target: &str) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default();
    zip.start_file(format!("{folder}/study_0001.nii.gz"), options)
        .unwrap();
    zip.write_all(&fake_scan(1, 100)).unwrap();
    zip.add_symlink(name, target, options).unwrap();
    zip.finish().unwrap().into_inner()
}
