//! # Lesson 06: how does my Flask app get called?
//!
//! Lecture: `lessons/06-wsgi.md` · Exercise: `exercises/ex06_wsgi/`
//!
//! New here: the server keeps ONE Python interpreter alive and calls a
//! function in it for every request, as PEP 3333 (WSGI) describes:
//! `app(environ, start_response)`. Rung 3 started a program per request;
//! Flask, Django and every WSGI app are called this way by gunicorn.
//!
//! This file is the rung: its command line, its set-up and shutdown, and the
//! one piece no other rung has, the hand-off between the event loop's thread
//! and the Python threads (`Handoff`, `answer`, `LoopSink`). Read it first,
//! then, with the chapter:
//! 1. `src/python.rs`: CPython inside the server (start it, load the app,
//!    finalize it so `atexit` runs);
//! 2. `src/wsgi.rs`: PEP 3333 itself: the environ, `start_response`, the
//!    body loop and `close()`. It hands the response to a `ResponseSink`;
//!    rung 7's workers use the blocking one next to it, and this rung's sink
//!    is here, because it IS the lesson: how an answer crosses threads.
//!
//! From earlier lessons: the event loop (`ladder::event_loop` and
//! `ladder::http_connection`, 05) accepts, parses, times out, keeps
//! connections alive and buffers request bodies; the thread pool
//! (`ladder::pool`, 04) runs the app; the environ's CGI keys are lesson 03's.
//!
//! Run: `cargo run --bin lesson06_wsgi -- --chdir apps hello:app`, then
//! `curl -i http://127.0.0.1:8006/`; add `--trace` to watch the hand-off.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use pyo3::Python;

use ladder::event_loop::{Answer, BodySender, Client, Config, EventLoop, Handler, Remote, Ticket};
use ladder::http::{Body, Limits, Request, Response, ServerInfo};
use ladder::http_connection::Settings;
use ladder::pool::ThreadPool;
use ladder::python::Interpreter;
use ladder::readiness::Backend;
use ladder::wsgi;
use ladder::{cli, log, python, shutdown, trace};

fn main() -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lesson06_wsgi: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Most connections open at once; more get a 503. (In production, raise
/// the fd limit first, as rung 5 does.)
const MAX_CONNECTIONS: usize = 1000;

/// Lesson 06: a WSGI server (PEP 3333): CPython embedded, an event loop for the
/// sockets, Python threads for the app.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
        cargo run --bin lesson06_wsgi -- --chdir apps hello:app\n  \
        curl -i http://127.0.0.1:8006/\n  \
        cargo run --bin lesson06_wsgi -- --chdir apps --trace environ:app\n  \
        scripts/python-env.sh      (once: Flask, Werkzeug, WebOb in target/venv)\n  \
        cargo run --bin lesson06_wsgi -- --python target/venv --chdir apps flask_login:app\n  \
        cargo run --release --bin lesson06_wsgi -- --chdir apps --threads 4 gil:app\n  \
        cargo run --bin lesson06_wsgi -- -b 0.0.0.0:8000 --chdir apps hello:app   (gunicorn's -b)"
)]
struct Args {
    /// The WSGI app, as gunicorn takes it: MODULE:CALLABLE (e.g. hello:app), or
    /// MODULE:FACTORY(ARGS) to call a factory that returns the app
    #[arg(value_name = "APP")]
    app: String,

    #[command(flatten)]
    listen: cli::ListenArgs<6>,

    /// Python threads that run the app; wsgi.multithread is true when N > 1
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,

    /// Seconds an app call may take before its client gets a 504 and the connection
    /// closes (the Python thread runs on: a thread cannot be killed); 0 = no limit
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = seconds())]
    timeout: u64,

    /// The Python whose packages the app sees: a venv directory or a python
    /// executable [default: $VIRTUAL_ENV, else the Python this server was built with]
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,

    /// Change to this directory first; it goes first on sys.path, so the APP module
    /// is found there
    #[arg(long, value_name = "DIR")]
    chdir: Option<PathBuf>,

    /// The URL prefix the app is mounted at (SCRIPT_NAME), e.g. /app
    #[arg(long, value_name = "PREFIX", default_value = "")]
    script_name: String,

    /// Largest request body in bytes, read whole before the app runs; larger gets 413
    #[arg(long, value_name = "BYTES", default_value_t = 10 * 1024 * 1024)]
    max_body: u64,

    /// Seconds a client has to send a whole request head
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = seconds())]
    header_timeout: u64,

    /// Seconds an idle keep-alive connection, or a client that stopped reading, is kept
    #[arg(long, visible_alias = "idle-timeout", value_name = "SECS", default_value_t = 5,
          value_parser = seconds())]
    keep_alive: u64,
}

