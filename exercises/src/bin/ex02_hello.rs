//! # Lesson 02: HTTP on the wire
//!
//! Lecture: `lessons/02-hello.md` · Exercise: `exercises/ex02_hello/`
//!
//! New here: a request head read in a loop until it is complete (TCP may hand
//! it over in pieces), a response framed the way RFC 9112 wants it (CRLF line
//! ends, `Content-Length`, `Connection: close`), a body read and thrown away,
//! error answers for bad input, and a deadline for clients that send nothing.
//! The protocol itself (parse, limits, render) lives in `ladder::http`, read
//! it alongside: `src/http.rs`.
//! From earlier lessons: the socket calls (lesson 01), now behind std's
//! `TcpListener`; the shared flags and `--trace`.
//! Crates used: httparse (through `ladder::http`), httpdate (the Date
//! header), clap.
//!
//! Run: `cargo run --bin lesson02_hello`
//! Try: `curl -v http://127.0.0.1:8002/hello`, then the same against
//! `cargo run --bin lesson02_hello -- --naive`, and `nc 127.0.0.1 8002`
//! typing a request by hand (end it with an empty line).
//!
//! Reading order: `main` → `run` → `serve` → `read_head` → `respond`
//! (→ `naive_respond`) → `reject`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

use ladder::cli::ListenArgs;
use ladder::http::{
    BodyDecoder, BodyFraming, Framing, Limits, Parsed, Rejection, Request, ResponseHead,
    parse_request,
};
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
    // One call does lesson 01's socket + setsockopt(SO_REUSEADDR) + bind +
    // listen(128), with close-on-exec set and EINTR retried for us.
    let addr = args.listen.addr();
    let listener = TcpListener::bind(addr).map_err(|err| bind_error(addr, err))?;
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

/// Turn a failed bind into a sentence that says what to do next.
fn bind_error(addr: SocketAddr, err: io::Error) -> io::Error {
    let hint = match err.kind() {
        io::ErrorKind::AddrInUse => " — is another lesson02_hello running? try --port 0",
        io::ErrorKind::PermissionDenied => " — ports below 1024 need root; try --port 8002",
        io::ErrorKind::AddrNotAvailable => " — no such address here; try --bind 127.0.0.1",
        _ => "",
    };
    io::Error::new(err.kind(), format!("binding {addr}: {err}{hint}"))
}

/// How reading a request (head or body) ended, when it did not just work.
///
/// Only `io::Error` means "this connection is broken"; everything a client can
/// get wrong is a value here, and each value has an answer: a status code, or
/// silence for a client that already left (STYLE: protocol failures are
/// values, not errors).
enum Got<T> {
    Done(T),
    /// The bytes are not acceptable: answer with this status and close.
    Rejected(Rejection),
    /// The deadline passed first.
    TimedOut,
    /// The client closed the connection first.
    Closed,
}

// One connection = one request. The stream closes when `serve` returns and
// `stream` is dropped (close(2), as in lesson 01, but done for us by Drop).
// ANCHOR: serve
fn serve(mut stream: TcpStream, peer: SocketAddr, config: &Config) -> io::Result<()> {
    // TODO(ex02): one connection, one request, all within config.header_timeout:
    //   `read_head`, `print_head`, `discard_body`, then `respond` (or
    //   `naive_respond` with --naive); anything else goes to `reject`.
    //   Read first: lessons/02-hello.md, "How it works", and src/http.rs.
    todo!("ex02: read the head, answer it")
}
// ANCHOR_END: serve

// A request head ends at the first empty line, and nothing says how many
// read() calls it takes to get there: a browser sends it in one packet, `nc`
// one line per Enter, a hostile client one byte per second. So: parse what we
// have; if the parser says Partial, read more and parse again. The deadline
// is for the whole head, not per read, or a dribbling client could keep us
// busy forever by sending a byte just before each read times out.
// ANCHOR: read_head
fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    config: &Config,
    deadline: Instant,
) -> io::Result<Got<(Request, usize)>> {
    // TODO(ex02): loop: parse_request(buf, &config.limits): Complete -> Got::Done;
    //   Err(rejection) -> Got::Rejected; Partial -> `read_more` and parse again
    //   (Some(0): the client closed -> Got::Closed; None: too late -> Got::TimedOut).
    todo!("ex02: parse, read more while Partial")
}
// ANCHOR_END: read_head

