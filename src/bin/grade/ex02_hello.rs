//! Exercise 02: HTTP on the wire (`lesson02_hello`).
//!
//! Responses are read to the close (the rung always answers with
//! `Connection: close`) and parsed leniently here, so that each stage fails
//! for its own reason only: a bare-LF response fails `status_line_crlf` and
//! nothing else, a missing Content-Length fails `content_length_exact`.

use std::thread;
use std::time::{Duration, Instant};

use crate::checks::{self, RawResponse};
use crate::runner::{Ctx, Exercise, Expect, Failure, Stage, no_args};

pub const EXERCISE: Exercise = Exercise {
    name: "ex02_hello",
    lesson: "lesson02_hello",
    port: 8002,
    args: no_args,
    holes: &["serve", "respond", "reject"],
    listed: true,
    stages: &[
        Stage {
            name: "reads_a_request",
            title: "reads a GET's head: prints it on stdout (or answers it)",
            hint: "lessons/02-hello.md, \"How it works\": `serve` wraps the stream in a \
                   Connection, reads the request within the deadline (read_request), prints \
                   its head with print_head, then hands it to `respond`",
            hole: 1,
            run: reads_a_request,
        },
        Stage {
            name: "announces_http",
            title: "prints http://127.0.0.1:PORT/ first, then answers GET /hello with 200",
            hint: "`respond`: a 200 Response::with_bytes holding `page(request)`, written \
                   with conn.respond (no keep-alive)",
            hole: 2,
            run: announces_http,
        },
        Stage {
            name: "status_line_crlf",
            title: "every line of the response head ends in CRLF",
            hint: "RFC 9112 §2.1: lines end in \\r\\n, and an empty line ends the head; \
                   Connection::respond writes them for you (see `respond`)",
            hole: 2,
            run: status_line_crlf,
        },
        Stage {
            name: "content_length_exact",
            title: "Content-Length is present and equals the body's length in bytes",
            hint: "send the page as a body in memory (Response::with_bytes): its plan \
                   announces Content-Length, counted in bytes, not characters",
            hole: 2,
            run: content_length_exact,
        },
        Stage {
            name: "head_has_no_body",
            title: "HEAD / gets the head of GET /, and no body",
            hint: "RFC 9110 §9.3.2: same status and headers as GET, but no body; give \
                   conn.respond the request, so that its plan knows it is a HEAD",
            hole: 2,
            run: head_has_no_body,
        },
        Stage {
            name: "no_fd_leak",
            title: "200 requests later, no descriptor is left open",
            hint: "the Connection (and its TcpStream) must be dropped, which closes it, when \
                   the response is written",
            hole: 2,
            run: no_fd_leak,
        },
        Stage {
            name: "sigterm_exits_0",
            title: "SIGTERM ends it with exit status 0",
            hint: "call ladder::shutdown::exit_on_termination() first thing in `run`",
            hole: 2,
            run: sigterm_exits_0,
        },
        Stage {
            name: "bad_request_400",
            title: "a malformed request head gets 400 and the connection is closed",
            hint: "read_request says Got::Rejected: hand it to `reject`, whose conn.refuse \
                   answers it and closes",
            hole: 3,
            run: bad_request_400,
        },
        Stage {
            name: "header_too_large_431",
            title: "a 70 KiB request head gets 431",
            hint: "read_request refuses a head over the limit (Got::Rejected, 431): `reject` \
                   it; conn.refuse closes gracefully (shutdown, then read what is left) so the \
                   answer is not lost to a RST",
            hole: 3,
            run: header_too_large_431,
        },
        Stage {
            name: "silent_client_dropped",
            title: "a client that sends nothing is dropped after --header-timeout",
            hint: "one deadline for the whole request: give read_request \
                   Some(Instant::now() + header_timeout), and send Got::Idle and Got::TimedOut \
                   to `reject`",
            hole: 3,
            run: silent_client_dropped,
        },
        Stage {
            name: "keeps_serving_after_errors",
            title: "after garbage, a half request and a reset, GET / still gets 200",
            hint: "a bad client ends its own connection, never the server: `serve` returns an \
                   error that the accept loop logs",
            hole: 3,
            run: keeps_serving_after_errors,
        },
    ],
};

