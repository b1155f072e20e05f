//! Black-box tests of `lesson08_proxy`: the buffering reverse proxy.
//!
//! Each test starts the real proxy on port 0 in front of real upstreams:
//! `lesson05_epoll` where a fast `/hello` is enough, and otherwise a small
//! upstream run by the test itself on a thread (`Fake`), which can echo
//! what it received, stay silent, send a large body, and counts its
//! connections and requests. What they pin is the list: slow
//! clients never reach the upstream; uploads arrive whole; a slow reader
//! does not hold the upstream; proxy headers; the keep-alive pool;
//! failover; 502 and 504; balancing; `--static`; bad input; signals.
//! No test asserts a duration, only orders of events with generous bounds.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Server, escaped, read_response};
use ladder::http::{BodyFraming, Limits, Parsed, parse_request};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_lesson08_proxy");
const UPSTREAM: &str = env!("CARGO_BIN_EXE_lesson05_epoll");

/// What a fake upstream does with each request.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answer 200 with the request's exact bytes as the body (keep-alive),
    /// plus hop-by-hop headers the proxy must drop.
    Echo,
    /// Read the request and never answer.
    Silent,
    /// Answer 200 with this many bytes.
    Big(usize),
}

/// One request as a fake upstream saw it.
struct Seen {
    raw: Vec<u8>,
    first_byte: Instant,
}

/// An upstream on a thread of this test.
struct Fake {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// When a `Big` answer was all written (the proxy took it all).
    written: Arc<Mutex<Option<Instant>>>,
}

impl Fake {
    fn start(behaviour: Behaviour) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fake = Fake {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            seen: Arc::default(),
            written: Arc::default(),
        };
        let (connections, seen, written) = (
            fake.connections.clone(),
            fake.seen.clone(),
            fake.written.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                connections.fetch_add(1, Ordering::SeqCst);
                let (seen, written) = (seen.clone(), written.clone());
                thread::spawn(move || serve(stream, behaviour, &seen, &written));
            }
        });
        fake
    }

    fn arg(&self) -> String {
        self.addr.to_string()
    }

    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Serve requests on one connection until the proxy closes it.
fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    seen: &Mutex<Vec<Seen>>,
    written: &Mutex<Option<Instant>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let mut first_byte = None;
        let (head_len, body_len) = loop {
            if let Ok(Parsed::Complete { request, consumed }) =
                parse_request(&buf, &Limits::default())
            {
                let body = match request.body_framing(&Limits {
                    max_body: u64::MAX,
                    ..Limits::default()
                }) {
                    Ok(BodyFraming::Length(n)) => n as usize,
                    _ => 0,
                };
                if buf.len() >= consumed + body {
                    break (consumed, body);
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    first_byte.get_or_insert_with(Instant::now);
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        let raw: Vec<u8> = buf.drain(..head_len + body_len).collect();
        let first_byte = first_byte.unwrap_or_else(Instant::now);
        seen.lock().unwrap().push(Seen {
            raw: raw.clone(),
            first_byte,
        });
        let answer = match behaviour {
            Behaviour::Silent => {
                thread::sleep(Duration::from_secs(60));
                return;
            }
            Behaviour::Echo => {
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive, X-Hop\r\n\
                     X-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Upstream: fake\r\n\r\n",
                    raw.len()
                )
                .into_bytes();
                out.extend_from_slice(&raw);
                out
            }
            Behaviour::Big(n) => {
                let mut out =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
                if !raw.starts_with(b"HEAD ") {
                    out.extend((0..n).map(|i| (i % 251) as u8));
                }
                out
            }
        };
        if stream.write_all(&answer).is_err() {
            return;
        }
        // A big answer is "written" once the proxy has read it, not when
        // the kernel took the last bytes (several MiB can sit in buffers).
        if matches!(behaviour, Behaviour::Big(_)) && !common::wait_until_read(&stream, IO_TIMEOUT) {
            return;
        }
        *written.lock().unwrap() = Some(Instant::now());
    }
}

/// Start the proxy in front of `upstreams`, with extra flags.
fn proxy(upstreams: &[String], flags: &[&str]) -> Server {
    let mut args: Vec<String> = Vec::new();
    for upstream in upstreams {
        args.extend(["--upstream".to_string(), upstream.clone()]);
    }
    args.extend(flags.iter().map(|f| f.to_string()));
    Server::start(BIN, &args).unwrap()
}

fn lesson05() -> Server {
    Server::start(UPSTREAM, &["--quiet"]).unwrap()
}