/// One read(2), bounded by what is left until `deadline`. `Some(0)` is EOF,
/// `None` means the deadline passed.
fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<Option<usize>> {
    let mut chunk = [0u8; 4096];
    loop {
        // The timeout is re-armed before every read with what is left of the
        // deadline; a fixed per-read timeout would restart with every byte.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        // SO_RCVTIMEO: a blocked read gives up after `left` with EAGAIN.
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(n) => {
                trace!("read({}) -> {n} bytes", stream.as_raw_fd());
                buf.extend_from_slice(&chunk[..n]);
                return Ok(Some(n));
            }
            Err(e) if timed_out(&e) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

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

/// Read the request body and throw it away. We do not need it, but closing a
/// socket with unread bytes in its receive buffer makes the kernel send RST,
/// which can destroy our response before the client has read it.
fn discard_body(
    stream: &mut TcpStream,
    request: &Request,
    input: &[u8],
    config: &Config,
    deadline: Instant,
) -> io::Result<Got<()>> {
    let framing = match request
        .check_method(METHODS)
        .and_then(|()| request.body_framing(&config.limits))
    {
        Ok(framing) => framing,
        Err(rejection) => return Ok(Got::Rejected(rejection)),
    };
    // `Expect: 100-continue` (RFC 9110 §10.1.1): the client holds back a
    // large body until the server says go ahead; curl does this above 1 MiB
    // and, with no answer, waits a second before sending anyway.
    let expects = request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects && framing != BodyFraming::Empty && input.is_empty() {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    // The decoder is sans I/O like the parser: it is fed whatever bytes
    // arrived (first the ones that came in with the head), says how many it
    // used, and knows by itself when a Content-Length or chunked body ends.
    let mut decoder = BodyDecoder::new(framing, &config.limits);
    let (mut pending, mut body) = (input.to_vec(), Vec::new());
    while !decoder.is_done() {
        if pending.is_empty() {
            match read_more(stream, &mut pending, deadline)? {
                Some(0) => return Ok(Got::Closed),
                Some(_) => {}
                None => return Ok(Got::TimedOut),
            }
        }
        match decoder.feed(&pending, &mut body) {
            Ok(used) => drop(pending.drain(..used)),
            Err(rejection) => return Ok(Got::Rejected(rejection)),
        }
        body.clear(); // thrown away as it arrives: memory stays flat
    }
    Ok(Got::Done(()))
}

// The answer. ResponseHead::render writes the status line and every header
// with CRLF line ends, adds Date, Content-Length and Connection, and the blank
// line that ends the head (see src/http.rs). We always say Connection: close:
// this server serves one client at a time, and a browser that kept its
// connection open would lock everyone else out until it timed out. Keep-alive
// comes back in lesson 05, where one idle connection costs nobody anything.
// ANCHOR: respond
fn respond(mut stream: TcpStream, peer: SocketAddr, request: &Request) -> io::Result<()> {
    // TODO(ex02): 200 with `page(request)` as the body: ResponseHead::new(200),
    //   a Content-Type, rendered with Framing::Length(body length) and no
    //   keep-alive; the body only if the method is not HEAD; write it all;
    //   then log::access.
    todo!("ex02: render the head, write head and body")
}
// ANCHOR_END: respond

// `--naive`: what the lecture's first server sent. Bare LF where HTTP wants
// CRLF, and no Content-Length, so the client cannot know where the body ends
// until the connection closes. curl copes (it says so in -v), but the
// connection can never be reused, and a body that is cut off looks complete.
// ANCHOR: naive
fn naive_respond(mut stream: TcpStream, peer: SocketAddr, request: &Request) -> io::Result<()> {
    // No Date, no Content-Type (the browser guesses), no length, bare LF.
    let mut response = b"HTTP/1.1 200 OK\n\n".to_vec();
    response.extend_from_slice(page(request).as_bytes());
    stream.write_all(&response)?;
    log::access(peer, &request.request_line(), 200, None);
    Ok(()) // dropping `stream` closes it: the only end-of-body marker we sent
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
// After an error we cannot trust where the next request would start, so the
// connection is closed. "Lingering close": shut our sending side first and
// read what the client is still sending, briefly, so that our close() does
// not turn into a RST that wipes out the error response in flight.
// ANCHOR: reject
fn reject<T>(mut stream: TcpStream, peer: SocketAddr, buf: &[u8], got: Got<T>) -> io::Result<()> {
    // TODO(ex02): answer the Rejection (Got::TimedOut: 408; Got::Closed: nothing),
    //   log it, then close gracefully: shutdown(Write), then read and throw away
    //   what still arrives for up to a second, so close() sends no RST.
    todo!("ex02: answer the error, close gracefully")
}
// ANCHOR_END: reject

/// The request line as far as it arrived, for the access log. Capped: a 414
/// line is 8 KiB of junk nobody wants in a log.
fn first_line(buf: &[u8]) -> String {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = &line[..line.len().min(200)];
    String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)).into_owned()
}

fn html_escape(text: &str) -> String {
    // `&` first, or the `&` of every `&lt;` would be escaped again.
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// SO_RCVTIMEO expired. Linux reports it as EAGAIN (`WouldBlock`), other
/// systems as ETIMEDOUT; std passes either through as it came.
fn timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