// ANCHOR: run
/// Start the loop and Python, serve until SIGINT or SIGTERM, then stop in
/// the order that lets Python finish properly.
fn run(args: Args) -> io::Result<ExitCode> {
    let mut server = EventLoop::new(cli::listen(args.listen.addr())?, loop_config(&args))?;
    // Before any other thread exists (Python's, the pool's): they inherit
    // the blocked signals, and only the signal thread ever sees one.
    let remote = server.remote();
    shutdown::on_termination(move |_| remote.stop())?;

    let Some((interpreter, gateway)) = start_python(&args)? else {
        return Ok(ExitCode::from(python::EXIT_LOAD_FAILED as u8));
    };
    let mut handoff = Handoff {
        gateway: Arc::new(gateway),
        // Each Python thread attaches to the interpreter once, for its life.
        pool: ThreadPool::with_setup(usize::from(args.threads), python::keep_thread_state)?,
        remote: server.remote(),
        local: server.local_addr()?,
        timeout: server_timeout(&args),
    };
    cli::announce("http", server.local_addr()?)?;
    server.run(&mut handoff)?;

    // Shutdown. The loop has stopped; dropping it closes every connection,
    // so an app still streaming hears "client gone" and is closed. Then the
    // pool finishes what it holds, the app goes, and Python runs its
    // `atexit` handlers, on this thread, which started it.
    drop(server);
    trace!("shutdown: waiting for the python threads");
    let Handoff { gateway, pool, .. } = handoff;
    drop(pool);
    Python::attach(|_| drop(gateway));
    interpreter.finalize()?;
    Ok(ExitCode::SUCCESS)
}
// ANCHOR_END: run

// ANCHOR: start_python
/// Start Python on this thread (which must also stop it) and load the app;
/// `None` once the reason it cannot be loaded is on stderr.
fn start_python(args: &Args) -> io::Result<Option<(Interpreter, wsgi::Gateway)>> {
    // `--python` is relative to where we were started, the app to `--chdir`.
    let python = args
        .python
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;
    if let Some(dir) = &args.chdir {
        std::env::set_current_dir(dir).map_err(|err| {
            io::Error::new(err.kind(), format!("--chdir {}: {err}", dir.display()))
        })?;
    }
    let app_dir = Some(std::env::current_dir()?);
    let argv = std::env::args_os().collect();
    let interpreter = python::initialize(&python::Config {
        python,
        app_dir,
        argv,
    })?;
    let app = match python::load_app(&args.app) {
        Ok(app) => app,
        Err(err) => {
            err.report("lesson06");
            return Ok(None); // dropping `interpreter` finalizes it
        }
    };
    let settings = wsgi::Settings {
        script_name: args.script_name.clone(),
        multithread: args.threads > 1,
        log_tag: "lesson06",
        ..wsgi::Settings::default()
    };
    Ok(Some((interpreter, wsgi::Gateway::new(app, settings)?)))
}
// ANCHOR_END: start_python

/// Rung 5's loop, with rung 6's limits: the body limit, the timeouts, and
/// `--timeout` for answers that come from the Python threads.
fn loop_config(args: &Args) -> Config {
    Config {
        backend: Backend::Mio,
        max_connections: MAX_CONNECTIONS,
        http: Settings {
            limits: Limits {
                max_body: args.max_body,
                ..Limits::default()
            },
            header_timeout: Duration::from_secs(args.header_timeout),
            idle_timeout: Duration::from_secs(args.keep_alive),
            server: ServerInfo::PLAIN,
            answer_timeout: server_timeout(args),
            // `answer` logs each request once the body has ended, with the
            // bytes the app really sent.
            log_later: false,
        },
    }
}

/// `--timeout` as a limit; 0 is none, as in gunicorn.
fn server_timeout(args: &Args) -> Option<Duration> {
    (args.timeout > 0).then(|| Duration::from_secs(args.timeout))
}

/// The loop's side of the hand-off. Its `handle` runs on the loop's thread,
/// which must never wait, and never touches Python: it only queues.
struct Handoff {
    gateway: Arc<wsgi::Gateway>,
    pool: ThreadPool,
    remote: Remote,
    local: SocketAddr,
    timeout: Option<Duration>,
}

/// One request on its way to a Python thread: everything `answer` needs,
/// owned, since it outlives the loop's turn.
struct Job {
    request: Request,
    body: Vec<u8>,
    client: Client,
    local: SocketAddr,
    gateway: Arc<wsgi::Gateway>,
    remote: Remote,
    queued: Instant,
    timeout: Option<Duration>,
}

impl Handler for Handoff {
    // ANCHOR: handle
    /// A complete request (its body read whole by the loop, so a slow upload
    /// never holds a Python thread): queue it for the pool, answer `Later`.
    /// The connection waits, reading nothing more, until `answer` delivers.
    fn handle(&mut self, request: &Request, body: Vec<u8>, client: Client) -> Answer {
        trace!(
            "loop: {} on {} -> python thread",
            request.request_line(),
            client.ticket
        );
        let job = Job {
            request: request.clone(),
            body,
            client,
            local: self.local,
            gateway: Arc::clone(&self.gateway),
            remote: self.remote.clone(),
            queued: Instant::now(),
            timeout: self.timeout,
        };
        match self.pool.execute(move || answer(job)) {
            Ok(()) => Answer::Later,
            Err(err) => Answer::Now(Response::error(503, &err.to_string())),
        }
    }
    // ANCHOR_END: handle
}

