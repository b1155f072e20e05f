//! # Lesson 02: HTTP on the wire
//!
//! Lecture: `lessons/02-hello.md` · Exercise: `exercises/ex02_hello/`
//!
//! New here: a request head read in a loop until it is complete (TCP may hand
//! it over in pieces), a response framed the way RFC 9112 wants it (CRLF line
//! ends, `Content-Length`, `Connection: close`), a body read and thrown away,
//! error answers for bad input, and a deadline for clients that send nothing.
//! This file is the server; two library modules, new here too and reused by
//! later rungs, hold the rest: `ladder::connection` (`src/connection.rs`,
//! read it after `serve`) reads and writes one connection with blocking
//! calls, and `ladder::http` (`src/http.rs`) is the protocol itself (parse,
//! limits, framing), without I/O.
//! From earlier lessons: the socket calls (lesson 01), now behind std's
//! `TcpListener`; the shared flags and `--trace`.
//! Crates used: httparse (through `ladder::http`), httpdate (the Date
//! header), nix (sendfile, in `ladder::connection`), clap.
//!
//! Run: `cargo run --bin lesson02_hello`
//! Try: `curl -v http://127.0.0.1:8002/hello`, then the same against
//! `cargo run --bin lesson02_hello -- --naive`, and `nc 127.0.0.1 8002`
//! typing a request by hand (end it with an empty line).
//!
//! Reading order: `main` → `run` → `serve` → `Connection::read_request` →
//! `respond` (→ `naive_respond`) → `reject` → `Connection::refuse`.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

use ladder::cli::ListenArgs;
use ladder::connection::{Connection, Got};
use ladder::http::{Limits, Request, Response};
use ladder::{log, trace};

/// The methods this server answers; anything else gets 501, as `http.server` does.
const METHODS: &[&str] = &["GET", "HEAD", "POST"];

/// Lesson 02: the smallest honest HTTP/1.1 server. One fixed page, one client
/// at a time, every request head printed on stdout.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
        cargo run --bin lesson02_hello\n  \
        curl -v http://127.0.0.1:8002/hello\n  \
        cargo run --bin lesson02_hello -- --naive      (the lecture's first server's answer)\n  \
        printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8002"
)]
struct Args {
    #[command(flatten)]
    listen: ListenArgs<2>,

    /// Answer like the lecture's first socket server: bare LF line ends, no
    /// Content-Length, then close (watch what `curl -v` says about it)
    #[arg(long)]
    naive: bool,

    /// Seconds a client may take to send its whole request before it gets 408
    /// and is dropped
    #[arg(long, default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,

    /// Longest request line in bytes (longer: 414)
    #[arg(long, default_value_t = Limits::default().max_request_line, value_name = "BYTES")]
    max_request_line: usize,

    /// Largest request head in bytes (larger: 431)
    #[arg(long, default_value_t = Limits::default().max_head_bytes, value_name = "BYTES")]
    max_header_bytes: usize,

    /// Most header fields (more: 431)
    #[arg(long, default_value_t = Limits::default().max_header_count, value_name = "N")]
    max_headers: usize,

    /// Largest request body in bytes (larger: 413)
    #[arg(long, default_value_t = Limits::default().max_body, value_name = "BYTES")]
    max_body: u64,
}

/// What every connection needs to know, fixed at start-up.
struct Config {
    limits: Limits,
    /// How long one whole request (head and body) may take to arrive.
    header_timeout: Duration,
    /// Reproduce the lecture's mistake instead of answering correctly.
    naive: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lesson02_hello: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Bind, announce, then serve one connection after another, forever.
fn run(args: &Args) -> io::Result<()> {
    ladder::shutdown::exit_on_termination()?;
    let config = Config {
        limits: Limits {
            max_request_line: args.max_request_line,
            max_header_count: args.max_headers,
            max_head_bytes: args.max_header_bytes,
            max_body: args.max_body,
        },
        header_timeout: Duration::from_secs(args.header_timeout),
        naive: args.naive,
    };
    // std's `TcpListener::bind`, behind `ladder::cli::listen`: one call does
    // lesson 01's socket + setsockopt(SO_REUSEADDR) + bind + listen(128),
    // with close-on-exec set and EINTR retried for us; a failure says what to
    // try next, the same on every rung.
    let addr = args.listen.addr();
    let listener = ladder::cli::listen(addr)?;
    ladder::cli::announce("http", listener.local_addr()?)?;
    // Iterative, like lesson 01: while `serve` runs, the next client waits in
    // the backlog. That is acceptable only because `serve` is bounded: one
    // request per connection, and a deadline on reading it.
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let fd = stream.as_raw_fd();
                trace!("accept({}) -> fd {fd} from {peer}", listener.as_raw_fd());
                // An error here ends this connection only, never the server.
                if let Err(err) = serve(stream, peer, &config) {
                    eprintln!("[lesson02] {peer}: {err}");
                }
                trace!("close({fd})");
            }
            Err(err) => {
                eprintln!("[lesson02] accept failed: {err}");
                thread::sleep(Duration::from_millis(100)); // e.g. EMFILE: don't spin
            }
        }
    }
}

