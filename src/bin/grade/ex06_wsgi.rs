//! Exercise 06: the WSGI gateway (`lesson06_wsgi`).
//!
//! The exercise is the library module `ladder::wsgi`, copied into the
//! student's binary with three holes: the environ builder, `start_response`
//! with `exc_info`, and the body loop with `close()`. Every stage serves
//! one app, `exercises/fixtures/ex06/probe.py`, with one route per check.
//!
//! The stages come in the order of the holes, and a stage needs only the
//! holes before it: the environ and `start_response` routes write what
//! they saw to the server's log and then raise on purpose, so the gateway
//! answers them with its 500 page (code outside the holes) and never
//! reaches the body loop. The stages read that log (the server's stderr);
//! the body-loop stages read the wire.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::checks::{self, RawResponse};
use crate::runner::{Ctx, Exercise, Expect, Failure, Stage};
use ladder_harness::IO_TIMEOUT;

/// The rung's default port, for the commands a student types.
const PORT: u16 = 8006;

/// The app every stage serves, in the fixtures directory.
const APP: &str = "probe:app";

// The skeleton's holes (their anchors in `exercises/src/bin/ex06_wsgi/wsgi.rs`),
// in the order a student fills them: `environ`, `start_response`,
// `body_loop`. The stages come in the same order: the first four need
// `environ`, the next four `start_response` too, the rest all three.

/// The flags every stage starts the server with: the fixtures and the app.
pub fn args() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/exercises/fixtures/ex06");
    vec!["--chdir".into(), dir.into(), APP.into()]
}

