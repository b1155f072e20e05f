//! # Lesson 04: a faithful `python3 -m http.server`, blocking, with a thread pool
//!
//! Lecture: lessons/04-http-server.md · Exercise: exercises/ex04_http_server/
//!
//! **New here:** serving a directory safely (in `src/static_files.rs`, read
//! it second); a fixed pool of worker threads fed through a channel (in
//! `src/pool.rs`, read it third); a header-read timeout so a silent client
//! cannot keep a thread forever; graceful shutdown that finishes the
//! requests in flight; `sendfile(2)`, which the lesson reads in
//! `src/connection.rs` (`send_file`).
//!
//! **From earlier lessons:** `ladder::connection` (read a request before a
//! deadline, send the response, refuse, close; lesson 02), `ladder::http`
//! (parse a request head, plan and write a response; lesson 02),
//! `ladder::log` (the access log; lesson 02), `ladder::cgi` (running a
//! script for `--cgi`; lesson 03), and the infrastructure every rung shares
//! (`cli`, `trace`, `shutdown`).
//!
//! **Crates used:** clap (flags), nix (`shutdown(2)`; `sendfile(2)` through
//! `ladder::connection`).
//!
//! **Run:** `cargo run --bin lesson04_http_server -- 8004 -d /tmp/site`
//! (the same arguments as `python3 -m http.server 8004 -d /tmp/site`).
//!
//! **Try:** `curl -v http://127.0.0.1:8004/`; `curl -v --path-as-is
//! http://127.0.0.1:8004/../etc/passwd`; `--threads 1` and two `nc` clients;
//! `--trace`; `-p HTTP/1.1` and `curl -v url url` (one connection, two requests).
//!
//! **Reading order:** `main` → `run` (accept loop) → `serve` →
//! `serve_connection` → `serve_cgi`; then `ladder::static_files::respond`
//! for what a request is answered with, `ladder::pool` for the workers, and
//! `Connection::read_request` and `Connection::respond` in
//! `ladder::connection` for the socket.

// The shape of the program, one thread per box:
//
//   signals ──(flag + shutdown(2))──┐
//                                   ▼
//   main: accept(2) ── job: serve(stream, peer) ──► ladder::pool ──► worker 0
//                                                              ├──► worker 1
//                                                              └──► worker N-1
//
// Each worker owns one connection at a time and does everything for it with
// blocking calls: read the head, resolve the path, write the response. The
// code stays as simple as lesson 02's, on the same `ladder::connection`; the price is one thread per client
// being served, which is what "What breaks" in the lesson measures.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use ladder::connection::{Connection, Got};
use ladder::http::{self, BodyFraming, Limits, Rejection, Request, Response, ServerInfo};
use ladder::pool::ThreadPool;
use ladder::static_files::{self, Root};
use ladder::{cgi, cli, trace};

/// Lesson 04: a faithful `python3 -m http.server` (static files, directory
/// listings, conditional GET), blocking I/O on a fixed pool of threads.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
        cargo run --bin lesson04_http_server                  (serve . on port 8004)\n  \
        cargo run --bin lesson04_http_server -- 9000 -d /tmp  (Python's positional port)\n  \
        cargo run --bin lesson04_http_server -- -p HTTP/1.1   (keep-alive)\n  \
        cargo run --bin lesson04_http_server -- --cgi         (run /cgi-bin/ scripts)\n  \
        curl -v http://127.0.0.1:8004/"
)]
struct Args {
    #[command(flatten)]
    listen: cli::ListenArgs<4>,

    /// Port to listen on, as Python's positional argument (overrides --port)
    #[arg(value_name = "PORT")]
    port_positional: Option<u16>,

    /// Serve this directory
    #[arg(short = 'd', long, value_name = "DIR", default_value = ".")]
    directory: PathBuf,