// One connection = one request. The socket closes when `serve` returns and
// `conn` is dropped (close(2), as in lesson 01, but done for us by Drop).
// ANCHOR: serve
fn serve(stream: TcpStream, peer: SocketAddr, config: &Config) -> io::Result<()> {
    // TODO(ex02): one connection, one request, all within config.header_timeout:
    //   a `Connection` (src/connection.rs) around the stream; `read_request` with
    //   the deadline, then `print_head(conn.head())`; `check_method(METHODS)` and
    //   `discard_body`; then `respond` (or `naive_respond` with --naive).
    //   Anything that is not `Got::Done` goes to `reject`.
    //   Read first: lessons/02-hello.md, "How it works", and src/connection.rs.
    todo!("ex02: read the request, answer it")
}
// ANCHOR_END: serve

/// Print the request head on stdout, as the lecture's server printed what
/// recv() returned. Lossy: a head may hold bytes that are not UTF-8. The CR of
/// each CRLF is left out so terminals show the lines cleanly.
fn print_head(head: &[u8]) {
    let text = String::from_utf8_lossy(head).replace("\r\n", "\n");
    let mut out = io::stdout().lock();
    // A closed stdout is no reason to stop serving: ignore write errors.
    let _ = writeln!(out, "{text}{}", "-".repeat(40));
    let _ = out.flush();
}

// The answer. `Response::with_bytes` is a status, a Content-Type and a body;
// `Connection::respond` asks `Response::plan` how to frame it and writes the
// status line and every header with CRLF line ends, adding Date,
// Content-Length and Connection, then the blank line and the body (see
// src/connection.rs and src/http.rs). We never keep the connection: this
// server serves one client at a time, and a browser that kept its
// connection open would lock everyone else out until it timed out.
// Keep-alive comes back in lesson 05, where an idle connection costs nothing.
// ANCHOR: respond
fn respond(mut conn: Connection, request: &Request) -> io::Result<()> {
    // TODO(ex02): 200 with `page(request)` as the body: `Response::with_bytes`,
    //   with a Content-Type; `conn.respond` it (no keep-alive: this server
    //   answers one request per connection); then `log::access` with the size.
    todo!("ex02: build the response, send it")
}
// ANCHOR_END: respond

// `--naive`: what the lecture's first server sent. Bare LF where HTTP wants
// CRLF, and no Content-Length, so the client cannot know where the body ends
// until the connection closes. curl copes (it says so in -v), but the
// connection can never be reused, and a body that is cut off looks complete.
// ANCHOR: naive
fn naive_respond(mut conn: Connection, request: &Request) -> io::Result<()> {
    // No Date, no Content-Type (the browser guesses), no length, bare LF.
    let mut response = b"HTTP/1.1 200 OK\n\n".to_vec();
    response.extend_from_slice(page(request).as_bytes());
    conn.write_raw(&response)?; // bytes no `Response` would ever produce
    log::access(conn.peer(), &request.request_line(), 200, None);
    Ok(()) // dropping `conn` closes it: the only end-of-body marker we sent
}
// ANCHOR_END: naive

/// The one page this server knows, naming what was asked for. The method and
/// path are the client's bytes, so they are escaped before going into HTML:
/// otherwise `/<script>…` would run in the visitor's browser.
fn page(request: &Request) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>Hello</title></head>\n\
         <body><h1>Hello, World!</h1>\n<p>You asked for {} {}</p></body></html>\n",
        html_escape(&request.method),
        html_escape(request.target.as_str())
    )
}

// Refuse a request we cannot or will not answer: the status from the parser
// (400, 414, 431, 505, 501, 413) or 408 for a client that ran out of time.
// `Connection::refuse` logs it, sends the error page and closes without
// losing it (a lingering close).
// ANCHOR: reject
fn reject<T>(conn: Connection, request: Option<&Request>, got: Got<T>) -> io::Result<()> {
    // TODO(ex02): `conn.refuse` answers a Got that is not Done (the error page,
    //   then a lingering close). This server wants a request: a client that
    //   sent nothing before the deadline (`Got::Idle`) gets 408 too (`Got::TimedOut`).
    todo!("ex02: refuse, close gracefully")
}
// ANCHOR_END: reject

fn html_escape(text: &str) -> String {
    // `&` first, or the `&` of every `&lt;` would be escaped again.
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
