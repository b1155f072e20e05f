//! Exercise 03: a CGI runner (`lesson03_cgi`).
//!
//! The CGI protocol itself is `ladder::cgi` (lesson 03's library module);
//! the exercise is the server around it: the accept loop with a thread per
//! connection, and the dispatch that sends `/cgi-bin/` paths to scripts,
//! follows local redirects and serves everything else as static files.
//! Requests are HTTP/1.0 with no keep-alive, so every answer is read to the
//! close and never chunked.

use std::time::Duration;

use crate::checks::{self, RawResponse};
use crate::fixtures;
use crate::runner::{Ctx, Exercise, Expect, Failure, Stage};

pub const EXERCISE: Exercise = Exercise {
    name: "ex03_cgi",
    lesson: "lesson03_cgi",
    port: 8003,
    args,
    holes: &["accept_loop", "gateway", "dispatch"],
    listed: true,
    stages: &[
        Stage {
            name: "stays_up_and_accepts",
            title: "keeps running after the announce line, and accepts connections",
            hint: "lessons/03-cgi.md, \"A thread per connection\": for each connection of \
                   listener.incoming(), thread::spawn a closure that owns it and an \
                   Arc::clone of the site, and calls `serve_connection`",
            hole: 1,
            run: checks::stays_up_and_accepts,
        },
        Stage {
            name: "refuses_bad_requests",
            title: "DELETE gets 501 and a malformed head 400, before any script runs",
            hint: "`gateway`: build the Gateway (addresses, SERVER_SOFTWARE, document root, \
                   timeout); `serve_connection` then reads requests and refuses these itself",
            hole: 2,
            run: refuses_bad_requests,
        },
        Stage {
            name: "runs_a_script",
            title: "prints its URL, then GET /cgi-bin/with-length.sh runs the script: 200 `exact`",
            hint: "lessons/03-cgi.md, \"From URL to script\": in `answer`, let `script_for` \
                   send /cgi-bin/ paths to cgi::resolve, then call cgi::serve",
            hole: 3,
            run: runs_a_script,
        },
        Stage {
            name: "request_variables",
            title: "printenv sees REQUEST_METHOD, SCRIPT_NAME, PATH_INFO and QUERY_STRING",
            hint: "pass the request itself (its path, with the query) to cgi::resolve and \
                   cgi::serve",
            hole: 3,
            run: request_variables,
        },
        Stage {
            name: "connection_variables",
            title: "printenv sees SERVER_PORT, REMOTE_ADDR and an absolute PATH_TRANSLATED",
            hint: "the Gateway carries the connection's addresses and the absolute --directory",
            hole: 3,
            run: connection_variables,
        },
        Stage {
            name: "post_body_on_stdin",
            title: "a POST body, plain and chunked, reaches the script's stdin",
            hint: "Connection::read_body collects the body; give it to cgi::serve unchanged",
            hole: 3,
            run: post_body_on_stdin,
        },
        Stage {
            name: "local_redirect_followed",
            title: "`Location: /cgi-bin/with-length.sh` from a script is served in its place",
            hint: "cgi::serve follows a local redirect itself (RFC 3875 §6.2.2), asking \
                   `script_for` about the new path: make every request go through cgi::serve, \
                   and `script_for` answer for any path, not just the first request's",
            hole: 3,
            run: local_redirect_followed,
        },
        Stage {
            name: "redirect_loop_stopped",
            title: "a script redirecting to itself ends in 500, not a hang",
            hint: "cgi::serve counts local redirects and answers 500 after \
                   cgi::MAX_LOCAL_REDIRECTS: do not follow a redirect yourself",
            hole: 3,
            run: redirect_loop_stopped,
        },
        Stage {
            name: "static_files",
            title: "paths outside /cgi-bin/ are static files: 200 for a file, 404 otherwise",
            hint: "`script_for` says Ok(None) for anything not under CGI_PREFIX, and the \
                   other closure answers it with serve_static",
            hole: 3,
            run: static_files,
        },
        Stage {
            name: "refusals",
            title: "missing script 404, not executable 403, `..` 400",
            hint: "cgi::resolve returns Rejections: `script_for` returns resolve's, and \
                   cgi::serve answers it",
            hole: 3,
            run: refusals,
        },
        Stage {
            name: "two_clients_at_once",
            title: "a client that has sent half a request does not block the next one",
            hint: "one thread per connection: thread::spawn(move || serve_connection(...))",
            hole: 3,
            run: two_clients_at_once,
        },
        Stage {
            name: "no_zombies",
            title: "after 100 script runs, the server has no zombie children",
            hint: "cgi::serve reaps every script; make sure each request goes through it",
            hole: 3,
            run: no_zombies,
        },
        Stage {
            name: "sigterm_exits_0",
            title: "SIGTERM ends it with exit status 0",
            hint: "main installs the termination handler before anything else",
            hole: 3,
            run: sigterm_exits_0,
        },
    ],
};