pub const EXERCISE: Exercise = Exercise {
    name: "ex06_wsgi",
    lesson: "lesson06_wsgi",
    port: PORT,
    args,
    holes: &["environ", "start_response", "body_loop"],
    listed: true,
    stages: &[
        // ---- hole 1: environ
        Stage {
            name: "environ_basics",
            title: "GET /environ/a/b?x=1&y=%20: the CGI keys, as str, and the wsgi.* keys",
            hint: "hole `environ`: the CGI keys come from cgi::meta_variables(.., \
                   Interface::Wsgi), each value a str made by `latin1`; then wsgi.version, \
                   wsgi.url_scheme, wsgi.input (BytesIO over the body), wsgi.errors, \
                   wsgi.multithread, wsgi.multiprocess, wsgi.run_once, wsgi.file_wrapper. \
                   The app writes what it got to the server's log (lines `probe: environ:`)",
            hole: 1,
            run: environ_basics,
        },
        Stage {
            name: "environ_latin1_path",
            title: "PATH_INFO is percent-decoded, one character per byte: /caf%E9 is '/caf\\xe9'",
            hint: "PEP 3333's native strings are latin-1: each byte of \
                   `request.target.decoded_path()` becomes one character (`latin1`), never \
                   UTF-8 (which makes %E9 U+FFFD and %C3%A9 one 'é')",
            hole: 1,
            run: environ_latin1_path,
        },
        Stage {
            name: "environ_headers",
            title: "HTTP_* keys: repeated headers joined with ',', and `X_Auth_User` cannot \
                    pose as `X-Auth-User`",
            hint: "let cgi::meta_variables make the HTTP_ keys (Interface::Wsgi joins \
                   repeated headers with ','); a header whose name holds '_' is dropped, \
                   because HTTP_X_AUTH_USER cannot tell X_Auth_User from X-Auth-User",
            hole: 1,
            run: environ_headers,
        },
        Stage {
            name: "environ_body_keys",
            title: "no CONTENT_LENGTH/CONTENT_TYPE for a bodiless GET; a POST's are set and \
                    wsgi.input reads its body",
            hint: "give meta_variables the body's length only when the request has a body \
                   (a Content-Length or Transfer-Encoding header), else None; wsgi.input is \
                   `self.bytes_io` called with the body as PyBytes",
            hole: 1,
            run: environ_body_keys,
        },
        // ---- hole 2: start_response (and the holes before it)
        Stage {
            name: "start_response_checks",
            title: "start_response refuses a bad status and bad headers, and returns write()",
            hint: "hole `start_response`: call `check_start(status, response_headers)?` \
                   BEFORE keeping anything in `head.started` (a refused call is no call), \
                   and return `Write { head: Arc::clone(&self.head) }`. The app writes what \
                   each call returned or raised to the server's log (`probe: start_response:`)",
            hole: 2,
            run: start_response_checks,
        },
        Stage {
            name: "start_response_twice",
            title: "a second start_response without exc_info raises",
            hint: "PEP 3333: \"It is a fatal error to call start_response without the \
                   exc_info argument if start_response has already been called\": with no \
                   exc_info and `head.started` set, return Err(PyAssertionError::new_err(..))",
            hole: 2,
            run: start_response_twice,
        },
        Stage {
            name: "exc_info_before_head",
            title: "start_response with exc_info before anything was sent replaces the status",
            hint: "with exc_info and the head not yet committed, do not raise: check and \
                   keep the new status and headers in place of the old",
            hole: 2,
            run: exc_info_before_head,
        },
        Stage {
            name: "exc_info_after_head",
            title: "start_response with exc_info after the head was sent re-raises exc_info's \
                    own exception",
            hint: "with exc_info and `head.committed`, raise exc_info[1] with its traceback \
                   exc_info[2]: `PyErr::from_value(value.call_method1(\"with_traceback\", \
                   (traceback,))?)`, not an exception of your own",
            hole: 2,
            run: exc_info_after_head,
        },
        // ---- hole 3: body_loop (and the holes before it)
        Stage {
            name: "late_start_response",
            title: "an app that calls start_response inside its generator gets 200 `late`",
            hint: "hole `body_loop`: `out.body_loop(py, &body)` iterates the body and sends \
                   the head with the first chunk, so start_response may come late",
            hole: 3,
            run: late_start_response,
        },
        Stage {
            name: "head_waits_for_body",
            title: "an empty chunk, then exc_info: the app's replacement 503 goes out, not 200",
            hint: "PEP 3333: the head must not go out \"until there is an actual body byte\": \
                   never send it when the app returns or on an empty chunk; `Outgoing::send` \
                   starts the response with the first non-empty one",
            hole: 3,
            run: head_waits_for_body,
        },
        Stage {
            name: "error_after_head_aborts",
            title: "an error after the first chunk: start_response re-raises, and the response \
                    is cut off (no last chunk)",
            hint: "once the head is out, exc_info cannot replace it: start_response re-raises, \
                   the generator fails, and the body loop aborts the connection \
                   (`ResponseSink::end(false)`) so the client cannot take half a body for all",
            hole: 3,
            run: error_after_head_aborts,
        },
        Stage {
            name: "content_length_enforced",
            title: "Content-Length 5 with 11 bytes sent: 5 go out, the connection stays usable; \
                    10 announced, 5 sent: the connection is aborted; both logged",
            hint: "the body loop holds the app to its own Content-Length (`Outgoing::send` \
                   cuts off what is more, the loop's end aborts what is less) and logs it",
            hole: 3,
            run: content_length_enforced,
        },
        Stage {
            name: "close_on_normal_end",
            title: "GET /closing, then /closes: the iterable's close() was called",
            hint: "PEP 3333: \"If the iterable returned by the application has a close() \
                   method, the server or gateway must call that method upon completion of \
                   the current request\": after `out.body_loop`, `body.call_method0(\"close\")` \
                   when `body.hasattr(\"close\")`",
            hole: 3,
            run: close_on_normal_end,
        },
        Stage {
            name: "close_on_app_error",
            title: "an iterable that raises mid-body is still closed",
            hint: "close() is called \"whether the request was completed normally, or \
                   terminated early due to an application error\": call it after \
                   `out.body_loop` whatever happened there, not only when the body completed",
            hole: 3,
            run: close_on_app_error,
        },
        Stage {
            name: "close_on_client_gone",
            title: "an endless body whose client leaves: the iterable is closed within 5 s",
            hint: "close() is called also after \"an early disconnect of the browser\": \
                   when the sink fails, `out.body_loop` returns; call close() then too",
            hole: 3,
            run: close_on_client_gone,
        },
        Stage {
            name: "file_wrapper",
            title: "GET /download (apps/download.py): the file through wsgi.file_wrapper, \
                    with its Content-Length",
            hint: "environ['wsgi.file_wrapper'] is `py.get_type::<FileWrapper>()`; the body \
                   loop sends a FileWrapper around a real file as Body::File (sendfile)",
            hole: 3,
            run: file_wrapper,
        },
        Stage {
            name: "sigterm_exits_0",
            title: "SIGTERM ends it with exit status 0",
            hint: "the binary stops the loop and finalizes Python on SIGTERM; if this fails, \
                   look for a panic or a traceback in the server's stderr",
            hole: 3,
            run: sigterm_exits_0,
        },
    ],
};

