//! # Lesson 05: one thread, many sockets
//!
//! Lecture: `lessons/05-epoll.md` · Exercise: `exercises/ex05_epoll/`
//!
//! New here: readiness I/O. This file is the rung: its routes and its
//! set-up. The machinery is new too, and lives in the library because rungs
//! 6 and 8 run on it; read it in this order with the chapter:
//! 1. `src/readiness.rs`: mio's `Poll`, `Token`, `Interest`, and the bare
//!    `epoll_create1`/`epoll_ctl`/`epoll_wait` calls beside it (`--raw-epoll`);
//! 2. `src/event_loop.rs`: the loop, accepting until `WouldBlock`, one heap
//!    of timers, and answers that other threads deliver later (`/count`);
//! 3. `src/http_connection.rs`: one connection's state machine: keep-alive,
//!    pipelining, bodies, slow readers, lingering close.
//!
//! From earlier lessons: parsing and responses (`ladder::http`, 02), the
//! access log (`ladder::log`, 02), serving files (`ladder::static_files`, 04).
//!
//! Run: `cargo run --bin lesson05_epoll` (serves `.` on <http://127.0.0.1:8005/>)
//! Try: `curl -v http://127.0.0.1:8005/hello`, then `nc 127.0.0.1 8005` and
//! type a request slowly while another terminal runs curl; add `--trace`.

use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

use ladder::event_loop::{Answer, Client, Config, EventLoop, Handler, Remote, Ticket};
use ladder::http::{Body, Limits, Request, Response, ServerInfo};
use ladder::http_connection::Settings;
use ladder::readiness::Backend;
use ladder::static_files::{self, Root};
use ladder::trace;

fn main() -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lesson05_epoll: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The benchmark route's body.
const HELLO: &[u8] = b"Hello, World!\n";
/// `/slow?ms=N` burns at most this much CPU.
const SLOW_CAP_MS: u64 = 10_000;
/// `/count` sends its numbers in pieces of about this size.
const COUNT_PIECE: usize = 16 * 1024;

/// Lesson 05: one thread, many sockets: an HTTP server on an event loop (mio, or raw epoll).
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
        cargo run --bin lesson05_epoll\n  \
        curl -v http://127.0.0.1:8005/hello\n  \
        curl 'http://127.0.0.1:8005/slow?ms=2000'     (one core busy: everyone waits)\n  \
        curl -N 'http://127.0.0.1:8005/count?to=1000000000' | head   (streamed from a thread)\n  \
        cargo run --bin lesson05_epoll -- --trace --raw-epoll\n  \
        nc 127.0.0.1 8005                             (type a request slowly)"
)]
struct Args {
    #[command(flatten)]
    listen: ladder::cli::ListenArgs<5>,

    /// Directory to serve files from
    #[arg(long, short = 'd', value_name = "DIR", default_value = ".")]
    directory: PathBuf,

    /// Most connections open at once; more are answered 503 and closed
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,

    /// Seconds a client has to send a whole request head, and may pause within a body
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = seconds())]
    header_timeout: u64,

    /// Seconds an idle keep-alive connection, or a client that stopped reading, is kept
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = seconds())]
    idle_timeout: u64,

    /// Run the loop on the bare epoll system calls (through nix) instead of mio
    #[arg(long)]
    raw_epoll: bool,
}

