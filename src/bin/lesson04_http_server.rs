//! # Lesson 04: a faithful `python3 -m http.server`, blocking, with a thread pool
//!
//! Lecture: lessons/04-http-server.md · Exercise: exercises/ex04_http_server/
//!
//! **New here:** serving a directory safely (in `src/static_files.rs`, read
//! it second); a fixed pool of worker threads fed through a channel; a
//! header-read timeout so a silent client cannot keep a thread forever;
//! graceful shutdown that finishes the requests in flight; `sendfile(2)`.
//!
//! **From earlier lessons:** `ladder::http` (parse a request head, render a
//! response head; lesson 02), `ladder::log` (the access log; lesson 02),
//! and the infrastructure every rung shares (`cli`, `trace`, `shutdown`).
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
//! **Reading order:** `main` → `run` (accept loop) → `ThreadPool` →
//! `serve_connection` → `read_head` → `send_reply`; then
//! `ladder::static_files::respond` for what a request is answered with.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clap::Parser;
use ladder::http::{self, Limits, Parsed, Rejection, Request};
use ladder::static_files::{self, Body, Reply, Root};
use ladder::{cli, trace};

/// Lesson 04: a faithful `python3 -m http.server` (static files, directory
/// listings, conditional GET), blocking I/O on a fixed pool of threads.
#[derive(Parser)]
#[command(version)]
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
struct Config {
    root: Root,
    /// `-p HTTP/1.1`: keep-alive allowed. Python's default, HTTP/1.0, answers
    /// one request per connection.
    http11: bool,
    timeout: Option<Duration>,
    sendfile: bool,
    cgi: bool,
    limits: Limits,
}

/// Set by the signal thread; workers check it between requests.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// The listening socket's fd, so the signal thread can wake `accept`.
static LISTENER_FD: AtomicI32 = AtomicI32::new(-1);