// ------------------------------------------------------------- helpers

fn start(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[]).map(|_| ())
}

/// `curl ARGS 'http://127.0.0.1:8006PATH'`: the URL quoted for the shell.
fn curl(args: &str, path: &str) -> String {
    let args = if args.is_empty() {
        String::new()
    } else {
        format!("{args} ")
    };
    format!("curl {args}'http://127.0.0.1:{PORT}{path}'")
}

/// `GET path` with `Connection: close` and `headers` (each ending in CRLF).
fn get(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n")
        .into_bytes()
}

/// Send `request` on a new connection and read the answer until the server
/// closes it (send `Connection: close`), as `checks::ask`; but a server that
/// panics meanwhile fails at once (see [`await_answer`]).
fn ask(ctx: &mut Ctx, request: &[u8]) -> Result<RawResponse, Failure> {
    let mark = ctx.server().stderr().len();
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, request)?;
    await_answer(ctx, &stream, mark)?;
    let bytes = ctx.recv_to_close(&mut stream)?;
    Ok(RawResponse::new(bytes))
}

/// Wait until `stream` has something to read, or is closed. A hole not
/// filled yet panics (`todo!()`) on one of the server's Python threads, and
/// the request is never answered: rather than wait out the read timeout,
/// fail as soon as the server's stderr (since `mark`) shows a panic.
fn await_answer(ctx: &mut Ctx, stream: &TcpStream, mark: usize) -> Result<(), Failure> {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut byte = [0u8; 1];
    while Instant::now() < deadline {
        match stream.peek(&mut byte) {
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            _ => break, // bytes, the close, or an error: the reader says which
        }
        let stderr = ctx.server().stderr();
        if stderr.get(mark..).unwrap_or("").contains("panicked") {
            let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
            return Err(ctx
                .fail("an answer")
                .detail("the server panicked while answering (see its stderr below): a hole this stage needs is not filled yet, or panics"));
        }
    }
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    Ok(())
}

