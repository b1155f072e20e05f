//! # Lesson 07: who keeps my app alive? gunicorn's arbiter
//!
//! Lecture: `lessons/07-prefork.md` · Exercise: `exercises/ex07_prefork/`
//!
//! New here: processes. Rung 6 ran Python in one process, so the GIL kept
//! it on one core. This rung is `gunicorn -w 4 app:app`: a master that never
//! runs the app binds the socket once and forks workers. Each worker has its
//! own interpreter, so its own GIL, and all of them accept on the one socket
//! they inherited. The master only keeps them alive: it reaps the dead
//! (SIGCHLD, `waitpid`) and replaces them, adds and removes workers
//! (TTIN/TTOU), replaces them all (HUP), stops them gracefully (TERM), kills
//! the hung ones (a heartbeat), and hands its socket to a new binary (USR2).
//! This file is the master: `Arbiter::run` (its one loop), `dispatch`,
//! `reap`, `manage`, `murder`, `spawn`, then the signal handler (the
//! self-pipe trick); the one rung with `unsafe` (fork, signal handlers),
//! each block saying why it is sound. Then `src/prefork.rs`: a worker's
//! life after the fork, its two classes and the heartbeat.
//!
//! Run: `cargo run --bin lesson07_prefork -- -w 4 --chdir apps workers:app`,
//! then `curl http://127.0.0.1:8007/` a few times and `pgrep -l l07`.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use clap::Parser;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, poll};
use nix::sys::signal::Signal::*;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use pyo3::{Py, PyAny, Python};

use ladder::prefork::{self, Heartbeat, Options, say};
use ladder::python::{self, Interpreter};
use ladder::{cli, trace};

/// How long (ms) the master waits for a signal before it checks the heartbeats.
const CHECK_EVERY_MS: u16 = 500;

/// Lesson 07: a pre-fork WSGI server with gunicorn's flags and signals: a master
/// that forks, watches and replaces worker processes.
#[derive(Parser)]
#[command(version, after_help = prefork::AFTER_HELP)]
struct Args {
    #[command(flatten)]
    listen: cli::ListenArgs<7>,
    #[command(flatten)]
    options: Options,
}

fn main() -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    match Arbiter::start(args).and_then(|mut arbiter| arbiter.run()) {
        Ok(status) => ExitCode::from(status as u8),
        Err(err) => ExitCode::from(prefork::exit_status_of(&err, false) as u8),
    }
}

/// The master's whole state. One thread, one loop: nothing here is locked.
struct Arbiter {
    options: Options,
    listener: TcpListener,
    /// The read end of the self-pipe: each byte is a signal that arrived.
    signals: File,
    workers: BTreeMap<Pid, Worker>,
    /// How many workers there should be (-w, then TTIN/TTOU).
    target: usize,
    /// Worker numbers only grow: `worker 7` is never two processes.
    spawned: u64,
    /// TERM, INT or QUIT came: stop once every worker is gone.
    stopping: bool,
    /// The master that USR2 started, while it runs.
    new_master: Option<Pid>,
    /// `--preload`: the app, imported here before the forks.
    preloaded: Option<(Interpreter, Py<PyAny>)>,
    /// Where we were started: USR2 starts the new binary from there.
    start_dir: PathBuf,
}

/// What the master knows of one worker.
struct Worker {
    number: u64,
    heartbeat: Heartbeat,
    born: Instant,
    /// Told to stop: the time after which it gets SIGKILL.
    retiring: Option<Instant>,
    /// Sent SIGABRT for a missed heartbeat; SIGKILL next.
    aborted: bool,
}

impl Arbiter {
    /// Everything before the first fork: the socket, the signal handlers,
    /// and with `--preload` the app itself.
    fn start(args: Args) -> io::Result<Arbiter> {
        let Args {
            listen,
            mut options,
        } = args;
        let start_dir = std::env::current_dir()?;
        let listener = match prefork::inherited_listener()? {
            Some(listener) => listener,
            None if options.reuse_port => cli::listen_reuse_port(listen.addr())?,
            None => cli::listen(listen.addr())?,
        };
        let signals = install_signal_handlers()?;
        prefork::prepare(&mut options, &listener)?; // --log-file, --chdir, --pid, the name
        let preloaded = options.preload.then(|| prefork::start_python(&options));
        Ok(Arbiter {
            target: options.workers.unsigned_abs() as usize,
            preloaded: preloaded.transpose()?,
            options,
            listener,
            signals,
            start_dir,
            workers: BTreeMap::new(),
            spawned: 0,
            stopping: false,
            new_master: None,
        })
    }

