//! Black-box tests of `lesson06_wsgi`: the WSGI server, end to end.
//!
//! Each test starts the real binary on port 0 with an app from `apps/` (or
//! a tiny app written into a temporary directory) and talks to it over real
//! sockets. PEP 3333's details are pinned against the gateway itself in
//! `tests/wsgi_gateway.rs`; here: that the rung wires it to the loop and the
//! Python threads correctly, from the socket's side. The framework apps
//! (Flask, Werkzeug, WebOb) need `target/venv` (`scripts/python-env.sh`)
//! and skip with a line saying so without it. No test asserts a duration.
#![cfg(feature = "python")]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Response, Server, connect_small_window, read_response, read_to_close};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_lesson06_wsgi");

fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apps")
}

/// A directory of its own for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lesson06-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    /// Write `name` (a Python module, say) into the directory.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Serve `app` (MODULE:CALLABLE) from `dir` with extra flags.
fn start_in(dir: &Path, app: &str, flags: &[&str]) -> Server {
    let dir = dir.to_string_lossy().into_owned();
    let mut args = vec!["--chdir", &dir];
    args.extend_from_slice(flags);
    args.push(app);
    Server::start(BIN, &args).unwrap()
}

/// Serve one of the example apps of `apps/`.
fn start(app: &str, flags: &[&str]) -> Server {
    start_in(&apps_dir(), app, flags)
}

/// Send `raw` on a fresh connection and read one response.
fn ask(server: &Server, raw: &[u8]) -> Response {
    let mut stream = server.connect().unwrap();
    stream.write_all(raw).unwrap();
    read_response(&mut stream, &mut Vec::new(), raw.starts_with(b"HEAD")).unwrap()
}

/// `GET target` on a fresh connection, closed after the answer.
fn get(server: &Server, target: &str) -> Response {
    let raw = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    ask(server, raw.as_bytes())
}

fn text(response: &Response) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// `apps/environ.py`'s answer as a map: `KEY = repr(value)` per line, up to
/// the blank line before an echoed body.
fn environ(response: &Response) -> BTreeMap<String, String> {
    assert_eq!(response.status, 200, "{}", response.head);
    text(response)
        .lines()
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(" = "))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// The access-log line for `request_line` shows up, with this status.
fn assert_logged(server: &Server, request_line: &str, status: u16) {
    let needle = format!("\"{request_line}\" {status} ");
    assert!(
        server.wait_for_stderr(&needle, IO_TIMEOUT),
        "no access line {needle:?} in:\n{}",
        server.stderr()
    );
}

/// True once the server has closed the connection (EOF or reset).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// Resident memory of a process in KiB (VmRSS in /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

// ------------------------------------------------------------- the basics

#[test]
fn hello_is_served_and_logged() {
    let server = start("hello:app", &[]);
    let response = get(&server, "/");
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.body, b"Hello, World!\n");
    assert_eq!(response.header("content-length"), Some("14"));
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_logged(&server, "GET / HTTP/1.1", 200);
    common::assert_no_panic(&server);
}