// ANCHOR: answer
/// On a Python thread: call the app through the gateway, which takes the
/// GIL, and hand what it answers to the loop through `LoopSink`. Then the
/// access line, written now that the body has ended and its size is known.
fn answer(job: Job) {
    let Job {
        request, client, ..
    } = &job;
    if job
        .timeout
        .is_some_and(|limit| job.queued.elapsed() >= limit)
    {
        // Every thread was busy for longer than --timeout: the client has
        // had its 504 already. Calling the app now would be wasted work.
        return trace!(
            "python thread {}: {} was too late, skipped",
            python_thread(),
            client.ticket
        );
    }
    let call = wsgi::Call {
        request,
        body: &job.body,
        peer: client.peer,
        local: job.local,
    };
    let mut sink = LoopSink {
        remote: job.remote.clone(),
        ticket: client.ticket,
        body: None,
        started: false,
    };
    let served = job.gateway.call(&call, &mut sink);
    trace!(
        "python thread {}: answered {}: {} with {} bytes, {:?} ({:.3} ms waiting for the GIL)",
        python_thread(),
        client.ticket,
        served.status,
        served.bytes,
        served.ending,
        served.gil_wait.as_secs_f64() * 1000.0
    );
    log_served(&job, &served);
}
// ANCHOR_END: answer

// ANCHOR: loop_sink
/// Rung 6's `ResponseSink`: the gateway calls it on a Python thread (without
/// the GIL), and it hands each part of the response to the loop's thread,
/// which alone writes to sockets.
struct LoopSink {
    remote: Remote,
    ticket: Ticket,
    /// The producing end of a streamed body, once the head has gone.
    body: Option<BodySender>,
    /// Has a head gone to the loop? (See `Drop` below.)
    started: bool,
}

impl wsgi::ResponseSink for LoopSink {
    /// The head. A streamed body (the app's iterable) gets a channel to the
    /// loop; a body complete in memory (a list of bytes, the 500 page) or a
    /// file (`wsgi.file_wrapper`) goes whole, in one message, and the loop
    /// sends it as the socket takes it.
    fn start(&mut self, response: Response) -> io::Result<()> {
        self.started = true;
        if matches!(response.body, Body::Stream { .. }) {
            self.body = Some(self.remote.stream(self.ticket, response));
        } else {
            self.remote.respond(self.ticket, response);
        }
        Ok(())
    }

    // ANCHOR: backpressure
    /// One chunk of the app's iterable. `send` blocks while the loop holds
    /// enough unsent pieces (backpressure: a 1 GB generator never sits in
    /// memory); `Err` means the client is gone, and the gateway then stops
    /// iterating and calls the app's `close()`.
    fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        match &self.body {
            Some(body) => body.send(data.to_vec()),
            None => Err(io::Error::other("a body chunk before a streamed head")),
        }
    }
    // ANCHOR_END: backpressure

    /// Complete: the last piece goes. Broken (the app failed mid-stream, or
    /// sent less than its Content-Length): the sender is dropped unfinished,
    /// and the loop aborts the connection, so the client cannot mistake a
    /// truncated body for a whole one.
    fn end(&mut self, complete: bool) -> io::Result<()> {
        match self.body.take() {
            Some(body) if complete => body.finish(),
            _ => Ok(()),
        }
    }
}
// ANCHOR_END: loop_sink

/// A sink dropped before any head went out means the gateway never got as
/// far as an answer: a panic on the Python thread (a bug; in exercise 06, a
/// hole still `todo!()`), which the pool survives. Answer 500 at once
/// rather than leave the client waiting for `--timeout`. (A ticket whose
/// client has gone meanwhile is simply dropped by the loop.)
impl Drop for LoopSink {
    fn drop(&mut self) {
        if !self.started {
            let page = Response::error(500, "the server failed before answering; see its log");
            self.remote.respond(self.ticket, page);
        }
    }
}

/// The access line, in `http.server`'s format, from what the gateway says
/// it sent; for an answer the loop had given up on (`--timeout`), a line
/// saying so instead: the loop logged its 504 already.
fn log_served(job: &Job, served: &wsgi::Served) {
    let took = job.queued.elapsed();
    if job.timeout.is_some_and(|limit| took >= limit) {
        eprintln!(
            "[lesson06] {} {}: the app took {:.1} s, over --timeout; the client got a 504 \
             (a Python thread cannot be stopped, only waited for)",
            job.request.method,
            job.request.target,
            took.as_secs_f64()
        );
    } else if !log::quiet() {
        let line = job.request.request_line();
        log::access(job.client.peer, &line, served.status, Some(served.bytes));
    }
}

/// `2` for the pool's `worker 2`: the names `--trace` and `ps -L` show.
fn python_thread() -> String {
    let me = std::thread::current();
    let name = me.name().unwrap_or("?");
    name.rsplit(' ').next().unwrap_or(name).to_string()
}

/// Timeouts up to a day: a deadline is `Instant + timeout`, which must not
/// overflow.
fn seconds() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(0..=86_400)
}