fn main() -> ExitCode {
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
    let root = Root::new(&args.directory)?;
    let mut addr = args.listen.addr();
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
    let config = Arc::new(Config {
        root,
        http11: args.protocol == "HTTP/1.1",
        timeout: (args.timeout > 0.0).then(|| Duration::from_secs_f64(args.timeout)),
        sendfile: !args.no_sendfile,
        cgi: args.cgi,
        limits: Limits::default(),
    });
    let mut pool = ThreadPool::new(args.threads, config)?;
    // ANCHOR: accept_loop
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                trace!(
                    "accept({}) -> fd {} from {peer}",
                    LISTENER_FD.load(Ordering::Relaxed),
                    stream.as_raw_fd()
                );
                pool.execute(stream, peer)?;
            }
            Err(_) if STOPPING.load(Ordering::SeqCst) => break,
            // Out of fds, a connection reset before we took it: log, go on.
            Err(err) => {
                eprintln!("accept: {err}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    // Dropping the sender ends each worker's loop once the queue is empty;
    // joining waits for the requests in flight to finish.
    pool.join();
    trace!("all workers done; exit(0)");
    // ANCHOR_END: accept_loop
    Ok(())
}

/// An accepted connection, waiting for a worker.
type Job = (TcpStream, SocketAddr);

/// A fixed set of threads taking connections from one channel.
///
/// `mpsc` has many senders but one receiver, so the workers share the
/// receiver behind a `Mutex`: whoever holds the lock waits in `recv`, and
/// the others wait for the lock. Each job is taken by exactly one worker.
struct ThreadPool {
    sender: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    config: Arc<Config>,
    /// `--threads 0`: no pool, a new thread per connection.
    per_connection: bool,
}

impl ThreadPool {
    // ANCHOR: thread_pool
    fn new(size: usize, config: Arc<Config>) -> io::Result<ThreadPool> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let mut workers = Vec::with_capacity(size);
        for id in 0..size {
            let receiver = Arc::clone(&receiver);
            let config = Arc::clone(&config);
            let worker = thread::Builder::new()
                .name(format!("worker {id}"))
                .spawn(move || worker_loop(id, &receiver, &config))?;
            workers.push(worker);
        }
        let per_connection = size == 0;
        Ok(ThreadPool {
            sender: Some(sender),
            workers,
            config,
            per_connection,
        })
    }
    // ANCHOR_END: thread_pool

    /// Hand a connection to the pool (or, with `--threads 0`, to a new thread).
    fn execute(&mut self, stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
        if self.per_connection {
            // Forget threads that have finished, so the list does not grow.
            self.workers.retain(|worker| !worker.is_finished());
            let config = Arc::clone(&self.config);
            let worker = thread::Builder::new().spawn(move || serve(stream, peer, &config))?;
            self.workers.push(worker);
            return Ok(());
        }
        let sender = self.sender.as_ref().expect("the sender lives until join");
        // A send fails only if every worker is gone, which `worker_loop`
        // never allows (it survives a panicking connection).
        sender
            .send((stream, peer))
            .map_err(|_| io::Error::other("every worker thread has exited"))
    }

    /// Close the channel and wait for every worker to finish.
    fn join(&mut self) {
        drop(self.sender.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

// ANCHOR: worker_loop
fn worker_loop(id: usize, receiver: &Mutex<mpsc::Receiver<Job>>, config: &Config) {
    loop {
        // The guard lives only inside the closure: the lock is released as
        // soon as `recv` returns, not while this worker serves the client.
        let next = receiver.lock().map(|queue| queue.recv());
        let Ok(Ok((stream, peer))) = next else {
            return; // channel closed and drained: the pool is shutting down
        };
        trace!("worker {id}: serving fd {} ({peer})", stream.as_raw_fd());
        serve(stream, peer, config);
    }
}
// ANCHOR_END: worker_loop

/// Serve one connection; whatever goes wrong ends that connection only.
fn serve(stream: TcpStream, peer: SocketAddr, config: &Config) {
    let fd = stream.as_raw_fd();
    // A bug must cost one connection, not a worker: catch a panic here and
    // the thread lives on to serve the next client.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        serve_connection(stream, peer, config)
    }));
    match outcome {
        Ok(Ok(())) => trace!("close({fd})"),
        Ok(Err(err)) => trace!("close({fd}) after error: {err}"),
        Err(_) => eprintln!("connection from {peer}: handler panicked; connection dropped"),
    }
}

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
fn serve_connection(mut stream: TcpStream, peer: SocketAddr, config: &Config) -> io::Result<()> {
    // Small responses go out at once instead of waiting for an ACK (Nagle).
    stream.set_nodelay(true)?;
    stream.set_write_timeout(config.timeout)?;
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        let (request, consumed) = match read_head(&mut stream, &mut buf, config)? {
            Head::Request { request, consumed } => (request, consumed),
            Head::Closed(why) => {
                trace!("fd {}: {why}", stream.as_raw_fd());
                return Ok(());
            }
            Head::Rejected(rejection) => {
                let line = first_line(&buf);
                let reply = static_files::error_reply(rejection.status, rejection.detail, false);
                send_reply(&mut stream, reply, false, config)?;
                ladder::log::access(peer, &line, rejection.status, None);
                return lingering_close(stream);
            }
        };
        buf.drain(..consumed);
        // We never read request bodies (only CGI would need them), so a
        // request that carries one must be the last on this connection.
        let has_body = !matches!(
            request.body_framing(&config.limits),
            Ok(http::BodyFraming::Empty)
        );
        let keep_alive =
            config.http11 && request.keep_alive() && !has_body && !STOPPING.load(Ordering::SeqCst);
        let reply = if config.cgi && is_cgi(&request) {
            cgi_reply(&request)
        } else {
            static_files::respond(&config.root, &request)
        };
        let status = reply.status();
        let close = reply.close || !keep_alive;
        send_reply(&mut stream, reply, keep_alive, config)?;
        ladder::log::access(peer, &request.request_line(), status, None);
        if close {
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
        let slice = left
            .unwrap_or(Duration::MAX)
            .min(Duration::from_millis(250));
        stream.set_read_timeout(Some(slice))?;
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
/// Write the head, then the body. A file body goes out with sendfile(2):
/// the kernel copies from the page cache to the socket, and the bytes never
/// enter this process (`--no-sendfile` shows the read+write way beside it).
fn send_reply(
    stream: &mut TcpStream,
    mut reply: Reply,
    keep_alive: bool,
    config: &Config,
) -> io::Result<()> {
    if !config.http11 {
        reply.head.protocol = "HTTP/1.0"; // Python answers in its -p protocol
    }
    reply
        .head
        .headers
        .insert(0, ("Server".into(), SERVER.into()));
    let head = reply.render_head(keep_alive);
    match reply.body {
        Body::Empty => stream.write_all(&head),
        Body::Bytes(body) => stream.write_all(&[head, body].concat()),
        Body::File { file, len } => {
            // MSG_MORE: hold the head back until the file's first bytes join
            // it, so a small response leaves in one packet.
            send_more(stream, &head)?;
            if config.sendfile {
                send_file(stream, &file, len)
            } else {
                copy_file(stream, file, len)
            }
        }
    }
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

/// sendfile(2) until `len` bytes are sent. The file offset is ours to keep.
fn send_file(stream: &TcpStream, file: &std::fs::File, len: u64) -> io::Result<()> {
    let mut offset: nix::libc::off_t = 0;
    let mut left = len;
    while left > 0 {
        let count = usize::try_from(left).unwrap_or(usize::MAX).min(1 << 30);
        // ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
        match nix::sys::sendfile::sendfile(stream, file, Some(&mut offset), count) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ));
            }
            Ok(n) => {
                trace!(
                    "sendfile({}, {}) -> {n} bytes",
                    stream.as_raw_fd(),
                    file.as_raw_fd()
                );
                left -= n as u64;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client stopped reading",
                ));
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// The user-space way: read(2) into a buffer, write(2) it out, repeat.
fn copy_file(stream: &mut TcpStream, file: std::fs::File, len: u64) -> io::Result<()> {
    let copied = io::copy(&mut file.take(len), stream)?;
    if copied < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while being sent",
        ));
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

/// The request line for the log when the head did not parse.
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

/// `--cgi`: the hook for lesson 03's runner (`ladder::cgi`). Until that
/// module is part of this build, CGI requests are refused with a 501.
fn cgi_reply(request: &Request) -> Reply {
    let head_only = request.method == "HEAD";
    static_files::error_reply(
        501,
        "CGI scripts are not supported by this build",
        head_only,
    )
}
