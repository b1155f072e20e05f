//! The program output that `lessons/08-proxy.md` quotes, captured from the
//! real `lesson08_proxy` in front of the real `lesson07_prefork` running the
//! apps in `apps/`, and compared with `lessons/transcripts/08-*.snap` on
//! every run (re-capture with
//! `INSTA_UPDATE=always cargo test --test lesson08_transcripts`).
//!
//! Each test sends the bytes the chapter's `curl` command sends (its
//! User-Agent written as `curl/[version]`) and masks what varies from run to
//! run: ports (the chapter's 8007 and 8008 stand for the real ones), dates,
//! times, pids. The slow-client demo is told as what happened ("answered:
//! 200"), never as how long it took: no assertion here is about speed.
#![cfg(feature = "python")]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Server, read_response};

const PROXY: &str = env!("CARGO_BIN_EXE_lesson08_proxy");
const APP_SERVER: &str = env!("CARGO_BIN_EXE_lesson07_prefork");

/// The ports the chapter's commands use.
const SHOWN_PROXY_PORT: u16 = 8008;
const SHOWN_APP_PORT: u16 = 8007;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `lesson07_prefork [flags] --chdir apps APP`, from the repository's root,
/// as the chapter runs it, once every worker answers.
fn app_server(app: &str, flags: &[&str], workers: usize) -> Server {
    let mut command = Command::new(APP_SERVER);
    command
        .args(flags)
        .args(["--port", "0", "--chdir", "apps", app])
        .current_dir(root())
        .env_remove("VIRTUAL_ENV");
    let server = Server::spawn(command).expect("start lesson07_prefork");
    // A worker answers only once it has imported the app.
    let deadline = Instant::now() + Duration::from_secs(30);
    let booted = |n: usize| format!("Booting worker {n} with pid");
    for n in 1..=workers {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            server.wait_for_stderr(&booted(n), left),
            "{}",
            server.stderr()
        );
    }
    while fetch(server.addr, &curl_request(server.addr, "/", "")).is_err() {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        thread::sleep(Duration::from_millis(50));
    }
    // The worker logs after it has answered: wait for that line, so that
    // the tests' counts of log lines start from a settled log.
    assert!(wait_for_lines(&server, "\"GET / HTTP/1.1\"", 1));
    server
}

/// `lesson08_proxy [flags] --upstream ADDR`.
fn proxy(upstream: SocketAddr, flags: &[&str]) -> Server {
    let upstream = upstream.to_string();
    let mut args = vec!["--upstream", &upstream];
    args.extend_from_slice(flags);
    Server::start(PROXY, &args).expect("start lesson08_proxy")
}