// ANCHOR: setup
/// Set everything up, then hand over to the event loop until a signal ends it.
fn run(args: Args) -> io::Result<()> {
    raise_fd_limit()?;
    let root = Root::new(&args.directory)?;
    let config = Config {
        backend: if args.raw_epoll {
            Backend::RawEpoll
        } else {
            Backend::Mio
        },
        max_connections: args.max_connections,
        http: Settings {
            limits: Limits::default(),
            header_timeout: Duration::from_secs(args.header_timeout),
            body_timeout: Duration::from_secs(args.header_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            server: ServerInfo::PLAIN,
            // `/count` answers later: no time limit, and the loop logs it.
            answer_timeout: None,
            log_later: true,
        },
    };
    let mut server = EventLoop::new(ladder::cli::listen(args.listen.addr())?, config)?;
    // Ctrl-C and SIGTERM arrive on the signal thread; it asks the loop to
    // stop, and the loop's waker interrupts its `epoll_wait`.
    let remote = server.remote();
    ladder::shutdown::on_termination(move |_| remote.stop())?;
    ladder::cli::announce("http", server.local_addr()?)?;
    let remote = server.remote();
    server.run(&mut Routes { root, remote })
}
// ANCHOR_END: setup

/// The rung's own part: what each path answers.
struct Routes {
    /// The served directory, opened once (`ladder::static_files`).
    root: Root,
    /// For answers finished on another thread.
    remote: Remote,
}

impl Handler for Routes {
    // ANCHOR: routes
    /// Runs on the loop's only thread: while it runs, no other client is
    /// read, written or accepted. `/hello` and files are quick; `/slow` is
    /// the failure this rung ends with; `/count` does its work elsewhere.
    fn handle(&mut self, request: &Request, _body: Vec<u8>, client: Client) -> Answer {
        let get = request.method == "GET" || request.is_head();
        match request.path() {
            "/hello" if get => Answer::Now(Response::with_bytes(200, "text/plain", HELLO)),
            "/slow" if get => {
                let ms = burn_cpu(request.query());
                let body = format!("burned {ms} ms of CPU on the only thread\n");
                Answer::Now(Response::with_bytes(200, "text/plain", body))
            }
            "/count" if get => {
                let to = number(request.query(), "to").unwrap_or(10);
                count(to, self.remote.clone(), client.ticket);
                Answer::Later
            }
            // Rung 4's file serving, unchanged: it decides the answer and
            // hands over an open file; how the bytes travel is the loop's
            // business. (Opening a file blocks the loop for a moment too; in
            // production, nginx can move that to a thread pool: `aio threads`.)
            _ => Answer::Now(static_files::respond(&self.root, request)),
        }
    }
    // ANCHOR_END: routes
}

// ANCHOR: count
/// `/count?to=N`: the numbers 1 to N, one a line, produced on a thread of
/// its own and streamed as they come (chunked: nobody knows the length in
/// advance). `send` blocks while the client is behind, so a billion lines
/// never sit in memory; it fails once the client has gone, and the thread
/// stops. (In production, a pool of threads: rung 6 has one.)
fn count(to: u64, remote: Remote, ticket: Ticket) {
    let producer = remote.clone();
    let spawned = thread::Builder::new().name("count".into()).spawn(move || {
        let head = Response::new(200).header("Content-Type", "text/plain");
        let body = producer.stream(ticket, head.body(Body::Stream { len: None }));
        let mut piece = String::with_capacity(COUNT_PIECE + 32);
        for n in 1..=to {
            let _ = writeln!(piece, "{n}");
            let full = piece.len() >= COUNT_PIECE || n == to;
            if full && body.send(std::mem::take(&mut piece).into_bytes()).is_err() {
                return trace!("count: the client is gone at {n}, stopping");
            }
        }
        let _ = body.finish();
    });
    if let Err(err) = spawned {
        remote.respond(ticket, Response::error(503, &format!("no thread: {err}")));
    }
}
// ANCHOR_END: count

/// `/slow?ms=N`: spin on the CPU for N ms (at most SLOW_CAP_MS). A busy
/// loop, not a sleep: it stands for real work (templates, JSON), and while
/// it runs, this thread serves nobody else.
fn burn_cpu(query: &str) -> u64 {
    let ms = number(query, "ms").unwrap_or(100).min(SLOW_CAP_MS);
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    ms
}

/// The number after `name=` in a query string.
fn number(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
}

/// Timeouts up to a day: a deadline is `Instant + timeout`, which must not
/// overflow (with `u64::MAX` seconds it would, and panic).
fn seconds() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(0..=86_400)
}

/// Raise the soft limit on open files to the hard limit: every connection
/// is an fd, and the usual soft limit (1024) is far below C10k.
fn raise_fd_limit() -> io::Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    trace!("setrlimit(RLIMIT_NOFILE, {hard}) (soft limit was {soft})");
    Ok(())
}
