//! Lesson 04: the `python3 -m http.server` clone, checked side by side with
//! the real one, plus everything Python does not do (refusing traversal,
//! the header timeout, graceful shutdown, keep-alive).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Response, Server, escaped, read_response, read_to_close};
use nix::sys::signal::Signal;

const BIN: &str = env!("CARGO_BIN_EXE_lesson04_http_server");
const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";
const BIG: usize = 20 * 1024 * 1024;

/// A fixture tree in a fresh temp dir, removed on drop:
/// `base/secret.txt` (outside the root) and `base/www/` (the root).
struct Fixture {
    base: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "lesson04-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&base);
        let www = base.join("www");
        for dir in ["sub", "empty", "htm", "Zdir"] {
            fs::create_dir_all(www.join(dir)).unwrap();
        }
        fs::write(base.join("secret.txt"), SECRET).unwrap();
        let files: &[(&str, &[u8])] = &[
            ("a.txt", b"hello, world!"),
            ("B.txt", b"upper case sorts among the lower"),
            ("c.TXT", b"an upper-case extension"),
            ("a&b <c>.txt", b"a name that needs escaping"),
            ("\u{fc}.txt", "\u{fc}ber".as_bytes()),
            ("style.css", b"body { color: red }"),
            ("app.js", b"console.log(1)"),
            ("data.json", b"{\"a\": 1}"),
            ("pic.png", b"\x89PNG\r\n\x1a\n"),
            ("archive.tar.gz", b"\x1f\x8b"),
            ("page.wasm", b"\0asm"),
            ("noext", b"no extension"),
            ("sub/index.html", b"<h1>sub</h1>"),
            ("htm/index.htm", b"<h1>htm</h1>"),
            ("Zdir/z.txt", b"z"),
        ];
        for (name, bytes) in files {
            fs::write(www.join(name), bytes).unwrap();
        }
        // A symlink that stays inside, and three that lead out.
        symlink("a.txt", www.join("link.txt")).unwrap();
        symlink(&base, www.join("outside")).unwrap();
        symlink(base.join("secret.txt"), www.join("secret-link.txt")).unwrap();
        symlink("../secret.txt", www.join("relative-out.txt")).unwrap();
        Fixture { base }
    }

    fn root(&self) -> PathBuf {
        self.base.join("www")
    }

    fn big_file(&self) -> Vec<u8> {
        let data: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
        fs::write(self.root().join("big.bin"), &data).unwrap();
        data
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

fn start(root: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["-d", root.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    Server::start(BIN, &args).unwrap()
}

/// Send one raw request and read one response (HEAD: head only).
fn ask(server: &Server, raw: &str) -> Response {
    let mut stream = server.connect().unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let head_only = raw.starts_with("HEAD ");
    read_response(&mut stream, &mut Vec::new(), head_only).unwrap()
}

fn get(server: &Server, target: &str) -> Response {
    ask(server, &format!("GET {target} HTTP/1.0\r\n\r\n"))
}

// ---------------------------------------------------------------------------
// Side by side with Python

/// Python's http.server on `root`, with `/etc/mime.types` switched off so
/// both servers use Python's built-in type table (see static_files docs).
fn start_python(root: &Path) -> Option<Server> {
    let probe = Command::new("python3")
        .args(["-c", "import http.server"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return None;
    }
    let script = "import mimetypes, runpy, sys\n\
                  mimetypes.knownfiles[:] = []\n\
                  sys.argv = ['http.server'] + sys.argv[1:]\n\
                  runpy.run_module('http.server', run_name='__main__')";
    let mut command = Command::new("python3");
    command
        .args(["-u", "-c", script, "--bind", "127.0.0.1", "-d"])
        .arg(root)
        .arg("0");
    Some(Server::spawn(command).unwrap())
}

#[test]
fn matches_python_http_server() {
    let fixture = Fixture::new();
    let Some(python) = start_python(&fixture.root()) else {
        eprintln!("SKIPPED: python3 with http.server is not installed here");
        return;
    };
    let ours = start(&fixture.root(), &[]);
    let targets = [
        "/",
        "/?q=a%20b",
        "/a.txt",
        "/B.txt",
        "/c.TXT",
        "/a%26b%20%3Cc%3E.txt",
        "/%C3%BC.txt",
        "/style.css",
        "/app.js",
        "/data.json",
        "/pic.png",
        "/archive.tar.gz",
        "/page.wasm",
        "/noext",
        "/link.txt",
        "/sub",
        "/sub?x=1&y=2",
        "//sub",
        "/sub/",
        "/sub/./index.html",
        "/sub//index.html",
        "/htm/",
        "/empty",
        "/empty/",
        "/Zdir/",
        "/missing",
        "/missing/",
        "/a.txt/",
        "/a.txt?v=1",
    ];
    let mut compared = 0;
    for target in targets {
        for method in ["GET", "HEAD"] {
            let raw = format!("{method} {target} HTTP/1.0\r\n\r\n");
            let want = ask(&python, &raw);
            let got = ask(&ours, &raw);
            let what = format!("{method} {target}");
            assert_eq!(got.status, want.status, "{what}: status");
            for name in [
                "Content-Type",
                "Content-Length",
                "Location",
                "Last-Modified",
            ] {
                assert_eq!(got.header(name), want.header(name), "{what}: {name}");
            }
            assert_eq!(
                escaped(&got.body),
                escaped(&want.body),
                "{what}: body\n--- ours ---\n{}\n--- python ---\n{}",
                got.head,
                want.head
            );
            compared += 1;
        }
    }
    // Python without --cgi, like us: 501 in its error format.
    let post = "POST /a.txt HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc";
    let (want, got) = (ask(&python, post), ask(&ours, post));
    assert_eq!(
        (got.status, got.body.clone()),
        (want.status, want.body.clone())
    );
    assert_eq!(got.header("Content-Type"), want.header("Content-Type"));
    assert_eq!(got.header("Connection"), Some("close"));
    assert!(compared > 50);
}

#[test]
fn conditional_get_follows_pythons_rules() {
    let fixture = Fixture::new();
    let server = start(&fixture.root(), &[]);
    let first = get(&server, "/a.txt");
    let stamp = first.header("Last-Modified").unwrap().to_string();
    let with = |headers: &str| ask(&server, &format!("GET /a.txt HTTP/1.0\r\n{headers}\r\n"));
    let same = with(&format!("If-Modified-Since: {stamp}\r\n"));
    assert_eq!(same.status, 304, "{}", same.head);
    assert!(same.body.is_empty());
    assert_eq!(
        same.header("Content-Length"),
        None,
        "Python sends none on 304"
    );
    let later = with("If-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT\r\n");
    assert_eq!(later.status, 304);
    let earlier = with("If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
    assert_eq!(earlier.status, 200);
    // If-None-Match present: the date is ignored, whatever the tag says.
    let both = with(&format!(
        "If-Modified-Since: {stamp}\r\nIf-None-Match: \"x\"\r\n"
    ));
    assert_eq!(both.status, 200);
    assert_eq!(both.body, b"hello, world!");
    let garbage = with("If-Modified-Since: yesterday\r\n");
    assert_eq!(garbage.status, 200);
    // Directories (listings) are never 304, as in Python.
    let listing = ask(
        &server,
        "GET / HTTP/1.0\r\nIf-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT\r\n\r\n",
    );
    assert_eq!(listing.status, 200);
    common::assert_no_panic(&server);
}

// ---------------------------------------------------------------------------
// Nothing outside --directory

#[test]
fn every_traversal_vector_is_refused() {
    let fixture = Fixture::new();
    let server = start(&fixture.root(), &[]);
    let table: &[(&str, u16)] = &[
        ("/../secret.txt", 400),
        ("/sub/../../secret.txt", 400),
        ("/%2e%2e/secret.txt", 400),
        ("/%2E%2E/%2e%2e/etc/passwd", 400),
        ("/.%2e/secret.txt", 400),
        ("/..%2fsecret.txt", 400),
        ("/sub%2f..%2f..%2fsecret.txt", 400),
        ("/%2fetc%2fpasswd", 400),
        ("/..\\secret.txt", 400),
        ("/..%5csecret.txt", 400),
        ("http://127.0.0.1/../secret.txt", 400),
        ("http://127.0.0.1/a.txt", 400),
        ("*", 400),
        ("/a.txt%00.html", 400),
        ("/a.txt%00", 400),
        ("/outside/secret.txt", 403),
        ("/outside/", 403),
        ("/outside", 403),
        ("/secret-link.txt", 403),
        ("/relative-out.txt", 403),
    ];
    for (target, status) in table {
        for method in ["GET", "HEAD"] {
            let response = ask(&server, &format!("{method} {target} HTTP/1.0\r\n\r\n"));
            assert_eq!(
                response.status, *status,
                "{method} {target}\n{}",
                response.head
            );
            let body = String::from_utf8_lossy(&response.body);
            assert!(!body.contains(SECRET), "{target} leaked the secret");
            assert_eq!(response.header("Connection"), Some("close"));
        }
    }
    // A link that stays inside the root is served.
    assert_eq!(get(&server, "/link.txt").body, b"hello, world!");
    common::assert_no_panic(&server);
}

#[test]
fn hostile_input_gets_errors_never_a_panic() {
    let fixture = Fixture::new();
    let server = start(&fixture.root(), &["--threads", "2"]);
    let inputs: &[&[u8]] = &[
        b"garbage\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /%ff%fe HTTP/1.0\r\n\r\n",
        b"GET /%C3 HTTP/1.0\r\n\r\n",
        b"GET /%% HTTP/1.0\r\n\r\n",
        b"GET /a.txt HTTP/1.0\r\nIf-Modified-Since: \xff\xfe\r\n\r\n",
        b"GET /\xff HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\r\n\r\n",
    ];
    for input in inputs {
        let mut stream = server.connect().unwrap();
        stream.write_all(input).unwrap();
        let reply = read_to_close(&mut stream).unwrap();
        assert!(reply.starts_with(b"HTTP/1.0 "), "{}", escaped(&reply));
    }
    let long = format!("GET /{} HTTP/1.0\r\n\r\n", "a".repeat(10_000));
    assert_eq!(ask(&server, &long).status, 414);
    common::assert_no_panic(&server);
}

// ---------------------------------------------------------------------------
// HTTP behaviour

#[test]
fn directory_redirect_keeps_the_query() {
    let fixture = Fixture::new();
    let server = start(&fixture.root(), &[]);
    let response = get(&server, "/sub?x=1&y=%20");
    assert_eq!(response.status, 301);
    assert_eq!(response.header("Location"), Some("/sub/?x=1&y=%20"));
    assert_eq!(response.header("Content-Length"), Some("0"));
    // A leading `//` would make the Location point at another host.
    let open_redirect = get(&server, "//sub");
    assert_eq!(open_redirect.header("Location"), Some("/sub/"));
}

#[test]
fn head_announces_the_length_and_sends_no_body() {
    let fixture = Fixture::new();
    let server = start(&fixture.root(), &[]);
    for target in ["/a.txt", "/", "/missing"] {
        let mut stream = server.connect().unwrap();
        stream
            .write_all(format!("HEAD {target} HTTP/1.0\r\n\r\n").as_bytes())
            .unwrap();
        let all = read_to_close(&mut stream).unwrap();
        let text = String::from_utf8_lossy(&all);
        assert!(
            text.ends_with("\r\n\r\n"),
            "a body followed the head: {text}"
        );
        let got = get(&server, target);
        assert!(
            text.contains(&format!("Content-Length: {}\r\n", got.body.len())),
            "{text}"
        );
    }
}

#[test]
fn big_files_stream_intact_with_and_without_sendfile() {
    let fixture = Fixture::new();
    let data = fixture.big_file();
    for extra in [&[][..], &["--no-sendfile"][..]] {
        let server = start(&fixture.root(), extra);
        let response = get(&server, "/big.bin");
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("Content-Length"),
            Some(BIG.to_string().as_str())
        );
        assert_eq!(
            response.header("Content-Type"),
            Some("application/octet-stream")
        );
        assert!(response.body == data, "{extra:?}: the bytes differ");
    }
}

#[test]
fn http11_keeps_the_connection_open() {
    let fixture = Fixture::new();
    let server = start(&fixture.root(), &["-p", "HTTP/1.1"]);
    let mut stream = server.connect().unwrap();
    let mut leftover = Vec::new();
    // Two requests written at once (pipelined), then a third after reading.
    stream
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nHEAD /B.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let first = read_response(&mut stream, &mut leftover, false).unwrap();
    assert!(first.head.starts_with("HTTP/1.1 200"), "{}", first.head);
    assert_eq!(first.header("Connection"), Some("keep-alive"));
    assert_eq!(first.body, b"hello, world!");
    let second = read_response(&mut stream, &mut leftover, true).unwrap();
    assert_eq!(second.status, 200);
    stream
        .write_all(b"GET /sub/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let third = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(third.body, b"<h1>sub</h1>");
    assert_eq!(third.header("Connection"), Some("close"));
    assert!(read_to_close(&mut stream).unwrap().is_empty());
}

#[test]
fn http10_default_answers_once_and_closes() {
    let fixture = Fixture::new();
    let server = start(&fixture.root(), &[]);
    let mut stream = server.connect().unwrap();
    // Even an HTTP/1.1 client asking for keep-alive gets one answer, as
    // from Python's default `-p HTTP/1.0`.
    stream
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let all = read_to_close(&mut stream).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"));
    assert_eq!(text.matches("HTTP/1.0 200").count(), 1, "{text}");
}

#[test]
fn post_is_not_implemented_without_cgi() {
    let fixture = Fixture::new();
    let server = start(&fixture.root(), &[]);
    let response = ask(&server, "POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(response.status, 501);
    assert_eq!(
        response.header("Content-Type"),
        Some("text/html;charset=utf-8")
    );
    assert_eq!(response.header("Connection"), Some("close"));
    assert!(String::from_utf8_lossy(&response.body).contains("Unsupported method ('POST')"));
}

// ---------------------------------------------------------------------------
// The pool: timeouts and shutdown

#[test]
fn header_timeout_frees_the_only_thread() {
    let fixture = Fixture::new();
    let server = start(&fixture.root(), &["--threads", "1", "--timeout", "1"]);
    // A client that connects and says nothing holds the only worker...
    let mut silent = server.connect().unwrap();
    // ...and one that sends half a head, too (it gets a 408).
    let mut slow = server.connect().unwrap();
    slow.write_all(b"GET /a.txt HTTP/1.0\r\nHost: x\r\n")
        .unwrap();
    // ...until --timeout ends them; then a real request is answered.
    let response = get(&server, "/a.txt");
    assert_eq!(response.body, b"hello, world!");
    assert!(read_to_close(&mut silent).unwrap().is_empty());
    let late = String::from_utf8_lossy(&read_to_close(&mut slow).unwrap()).into_owned();
    assert!(late.starts_with("HTTP/1.0 408 "), "{late}");
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let fixture = Fixture::new();
    let data = fixture.big_file();
    let mut server = start(&fixture.root(), &["--threads", "2"]);
    let mut stream = server.connect().unwrap();
    stream.write_all(b"GET /big.bin HTTP/1.0\r\n\r\n").unwrap();
    // Read a little, slowly, so the server is surely mid-response...
    let mut received = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while received.len() < 1024 * 1024 {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early");
        received.extend_from_slice(&chunk[..n]);
        std::thread::sleep(Duration::from_millis(5));
    }
    // ...then ask it to stop, and read the rest.
    server.signal(Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // A new connection is not served any more.
    if let Ok(mut late) = server.connect() {
        let _ = late.write_all(b"GET /a.txt HTTP/1.0\r\n\r\n");
        let answer = read_to_close(&mut late).unwrap_or_default();
        assert!(
            answer.is_empty(),
            "served after SIGTERM: {}",
            escaped(&answer)
        );
    }
    received.extend(read_to_close(&mut stream).unwrap());
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        received[head_end..] == data[..],
        "the response was cut short"
    );
    let status = server
        .wait_exit(common::IO_TIMEOUT)
        .expect("server did not exit");
    assert!(status.success(), "{status:?}");
    common::assert_no_panic(&server);
}

#[test]
fn threads_one_serves_clients_one_at_a_time() {
    let fixture = Fixture::new();
    let server = start(&fixture.root(), &["--threads", "1", "-p", "HTTP/1.1"]);
    // The first client keeps its connection (keep-alive), holding the thread.
    let mut first = server.connect().unwrap();
    first
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut leftover = Vec::new();
    assert_eq!(
        read_response(&mut first, &mut leftover, false)
            .unwrap()
            .status,
        200
    );
    // The second is accepted by the kernel but not answered...
    let mut second = server.connect().unwrap();
    second.write_all(b"GET /a.txt HTTP/1.0\r\n\r\n").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        second.read(&mut byte).is_err(),
        "answered while the only thread was busy"
    );
    // ...until the first one leaves.
    drop(first);
    second.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    let answer = read_to_close(&mut second).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", escaped(&answer));
}