/// The flags every stage starts the server with: lesson 03's test scripts
/// and static pages (tests/fixtures/, shipped in the repository).
fn args() -> Vec<String> {
    vec![
        "--cgi-dir".into(),
        fixtures::arg("tests/fixtures/cgi-bin"),
        "-d".into(),
        fixtures::arg("tests/fixtures/lesson03-www"),
    ]
}

fn start(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[]).map(drop)
}

/// GET `target` over HTTP/1.0; the `try:` line is the same with curl, and
/// shows `status`.
fn get_expecting(ctx: &mut Ctx, target: &str, status: u16) -> Result<RawResponse, Failure> {
    let curl = ctx.curl("-v --http1.0 --path-as-is", target);
    ctx.reproduce(curl, Expect::Status(status));
    let request = format!("GET {target} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    checks::ask(ctx, request.as_bytes())
}

fn get(ctx: &mut Ctx, target: &str) -> Result<RawResponse, Failure> {
    get_expecting(ctx, target, 200)
}

fn expect_status(ctx: &Ctx, raw: &RawResponse, status: u16) -> Result<(), Failure> {
    ctx.ensure(raw.status() == Some(status), format!("status {status}"))
}

/// `NAME=value` lines of a printenv.sh answer.
fn variable(raw: &RawResponse, name: &str) -> Option<String> {
    String::from_utf8_lossy(raw.body())
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")).map(str::to_string))
}

fn expect_variable(ctx: &Ctx, raw: &RawResponse, name: &str, value: &str) -> Result<(), Failure> {
    ctx.ensure(
        variable(raw, name).as_deref() == Some(value),
        format!("the line `{name}={value}` in printenv's output"),
    )
}

fn refuses_bad_requests(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let curl = ctx.curl("-v -X DELETE", "/cgi-bin/printenv.sh");
    ctx.reproduce(curl, Expect::Status(501));
    let raw = checks::ask(
        ctx,
        b"DELETE /cgi-bin/printenv.sh HTTP/1.0\r\nHost: h\r\n\r\n",
    )?;
    expect_status(ctx, &raw, 501)?;
    ctx.clear_transcript();
    let garbage = b"HELLO THERE\r\n\r\n";
    let nc = ctx.nc(garbage);
    ctx.reproduce(nc, Expect::Status(400));
    let raw = checks::ask(ctx, garbage)?;
    expect_status(ctx, &raw, 400)
}

fn runs_a_script(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let raw = get(ctx, "/cgi-bin/with-length.sh")?;
    expect_status(ctx, &raw, 200)?;
    ctx.ensure(raw.body() == b"exact\n", "the body `exact` and a newline")
}

fn request_variables(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let raw = get(ctx, "/cgi-bin/printenv.sh/a/b?x=1&y=2")?;
    let curl = ctx.curl("-v --http1.0", "/cgi-bin/printenv.sh/a/b?x=1&y=2");
    ctx.reproduce_noting(
        curl,
        "printenv's lines REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING",
        Expect::Shows("QUERY_STRING=x=1&y=2"),
    );
    expect_status(ctx, &raw, 200)?;
    expect_variable(ctx, &raw, "REQUEST_METHOD", "GET")?;
    expect_variable(ctx, &raw, "SCRIPT_NAME", "/cgi-bin/printenv.sh")?;
    expect_variable(ctx, &raw, "PATH_INFO", "/a/b")?;
    expect_variable(ctx, &raw, "QUERY_STRING", "x=1&y=2")?;
    expect_variable(ctx, &raw, "SERVER_PROTOCOL", "HTTP/1.0")
}

fn connection_variables(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let port = ctx.server().addr.port().to_string();
    let raw = get(ctx, "/cgi-bin/printenv.sh/a/b")?;
    let curl = ctx.curl("-v --http1.0", "/cgi-bin/printenv.sh/a/b");
    ctx.reproduce_noting(
        curl,
        "printenv's lines SERVER_PORT, REMOTE_ADDR, PATH_TRANSLATED",
        Expect::Shows("REMOTE_ADDR=127.0.0.1"),
    );
    expect_status(ctx, &raw, 200)?;
    expect_variable(ctx, &raw, "SERVER_PORT", &port)?;
    expect_variable(ctx, &raw, "REMOTE_ADDR", "127.0.0.1")?;
    let www = fixtures::repo()
        .join("tests/fixtures/lesson03-www")
        .canonicalize()
        .unwrap_or_default();
    expect_variable(
        ctx,
        &raw,
        "PATH_TRANSLATED",
        &format!("{}/a/b", www.display()),
    )
}

fn post_body_on_stdin(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let curl = ctx.curl("-v --http1.0 -d 'hello world'", "/cgi-bin/echo-body.sh");
    ctx.reproduce_noting(curl, "the body comes back", Expect::Shows("hello world"));
    let plain =
        b"POST /cgi-bin/echo-body.sh HTTP/1.0\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
    let raw = checks::ask(ctx, plain)?;
    expect_status(ctx, &raw, 200)?;
    ctx.ensure(
        raw.body() == b"hello world",
        "the body echoed back: `hello world`",
    )?;
    ctx.clear_transcript();
    let curl = ctx.curl(
        "-v -H 'Transfer-Encoding: chunked' -d 'hello world'",
        "/cgi-bin/echo-body.sh",
    );
    ctx.reproduce_noting(
        curl,
        "the script saw CONTENT_LENGTH=11 (its X-Content-Length header)",
        Expect::Shows("X-Content-Length: 11"),
    );
    let chunked = b"POST /cgi-bin/echo-body.sh HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\
        Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let raw = checks::ask(ctx, chunked)?;
    expect_status(ctx, &raw, 200)?;
    ctx.ensure(
        raw.header("x-content-length").as_deref() == Some("11"),
        "CONTENT_LENGTH=11 for a chunked body of 11 bytes",
    )
}

fn local_redirect_followed(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let raw = get(ctx, "/cgi-bin/goto.sh")?;
    let curl = ctx.curl("-v --http1.0", "/cgi-bin/goto.sh");
    ctx.reproduce_noting(
        curl,
        "200 and with-length.sh's body, `exact`, with no Location header",
        Expect::Shows("exact"),
    );
    expect_status(ctx, &raw, 200)?;
    ctx.ensure(
        raw.header("location").is_none(),
        "no Location header: the server followed it",
    )?;
    ctx.ensure(raw.body() == b"exact\n", "with-length.sh's body, `exact`")
}

fn redirect_loop_stopped(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let raw = get_expecting(ctx, "/cgi-bin/loop.sh", 500)?;
    expect_status(ctx, &raw, 500)
}

fn static_files(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let raw = get(ctx, "/note.txt")?;
    expect_status(ctx, &raw, 200)?;
    ctx.ensure(raw.body() == b"plain file\n", "note.txt's contents")?;
    ctx.clear_transcript();
    let raw = get_expecting(ctx, "/no-such-file", 404)?;
    expect_status(ctx, &raw, 404)
}

fn refusals(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    for (target, status) in [
        ("/cgi-bin/no-such-script", 404),
        ("/cgi-bin/not-executable.sh", 403),
        ("/cgi-bin/%2e%2e/cgi-bin/printenv.sh", 400),
    ] {
        ctx.clear_transcript();
        let raw = get_expecting(ctx, target, status)?;
        expect_status(ctx, &raw, status)?;
    }
    Ok(())
}

fn half_a_request(ctx: &mut Ctx, stream: &mut std::net::TcpStream) -> Result<(), Failure> {
    ctx.send(
        stream,
        b"GET /cgi-bin/with-length.sh HTTP/1.1\r\nHost: h\r\n",
    )
}

fn answered_200(ctx: &mut Ctx, stream: &mut std::net::TcpStream) -> Result<(), Failure> {
    let raw = RawResponse::new(ctx.recv_to_close(stream)?);
    expect_status(ctx, &raw, 200)
}

fn two_clients_at_once(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    let port = ctx.port_hint();
    let curl = ctx.curl("-v -m 3 --http1.0", "/cgi-bin/with-length.sh");
    ctx.reproduce_noting(
        format!(
            "{{ printf 'GET /cgi-bin/with-length.sh HTTP/1.1\\r\\nHost: h\\r\\n'; sleep 5; }} | nc -q 0 127.0.0.1 {port} & sleep 0.5; {curl}"
        ),
        "nc holds half a request for 5 s; curl must be answered meanwhile, not time out (-m 3)",
        Expect::Status(200),
    );
    let request = b"GET /cgi-bin/with-length.sh HTTP/1.0\r\nHost: h\r\n\r\n";
    checks::serves_while_busy(
        ctx,
        half_a_request,
        2,
        request,
        answered_200,
        Duration::from_secs(5),
    )
}

fn no_zombies(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx)?;
    for _ in 0..100 {
        let raw = get(ctx, "/cgi-bin/with-length.sh")?;
        expect_status(ctx, &raw, 200)?;
    }
    let port = ctx.port_hint();
    ctx.reproduce_noting(
        format!(
            "for i in $(seq 100); do curl -s -o /dev/null {}; done; echo \"zombies: $(ps -o stat= --ppid {} | grep -c Z)\"",
            ctx.url("/cgi-bin/with-length.sh"),
            ctx.pid_of_server()
        ),
        format!("no child of the server on port {port} is a zombie (state Z)"),
        Expect::Shows("zombies: 0"),
    );
    let pid = ctx.server().pid();
    let zombies = ladder_harness::zombies_of(pid, Duration::from_secs(10));
    ctx.ensure(zombies == 0, "no child of the server in state Z (zombie)")
        .map_err(|f| {
            f.detail(format!(
                "{zombies} zombies; see `ps -o pid,stat,cmd --ppid {pid}`"
            ))
        })
}

fn round_trip(ctx: &mut Ctx) -> Result<(), Failure> {
    let raw = get(ctx, "/cgi-bin/with-length.sh")?;
    expect_status(ctx, &raw, 200)
}

fn sigterm_exits_0(ctx: &mut Ctx) -> Result<(), Failure> {
    checks::sigterm_exits_0(ctx, &[], round_trip)
}
