//! Exercise 04: the `python3 -m http.server` clone on a thread pool
//! (`lesson04_http_server`).
//!
//! The holes are the accept loop that hands connections to the pool
//! (`ladder::pool`), the job that serves one, and the shutdown signal; the
//! path rules come from `ladder::static_files`. The
//! stages still check the whole contract, traversal included, because a
//! solution that answers requests some other way must not leak either.
//! Every stage serves the small site shipped in `exercises/fixtures/ex04/`:
//! `www/` (the root) beside `secret.txt` (which must never come back).

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::checks::{self, RawResponse};
use crate::fixtures;
use crate::runner::{Ctx, Exercise, Expect, Failure, Stage};

pub const EXERCISE: Exercise = Exercise {
    name: "ex04_http_server",
    lesson: "lesson04_http_server",
    port: 8004,
    args,
    holes: &["accept_loop", "serve", "graceful_shutdown"],
    listed: true,
    stages: &[
        Stage {
            name: "stays_up_and_accepts",
            title: "keeps running after the announce line, and accepts connections",
            hint: "lessons/04-http-server.md, \"The pool\": start the ThreadPool, then loop: \
                   accept(2) and hand the pool a `move` job calling `serve`",
            hole: 1,
            run: checks::stays_up_and_accepts,
        },
        Stage {
            name: "serves_a_file",
            title: "GET /hello.txt gets 200, the file's bytes and its Content-Length",
            hint: "`serve` answers the connection with `serve_connection`; an error ends \
                   that connection only (trace it)",
            hole: 2,
            run: serves_a_file,
        },
        Stage {
            name: "lists_a_directory",
            title: "GET / gets Python's directory listing",
            hint: "static_files::respond builds it; `serve` must hand the connection to \
                   `serve_connection`, which asks it for every request",
            hole: 2,
            run: lists_a_directory,
        },
        Stage {
            name: "refuses_traversal",
            title: "../, %2e%2e, %2f, backslash, NUL and absolute URLs never reach outside the root",
            hint: "answer every request through static_files::respond (see `serve_connection`); \
                   read \"From a URL to a file name\" in the lesson",
            hole: 2,
            run: refuses_traversal,
        },
        Stage {
            name: "refuses_symlink_out",
            title: "a symlink leading outside the root is refused (403), one inside is served",
            hint: "static_files::resolve opens every path beneath the root (openat2, \
                   RESOLVE_BENEATH); do not open paths yourself",
            hole: 2,
            run: refuses_symlink_out,
        },
        Stage {
            name: "serves_while_busy",
            title: "with --threads 4, three clients are served while a fourth sends half a head",
            hint: "the accept loop must hand each connection to the pool and go straight \
                   back to accept(2); serving it on the main thread serves one client at a time",
            hole: 2,
            run: serves_while_busy,
        },
        Stage {
            name: "silent_client_timeout",
            title: "with --threads 1 --timeout 1, a silent client is dropped and the next one served",
            hint: "`conn.read_request` gives up on a silent client at --timeout and \
                   `serve_connection` returns; `serve` must then return too, so that the only \
                   worker takes the next job",
            hole: 2,
            run: silent_client_timeout,
        },
        Stage {
            name: "keep_alive_http11",
            title: "with -p HTTP/1.1, two requests on one connection get two answers",
            hint: "`serve` must give the whole connection to `serve_connection`, which \
                   answers request after request while the client keeps it open",
            hole: 2,
            run: keep_alive_http11,
        },
        Stage {
            name: "graceful_shutdown",
            title: "SIGTERM during a large download: the download completes, then exit 0",
            hint: "`on_signal`: set STOPPING and shutdown(2) the listening socket, so accept \
                   returns; then leave the loop and drop the pool, which finishes the jobs in \
                   flight and joins the workers",
            hole: 3,
            run: graceful_shutdown,
        },
        Stage {
            name: "sigterm_exits_0",
            title: "SIGTERM with no client ends it with exit status 0",
            hint: "when accept fails with STOPPING set, break out of the loop, drop the pool \
                   and return Ok(()): `main` turns that into exit status 0",
            hole: 3,
            run: sigterm_exits_0,
        },
    ],
};

const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";
const HELLO: &[u8] = b"hello, world!\n";
const BIG: usize = 8 * 1024 * 1024;

/// The site's root, `exercises/fixtures/ex04/www`, with `big.bin` made.
fn root() -> PathBuf {
    fixtures::repo().join("exercises/fixtures/ex04/www")
}

/// Every stage serves the shipped site.
fn args() -> Vec<String> {
    vec!["-d".into(), root().display().to_string()]
}

