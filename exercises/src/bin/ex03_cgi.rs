//! # Lesson 03: CGI, a program per request
//!
//! Lecture: `lessons/03-cgi.md` · Exercise: `exercises/ex03_cgi/`
//!
//! New here: the Common Gateway Interface (RFC 3875). A request for
//! `/cgi-bin/NAME` starts the program `NAME` with the request written into
//! its environment and stdin, and relays what it prints as the response.
//! The protocol lives in `ladder::cgi` (`src/cgi.rs`, read it after `main`);
//! this file is the server around it: a thread per connection, static files
//! for every other path.
//! From earlier lessons: request parsing, body decoding and response framing
//! (`ladder::http`, 02); the access log (`ladder::log`, 02).
//! Crates used: clap, nix (through `ladder::cgi`: poll, killpg), httparse
//! (through `ladder::http`).
//!
//! Run: `cargo run --bin lesson03_cgi`
//! Try: `curl -v 'http://127.0.0.1:8003/cgi-bin/printenv.sh/foo/bar?x=1'`,
//! then `curl -d 'name=Ada' http://127.0.0.1:8003/cgi-bin/form.py`, and the
//! same with `--trace` to watch each fork+exec+waitpid.
//!
//! Reading order: `main` → `run` → `serve_connection` → `answer` →
//! `ladder::cgi::run` → `serve_static`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::Parser;
use ladder::cgi::{self, Gateway, Outcome};
use ladder::cli::ListenArgs;
use ladder::http::{self, Framing, Limits, Parsed, Rejection, Request, ResponseHead, Target};
use ladder::trace;

/// A client must send a whole request head within this time, and an idle
/// keep-alive connection is closed after it. In production, 5 to 60 seconds.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A script may answer `Location: /other/path`; we serve that path instead.
/// Two scripts redirecting to each other must not loop for ever.
const MAX_LOCAL_REDIRECTS: usize = 5;

/// Where CGI scripts are found in the URL space (Python's default too).
const CGI_PREFIX: &str = "/cgi-bin";

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
    let listener = TcpListener::bind(addr)
        .map_err(|err| io::Error::new(err.kind(), format!("binding {addr}: {err}")))?;
    // The first stdout line; tests and the grader read the port from it.
    ladder::cli::announce("http", listener.local_addr()?)?;
    // ANCHOR: accept_loop
    // TODO(ex03): for each connection from `listener.incoming()`: log an
    //   accept error and go on; otherwise start a thread (give it its own
    //   `Arc::clone(&site)`) that runs `serve_connection` and traces its error.
    //   Then `Ok(())` (the loop never ends).
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
fn serve_connection(mut stream: TcpStream, site: &Site) -> io::Result<()> {
    let (peer, local) = (stream.peer_addr()?, stream.local_addr()?);
    trace!("accept -> {peer} on a new thread");
    stream.set_read_timeout(Some(HEAD_TIMEOUT))?;
    // And a client that stops reading must not hold a script (and this
    // thread) for ever: a write that makes no progress for this long fails,
    // and the script is killed and reaped on the way out.
    stream.set_write_timeout(Some(HEAD_TIMEOUT))?;
    // TCP_NODELAY: a response goes out in several writes (our head, then
    // the script's output as it comes). With Nagle's algorithm on, the
    // second small write waits for the client's ACK of the first, which the
    // client delays by up to 40 ms: every response would take 40 ms.
    stream.set_nodelay(true)?;
    let limits = Limits::default();
    // Bytes read but not yet used: a partial head, or the start of a body or
    // of the next pipelined request.
    let mut buf = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut buf, &limits)? {
            None => return Ok(()), // the client closed, or went quiet
            Some(Ok(request)) => request,
            Some(Err(rejection)) => return refuse(&mut stream, peer, "-", &rejection),
        };
        let body = match cgi::read_body(
            &mut stream,
            &mut buf,
            &request,
            &limits,
            request.version == http::Version::Http11,
        )? {
            Ok(body) => body,
            Err(rejection) => {
                return refuse(&mut stream, peer, &request.request_line(), &rejection);
            }
        };
        let gateway = gateway(peer, local, site);
        if !answer(&mut stream, request, body, site, &gateway)? {
            return Ok(());
        }
    }
}

/// What a script may learn about the connection besides the request
/// (RFC 3875 calls these server-supplied values meta-variables too).
fn gateway(peer: SocketAddr, local: SocketAddr, site: &Site) -> Gateway {
    // ANCHOR: gateway
    // TODO(ex03): the Gateway for this connection: the client's and our
    //   addresses, SERVER_SOFTWARE ("server-ladder/" + the crate version),
    //   the static directory as document_root, the timeout, log tag "lesson03".
    todo!("ex03: build the Gateway")
    // ANCHOR_END: gateway
}

