//! Exercise 04: the `python3 -m http.server` clone on a thread pool
//! (`lesson04_http_server`).
//!
//! The holes are the accept loop that hands connections to the pool
//! (`ladder::pool`), the job that serves one, and the shutdown signal; the
//! path rules come from `ladder::static_files`. The
//! stages still check the whole contract, traversal included, because a
//! solution that answers requests some other way must not leak either.
//! Every stage serves a small site made in a fresh temp dir: `www/` (the
//! root) beside `secret.txt` (which must never come back).

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::checks::{self, RawResponse};
use crate::runner::{Ctx, Exercise, Failure, Stage};

pub const EXERCISE: Exercise = Exercise {
    name: "ex04_http_server",
    lesson: "lesson04_http_server",
    port: 8004,
    stages: &[
        Stage {
            name: "serves_a_file",
            title: "GET /hello.txt gets 200, the file's bytes and its Content-Length",
            hint: "lessons/04-http-server.md, \"The pool\": the accept loop hands each \
                   connection to `pool.execute` as a job (a `move` closure calling `serve`), \
                   and `serve` answers it with `serve_connection`",
            run: serves_a_file,
        },
        Stage {
            name: "lists_a_directory",
            title: "GET / gets Python's directory listing",
            hint: "static_files::respond builds it; `serve` must hand the connection to \
                   `serve_connection`, which asks it for every request",
            run: lists_a_directory,
        },
        Stage {
            name: "refuses_traversal",
            title: "../, %2e%2e, %2f, backslash, NUL and absolute URLs never reach outside the root",
            hint: "answer every request through static_files::respond (see `serve_connection`); \
                   read \"From a URL to a file name\" in the lesson",
            run: refuses_traversal,
        },
        Stage {
            name: "refuses_symlink_out",
            title: "a symlink leading outside the root is refused (403), one inside is served",
            hint: "static_files::resolve opens every path beneath the root (openat2, \
                   RESOLVE_BENEATH); do not open paths yourself",
            run: refuses_symlink_out,
        },
        Stage {
            name: "serves_while_busy",
            title: "with --threads 4, three clients are served while a fourth sends half a head",
            hint: "the accept loop must hand each connection to the pool and go straight \
                   back to accept(2); serving it on the main thread serves one client at a time",
            run: serves_while_busy,
        },
        Stage {
            name: "silent_client_timeout",
            title: "with --threads 1 --timeout 1, a silent client is dropped and the next one served",
            hint: "`conn.read_request` gives up on a silent client at --timeout and \
                   `serve_connection` returns; `serve` must then return too, so that the only \
                   worker takes the next job",
            run: silent_client_timeout,
        },
        Stage {
            name: "keep_alive_http11",
            title: "with -p HTTP/1.1, two requests on one connection get two answers",
            hint: "`serve` must give the whole connection to `serve_connection`, which \
                   answers request after request while the client keeps it open",
            run: keep_alive_http11,
        },
        Stage {
            name: "graceful_shutdown",
            title: "SIGTERM during a large download: the download completes, then exit 0",
            hint: "`on_signal`: set STOPPING and shutdown(2) the listening socket, so accept \
                   returns; then leave the loop and drop the pool, which finishes the jobs in \
                   flight and joins the workers",
            run: graceful_shutdown,
        },
        Stage {
            name: "sigterm_exits_0",
            title: "SIGTERM with no client ends it with exit status 0",
            hint: "when accept fails with STOPPING set, break out of the loop, drop the pool \
                   and return Ok(()): `main` turns that into exit status 0",
            run: sigterm_exits_0,
        },
    ],
};

const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";
const HELLO: &[u8] = b"hello, world!\n";
const BIG: usize = 8 * 1024 * 1024;

/// The served tree, removed when the stage ends.
struct Site {
    base: PathBuf,
}