const GET: &[u8] = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
const HEAD: &[u8] = b"HEAD /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/// GET /hello must get 200.
fn get_ok(ctx: &mut Ctx) -> Result<RawResponse, Failure> {
    let curl = ctx.curl("-v", "/hello");
    ctx.reproduce(curl, Expect::Status(200));
    let raw = checks::ask(ctx, GET)?;
    ctx.ensure(
        raw.status() == Some(200),
        "a response starting `HTTP/1.1 200 OK`",
    )?;
    Ok(raw)
}

fn round_trip(ctx: &mut Ctx) -> Result<(), Failure> {
    get_ok(ctx).map(drop)
}

fn reads_a_request(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let curl = ctx.curl("-v", "/hello");
    ctx.reproduce_noting(
        curl,
        "the server's terminal shows the request head (GET /hello HTTP/1.1, Host, ...)",
        Expect::Status(200),
    );
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, GET)?;
    // Whatever comes back, or the close: `respond` may be a hole still.
    let answered = ctx
        .recv_to_close(&mut stream)
        .is_ok_and(|bytes| RawResponse::new(bytes).status().is_some());
    let deadline = Instant::now() + Duration::from_secs(2);
    let printed = loop {
        if ctx.server().stdout().contains("GET /hello HTTP/1.1") {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        thread::sleep(Duration::from_millis(20));
    };
    ctx.ensure(
        printed || answered,
        "the request head printed on stdout (`GET /hello HTTP/1.1`, ...), or an answer",
    )
}

fn announces_http(ctx: &mut Ctx) -> Result<(), Failure> {
    let announce = ctx.start(&[])?.announce.clone();
    ctx.record_stdout(announce.as_bytes());
    ctx.ensure(
        announce.contains("http://127.0.0.1:"),
        "a first stdout line like `listening on http://127.0.0.1:8002/`",
    )?;
    ctx.clear_transcript();
    round_trip(ctx)
}

fn status_line_crlf(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let raw = get_ok(ctx)?;
    ctx.reproduce_noting(
        format!("{} | od -c | head", ctx.nc(GET)),
        "every \\n of the head comes after a \\r",
        Expect::Shows("\\r  \\n"),
    );
    let head = raw.head();
    ctx.ensure(
        head.ends_with(b"\r\n\r\n"),
        "the head to end with an empty line: \\r\\n\\r\\n",
    )?;
    let bare_lf = head
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
    ctx.ensure(
        !bare_lf,
        "\\r\\n at the end of every head line, never a bare \\n",
    )
}

fn content_length_exact(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let raw = get_ok(ctx)?;
    let curl = ctx.curl("-v", "/hello");
    ctx.reproduce_noting(
        curl,
        "the Content-Length line, and the body's size as curl counts it",
        Expect::Shows("< Content-Length: "),
    );
    let Some(length) = raw.header("content-length") else {
        return Err(ctx.fail("a Content-Length header").detail(
            "without it, the client learns where the body ends only when the connection closes",
        ));
    };
    let body = raw.body().len();
    ctx.ensure(
        length.parse::<usize>() == Ok(body),
        format!("Content-Length: {body} (the body has {body} bytes)"),
    )
}

fn head_has_no_body(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let curl = ctx.curl("-v --head", "/hello");
    ctx.reproduce_noting(
        curl,
        "the head of GET, and nothing after it",
        Expect::Status(200),
    );
    let raw = checks::ask(ctx, HEAD)?;
    ctx.ensure(raw.status() == Some(200), "`HTTP/1.1 200 OK` for HEAD")?;
    ctx.ensure(
        raw.head_end.is_some(),
        "a complete head, ending with an empty line",
    )?;
    ctx.ensure(
        raw.body().is_empty(),
        "nothing after the head of a HEAD response",
    )
}