/// One GET on a connection, its response read whole.
fn get(stream: &mut TcpStream, path: &str) -> common::Response {
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream, &mut Vec::new(), false).unwrap()
}

/// Wait until `done` holds, for at most IO_TIMEOUT.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let until = Instant::now() + IO_TIMEOUT;
    while !done() {
        assert!(Instant::now() < until, "never happened: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Requests pass through to rung 5 and back, on one kept-alive client
/// connection; the access log names the upstream.
#[test]
fn hello_through_the_proxy_with_keep_alive() {
    let upstream = lesson05();
    let server = proxy(&[upstream.addr.to_string()], &[]);
    let mut stream = server.connect().unwrap();
    for _ in 0..3 {
        let response = get(&mut stream, "/hello");
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"Hello, World!\n"[..])
        );
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    let log = format!(
        "\"GET /hello HTTP/1.1\" 200 14 upstream {} in ",
        upstream.addr
    );
    assert!(
        server.wait_for_stderr(&log, IO_TIMEOUT),
        "{}",
        server.stderr()
    );
}

/// Twenty clients sending their heads byte by byte and one sending half a
/// body never reach the upstream; a fresh client is answered meanwhile.
#[test]
fn slow_clients_do_not_delay_others() {
    let fake = Fake::start(Behaviour::Echo);
    let server = proxy(&[fake.arg()], &["--quiet"]);
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = server.connect().unwrap();
            stream.write_all(b"GET /slow HTTP/1.1\r\nHo").unwrap();
            stream
        })
        .collect();
    let mut half_body = server.connect().unwrap();
    half_body
        .write_all(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        .unwrap();
    slow.push(half_body);
    let mut fresh = server.connect().unwrap();
    let response = get(&mut fresh, "/fresh");
    assert_eq!(response.status, 200);
    assert!(response.body.starts_with(b"GET /fresh HTTP/1.1\r\n"));
    assert_eq!(
        fake.requests(),
        1,
        "only the fresh request reached the upstream"
    );
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
    // The slow ones are still connected, and one finishing is served too.
    let mut last = slow.pop().unwrap();
    last.write_all(b"67890").unwrap();
    let response = read_response(&mut last, &mut Vec::new(), false).unwrap();
    assert!(
        response.body.ends_with(b"\r\n\r\n1234567890"),
        "{}",
        escaped(&response.body)
    );
}

/// A 3 MiB upload sent in four pieces, 200 ms apart, reaches the upstream
/// only after its last byte left the client, and whole.
#[test]
fn a_large_upload_reaches_the_upstream_whole_and_only_once_complete() {
    let fake = Fake::start(Behaviour::Echo);
    let server = proxy(&[fake.arg()], &["--quiet", "--client-max-body-size", "8m"]);
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 253) as u8).collect();
    let (response, sent) = upload_slowly(&server, &body, 4, Duration::from_millis(200));
    assert_eq!(response.status, 200);
    let seen = fake.seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].first_byte >= sent,
        "the upstream heard of the upload before it was complete"
    );
    assert!(seen[0].raw.ends_with(&body), "the upload arrived changed");
    assert!(response.body.ends_with(&body));
}

/// --client-body-timeout bounds each pause inside a body and is restarted
/// by every piece (nginx's client_body_timeout); the much longer
/// --client-header-timeout does not apply to the body. An upload slower in
/// all than the body timeout, but never pausing that long, goes through; a
/// client that stops mid-body is dropped after it, and the upstream hears
/// nothing of its request.
#[test]
fn a_pause_inside_a_body_is_bounded_by_the_body_timeout() {
    let fake = Fake::start(Behaviour::Echo);
    let flags = [
        "--client-header-timeout",
        "60",
        "--client-body-timeout",
        "2",
    ];
    let server = proxy(&[fake.arg()], &flags);
    let body = vec![b'x'; 5000];
    // Five pieces 600 ms apart: 3 s in all, no pause near 2 s.
    let (response, _) = upload_slowly(&server, &body, 5, Duration::from_millis(600));
    assert_eq!(response.status, 200);
    assert!(response.body.ends_with(&body));

    let mut stalled = server.connect().unwrap();
    stalled.write_all(&upload_head(body.len())).unwrap();
    stalled.write_all(&body[..2500]).unwrap();
    // Read with the harness's 10 s timeout: the proxy must close first.
    let mut rest = Vec::new();
    let closed = stalled.read_to_end(&mut rest);
    assert!(
        matches!(closed, Ok(0)),
        "a client stalled mid-body was not dropped after --client-body-timeout: {closed:?}"
    );
    assert_eq!(
        fake.seen.lock().unwrap().len(),
        1,
        "the upstream heard of the stalled upload"
    );
}