    /// Protocol of the responses; HTTP/1.1 keeps connections open between requests
    #[arg(short = 'p', long, value_name = "VERSION", default_value = "HTTP/1.0",
          value_parser = ["HTTP/1.0", "HTTP/1.1"])]
    protocol: String,

    /// Run scripts under /cgi-bin/ (lesson 03's runner)
    #[arg(long)]
    cgi: bool,

    /// Worker threads in the pool (1 = one client at a time; 0 = a new thread
    /// per connection, as Python's ThreadingHTTPServer does)
    #[arg(long, value_name = "N", default_value_t = 8)]
    threads: usize,

    /// Seconds a client may take to send a request head, or stay idle
    /// between requests, or stall a response; 0 waits forever (as Python does)
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,

    /// Copy files through a user-space buffer (read+write) instead of sendfile(2)
    #[arg(long)]
    no_sendfile: bool,
}

/// What every worker needs to know, shared read-only behind an `Arc`.
/// Nothing in it changes after start-up, so no lock is needed to read it.
struct Config {
    /// The served directory, opened once (see `static_files::Root`).
    root: Root,
    /// `-p`, and the `Server` header. Python's default, HTTP/1.0, answers
    /// one request per connection; `-p HTTP/1.1` allows keep-alive.
    server: ServerInfo,
    /// `--timeout`: `None` waits forever, as Python does.
    timeout: Option<Duration>,
    /// `false` with `--no-sendfile`.
    sendfile: bool,
    /// `--cgi`: requests under /cgi-bin/ and /htbin/ go to `serve_cgi`.
    cgi: bool,
    /// Request-line and header limits (lesson 02's defaults).
    limits: Limits,
}

/// Set by the signal thread; workers check it between requests. A static,
/// not an `Arc`, because the signal handler is installed before anything
/// else exists, and an atomic needs no lock: one store, many loads.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// The listening socket's fd, so the signal thread can wake `accept`.
static LISTENER_FD: AtomicI32 = AtomicI32::new(-1);