/// Read until `buf` holds a whole request head; take it out of `buf`.
/// `None`: the connection ended (or idled out) between requests.
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> io::Result<Option<Result<Request, Rejection>>> {
    let mut chunk = [0u8; 8192];
    loop {
        // Lesson 02's loop: parse what we have; `Partial` means read more
        // and parse again from the start. Pipelined requests may already
        // be waiting in `buf`, so parse before the first read.
        match http::parse_request(buf, limits) {
            Ok(Parsed::Complete { request, consumed }) => {
                buf.drain(..consumed);
                return Ok(Some(Ok(request)));
            }
            Ok(Parsed::Partial) => {}
            Err(rejection) => return Ok(Some(Err(rejection))),
        }
        // Between requests, EOF or a silent client ends the connection
        // quietly; a half-sent head that stops is dropped the same way.
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if is_timeout(&err) => return Ok(None),
            Err(err) => return Err(err),
        }
    }
}

// ANCHOR: dispatch
/// Answer one request; `Ok(true)` if the connection may carry another.
/// A script's local redirect (`Location: /path`, RFC 3875 §6.2.2) comes
/// back here as a fresh GET for that path, never seen by the client.
fn answer(
    stream: &mut TcpStream,
    mut request: Request,
    mut body: Vec<u8>,
    site: &Site,
    gateway: &Gateway,
) -> io::Result<bool> {
    // TODO(ex03): paths outside CGI_PREFIX go to `serve_static` (log them).
    //   Others: allow GET, HEAD, POST (`check_method`), `cgi::resolve` the
    //   path, `refuse` what fails, then `cgi::run`. Outcome::Responded: log
    //   it, return its keep_alive. Outcome::LocalRedirect(path): serve
    //   `redirected(&request, &path)` instead (no body), at most
    //   MAX_LOCAL_REDIRECTS times, then refuse with 500.
    todo!("ex03: route the request, follow local redirects")
}
// ANCHOR_END: dispatch

/// The request a local redirect turns into: a GET of `location` with the
/// same headers, minus those that described the old body.
fn redirected(request: &Request, location: &str) -> Request {
    // The client's own headers (Host, Cookie, User-Agent) still describe
    // the client, so they stay: the next script sees them as HTTP_*.
    let mut next = request.clone();
    next.method = "GET".into();
    next.target =
        Target::parse("GET", location).expect("ladder::cgi redirects locally only to a /path");
    let body_headers = [
        "content-length",
        "content-type",
        "transfer-encoding",
        "expect",
    ];
    next.headers
        .retain(|h| !body_headers.contains(&h.name.to_ascii_lowercase().as_str()));
    next
}

/// Serve a regular file under `root`, GET and HEAD only. Deliberately
/// minimal: no listings, no ranges, no caching; lesson 04 is the real
/// static server. Returns (status, body size, keep-alive).
fn serve_static(
    stream: &mut TcpStream,
    request: &Request,
    root: &Path,
    keep_alive: bool,
) -> io::Result<(u16, Option<u64>, bool)> {
    if let Err(rejection) = request.check_method(&["GET", "HEAD"]) {
        stream.write_all(&rejection.response())?;
        return Ok((rejection.status, None, false));
    }
    // One answer, 404, for "missing", "a directory without index.html" and
    // "outside the root": a client learns nothing about what is where.
    let Some(mut file) = open_static(root, request.path()) else {
        stream.write_all(&http::error_response(404, "no such file"))?;
        return Ok((404, None, false));
    };
    // The length comes from the open file, not the path, so it describes
    // exactly what we are about to send.
    let size = file.metadata()?.len();
    let head = ResponseHead::new(200).header("Content-Type", content_type(request.path()));
    stream.write_all(&head.render(Framing::Length(size), keep_alive))?;
    // HEAD gets the same head, with the length of the body it does not get.
    if request.method == "GET" {
        // Streamed in pieces by io::copy; a file can change size while we
        // send it, so only keep the connection if the count came out right.
        let sent = io::copy(&mut Read::by_ref(&mut file).take(size), stream)?;
        return Ok((200, Some(sent), keep_alive && sent == size));
    }
    Ok((200, None, keep_alive))
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

/// Answer with an error status, log it, and end the connection (the error
/// response says `Connection: close`). After a malformed request we cannot
/// know where the next one would start, so closing is the only safe choice;
/// for a plain 404 it is merely the simple one.
fn refuse(
    stream: &mut TcpStream,
    peer: SocketAddr,
    request_line: &str,
    rejection: &Rejection,
) -> io::Result<()> {
    stream.write_all(&rejection.response())?;
    ladder::log::access(peer, request_line, rejection.status, None);
    Ok(())
}

/// A read timeout shows up as `WouldBlock` on Linux, `TimedOut` elsewhere.
/// (`SO_RCVTIMEO` makes a blocking read(2) fail with `EAGAIN`, the same code
/// a non-blocking socket returns; lesson 05 meets it again.)
fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
