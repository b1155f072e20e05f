//! A pre-fork server's workers: what runs in each process the master forks,
//! and what the master and its workers share (the flags, the heartbeat, the
//! log).
//!
//! Introduced in lesson 07 (`lessons/07-prefork.md`). Read it after
//! `src/bin/lesson07_prefork.rs`, the master: the master is the lesson's
//! idea (fork, signals, reaping); this is what each child does with its
//! life, from [`run_worker`] down.
//!
//! Two worker classes, as gunicorn has:
//! - `sync` (`sync_worker`): wait for a connection, serve ONE request on
//!   it, close it. A slow client holds the whole worker.
//! - `gthread` (`gthread_worker`): rung 6 in each process, the event
//!   loop holding the connections and Python threads running the app.
//!
//! A worker proves it is alive with a [`Heartbeat`] the master can see.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use clap::ValueEnum;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{getsockopt, sockopt};
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::sys::wait::WaitStatus;
use nix::unistd::{Pid, dup2_stdin, getpid, getppid};
use pyo3::{Py, PyAny, Python};

use crate::connection::{Connection, Got};
use crate::event_loop::{Answer, Client, Config, EventLoop, Handler, Remote};
use crate::http::{Limits, Request, ServerInfo};
use crate::http_connection::Settings;
use crate::python::{self, Interpreter};
use crate::readiness::Backend;
use crate::{log, trace, wsgi};

/// Exit statuses gunicorn uses, so that scripts written for it read ours:
/// a worker that could not start, or could not import the app. The master
/// stops with the same status instead of respawning it forever.
pub const WORKER_BOOT_ERROR: i32 = 3;
pub const APP_LOAD_ERROR: i32 = 4;

/// `lesson07_prefork --help`, after the flags: the signals, and examples.
pub const AFTER_HELP: &str = "\
Signals to the master (kill -SIGNAL PID; the PID is in the log, and in --pid FILE):
  TTIN, TTOU  one worker more, one fewer    HUP        new workers; the old ones drain
  TERM        graceful stop                 INT, QUIT  quick stop
  USR1        reopen --log-file             USR2       a new master on the same socket

Examples:
  cargo run --bin lesson07_prefork -- -w 4 --chdir apps workers:app
  curl http://127.0.0.1:8007/         (which worker answered, and its request count)
  pgrep -l l07                        (the master and its workers, by name)
  cargo run --bin lesson07_prefork -- -w 2 --pid /tmp/l07.pid --chdir apps workers:app
  kill -TTIN $(cat /tmp/l07.pid)
  cargo run --bin lesson07_prefork -- -k gthread --threads 4 -w 2 --chdir apps hello:app
  scripts/python-env.sh               (once: Flask, Werkzeug, WebOb in target/venv)
  cargo run --bin lesson07_prefork -- --python target/venv -w 2 --chdir apps flask_login:app";

/// gunicorn's flags, with gunicorn's meanings and defaults.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// The WSGI app, as gunicorn takes it: MODULE:CALLABLE (e.g. hello:app)
    #[arg(value_name = "APP")]
    pub app: String,
    /// Worker processes; TTIN and TTOU change the number while running
    #[arg(short, long, value_name = "N", default_value_t = 1, value_parser = 1..=200)]
    pub workers: i64,
    /// sync: one request at a time, the connection closed after it. gthread: rung 6's
    /// event loop with --threads Python threads, keep-alive
    #[arg(short = 'k', long, value_enum, value_name = "CLASS", default_value_t = Class::Sync)]
    pub worker_class: Class,
    /// Python threads in each gthread worker; more than 1 turns sync into gthread
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = 1..=256)]
    pub threads: i64,
    /// Seconds a worker may be silent (no heartbeat) before the master kills it;
    /// a gthread worker answers 504 to an app call this slow
    #[arg(short, long, value_name = "SECS", default_value_t = 30, value_parser = 1..=86_400)]
    pub timeout: i64,
    /// Seconds a stopping worker has to finish its requests before SIGKILL
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = 0..=86_400)]
    pub graceful_timeout: i64,
    /// Recycle a worker after this many requests (0: never), to contain leaks
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_requests: u64,
    /// Add 0..=N to each worker's --max-requests, so they do not restart together
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_requests_jitter: u64,
    /// Import the app in the master, before forking (HUP then loads no new code)
    #[arg(long)]
    pub preload: bool,
    /// Set SO_REUSEPORT on the socket, so other processes may bind the port too
    #[arg(long)]
    pub reuse_port: bool,
    /// Write the master's PID to FILE (FILE.oldbin during a USR2 upgrade)
    #[arg(long = "pid", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Change to DIR first; the APP module is imported from there
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// The Python whose packages the app sees: a venv directory or a python executable
    /// [default: $VIRTUAL_ENV, else the Python this server was built with]
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// Append the logs (stderr) to FILE; USR1 reopens it after a log rotation
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Seconds a gthread worker keeps an idle connection open
    #[arg(long, value_name = "SECS", default_value_t = 2, value_parser = 1..=3600)]
    pub keep_alive: i64,
}