fn main() -> ExitCode {
    // clap prints usage and exits 2 on a bad flag, as argparse does.
    let args = Args::parse();
    args.listen.apply();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lesson04_http_server: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: graceful_shutdown
/// On SIGINT/SIGTERM: raise the flag, then wake the main thread, which is
/// asleep in accept(2). shutdown(2) on a listening socket makes a blocked
/// accept fail at once (EINVAL on Linux); the loop sees the flag and stops.
fn on_signal(signal: nix::sys::signal::Signal) {
    // TODO(ex04): raise `STOPPING` (an atomic store), then wake the main thread,
    //   which is asleep in accept(2): shutdown(2) the listening socket whose fd
    //   is in `LISTENER_FD` (`nix::sys::socket::shutdown(fd, Shutdown::Read)`; -1:
    //   none yet). The --trace line (`trace!`) is yours to add.
    //   Read first: lessons/04-http-server.md, "Graceful shutdown".
    todo!("ex04: set the flag, wake accept")
}
// ANCHOR_END: graceful_shutdown

fn run(args: Args) -> io::Result<()> {
    // Before any thread exists, so that every thread inherits the blocked
    // signal mask and only the signal thread ever sees SIGINT/SIGTERM.
    ladder::shutdown::on_termination(on_signal)?;
    // Every error we send, a malformed head's included, in Python's HTML.
    http::set_error_page(static_files::python_error_page);
    // A missing directory is a start-up error, reported before we listen.
    let root = Root::new(&args.directory)?;
    let timeout = header_timeout(args.timeout)?;
    let mut addr = args.listen.addr();
    // `lesson04_http_server 8004` works like `python3 -m http.server 8004`.
    if let Some(port) = args.port_positional {
        addr.set_port(port);
    }
    // std's bind (inside ladder::cli::listen) sets SO_REUSEADDR, as lesson 01 did by hand.
    let listener = ladder::cli::listen(addr)?;
    LISTENER_FD.store(listener.as_raw_fd(), Ordering::SeqCst);
    let local = listener.local_addr()?;
    // Python's words, with the real port; the tests find the URL in it.
    cli::announce_line(&format!(
        "Serving HTTP on {} port {} ({}) ...",
        local.ip(),
        local.port(),
        cli::url("http", local)
    ))?;
    // One Config for all workers: an Arc is a shared, counted pointer; the
    // last worker to finish drops it.
    let protocol = match args.protocol.as_str() {
        "HTTP/1.1" => http::Version::Http11,
        _ => http::Version::Http10,
    };
    let config = Arc::new(Config {
        root,
        server: ServerInfo {
            protocol,
            software: Some(SERVER),
        },
        timeout,
        sendfile: !args.no_sendfile,
        cgi: args.cgi,
        limits: Limits::default(),
    });
    // ANCHOR: accept_loop
    // TODO(ex04): start a `ThreadPool::new` of `args.threads` workers (ladder::pool).
    //   Then loop: `listener.accept()` a connection and hand the pool a job that
    //   serves it (`pool.execute`): a `move` closure owning the stream, the peer and
    //   an `Arc::clone` of `config`, calling `serve`. When accept fails with
    //   `STOPPING` set, leave the loop; then drop the pool, which finishes the
    //   queued jobs and joins the workers, and return Ok(()) so that main exits 0.
    //   The --trace lines (`trace!`) are yours to add.
    //   Read first: lessons/04-http-server.md, "The pool".
    todo!("ex04: accept, hand each connection to the pool, drop the pool")
    // ANCHOR_END: accept_loop
}

/// `--timeout SECS` as a Duration; 0 means none. A negative, NaN or
/// absurdly large value is a usage error, not a panic.
fn header_timeout(secs: f64) -> io::Result<Option<Duration>> {
    if secs == 0.0 {
        return Ok(None);
    }
    let why = "--timeout takes 0 or a positive number of seconds";
    let bad = |_| io::Error::new(io::ErrorKind::InvalidInput, why);
    Duration::try_from_secs_f64(secs).map(Some).map_err(bad)
}

// ANCHOR: serve
/// One job for the pool: serve one connection; whatever goes wrong ends
/// that connection only (and a panic, the pool catches: it costs the job).
fn serve(stream: TcpStream, peer: SocketAddr, config: &Config) {
    // TODO(ex04): answer requests on this connection with `serve_connection`.
    //   An error ends this connection only: trace it (`trace!`), never panic or
    //   return it. (For --trace: which worker took it, `thread::current()` and its
    //   name.) The --trace lines are yours to add.
    todo!("ex04: serve one connection")
}
// ANCHOR_END: serve

/// Answer requests on one connection until it closes.
///
/// `ladder::connection` (lesson 02) does the reading and writing: it keeps
/// the bytes that came after one request (the next one, pipelined), holds
/// the whole head to one deadline, so that a client sending a byte every few
/// seconds (slowloris) is cut off as surely as a silent one, looks at
/// STOPPING between requests, and sends a file with sendfile(2).
fn serve_connection(stream: TcpStream, peer: SocketAddr, config: &Config) -> io::Result<()> {
    // Small responses go out at once instead of waiting for an ACK (Nagle).
    stream.set_nodelay(true)?;
    // A client that stops reading our response must not hold a worker
    // forever either: SO_SNDTIMEO bounds each write.
    stream.set_write_timeout(config.timeout)?;
    let mut conn = Connection::new(stream, peer, config.limits)
        .server(config.server)
        .stop_when(&STOPPING)
        .sendfile(config.sendfile);
    loop {
        // ANCHOR: next_request
        let deadline = config.timeout.map(|t| Instant::now() + t);
        let request = match conn.read_request(deadline)? {
            Got::Done(request) => request,
            // Half a head when --timeout passed: 408, in Python's error page.
            Got::TimedOut => {
                let late = Rejection::new(408, "Request head not received in time");
                return conn.refuse(None, Got::<()>::Rejected(late));
            }
            Got::Closed(why) => {
                trace!("{why}");
                return Ok(());
            }
            // A malformed head is answered, and the connection closed: we
            // cannot know where the next request would start. A client
            // silent past --timeout is closed without a word.
            other => return conn.refuse(None, other),
        };
        // ANCHOR_END: next_request
        // Once we are stopping, every answer says `Connection: close`.
        let may_keep_alive = !STOPPING.load(Ordering::SeqCst);
        let keep_alive = if config.cgi && cgi_dir(request.path()).is_some() {
            // The whole body first: the script is told CONTENT_LENGTH
            // (RFC 3875 §4.2). It gets a --timeout of its own.
            let body = match request.check_method(&["GET", "HEAD", "POST"]) {
                Ok(()) => conn.read_body(&request, config.timeout.map(|t| Instant::now() + t))?,
                Err(rejection) => Got::Rejected(rejection),
            };
            let body = match body {
                Got::Done(body) => body,
                other => return conn.refuse(Some(&request), other),
            };
            serve_cgi(&mut conn, &request, &body, config, may_keep_alive)?
        } else {
            // We never read a body outside CGI: a request that carries one
            // is the last on its connection.
            let has_body = !matches!(request.body_framing(&config.limits), Ok(BodyFraming::Empty));
            let response = if config.cgi && request.method == "POST" {
                // Python's CGIHTTPRequestHandler: POST means "run a script".
                Response::error(501, "Can only POST to CGI scripts")
            } else {
                static_files::respond(&config.root, &request)
            };
            let status = response.status;
            let plan = conn.respond(Some(&request), response, may_keep_alive && !has_body)?;
            // Python logs `-` for the size, so do we.
            ladder::log::access(peer, &request.request_line(), status, None);
            if has_body {
                conn.lingering_close(); // so that the unread body cannot reset the answer
                return Ok(());
            }
            plan.keep_alive
        };
        if !keep_alive {
            return Ok(());
        }
    }
}

/// Python's CGIHTTPRequestHandler runs the scripts under these directories.
const CGI_DIRS: [&str; 2] = ["/cgi-bin", "/htbin"];

/// The CGI directory a request path is under, if any.
fn cgi_dir(path: &str) -> Option<&'static str> {
    let path = static_files::one_leading_slash(path);
    CGI_DIRS.into_iter().find(|dir| {
        path.strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// `--cgi`: lesson 03's runner (`ladder::cgi::serve`) runs the script the
/// path names and relays its answer, framed as this server speaks (`-p`,
/// `Server`); a local redirect (`Location: /path`, RFC 3875 §6.2.2) is
/// served as a GET without the body, by a script or as a static file.
/// `Ok(true)`: the connection may carry another request.
///
/// Python's CGIHTTPRequestHandler does the job more crudely: it always
/// answers `200 Script output follows` and passes the script's output
/// through, so a script's `Status:` header never reaches the client.
fn serve_cgi(
    conn: &mut Connection,
    request: &Request,
    body: &[u8],
    config: &Config,
    may_keep_alive: bool,
) -> io::Result<bool> {
    let gateway = cgi::Gateway {
        peer: conn.peer(),
        local: conn.stream().local_addr()?,
        server_software: SERVER.into(),
        document_root: config.root.path().to_path_buf(),
        timeout: config.timeout.unwrap_or(Duration::from_secs(60)),
        log_tag: "lesson04",
    };
    // Which script a path names, if any; asked again after a local redirect.
    let script = |request: &Request| {
        let path = static_files::one_leading_slash(request.path());
        let Some(dir) = cgi_dir(path) else {
            return Ok(None); // redirected out of the CGI directories: a file
        };
        cgi::resolve(path, dir, &config.root.path().join(&dir[1..])).map(Some)
    };
    let file = |request: &Request| static_files::respond(&config.root, request);
    let served = cgi::serve(conn, request, body, &gateway, may_keep_alive, script, file)?;
    // The request line the client sent, whatever the redirects.
    let line = request.request_line();
    ladder::log::access(gateway.peer, &line, served.status, served.bytes);
    Ok(served.keep_alive)
}

/// The `Server` header; Python's says `SimpleHTTP/0.6 Python/3.11.7`.
const SERVER: &str = concat!("ServerLadder/", env!("CARGO_PKG_VERSION"), " (lesson04)");