    // ANCHOR: run
    /// gunicorn's `Arbiter.run`: wait for a signal (at most `CHECK_EVERY_MS`),
    /// act on it, kill the silent workers, keep the count. Returns the
    /// master's exit status.
    fn run(&mut self) -> io::Result<i32> {
        loop {
            for signal in self.wait_for_signals()? {
                if let Some(status) = self.dispatch(signal)? {
                    return self.halt(status);
                }
            }
            self.murder();
            if self.stopping && self.workers.is_empty() {
                return self.halt(0);
            }
            if !self.stopping {
                self.manage()?;
            }
        }
    }
    // ANCHOR_END: run

    /// poll(2) on the self-pipe, then read every byte it holds.
    fn wait_for_signals(&mut self) -> io::Result<Vec<Signal>> {
        let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, CHECK_EVERY_MS) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => return Err(err.into()),
        }
        let mut bytes = [0u8; 64];
        let n = match self.signals.read(&mut bytes) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
            Err(err) => return Err(err),
        };
        let signals = bytes[..n].iter().map(|&b| Signal::try_from(i32::from(b)));
        Ok(signals.flatten().collect())
    }

    // ANCHOR: dispatch
    /// One signal, handled here in ordinary code, not in the handler.
    /// `Some(status)`: the master must stop with it.
    fn dispatch(&mut self, signal: Signal) -> io::Result<Option<i32>> {
        // TODO(ex07): one `match signal`, gunicorn's table of signals. First
        //   `trace!("master: {signal}")` (the --trace line is yours to add), then:
        //   SIGCHLD         -> `return Ok(self.reap())`: `reap` says whether to stop;
        //   SIGTTIN         -> one worker more: `self.target += 1` (`manage` forks it);
        //   SIGTTOU         -> one fewer, never below one: at 1, `say` that it stays;
        //   SIGHUP          -> `self.reload()?`: new workers, the old ones drain;
        //   SIGTERM         -> `self.stop(signal, SIGTERM)`: requests in flight finish;
        //   SIGINT, SIGQUIT -> `self.stop(signal, SIGQUIT)`: now;
        //   SIGUSR1         -> `prefork::reopen_log(&self.options)`, then USR1 to every
        //                      worker (`kill(pid, SIGUSR1)`);
        //   SIGUSR2         -> `self.reexec()?`: a new master on the same socket;
        //   anything else (WINCH) -> `say` that it is ignored.
        //   After TTIN or TTOU, `say` how many workers are wanted. `Ok(None)`: go on.
        //   Read first: lessons/07-prefork.md.
        todo!("ex07: act on one signal")
    }
    // ANCHOR_END: dispatch

    // ANCHOR: reap
    /// SIGCHLD: collect EVERY child that has ended. Signals are not queued:
    /// three workers dying at once may deliver one SIGCHLD, so one
    /// `waitpid` per signal would leave zombies. `Some(status)`: a worker
    /// could not boot, and respawning it would only fail again, forever.
    fn reap(&mut self) -> Option<i32> {
        // TODO(ex07): call `waitpid(None, Some(WaitPidFlag::WNOHANG))` in a loop until
        //   nothing is left to collect: `Ok(WaitStatus::StillAlive)` (children, none
        //   ended) and `Err(Errno::ECHILD)` (no children) end it, `Err(Errno::EINTR)`
        //   asks again, another error is `say`-ed and ends it. Never stop after one
        //   child: one SIGCHLD may stand for many deaths. For each `status`, with
        //   `let Some(pid) = status.pid()`:
        //   - log it: `prefork::describe(status)` says how it ended ("was killed by
        //     SIGKILL"); `trace!("SIGCHLD: pid {pid} {how}")` (yours to add), and
        //     `say` a line with the worker's number, its pid and how it ended (level
        //     "INFO" if it was retiring, "WARNING" if it died on its own);
        //   - the new master of a USR2 (`self.new_master`): set it to None, and put
        //     the pid file back: `fs::rename(prefork::oldbin(path), path)`;
        //   - a worker: `self.workers.remove(&pid)`, so that `manage` replaces it. If
        //     it exited with `WORKER_BOOT_ERROR` or `APP_LOAD_ERROR` (`prefork::`), it
        //     could not boot and would fail again: keep reaping, then return
        //     `Some(its status)`, which stops the master instead of a respawn storm.
        //   `None`: the master goes on.
        //   Read first: lessons/07-prefork.md.
        todo!("ex07: collect every child that has ended")
    }
    // ANCHOR_END: reap

    // ANCHOR: manage
    /// Keep `target` workers serving: spawn the missing, retire the oldest
    /// extra ones (after TTOU). A retiring worker no longer counts: it has
    /// stopped accepting and only finishes what it holds.
    fn manage(&mut self) -> io::Result<()> {
        let mut serving: Vec<(Instant, Pid)> = (self.workers.iter())
            .filter(|(_, worker)| worker.retiring.is_none())
            .map(|(&pid, worker)| (worker.born, pid))
            .collect();
        serving.sort();
        for _ in serving.len()..self.target {
            self.spawn()?;
        }
        let extra = serving.len().saturating_sub(self.target);
        for &(_, pid) in &serving[..extra] {
            self.retire(pid, SIGTERM);
        }
        Ok(())
    }
    // ANCHOR_END: manage

    /// HUP: a new set of workers (each imports the app afresh), then the
    /// old ones drain. New ones first, so the socket always has takers.
    fn reload(&mut self) -> io::Result<()> {
        say("INFO", "HUP: new workers; the old ones finish and exit");
        let old: Vec<Pid> = self.workers.keys().copied().collect();
        (0..self.target).try_for_each(|_| self.spawn())?;
        old.into_iter().for_each(|pid| self.retire(pid, SIGTERM));
        Ok(())
    }

    /// TERM: graceful, requests in flight finish. INT, QUIT: now. Either
    /// way, a worker still there after --graceful-timeout gets SIGKILL.
    fn stop(&mut self, got: Signal, send: Signal) {
        let how = if send == SIGTERM { "gracefully" } else { "now" };
        say("INFO", &format!("{got}: stopping {how}"));
        self.stopping = true;
        let pids: Vec<Pid> = self.workers.keys().copied().collect();
        pids.into_iter().for_each(|pid| self.retire(pid, send));
    }

    fn retire(&mut self, pid: Pid, signal: Signal) {
        let grace = Options::secs(self.options.graceful_timeout);
        if let Some(worker) = self.workers.get_mut(&pid) {
            worker.retiring.get_or_insert(Instant::now() + grace);
            trace!("kill({pid}, {signal}): worker {}", worker.number);
            let _ = kill(pid, signal);
        }
    }

    // ANCHOR: murder
    /// A worker silent for --timeout is hung, or stuck with a slow client:
    /// SIGABRT first, SIGKILL if it is still there at the next check. A
    /// retiring worker past its grace gets SIGKILL.
    fn murder(&mut self) {
        let timeout = Options::secs(self.options.timeout);
        let now = Instant::now();
        for (&pid, worker) in &mut self.workers {
            if worker.retiring.is_some_and(|deadline| now >= deadline) {
                let _ = kill(pid, SIGKILL);
            } else if worker.heartbeat.silent_for() > timeout {
                if !worker.aborted {
                    say("CRITICAL", &format!("WORKER TIMEOUT (pid:{pid})"));
                }
                let signal = if worker.aborted { SIGKILL } else { SIGABRT };
                worker.aborted = true;
                let _ = kill(pid, signal);
            }
        }
    }
    // ANCHOR_END: murder

    // ANCHOR: spawn
    /// Fork one worker. The child runs the worker's life and exits: it
    /// never returns into the master's code.
    fn spawn(&mut self) -> io::Result<()> {
        // TODO(ex07): before the fork: the worker's `Heartbeat::new()?` (both
        //   processes keep it: the worker beats it, the master reads it), one
        //   `heartbeat.beat()` (a newborn has --timeout to boot), and its number
        //   (`self.spawned += 1`). Flush stdout (`io::stdout().flush()?`): buffered
        //   bytes would be copied into the child and printed twice. Then fork:
        //   without --preload (`self.preloaded` is None) `unsafe { fork() }?`, with a
        //   `// SAFETY:` comment saying why the child is sound (the master has one
        //   thread); with --preload `Python::attach(python::fork)?`.
        //   - `ForkResult::Child`: `reset_signal_handlers()`, then
        //     `prefork::run_worker(&self.options, &self.listener, number, &heartbeat, app)`
        //     (`app`: the preloaded app, if any) and `std::process::exit(status)`: the
        //     child never returns into the master's code.
        //   - `ForkResult::Parent { child }`: `trace!("fork() -> worker {number} pid {child}")`
        //     (yours to add), then keep a `Worker` (born `Instant::now()`, not
        //     retiring, not aborted) under its pid in `self.workers`.
        //   Read first: lessons/07-prefork.md.
        todo!("ex07: fork one worker")
    }
    // ANCHOR_END: spawn

    /// USR2: start the binary again (a new build, say) as a new master that
    /// inherits this listening socket, so no connection is refused. Then
    /// TERM to this one leaves the new one serving alone.
    fn reexec(&mut self) -> io::Result<()> {
        if self.new_master.is_some() {
            say("WARNING", "USR2: a new master is already running");
            return Ok(());
        }
        if let Some(path) = &self.options.pidfile {
            fs::rename(path, prefork::oldbin(path))?;
        }
        let pid = prefork::spawn_new_master(&self.listener, &self.start_dir)?;
        say("INFO", &format!("USR2: new master started, pid {pid}"));
        self.new_master = Some(pid);
        Ok(())
    }

    /// The end: what is left gets SIGKILL and is reaped (no zombie, no
    /// orphan), the pid file goes, and Python (with --preload) finishes.
    fn halt(&mut self, status: i32) -> io::Result<i32> {
        for &pid in self.workers.keys() {
            let _ = kill(pid, SIGKILL);
            let _ = waitpid(pid, None);
        }
        (self.options.pidfile.iter()).for_each(|path| prefork::remove_pidfiles(path));
        if let Some((interpreter, app)) = self.preloaded.take() {
            Python::attach(|_| drop(app));
            interpreter.finalize()?;
        }
        say("INFO", &format!("master exiting with status {status}"));
        Ok(status)
    }
}