impl Site {
    fn new(ctx: &Ctx, big: bool) -> Result<Site, Failure> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "grade-ex04-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let made = (|| -> std::io::Result<()> {
            let _ = fs::remove_dir_all(&base);
            let www = base.join("www");
            fs::create_dir_all(www.join("docs"))?;
            fs::write(base.join("secret.txt"), SECRET)?;
            fs::write(www.join("hello.txt"), HELLO)?;
            fs::write(www.join("docs/index.html"), "<h1>docs</h1>")?;
            std::os::unix::fs::symlink("hello.txt", www.join("link.txt"))?;
            std::os::unix::fs::symlink(&base, www.join("up"))?;
            if big {
                let data: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
                fs::write(www.join("big.bin"), data)?;
            }
            Ok(())
        })();
        made.map_err(|err| ctx.fail("a temp dir for the site").detail(err.to_string()))?;
        Ok(Site { base })
    }

    fn root(&self) -> String {
        self.base.join("www").display().to_string()
    }

    fn start(&self, ctx: &mut Ctx, extra: &[&str]) -> Result<(), Failure> {
        let root = self.root();
        let mut args = vec!["-d", root.as_str(), "--quiet"];
        args.extend_from_slice(extra);
        ctx.start(&args)?;
        Ok(())
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

fn get(ctx: &mut Ctx, target: &str) -> Result<RawResponse, Failure> {
    let request = format!("GET {target} HTTP/1.0\r\n\r\n");
    ctx.reproduce(ctx.nc(request.as_bytes()));
    checks::ask(ctx, request.as_bytes())
}

fn serves_a_file(ctx: &mut Ctx) -> Result<(), Failure> {
    let site = Site::new(ctx, false)?;
    site.start(ctx, &[])?;
    let response = get(ctx, "/hello.txt")?;
    let expected = "200, the bytes of hello.txt, Content-Length: 14";
    ctx.ensure(response.status() == Some(200), expected)?;
    ctx.ensure(response.body() == HELLO, expected)?;
    ctx.ensure(
        response.header("Content-Length").as_deref() == Some("14"),
        expected,
    )
}

fn lists_a_directory(ctx: &mut Ctx) -> Result<(), Failure> {
    let site = Site::new(ctx, false)?;
    site.start(ctx, &[])?;
    let response = get(ctx, "/")?;
    let body = String::from_utf8_lossy(response.body()).into_owned();
    ctx.ensure(
        response.status() == Some(200)
            && body.contains("<title>Directory listing for /</title>")
            && body.contains("<li><a href=\"docs/\">docs/</a></li>")
            && body.contains("<li><a href=\"up/\">up@</a></li>"),
        "200 and Python's listing: docs/ with a slash, the symlink up with an @",
    )?;
    let redirect = get(ctx, "/docs?x=1")?;
    ctx.ensure(
        redirect.status() == Some(301)
            && redirect.header("Location").as_deref() == Some("/docs/?x=1"),
        "301 with Location: /docs/?x=1 for a directory asked for without its slash",
    )
}

fn refuses_traversal(ctx: &mut Ctx) -> Result<(), Failure> {
    let site = Site::new(ctx, false)?;
    site.start(ctx, &[])?;
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
        let response = get(ctx, target)?;
        let leaked = String::from_utf8_lossy(response.body()).contains(SECRET);
        ctx.ensure(
            !leaked && response.status() == Some(400),
            format!("400 Bad Request for {target}, and never the secret"),
        )?;
    }
    Ok(())
}

fn refuses_symlink_out(ctx: &mut Ctx) -> Result<(), Failure> {
    let site = Site::new(ctx, false)?;
    site.start(ctx, &[])?;
    for target in ["/up/secret.txt", "/up/"] {
        ctx.clear_transcript();
        let response = get(ctx, target)?;
        let leaked = String::from_utf8_lossy(response.body()).contains(SECRET);
        ctx.ensure(
            !leaked && response.status() == Some(403),
            format!("403 Forbidden for {target} (up -> the directory above the root)"),
        )?;
    }
    ctx.clear_transcript();
    let inside = get(ctx, "/link.txt")?;
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
    let site = Site::new(ctx, false)?;
    let root = site.root();
    ctx.reproduce(
        "cargo ex ex04_http_server -- --threads 4 -d DIR; nc 127.0.0.1 8004 (type one line, \
         wait), then curl http://127.0.0.1:8004/hello.txt in another terminal",
    );
    let args = [
        "-d",
        root.as_str(),
        "--quiet",
        "--threads",
        "4",
        "--timeout",
        "30",
    ];
    let patience = Duration::from_secs(5);
    checks::serves_while_busy(ctx, &args, occupy, 3, WHOLE, answered, patience)
}

fn silent_client_timeout(ctx: &mut Ctx) -> Result<(), Failure> {
    let site = Site::new(ctx, false)?;
    site.start(ctx, &["--threads", "1", "--timeout", "1"])?;
    ctx.reproduce(
        "cargo ex ex04_http_server -- --threads 1 --timeout 1; nc 127.0.0.1 8004 (type \
         nothing), then curl -v http://127.0.0.1:8004/hello.txt",
    );
    let silent = ctx.connect()?;
    let response = get(ctx, "/hello.txt")
        .map_err(|f| f.expecting("an answer once the silent client's second is up"))?;
    ctx.ensure(
        response.status() == Some(200),
        "200 for the second client, after the silent one was dropped",
    )?;
    drop(silent);
    Ok(())
}

fn keep_alive_http11(ctx: &mut Ctx) -> Result<(), Failure> {
    let site = Site::new(ctx, false)?;
    site.start(ctx, &["-p", "HTTP/1.1"])?;
    let two = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /docs/ HTTP/1.1\r\nHost: x\r\n\r\n";
    ctx.reproduce(format!(
        "cargo ex ex04_http_server -- -p HTTP/1.1; {}",
        ctx.nc(two)
    ));
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
    let site = Site::new(ctx, true)?;
    site.start(ctx, &["--threads", "2"])?;
    ctx.reproduce(
        "curl --limit-rate 1M -o /dev/null http://127.0.0.1:8004/big.bin, and kill -TERM \
         the server while it runs: curl must finish, the server exit 0",
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
    let response = get(ctx, "/hello.txt")?;
    ctx.ensure(response.status() == Some(200), "200 for /hello.txt")
}

fn sigterm_exits_0(ctx: &mut Ctx) -> Result<(), Failure> {
    let site = Site::new(ctx, false)?;
    let root = site.root();
    checks::sigterm_exits_0(ctx, &["-d", root.as_str(), "--quiet"], round_trip)
}