/// Start the server on the site, with the stage's own flags.
fn start(ctx: &mut Ctx, extra: &[&str]) -> Result<(), Failure> {
    ctx.start(extra).map(drop)
}

/// GET `target`; the `try:` line sends the same bytes with nc and shows `status`.
fn get(ctx: &mut Ctx, target: &str, status: u16) -> Result<RawResponse, Failure> {
    let request = format!("GET {target} HTTP/1.0\r\n\r\n");
    let nc = ctx.nc(request.as_bytes());
    ctx.reproduce(nc, Expect::Status(status));
    checks::ask(ctx, request.as_bytes())
}

fn serves_a_file(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &[])?;
    let response = get(ctx, "/hello.txt", 200)?;
    let expected = "200, the bytes of hello.txt, Content-Length: 14";
    ctx.ensure(response.status() == Some(200), expected)?;
    ctx.ensure(response.body() == HELLO, expected)?;
    ctx.ensure(
        response.header("Content-Length").as_deref() == Some("14"),
        expected,
    )
}

fn lists_a_directory(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &[])?;
    let response = get(ctx, "/", 200)?;
    let curl = ctx.curl("-v", "/");
    ctx.reproduce_noting(
        curl,
        "Python's listing: docs/ with a slash, up@ for the symlink",
        Expect::Shows("up@"),
    );
    let body = String::from_utf8_lossy(response.body()).into_owned();
    ctx.ensure(
        response.status() == Some(200)
            && body.contains("<title>Directory listing for /</title>")
            && body.contains("<li><a href=\"docs/\">docs/</a></li>")
            && body.contains("<li><a href=\"up/\">up@</a></li>"),
        "200 and Python's listing: docs/ with a slash, the symlink up with an @",
    )?;
    ctx.clear_transcript();
    let redirect = get(ctx, "/docs?x=1", 301)?;
    ctx.ensure(
        redirect.status() == Some(301)
            && redirect.header("Location").as_deref() == Some("/docs/?x=1"),
        "301 with Location: /docs/?x=1 for a directory asked for without its slash",
    )
}

fn refuses_traversal(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &[])?;
    let vectors = [
        "/../secret.txt",
        "/docs/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2fsecret.txt",
        "/docs%2f..%2f..%2fsecret.txt",
        "/..\\secret.txt",
        "/..%5csecret.txt",
        "/hello.txt%00",
        "http://127.0.0.1/../secret.txt",
    ];
    for target in vectors {
        ctx.clear_transcript();
        let response = get(ctx, target, 400)?;
        let leaked = String::from_utf8_lossy(response.body()).contains(SECRET);
        ctx.ensure(
            !leaked && response.status() == Some(400),
            format!("400 Bad Request for {target}, and never the secret"),
        )?;
    }
    Ok(())
}

fn refuses_symlink_out(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &[])?;
    for target in ["/up/secret.txt", "/up/"] {
        ctx.clear_transcript();
        let response = get(ctx, target, 403)?;
        let leaked = String::from_utf8_lossy(response.body()).contains(SECRET);
        ctx.ensure(
            !leaked && response.status() == Some(403),
            format!("403 Forbidden for {target} (up -> the directory above the root)"),
        )?;
    }
    ctx.clear_transcript();
    let inside = get(ctx, "/link.txt", 200)?;
    ctx.ensure(
        inside.status() == Some(200) && inside.body() == HELLO,
        "200 and hello.txt's bytes for /link.txt, a symlink that stays inside",
    )
}

const HALF_HEAD: &[u8] = b"GET /hello.txt HTTP/1.0\r\nHost: x\r\n";
const WHOLE: &[u8] = b"GET /hello.txt HTTP/1.0\r\n\r\n";

/// Connection 1 sends half a head and waits: its worker is stuck reading.
fn occupy(ctx: &mut Ctx, stream: &mut TcpStream) -> Result<(), Failure> {
    ctx.send(stream, HALF_HEAD)
}

fn answered(ctx: &mut Ctx, stream: &mut TcpStream) -> Result<(), Failure> {
    let bytes = ctx.recv_to_close(stream)?;
    let response = RawResponse::new(bytes);
    ctx.ensure(
        response.status() == Some(200) && response.body() == HELLO,
        "200 and hello.txt",
    )
}

