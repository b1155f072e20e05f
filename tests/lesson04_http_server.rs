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

use common::{IO_TIMEOUT, Response, Server, escaped, read_response, read_to_close};
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
    start_python_with(root, &[])
}

fn start_python_with(root: &Path, extra: &[&str]) -> Option<Server> {
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
        .args(extra)
        .arg("0");
    Some(Server::spawn(command).unwrap())
}

#[test]
fn matches_python_http_server() {
    let fixture = Fixture::new();
    let Some(python) = start_python(&fixture.root()) else {
        common::skipped(
            "python3",
            "the side-by-side comparison with python3 -m http.server",
        );
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
    // If-Modified-Since in the forms people type: Python reads it as an
    // e-mail date, so `+0000` is GMT too; other offsets are ignored.
    let stamp = ask(&python, "GET /a.txt HTTP/1.0\r\n\r\n")
        .header("Last-Modified")
        .unwrap()
        .to_string();
    let numeric = stamp.replace(" GMT", " +0000");
    let zones = [
        stamp.clone(),
        numeric.clone(),
        stamp.replace(" GMT", " -0000"),
        stamp.replace(" GMT", " UTC"),
        stamp.replace(" GMT", " +0100"),
        "Thu, 01 Jan 1970 00:00:00 GMT".to_string(),
        "not a date".to_string(),
    ];
    for since in zones {
        let raw = format!("GET /a.txt HTTP/1.0\r\nIf-Modified-Since: {since}\r\n\r\n");
        let (want, got) = (ask(&python, &raw), ask(&ours, &raw));
        assert_eq!(got.status, want.status, "If-Modified-Since: {since}");
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
        ("http://127.0.0.1/%2e%2e/secret.txt", 400),
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
    // So is an absolute-form target, which RFC 9112 §3.2.2 says every server
    // must accept: its path goes through the same rules as any other.
    assert_eq!(
        get(&server, "http://127.0.0.1/a.txt").body,
        b"hello, world!"
    );
    let listing = get(&server, "http://127.0.0.1?x=1");
    assert!(String::from_utf8_lossy(&listing.body).contains("Directory listing for /?x=1"));
    // So is an absolute one back inside: openat2's RESOLVE_BENEATH refuses
    // it (EXDEV), and the slow check finds that it stays inside.
    let root = fixture.root();
    symlink(root.join("a.txt"), root.join("abs-link.txt")).unwrap();
    assert_eq!(get(&server, "/abs-link.txt").body, b"hello, world!");
    symlink(root.join("sub"), root.join("abs-dir")).unwrap();
    assert_eq!(get(&server, "/abs-dir/").body, b"<h1>sub</h1>");
    // A directory whose index.html leads out is refused, not listed.
    fs::create_dir(root.join("trap")).unwrap();
    symlink(
        fixture.base.join("secret.txt"),
        root.join("trap/index.html"),
    )
    .unwrap();
    let trap = get(&server, "/trap/");
    assert_eq!(trap.status, 403);
    assert!(!String::from_utf8_lossy(&trap.body).contains(SECRET));
    common::assert_no_panic(&server);
}

/// The root is opened once: renaming it and putting a symlink to somewhere
/// else in its place must not make the server list or serve that place.
#[test]
fn a_root_swapped_for_a_symlink_leads_nowhere_new() {
    let fixture = Fixture::new();
    let root = fixture.root();
    let server = start(&root, &[]);
    fs::rename(&root, fixture.base.join("www-old")).unwrap();
    symlink(&fixture.base, &root).unwrap();
    let listing = get(&server, "/");
    assert_eq!(listing.status, 200);
    let page = String::from_utf8_lossy(&listing.body);
    assert!(
        page.contains("a.txt"),
        "the old root is still listed:\n{page}"
    );
    assert!(
        !page.contains("secret.txt"),
        "listed the new target:\n{page}"
    );
    for target in ["/secret.txt", "/www-old/a.txt"] {
        let response = get(&server, target);
        assert_ne!(response.status, 200, "{target} was served");
        assert!(!String::from_utf8_lossy(&response.body).contains(SECRET));
    }
    assert_eq!(get(&server, "/a.txt").body, b"hello, world!");
    common::assert_no_panic(&server);
}

#[test]
fn hostile_input_gets_errors_never_a_panic() {
    let fixture = Fixture::new();
    // A head that never completes ("\r\n\r\n" is only the blank lines a
    // parser may skip before a request) waits for --timeout, which must be
    // well below the test's own read timeout.
    let server = start(&fixture.root(), &["--threads", "2", "--timeout", "2"]);
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

/// Rung 4 installs Python's error page at start-up, so a request head that
/// never parsed is answered in Python's HTML too, not in the ladder's text.
#[test]
fn a_malformed_head_gets_pythons_error_page() {
    let fixture = Fixture::new();
    let server = start(&fixture.root(), &[]);
    let response = ask(&server, "garbage\r\n\r\n");
    assert_eq!(response.status, 400, "{}", response.head);
    assert!(
        response.head.starts_with("HTTP/1.0 400 "),
        "{}",
        response.head
    );
    assert_eq!(
        response.header("Content-Type"),
        Some("text/html;charset=utf-8")
    );
    assert!(
        response
            .header("Server")
            .is_some_and(|s| s.contains("lesson04"))
    );
    let page = String::from_utf8_lossy(&response.body);
    assert!(page.contains("<p>Error code: 400</p>"), "{page}");
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
    fixture.big_file();
    for target in ["/a.txt", "/", "/missing", "/big.bin"] {
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
    // With --cgi, Python says why instead: POST only runs CGI scripts.
    let cgi = start(&fixture.root(), &["--cgi"]);
    let response = ask(
        &cgi,
        "POST /a.txt HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(response.status, 501);
    assert!(String::from_utf8_lossy(&response.body).contains("Can only POST to CGI scripts"));
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
    // Soon a new connection is not served any more: refused, or closed
    // unanswered. (One that came before the signal was handled may be.)
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    while let Ok(mut late) = server.connect() {
        let _ = late.write_all(b"GET /a.txt HTTP/1.0\r\n\r\n");
        let answer = read_to_close(&mut late).unwrap_or_default();
        if answer.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still served {IO_TIMEOUT:?} after SIGTERM: {}",
            escaped(&answer)
        );
        std::thread::sleep(Duration::from_millis(50));
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

// ---------------------------------------------------------------------------
// Transcripts quoted by lessons/04-http-server.md

/// Replace what changes from run to run: the kernel-picked port becomes the
/// documented 8004, client ports `[port]`, dates `[date]`.
fn normalise(text: &str, server: &Server) -> String {
    let port = server.addr.port().to_string();
    let mut out = String::new();
    for line in text.lines() {
        let mut line = line.replace(&format!(":{port}"), ":8004");
        line = line.replace(&format!("port {port} "), "port 8004 ");
        for prefix in ["Date: ", "Last-Modified: "] {
            if line.starts_with(prefix) {
                line = format!("{prefix}[date]");
            }
        }
        // `[21/Nov/2026 10:00:00]` in the access log.
        if let (Some(open), Some(close)) = (line.find(" - - ["), line.find("] \"")) {
            line = format!("{} - - [date]{}", &line[..open], &line[close + 1..]);
        }
        // `from 127.0.0.1:52144` and `(127.0.0.1:52144)` in the trace.
        for marker in ["from 127.0.0.1:", "(127.0.0.1:"] {
            if let Some(at) = line.find(marker) {
                let digits_start = at + marker.len();
                let digits = line[digits_start..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .count();
                line.replace_range(digits_start..digits_start + digits, "[port]");
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// File descriptor numbers in a trace depend on what the test runner
/// leaves open; renumber them in order of appearance from 4, which is what
/// a student starting the server from a shell sees (0-2 are the standard
/// streams, 3 the served directory, held open by `static_files::Root`).
fn renumber_fds(trace: &str) -> String {
    let prefixes = ["accept(", "fd ", "read(", "sendfile(", "close(", ", "];
    let mut seen: Vec<String> = Vec::new();
    let mut out = String::new();
    let mut rest = trace;
    while let Some((at, prefix)) = prefixes
        .iter()
        .filter_map(|p| rest.find(p).map(|at| (at, *p)))
        .min()
    {
        let start = at + prefix.len();
        let digits: String = rest[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        out.push_str(&rest[..start]);
        if !digits.is_empty() {
            let index = seen.iter().position(|d| *d == digits).unwrap_or_else(|| {
                seen.push(digits.clone());
                seen.len() - 1
            });
            out.push_str(&(index + 4).to_string());
        }
        rest = &rest[start + digits.len()..];
    }
    out.push_str(rest);
    out
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({snapshot_path => "../lessons/transcripts",
        prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!(name, text);
    });
}

/// The small site the lesson's examples serve.
fn lesson_site() -> Fixture {
    let fixture = Fixture::new();
    let root = fixture.root();
    for entry in fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            fs::remove_dir_all(&path).unwrap();
        } else {
            fs::remove_file(&path).unwrap();
        }
    }
    fs::create_dir(root.join("docs")).unwrap();
    fs::write(root.join("hello.txt"), "hello, world!\n").unwrap();
    fs::write(root.join("a&b <c>.txt"), "escaped\n").unwrap();
    fs::write(root.join("\u{fc}ber.txt"), "\u{fc}\n").unwrap();
    symlink("hello.txt", root.join("Link.txt")).unwrap();
    symlink(&fixture.base, root.join("up")).unwrap();
    fixture
}

fn raw_exchange(server: &Server, request: &str) -> String {
    let mut stream = server.connect().unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let reply = read_to_close(&mut stream).unwrap();
    format!("{request}{}", String::from_utf8_lossy(&reply)).replace("\r\n", "\n")
}

#[test]
fn transcripts() {
    let fixture = lesson_site();
    let server = start(&fixture.root(), &[]);
    snapshot("04-announce", &normalise(&server.announce, &server));
    let listing = raw_exchange(&server, "GET / HTTP/1.0\r\n\r\n");
    snapshot("04-listing", &normalise(&listing, &server));
    let file = raw_exchange(&server, "GET /hello.txt HTTP/1.0\r\n\r\n");
    let redirect = raw_exchange(&server, "GET /docs?sort=name HTTP/1.0\r\n\r\n");
    snapshot(
        "04-file-and-redirect",
        &normalise(&format!("{file}\n{redirect}"), &server),
    );
    let mut refused = String::new();
    for target in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/up/secret.txt",
    ] {
        let text = raw_exchange(&server, &format!("GET {target} HTTP/1.0\r\n\r\n"));
        // The request line and the status line are the story here.
        let mut lines = text.lines();
        refused.push_str(&format!(
            "{}\n{}\n",
            lines.next().unwrap(),
            lines.nth(1).unwrap()
        ));
    }
    snapshot("04-refused", &refused);
    drop(server);

    let traced = Server::start(
        BIN,
        &[
            "-d",
            fixture.root().to_str().unwrap(),
            "--trace",
            // One worker, so the trace names the same one every run.
            "--threads",
            "1",
        ],
    )
    .unwrap();
    let _ = raw_exchange(&traced, "GET /hello.txt HTTP/1.0\r\n\r\n");
    assert!(traced.wait_for_stderr("close(", common::IO_TIMEOUT));
    let trace = normalise(&traced.stderr(), &traced);
    snapshot("04-trace", &renumber_fds(&trace));
}

#[test]
fn keep_alive_matches_python_with_protocol_http11() {
    let fixture = Fixture::new();
    let Some(python) = start_python_with(&fixture.root(), &["-p", "HTTP/1.1"]) else {
        common::skipped(
            "python3",
            "keep-alive beside python3 -m http.server -p HTTP/1.1",
        );
        return;
    };
    let ours = start(&fixture.root(), &["-p", "HTTP/1.1"]);
    let pipelined = "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n\
                     HEAD /sub HTTP/1.1\r\nHost: x\r\n\r\n\
                     GET /missing HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut answers = Vec::new();
    for server in [&python, &ours] {
        let mut stream = server.connect().unwrap();
        stream.write_all(pipelined.as_bytes()).unwrap();
        let mut leftover = Vec::new();
        let mut seen = Vec::new();
        for head_only in [false, true, false] {
            let response = read_response(&mut stream, &mut leftover, head_only).unwrap();
            let line = response.head.lines().next().unwrap_or_default();
            let version = line.split(' ').next().unwrap_or_default().to_string();
            seen.push((version, response.status, response.body));
        }
        // The 404 ends the connection on both (an error page closes).
        assert!(read_to_close(&mut stream).unwrap().is_empty());
        answers.push(seen);
    }
    assert_eq!(answers[1], answers[0]);
}

// ---------------------------------------------------------------------------
// --cgi: lesson 03's runner behind /cgi-bin/

fn cgi_site() -> Fixture {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new();
    let bin = fixture.root().join("cgi-bin");
    fs::create_dir(&bin).unwrap();
    let scripts = [
        (
            "hello.sh",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
             printf 'hello from %s %s\\n' \"$REQUEST_METHOD\" \"$QUERY_STRING\"\n",
        ),
        (
            "echo.sh",
            "#!/bin/sh\nprintf 'Status: 201 Created\\r\\nContent-Type: text/plain\\r\\n\\r\\n'\ncat\n",
        ),
        (
            "moved.sh",
            "#!/bin/sh\nprintf 'Location: /a.txt\\r\\n\\r\\n'\n",
        ),
    ];
    for (name, text) in scripts {
        let path = bin.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Lesson 03's fixtures, shared so both rungs are held to the same cases
    // (fs::copy keeps the executable bit).
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgi-bin");
    for name in ["redirect-post.sh", "show-method.sh", "custom-status.sh"] {
        fs::copy(shared.join(name), bin.join(name)).unwrap();
    }
    fixture
}

#[test]
fn cgi_scripts_run_with_the_flag_and_are_files_without_it() {
    let fixture = cgi_site();
    let plain = start(&fixture.root(), &[]);
    let source = get(&plain, "/cgi-bin/hello.sh");
    assert_eq!(source.status, 200);
    assert!(source.body.starts_with(b"#!/bin/sh"), "served as a file");
    drop(plain);

    let server = start(&fixture.root(), &["--cgi", "-p", "HTTP/1.1"]);
    let hello = get(&server, "/cgi-bin/hello.sh?x=1");
    assert_eq!(hello.status, 200, "{}", hello.head);
    assert_eq!(hello.body, b"hello from GET x=1\n");
    let echo = ask(
        &server,
        "POST /cgi-bin/echo.sh HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(
        (echo.status, echo.body.as_slice()),
        (201, b"hello".as_slice())
    );
    // A local redirect is served by the server itself: the client sees a.txt.
    let moved = get(&server, "/cgi-bin/moved.sh");
    assert_eq!(
        (moved.status, moved.body.as_slice()),
        (200, b"hello, world!".as_slice())
    );
    // Keep-alive works across a script's answer and a static file.
    let mut stream = server.connect().unwrap();
    stream
        .write_all(b"GET /cgi-bin/hello.sh HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut leftover = Vec::new();
    let first = read_response(&mut stream, &mut leftover, false).unwrap();
    let second = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(first.body, b"hello from GET \n");
    assert_eq!(second.body, b"hello, world!");
    // Nothing outside the CGI directory runs.
    for target in [
        "/cgi-bin/../a.txt",
        "/cgi-bin/%2e%2e/a.txt",
        "/cgi-bin/missing.sh",
    ] {
        let refused = get(&server, target);
        assert!(refused.status >= 400, "{target}: {}", refused.head);
    }
    common::assert_no_panic(&server);
}

/// A script's answer speaks the server's `-p` version and carries its
/// `Server` header, like every static answer: the CGI runner answers
/// through `Response::write_head` with rung 4's `ServerInfo`.
#[test]
fn cgi_answers_honour_protocol_and_server() {
    let fixture = cgi_site();
    for (flags, version) in [(&[][..], "HTTP/1.0"), (&["-p", "HTTP/1.1"][..], "HTTP/1.1")] {
        let mut args = vec!["--cgi"];
        args.extend_from_slice(flags);
        let server = start(&fixture.root(), &args);
        let hello = ask(
            &server,
            "GET /cgi-bin/hello.sh HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(
            hello.head.starts_with(&format!("{version} 200 ")),
            "{}",
            hello.head
        );
        assert!(
            hello
                .header("Server")
                .is_some_and(|s| s.contains("lesson04")),
            "{}",
            hello.head
        );
    }
}

/// Pins RFC 3875 §6.2.2 on rung 4 as on rung 3: a local redirect in answer
/// to a POST is served as a GET, without the body and without
/// CONTENT_LENGTH. (Rung 4 once passed both on to the redirected GET.)
#[test]
fn a_redirected_post_becomes_a_get_without_the_body() {
    let fixture = cgi_site();
    let server = start(&fixture.root(), &["--cgi", "-p", "HTTP/1.1"]);
    let post = |script: &str| {
        let raw = format!(
            "POST /cgi-bin/{script} HTTP/1.1\r\nHost: h\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: 8\r\n\
             Connection: close\r\n\r\nname=Ada"
        );
        ask(&server, &raw)
    };
    let redirected = post("redirect-post.sh");
    assert_eq!(redirected.status, 200, "{}", redirected.head);
    assert_eq!(
        String::from_utf8_lossy(&redirected.body),
        "GET CONTENT_LENGTH=unset stdin=\n"
    );
    // The same script, asked directly, does see the POST and its body.
    let direct = post("show-method.sh");
    assert_eq!(
        String::from_utf8_lossy(&direct.body),
        "POST CONTENT_LENGTH=8 stdin=name=Ada\n"
    );
    common::assert_no_panic(&server);
}

/// Pins RFC 3875 §6.3.3 on rung 4: the script's own reason phrase reaches
/// the status line, in the `-p` version.
#[test]
fn a_cgi_status_keeps_its_reason_phrase() {
    let fixture = cgi_site();
    let server = start(&fixture.root(), &["--cgi"]);
    let response = get(&server, "/cgi-bin/custom-status.sh");
    assert!(
        response.head.starts_with("HTTP/1.0 299 Custom Thing\r\n"),
        "{}",
        response.head
    );
    assert_eq!(response.header("x-kept"), Some("yes"));
    assert!(response.header("upgrade").is_none(), "{}", response.head);
    assert_eq!(response.body, b"fine\n");
}

/// Pins RFC 9112 §3.2.2 for HTTP/1.1 with a Host: an absolute-form target
/// names a file or a script by its path, like the origin form.
#[test]
fn an_absolute_form_target_is_served_by_its_path() {
    let fixture = cgi_site();
    let server = start(&fixture.root(), &["--cgi", "-p", "HTTP/1.1"]);
    let ask11 = |target: &str| {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        ask(&server, &raw)
    };
    let file = ask11("http://127.0.0.1/a.txt");
    assert_eq!(
        (file.status, file.body.as_slice()),
        (200, b"hello, world!".as_slice())
    );
    let script = ask11("http://127.0.0.1/cgi-bin/hello.sh?x=1");
    assert_eq!(script.status, 200, "{}", script.head);
    assert_eq!(script.body, b"hello from GET x=1\n");
}