/// What `curl [-H ...] http://ADDR TARGET` sends.
fn curl_request(addr: SocketAddr, target: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: curl/[version]\r\nAccept: */*\r\n{extra}\r\n",
        addr.port()
    )
    .into_bytes()
}

/// One exchange on a fresh connection.
fn fetch(addr: SocketAddr, request: &[u8]) -> std::io::Result<common::Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(request)?;
    read_response(&mut stream, &mut Vec::new(), false)
}

/// `curl -i`'s output: the head (CRLF shown as line ends) and the body.
fn as_curl_i(response: &common::Response) -> String {
    let head = response.head.replace("\r\n", "\n");
    format!("{head}{}", String::from_utf8_lossy(&response.body))
}

/// Mask what varies between runs. `proxy` and `app` are the real ports,
/// shown as 8008 and 8007.
fn normalise(text: &str, proxy: u16, app: u16) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut line = common::mask_dates(line);
        // workers.py's answer, and so its length, has the worker's pid
        // and its count of requests in it.
        let digits = |c: char| c.is_ascii_digit();
        common::mask_after(&mut line, "worker pid ", digits, |_| "[pid]".into());
        common::mask_after(&mut line, ", request ", digits, |_| "[n]".into());
        common::mask_after(&mut line, "HTTP/1.1\" 200 ", digits, |_| "[size]".into());
        // Byte counts in a trace include the Host header (a port of five
        // digits here, four in the chapter) and curl's version.
        common::mask_after(&mut line, "head complete, ", digits, |_| "[n]".into());
        common::mask_after(&mut line, "[n] of ", digits, |_| "[n]".into());
        if line.contains("write(upstream slot") {
            common::mask_after(&mut line, ") -> ", digits, |_| "[n]".into());
        }
        common::mask_after(
            &mut line,
            "(pid:",
            |c| c.is_ascii_digit(),
            |_| "[pid]".into(),
        );
        common::mask_after(&mut line, "] [", |c| c.is_ascii_digit(), |_| "[pid]".into());
        common::mask_after(
            &mut line,
            "127.0.0.1:",
            |c| c.is_ascii_digit(),
            |port| shown_port(port, proxy, app),
        );
        common::mask_after(
            &mut line,
            "SERVER_PORT = '",
            |c| c.is_ascii_digit(),
            |port| shown_port(port, proxy, app),
        );
        out.push_str(&common::mask_ms(&line));
        out.push('\n');
    }
    out
}

fn shown_port(port: &str, proxy: u16, app: u16) -> String {
    match port.parse::<u16>() {
        Ok(p) if p == proxy => SHOWN_PROXY_PORT.to_string(),
        Ok(p) if p == app => SHOWN_APP_PORT.to_string(),
        _ => "[port]".into(),
    }
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({snapshot_path => "../lessons/transcripts",
        prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!(name, text);
    });
}

/// Wait until `server`'s stderr holds `n` lines containing `needle`.
fn wait_for_lines(server: &Server, needle: &str, n: usize) -> bool {
    let deadline = Instant::now() + IO_TIMEOUT;
    while Instant::now() < deadline {
        if server
            .stderr()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
            >= n
        {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The stderr lines holding `needle`, each with its line end.
fn lines_with(server: &Server, needles: &[&str]) -> String {
    server
        .stderr()
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// "Run it": `curl -i` through the proxy in front of two sync workers, and
/// the proxy's access-log line naming the upstream.
#[test]
fn curl_through_the_proxy_transcript() {
    let app = app_server("workers:app", &["-k", "sync", "-w", "2"], 2);
    let proxy = proxy(app.addr, &[]);
    let response = fetch(proxy.addr, &curl_request(proxy.addr, "/", "")).expect("through");
    assert_eq!(response.status, 200);
    // The sync worker said `Connection: close`; that was for the proxy alone.
    assert_eq!(response.header("connection"), Some("keep-alive"));
    let (p, a) = (proxy.addr.port(), app.addr.port());
    let text = as_curl_i(&response).replace(
        &format!("Content-Length: {}\n", response.body.len()),
        "Content-Length: [size]\n",
    );
    snapshot("08-curl", &normalise(&text, p, a));
    assert!(wait_for_lines(&proxy, "\"GET / HTTP/1.1\"", 1));
    snapshot(
        "08-access-log",
        &normalise(&lines_with(&proxy, &["\"GET /"]), p, a),
    );
}

/// "Try it" 1: what the app sees of a request with hop-by-hop headers and
/// an earlier proxy's X-Forwarded-For: `curl -s -H ... | grep -E ...`.
#[test]
fn forwarding_headers_transcript() {
    let app = app_server("environ:app", &[], 1);
    let proxy = proxy(app.addr, &["--quiet"]);
    let extra = "Connection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
                 X-Forwarded-For: 203.0.113.7\r\n";
    let response = fetch(proxy.addr, &curl_request(proxy.addr, "/", extra)).expect("through");
    assert_eq!(response.status, 200);
    let body = String::from_utf8_lossy(&response.body);
    let shown: String = body
        .lines()
        .filter(|l| l.contains("HTTP_") || l.contains("REMOTE_ADDR")) // grep -E
        .map(|l| format!("{l}\n"))
        .collect();
    for gone in ["HTTP_CONNECTION", "HTTP_X_SECRET", "HTTP_KEEP_ALIVE"] {
        assert!(!shown.contains(gone), "{gone} crossed the proxy:\n{shown}");
    }
    let (p, a) = (proxy.addr.port(), app.addr.port());
    snapshot("08-forwarded", &normalise(&shown, p, a));
}

/// "Try it" 2: the app server stopped, so every upstream is down: 502,
/// and the proxy's log says why.
#[test]
fn all_upstreams_down_transcript() {
    let (_held, down) = common::refusing_port();
    let proxy = proxy(down, &[]);
    let response = fetch(proxy.addr, &curl_request(proxy.addr, "/", "")).expect("an answer");
    assert_eq!(response.status, 502);
    assert!(wait_for_lines(&proxy, "\"GET / HTTP/1.1\" 502", 1));
    let (p, a) = (proxy.addr.port(), down.port());
    let mut text = normalise(&as_curl_i(&response), p, a);
    text.push_str("[in the proxy's terminal:]\n");
    let log = lines_with(&proxy, &["marked down", "\"GET /"]);
    text.push_str(&normalise(&log, p, a));
    snapshot("08-502", &text);
}

/// "Try it" 3: `--trace` of two requests on one curl connection, through
/// the proxy to a gthread worker, which keeps its connection: the second
/// request takes it from the pool. Only the lines that follow one another
/// by cause are kept; the loop's waits (`epoll_wait`) and the client's
/// reads and writes are chapter 05's, and where they fall among these
/// varies with timing.
#[test]
fn trace_transcript() {
    let app = app_server("workers:app", &["-k", "gthread", "-w", "1"], 1);
    let mut proxy = proxy(app.addr, &["--trace"]);
    let mut stream = proxy.connect().expect("connect");
    let mut leftover = Vec::new();
    for _ in 0..2 {
        stream
            .write_all(&curl_request(proxy.addr, "/", ""))
            .expect("send");
        let response = read_response(&mut stream, &mut leftover, false).expect("response");
        assert_eq!(response.status, 200);
    }
    drop(stream);
    assert!(wait_for_lines(&proxy, "\"GET / HTTP/1.1\" 200", 2));
    proxy.terminate(IO_TIMEOUT);
    let upstream_side = lines_with(
        &proxy,
        &[
            "accept(",
            "epoll_ctl(",
            "head complete",
            "connect(",
            "upstream",
        ],
    );
    let (p, a) = (proxy.addr.port(), app.addr.port());
    snapshot("08-trace", &normalise(&upstream_side, p, a));
}

/// Is this connection still open? (No byte comes, and no end.)
fn still_open(mut stream: &TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// "What it fixes, shown live", as what happened rather than how long it
/// took: slow clients (half a request head each) on two sync workers,
/// first direct, then through the proxy; and a slow reader of a large
/// response through the proxy.
#[test]
fn slow_clients_transcript() {
    const SLOW: usize = 20;
    let mut text = String::new();

    // Direct: two slow clients take both workers; a fresh request is
    // answered only after the master has killed them (--timeout 2). (More
    // would queue before it, and it would wait for more timeouts.)
    let app = app_server("workers:app", &["-k", "sync", "-w", "2", "-t", "2"], 2);
    let mut slow: Vec<TcpStream> = (0..2).map(|_| app.connect().expect("slow")).collect();
    for stream in &mut slow {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHo")
            .expect("half a head");
    }
    thread::sleep(Duration::from_millis(300)); // the workers take the first two
    let fresh = fetch(app.addr, &curl_request(app.addr, "/", ""));
    let status = fresh.map_or_else(|e| e.to_string(), |r| r.status.to_string());
    // The log's reader thread may be a moment behind the answer.
    app.wait_for_stderr("WORKER TIMEOUT", IO_TIMEOUT);
    let timeouts = app.stderr().matches("WORKER TIMEOUT").count();
    text.push_str(&format!(
        "direct: 2 slow clients, then a fresh request: answered {status}, \
         after WORKER TIMEOUT: {}\n",
        if timeouts > 0 { "yes" } else { "no" }
    ));
    assert!(timeouts > 0, "{}", app.stderr());
    drop(slow);
    drop(app);

    // Through the proxy: the slow clients stay with the proxy; the workers
    // see only complete requests.
    let app = app_server("workers:app", &["-k", "sync", "-w", "2", "-t", "3"], 2);
    let proxy = proxy(app.addr, &["--quiet"]);
    let mut slow: Vec<TcpStream> = (0..SLOW).map(|_| proxy.connect().expect("slow")).collect();
    for stream in &mut slow {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHo")
            .expect("half a head");
    }
    let served_before = app.stderr().matches("\"GET / HTTP/1.1\" 200").count();
    let mut answered = Vec::new();
    for _ in 0..3 {
        let fresh = fetch(proxy.addr, &curl_request(proxy.addr, "/", "")).expect("through");
        answered.push(fresh.status.to_string());
    }
    let open = slow.iter().filter(|s| still_open(s)).count();
    // Past the workers' --timeout: had a worker held a slow client, the
    // master would have killed it by now.
    thread::sleep(Duration::from_secs(4));
    let open_later = slow.iter().filter(|s| still_open(s)).count();
    assert!(wait_for_lines(
        &app,
        "\"GET / HTTP/1.1\" 200",
        served_before + 3
    ));
    let served = app.stderr().matches("\"GET / HTTP/1.1\" 200").count() - served_before;
    let timeouts = app.stderr().matches("WORKER TIMEOUT").count();
    text.push_str(&format!(
        "through the proxy: {SLOW} slow clients, then 3 fresh requests: answered {}\n\
         slow clients still connected to the proxy: {open}, and 4 s later: {open_later}\n\
         the app server's log: {served} requests, {timeouts} WORKER TIMEOUT\n",
        answered.join(", ")
    ));
    assert_eq!((open, open_later, timeouts), (SLOW, SLOW, 0), "{text}");
    drop(slow);

    // A slow reader of 8 MiB: the worker hands it all to the proxy at once
    // and is free; the client has read a sliver.
    let mut reader = proxy.connect().expect("reader");
    reader
        .write_all(&curl_request(proxy.addr, "/big?mb=8", ""))
        .expect("ask");
    let mut sliver = [0u8; 1024];
    reader.read_exact(&mut sliver).expect("the first KiB");
    let logged = wait_for_lines(&app, "\"GET /big?mb=8 HTTP/1.1\" 200 8388608", 1);
    let fresh = fetch(proxy.addr, &curl_request(proxy.addr, "/", "")).expect("through");
    text.push_str(&format!(
        "a slow reader of /big?mb=8 (8 MiB) has read 1 KiB; the worker logged it sent whole: {}\n\
         a fresh request meanwhile: answered {}\n",
        if logged { "yes" } else { "no" },
        fresh.status
    ));
    assert!(logged, "{text}");
    drop(reader);
    snapshot("08-slow-clients", &text);
}