fn serves_while_busy(ctx: &mut Ctx) -> Result<(), Failure> {
    let port = ctx.port_hint();
    let curl = ctx.curl("-v -m 3", "/hello.txt");
    // The stage starts the server itself (in serves_while_busy): the
    // `start:` line must name its flags, so say them before.
    let args = ["--threads", "4", "--timeout", "30"];
    ctx.start(&args)?;
    ctx.reproduce_noting(
        format!(
            "{{ printf 'GET /hello.txt HTTP/1.0\\r\\nHost: x\\r\\n'; sleep 5; }} | nc -q 0 127.0.0.1 {port} & sleep 0.5; {curl}"
        ),
        "nc holds half a head for 5 s; curl must be answered meanwhile, not time out (-m 3)",
        Expect::Status(200),
    );
    let patience = Duration::from_secs(5);
    checks::serves_while_busy(ctx, occupy, 3, WHOLE, answered, patience)
}

fn silent_client_timeout(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["--threads", "1", "--timeout", "1"])?;
    let port = ctx.port_hint();
    let curl = ctx.curl("-v -m 5", "/hello.txt");
    ctx.reproduce_noting(
        format!("nc 127.0.0.1 {port} < /dev/null & sleep 0.3; {curl}"),
        "nc sends nothing and holds the only worker; after --timeout (1 s) it is dropped, \
         and curl is answered",
        Expect::Status(200),
    );
    let silent = ctx.connect()?;
    let request = b"GET /hello.txt HTTP/1.0\r\n\r\n";
    let response = checks::ask(ctx, request)
        .map_err(|f| f.expecting("an answer once the silent client's second is up"))?;
    ctx.ensure(
        response.status() == Some(200),
        "200 for the second client, after the silent one was dropped",
    )?;
    drop(silent);
    Ok(())
}

fn keep_alive_http11(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["-p", "HTTP/1.1"])?;
    let two = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /docs/ HTTP/1.1\r\nHost: x\r\n\r\n";
    let nc = ctx.nc(two);
    ctx.reproduce_noting(
        nc,
        "two answers on one connection: hello.txt, then docs/index.html",
        Expect::Shows("<h1>docs</h1>"),
    );
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, two)?;
    let mut leftover = Vec::new();
    let first = ctx.recv_response(&mut stream, &mut leftover, false)?;
    let second = ctx.recv_response(&mut stream, &mut leftover, false)?;
    ctx.ensure(
        first.head.status == 200
            && first.body == HELLO
            && first.head.header("Connection") == Some("keep-alive")
            && second.head.status == 200
            && second.body == b"<h1>docs</h1>",
        "two 200 answers on one connection (hello.txt, then docs/index.html), \
         the first with Connection: keep-alive",
    )
}

fn graceful_shutdown(ctx: &mut Ctx) -> Result<(), Failure> {
    let big = root().join("big.bin");
    fixtures::ensure_big(&big, BIG).map_err(|err| {
        ctx.fail(format!("to write {}", big.display()))
            .detail(err.to_string())
    })?;
    start(ctx, &["--threads", "2"])?;
    let curl = ctx.curl(
        "-sS --limit-rate 2M -o /dev/null -w '%{http_code} %{size_download}\\n'",
        "/big.bin",
    );
    let kill = format!("kill -TERM {}", ctx.pid_of_server());
    ctx.reproduce_noting(
        format!("{curl} & sleep 1; {kill}; wait"),
        format!("curl gets all of big.bin (200 {BIG}) although SIGTERM came in the middle; then the server exits 0"),
        Expect::ShowsAndServerExits0("200 8388608"),
    );
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, b"GET /big.bin HTTP/1.0\r\n\r\n")?;
    // Read a little, slowly, so the server is mid-response; then SIGTERM.
    let mut received = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while received.len() < 1024 * 1024 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = ctx.server().signal(nix::sys::signal::Signal::SIGTERM);
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
    let response = RawResponse::new(received);
    let body_len = response.head_end.map(|_| response.body().len());
    ctx.ensure(
        body_len == Some(BIG),
        format!("all {BIG} bytes of big.bin, although SIGTERM came in the middle"),
    )
    .map_err(|f| f.detail(format!("got {body_len:?} body bytes")))?;
    let status = ctx.server().wait_exit(Duration::from_secs(10));
    ctx.ensure(
        status.is_some_and(|s| s.success()),
        "exit status 0 once the download is done",
    )
    .map_err(|f| f.detail(format!("exit: {status:?}")))
}

fn round_trip(ctx: &mut Ctx) -> Result<(), Failure> {
    let response = get(ctx, "/hello.txt", 200)?;
    ctx.ensure(response.status() == Some(200), "200 for /hello.txt")
}

fn sigterm_exits_0(ctx: &mut Ctx) -> Result<(), Failure> {
    checks::sigterm_exits_0(ctx, &[], round_trip)
}