/// A pooled upstream connection idle past --upstream-keepalive-timeout is
/// closed (nginx's `keepalive_timeout` in `upstream`): the next request
/// opens a new one.
#[test]
fn an_idle_pooled_connection_is_closed_after_its_timeout() {
    let fake = Fake::start(Behaviour::Echo);
    let flags = ["--trace", "--upstream-keepalive-timeout", "1"];
    let server = proxy(&[fake.arg()], &flags);
    let mut stream = server.connect().unwrap();
    assert_eq!(get(&mut stream, "/a").status, 200);
    let needle = "idle past --upstream-keepalive-timeout";
    assert!(server.wait_for_stderr(needle, IO_TIMEOUT), "never closed");
    assert_eq!(get(&mut stream, "/b").status, 200);
    assert_eq!(fake.connections.load(Ordering::SeqCst), 2);
}

/// The proxy's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The head of a POST /upload of `len` bytes.
fn upload_head(len: usize) -> Vec<u8> {
    format!("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n").into_bytes()
}

/// A POST of `body` in `pieces` pieces, each after a `pause`; the response,
/// and when the last piece *began* to leave (the proxy may take it, dispatch
/// and reach the upstream before `write_all` returns to us).
fn upload_slowly(
    server: &Server,
    body: &[u8],
    pieces: usize,
    pause: Duration,
) -> (common::Response, Instant) {
    let mut stream = server.connect().unwrap();
    stream.write_all(&upload_head(body.len())).unwrap();
    let mut sent = Instant::now();
    for piece in body.chunks(body.len().div_ceil(pieces)) {
        thread::sleep(pause);
        sent = Instant::now();
        stream.write_all(piece).unwrap();
    }
    (
        read_response(&mut stream, &mut Vec::new(), false).unwrap(),
        sent,
    )
}

/// A 4 MiB upload over a 64 KiB --client-body-buffer-size waits in a
/// temporary file, not in memory: the proxy's peak memory grows by far
/// less than the body (kept in memory, it grows by twice the body), and
/// the upstream still gets it whole, only once complete, sent from the file.
#[test]
fn a_large_upload_spills_to_a_file_not_memory() {
    let fake = Fake::start(Behaviour::Echo);
    let flags = [
        "--quiet",
        "--client-max-body-size",
        "8m",
        "--client-body-buffer-size",
        "64k",
    ];
    let server = proxy(&[fake.arg()], &flags);
    // The same path once, small, so what it allocates once is counted before.
    let warm: Vec<u8> = (0..200_000).map(|i: u32| (i % 249) as u8).collect();
    let pause = Duration::from_millis(200);
    assert_eq!(upload_slowly(&server, &warm, 4, pause).0.status, 200);
    let before = peak_rss_kib(&server);
    let body: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 253) as u8).collect();
    let (response, sent) = upload_slowly(&server, &body, 4, pause);
    // Saturating: the kernel sums its RSS counters per CPU and reads them
    // approximately, so two readings of the peak can even seem to go down.
    let grown = peak_rss_kib(&server).saturating_sub(before);
    assert_eq!(response.status, 200);
    assert!(response.body.ends_with(&body), "the upload arrived changed");
    let seen = fake.seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].first_byte >= sent,
        "the upstream heard of the upload before it was complete"
    );
    assert!(seen[1].raw.ends_with(&body));
    assert!(
        grown < 2048,
        "the proxy's peak memory grew by {grown} KiB for a 4096 KiB body"
    );
}

/// A client that reads nothing of a 32 MiB answer: the upstream still
/// writes all of it at once (far more than socket buffers hold), and its
/// connection goes back to the pool; the client then reads it all, from
/// a temporary file that nobody can see.
#[test]
fn a_slow_reader_of_a_large_response_frees_the_upstream_immediately() {
    const SIZE: usize = 32 << 20;
    let fake = Fake::start(Behaviour::Big(SIZE));
    let temp = std::env::temp_dir().join(format!("lesson08-spool-{}", std::process::id()));
    std::fs::create_dir_all(&temp).unwrap();
    let server = proxy(
        &[fake.arg()],
        &["--quiet", "--temp-dir", temp.to_str().unwrap()],
    );
    let mut stream = server.connect().unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    eventually("the upstream wrote its whole answer", || {
        fake.written.lock().unwrap().is_some()
    });
    assert_eq!(
        std::fs::read_dir(&temp).unwrap().count(),
        0,
        "the temporary file is visible"
    );
    // The upstream's connection is free: a second client is served on it.
    let mut other = server.connect().unwrap();
    other
        .write_all(b"HEAD /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let head = read_response(&mut other, &mut Vec::new(), true).unwrap();
    assert_eq!(
        head.header("content-length"),
        Some(SIZE.to_string().as_str())
    );
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
    let response = read_response(&mut stream, &mut Vec::new(), false).unwrap();
    assert_eq!(response.body.len(), SIZE);
    assert!(
        response
            .body
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8)
    );
    let _ = std::fs::remove_dir_all(&temp);
}

