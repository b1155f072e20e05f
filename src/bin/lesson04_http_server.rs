//! # Lesson 04: a faithful `python3 -m http.server`, blocking, with a thread pool
//!
//! Lecture: lessons/04-http-server.md · Exercise: exercises/ex04_http_server/
//!
//! **New here:** serving a directory safely (in `src/static_files.rs`, read
//! it second); a fixed pool of worker threads fed through a channel (in
//! `src/pool.rs`, read it third); a header-read timeout so a silent client
//! cannot keep a thread forever; graceful shutdown that finishes the
//! requests in flight; `sendfile(2)`.
//!
//! **From earlier lessons:** `ladder::http` (parse a request head, plan and
//! write a response; lesson 02), `ladder::log` (the access log; lesson 02),
//! `ladder::cgi` (running a script for `--cgi`; lesson 03), and the
//! infrastructure every rung shares (`cli`, `trace`, `shutdown`).
//!
//! **Crates used:** clap (flags), nix (`shutdown(2)`, `send(2)`, `sendfile(2)`).
//!
//! **Run:** `cargo run --bin lesson04_http_server -- 8004 -d /tmp/site`
//! (the same arguments as `python3 -m http.server 8004 -d /tmp/site`).
//!
//! **Try:** `curl -v http://127.0.0.1:8004/`; `curl -v --path-as-is
//! http://127.0.0.1:8004/../etc/passwd`; `--threads 1` and two `nc` clients;
//! `--trace`; `-p HTTP/1.1` and `curl -v url url` (one connection, two requests).
//!
//! **Reading order:** `main` → `run` (accept loop) → `serve` →
//! `serve_connection` → `read_head` → `send_reply`; then
//! `ladder::static_files::respond` for what a request is answered with, and
//! `ladder::pool` for the workers.

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
// code stays as simple as lesson 02's; the price is one thread per client
// being served, which is what "What breaks" in the lesson measures.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use ladder::http::{self, Body, Limits, Parsed, Plan, Rejection, Request, Response, ServerInfo};
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
    /// `--cgi`: requests under /cgi-bin/ and /htbin/ go to `run_cgi`.
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
    STOPPING.store(true, Ordering::SeqCst);
    let fd = LISTENER_FD.load(Ordering::SeqCst);
    trace!("{signal}: stop accepting, finish requests in flight");
    if fd >= 0 {
        // shutdown(2): int shutdown(int sockfd, int how);
        let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read);
    }
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
    // std's bind sets SO_REUSEADDR, as lesson 01 did by hand.
    let listener = TcpListener::bind(addr)
        .map_err(|err| io::Error::new(err.kind(), format!("binding {addr}: {err}")))?;
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
    // `--threads 0`: no fixed workers, a thread per connection (Python's way).
    let mut pool = ThreadPool::new(args.threads)?;
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                trace!(
                    "accept({}) -> fd {} from {peer}",
                    LISTENER_FD.load(Ordering::Relaxed),
                    stream.as_raw_fd()
                );
                // The job owns the connection and a counted share of Config.
                let config = Arc::clone(&config);
                pool.execute(move || serve(stream, peer, &config))?;
            }
            Err(_) if STOPPING.load(Ordering::SeqCst) => break,
            // Out of fds, a connection reset before we took it: log, go on.
            Err(err) => {
                eprintln!("accept: {err}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    // Dropping the pool closes its queue: each worker finishes the jobs
    // queued and the one in flight, and the drop waits for them all.
    drop(pool);
    trace!("all workers done; exit(0)");
    Ok(())
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
    let fd = stream.as_raw_fd();
    let worker = thread::current();
    let worker = worker.name().unwrap_or("thread");
    trace!("{worker}: serving fd {fd} ({peer})");
    match serve_connection(stream, peer, config) {
        Ok(()) => trace!("close({fd})"),
        Err(err) => trace!("close({fd}) after error: {err}"),
    }
}
// ANCHOR_END: serve

/// How long one read waits before `read_head` checks the deadline and the
/// shutdown flag again.
const SLICE: Duration = Duration::from_millis(250);

/// What reading a request head came to.
enum Head {
    Request {
        request: Request,
        consumed: usize,
    },
    Rejected(Rejection),
    /// The client closed, stayed silent too long, or we are shutting down.
    Closed(&'static str),
}

/// Answer requests on one connection until it closes.
///
/// One request at a time: read a head, answer it, and with keep-alive go
/// round again. The buffer outlives each request because a client may send
/// the next request before the first is answered (pipelining); those bytes
/// are already in `buf` and must not be lost.
fn serve_connection(mut stream: TcpStream, peer: SocketAddr, config: &Config) -> io::Result<()> {
    // Small responses go out at once instead of waiting for an ACK (Nagle).
    stream.set_nodelay(true)?;
    // A client that stops reading our response must not hold a worker
    // forever either: SO_SNDTIMEO bounds each write.
    stream.set_write_timeout(config.timeout)?;
    stream.set_read_timeout(Some(SLICE))?;
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        let (request, consumed) = match read_head(&mut stream, &mut buf, config)? {
            Head::Request { request, consumed } => (request, consumed),
            Head::Closed(why) => {
                trace!("fd {}: {why}", stream.as_raw_fd());
                return Ok(());
            }
            // A malformed head, too long, or too slow: answer in Python's
            // error format and close, since we cannot know where the next
            // request would start.
            Head::Rejected(rejection) => {
                send_reply(&mut stream, rejection.to_response(), None, false, config)?;
                ladder::log::access(peer, &first_line(&buf), rejection.status, None);
                return lingering_close(stream);
            }
        };
        // Keep only what follows this head: the start of the next request.
        buf.drain(..consumed);
        // `--cgi`: scripts under /cgi-bin/ and /htbin/ answer for themselves
        // (lesson 03's runner writes the response); they may read a body.
        if config.cgi && is_cgi(&request) {
            let keep_alive = config.server.protocol == http::Version::Http11
                && request.keep_alive()
                && !STOPPING.load(Ordering::SeqCst);
            if run_cgi(&mut stream, &mut buf, request, peer, config, keep_alive)? {
                stream.set_read_timeout(Some(SLICE))?; // read_body changed it
                continue;
            }
            return Ok(());
        }
        // We never read request bodies outside CGI, so a request that
        // carries one must be the last on this connection.
        let has_body = !matches!(
            request.body_framing(&config.limits),
            Ok(http::BodyFraming::Empty)
        );
        // What to answer is decided without touching the socket.
        let response = if config.cgi && request.method == "POST" {
            // Python's CGIHTTPRequestHandler: POST means "run a script".
            Response::error(501, "Can only POST to CGI scripts")
        } else {
            static_files::respond(&config.root, &request)
        };
        let status = response.status;
        let plan = send_reply(&mut stream, response, Some(&request), !has_body, config)?;
        // Python logs `-` for the size, so do we.
        ladder::log::access(peer, &request.request_line(), status, None);
        if !plan.keep_alive {
            return if has_body {
                lingering_close(stream)
            } else {
                Ok(())
            };
        }
    }
}

// ANCHOR: read_head
/// Read until `buf` holds a whole request head, within `--timeout`.
///
/// The deadline covers the whole head, not each read: a client that sends
/// one byte every few seconds (slowloris) is cut off as surely as a silent
/// one. Reads wait in short slices so a shutdown is noticed between them.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>, config: &Config) -> io::Result<Head> {
    let deadline = config.timeout.map(|t| Instant::now() + t);
    let mut chunk = [0u8; 8 * 1024];
    loop {
        // Bytes left over from the previous request may already hold this one.
        if !buf.is_empty() {
            match http::parse_request(buf, &config.limits) {
                Ok(Parsed::Complete { request, consumed }) => {
                    return Ok(Head::Request { request, consumed });
                }
                Ok(Parsed::Partial) => {}
                Err(rejection) => return Ok(Head::Rejected(rejection)),
            }
        } else if STOPPING.load(Ordering::SeqCst) {
            return Ok(Head::Closed("shutting down between requests"));
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Ok(if buf.is_empty() {
                Head::Closed("idle past --timeout")
            } else {
                Head::Rejected(Rejection::new(408, "Request head not received in time"))
            });
        }
        // The socket's read timeout is SLICE (set once per connection, one
        // setsockopt(2) saved per request); only a last, shorter slice
        // before the deadline needs its own.
        let slice = left.unwrap_or(SLICE).min(SLICE);
        if slice < SLICE {
            stream.set_read_timeout(Some(slice))?;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(Head::Closed("client closed the connection")),
            Ok(n) => {
                trace!("read({}) -> {n} bytes", stream.as_raw_fd());
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}
// ANCHOR_END: read_head

// ANCHOR: send_reply
/// Write the head as `Response::plan` settles it (the length; no body for
/// HEAD; keep-alive as RFC 9112 §9.3 says, never under `-p HTTP/1.0`, nor
/// while we shut down), then the body. A file goes out with sendfile(2): the
/// kernel copies from the page cache to the socket, and the bytes never
/// enter this process (`--no-sendfile` shows the read+write way beside it).
fn send_reply(
    stream: &mut TcpStream,
    response: Response,
    request: Option<&Request>,
    may_keep_alive: bool,
    config: &Config,
) -> io::Result<Plan> {
    let may_keep_alive = may_keep_alive && !STOPPING.load(Ordering::SeqCst);
    let plan = response.plan(request, &config.server, may_keep_alive);
    let mut head = Vec::with_capacity(256);
    response.write_head(&plan, &config.server, &mut head);
    match response.body {
        // Head and body in one write(2): one packet for a small page.
        Body::Bytes(body) if plan.send_body => stream.write_all(&[head, body].concat())?,
        Body::File { file, len } if plan.send_body => {
            // MSG_MORE: hold the head back until the file's first bytes join
            // it, so a small response leaves in one packet.
            send_more(stream, &head)?;
            if config.sendfile {
                send_file(stream, &file, len)?;
            } else {
                copy_file(stream, file, len)?;
            }
        }
        _ => stream.write_all(&head)?,
    }
    Ok(plan)
}
// ANCHOR_END: send_reply

/// The `Server` header; Python's says `SimpleHTTP/0.6 Python/3.11.7`.
const SERVER: &str = concat!("ServerLadder/", env!("CARGO_PKG_VERSION"), " (lesson04)");

/// send(2) with MSG_MORE until all of `bytes` is queued.
fn send_more(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    // nix names no MSG_MORE (Linux-only), so build the flag from libc's value.
    let more = MsgFlags::from_bits_retain(nix::libc::MSG_MORE);
    while !bytes.is_empty() {
        // nix's send still takes a RawFd (it is moving to AsFd).
        match send(stream.as_raw_fd(), bytes, more) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// sendfile(2) until `len` bytes are sent.
///
/// We pass our own `offset`, which the kernel advances; the file's own
/// position is left alone. One call may send less than asked (the socket
/// buffer filled up), so we loop, like lesson 01's short writes. With
/// `--timeout`, SO_SNDTIMEO makes a call that cannot progress fail with
/// EAGAIN: a client that stopped reading is dropped instead of holding the
/// worker forever.
fn send_file(stream: &TcpStream, file: &std::fs::File, len: u64) -> io::Result<()> {
    let mut offset: nix::libc::off_t = 0;
    let mut left = len;
    while left > 0 {
        let count = usize::try_from(left).unwrap_or(usize::MAX).min(1 << 30);
        // ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
        match nix::sys::sendfile::sendfile(stream, file, Some(&mut offset), count) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, SHRANK)),
            Ok(n) => {
                let (to, from) = (stream.as_raw_fd(), file.as_raw_fd());
                trace!("sendfile({to}, {from}) -> {n} bytes");
                left -= n as u64;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let why = "client stopped reading";
                return Err(io::Error::new(io::ErrorKind::TimedOut, why));
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// A file truncated while we send it: the Content-Length announced is a lie
/// now, and closing the connection is the only way to tell the client.
const SHRANK: &str = "file shrank while being sent";

/// The user-space way: read(2) a block of the file into a buffer, write(2)
/// it to the socket, repeat. Every byte crosses into this process and back
/// out: two copies and two system calls per block, where sendfile needs one
/// call and no copy through user space. (`io::copy` would not show this: on
/// Linux, std quietly uses sendfile or splice itself when it can.)
fn copy_file(stream: &mut TcpStream, mut file: std::fs::File, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, SHRANK)),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        stream.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// Close after an error without losing the response: if unread request
/// bytes are still in our receive buffer, close(2) would send a reset, and
/// the client could lose the response. So: stop sending (FIN), read and
/// discard what arrives for a moment, then close (Apache's lingering close).
fn lingering_close(mut stream: TcpStream) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 8 * 1024];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}

/// The request line for the log when the head did not parse. Capped, and
/// lossily decoded: the log must not grow with a hostile request.
fn first_line(buf: &[u8]) -> String {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
    line.chars().take(200).collect()
}

/// Python's CGIHTTPRequestHandler runs scripts under these directories.
fn is_cgi(request: &Request) -> bool {
    let path = static_files::one_leading_slash(request.path());
    path.starts_with("/cgi-bin/") || path.starts_with("/htbin/")
}

/// `--cgi`: run the script a request names, with lesson 03's runner
/// (`ladder::cgi`), and log it. `Ok(true)`: the connection may carry another
/// request. Python's CGIHTTPRequestHandler does the same job more crudely:
/// it always answers `200 Script output follows` and passes the script's
/// output through, so a script's `Status:` header never reaches the client.
fn run_cgi(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut request: Request,
    peer: SocketAddr,
    config: &Config,
    keep_alive: bool,
) -> io::Result<bool> {
    // The request as asked, for the log and for an error page (a local
    // redirect below turns `request` into a GET for another path).
    let asked = request.clone();
    let refuse = |stream: &mut TcpStream, rejection: Rejection| {
        send_reply(stream, rejection.to_response(), Some(&asked), false, config)?;
        ladder::log::access(peer, &asked.request_line(), rejection.status, None);
        Ok(false)
    };
    if let Err(rejection) = request.check_method(&["GET", "HEAD", "POST"]) {
        return refuse(stream, rejection);
    }
    // Python says `100 Continue` only under -p HTTP/1.1; so do we.
    stream.set_read_timeout(config.timeout)?;
    let http11 = config.server.protocol == http::Version::Http11;
    let body = match cgi::read_body(stream, buf, &request, &config.limits, http11)? {
        Ok(body) => body,
        Err(rejection) => return refuse(stream, rejection),
    };
    let gateway = cgi::Gateway {
        peer,
        local: stream.local_addr()?,
        server_software: SERVER.into(),
        document_root: config.root.path().to_path_buf(),
        timeout: config.timeout.unwrap_or(Duration::from_secs(60)),
        log_tag: "lesson04",
    };
    // A script may answer with a local redirect (RFC 3875 §6.2.2): serve
    // that path instead, as a GET, a few times at most.
    for _ in 0..5 {
        let path = static_files::one_leading_slash(request.path()).to_string();
        if !is_cgi(&request) {
            let response = static_files::respond(&config.root, &request);
            let status = response.status;
            let plan = send_reply(stream, response, Some(&request), true, config)?;
            ladder::log::access(peer, &asked.request_line(), status, None);
            return Ok(plan.keep_alive);
        }
        let prefix = if path.starts_with("/htbin/") {
            "/htbin"
        } else {
            "/cgi-bin"
        };
        let dir = config.root.path().join(&prefix[1..]);
        let script = match cgi::resolve(&path, prefix, &dir) {
            Ok(script) => script,
            Err(rejection) => return refuse(stream, rejection),
        };
        match cgi::run(&request, &body, &script, &gateway, keep_alive, stream)? {
            cgi::Outcome::Responded {
                status,
                bytes,
                keep_alive,
            } => {
                ladder::log::access(peer, &asked.request_line(), status, Some(bytes));
                return Ok(keep_alive);
            }
            cgi::Outcome::LocalRedirect(location) => {
                trace!("local redirect -> GET {location}");
                request.method = "GET".into();
                request.target = http::Target::parse("GET", &location)
                    .expect("ladder::cgi redirects locally only to a /path");
            }
        }
    }
    refuse(stream, Rejection::new(500, "Too many local redirects"))
}
