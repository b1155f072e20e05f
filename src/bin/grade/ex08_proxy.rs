//! Exercise 08: the buffering reverse proxy (`lesson08_proxy`).
//!
//! The skeleton is lesson 08 with three holes: the request side
//! (`handle_with`: a whole request becomes the bytes the upstream gets),
//! the relay (`advance`: write them, then read the whole response as fast
//! as it comes) and the hand-back (`finish`: answer the client, free the
//! upstream connection). Every stage runs the proxy in front of an upstream
//! the grader runs itself, on threads (`Upstream`), which writes down what
//! it sees: each connection, when each request's first byte came, the
//! request's bytes, and when it finished writing a large answer. So the
//! stages judge the proxy from both sides, as the lesson's tests do.
//!
//! The report's `start:` lines say `--upstream 127.0.0.1:8005`: by hand, a
//! student runs an upstream there (the `try:` lines bring their own, a
//! one-shot `nc -l` that prints what the proxy sent it); the grader puts its
//! own upstream's address in its place (`Ctx::run_instead`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ladder::http::{BodyFraming, Limits, Parsed, parse_request};
use ladder_harness::IO_TIMEOUT;

use crate::fixtures;
use crate::runner::{Ctx, Exercise, Expect, Failure, Stage};

/// The rung's default port, for the commands a student types.
const PORT: u16 = 8008;

/// Where the report says the upstream is: a student runs one there.
const UPSTREAM: &str = "127.0.0.1:8005";

/// The second upstream of `fails_over`, as the report shows it.
const SECOND: &str = "127.0.0.1:8105";

/// The size of `/big`: more than every socket buffer between the upstream
/// and the client can hold, so that a relay at the client's pace would
/// leave the upstream waiting.
const BIG: usize = 32 << 20;

/// Every stage starts the proxy in front of "the" upstream.
fn args() -> Vec<String> {
    vec!["--upstream".into(), UPSTREAM.into()]
}

pub const EXERCISE: Exercise = Exercise {
    name: "ex08_proxy",
    lesson: "lesson08_proxy",
    port: PORT,
    args,
    holes: &["handle_with", "advance", "finish"],
    listed: true,
    stages: &[
        // ---- hole 1: handle_with
        Stage {
            name: "serves_static",
            title: "--static /static/=DIR: GET /static/a.txt comes from disk, and the upstream \
                    hears nothing",
            hint: "hole `handle_with`: before anything goes upstream, \
                   `self.statics.respond(request)` says whether a --static prefix matches; if \
                   it does, answer Answer::Now with it",
            hole: 1,
            run: serves_static,
        },
        // ---- hole 2: advance (and handle_with)
        Stage {
            name: "hop_by_hop",
            title: "the upstream gets the request without its hop-by-hop headers (Connection \
                    and what it names, Keep-Alive, TE, Upgrade, Proxy-*), with the end-to-end \
                    ones, and with X-Forwarded-For",
            hint: "hole `handle_with`: never copy the client's head; `Outgoing::new(request, \
                   body, Forwarding::http(client.peer))` writes the request for the next hop \
                   (RFC 9110 §7.6.1) with the forwarding headers. Hole `advance` writes those \
                   bytes, all of them, until WouldBlock",
            hole: 2,
            run: hop_by_hop,
        },
        Stage {
            name: "buffers_request",
            title: "a POST whose body comes in four pieces, 300 ms apart: the upstream hears \
                    nothing until the last byte is in, then gets it whole",
            hint: "the upstream must never wait for a slow client: `handle_with` runs once the \
                   library holds the whole request, body and all; make the upstream's bytes \
                   there, from `request` and `body`, and dispatch only then",
            hole: 2,
            run: buffers_request,
        },
        Stage {
            name: "bad_gateway",
            title: "nothing listens where the only upstream should be: 502",
            hint: "hole `advance`: a connect in progress ends on WRITABLE; `take_error()` (or \
                   `peer_addr()` failing with anything but NotConnected) is a refusal: \
                   `self.fail(slot, Failure::Refused, ..)`, which tries another upstream \
                   and answers 502 when none is left",
            hole: 2,
            run: bad_gateway,
        },
        Stage {
            name: "gateway_timeout",
            title: "--proxy-read-timeout 1, an upstream that takes the request and says \
                    nothing: 504",
            hint: "hole `advance`: every bit of progress (a write, a read) moves \
                   `link.deadline` to now + --proxy-read-timeout; `on_timer` fails the \
                   request past it, and `dispatch` answers 504 when the last try timed out",
            hole: 2,
            run: gateway_timeout,
        },
        // ---- hole 3: finish (and the two before it)
        Stage {
            name: "proxies",
            title: "GET three times on one kept-alive client connection: the upstream's \
                    answers come back, without its hop-by-hop headers",
            hint: "hole `finish`: once `job.reader` has the whole response, \
                   `job.reader.into_response()` is the client's answer (the library drops \
                   the upstream's hop-by-hop headers); hand it over with \
                   `cx.respond(job.ticket, ..)`",
            hole: 3,
            run: proxies,
        },
        Stage {
            name: "reuses_connections",
            title: "six requests from two clients, one after another: one upstream \
                    connection carries them all",
            hint: "hole `finish`: an upstream that keeps the connection \
                   (`job.reader.keep_alive()`) goes back to its idle pool \
                   (`self.group.servers[up].idle.push(slot)`) for the next request; close it \
                   only when it said close, or the pool is full (--keepalive)",
            hole: 3,
            run: reuses_connections,
        },
        Stage {
            name: "frees_upstream",
            title: "a 32 MiB answer to a client that reads nothing: the upstream writes it \
                    all at once and is free for another client, and then the client gets \
                    every byte",
            hint: "hole `advance`: read the upstream until WouldBlock on every event and feed \
                   `job.reader` (it spills to a temporary file), never waiting for the \
                   client; hole `finish`: free the upstream (pool or close) as soon as the \
                   response is whole, not when the client has read it",
            hole: 3,
            run: frees_upstream,
        },
        Stage {
            name: "fails_over",
            title: "two upstreams, the first refusing: every GET is answered 200 by the other",
            hint: "a refusal marks the upstream down and `fail` dispatches the request \
                   again; if this fails only here, look at `advance`'s connect check and at \
                   what `finish` does with a connection it frees",
            hole: 3,
            run: fails_over,
        },
    ],
};