#[test]
fn keep_alive_pipelining_and_head() {
    let server = start("hello:app", &[]);
    let mut stream = server.connect().unwrap();
    let mut leftover = Vec::new();
    // Two requests on one connection, one after the other.
    for _ in 0..2 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let response = read_response(&mut stream, &mut leftover, false).unwrap();
        assert_eq!(response.body, b"Hello, World!\n");
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    // Three in one write: answered in order. HEAD gets the GET's headers
    // and no body: the GET after it would not parse otherwise.
    stream
        .write_all(
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let first = read_response(&mut stream, &mut leftover, false).unwrap();
    let head = read_response(&mut stream, &mut leftover, true).unwrap();
    assert_eq!(head.header("content-length"), Some("14"), "{}", head.head);
    assert!(head.body.is_empty());
    let last = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!((first.status, last.status), (200, 200));
    assert_eq!(last.body, b"Hello, World!\n");
    assert!(leftover.is_empty(), "bytes after the last answer");
    assert!(closed_by_server(&mut stream));
    common::assert_no_panic(&server);
}

#[test]
fn trace_narrates_the_hand_off() {
    let server = start("hello:app", &["--trace"]);
    assert_eq!(get(&server, "/").status, 200);
    for needle in [
        "loop: GET / HTTP/1.1 on connection",
        "-> python thread",
        "wsgi: call app on thread 0",
        "wsgi: start_response('200 OK', 2 headers)",
        "python thread 0: answered connection",
        "ms waiting for the GIL",
    ] {
        assert!(
            server.wait_for_stderr(needle, IO_TIMEOUT),
            "no {needle:?} in:\n{}",
            server.stderr()
        );
    }
}

/// gunicorn's `-b HOST:PORT`: the port in it wins over `--port`.
#[test]
fn gunicorns_bind_form_sets_the_port() {
    let server = start("hello:app", &["-b", "127.0.0.1:0", "--port", "1"]);
    assert_ne!(server.addr.port(), 1, "{}", server.announce);
    assert_eq!(get(&server, "/").status, 200);
}

// ---------------------------------------------------------------- environ

#[test]
fn the_environ_as_pep_3333_says() {
    let server = start("environ:app", &[]);
    let response = ask(
        &server,
        b"GET /caf%E9/a%2Fb?x=%20y&z HTTP/1.1\r\nHost: example.com:8006\r\nX-Multi: a\r\n\
          X-Multi: b\r\nX-Auth-User: alice\r\nX_Auth_User: mallory\r\nConnection: close\r\n\r\n",
    );
    let environ = environ(&response);
    let want = [
        ("REQUEST_METHOD", "'GET'"),
        // Percent-decoded, then one character per byte (latin-1): 0xE9 is é.
        ("PATH_INFO", "'/café/a/b'"),
        ("QUERY_STRING", "'x=%20y&z'"),
        ("SCRIPT_NAME", "''"),
        ("SERVER_PROTOCOL", "'HTTP/1.1'"),
        ("SERVER_NAME", "'example.com'"),
        ("HTTP_HOST", "'example.com:8006'"),
        // Repeated headers joined; the underscore one could pose as
        // X-Auth-User, so it is dropped.
        ("HTTP_X_MULTI", "'a,b'"),
        ("HTTP_X_AUTH_USER", "'alice'"),
        ("wsgi.version", "(1, 0)"),
        ("wsgi.url_scheme", "'http'"),
        ("wsgi.multithread", "False"),
        ("wsgi.multiprocess", "False"),
        ("wsgi.run_once", "False"),
        ("wsgi.input_terminated", "True"),
    ];
    for (key, value) in want {
        assert_eq!(
            environ.get(key).map(String::as_str),
            Some(value),
            "{key} in {environ:#?}"
        );
    }
    // A GET without a body has neither CONTENT_LENGTH nor CONTENT_TYPE.
    assert!(!environ.contains_key("CONTENT_LENGTH"), "{environ:#?}");
    assert!(!environ.contains_key("CONTENT_TYPE"), "{environ:#?}");
    // No query at all: '' and not missing.
    let bare = environ_of(&server, "/plain");
    assert_eq!(bare["QUERY_STRING"], "''");
}

fn environ_of(server: &Server, target: &str) -> BTreeMap<String, String> {
    environ(&get(server, target))
}

#[test]
fn script_name_and_threads_reach_the_environ() {
    let server = start("environ:app", &["--script-name", "/app", "--threads", "2"]);
    let mounted = environ_of(&server, "/app/x?q=1");
    assert_eq!(mounted["SCRIPT_NAME"], "'/app'");
    assert_eq!(mounted["PATH_INFO"], "'/x'");
    assert_eq!(mounted["wsgi.multithread"], "True");
}

#[test]
fn request_bodies_reach_wsgi_input() {
    let server = start("environ:app", &["--max-body", "1000"]);
    let echoed = |response: &Response| {
        let text = text(response);
        let (_, body) = text.split_once("-- wsgi.input: ").expect("an echoed body");
        body.to_string()
    };
    // Content-Length.
    let response = ask(
        &server,
        b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 16\r\nConnection: close\r\n\r\nname=Ada&lang=en",
    );
    let form = environ(&response);
    assert_eq!(form["CONTENT_LENGTH"], "'16'");
    assert_eq!(form["CONTENT_TYPE"], "'application/x-www-form-urlencoded'");
    assert_eq!(echoed(&response), "16 bytes --\nname=Ada&lang=en\n");
    // Chunked: de-chunked by the loop, CONTENT_LENGTH says how much came.
    let response = ask(
        &server,
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(environ(&response)["CONTENT_LENGTH"], "'11'");
    assert_eq!(echoed(&response), "11 bytes --\nhello world\n");
    // Expect: 100-continue: the body is sent only once the server says so.
    let mut stream = server.connect().unwrap();
    stream
        .write_all(
            b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let mut leftover = Vec::new();
    let interim = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(interim.status, 100, "{}", interim.head);
    stream.write_all(b"abc").unwrap();
    let response = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(echoed(&response), "3 bytes --\nabc\n");
    // Over --max-body: 413 from the loop; the app never sees it.
    let response = ask(
        &server,
        b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n",
    );
    assert_eq!(response.status, 413, "{}", response.head);
    common::assert_no_panic(&server);
}

// --------------------------------------------------------------- the body

/// 200 MiB from a generator to a client that reads slowly: the server holds
/// a few pieces at a time (the Python thread waits in `send`), never the
/// body, and every byte arrives.
#[test]
fn a_long_stream_to_a_slow_reader_stays_small() {
    const CHUNKS: u64 = 3200;
    const SIZE: u64 = 64 * 1024; // 200 MiB in all
    let server = start("stream:app", &["--quiet"]);
    let before = rss_kib(server.pid());
    let mut stream = connect_small_window(server.addr);
    // HTTP/1.0: the body is delimited by the close, so bytes are counted
    // as they come and never kept.
    let request = format!("GET /?chunks={CHUNKS}&size={SIZE} HTTP/1.0\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let (mut total, mut peak, mut reads) = (0u64, before, 0u64);
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        reads += 1;
        if reads % 256 == 0 {
            peak = peak.max(rss_kib(server.pid()));
            thread::sleep(Duration::from_millis(1)); // a slow reader
        }
    }
    let body = CHUNKS * SIZE;
    assert!(total > body, "{total} bytes, fewer than the body's {body}");
    assert!(
        peak < before + 64 * 1024,
        "the server grew from {before} KiB to {peak} KiB while streaming {} MiB",
        body >> 20
    );
    assert!(server.wait_for_stderr(
        &format!("stream: handed {CHUNKS} of {CHUNKS} chunks"),
        IO_TIMEOUT
    ));
    common::assert_no_panic(&server);
}

/// The client leaves mid-stream: the loop tells the Python thread, the
/// gateway stops iterating and calls the generator's `close()`, whose
/// `finally` logs how far it got (`apps/stream.py`).
#[test]
fn a_client_that_leaves_mid_stream_gets_the_app_closed() {
    let server = start("stream:app", &[]);
    let mut stream = server.connect().unwrap();
    stream
        .write_all(b"GET /?chunks=1000000&size=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut start_of_body = vec![0u8; 256 * 1024];
    stream.read_exact(&mut start_of_body).unwrap();
    drop(stream);
    assert!(
        server.wait_for_stderr("stream: handed ", IO_TIMEOUT),
        "close() was never called:\n{}",
        server.stderr()
    );
    let stderr = server.stderr();
    assert!(
        !stderr.contains("handed 1000000 of 1000000"),
        "the app ran to the end for nobody:\n{stderr}"
    );
    common::assert_no_panic(&server);
}

#[test]
fn a_file_wrapper_download_arrives_whole() {
    let dir = TempDir::new("download");
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let file = dir.write("big.bin", "");
    fs::write(&file, &content).unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["--port", "0", "--trace", "--chdir"])
        .arg(apps_dir())
        .arg("download:app")
        .env("DOWNLOAD_FILE", &file);
    let server = Server::spawn(command).unwrap();
    let response = get(&server, "/");
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.header("content-length"), Some("3000000"));
    assert!(response.body == content, "the file arrived damaged");
    assert_logged(&server, "GET / HTTP/1.1", 200);
    // PEP 3333's "high-performance file transmission": the loop sent the
    // file with sendfile(2); its bytes never passed through Python.
    assert!(
        server.wait_for_stderr("sendfile(", IO_TIMEOUT),
        "the file_wrapper was not sent by sendfile:\n{}",
        server.stderr()
    );
}

// --------------------------------------------------------- what goes wrong

/// Apps that break the rules, one route each, in a module of their own.
const BROKEN_APPS: &str = r#"
def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise ValueError("boom before the head")
    if path == "/str":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return "a str, not bytes"
    if path == "/int":
        start_response("200 OK", [])
        return 42
    if path == "/status":
        start_response("OK", [])
        return [b"no code in the status"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"fine\n"]
"#;

#[test]
fn an_app_that_breaks_the_rules_gets_a_500_and_a_log_line() {
    let dir = TempDir::new("broken");
    dir.write("broken.py", BROKEN_APPS);
    let server = start_in(&dir.0, "broken:app", &[]);
    let cases = [
        ("/raise", "ValueError: boom before the head"),
        ("/str", "the app returned a str, not an iterable of bytes"),
        ("/int", "the app returned an int, which is not iterable"),
        ("/status", "bad status 'OK'"),
    ];
    for (path, problem) in cases {
        let response = get(&server, path);
        assert_eq!(response.status, 500, "{path}: {}", response.head);
        let page = text(&response);
        assert!(
            !page.contains("Traceback") && !page.contains("boom"),
            "{path}: the page tells the client too much: {page}"
        );
        assert!(
            server.wait_for_stderr(problem, IO_TIMEOUT),
            "{path}: no {problem:?} in the log:\n{}",
            server.stderr()
        );
        assert_logged(&server, &format!("GET {path} HTTP/1.1"), 500);
    }
    // The traceback is in the log, and the server goes on.
    assert!(
        server
            .stderr()
            .contains("Traceback (most recent call last)")
    );
    assert_eq!(text(&get(&server, "/fine")), "fine\n");
    common::assert_no_panic(&server);
}

#[test]
fn hostile_input_gets_rung_5s_errors() {
    let server = start("hello:app", &["--max-body", "100", "--header-timeout", "1"]);
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let cases: [(&[u8], &str); 6] = [
        (b"GARBAGE\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\n\r\n", "400"), // no Host
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n",
            "413",
        ),
        (huge_header.as_bytes(), "431"),
        // (Any method goes to the app, which decides: `BREW` is its business.
        // A body in a coding we cannot undo is the server's: 501.)
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "501",
        ),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"),
    ];
    common::assert_refusals(&server, &cases);
    // A client that sends half a head and stops is dropped.
    let mut silent = server.connect().unwrap();
    silent.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    assert!(closed_by_server(&mut silent), "a silent client was kept");
    assert_eq!(get(&server, "/").status, 200);
    common::assert_no_panic(&server);
}