/// `-k`: how a worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Class {
    Sync,
    Gthread,
}

impl Options {
    /// Seconds as a `Duration` (the parsers keep them positive).
    pub fn secs(value: i64) -> Duration {
        Duration::from_secs(value.unsigned_abs())
    }
}

// ------------------------------------------------------------ heartbeat

// ANCHOR: heartbeat
/// How a worker shows the master it is alive: gunicorn's way, a temporary
/// file made by the master before the fork (so both hold it) and unlinked
/// at once (so nothing is left behind). A beat is `fchmod`, which sets the
/// file's ctime to now; the master reads the ctime with `fstat`. One system
/// call per beat, no `unsafe`, and the kernel keeps the time. (Shared
/// memory would be a store instead of a system call, but needs `mmap` and
/// raw pointers; a beat per request or per second is cheap either way.)
pub struct Heartbeat {
    file: File,
    flip: AtomicBool,
}

impl Heartbeat {
    pub fn new() -> io::Result<Heartbeat> {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "l07-heartbeat-{}-{:?}",
            getpid(),
            SystemTime::now()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(Heartbeat {
            file,
            flip: AtomicBool::new(false),
        })
    }

    /// The worker's side: "still here".
    pub fn beat(&self) {
        // Alternate two modes: a chmod to the same mode might be skipped.
        let mode = match self.flip.fetch_xor(true, Ordering::Relaxed) {
            true => Mode::S_IRUSR,
            false => Mode::S_IRUSR | Mode::S_IWUSR,
        };
        let _ = fchmod(self.file.as_fd(), mode);
    }

    /// The master's side: how long since the last beat.
    pub fn silent_for(&self) -> Duration {
        let Ok(stat) = fstat(self.file.as_fd()) else {
            return Duration::ZERO;
        };
        let ctime = Duration::new(stat.st_ctime.unsigned_abs(), stat.st_ctime_nsec as u32);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        now.saturating_sub(ctime)
    }
}
// ANCHOR_END: heartbeat

// -------------------------------------------------------- a worker's life

/// Set by SIGTERM in a worker: finish what is in flight, then exit.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// A gthread worker's loop, so that SIGTERM can drain it.
static LOOP: OnceLock<Remote> = OnceLock::new();

// ANCHOR: run_worker
/// A worker's life, from just after the fork to its exit status. Python
/// starts here, after the fork, so nothing of an interpreter crosses it,
/// unless `--preload` imported the app in the master: then `app` is it.
pub fn run_worker(
    options: &Options,
    listener: &TcpListener,
    number: u64,
    heartbeat: &Heartbeat,
    app: Option<&Py<PyAny>>,
) -> i32 {
    set_process_name(&format!("l07-worker-{number}"));
    // A worker killed for a missed heartbeat gets SIGABRT, whose default
    // action dumps core: not worth a file of the process's size each time.
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    let master = getppid();
    say(
        "INFO",
        &format!("Booting worker {number} with pid: {}", getpid()),
    );
    if let Err(err) = worker_signals(options.log_file.clone()) {
        return exit_status_of(&err, true);
    }
    let (interpreter, app) = match app {
        Some(app) => (None, Python::attach(|py| app.clone_ref(py))),
        None => match start_python(options) {
            Ok((interpreter, app)) => (Some(interpreter), app),
            Err(err) => return exit_status_of(&err, true),
        },
    };
    let settings = wsgi::Settings {
        multithread: options.threads > 1,
        multiprocess: options.workers > 1,
        log_tag: "lesson07",
        ..wsgi::Settings::default()
    };
    let jitter = u64::from(getpid().as_raw().unsigned_abs()) % (options.max_requests_jitter + 1);
    let max_requests = match options.max_requests {
        0 => u64::MAX,
        n => n + jitter,
    };
    let me = Me {
        heartbeat,
        master,
        max_requests,
    };
    let served = wsgi::Gateway::new(app, settings).and_then(|gateway| match options.worker_class {
        Class::Sync => sync_worker(listener, &gateway, &me),
        Class::Gthread => gthread_worker(options, listener, gateway, &me),
    });
    if let Err(err) = served {
        say("ERROR", &format!("worker {number}: {err}"));
    }
    // Python's atexit handlers run in the worker that imported the app.
    interpreter.map_or(0, |interpreter| i32::from(interpreter.finalize().is_err()))
}
// ANCHOR_END: run_worker