// ------------------------------------------------------------ the upstream

/// One request as the upstream heard it.
struct Heard {
    /// Which of the upstream's connections carried it (0 is the first).
    connection: usize,
    raw: Vec<u8>,
    /// When its first byte arrived.
    first_byte: Instant,
}

/// What the upstream saw, shared with its threads.
#[derive(Default)]
struct Seen {
    connections: usize,
    /// Per connection: the proxy closed it.
    closed: Vec<bool>,
    requests: Vec<Heard>,
    /// Bytes of `/big` written so far, and when the last one was.
    big_written: usize,
    big_done: Option<Instant>,
}

/// An upstream on threads of the grader. `GET /big` is answered with
/// [`BIG`] bytes of [`fixtures::big_data`]; `/silent` is read and never
/// answered; anything else is echoed: a 200 whose body is the request's
/// exact bytes, with hop-by-hop headers the proxy must not pass on.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Upstream {
    fn start(ctx: &Ctx) -> Result<Upstream, Failure> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| Ok((l.local_addr()?, l)))
            .map_err(|err| {
                ctx.fail("the grader to run its upstream")
                    .detail(format!("bind: {err}"))
            });
        let (addr, listener) = listener?;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let shared = Arc::clone(&seen);
        // The threads outlive the stage, waiting in accept or read: the
        // grader is a short-lived process, and the proxy's end closes the
        // connections they serve.
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let connection = {
                    let mut seen = lock(&shared);
                    seen.connections += 1;
                    seen.closed.push(false);
                    seen.connections - 1
                };
                let seen = Arc::clone(&shared);
                thread::spawn(move || serve(stream, connection, &seen));
            }
        });
        Ok(Upstream { addr, seen })
    }

    fn connections(&self) -> usize {
        lock(&self.seen).connections
    }

    fn requests(&self) -> usize {
        lock(&self.seen).requests.len()
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Serve requests on one connection until the proxy closes it.
fn serve(mut stream: TcpStream, connection: usize, seen: &Mutex<Seen>) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let unlimited = Limits {
        max_body: u64::MAX,
        ..Limits::default()
    };
    loop {
        let mut first_byte = None;
        let whole = loop {
            if let Ok(Parsed::Complete { request, consumed }) =
                parse_request(&buf, &Limits::default())
            {
                let body = match request.body_framing(&unlimited) {
                    Ok(BodyFraming::Length(n)) => n as usize,
                    _ => 0,
                };
                if buf.len() >= consumed + body {
                    break consumed + body;
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => {
                    lock(seen).closed[connection] = true;
                    return;
                }
                Ok(n) => {
                    first_byte.get_or_insert_with(Instant::now);
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        };
        let raw: Vec<u8> = buf.drain(..whole).collect();
        let path = raw.split(|&b| b == b' ').nth(1).unwrap_or(b"").to_vec();
        lock(seen).requests.push(Heard {
            connection,
            raw: raw.clone(),
            first_byte: first_byte.unwrap_or_else(Instant::now),
        });
        let sent = if path.starts_with(b"/big") {
            send_big(&mut stream, raw.starts_with(b"HEAD "), seen)
        } else if path.starts_with(b"/silent") {
            // Take the request and say nothing, until the proxy gives up.
            while matches!(stream.read(&mut chunk), Ok(n) if n > 0) {}
            false
        } else {
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive, X-Hop\r\n\
                 X-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Upstream: grader\r\n\r\n",
                raw.len()
            )
            .into_bytes();
            out.extend_from_slice(&raw);
            stream.write_all(&out).is_ok()
        };
        if !sent {
            lock(seen).closed[connection] = true;
            return;
        }
    }
}

/// Write `/big`'s answer, noting the progress (a proxy that reads at its
/// client's pace leaves this thread blocked in write).
fn send_big(stream: &mut TcpStream, head_only: bool, seen: &Mutex<Seen>) -> bool {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return false;
    }
    if !head_only {
        for piece in fixtures::big_data(BIG).chunks(256 * 1024) {
            if stream.write_all(piece).is_err() {
                return false;
            }
            lock(seen).big_written += piece.len();
        }
        // `write` returning means the kernel took the bytes, not that the
        // proxy read them: "done" once it has, so the next request finds
        // this connection back in the pool, however busy the machine.
        if !ladder_harness::wait_until_read(stream, IO_TIMEOUT) {
            return true; // never `done`: the stage says the proxy stopped reading
        }
    }
    lock(seen).big_done = Some(Instant::now());
    true
}

/// A local address nothing listens on: connecting there is refused. Its
/// port stays bound (never listening) until the grader exits, so nothing
/// else can take it during the stage.
fn refusing() -> String {
    let (held, addr) = ladder_harness::refusing_port();
    std::mem::forget(held);
    addr.to_string()
}

/// Start the grader's upstream, then the proxy in front of it with `extra`.
fn start(ctx: &mut Ctx, extra: &[&str]) -> Result<Upstream, Failure> {
    let upstream = Upstream::start(ctx)?;
    ctx.run_instead(UPSTREAM, &upstream.addr.to_string());
    ctx.start(extra)?;
    Ok(upstream)
}

/// Wait until `done` holds, for at most IO_TIMEOUT; false if it never did.
fn eventually(done: impl Fn() -> bool) -> bool {
    let until = Instant::now() + IO_TIMEOUT;
    while !done() {
        if Instant::now() >= until {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// `(printf 'RESPONSE'; sleep N) | nc -q 0 -l 127.0.0.1 8005 & sleep 1; `:
/// a one-shot upstream that prints the request the proxy sends it, answers
/// with `response`, and quits `hold` seconds after it started (by then the
/// exchange is over: its output is whole).
fn nc_upstream(response: &str, port: &str, hold: u32) -> String {
    format!(
        "(printf '{}'; sleep {hold}) | nc -q 0 -l 127.0.0.1 {port} & sleep 1; ",
        crate::runner::printf_escape(response.as_bytes())
    )
}

const OK_RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

// ------------------------------------------------------------ the stages

fn serves_static(ctx: &mut Ctx) -> Result<(), Failure> {
    let dir = fixtures::arg("exercises/fixtures/ex08/static");
    let flag = format!("/static/={dir}");
    let upstream = start(ctx, &["--static", &flag])?;
    ctx.reproduce(ctx.curl("-v", "/static/a.txt"), Expect::Status(200));
    let mut stream = ctx.connect()?;
    ctx.send(
        &mut stream,
        b"GET /static/a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    )?;
    let response = ctx.recv_response(&mut stream, &mut Vec::new(), false)?;
    ctx.ensure(
        response.head.status == 200 && response.body == b"static file a\n",
        "200 with the file's bytes, \"static file a\\n\"",
    )?;
    ctx.ensure(
        upstream.connections() == 0,
        "no connection to the upstream for a --static file",
    )
}

fn hop_by_hop(ctx: &mut Ctx) -> Result<(), Failure> {
    let upstream = start(ctx, &[])?;
    let command = format!(
        "{}curl -s -H 'Connection: X-Secret' -H 'X-Secret: 1' -H 'Keep-Alive: 300' {}; wait",
        nc_upstream(OK_RESPONSE, "8005", 3),
        ctx.url("/path")
    );
    ctx.reproduce_noting(
        command,
        "nc -l plays the upstream and prints what the proxy sent it: no Connection, \
         X-Secret or Keep-Alive; an X-Forwarded-For",
        Expect::Shows("X-Forwarded-For: 127.0.0.1"),
    );
    let mut stream = ctx.connect()?;
    ctx.send(
        &mut stream,
        b"GET /path?q=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret\r\n\
          X-Secret: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\nUpgrade: h2c\r\n\
          Proxy-Authorization: Basic eA==\r\nX-End-To-End: kept\r\n\r\n",
    )?;
    if !eventually(|| upstream.requests() > 0) {
        return Err(ctx
            .fail("the request to reach the upstream")
            .detail(format!(
                "the upstream heard no request in {IO_TIMEOUT:?} ({} connections)",
                upstream.connections()
            )));
    }
    let heard = String::from_utf8_lossy(&lock(&upstream.seen).requests[0].raw).into_owned();
    let lines: Vec<String> = heard.lines().map(str::to_ascii_lowercase).collect();
    let has = |name: &str| lines.iter().any(|l| l.starts_with(name));
    let mut wrong = Vec::new();
    if !heard.starts_with("GET /path?q=1 HTTP/1.1\r\n") {
        wrong.push("the request line is not `GET /path?q=1 HTTP/1.1`".to_string());
    }
    for gone in [
        "connection:",
        "x-secret:",
        "keep-alive:",
        "te:",
        "upgrade:",
        "proxy-authorization:",
    ] {
        if has(gone) {
            wrong.push(format!("`{}` was forwarded", gone.trim_end_matches(':')));
        }
    }
    for kept in ["host: example.com", "x-end-to-end: kept"] {
        if !lines.iter().any(|l| l == kept) {
            wrong.push(format!("`{kept}` is missing"));
        }
    }
    if !lines.iter().any(|l| l == "x-forwarded-for: 127.0.0.1") {
        wrong.push("no `X-Forwarded-For: 127.0.0.1`".to_string());
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(ctx
        .fail(
            "the upstream to get the end-to-end headers (Host, X-End-To-End) and an \
             X-Forwarded-For, and none of the hop-by-hop ones",
        )
        .detail(format!(
            "{}; the upstream got:\n{}",
            wrong.join("; "),
            crate::runner::shown(heard.as_bytes(), 600)
        )))
}

fn buffers_request(ctx: &mut Ctx) -> Result<(), Failure> {
    let upstream = start(ctx, &[])?;
    let command = format!(
        "{}(printf 'POST /up HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 10\\r\\n\\r\\n12345'; \
         sleep 2; printf '67890') | nc -q 3 127.0.0.1 {}; wait",
        nc_upstream(OK_RESPONSE, "8005", 5),
        ctx.port_hint()
    );
    ctx.reproduce_noting(
        command,
        "the upstream (nc -l) prints nothing for 2 s, then the whole request, body \
         1234567890 and all",
        Expect::Shows("1234567890"),
    );
    let body: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mut stream = ctx.connect()?;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    ctx.send(&mut stream, head.as_bytes())?;
    // The clock is read before the last piece goes out, not after: a correct proxy can
    // receive that piece, dispatch, and reach the upstream before our `send` returns.
    let mut last_sent = Instant::now();
    for piece in body.chunks(body.len() / 4) {
        thread::sleep(Duration::from_millis(300));
        last_sent = Instant::now();
        ctx.send(&mut stream, piece)?;
    }
    if !eventually(|| upstream.requests() > 0) {
        return Err(ctx
            .fail("the request to reach the upstream once complete")
            .detail(format!(
                "the upstream heard no whole request in {IO_TIMEOUT:?}"
            )));
    }
    let seen = lock(&upstream.seen);
    let heard = &seen.requests[0];
    if heard.first_byte < last_sent {
        let early = last_sent - heard.first_byte;
        return Err(ctx
            .fail("the upstream to hear nothing before the client began sending its last piece")
            .detail(format!(
                "its first byte reached the upstream {early:?} before the client \
                 began sending the last piece: a slow client would hold the upstream that long"
            )));
    }
    ctx.ensure(
        heard.raw.starts_with(b"POST /upload HTTP/1.1\r\n") && heard.raw.ends_with(&body),
        "the upstream to get the POST with its 256 KiB body whole, unchanged",
    )
}

fn bad_gateway(ctx: &mut Ctx) -> Result<(), Failure> {
    let nowhere = refusing();
    ctx.run_instead(UPSTREAM, &nowhere);
    ctx.start(&[])?;
    ctx.reproduce_noting(
        ctx.curl("-v", "/"),
        "with nothing listening on 8005",
        Expect::Status(502),
    );
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let response = ctx.recv_response(&mut stream, &mut Vec::new(), false)?;
    ctx.ensure(response.head.status == 502, "502 Bad Gateway")
}

fn gateway_timeout(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["--proxy-read-timeout", "1"])?;
    let command = format!(
        "nc -l 127.0.0.1 8005 < /dev/null & sleep 1; curl -sv {}; kill $!",
        ctx.url("/silent")
    );
    ctx.reproduce_noting(
        command,
        "nc -l takes the request and never answers: a 504 after a second",
        Expect::Status(504),
    );
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, b"GET /silent HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let response = ctx.recv_response(&mut stream, &mut Vec::new(), false)?;
    ctx.ensure(response.head.status == 504, "504 Gateway Timeout")
}

fn proxies(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &[])?;
    let answer = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";
    let command = format!(
        "{}curl -v {}; wait",
        nc_upstream(answer, "8005", 3),
        ctx.url("/hello")
    );
    ctx.reproduce_noting(
        command,
        "nc -l prints the request the proxy sent; curl gets nc's answer",
        Expect::Status(200),
    );
    let mut stream = ctx.connect()?;
    let mut leftover = Vec::new();
    for _ in 0..3 {
        ctx.send(&mut stream, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let response = ctx.recv_response(&mut stream, &mut leftover, false)?;
        ctx.ensure(
            response.head.status == 200 && response.body.starts_with(b"GET /hello HTTP/1.1\r\n"),
            "200 with the upstream's body (which echoes the request it got)",
        )?;
        ctx.ensure(
            response.head.header("x-upstream") == Some("grader"),
            "the upstream's end-to-end header `X-Upstream: grader` passed on",
        )?;
        ctx.ensure(
            response.head.header("x-hop").is_none() && response.head.header("keep-alive").is_none(),
            "no `X-Hop` or `Keep-Alive`: the upstream's Connection header names them, \
             they are for its hop only",
        )?;
    }
    Ok(())
}

fn reuses_connections(ctx: &mut Ctx) -> Result<(), Failure> {
    let upstream = start(ctx, &[])?;
    // Two answers on one upstream connection; the second comes late
    // enough to answer the second request, which a new connection would
    // not reach (nc -l takes one).
    let command = format!(
        "(printf 'HTTP/1.1 200 OK\\r\\nContent-Length: 4\\r\\n\\r\\none\\n'; sleep 3; \
         printf 'HTTP/1.1 200 OK\\r\\nContent-Length: 4\\r\\n\\r\\ntwo\\n'; sleep 1) | \
         nc -q 0 -l 127.0.0.1 8005 & sleep 1; curl -s {}; curl -s {}; wait",
        ctx.url("/a"),
        ctx.url("/b")
    );
    ctx.reproduce_noting(
        command,
        "nc -l takes one connection, and prints both requests: the proxy kept it for \
         the second; curl gets one, then two",
        Expect::Shows("two"),
    );
    for _ in 0..2 {
        let mut stream = ctx.connect()?;
        let mut leftover = Vec::new();
        for _ in 0..3 {
            ctx.send(&mut stream, b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")?;
            let response = ctx.recv_response(&mut stream, &mut leftover, false)?;
            ctx.ensure(response.head.status == 200, "200 from the upstream")?;
        }
    }
    let (connections, requests) = (upstream.connections(), upstream.requests());
    ctx.ensure(requests == 6, "six requests at the upstream")?;
    ctx.ensure(
        connections == 1,
        "one upstream connection for all six requests",
    )
    .map_err(|f| {
        f.detail(format!(
            "the upstream saw {connections} connections: each request paid a new \
                 TCP handshake"
        ))
    })
}

fn frees_upstream(ctx: &mut Ctx) -> Result<(), Failure> {
    let upstream = start(ctx, &[])?;
    let command = format!(
        "(printf 'HTTP/1.1 200 OK\\r\\nContent-Length: 33554432\\r\\n\\r\\n'; \
         head -c 33554432 /dev/zero) | nc -q 0 -l 127.0.0.1 8005 > /dev/null && \
         echo 'upstream: all sent' & sleep 1; curl -s --limit-rate 8M -o /dev/null {} && \
         echo 'client: all read'; wait",
        ctx.url("/big")
    );
    ctx.reproduce_noting(
        command,
        "the upstream is done at once; the client, reading 8 MB a second, 4 s later",
        Expect::Shows("upstream: all sent"),
    );
    let mut slow = ctx.connect()?;
    ctx.send(&mut slow, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")?;
    if !eventually(|| lock(&upstream.seen).big_done.is_some()) {
        let written = lock(&upstream.seen).big_written;
        return Err(ctx
            .fail(
                "the upstream to write its whole 32 MiB answer while the client reads \
                 nothing (the proxy reads it as fast as it comes)",
            )
            .detail(format!(
                "in {IO_TIMEOUT:?} the upstream could write {written} bytes of {BIG}: \
                 the proxy stopped reading, so the upstream waits for the client"
            )));
    }
    // The first client has read nothing yet; another is served meanwhile.
    let mut other = ctx.connect()?;
    ctx.send(&mut other, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let response = ctx.recv_response(&mut other, &mut Vec::new(), false)?;
    ctx.ensure(
        response.head.status == 200,
        "200 for a second client while the first has read nothing",
    )?;
    {
        let seen = lock(&upstream.seen);
        let again = seen.requests.iter().filter(|r| r.connection == 0).count() > 1;
        let freed = again || seen.closed.first() == Some(&true);
        drop(seen);
        ctx.ensure(
            freed,
            "the upstream connection of /big freed as soon as its answer was in: back \
             in the pool (the second request goes on it) or closed",
        )
        .map_err(|f| {
            f.detail(
                "it is still open and idle: the proxy holds it while its client reads \
                 (and so would an upstream worker be held)",
            )
        })?;
    }
    let response = ctx.recv_response(&mut slow, &mut Vec::new(), false)?;
    ctx.ensure(
        response.head.status == 200 && response.body == fixtures::big_data(BIG),
        "then all 32 MiB to the first client, unchanged",
    )
}

fn fails_over(ctx: &mut Ctx) -> Result<(), Failure> {
    let upstream = Upstream::start(ctx)?;
    let nowhere = refusing();
    ctx.run_instead(UPSTREAM, &nowhere);
    ctx.run_instead(SECOND, &upstream.addr.to_string());
    ctx.start(&["--upstream", SECOND])?;
    let command = format!(
        "{}curl -v {}; wait",
        nc_upstream(OK_RESPONSE, "8105", 3),
        ctx.url("/")
    );
    ctx.reproduce_noting(
        command,
        "with nothing on 8005: the proxy marks it down and asks 8105 (nc -l)",
        Expect::Status(200),
    );
    for _ in 0..4 {
        let mut stream = ctx.connect()?;
        ctx.send(&mut stream, b"GET /either HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let response = ctx.recv_response(&mut stream, &mut Vec::new(), false)?;
        ctx.ensure(
            response.head.status == 200,
            "200 from the upstream that answers, for every request",
        )?;
    }
    Ok(())
}