/// `--timeout`: an app call that runs too long gets its client a 504 and the
/// connection closed; the Python thread finishes on its own, and the log
/// says the answer came too late.
#[test]
fn an_app_past_the_timeout_gets_a_504() {
    let server = start("gil:app", &["--timeout", "1", "--threads", "2"]);
    let mut stream = server.connect().unwrap();
    stream
        .write_all(b"GET /sleep?ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream, &mut Vec::new(), false).unwrap();
    assert_eq!(response.status, 504, "{}", response.head);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(closed_by_server(&mut stream));
    // Meanwhile the other thread serves everyone else.
    assert_eq!(get(&server, "/hello").status, 200);
    assert!(
        server.wait_for_stderr("over --timeout", IO_TIMEOUT),
        "{}",
        server.stderr()
    );
    common::assert_no_panic(&server);
}

/// `wsgiref.validate.validator` checks the server's side of PEP 3333 too
/// (the environ, start_response, close()); with warnings turned into
/// errors, any complaint would be a 500 and a traceback.
#[test]
fn an_app_under_wsgirefs_validator_finds_nothing_wrong() {
    let dir = TempDir::new("validator");
    dir.write(
        "validated.py",
        r#"
import warnings
warnings.simplefilter("error")
from wsgiref.validate import validator

def inner(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(3 + len(body)))])
    return [b"ok:", body]

app = validator(inner)
"#,
    );
    let server = start_in(&dir.0, "validated:app", &[]);
    assert_eq!(text(&get(&server, "/a?b=c")), "ok:");
    let response = ask(
        &server,
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\
          Connection: close\r\n\r\ndata",
    );
    assert_eq!(text(&response), "ok:data");
    let head = ask(
        &server,
        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    thread::sleep(Duration::from_millis(200)); // a late complaint would be logged by now
    let stderr = server.stderr();
    assert!(
        !stderr.contains("Traceback") && !stderr.contains("Warning") && !stderr.contains(" 500 "),
        "{stderr}"
    );
}