/// What a worker's loop needs to know about itself.
struct Me<'a> {
    heartbeat: &'a Heartbeat,
    master: Pid,
    max_requests: u64,
}

impl Me<'_> {
    // ANCHOR: carry_on
    /// Beat, and say whether to take another request: not after SIGTERM,
    /// not once the master is gone (we were re-parented, so `getppid`
    /// changed), not past --max-requests.
    fn carry_on(&self, served: u64) -> bool {
        self.heartbeat.beat();
        let why = match () {
            _ if STOPPING.load(Ordering::Relaxed) => return false,
            _ if getppid() != self.master => "the master is gone",
            _ if served >= self.max_requests => "--max-requests reached: recycling",
            _ => return true,
        };
        say("INFO", &format!("worker {}: {why}; exiting", getpid()));
        false
    }
    // ANCHOR_END: carry_on
}

// ANCHOR: sync_worker
/// gunicorn's sync worker: wait for a connection, serve ONE request on it,
/// close it, and again. A slow client holds the whole worker while it
/// dribbles its request or reads its answer; the heartbeat stops meanwhile,
/// and the master kills the worker at --timeout. Rung 8 fixes that.
fn sync_worker(listener: &TcpListener, gateway: &wsgi::Gateway, me: &Me) -> io::Result<()> {
    // Every worker shares this socket, and its O_NONBLOCK flag: they all
    // wake up for a new connection, one wins `accept`, the others get
    // WouldBlock and go back to waiting.
    listener.set_nonblocking(true)?;
    let mut served = 0;
    while me.carry_on(served) {
        // Wake at least once a second to beat, even with nobody to serve.
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(err) => return Err(err.into()),
        }
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
            Err(err) => return Err(err),
        };
        served += 1;
        if let Err(err) = serve_one(stream, peer, gateway) {
            trace!("worker {}: {peer}: {err}", getpid());
        }
    }
    Ok(())
}

/// One request on a blocking connection, read with no deadline, as
/// gunicorn's sync worker reads it: the master's --timeout is the limit.
fn serve_one(stream: TcpStream, peer: SocketAddr, gateway: &wsgi::Gateway) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let local = stream.local_addr()?;
    let mut conn = Connection::new(stream, peer, Limits::default()).server(ServerInfo::PLAIN);
    let request = match conn.read_request(None)? {
        Got::Done(request) => request,
        other => return conn.refuse(None, other),
    };
    let body = match conn.read_body(&request, None)? {
        Got::Done(body) => body,
        other => return conn.refuse(Some(&request), other),
    };
    let call = wsgi::Call {
        request: &request,
        body: &body,
        peer,
        local,
    };
    let served = gateway.call(
        &call,
        &mut wsgi::ConnectionSink::new(&mut conn, &request, false),
    );
    log::access(
        peer,
        &request.request_line(),
        served.status,
        Some(served.bytes),
    );
    conn.lingering_close();
    Ok(())
}
// ANCHOR_END: sync_worker