/// RFC 9110 §7.6.1 both ways, and the forwarding headers (RFC 7239).
#[test]
fn hop_by_hop_headers_are_removed_and_forwarding_headers_added() {
    let fake = Fake::start(Behaviour::Echo);
    let server = proxy(&[fake.arg()], &["--quiet"]);
    let mut stream = server.connect().unwrap();
    stream
        .write_all(
            b"GET http://example.com/path?q=1 HTTP/1.1\r\nHost: ignored\r\nConnection: keep-alive, X-Secret\r\n\
              X-Secret: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\n\
              Proxy-Authorization: Basic eA==\r\nX-Forwarded-For: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\n\
              X-End-To-End: kept\r\n\r\n",
        )
        .unwrap();
    let response = read_response(&mut stream, &mut Vec::new(), false).unwrap();
    let sent = String::from_utf8(response.body.clone()).unwrap();
    assert!(
        sent.starts_with("GET /path?q=1 HTTP/1.1\r\nHost: example.com\r\n"),
        "{sent}"
    );
    for gone in [
        "X-Secret",
        "Keep-Alive",
        "TE:",
        "Trailer",
        "Upgrade",
        "Proxy-Authorization",
        "Connection",
    ] {
        assert!(!sent.contains(gone), "{gone} was forwarded: {sent}");
    }
    assert!(sent.contains("X-End-To-End: kept\r\n"), "{sent}");
    assert!(
        sent.contains("X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n"),
        "{sent}"
    );
    assert!(sent.contains("X-Forwarded-Proto: http\r\n"), "{sent}");
    assert!(
        sent.contains("Forwarded: for=10.0.0.1, for=127.0.0.1;proto=http;host=\"example.com\"\r\n"),
        "{sent}"
    );
    assert_eq!(response.header("x-upstream"), Some("fake"));
    assert_eq!(response.header("x-hop"), None, "{}", response.head);
    assert_eq!(response.header("keep-alive"), None, "{}", response.head);
}

/// Ten requests from two clients, one after the other, use one upstream connection.
#[test]
fn upstream_connections_are_reused() {
    let fake = Fake::start(Behaviour::Echo);
    let server = proxy(&[fake.arg()], &["--quiet"]);
    for _ in 0..2 {
        let mut stream = server.connect().unwrap();
        for _ in 0..5 {
            assert_eq!(get(&mut stream, "/again").status, 200);
        }
    }
    assert_eq!(fake.requests(), 10);
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
}

