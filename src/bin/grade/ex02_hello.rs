//! Exercise 02: HTTP on the wire (`lesson02_hello`).
//!
//! Responses are read to the close (the rung always answers with
//! `Connection: close`) and parsed leniently here, so that each stage fails
//! for its own reason only: a bare-LF response fails `status_line_crlf` and
//! nothing else, a missing Content-Length fails `content_length_exact`.

use crate::checks::{self, RawResponse};
use crate::runner::{Ctx, Exercise, Failure, Stage};

pub const EXERCISE: Exercise = Exercise {
    name: "ex02_hello",
    lesson: "lesson02_hello",
    port: 8002,
    stages: &[
        Stage {
            name: "announces_http",
            title: "prints http://127.0.0.1:PORT/ first, then answers GET / with 200",
            hint: "lessons/02-hello.md: `serve` reads one request head and answers it; \
                   start from the request/response loop",
            run: announces_http,
        },
        Stage {
            name: "status_line_crlf",
            title: "every line of the response head ends in CRLF",
            hint: "RFC 9112 §2.1: lines end in \\r\\n, and an empty line ends the head; \
                   Connection::respond writes them for you (see `respond`)",
            run: status_line_crlf,
        },
        Stage {
            name: "content_length_exact",
            title: "Content-Length is present and equals the body's length in bytes",
            hint: "send the page as a body in memory (Response::with_bytes): its plan \
                   announces Content-Length, counted in bytes, not characters",
            run: content_length_exact,
        },
        Stage {
            name: "head_has_no_body",
            title: "HEAD / gets the head of GET /, and no body",
            hint: "RFC 9110 §9.3.2: same status and headers as GET, but no body; give \
                   conn.respond the request, so that its plan knows it is a HEAD",
            run: head_has_no_body,
        },
        Stage {
            name: "bad_request_400",
            title: "a malformed request head gets 400 and the connection is closed",
            hint: "read_request says Got::Rejected: hand it to `reject`, whose conn.refuse \
                   answers it and closes",
            run: bad_request_400,
        },
        Stage {
            name: "header_too_large_431",
            title: "a 70 KiB request head gets 431",
            hint: "read_request refuses a head over the limit (Got::Rejected, 431): `reject` \
                   it; conn.refuse closes gracefully (shutdown, then read what is left) so the \
                   answer is not lost to a RST",
            run: header_too_large_431,
        },
        Stage {
            name: "silent_client_dropped",
            title: "a client that sends nothing is dropped after --header-timeout",
            hint: "one deadline for the whole request: give read_request \
                   Some(Instant::now() + header_timeout), and send Got::Idle and Got::TimedOut \
                   to `reject`",
            run: silent_client_dropped,
        },
        Stage {
            name: "keeps_serving_after_errors",
            title: "after garbage, a half request and a reset, GET / still gets 200",
            hint: "a bad client ends its own connection, never the server: `serve` returns an \
                   error that the accept loop logs",
            run: keeps_serving_after_errors,
        },
        Stage {
            name: "no_fd_leak",
            title: "200 requests later, no descriptor is left open",
            hint: "the Connection (and its TcpStream) must be dropped, which closes it, when \
                   the response is written",
            run: no_fd_leak,
        },
        Stage {
            name: "sigterm_exits_0",
            title: "SIGTERM ends it with exit status 0",
            hint: "call ladder::shutdown::exit_on_termination() first thing in `run`",
            run: sigterm_exits_0,
        },
    ],
};

const GET: &[u8] = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
const HEAD: &[u8] = b"HEAD /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

/// GET /hello must get 200.
fn get_ok(ctx: &mut Ctx) -> Result<RawResponse, Failure> {
    let curl = ctx.curl("-v", "/hello");
    ctx.reproduce(curl);
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

fn announces_http(ctx: &mut Ctx) -> Result<(), Failure> {
    let announce = ctx.start(&[])?.announce.clone();
    ctx.record_got(announce.as_bytes());
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
    ctx.reproduce(format!(
        "{} | od -c | head   (look for \\r before every \\n)",
        ctx.nc(GET)
    ));
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
    ctx.reproduce(curl);
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
    ctx.reproduce(reproduce);
    let raw = checks::ask(ctx, garbage)
        .map_err(|f| f.expecting("400 Bad Request, then the connection closed"))?;
    ctx.ensure(raw.status() == Some(400), "`HTTP/1.1 400 Bad Request`")
}

fn header_too_large_431(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let mut request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ".to_vec();
    request.resize(request.len() + 70 * 1024, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    ctx.reproduce(format!(
        "curl -v -H \"X-Big: $(head -c 71680 /dev/zero | tr '\\0' a)\" http://127.0.0.1:{}/",
        8002
    ));
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
    ctx.reproduce(
        "cargo ex ex02_hello -- --header-timeout 1, then: nc -v 127.0.0.1 8002 (type nothing)",
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
    checks::ask(ctx, b"\x16\x03\x01 not http at all\r\n\r\n")?;
    let mut half = ctx.connect()?;
    ctx.send(&mut half, b"GET /hel")?;
    drop(half);
    let mut reset = ctx.connect()?;
    ctx.send(&mut reset, b"GET / HTTP/1.1\r\nHost: x\r\n")?;
    checks::close_with_reset(reset);
    ctx.clear_transcript();
    round_trip(ctx).map_err(|f| {
        f.expecting("200 for GET after a garbage request, a half request and a reset connection")
    })
}

fn no_fd_leak(ctx: &mut Ctx) -> Result<(), Failure> {
    checks::no_fd_leak(ctx, &[], 200, round_trip)
}

fn sigterm_exits_0(ctx: &mut Ctx) -> Result<(), Failure> {
    checks::sigterm_exits_0(ctx, &[], round_trip)
}