// ANCHOR: gthread_worker
/// Rung 6 in each worker: the event loop holds the connections (keep-alive;
/// a slow client costs a few bytes), Python threads run the app. The loop's
/// tick is the heartbeat, so it stops only if the loop's thread is stuck.
fn gthread_worker(
    options: &Options,
    listener: &TcpListener,
    gateway: wsgi::Gateway,
    me: &Me,
) -> io::Result<()> {
    let timeout = Some(Options::secs(options.timeout));
    let http = Settings {
        limits: Limits::default(),
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        idle_timeout: Options::secs(options.keep_alive),
        server: ServerInfo::PLAIN,
        answer_timeout: timeout,
        log_later: false,
    };
    let config = Config {
        backend: Backend::Mio,
        max_connections: 1000,
        http,
    };
    let mut server = EventLoop::new(listener.try_clone()?, config)?;
    server.tick_every(Duration::from_secs(1));
    let _ = LOOP.set(server.remote());
    if STOPPING.load(Ordering::Relaxed) {
        server.remote().drain(); // SIGTERM came while Python was starting
    }
    let threads = options.threads.unsigned_abs() as usize;
    let handoff = wsgi::Handoff::new(gateway, threads, &server, timeout)?;
    let remote = server.remote();
    let mut worker = Counting {
        handoff,
        me,
        served: 0,
        remote,
        draining: false,
        beaten: Instant::now(),
    };
    server.run(&mut worker)?;
    drop(server); // close what is left, so that a streaming app hears it
    worker.handoff.finish();
    Ok(())
}

/// Rung 6's handler, counting requests, beating at every tick.
struct Counting<'a> {
    handoff: wsgi::Handoff,
    me: &'a Me<'a>,
    served: u64,
    remote: Remote,
    draining: bool,
    /// The last beat: a tick comes every turn of the loop, a beat (two
    /// system calls) at most twice a second.
    beaten: Instant,
}

impl Handler for Counting<'_> {
    fn handle(&mut self, request: &Request, body: Vec<u8>, client: Client) -> Answer {
        self.served += 1;
        if self.served == self.me.max_requests {
            self.beaten = Instant::now() - Duration::from_secs(1); // `tick` decides now
        }
        self.handoff.handle(request, body, client)
    }

    fn tick(&mut self) {
        if self.beaten.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.beaten = Instant::now();
        if !self.draining && !self.me.carry_on(self.served) {
            self.draining = true; // finish what is in flight, then `run` returns
            self.remote.drain();
        }
        self.me.heartbeat.beat();
    }
}
// ANCHOR_END: gthread_worker

/// A worker's signals, on a thread of their own (`sigwait`, as since rung
/// 1): TERM stops gracefully, INT and QUIT at once, USR1 reopens the log
/// file. Called before any other thread exists: threads inherit the mask.
fn worker_signals(log_file: Option<PathBuf>) -> io::Result<()> {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
    ] {
        set.add(signal);
    }
    set.thread_block()?;
    let wait = move || {
        while let Ok(signal) = set.wait() {
            trace!("worker {}: {signal}", getpid());
            match signal {
                Signal::SIGTERM => {
                    STOPPING.store(true, Ordering::Relaxed);
                    if let Some(remote) = LOOP.get() {
                        remote.drain();
                    }
                }
                Signal::SIGUSR1 => {
                    if let Some(path) = &log_file {
                        let _ = redirect_stderr(path);
                    }
                }
                _ => std::process::exit(0),
            }
        }
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(wait)?;
    Ok(())
}

/// Start Python and import the app (after `--chdir`). An app that cannot
/// be imported is reported here, and the error carries the
/// [`python::LoadError`] for [`exit_status_of`].
pub fn start_python(options: &Options) -> io::Result<(Interpreter, Py<PyAny>)> {
    let config = python::Config {
        python: options
            .python
            .as_deref()
            .map(std::path::absolute)
            .transpose()?,
        app_dir: Some(std::env::current_dir()?),
        argv: std::env::args_os().collect(),
    };
    let interpreter = python::initialize(&config)?;
    match python::load_app(&options.app) {
        Ok(app) => Ok((interpreter, app)),
        Err(err) => {
            err.report("lesson07");
            Err(io::Error::other(err))
        }
    }
}

/// Log why a process cannot go on, and the exit status that says it: the
/// app failed to import; Python failed to start (a worker); anything else.
pub fn exit_status_of(err: &io::Error, in_worker: bool) -> i32 {
    let load_failed = err.get_ref().is_some_and(|e| e.is::<python::LoadError>());
    let message = if load_failed {
        "App failed to load.".into()
    } else {
        err.to_string()
    };
    say("ERROR", &format!("lesson07_prefork: {message}"));
    match (load_failed, in_worker) {
        (true, _) => APP_LOAD_ERROR,
        (false, true) => WORKER_BOOT_ERROR,
        (false, false) => 1,
    }
}

// ------------------------------------------------------ the master's tools

