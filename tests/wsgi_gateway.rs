//! `ladder::wsgi`: PEP 3333 from the server's side, against small apps
//! (`tests/wsgi_apps.py`) that keep or break one rule each.
//!
//! Python starts once, for the whole test binary; the tests run on their
//! own threads and call the gateway side by side, as rung 6's pool does.
//! Most tests hand the response to a recording sink; the last ones to the
//! blocking `Connection` over a loopback socket.
#![cfg(feature = "python")]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use ladder::connection::{Connection, Got};
use ladder::http::{self, Body, Limits, Parsed, Request};
use ladder::python;
use ladder::wsgi::{Call, ConnectionSink, Ending, Gateway, ResponseSink, Served, Settings};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

const PEER: &str = "127.0.0.1:5555";
const LOCAL: &str = "127.0.0.1:8006";

/// The test apps, imported once Python is up.
fn apps() -> &'static Py<PyModule> {
    static APPS: OnceLock<Py<PyModule>> = OnceLock::new();
    APPS.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
        let config = python::Config {
            app_dir: Some(dir),
            ..Default::default()
        };
        // Never finalized: the process ends with the tests (and the thread
        // that started Python may be gone by then).
        if std::env::var_os("WSGI_TEST_TRACE").is_some() {
            ladder::trace::set_enabled(true);
        }
        std::mem::forget(python::initialize(&config).expect("start Python"));
        Python::attach(|py| py.import("wsgi_apps").expect("import wsgi_apps").unbind())
    })
}

fn gateway(app: &str, settings: Settings) -> Gateway {
    let apps = apps(); // Python starts here, before any attach
    let app = Python::attach(|py| apps.bind(py).getattr(app).expect(app).unbind());
    Gateway::new(app, settings).unwrap()
}

fn parse(raw: &[u8]) -> (Request, Vec<u8>) {
    match http::parse_request(raw, &Limits::default()).unwrap() {
        Parsed::Complete { request, consumed } => (request, raw[consumed..].to_vec()),
        Parsed::Partial => panic!("incomplete request in a test"),
    }
}

/// `GET path` from test `test`, with extra header lines.
fn get(test: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.com\r\nX-Test: {test}\r\n{extra}\r\n")
        .into_bytes()
}

// ---------------------------------------------------------------- the sink

/// What the gateway handed to the sink, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Start {
        status: u16,
        reason: Option<String>,
        headers: Vec<(String, String)>,
        body: Sent,
    },
    Chunk(Vec<u8>),
    End(bool),
}

/// The body a head was started with; a file is read back whole.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Stream(Option<u64>),
    File(Vec<u8>),
    Bytes(Vec<u8>),
    Empty,
}

/// A sink that records everything, and can play a client that leaves.
#[derive(Default)]
struct Recorder {
    events: Vec<Event>,
    /// Fail the chunk with this index (0-based): the client is gone.
    fail_chunk: Option<usize>,
    chunks: usize,
    /// In every call: can another thread take the GIL meanwhile?
    check_gil: bool,
    gil_free: Vec<bool>,
}

impl Recorder {
    fn gil_check(&mut self) {
        if self.check_gil {
            let (done, wait) = mpsc::channel();
            std::thread::spawn(move || Python::attach(|_| done.send(()).unwrap()));
            self.gil_free
                .push(wait.recv_timeout(Duration::from_secs(5)).is_ok());
        }
    }
}

impl ResponseSink for Recorder {
    fn start(&mut self, response: http::Response) -> std::io::Result<()> {
        self.gil_check();
        let body = match response.body {
            Body::Stream { len } => Sent::Stream(len),
            Body::File { file, len } => {
                // `len` bytes from the start, as a sink must send it.
                let mut bytes = Vec::new();
                file.take(len).read_to_end(&mut bytes).unwrap();
                assert_eq!(bytes.len() as u64, len, "Body::File len");
                Sent::File(bytes)
            }
            Body::Bytes(bytes) => Sent::Bytes(bytes),
            Body::Empty => Sent::Empty,
        };
        self.events.push(Event::Start {
            status: response.status,
            reason: response.reason,
            headers: response.headers,
            body,
        });
        Ok(())
    }