/// Send `request`, read the answer to the close, and return the `probe:`
/// lines the app wrote to the server's log while answering it.
fn probe(ctx: &mut Ctx, request: &[u8]) -> Result<Vec<String>, Failure> {
    let mark = ctx.server().stderr().len();
    ask(ctx, request)?;
    // The app wrote its lines before it raised, so before the answer came:
    // only the reading of the server's stderr may lag a little.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let stderr = ctx.server().stderr();
        let new = stderr.get(mark..).unwrap_or("");
        if new.contains("probe: end") {
            return Ok(new
                .lines()
                .filter_map(|l| l.strip_prefix("probe: "))
                .take_while(|l| *l != "end")
                .map(str::to_string)
                .collect());
        }
        if Instant::now() >= deadline {
            return Err(ctx
                .fail("the app to run and write its findings to the server's log")
                .detail(
                    "no line `probe: end` on the server's stderr: the app was never called, \
                     or failed before it could report (see stderr below)",
                ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The environ the app logged: key -> value as Python's ascii() shows it.
fn environ(ctx: &mut Ctx, request: &[u8]) -> Result<BTreeMap<String, String>, Failure> {
    let lines = probe(ctx, request)?;
    Ok(lines
        .iter()
        .filter_map(|l| l.strip_prefix("environ: "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// `(key, expected ascii() of the value)`: `None` for "absent", `"*"` for
/// "present, any value".
type Want<'a> = (&'a str, Option<&'a str>);

/// Compare the logged environ with what PEP 3333 asks; one line per miss.
fn check_environ(
    ctx: &Ctx,
    environ: &BTreeMap<String, String>,
    wants: &[Want<'_>],
) -> Result<(), Failure> {
    let mut misses = Vec::new();
    for (key, want) in wants {
        let got = environ.get(*key).map(String::as_str);
        let matches = match want {
            Some("*") => got.is_some(), // present, whatever its value
            want => got == *want,
        };
        if !matches {
            let show = |v: Option<&str>| match v {
                None => "absent".to_string(),
                Some("*") => "present".to_string(),
                Some(v) => v.to_string(),
            };
            misses.push(format!(
                "environ[{key:?}]: expected {}, got {}",
                show(*want),
                show(got)
            ));
        }
    }
    if misses.is_empty() {
        return Ok(());
    }
    let listing: Vec<String> = environ.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Err(ctx
        .fail(misses.join("\n"))
        .detail(format!("the app saw:\n{}", listing.join("\n"))))
}

/// The value the app logged for `label` (`start_response: LABEL=VALUE`).
fn logged<'a>(lines: &'a [String], label: &str) -> Option<&'a str> {
    let prefix = format!("start_response: {label}=");
    lines.iter().find_map(|l| l.strip_prefix(prefix.as_str()))
}

/// Require `label` to have been logged with a value `ok` accepts.
fn expect_logged(
    ctx: &Ctx,
    lines: &[String],
    label: &str,
    expected: &str,
    ok: fn(&str) -> bool,
) -> Result<(), Failure> {
    match logged(lines, label) {
        Some(value) if ok(value) => Ok(()),
        value => Err(ctx.fail(format!("{label}: {expected}")).detail(format!(
            "the app logged `{label}={}`; all it logged:\n{}",
            value.unwrap_or("(nothing)"),
            lines.join("\n")
        ))),
    }
}

/// The body of a response read to the close, de-chunked; `None` unless the
/// response is whole (a head, then its Content-Length, its last chunk, or
/// the close that ends it), as the library's own client reads it.
fn whole_body(response: &RawResponse) -> Option<Vec<u8>> {
    ladder::http::read_response(&mut response.bytes.as_slice(), &mut Vec::new(), false)
        .ok()
        .map(|read| read.body)
}

/// GET `path` and require `status` with exactly `body`.
fn expect_answer(ctx: &mut Ctx, path: &str, status: u16, body: &[u8]) -> Result<(), Failure> {
    let response = ask(ctx, &get(path, ""))?;
    let text = String::from_utf8_lossy(body);
    ctx.ensure(
        response.status() == Some(status) && whole_body(&response).as_deref() == Some(body),
        format!("{status} with the whole body {text:?}"),
    )
}

/// `made N, closed M` from /closes, polled until `closed` reaches `want`
/// or `patience` runs out.
fn closes(ctx: &mut Ctx, want: u32, patience: Duration) -> Result<(u32, u32), Failure> {
    let deadline = Instant::now() + patience;
    loop {
        ctx.clear_transcript();
        let response = ask(ctx, &get("/closes", ""))?;
        let text = String::from_utf8_lossy(&whole_body(&response).unwrap_or_default()).into_owned();
        let numbers: Vec<u32> = text
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        let [made, closed] = numbers[..] else {
            return Err(ctx.fail("GET /closes: `made N, closed M`"));
        };
        if closed >= want || Instant::now() >= deadline {
            return Ok((made, closed));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn expect_closed(ctx: &mut Ctx, patience: Duration, after: &str) -> Result<(), Failure> {
    let (made, closed) = closes(ctx, 1, patience)?;
    ctx.ensure(
        made == 1 && closed == 1,
        format!("GET /closes: `made 1, closed 1`: close() called once, {after}"),
    )
    .map_err(|f| {
        f.detail(format!(
            "the app made {made} iterable(s) with close(), and the server closed {closed}"
        ))
    })
}

// ------------------------------------------------------------- hole 1

fn environ_basics(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let path = "/environ/a/b?x=1&y=%20";
    ctx.reproduce(
        format!("{} -H 'Host: example.org:8006'", curl("-i", path)),
        Expect::Runs,
    );
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: example.org:8006\r\nConnection: close\r\n\r\n");
    let seen = environ(ctx, request.as_bytes())?;
    let port = format!("'{}'", ctx.server().addr.port());
    check_environ(
        ctx,
        &seen,
        &[
            ("REQUEST_METHOD", Some("'GET'")),
            ("SCRIPT_NAME", Some("''")),
            ("PATH_INFO", Some("'/environ/a/b'")),
            ("QUERY_STRING", Some("'x=1&y=%20'")),
            ("SERVER_PROTOCOL", Some("'HTTP/1.1'")),
            ("SERVER_NAME", Some("'example.org'")),
            ("SERVER_PORT", Some(&port)),
            ("REMOTE_ADDR", Some("'127.0.0.1'")),
            ("HTTP_HOST", Some("'example.org:8006'")),
            ("wsgi.version", Some("(1, 0)")),
            ("wsgi.url_scheme", Some("'http'")),
            ("wsgi.input.read()", Some("b''")),
            ("wsgi.errors.write", Some("True")),
            ("wsgi.multithread", Some("False")),
            ("wsgi.multiprocess", Some("False")),
            ("wsgi.run_once", Some("False")),
            ("wsgi.file_wrapper", Some("*")),
        ],
    )
}

fn environ_latin1_path(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let path = "/environ/caf%E9/%C3%A9?q=%E9";
    ctx.reproduce(curl("-i", path), Expect::Runs);
    let seen = environ(ctx, &get(path, ""))?;
    check_environ(
        ctx,
        &seen,
        &[
            ("PATH_INFO", Some("'/environ/caf\\xe9/\\xc3\\xa9'")),
            ("QUERY_STRING", Some("'q=%E9'")),
        ],
    )
}

fn environ_headers(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let headers = [
        "X-Tag: a",
        "X-Tag: b",
        "X-Auth-User: alice",
        "X_Auth_User: admin",
    ];
    let flags: Vec<String> = headers.iter().map(|h| format!("-H '{h}'")).collect();
    ctx.reproduce(
        format!("{} {}", curl("-i", "/environ/headers"), flags.join(" ")),
        Expect::Status(500),
    );
    let lines: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    let seen = environ(ctx, &get("/environ/headers", &lines))?;
    check_environ(
        ctx,
        &seen,
        &[
            ("HTTP_X_TAG", Some("'a,b'")),
            ("HTTP_X_AUTH_USER", Some("'alice'")),
        ],
    )?;
    let spoofed: Vec<&String> = seen.keys().filter(|k| seen[*k].contains("admin")).collect();
    ctx.ensure(
        spoofed.is_empty(),
        "the header `X_Auth_User: admin` nowhere in the environ",
    )
    .map_err(|f| f.detail(format!("'admin' is the value of {spoofed:?}")))
}

fn environ_body_keys(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(curl("-i", "/environ/get"), Expect::Status(500));
    let seen = environ(ctx, &get("/environ/get", ""))?;
    check_environ(
        ctx,
        &seen,
        &[
            ("CONTENT_LENGTH", None),
            ("CONTENT_TYPE", None),
            ("QUERY_STRING", Some("''")),
            ("wsgi.input.read()", Some("b''")),
        ],
    )?;
    ctx.clear_transcript();
    ctx.reproduce(
        curl("-i -d 'name=Ada&lang=en'", "/environ/post"),
        Expect::Status(500),
    );
    let post = b"POST /environ/post HTTP/1.1\r\nHost: 127.0.0.1\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 16\r\n\
        Connection: close\r\n\r\nname=Ada&lang=en";
    let seen = environ(ctx, post)?;
    check_environ(
        ctx,
        &seen,
        &[
            ("CONTENT_LENGTH", Some("'16'")),
            ("CONTENT_TYPE", Some("'application/x-www-form-urlencoded'")),
            ("HTTP_CONTENT_LENGTH", None),
            ("HTTP_CONTENT_TYPE", None),
            ("wsgi.input.read()", Some("b'name=Ada&lang=en'")),
        ],
    )
}

// ------------------------------------------------------------- hole 2

fn raised(value: &str) -> bool {
    value != "ok" && value != "(nothing)"
}

fn start_response_checks(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(curl("-i", "/start_response/checks"), Expect::Status(500));
    let lines = probe(ctx, &get("/start_response/checks", ""))?;
    for label in [
        "bytes status",
        "no reason",
        "tuple of headers",
        "CRLF in a value",
        "hop-by-hop header",
    ] {
        expect_logged(ctx, &lines, label, "start_response raises", raised)?;
    }
    expect_logged(
        ctx,
        &lines,
        "good call returns write",
        "a good call, after the refused ones, returns the write() callable",
        |v| v == "True",
    )
}

fn start_response_twice(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(curl("-i", "/start_response/twice"), Expect::Status(500));
    let lines = probe(ctx, &get("/start_response/twice", ""))?;
    expect_logged(
        ctx,
        &lines,
        "second call without exc_info",
        "start_response raises (an AssertionError)",
        raised,
    )
}

fn exc_info_before_head(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(
        curl("-i", "/start_response/exc_info_before"),
        Expect::Status(500),
    );
    let lines = probe(ctx, &get("/start_response/exc_info_before", ""))?;
    expect_logged(
        ctx,
        &lines,
        "exc_info before the head",
        "ok: nothing was sent, so the new status replaces the old",
        |v| v == "ok",
    )
}

fn exc_info_after_head(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(
        curl("-i", "/start_response/exc_info_after"),
        Expect::Status(500),
    );
    let lines = probe(ctx, &get("/start_response/exc_info_after", ""))?;
    expect_logged(
        ctx,
        &lines,
        "exc_info after the head",
        "ValueError same=True: exc_info's own exception, re-raised",
        |v| v == "ValueError same=True",
    )
}

// ------------------------------------------------------------- hole 3

fn late_start_response(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(curl("-i", "/late"), Expect::Status(200));
    expect_answer(ctx, "/late", 200, b"late\n")
}

fn head_waits_for_body(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(curl("-i", "/replace"), Expect::Status(503));
    expect_answer(ctx, "/replace", 503, b"replaced\n")
}

fn error_after_head_aborts(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(curl("-i --raw", "/abort"), Expect::Shows("HTTP/1.1 200"));
    let response = ask(ctx, &get("/abort", ""))?;
    // How much of the aborted response reaches the client (the head, the
    // first chunk, or nothing) depends on how far the loop got to write it
    // before it dropped the connection; that it is not whole does not.
    let head_ok = response.status().is_none_or(|status| status == 200);
    let leaked = response.body().windows(6).any(|w| w == b"nobody");
    ctx.ensure(
        head_ok && whole_body(&response).is_none() && !leaked,
        "the connection closed before the body's end: no last chunk (0\\r\\n\\r\\n), \
         and not the error page the app tried to send after its head (200 and the chunk \
         `part one` may come before the close)",
    )?;
    expect_log(ctx, "after the head was sent; connection aborted")
}

fn content_length_enforced(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(curl("-i", "/length?say=5&send=11"), Expect::Status(200));
    let mut stream = ctx.connect()?;
    let mut leftover = Vec::new();
    let mark = ctx.server().stderr().len();
    ctx.send(
        &mut stream,
        b"GET /length?say=5&send=11 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )?;
    await_answer(ctx, &stream, mark)?;
    let first = ctx.recv_response(&mut stream, &mut leftover, false)?;
    ctx.ensure(
        first.head.status == 200
            && first.head.header("content-length") == Some("5")
            && first.body == b"01234",
        "200 with Content-Length: 5 and the body `01234`: the app's length, kept",
    )?;
    ctx.send(&mut stream, &get("/hello", ""))?;
    let second = ctx.recv_response(&mut stream, &mut leftover, false)?;
    ctx.ensure(
        second.head.status == 200 && second.body == b"Hello, World!\n",
        "then, on the same connection, GET /hello answered: the 6 bytes too many never \
         reached the client",
    )?;
    expect_log(ctx, "more than its Content-Length")?;

    ctx.clear_transcript();
    ctx.reproduce(
        curl("-i", "/length?say=10&send=5"),
        Expect::Shows("curl: ("),
    );
    let response = ask(ctx, &get("/length?say=10&send=5", ""))?;
    // As after any abort, what came before the close may be anything short
    // of a whole response: the head, some of the 5 bytes, or nothing.
    let head_ok = response.status().is_none_or(|status| status == 200)
        && response
            .header("content-length")
            .is_none_or(|len| len == "10");
    ctx.ensure(
        head_ok && response.body().len() < 10,
        "the connection closed before the 10 bytes Content-Length: 10 promised",
    )?;
    expect_log(ctx, "of its Content-Length 10")
}

/// Require `needle` in a gateway line of the server's log, within 2 s.
fn expect_log(ctx: &mut Ctx, needle: &str) -> Result<(), Failure> {
    let found = ctx.server().wait_for_stderr(needle, Duration::from_secs(2));
    ctx.ensure(
        found,
        format!("a line in the server's log saying the app sent {needle}"),
    )
}

fn close_on_normal_end(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(
        format!("{}; {}", curl("-s", "/closing"), curl("-s", "/closes")),
        Expect::Runs,
    );
    expect_answer(ctx, "/closing", 200, b"one\ntwo\n")?;
    expect_closed(ctx, Duration::from_secs(2), "after a complete response")
}

fn close_on_app_error(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(
        format!(
            "{}; {}",
            curl("-s", "/closing?then=raise"),
            curl("-s", "/closes")
        ),
        Expect::Runs,
    );
    ask(ctx, &get("/closing?then=raise", ""))?;
    expect_closed(ctx, Duration::from_secs(2), "after the iterable raised")
}

fn close_on_client_gone(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(
        format!(
            "{} | head -c 100000 >/dev/null; sleep 1; {}",
            curl("-sN", "/closing?then=forever"),
            curl("-s", "/closes")
        ),
        Expect::Runs,
    );
    let addr = ctx.server().addr;
    let mut slow = ladder_harness::connect_small_window(addr);
    let mark = ctx.server().stderr().len();
    ctx.send(
        &mut slow,
        b"GET /closing?then=forever HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )?;
    await_answer(ctx, &slow, mark)?;
    ctx.recv_exact(&mut slow, 4096)?;
    // Gone without a word, as a client that crashed: a reset.
    checks::close_with_reset(slow);
    expect_closed(
        ctx,
        Duration::from_secs(5),
        "within 5 s of the client leaving",
    )
}

fn file_wrapper(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    ctx.reproduce(curl("-si", "/download"), Expect::Status(200));
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/apps/download.py");
    let want = fs::read(file)
        .map_err(|err| ctx.fail("to read apps/download.py").detail(err.to_string()))?;
    let response = ask(ctx, &get("/download", ""))?;
    let length = want.len().to_string();
    ctx.ensure(
        response.status() == Some(200)
            && response.header("content-length").as_deref() == Some(length.as_str())
            && response.body() == want,
        format!("200, Content-Length: {length}, and the bytes of apps/download.py"),
    )
}

fn sigterm_exits_0(ctx: &mut Ctx) -> Result<(), Failure> {
    fn round_trip(ctx: &mut Ctx) -> Result<(), Failure> {
        expect_answer(ctx, "/hello", 200, b"Hello, World!\n")
    }
    // The fixtures and the app are in every start already (EXERCISE.args).
    checks::sigterm_exits_0(ctx, &[], round_trip)
}