/// The master's set-up after the bind: logs to `--log-file`, `--chdir`,
/// gunicorn's switch from sync to gthread for `--threads`, the process's
/// name, the announce line, and `--pid`.
pub fn prepare(options: &mut Options, listener: &TcpListener) -> io::Result<()> {
    if let Some(path) = &options.log_file {
        redirect_stderr(path)?;
    }
    if let Some(dir) = &options.chdir {
        std::env::set_current_dir(dir).map_err(|err| {
            io::Error::new(err.kind(), format!("--chdir {}: {err}", dir.display()))
        })?;
    }
    if options.threads > 1 && options.worker_class == Class::Sync {
        say(
            "INFO",
            "--threads > 1: the gthread worker class, as gunicorn does",
        );
        options.worker_class = Class::Gthread;
    }
    set_process_name("l07-master");
    let url = crate::cli::url("http", listener.local_addr()?);
    crate::cli::announce_line(&format!("listening on {url}"))?;
    say("INFO", &format!("Listening at: {url} ({})", getpid()));
    if let Some(path) = &options.pidfile {
        std::fs::write(path, format!("{}\n", getpid()))?;
    }
    Ok(())
}

/// USR1: write to a new `--log-file` (after logrotate moved the old one).
pub fn reopen_log(options: &Options) {
    if let Some(Err(err)) = options.log_file.as_deref().map(redirect_stderr) {
        say("ERROR", &format!("USR1: {err}"));
    }
}

/// `exited with status 0`, `was killed by SIGKILL`: what `waitpid` said.
pub fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("was killed by {signal}"),
        other => format!("changed state: {other:?}"),
    }
}

// ANCHOR: upgrade
/// Tells a master started by USR2 that its stdin is the listening socket.
const INHERIT: &str = "LADDER_INHERIT_STDIN";

/// USR2: start this program again (perhaps a new build of it), from
/// `start_dir`, with the listening socket as its stdin, the way inetd
/// hands a socket to a server. The new master is our child; the master
/// reaps it like a worker if it dies.
pub fn spawn_new_master(listener: &TcpListener, start_dir: &Path) -> io::Result<Pid> {
    let program = std::env::args_os().next().unwrap_or_default();
    let child = Command::new(program)
        .args(std::env::args_os().skip(1))
        .current_dir(start_dir)
        .env(INHERIT, "1")
        .stdin(OwnedFd::from(listener.try_clone()?))
        .spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// In a master started by USR2: the socket on stdin, checked to be a
/// listening one; stdin itself becomes /dev/null again.
pub fn inherited_listener() -> io::Result<Option<TcpListener>> {
    if std::env::var_os(INHERIT).is_none() {
        return Ok(None);
    }
    let socket = io::stdin().as_fd().try_clone_to_owned()?;
    if !getsockopt(&socket, sockopt::AcceptConn)? {
        return Err(io::Error::other(format!(
            "{INHERIT} is set, but stdin is no listening socket"
        )));
    }
    dup2_stdin(File::open("/dev/null")?)?;
    say("INFO", "inherited the listening socket from the old master");
    Ok(Some(TcpListener::from(socket)))
}
// ANCHOR_END: upgrade

/// `FILE.oldbin`: where an old master's pid file goes during an upgrade.
pub fn oldbin(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".oldbin");
    PathBuf::from(name)
}

/// Remove the pid files (`FILE`, `FILE.oldbin`) that hold this process's pid.
pub fn remove_pidfiles(path: &Path) {
    for path in [path.to_path_buf(), oldbin(path)] {
        if std::fs::read_to_string(&path).is_ok_and(|text| text.trim() == getpid().to_string()) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Point fd 2 at `path` (appending): every later log line goes there,
/// in the workers too, which inherit fd 2.
pub fn redirect_stderr(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    nix::unistd::dup2_stderr(&file)?;
    Ok(())
}

/// What `ps -o comm`, `top`, `pgrep` and `lsof +c 15` show (15 bytes at most).
pub fn set_process_name(name: &str) {
    if let Ok(name) = CString::new(name) {
        let _ = nix::sys::prctl::set_name(&name);
    }
}

/// gunicorn's log line, one write(2):
/// `[01/Dec/2026 10:00:00] [4711] [INFO] Booting worker 1 with pid: 4712`.
pub fn say(level: &str, message: &str) {
    let date = log::log_date(SystemTime::now());
    let line = format!("[{date}] [{}] [{level}] {message}\n", getpid());
    let _ = io::stderr().lock().write_all(line.as_bytes());
}
