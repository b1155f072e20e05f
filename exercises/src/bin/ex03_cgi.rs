//! # Lesson 03: CGI, a program per request
//!
//! Lecture: `lessons/03-cgi.md` · Exercise: `exercises/ex03_cgi/`
//!
//! New here: the Common Gateway Interface (RFC 3875). A request for
//! `/cgi-bin/NAME` starts the program `NAME` with the request written into
//! its environment and stdin, and relays what it prints as the response.
//! The protocol lives in `ladder::cgi` (`src/cgi.rs`, read it after `main`);
//! this file is the server around it: a thread per connection, which paths
//! are scripts, static files for every other path.
//! From earlier lessons: the blocking connection (`ladder::connection`, 02:
//! read a request before a deadline, read its body, respond, refuse);
//! request parsing and response framing (`ladder::http`, 02); the access
//! log (`ladder::log`, 02).
//! Crates used: clap, nix (through `ladder::cgi`: poll, killpg), httparse
//! (through `ladder::http`).
//!
//! Run: `cargo run --bin lesson03_cgi`
//! Try: `curl -v 'http://127.0.0.1:8003/cgi-bin/printenv.sh/foo/bar?x=1'`,
//! then `curl -d 'name=Ada' http://127.0.0.1:8003/cgi-bin/form.py`, and the
//! same with `--trace` to watch each fork+exec+waitpid.
//!
//! Reading order: `main` → `run` → `serve_connection` → `answer` →
//! `ladder::cgi::serve` → `serve_static`.

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use ladder::cgi::{self, Gateway};
use ladder::cli::ListenArgs;
use ladder::connection::{Connection, Got};
use ladder::http::{Body, Limits, Request, Response};
use ladder::trace;

/// A client must send a whole request head within this time, and an idle
/// keep-alive connection is closed after it. In production, 5 to 60 seconds.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Where CGI scripts are found in the URL space (Python's default too).
const CGI_PREFIX: &str = "/cgi-bin";

/// RFC 3875 lets a script handle any method; we pass on the three a browser
/// sends and answer the rest with 501, as Python does.
const METHODS: &[&str] = &["GET", "HEAD", "POST"];

/// Lesson 03: a CGI runner (RFC 3875). /cgi-bin/NAME runs a script; other paths are static files.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
        cargo run --bin lesson03_cgi\n  \
        curl -v 'http://127.0.0.1:8003/cgi-bin/printenv.sh/foo/bar?x=1'\n  \
        curl -d 'name=Ada' http://127.0.0.1:8003/cgi-bin/form.py\n  \
        cargo run --bin lesson03_cgi -- --trace      (fork, exec and wait for each request)"
)]
struct Args {
    #[command(flatten)]
    listen: ListenArgs<3>,

    /// Directory of CGI scripts, served under /cgi-bin/ [default: the repository's cgi-bin/]
    #[arg(long, value_name = "DIR")]
    cgi_dir: Option<PathBuf>,

    /// Directory of static files, served for every path outside /cgi-bin/
    #[arg(long, short = 'd', value_name = "DIR", default_value = ".")]
    directory: PathBuf,

    /// Seconds a script may run before its process group is killed (504)
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
}

/// What every connection thread needs to know; shared read-only through an
/// `Arc`, so no thread can change it under another.
struct Site {
    /// Where `/cgi-bin/NAME` finds `NAME`. Only files directly in it run:
    /// no subdirectories, and the scripts must be executable.
    cgi_dir: PathBuf,
    /// The static root, also `PATH_TRANSLATED`'s base.
    directory: PathBuf,
    /// How long one script may run (`--timeout`).
    timeout: Duration,
}