// ------------------------------------------------------ start-up, shutdown

/// An app that cannot be loaded: one line saying why, exit status 1.
#[test]
fn an_app_that_cannot_be_loaded_is_one_line_and_exit_1() {
    let cases = [
        (
            "hello:nope",
            "[lesson06] Failed to find attribute 'nope' in 'hello'.",
        ),
        (
            "no_such_module:app",
            "[lesson06] Failed to import 'no_such_module': ModuleNotFoundError: No module named 'no_such_module'",
        ),
    ];
    for (app, line) in cases {
        let output = Command::new(BIN)
            .args(["--port", "0", "--chdir"])
            .arg(apps_dir())
            .arg(app)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{app}: {stderr}");
        assert_eq!(stderr.trim_end(), line, "{app}");
    }
    // A module that raises while importing: the line, then its traceback.
    let dir = TempDir::new("importerror");
    dir.write(
        "fails.py",
        "import json\nraise RuntimeError('no database')\n",
    );
    let output = Command::new(BIN)
        .args(["--port", "0", "--chdir"])
        .arg(&dir.0)
        .arg("fails:app")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("[lesson06] Failed to import 'fails': RuntimeError: no database\n"),
        "{stderr}"
    );
    assert!(stderr.contains("fails.py\", line 2"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// SIGTERM and SIGINT: exit 0, after Python has run its `atexit` handlers
/// (the interpreter is finalized, on the thread that started it).
#[test]
fn sigterm_and_sigint_exit_0_after_atexit() {
    let dir = TempDir::new("atexit");
    dir.write(
        "goodbye.py",
        r#"
import atexit

@atexit.register
def goodbye():
    print("atexit: goodbye from the app", flush=True)

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hi\n"]
"#,
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut server = start_in(&dir.0, "goodbye:app", &[]);
        assert_eq!(text(&get(&server, "/")), "hi\n");
        server.signal(signal).unwrap();
        let status = server.wait_exit(IO_TIMEOUT).expect("it did not exit");
        assert!(status.success(), "{signal}: {status:?}");
        let deadline = Instant::now() + IO_TIMEOUT;
        while !server.stdout().contains("atexit: goodbye") && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(
            server.stdout().contains("atexit: goodbye from the app"),
            "{signal}: atexit did not run; stdout: {:?}",
            server.stdout()
        );
        common::assert_no_panic(&server);
    }
}

// ------------------------------------------------ frameworks, from the venv

/// The venv with `package`, or `None` after saying what goes unchecked.
fn venv_with(package: &str, unchecked: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv"));
    let has = Command::new(venv.join("bin/python"))
        .args(["-c", &format!("import {package}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        let unchecked = format!(
            "{unchecked} (scripts/python-env.sh installs it in {})",
            venv.display()
        );
        common::skipped(package, &unchecked);
        return None;
    }
    Some(venv)
}

fn start_venv(venv: &Path, app: &str) -> Server {
    start(app, &["--python", &venv.to_string_lossy()])
}

#[test]
fn flask_hello_runs_unchanged() {
    let Some(venv) = venv_with("flask", "Flask's hello under lesson06_wsgi") else {
        return;
    };
    let server = start_venv(&venv, "flask_hello:app");
    let response = get(&server, "/");
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.body, b"Hello, World!\n");
    assert_eq!(get(&server, "/nowhere").status, 404);
}

/// Log in with a POST, follow the redirect with the session cookie, see the
/// greeting; then read the cookie without the key: signed, not encrypted.
#[test]
fn flask_login_session_is_signed_not_encrypted() {
    let Some(venv) = venv_with("flask", "the Flask login session under lesson06_wsgi") else {
        return;
    };
    let server = start_venv(&venv, "flask_login:app");
    let form = "username=ada&password=lovelace";
    let login = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let response = ask(&server, login.as_bytes());
    assert_eq!(response.status, 302, "{}", response.head);
    assert_eq!(response.header("location"), Some("/"));
    let cookie = response.header("set-cookie").expect("a session cookie");
    let session = cookie.split(';').next().unwrap().to_string();
    assert!(session.starts_with("session="), "{cookie}");
    let greeted = ask(
        &server,
        format!("GET / HTTP/1.1\r\nHost: x\r\nCookie: {session}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert!(text(&greeted).contains("Hello, ada!"), "{}", text(&greeted));
    // A wrong password: 401, no cookie.
    let wrong = "username=ada&password=babbage";
    let response = ask(
        &server,
        format!(
            "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{wrong}",
            wrong.len()
        )
        .as_bytes(),
    );
    assert_eq!(response.status, 401);
    assert!(response.header("set-cookie").is_none());
    // Anyone can read it; only the key can check it.
    let decoded = Command::new(venv.join("bin/python"))
        .arg(apps_dir().join("decode_session.py"))
        .arg(&session)
        .arg("dev-only-secret-for-the-lesson")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&decoded.stdout);
    assert!(decoded.status.success(), "{out}");
    assert!(out.contains("\"user\": \"ada\""), "{out}");
    assert!(out.contains("valid"), "{out}");
    assert!(!out.contains("NOT valid"), "{out}");
}

#[test]
fn the_time_app_with_werkzeug_and_webob() {
    for (package, app) in [
        ("werkzeug", "time_werkzeug:app"),
        ("webob", "time_webob:app"),
    ] {
        let Some(venv) = venv_with(package, &format!("{app} under lesson06_wsgi")) else {
            continue;
        };
        let server = start_venv(&venv, app);
        let query = text(&get(&server, "/?name=Ada"));
        assert!(query.starts_with("Hello, Ada: it is "), "{app}: {query}");
        let posted = ask(
            &server,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 9\r\nConnection: close\r\n\r\nname=Alan",
        );
        assert!(
            text(&posted).starts_with("Hello, Alan: it is "),
            "{app}: {}",
            text(&posted)
        );
        common::assert_no_panic(&server);
    }
}

// ------------------------------------------------- beside wsgiref's server

/// Python's own reference server, `wsgiref.simple_server`, serving the same
/// `apps/environ.py` on port 0; it announces its URL as our rungs do.
fn wsgiref_server() -> Option<Server> {
    let script = "import sys, wsgiref.simple_server as s, environ\n\
                  server = s.make_server('127.0.0.1', 0, environ.app)\n\
                  print(f'listening on http://127.0.0.1:{server.server_port}/', flush=True)\n\
                  server.serve_forever()\n";
    let mut command = Command::new("python3");
    command.args(["-c", script]).current_dir(apps_dir());
    match Server::spawn(command) {
        Ok(server) => Some(server),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            common::skipped(
                "python3",
                "the side-by-side environ comparison with wsgiref.simple_server",
            );
            None
        }
        Err(err) => panic!("wsgiref: {err}"),
    }
}

/// The same requests to both servers give the same environ for the keys
/// PEP 3333 and the CGI spec fix; the differences are deliberate (below).
#[test]
fn the_environ_matches_wsgirefs() {
    let Some(theirs) = wsgiref_server() else {
        return;
    };
    let ours = start("environ:app", &[]);
    let requests: [&[u8]; 4] = [
        b"GET /hello/w%C3%B6rld?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\
          Accept: a\r\nAccept: b\r\nConnection: close\r\n\r\n",
        b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 7\r\nConnection: close\r\n\r\na=1&b=2",
        b"GET /caf%E9 HTTP/1.0\r\n\r\n",
        b"DELETE /x? HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nX-Custom: yes\r\nConnection: close\r\n\r\n",
    ];
    // The keys both must agree on. Left out, on purpose:
    // - SERVER_NAME: ours is the request's Host (RFC 3875 §4.1.14, as rung 3
    //   does); wsgiref gives its own host name.
    // - SERVER_PORT, SERVER_SOFTWARE, REMOTE_PORT: two servers, two values.
    // - CONTENT_TYPE and CONTENT_LENGTH without a body: PEP 3333 lets them be
    //   empty or absent; ours are absent, wsgiref says '' and 'text/plain'.
    // - wsgi.input, wsgi.errors, wsgi.file_wrapper: objects of each server.
    // - wsgi.multithread: wsgiref's is False; ours with --threads 1 too, but
    //   wsgi.input_terminated is ours alone (wsgiref's input has no end mark).
    // - the rest of wsgiref's environ: it copies the server's own os.environ.
    let keys = [
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "QUERY_STRING",
        "SERVER_PROTOCOL",
        "GATEWAY_INTERFACE",
        "REMOTE_ADDR",
        "HTTP_HOST",
        "HTTP_USER_AGENT",
        "HTTP_ACCEPT",
        "HTTP_COOKIE",
        "HTTP_X_CUSTOM",
        "wsgi.version",
        "wsgi.url_scheme",
        "wsgi.multithread",
        "wsgi.multiprocess",
        "wsgi.run_once",
    ];
    for raw in requests {
        let context = String::from_utf8_lossy(raw).into_owned();
        let mine = environ(&ask(&ours, raw));
        let wsgiref = environ(&ask(&theirs, raw));
        for key in keys {
            assert_eq!(mine.get(key), wsgiref.get(key), "{key} for {context}");
        }
        if raw.starts_with(b"POST") {
            for key in ["CONTENT_TYPE", "CONTENT_LENGTH"] {
                assert_eq!(mine.get(key), wsgiref.get(key), "{key} for {context}");
            }
        } else {
            assert!(!mine.contains_key("CONTENT_LENGTH"), "{context}");
            assert_eq!(wsgiref["CONTENT_LENGTH"], "''", "{context}");
        }
    }
}

/// `wsgi.multithread` follows `--threads`, and the rung's pool really runs
/// the app on that many threads at once.
#[test]
fn threads_run_the_app_side_by_side() {
    let server = start("gil:app", &["--threads", "3"]);
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let mut stream = server.connect().unwrap();
            stream
                .write_all(b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            stream
        })
        .collect();
    let mut threads: Vec<String> = clients
        .into_iter()
        .map(|mut stream| {
            let bytes = read_to_close(&mut stream).unwrap();
            let answer = String::from_utf8_lossy(&bytes).into_owned();
            answer.trim_end().rsplit(' ').next().unwrap().to_string()
        })
        .collect();
    threads.sort();
    threads.dedup();
    assert_eq!(threads.len(), 3, "{threads:?}");
}
