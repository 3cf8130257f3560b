//! End-to-end tests of `ct3d serve`: a real server process on 127.0.0.1, driven with plain
//! HTTP/1.1 over `TcpStream` (answers, bad input, limits, the bounded queue, panics, metrics and a
//! draining SIGTERM).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{assert_success, ct3d, s, small_train_args, stdout, synth_into};

/// A running `ct3d serve`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(run: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ct3d"))
        .args(["serve", "--run", s(run), "--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first line names the address.
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let port = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    // Keep reading stdout so that the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
    });
    Server { child, port }
}

/// One HTTP/1.1 exchange: status, headers (lower-case names) and body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before reading the whole body and close: that is fine.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    parse(&response)
}

fn parse(response: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, head.to_lowercase(), body.to_owned())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// Phantoms in `dir/data` and a small one-epoch run on them in `dir/run`.
fn trained_run(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = synth_into(&dir.join("data"), 3, 3, 11, Some(40));
    let run = dir.join("run");
    assert_success(&ct3d(&small_train_args(
        &data,
        &run,
        &["--epochs", "1", "--seed", "1"],
    )));
    (data, run)
}

fn predict(port: u16, body: &[u8]) -> (u16, String, String) {
    request(port, "POST", "/v1/predict", &[], body)
}

#[test]
fn serve_answers_refuses_bad_input_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = trained_run(dir.path());
    let scan = data.join("CT-23/phantom_0000.nii.gz");
    let predicted = ct3d(&["predict", "--run", s(&run), "--json", s(&scan)]);
    assert_success(&predicted);
    let expected = json(&stdout(&predicted))[0]["probability"]
        .as_f64()
        .unwrap();

    let server = start(
        &run,
        &["--workers", "1", "--max-body-mib", "1", "--test-hooks"],
    );
    let port = server.port;
    assert_eq!(request(port, "GET", "/healthz", &[], b"").0, 200);
    assert_eq!(request(port, "GET", "/readyz", &[], b"").0, 200);

    // A NIfTI body: ct3d predict's probability, the run's hash, the stage timings.
    let body = std::fs::read(&scan).unwrap();
    let (status, _, text) = predict(port, &body);
    assert_eq!(status, 200, "{text}");
    let answer = json(&text);
    assert_eq!(answer["probability"].as_f64().unwrap(), expected, "{text}");
    assert_eq!(
        answer["config_sha256"].as_str().unwrap().len(),
        64,
        "{text}"
    );
    for stage in ["read", "preprocess", "model", "total"] {
        assert!(answer["timings_ms"][stage].as_f64().is_some(), "{text}");
    }

    // A zip of one DICOM series.
    let series = dir.path().join("series");
    crate::cli_dicom::write_series(&series, "1.2.3.4", "AXIAL", "img");
    let zipped = dir.path().join("series.zip");
    {
        let mut writer = zip::ZipWriter::new(std::fs::File::create(&zipped).unwrap());
        for entry in std::fs::read_dir(&series).unwrap() {
            let path = entry.unwrap().path();
            let name = format!("study/{}", path.file_name().unwrap().to_str().unwrap());
            writer
                .start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(&std::fs::read(&path).unwrap()).unwrap();
        }
        writer.finish().unwrap();
    }
    let (status, _, text) = predict(port, &std::fs::read(&zipped).unwrap());
    assert_eq!(status, 200, "{text}");
    assert!(json(&text)["probability"].as_f64().is_some());

    // Bad bodies: 400 with one JSON line each; the service keeps serving.
    for (body, needle) in [
        (&b"hello"[..], "not a NIfTI file"),
        (&b""[..], "empty body"),
        (&b"PK\x03\x04garbage"[..], "the zip body cannot be unpacked"),
        (&body[..body.len() / 2], "body"),
    ] {
        let (status, _, text) = predict(port, body);
        assert_eq!(status, 400, "{text}");
        let error = json(&text)["error"].as_str().unwrap().to_owned();
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
        assert!(!error.contains('\n') && !error.contains("/tmp/"), "{error}");
    }
    // Too large: 413.
    let (status, _, text) = predict(port, &vec![0u8; 2 << 20]);
    assert_eq!(status, 413, "{text}");
    // A panic inside a job: 500 with an id; the worker survives.
    let (status, _, text) = request(
        port,
        "POST",
        "/v1/predict",
        &["x-ct3d-test-panic: 1"],
        &body,
    );
    assert_eq!(status, 500, "{text}");
    assert!(
        json(&text)["error"]
            .as_str()
            .unwrap()
            .contains("internal error")
    );
    assert_eq!(predict(port, &body).0, 200);

    let (status, _, metrics) = request(port, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    for needle in [
        "ct3d_predict_requests_total{status=\"200\"} 3",
        "ct3d_predict_requests_total{status=\"400\"} 4",
        "ct3d_predict_requests_total{status=\"413\"} 1",
        "ct3d_predict_requests_total{status=\"500\"} 1",
        "ct3d_predict_stage_seconds_count{stage=\"model\"} 3",
        "ct3d_queue_depth 0",
        "ct3d_in_flight 0",
        "ct3d_model_load_seconds",
    ] {
        assert!(metrics.contains(needle), "{needle:?} not in\n{metrics}");
    }
}

#[cfg(unix)]
#[test]
fn serve_sheds_load_times_out_slow_uploads_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = trained_run(dir.path());
    let body = std::fs::read(data.join("CT-0/phantom_0000.nii.gz")).unwrap();
    // One worker, one queue slot, each job 600 ms: a third request at once finds both taken.
    let mut server = start(
        &run,
        &[
            "--workers",
            "1",
            "--queue",
            "1",
            "--test-delay-ms",
            "600",
            "--request-timeout",
            "2",
            "--idle-timeout",
            "3",
        ],
    );
    let port = server.port;
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let body = body.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50 * i));
                predict(port, &body)
            })
        })
        .collect();
    let answers: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let shed: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(ok >= 2 && !shed.is_empty(), "{answers:?}");
    for (_, head, text) in shed {
        assert!(head.contains("retry-after: 1"), "{head}");
        assert!(json(text)["error"].as_str().unwrap().contains("busy"));
    }

    // A client that sends half its body and stalls gets 408 and holds no worker.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .unwrap();
    let mut response = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = slow.read_to_end(&mut response);
    assert_eq!(
        parse(&response).0,
        408,
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert_eq!(predict(port, &body).0, 200);

    // A connection that sends nothing is closed after the idle timeout (3 s here, longer than
    // the request timeout so that the stalled upload above gets its 408 first).
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 16];
    let read = idle.read(&mut buffer);
    let waited = started.elapsed();
    assert!(
        matches!(read, Ok(0) | Err(_))
            && waited >= Duration::from_secs(2)
            && waited < Duration::from_secs(10),
        "{read:?} after {waited:?}"
    );

    // SIGTERM while a request is in flight: it is answered, then the process exits 0.
    let in_flight = {
        let body = body.clone();
        std::thread::spawn(move || predict(port, &body))
    };
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) with the child's pid and a signal number has no memory effects.
    let killed = unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(killed, 0, "kill: {}", std::io::Error::last_os_error());
    let (status, _, text) = in_flight.join().unwrap();
    assert_eq!(status, 200, "{text}");
    let exit = server.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}