fn main() -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    // Before any thread exists (see `ladder::shutdown`). Scripts run in
    // process groups of their own, so Ctrl-C sent to ours would miss them:
    // kill them explicitly, then exit.
    let shutdown = ladder::shutdown::on_termination(|signal| {
        trace!("exit(0) on {signal}");
        cgi::kill_running_scripts();
        std::process::exit(0);
    });
    // Setup errors (the port is taken) end the program with a message and
    // exit status 1; anything after setup is answered per connection.
    match shutdown.and_then(|()| run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lesson03_cgi: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: thread_per_connection
/// Accept connections for ever, one thread each. The lesson's cost is the
/// process per *request*; a thread per connection keeps the server around it
/// out of the way (two slow clients do not queue behind each other) and is
/// cheap next to a fork+exec. Lesson 04 counts what threads cost.
fn run(args: Args) -> io::Result<()> {
    let site = Arc::new(Site::from_args(&args)?);
    let addr = args.listen.addr();
    let listener = ladder::cli::listen(addr)?;
    // The first stdout line; tests and the grader read the port from it.
    ladder::cli::announce("http", listener.local_addr()?)?;
    // ANCHOR: accept_loop
    // TODO(ex03): for each connection from `listener.incoming()`: log an
    //   accept error and go on; otherwise start a thread (`thread::spawn`; give it
    //   its own `Arc::clone(&site)`) that runs `serve_connection` and traces its
    //   error (`trace!`). Then `Ok(())` (the loop never ends).
    todo!("ex03: accept, a thread per connection")
    // ANCHOR_END: accept_loop
}
// ANCHOR_END: thread_per_connection

impl Site {
    /// Check the directories before announcing anything: a typo in a flag
    /// should stop the server at once, not 404 every request.
    fn from_args(args: &Args) -> io::Result<Site> {
        // The bundled examples, found from wherever `cargo run` was started:
        // the path of this repository is compiled in.
        let bundled = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/cgi-bin"));
        Ok(Site {
            // Absolute paths: a script runs in its own directory (RFC 3875
            // §7.2), where a relative script path or PATH_TRANSLATED would
            // point somewhere else.
            cgi_dir: absolute(args.cgi_dir.as_ref().unwrap_or(&bundled), "--cgi-dir")?,
            directory: absolute(&args.directory, "--directory")?,
            timeout: Duration::from_secs(args.timeout),
        })
    }
}

/// The canonical path of an existing directory, or an error naming the flag.
fn absolute(dir: &Path, flag: &str) -> io::Result<PathBuf> {
    let what = dir.display();
    match dir.canonicalize() {
        Ok(path) if path.is_dir() => Ok(path),
        Ok(_) => Err(io::Error::other(format!("{flag} {what}: not a directory"))),
        Err(err) => Err(io::Error::new(err.kind(), format!("{flag} {what}: {err}"))),
    }
}

/// Requests on one connection, one after another (keep-alive), until the
/// client closes, stays silent past [`HEAD_TIMEOUT`], or a response must end it.
fn serve_connection(stream: TcpStream, site: &Site) -> io::Result<()> {
    let (peer, local) = (stream.peer_addr()?, stream.local_addr()?);
    trace!("accept -> {peer} on a new thread");
    // A client that stops reading must not hold a script (and this thread)
    // for ever: a write that makes no progress for this long fails, and
    // the script is killed and reaped on the way out.
    stream.set_write_timeout(Some(HEAD_TIMEOUT))?;
    // TCP_NODELAY: a response goes out in several writes (our head, then
    // the script's output as it comes). With Nagle's algorithm on, the
    // second small write waits for the client's ACK of the first, which the
    // client delays by up to 40 ms: every response would take 40 ms.
    stream.set_nodelay(true)?;
    // Lesson 02's connection; its reads and writes stay out of `--trace`,
    // which here tells the story of each script's process.
    let mut conn = Connection::new(stream, peer, Limits::default()).trace_io(false);
    let gateway = gateway(peer, local, site);
    loop {
        let deadline = Some(Instant::now() + HEAD_TIMEOUT);
        let request = match conn.read_request(deadline)? {
            Got::Done(request) => request,
            other => return conn.refuse(None, other), // quiet if idle or gone
        };
        // The whole body before the script starts: it is told CONTENT_LENGTH.
        let body = match request.check_method(METHODS) {
            Ok(()) => conn.read_body(&request, deadline)?,
            Err(rejection) => Got::Rejected(rejection),
        };
        let body = match body {
            Got::Done(body) => body,
            other => return conn.refuse(Some(&request), other),
        };
        if !answer(&mut conn, &request, &body, site, &gateway)? {
            return Ok(());
        }
    }
}

/// What a script may learn about the connection besides the request
/// (RFC 3875 calls these server-supplied values meta-variables too).
fn gateway(peer: SocketAddr, local: SocketAddr, site: &Site) -> Gateway {
    // ANCHOR: gateway
    // TODO(ex03): the `Gateway` for this connection (its fields: `peer`, `local`,
    //   `server_software`, `document_root`, `timeout`, `log_tag`): the client's and
    //   our addresses, SERVER_SOFTWARE ("server-ladder/" + the crate version:
    //   `env!("CARGO_PKG_VERSION")`), `site.directory` as document_root,
    //   `site.timeout`, log tag "lesson03".
    todo!("ex03: build the Gateway")
    // ANCHOR_END: gateway
}

// ANCHOR: dispatch
/// Answer one request; `Ok(true)` if the connection may carry another.
/// `ladder::cgi::serve` runs the script `script_for` finds, or answers with
/// a static file a path that names none. A script's local redirect
/// (`Location: /path`, RFC 3875 §6.2.2) comes back to `script_for` as a
/// GET for that path, never seen by the client.
fn answer(
    conn: &mut Connection,
    request: &Request,
    body: &[u8],
    site: &Site,
    gateway: &Gateway,
) -> io::Result<bool> {
    // TODO(ex03): `cgi::serve` does the rest if you tell it which paths are
    //   scripts: a `script_for` closure that answers Ok(None) for a path outside
    //   `CGI_PREFIX` and `cgi::resolve(path, CGI_PREFIX, &site.cgi_dir)` for the
    //   others (a script's local redirect comes back through it, as a GET),
    //   and a closure answering the other paths with `serve_static`. Log the
    //   request line the client sent (`ladder::log::access`) with what `Served`
    //   says; return its keep_alive.
    todo!("ex03: say which paths are scripts, serve the request")
}
// ANCHOR_END: dispatch

/// Serve a regular file under `root`, GET and HEAD only. Deliberately
/// minimal: no listings, no ranges, no caching; lesson 04 is the real
/// static server.
fn serve_static(request: &Request, root: &Path) -> Response {
    if let Err(rejection) = request.check_method(&["GET", "HEAD"]) {
        return rejection.to_response();
    }
    // One answer, 404, for "missing", "a directory without index.html" and
    // "outside the root": a client learns nothing about what is where.
    let Some(file) = open_static(root, request.path()) else {
        return Response::error(404, "no such file");
    };
    // The length comes from the open file, not the path, so it describes
    // exactly what we are about to send.
    let Ok(meta) = file.metadata() else {
        return Response::error(500, "the file cannot be read");
    };
    let len = meta.len();
    Response::new(200)
        .header("Content-Type", content_type(request.path()))
        .body(Body::File { file, len })
}

/// The file for a URL path, if it is a regular file inside `root`. Each
/// segment is decoded and refused if it is `.`/`..` or hides a `/` or NUL;
/// symlinks are followed only if they stay inside `root`.
fn open_static(root: &Path, url_path: &str) -> Option<File> {
    // Built segment by segment from decoded parts, never by pasting the
    // URL onto the root: `PathBuf::push` of an absolute part would replace
    // the whole path, which is why a part holding `/` is refused.
    let mut path = root.to_path_buf();
    for segment in url_path.split('/').filter(|s| !s.is_empty()) {
        let decoded = String::from_utf8(cgi::percent_decode(segment)).ok()?;
        if decoded == "." || decoded == ".." || decoded.contains(['/', '\0']) {
            return None;
        }
        path.push(decoded);
    }
    if path.is_dir() {
        path.push("index.html");
    }
    // canonicalize(3) resolves every symlink and `..`; comparing the result
    // with the real root is what catches a symlink pointing outside.
    let real = path.canonicalize().ok()?;
    if !real.starts_with(root.canonicalize().ok()?) || !real.is_file() {
        return None;
    }
    File::open(real).ok()
}

/// A few common types by extension. In production, a full table (lesson 04).
/// A CGI script names its own type in `Content-Type`; this is only for the
/// static fallback, and browsers sniff what they are not told.
fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "md" => "text/plain; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    }
}