// ------------------------------------------------------------ the signals

/// The signals the master acts on.
const HANDLED: [Signal; 10] = [
    SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2, SIGWINCH,
];

/// The self-pipe's write end, for the handler, which can reach only globals.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

// ANCHOR: handler
/// The signal handler. It may interrupt the master anywhere, even inside
/// malloc, so it calls nothing that is not async-signal-safe: it writes
/// the signal's number into the pipe, and the loop does the rest.
extern "C" fn record(signal: libc::c_int) {
    let saved = Errno::last_raw(); // the interrupted code may be about to read errno
    let (fd, byte) = (SIGNAL_PIPE.load(Ordering::Relaxed), signal as u8);
    // SAFETY: write(2) is async-signal-safe; `SIGNAL_PIPE` is the pipe's
    // non-blocking write end, open as long as the handler is installed; a
    // full pipe drops the byte (EAGAIN), and the bytes in it wake the loop.
    unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    Errno::set_raw(saved);
}

/// The self-pipe trick: the handler writes into a pipe, the loop polls its
/// read end. Returns the read end.
fn install_signal_handlers() -> io::Result<File> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    SIGNAL_PIPE.store(write.into_raw_fd(), Ordering::Relaxed);
    // SA_RESTART: a signal does not make our other system calls fail with EINTR.
    let handler = SigHandler::Handler(record);
    let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
    for signal in HANDLED {
        // SAFETY: `record` is async-signal-safe (see above).
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(File::from(read))
}
// ANCHOR_END: handler

/// In a new worker, first thing: the master's handlers would write into
/// the master's pipe. Back to the defaults, and the pipe closed.
fn reset_signal_handlers() {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in HANDLED {
        // SAFETY: SIG_DFL installs no code of ours.
        let _ = unsafe { sigaction(signal, &default) };
    }
    // SAFETY: the fd came from `into_raw_fd`, and nothing else owns it.
    drop(unsafe { OwnedFd::from_raw_fd(SIGNAL_PIPE.swap(-1, Ordering::Relaxed)) });
}