fn bad_request_400(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let garbage = b"HELLO THERE\r\n\r\n";
    let reproduce = ctx.nc(garbage);
    ctx.reproduce(reproduce, Expect::Status(400));
    let raw = checks::ask(ctx, garbage)
        .map_err(|f| f.expecting("400 Bad Request, then the connection closed"))?;
    ctx.ensure(raw.status() == Some(400), "`HTTP/1.1 400 Bad Request`")
}

fn header_too_large_431(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let mut request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".to_vec();
    request.resize(request.len() + 70 * 1024, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    ctx.reproduce(
        format!(
            "curl -v -H \"X-Big: $(head -c 71680 /dev/zero | tr '\\0' a)\" {}",
            ctx.url("/")
        ),
        Expect::Status(431),
    );
    let mut stream = ctx.connect()?;
    // The server may answer before it has read everything; a write error
    // then is fine, the answer is what counts.
    let _ = ctx.send(&mut stream, &request);
    let bytes = ctx
        .recv_to_close(&mut stream)
        .map_err(|f| f.expecting("431 Request Header Fields Too Large"))?;
    let raw = RawResponse::new(bytes);
    ctx.ensure(
        raw.status() == Some(431),
        "`HTTP/1.1 431 Request Header Fields Too Large`",
    )
}

fn silent_client_dropped(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&["--header-timeout", "1"])?;
    ctx.reproduce_noting(
        format!("nc 127.0.0.1 {} < /dev/null", ctx.port_hint()),
        "nc sends nothing: about 1 s later (--header-timeout 1) the server answers 408 and closes",
        Expect::Status(408),
    );
    let mut silent = ctx.connect()?;
    // Within the grader's read timeout (10 s) the server must give up on us:
    // a 408 and then the close, or just the close.
    let bytes = ctx.recv_to_close(&mut silent).map_err(|f| {
        f.expecting("the connection closed about 1 s after connecting (--header-timeout 1)")
    })?;
    let raw = RawResponse::new(bytes);
    ctx.ensure(
        raw.bytes.is_empty() || raw.status() == Some(408),
        "nothing, or a 408 Request Timeout, before the close",
    )?;
    ctx.clear_transcript();
    round_trip(ctx)
}

fn keeps_serving_after_errors(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let port = ctx.port_hint();
    ctx.reproduce_noting(
        format!(
            "printf 'not http at all\\r\\n\\r\\n' | nc -q 2 127.0.0.1 {port}; printf 'GET /hel' | nc -q 0 127.0.0.1 {port}; {}",
            ctx.curl("-v", "/hello")
        ),
        "a 400 for the garbage, nothing for the half request, then 200 for curl",
        Expect::Status(200),
    );
    checks::ask(ctx, b"\x16\x03\x01 not http at all\r\n\r\n")?;
    let mut half = ctx.connect()?;
    ctx.send(&mut half, b"GET /hel")?;
    drop(half);
    let mut reset = ctx.connect()?;
    ctx.send(&mut reset, b"GET / HTTP/1.1\r\nHost: x\r\n")?;
    checks::close_with_reset(reset);
    ctx.clear_transcript();
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, GET)?;
    let answer = ctx.recv_to_close(&mut stream);
    answer
        .and_then(|bytes| {
            let raw = RawResponse::new(bytes);
            ctx.ensure(
                raw.status() == Some(200),
                "a response starting `HTTP/1.1 200 OK`",
            )
        })
        .map_err(|f| {
            f.expecting(
                "200 for GET after a garbage request, a half request and a reset connection",
            )
        })
}

fn no_fd_leak(ctx: &mut Ctx) -> Result<(), Failure> {
    let by_hand = format!("curl -s -o /dev/null {}", ctx.url("/hello"));
    checks::no_fd_leak(ctx, &[], 200, round_trip, &by_hand)
}

fn sigterm_exits_0(ctx: &mut Ctx) -> Result<(), Failure> {
    checks::sigterm_exits_0(ctx, &[], round_trip)
}