/// One of two upstreams is killed while clients keep asking: every GET is
/// still answered 200, by the other one, and the dead one is marked down.
#[test]
fn an_upstream_killed_mid_run_loses_no_idempotent_request() {
    let mut doomed = lesson05();
    let survivor = lesson05();
    let upstreams = [doomed.addr.to_string(), survivor.addr.to_string()];
    let server = proxy(&upstreams, &["--quiet"]);
    let addr = server.addr;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                let mut statuses = Vec::new();
                for i in 0..40 {
                    // Half on kept-alive connections, half on new ones.
                    let mut stream = TcpStream::connect(addr).unwrap();
                    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    statuses.push(get(&mut stream, "/hello").status);
                    if i % 2 == 0 {
                        statuses.push(get(&mut stream, "/hello").status);
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                statuses
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(150));
    doomed.signal(Signal::SIGKILL).unwrap();
    for client in clients {
        let statuses = client.join().unwrap();
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    }
    let _ = doomed.wait_exit(IO_TIMEOUT);
    let mut stream = server.connect().unwrap();
    assert_eq!(get(&mut stream, "/hello").status, 200);
}

/// Nothing listens where the only upstream should be: 502, the ladder's page.
#[test]
fn all_upstreams_down_is_502() {
    let (_held, nowhere) = common::refusing_port();
    let nowhere = nowhere.to_string();
    let server = proxy(&[nowhere.clone(), nowhere], &[]);
    let mut stream = server.connect().unwrap();
    let response = get(&mut stream, "/x");
    assert_eq!(response.status, 502);
    assert_eq!(
        response.body,
        b"502 Bad Gateway: no upstream could be reached\n"
    );
    assert!(server.wait_for_stderr("marked down", IO_TIMEOUT));
    assert!(server.wait_for_stderr("\"GET /x HTTP/1.1\" 502 - upstream -", IO_TIMEOUT));
}

/// An upstream that takes the request and says nothing: 504 after
/// `--proxy-read-timeout`.
#[test]
fn a_silent_upstream_is_504() {
    let fake = Fake::start(Behaviour::Silent);
    let server = proxy(&[fake.arg()], &["--quiet", "--proxy-read-timeout", "1"]);
    let mut stream = server.connect().unwrap();
    let response = get(&mut stream, "/x");
    assert_eq!(response.status, 504);
    assert!(String::from_utf8_lossy(&response.body).starts_with("504 Gateway Timeout"));
}

/// Round robin alternates; least-conn spreads too.
#[test]
fn balancing_spreads_requests() {
    for balance in ["round-robin", "least-conn"] {
        let (a, b) = (Fake::start(Behaviour::Echo), Fake::start(Behaviour::Echo));
        let server = proxy(&[a.arg(), b.arg()], &["--quiet", "--balance", balance]);
        let mut stream = server.connect().unwrap();
        for _ in 0..10 {
            assert_eq!(get(&mut stream, "/spread").status, 200);
        }
        let spread = (a.requests(), b.requests());
        match balance {
            "round-robin" => assert_eq!(spread, (5, 5)),
            _ => assert!(spread.0 > 0 && spread.1 > 0, "{spread:?}"),
        }
    }
}

/// `--static PREFIX=DIR` files come from disk; everything else goes upstream.
#[test]
fn static_prefixes_are_served_by_the_proxy() {
    let dir = std::env::temp_dir().join(format!("lesson08-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), "from disk\n").unwrap();
    let fake = Fake::start(Behaviour::Echo);
    let flag = format!("/static/={}", dir.display());
    let server = proxy(&[fake.arg()], &["--quiet", "--static", &flag]);
    let mut stream = server.connect().unwrap();
    let response = get(&mut stream, "/static/a.txt");
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"from disk\n"[..])
    );
    assert_eq!(fake.requests(), 0);
    let mut stream = server.connect().unwrap();
    assert_eq!(get(&mut stream, "/static/missing").status, 404); // and closes
    // A directory without its slash is redirected inside the prefix, not
    // to the path rung 4's code saw (which would leave the static files).
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut stream = server.connect().unwrap();
    let response = get(&mut stream, "/static/sub");
    assert_eq!(response.status, 301);
    assert_eq!(response.header("location"), Some("/static/sub/"));
    // ... and its listing is titled with the whole URL.
    let mut stream = server.connect().unwrap();
    let listing = String::from_utf8_lossy(&get(&mut stream, "/static/sub/").body).into_owned();
    assert!(
        listing.contains("Directory listing for /static/sub/"),
        "{listing}"
    );
    let mut stream = server.connect().unwrap();
    assert_eq!(get(&mut stream, "/dynamic").status, 200);
    assert_eq!(fake.requests(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ladder's rules for bad requests hold at the proxy, which answers
/// them itself (400, 413, 414, 431, 501, 505); the upstream hears of none.
#[test]
fn bad_input_gets_the_ladders_answers() {
    let fake = Fake::start(Behaviour::Echo);
    let server = proxy(&[fake.arg()], &["--quiet", "--client-max-body-size", "10"]);
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let cases: [(&[u8], &str); 7] = [
        (b"GARBAGE\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\n\r\n", "400"), // no Host
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
            "413",
        ),
        (long_line.as_bytes(), "414"),
        (huge_header.as_bytes(), "431"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "501",
        ),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"),
    ];
    common::assert_refusals(&server, &cases);
    let connect = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let bytes = common::exchange(&mut server.connect().unwrap(), connect).unwrap();
    assert!(bytes.starts_with(b"HTTP/1.1 501 "), "{}", escaped(&bytes));
    assert_eq!(fake.requests(), 0);
    common::assert_no_panic(&server);
}

/// SIGTERM and SIGINT both end the proxy with status 0.
#[test]
fn sigterm_and_sigint_exit_zero() {
    let upstream = lesson05();
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut server = proxy(&[upstream.addr.to_string()], &["--quiet"]);
        assert_eq!(get(&mut server.connect().unwrap(), "/hello").status, 200);
        server.signal(signal).unwrap();
        let status = server
            .wait_exit(IO_TIMEOUT)
            .expect("the proxy did not exit");
        assert_eq!(status.code(), Some(0), "{signal}: {status:?}");
    }
}
