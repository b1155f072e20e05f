//! # Lesson 06: how does my Flask app get called?
//!
//! Lecture: `lessons/06-wsgi.md` · Exercise: `exercises/ex06_wsgi/`
//!
//! New here: the server keeps ONE Python interpreter alive and calls a
//! function in it for every request, as PEP 3333 (WSGI) describes:
//! `app(environ, start_response)`. Rung 3 started a program per request;
//! Flask, Django and every WSGI app are called this way by gunicorn.
//!
//! This file is the rung's wiring: its command line, its set-up and its
//! shutdown. Read it first, then, with the chapter:
//! 1. `src/python.rs`: CPython inside the server (start it, load the app,
//!    finalize it so `atexit` runs);
//! 2. `src/wsgi.rs`: PEP 3333 itself: the environ, `start_response`, the
//!    body loop and `close()`; and, at its end, the hand-off between the
//!    event loop's thread and the Python threads (`Handoff`, `answer`,
//!    `LoopSink`: how an answer crosses threads). It lives in the library
//!    because rung 7's workers run the same hand-off.
//!
//! From earlier lessons: the event loop (`ladder::event_loop` and
//! `ladder::http_connection`, 05) accepts, parses, times out, keeps
//! connections alive and buffers request bodies; the thread pool
//! (`ladder::pool`, 04) runs the app; the environ's CGI keys are lesson 03's.
//!
//! Run: `cargo run --bin lesson06_wsgi -- --chdir apps hello:app`, then
//! `curl -i http://127.0.0.1:8006/`; add `--trace` to watch the hand-off.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use ladder::event_loop::{Config, EventLoop};
use ladder::http::{Limits, ServerInfo};
use ladder::http_connection::Settings;
use ladder::python::Interpreter;
use ladder::readiness::Backend;
use ladder::wsgi;
use ladder::{cli, python, shutdown};

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

    /// Seconds a client has to send a whole request head, and may pause within a body
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
    let threads = usize::from(args.threads);
    let mut handoff = wsgi::Handoff::new(gateway, threads, &server, server_timeout(&args))?;
    cli::announce("http", server.local_addr()?)?;
    server.run(&mut handoff)?;

    // Shutdown. The loop has stopped; dropping it closes every connection,
    // so an app still streaming hears "client gone" and is closed. Then the
    // pool finishes what it holds, the app goes, and Python runs its
    // `atexit` handlers, on this thread, which started it.
    drop(server);
    handoff.finish();
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
            body_timeout: Duration::from_secs(args.header_timeout),
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

/// Timeouts up to a day: a deadline is `Instant + timeout`, which must not
/// overflow.
fn seconds() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(0..=86_400)
}