    fn chunk(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.gil_check();
        assert!(!data.is_empty(), "an empty chunk was sent");
        let index = self.chunks;
        self.chunks += 1;
        if self.fail_chunk == Some(index) {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.events.push(Event::Chunk(data.to_vec()));
        Ok(())
    }

    fn end(&mut self, complete: bool) -> std::io::Result<()> {
        self.events.push(Event::End(complete));
        Ok(())
    }
}

/// Call `app` for `raw` (head and body) with a fresh recorder.
fn serve(app: &str, raw: &[u8]) -> (Served, Vec<Event>) {
    let (served, recorder) = serve_into(app, raw, Settings::default(), Recorder::default());
    (served, recorder.events)
}

fn serve_into(app: &str, raw: &[u8], settings: Settings, mut sink: Recorder) -> (Served, Recorder) {
    let gateway = gateway(app, settings);
    let (request, body) = parse(raw);
    let call = Call {
        request: &request,
        body: &body,
        peer: PEER.parse().unwrap(),
        local: LOCAL.parse().unwrap(),
    };
    let served = gateway.call(&call, &mut sink);
    (served, sink)
}

fn start(status: u16, reason: &str, body: Sent) -> Event {
    Event::Start {
        status,
        reason: Some(reason.into()),
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body,
    }
}

fn chunk(bytes: &[u8]) -> Event {
    Event::Chunk(bytes.to_vec())
}

/// The body bytes the sink was given, whole (`Sent::Bytes`) or in chunks.
fn body_of(events: &[Event]) -> Vec<u8> {
    let mut body = Vec::new();
    for event in events {
        match event {
            Event::Start {
                body: Sent::Bytes(bytes),
                ..
            }
            | Event::Chunk(bytes) => body.extend_from_slice(bytes),
            _ => {}
        }
    }
    body
}

/// The gateway answered for the app: its 500 page, and a problem logged.
#[track_caller]
fn assert_500(served: &Served, events: &[Event], problem: &str) {
    assert_eq!(served.status, 500, "{served:?}");
    assert!(
        matches!(
            events,
            [
                Event::Start {
                    status: 500,
                    body: Sent::Bytes(_),
                    ..
                },
                Event::End(true)
            ]
        ),
        "{events:?}"
    );
    let logged = served.problem.as_deref().unwrap_or("");
    assert!(logged.contains(problem), "{problem:?} not in {logged:?}");
}

/// What the apps recorded for test `test`.
fn seen(test: &str) -> Vec<String> {
    Python::attach(|py| {
        let seen = apps().bind(py).getattr("SEEN").unwrap();
        match seen.get_item(test) {
            Ok(list) => list.extract::<Vec<String>>().unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    })
}

// --------------------------------------------------------------- environ

/// The environ `environ_app` recorded for test `test` (str values).
fn recorded_environ(test: &str) -> BTreeMap<String, String> {
    Python::attach(|py| {
        let seen = apps().bind(py).getattr("SEEN").unwrap();
        let list = seen.get_item(test).unwrap();
        list.get_item(0).unwrap().extract().unwrap()
    })
}

fn environ_of(test: &str, raw: &[u8], settings: Settings) -> BTreeMap<String, String> {
    let (served, _) = serve_into("environ_app", raw, settings, Recorder::default());
    assert_eq!(served.status, 200, "{served:?}");
    recorded_environ(test)
}

/// wsgiref's environ for the same bytes (its server's `get_environ`).
fn wsgiref_environ(raw: &[u8]) -> BTreeMap<String, String> {
    Python::attach(|py| {
        let environ = apps()
            .bind(py)
            .call_method1("wsgiref_environ", (PyBytes::new(py, raw), 5555, 8006))
            .unwrap();
        let environ = environ.cast::<PyDict>().unwrap();
        environ
            .iter()
            .filter_map(|(k, v)| Some((k.extract().ok()?, v.extract().ok()?)))
            .collect()
    })
}

#[test]
fn the_environ_is_wsgirefs_but_for_deliberate_differences() {
    let requests: [&[u8]; 5] = [
        b"GET /hello/w%C3%B6rld?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8006\r\nX-Test: ref-a\r\n\
          User-Agent: t/1\r\nAccept: a\r\nAccept: b\r\n\r\n",
        b"POST /form HTTP/1.1\r\nHost: h\r\nX-Test: ref-b\r\nContent-Type: application/x-www-form-urlencoded\r\n\
          Content-Length: 7\r\nAuthorization: Basic Zm9v\r\n\r\na=1&b=2",
        b"GET /caf%E9 HTTP/1.0\r\nX-Test: ref-c\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-Test: ref-d\r\nX-Auth-User: alice\r\nX_Auth_User: mallory\r\n\
          Proxy: http://evil.example/\r\n\r\n",
        b"DELETE /x? HTTP/1.1\r\nHost: h\r\nX-Test: ref-e\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
    ];
    for raw in requests {
        let (request, _) = parse(raw);
        let test = request.header("x-test").unwrap().to_string();
        let mut ours = environ_of(&test, raw, Settings::default());
        let mut theirs = wsgiref_environ(raw);
        let context = String::from_utf8_lossy(raw).into_owned();

        // The deliberate differences, each for a reason:
        // SERVER_NAME: RFC 3875 §4.1.14 (the request's host), as in rung 3;
        // wsgiref gives its own configured name.
        let host = request
            .host()
            .map(|h| h.split(':').next().unwrap().to_string());
        assert_eq!(
            Some(&ours["SERVER_NAME"]),
            host.as_ref().or(Some(&"127.0.0.1".to_string())),
            "{context}"
        );
        // SERVER_SOFTWARE: each server's own name.
        // REMOTE_HOST: §4.1.9 says the address when there is no name;
        // wsgiref leaves it empty.
        assert_eq!(ours["REMOTE_HOST"], "127.0.0.1");
        // CONTENT_TYPE and CONTENT_LENGTH: absent without a body (PEP 3333:
        // "may be empty or absent"); wsgiref says "" and 'text/plain'.
        if request.values("content-length").next().is_none() {
            assert!(!ours.contains_key("CONTENT_LENGTH"), "{context}");
            assert!(!ours.contains_key("CONTENT_TYPE"), "{context}");
            assert_eq!(theirs.remove("CONTENT_LENGTH").as_deref(), Some(""));
            assert_eq!(theirs.remove("CONTENT_TYPE").as_deref(), Some("text/plain"));
        }
        // AUTH_TYPE: RFC 3875's, which wsgiref does not set.
        if request.header("authorization").is_some() {
            assert_eq!(ours.remove("AUTH_TYPE").as_deref(), Some("Basic"));
        }
        // Header names with `_` are dropped (X_Auth_User must not pose as
        // X-Auth-User), and so is `Proxy` (httpoxy); wsgiref keeps both.
        if request.header("x_auth_user").is_some() {
            assert_eq!(ours["HTTP_X_AUTH_USER"], "alice");
            assert_eq!(
                theirs.remove("HTTP_X_AUTH_USER").as_deref(),
                Some("alice,mallory")
            );
            ours.remove("HTTP_X_AUTH_USER");
        }
        if request.header("proxy").is_some() {
            assert!(!ours.contains_key("HTTP_PROXY"));
            assert!(theirs.remove("HTTP_PROXY").is_some());
        }
        for key in ["SERVER_NAME", "SERVER_SOFTWARE", "REMOTE_HOST"] {
            ours.remove(key);
            theirs.remove(key);
        }
        // Everything else is the same, key for key.
        let ours: BTreeMap<_, _> = ours
            .into_iter()
            .filter(|(k, _)| !k.contains('.') && !k.contains('('))
            .collect();
        assert_eq!(ours, theirs, "{context}");
    }
}

#[test]
fn the_environ_has_the_wsgi_keys_and_native_strings() {
    let raw = get("keys", "/caf%E9/%C3%A9?q=%E9", "");
    let environ = environ_of("keys", &raw, Settings::default());
    assert_eq!(environ["type(environ)"], "dict");
    assert_eq!(environ["wsgi.version"], "(1, 0)");
    assert_eq!(environ["wsgi.url_scheme"], "http");
    assert_eq!(environ["wsgi.multithread"], "False");
    assert_eq!(environ["wsgi.multiprocess"], "False");
    assert_eq!(environ["wsgi.run_once"], "False");
    assert_eq!(environ["wsgi.input_terminated"], "True");
    // One character per byte: %E9 is 'é' (U+00E9), and the UTF-8 pair
    // %C3%A9 is two characters, not one 'é'.
    assert_eq!(environ["PATH_INFO"], "/caf\u{e9}/\u{c3}\u{a9}");
    assert_eq!(environ["QUERY_STRING"], "q=%E9", "the query stays raw");
    assert_eq!(environ["SCRIPT_NAME"], "");
    assert_eq!(environ["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(environ["REQUEST_METHOD"], "GET");
    assert!(!environ.contains_key("PATH_TRANSLATED"));
    // No query at all: QUERY_STRING is '' (not absent).
    let raw = get("keys-noquery", "/plain", "");
    let environ = environ_of("keys-noquery", &raw, Settings::default());
    assert_eq!(environ["QUERY_STRING"], "");
}

#[test]
fn settings_reach_the_environ() {
    let settings = Settings {
        script_name: "/app/".into(),
        multithread: true,
        multiprocess: true,
        ..Settings::default()
    };
    // (path, PATH_INFO) with the app mounted at /app
    let cases = [
        ("/app/x/y", "/x/y"),
        ("/app", ""),
        ("/app/", "/"),
        ("/apple", "/apple"),
        ("/other", "/other"),
    ];
    for (i, (path, path_info)) in cases.iter().enumerate() {
        let test = format!("mount-{i}");
        let environ = environ_of(&test, &get(&test, path, ""), settings.clone());
        assert_eq!(environ["SCRIPT_NAME"], "/app", "{path}");
        assert_eq!(environ["PATH_INFO"], *path_info, "{path}");
        assert_eq!(environ["wsgi.multithread"], "True");
        assert_eq!(environ["wsgi.multiprocess"], "True");
    }
}

#[test]
fn an_underscore_header_cannot_spoof_another() {
    let only_spoof = environ_of(
        "spoof-1",
        &get("spoof-1", "/", "X_Auth_User: mallory\r\n"),
        Settings::default(),
    );
    assert!(
        !only_spoof.contains_key("HTTP_X_AUTH_USER"),
        "{only_spoof:?}"
    );
    let real = environ_of(
        "spoof-2",
        &get("spoof-2", "/", "X-Auth-User: alice\r\n"),
        Settings::default(),
    );
    assert_eq!(real["HTTP_X_AUTH_USER"], "alice");
    let both = environ_of(
        "spoof-3",
        &get(
            "spoof-3",
            "/",
            "X_Auth_User: mallory\r\nX-Auth-User: alice\r\nContent_Length: 5\r\n",
        ),
        Settings::default(),
    );
    assert_eq!(both["HTTP_X_AUTH_USER"], "alice");
    assert!(!both.contains_key("CONTENT_LENGTH") && !both.contains_key("HTTP_CONTENT_LENGTH"));
}

#[test]
fn content_length_and_type_come_without_the_http_prefix() {
    let raw = b"POST /p HTTP/1.1\r\nHost: h\r\nX-Test: ctype\r\nContent-Type: text/csv\r\nContent-Length: 3\r\n\r\nabc";
    let environ = environ_of("ctype", raw, Settings::default());
    assert_eq!(environ["CONTENT_TYPE"], "text/csv");
    assert_eq!(environ["CONTENT_LENGTH"], "3");
    assert!(!environ.contains_key("HTTP_CONTENT_TYPE"));
    assert!(!environ.contains_key("HTTP_CONTENT_LENGTH"));
    // A chunked request's body arrives de-chunked: its length is known.
    let raw =
        b"POST /p HTTP/1.1\r\nHost: h\r\nX-Test: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (request, _) = parse(raw);
    let gateway = gateway("environ_app", Settings::default());
    let call = Call {
        request: &request,
        body: b"hello world",
        peer: PEER.parse().unwrap(),
        local: LOCAL.parse().unwrap(),
    };
    gateway.call(&call, &mut Recorder::default());
    assert_eq!(recorded_environ("chunked")["CONTENT_LENGTH"], "11");
}

#[test]
fn wsgi_input_reads_every_way() {
    let raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 36\r\n\r\nline1\nline2\nline3\nline4\nline5\nend!";
    let (served, events) = serve("input_app", raw);
    assert_eq!(served.status, 200);
    let expected =
        b"[b'lin', b'e1\\n', b'li', b'ne2\\n', b'line3\\n', b'line4\\n|line5\\n|end!', b'', b'']";
    assert_eq!(body_of(&events), expected, "{events:?}");
}

#[test]
fn wsgi_errors_goes_to_the_log_without_failing() {
    let (served, events) = serve("errors_app", &get("errors", "/", ""));
    assert_eq!(served.problem, None);
    assert_eq!(body_of(&events), b"logged", "{events:?}");
}

#[test]
fn an_app_wrapped_in_wsgirefs_validator_finds_nothing_wrong() {
    // Each warning of the validator is an error here: anything the server
    // gets wrong would end as a 500.
    let requests: [&[u8]; 3] = [
        b"GET /v?x=1 HTTP/1.1\r\nHost: h\r\nX-Test: validated\r\n\r\n",
        b"POST /v HTTP/1.1\r\nHost: h\r\nX-Test: validated\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
        b"HEAD /v HTTP/1.0\r\nX-Test: validated\r\n\r\n",
    ];
    for raw in requests {
        let (served, events) = serve("validated_app", raw);
        assert_eq!(served.problem, None, "{}", String::from_utf8_lossy(raw));
        assert_eq!(served.status, 200);
        assert_eq!(events.last(), Some(&Event::End(true)));
    }
    // The validator's iterator checks it was closed; ask it.
    let closed = Python::attach(|py| {
        apps()
            .bind(py)
            .call_method1("validator_closed", ("validated",))
            .unwrap()
            .extract::<Vec<Option<bool>>>()
            .unwrap()
    });
    assert_eq!(closed, vec![Some(true); 3]);
}

// -------------------------------------------------------- start_response

#[test]
fn the_head_waits_for_the_first_body_byte() {
    let (served, events) = serve("late_start", &get("late", "/", ""));
    assert_eq!(
        events,
        [
            start(200, "OK", Sent::Stream(None)),
            chunk(b"hello "),
            chunk(b"world"),
            Event::End(true)
        ]
    );
    assert_eq!(
        (served.status, served.bytes, served.ending),
        (200, 11, Ending::Complete)
    );
}

#[test]
fn exc_info_before_the_head_replaces_the_status() {
    let (served, events) = serve("exc_info_before_head", &get("exc1", "/", ""));
    assert_eq!(
        events,
        [
            // A list of one bytes as long as the Content-Length: the whole
            // body goes with the head, in one piece.
            start(500, "Oops", Sent::Bytes(b"sorry".to_vec())),
            Event::End(true)
        ]
    );
    assert_eq!(served.problem, None, "the app handled its own error");
}

#[test]
fn exc_info_after_the_head_reraises_and_aborts() {
    let (served, events) = serve("exc_info_after_head", &get("exc2", "/", ""));
    assert_eq!(
        events,
        [
            start(200, "OK", Sent::Stream(None)),
            chunk(b"first"),
            Event::End(false)
        ]
    );
    assert_eq!(served.ending, Ending::Aborted);
    let problem = served.problem.unwrap();
    // The exception re-raised is the app's own, from exc_info.
    assert!(problem.contains("KeyError: 'late'"), "{problem}");
    assert!(problem.contains("after the head was sent"), "{problem}");
}

#[test]
fn start_response_twice_without_exc_info_is_an_error() {
    let (served, events) = serve("start_twice", &get("twice", "/", ""));
    assert_500(&served, &events, "second time without exc_info");
}

#[test]
fn write_sends_before_the_iterable() {
    let (_, events) = serve("write_app", &get("write", "/", ""));
    // write()'s bytes, then the list's; the total is known up front.
    assert_eq!(
        events,
        [
            start(200, "OK", Sent::Stream(Some(13))),
            chunk(b"one two "),
            chunk(b"three"),
            Event::End(true)
        ]
    );
    let (_, events) = serve("write_generator", &get("write-gen", "/", ""));
    assert_eq!(
        events,
        [
            start(200, "OK", Sent::Stream(None)),
            chunk(b"written "),
            chunk(b"yielded"),
            Event::End(true)
        ]
    );
    // Nothing was sent yet when the app failed: a 500 is still possible.
    let (served, events) = serve("write_then_raise", &get("write-raise", "/", ""));
    assert_500(&served, &events, "RuntimeError: after write");
    let (served, events) = serve("write_str", &get("write-str", "/", ""));
    assert_500(&served, &events, "write() takes bytes, not a str");
}

#[test]
fn a_bad_status_or_header_is_a_500_naming_it() {
    // (status and headers as Python literals, what the log line names)
    let cases = [
        ("('200', [])", "bad status '200'"),
        ("('OK', [])", "bad status 'OK'"),
        ("('2000 Big', [])", "bad status"),
        ("('99 Low', [])", "bad status"),
        ("('200  OK', [])", "bad status"),
        ("('200 OK\\r\\nX-Evil: 1', [])", "bad status"),
        ("(200, [])", "the status must be a str"),
        (
            "(b'200 OK', [])",
            "the status must be a str like '200 OK', not a bytes",
        ),
        (
            "('200 OK', [('Connection', 'close')])",
            "Connection is a hop-by-hop header",
        ),
        (
            "('200 OK', [('Transfer-Encoding', 'chunked')])",
            "hop-by-hop",
        ),
        ("('200 OK', [('Keep-Alive', 'timeout=5')])", "hop-by-hop"),
        (
            "('200 OK', [('X-A', 'a\\r\\nSet-Cookie: x=1')])",
            "control or non-ASCII character",
        ),
        ("('200 OK', [('Bad Name', 'x')])", "bad header name"),
        (
            "('200 OK', [('X-A',)])",
            "a header must be a (str, str) tuple",
        ),
        (
            "('200 OK', [('Content-Length', 'ten')])",
            "bad Content-Length",
        ),
        ("('200 OK', ('X-A', 'b'))", "must be a list"),
    ];
    for (i, (start_args, problem)) in cases.iter().enumerate() {
        let test = format!("bad-{i}");
        let raw = get(&test, "/", &format!("X-Start: {start_args}\r\n"));
        let (served, events) = serve("status_app", &raw);
        assert_500(&served, &events, problem);
    }
    let (served, events) = serve("headers_tuple", &get("tuple", "/", ""));
    assert_500(
        &served,
        &events,
        "must be a list of (name, value) tuples, not a tuple",
    );
}

#[test]
fn the_server_keeps_its_own_date() {
    let (_, events) = serve("date_header", &get("date", "/", ""));
    let Event::Start { headers, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        headers,
        &[
            ("Content-Type".to_string(), "text/plain".to_string()),
            ("X-A".to_string(), "1".to_string())
        ]
    );
}

#[test]
fn a_body_without_start_response_is_a_500() {
    for app in ["no_start", "no_start_empty"] {
        let (served, events) = serve(app, &get(app, "/", ""));
        assert_500(&served, &events, "without calling start_response()");
    }
}

// ------------------------------------------------------------- the body

#[test]
fn the_app_must_return_an_iterable_of_bytes() {
    let cases = [
        (
            "returns_str",
            "the app returned a str, not an iterable of bytes",
        ),
        (
            "returns_bytes",
            "the app returned a bytes, not an iterable of bytes",
        ),
        ("yields_str", "the app yielded a str, not bytes"),
        (
            "returns_int",
            "the app returned an int, which is not iterable",
        ),
        (
            "returns_none",
            "the app returned a NoneType, which is not iterable",
        ),
        ("raises", "the app raised ValueError: boom"),
    ];
    for (app, problem) in cases {
        let (served, events) = serve(app, &get(app, "/", ""));
        assert_500(&served, &events, problem);
        assert_eq!(served.problem.as_deref(), Some(problem), "{app}");
    }
    // A str after the first chunk: too late for a 500.
    let (served, events) = serve("yields_str_later", &get("str-later", "/", ""));
    assert_eq!(
        events,
        [
            start(200, "OK", Sent::Stream(None)),
            chunk(b"ok"),
            Event::End(false)
        ]
    );
    assert_eq!(
        served.problem.as_deref(),
        Some("the app yielded a str, not bytes, after the head was sent; connection aborted")
    );
}

#[test]
fn a_known_length_is_announced_and_a_generator_is_streamed() {
    let (_, events) = serve("list_body", &get("list", "/", ""));
    assert_eq!(
        events,
        [
            start(200, "OK", Sent::Stream(Some(10))),
            chunk(b"hello "),
            chunk(b"list"),
            Event::End(true)
        ]
    );
    let (_, events) = serve("empty_body", &get("empty", "/", ""));
    assert_eq!(
        events,
        [start(200, "OK", Sent::Stream(Some(0))), Event::End(true)]
    );
}

#[test]
fn more_than_content_length_is_cut_off_and_the_iterable_closed() {
    let (served, events) = serve("too_long", &get("too-long", "/", ""));
    assert_eq!(
        events,
        [
            start(200, "OK", Sent::Stream(Some(5))),
            chunk(b"hel"),
            chunk(b"lo"),
            Event::End(true)
        ]
    );
    assert_eq!(served.bytes, 5);
    assert_eq!(served.ending, Ending::Complete);
    assert!(
        served
            .problem
            .unwrap()
            .contains("more than its Content-Length 5")
    );
    // It stopped at the first byte too many, and close() was called.
    assert_eq!(
        seen("too-long"),
        ["produced 0", "produced 1", "produced 2", "closed"]
    );
}

#[test]
fn fewer_than_content_length_aborts_and_closes() {
    let (served, events) = serve("too_short", &get("too-short", "/", ""));
    assert_eq!(
        events,
        [
            start(200, "OK", Sent::Stream(Some(10))),
            chunk(b"hello"),
            Event::End(false)
        ]
    );
    assert_eq!(served.ending, Ending::Aborted);
    assert!(
        served
            .problem
            .unwrap()
            .contains("sent 5 bytes of its Content-Length 10")
    );
    assert_eq!(seen("too-short"), ["produced 0", "closed"]);
    // HEAD: announcing a length without sending a body is right.
    let raw = b"HEAD / HTTP/1.1\r\nHost: h\r\nX-Test: head-length\r\n\r\n";
    let (served, events) = serve("head_with_length", raw);
    assert_eq!(events.last(), Some(&Event::End(true)));
    assert_eq!(served.problem, None);
}

#[test]
fn close_is_called_on_every_path() {
    // The normal end.
    let (served, _) = serve("tracked", &get("close-normal", "/", ""));
    assert_eq!(served.ending, Ending::Complete);
    assert_eq!(
        seen("close-normal").last().map(String::as_str),
        Some("closed")
    );
    // The app fails mid-stream, after the head.
    let (served, events) = serve("tracked_failing", &get("close-failing", "/", ""));
    assert_eq!(
        events,
        [
            start(200, "OK", Sent::Stream(None)),
            chunk(b"a"),
            Event::End(false)
        ]
    );
    assert_eq!(served.ending, Ending::Aborted);
    assert!(served.problem.unwrap().contains("RuntimeError: mid-stream"));
    assert_eq!(seen("close-failing"), ["produced 0", "closed"]);
    // The app fails before its first chunk: a 500, and still close().
    let (served, events) = serve("tracked_failing_first", &get("close-first", "/", ""));
    assert_500(
        &served,
        &events,
        "the app's iterable raised RuntimeError: mid-stream",
    );
    assert_eq!(seen("close-first"), ["closed"]);
    // The client goes away: the sink fails the second chunk.
    let sink = Recorder {
        fail_chunk: Some(1),
        ..Default::default()
    };
    let (served, sink) = serve_into(
        "tracked",
        &get("close-gone", "/", ""),
        Settings::default(),
        sink,
    );
    assert_eq!(served.ending, Ending::ClientGone);
    // Nothing more was asked of a sink that failed, not even `end`.
    assert_eq!(
        sink.events,
        [start(200, "OK", Sent::Stream(None)), chunk(b"a")]
    );
    assert_eq!(seen("close-gone"), ["produced 0", "produced 1", "closed"]);
    // close() itself raising is logged, and the response stands.
    let (served, events) = serve("bad_close", &get("close-raises", "/", ""));
    assert_eq!(events.last(), Some(&Event::End(true)));
    assert!(
        served
            .problem
            .unwrap()
            .contains("close() raised OSError: close failed")
    );
}

#[test]
fn head_and_204_go_through_the_plan() {
    // The gateway still hands the chunks over; `Response::plan` (in the
    // sink) is what drops them: see the Connection tests below.
    let (served, events) = serve("no_content", &get("204", "/", ""));
    assert_eq!(served.status, 204);
    assert_eq!(events.last(), Some(&Event::End(true)));
}

#[test]
fn a_file_wrapper_around_a_real_file_is_sent_whole() {
    let path = std::env::temp_dir().join(format!("ladder-wsgi-{}.bin", std::process::id()));
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let file = format!("X-File: {}\r\n", path.display());
    let (served, events) = serve("file_app", &get("file", "/", &file));
    let Event::Start { body, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(body, &Sent::File(content.clone()), "sent as a file");
    assert_eq!(events[1..], [Event::End(true)]);
    assert_eq!(served.bytes, 100_000);
    assert_eq!(
        seen("file"),
        ["file closed"],
        "the wrapper's close() closes the file"
    );
    // A Content-Length shorter than the file: that much of it.
    let (_, events) = serve(
        "file_app",
        &get("file-short", "/", &format!("{file}X-Length: 10\r\n")),
    );
    let Event::Start { body, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(body, &Sent::File(content[..10].to_vec()));
    // A file already read from is iterated from where it stands.
    let (served, events) = serve(
        "file_app",
        &get("file-skip", "/", &format!("{file}X-Skip: 99000\r\n")),
    );
    let sent: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Event::Chunk(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(sent, content[99_000..]);
    assert_eq!(served.ending, Ending::Complete);
    // Something with no file descriptor is iterated, in blocks.
    let (served, events) = serve("file_like_app", &get("file-like", "/", ""));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Chunk(_)))
            .count(),
        3
    );
    assert_eq!(served.bytes, 10_000);
    let _ = std::fs::remove_file(path);
}

#[test]
fn the_sink_works_without_the_gil() {
    let sink = Recorder {
        check_gil: true,
        ..Default::default()
    };
    let (served, sink) = serve_into(
        "generator_body",
        &get("gil", "/", ""),
        Settings::default(),
        sink,
    );
    assert_eq!(served.ending, Ending::Complete);
    // start, two chunks, (end is not checked by the recorder)
    assert_eq!(sink.gil_free, [true, true, true]);
}

#[test]
fn the_gateway_serves_from_many_threads_at_once() {
    let gateway = Arc::new(gateway(
        "sleepy",
        Settings {
            multithread: true,
            ..Settings::default()
        },
    ));
    let (done, results) = mpsc::channel();
    let mut pool = ladder::pool::ThreadPool::new(4).unwrap();
    for i in 0..8 {
        let (gateway, done) = (Arc::clone(&gateway), done.clone());
        pool.execute(move || {
            let test = format!("threads-{i}");
            let (request, body) = parse(&get(&test, "/", ""));
            let call = Call {
                request: &request,
                body: &body,
                peer: PEER.parse().unwrap(),
                local: LOCAL.parse().unwrap(),
            };
            let mut sink = Recorder::default();
            let served = gateway.call(&call, &mut sink);
            done.send((served, sink.events)).unwrap();
        })
        .unwrap();
    }
    let mut threads = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let (served, events) = results.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(served.status, 200);
        threads.insert(body_of(&events));
    }
    assert!(threads.len() > 1, "the app ran on {threads:?}");
    drop(pool);
}

// ------------------------------------------------ the blocking Connection

/// Serve one request read from a real socket with `ConnectionSink`, and
/// return the raw bytes the client received, and whether the connection
/// could have carried another request.
fn over_connection(app: &str, raw: &[u8]) -> (Vec<u8>, bool) {
    let gateway = gateway(app, Settings::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let raw = raw.to_vec();
    let client = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(&raw).unwrap();
        let mut got = Vec::new();
        let _ = ladder_harness::ResetAsEof::new(&mut stream).read_to_end(&mut got);
        got
    });
    let (stream, peer) = listener.accept().unwrap();
    let local: SocketAddr = stream.local_addr().unwrap();
    let mut conn = Connection::new(stream, peer, Limits::default());
    let deadline = Some(std::time::Instant::now() + Duration::from_secs(10));
    let Got::Done(request) = conn.read_request(deadline).unwrap() else {
        panic!("no request")
    };
    let Got::Done(body) = conn.read_body(&request, deadline).unwrap() else {
        panic!("no body")
    };
    let call = Call {
        request: &request,
        body: &body,
        peer,
        local,
    };
    let mut sink = ConnectionSink::new(&mut conn, &request, true);
    gateway.call(&call, &mut sink);
    let keep_alive = sink.keep_alive();
    drop(conn); // the client reads until the close
    (client.join().unwrap(), keep_alive)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn over_a_connection_a_generator_is_chunked_and_a_list_has_a_length() {
    let (got, keep_alive) = over_connection("generator_body", &get("c-gen", "/", ""));
    let got = text(&got);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("Transfer-Encoding: chunked\r\n"), "{got}");
    assert!(
        got.ends_with("\r\n\r\n6\r\nhello \r\n9\r\ngenerator\r\n0\r\n\r\n"),
        "{got}"
    );
    assert!(keep_alive);
    let (got, keep_alive) = over_connection("list_body", &get("c-list", "/", ""));
    let got = text(&got);
    assert!(got.contains("Content-Length: 10\r\n"), "{got}");
    assert!(got.ends_with("\r\n\r\nhello list"), "{got}");
    assert!(keep_alive);
    // HTTP/1.0: no chunks; the close ends the body.
    let (got, keep_alive) = over_connection("generator_body", b"GET / HTTP/1.0\r\n\r\n");
    let got = text(&got);
    assert!(
        !got.contains("chunked") && got.ends_with("\r\n\r\nhello generator"),
        "{got}"
    );
    assert!(!keep_alive);
}

#[test]
fn over_a_connection_head_and_204_carry_no_body() {
    let (got, _) = over_connection("list_body", b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
    let got = text(&got);
    assert!(
        got.contains("Content-Length: 10\r\n") && got.ends_with("\r\n\r\n"),
        "{got}"
    );
    let (got, _) = over_connection("generator_body", b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
    let got = text(&got);
    assert!(got.ends_with("\r\n\r\n") && !got.contains("hello"), "{got}");
    let (got, keep_alive) = over_connection("no_content", &get("c-204", "/", ""));
    let got = text(&got);
    assert!(
        got.starts_with("HTTP/1.1 204 No Content\r\n") && got.ends_with("\r\n\r\n"),
        "{got}"
    );
    assert!(
        !got.contains("Content-Length") && !got.contains("chunked"),
        "{got}"
    );
    assert!(keep_alive);
}

#[test]
fn over_a_connection_failures_are_a_500_or_a_cut() {
    let (got, keep_alive) = over_connection("raises", &get("c-500", "/", ""));
    let got = text(&got);
    assert!(
        got.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{got}"
    );
    assert!(
        got.contains("Connection: close\r\n") && !got.contains("boom"),
        "{got}"
    );
    assert!(!keep_alive);
    // Too short: the head promised 10 bytes, 5 came, then the close.
    let (got, keep_alive) = over_connection("too_short", &get("c-short", "/", ""));
    let got = text(&got);
    assert!(
        got.contains("Content-Length: 10\r\n") && got.ends_with("\r\n\r\nhello"),
        "{got}"
    );
    assert!(!keep_alive);
    // Mid-stream failure while chunked: no last chunk.
    let (got, keep_alive) = over_connection("tracked_failing", &get("c-mid", "/", ""));
    let got = text(&got);
    assert!(got.ends_with("\r\n\r\n1\r\na\r\n"), "{got}");
    assert!(!keep_alive);
}

#[test]
fn over_a_connection_a_file_goes_by_sendfile() {
    let path = std::env::temp_dir().join(format!("ladder-wsgi-conn-{}.bin", std::process::id()));
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let raw = get("c-file", "/", &format!("X-File: {}\r\n", path.display()));
    let (got, keep_alive) = over_connection("file_app", &raw);
    let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(text(&got[..split]).contains("Content-Length: 300000\r\n"));
    assert!(got[split..] == content[..], "the file's bytes");
    assert!(keep_alive);
    let _ = std::fs::remove_file(path);
}
