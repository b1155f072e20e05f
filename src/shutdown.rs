//! Clean exits on Ctrl-C (SIGINT) and SIGTERM, without `unsafe`.
//!
//! Not taught here: introduced in lesson 01 as infrastructure; lesson 07
//! teaches signal handlers properly (sigaction, the self-pipe trick).
//!
//! The technique is the *dedicated signal thread*: block SIGINT and SIGTERM in
//! the main thread **before** any other thread exists (threads inherit the
//! mask), then let one thread wait for them with `sigwait(3)`. The signal is
//! then an ordinary event delivered to ordinary code: no async-signal-safety
//! rules, no `EINTR` to handle in the accept loop. Child processes start clean:
//! `std::process::Command` resets the signal mask before `exec`.

use std::io;
use std::thread;

use nix::sys::signal::{SigSet, Signal};

/// Block SIGINT and SIGTERM in this thread and start a thread that waits for
/// them; when one arrives, `on_signal` runs there. Call it first in `main`.
///
/// For the blocking rungs `on_signal` is just "exit 0"; rungs with work in
/// flight use it to start a graceful shutdown instead.
pub fn on_termination<F>(on_signal: F) -> io::Result<()>
where
    F: FnOnce(Signal) + Send + 'static,
{
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    // pthread_sigmask(2): from now on these signals stay pending instead of
    // killing the process, until some thread asks for them with sigwait.
    set.thread_block()?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || match set.wait() {
            Ok(signal) => {
                crate::trace!("sigwait -> {signal}");
                on_signal(signal);
            }
            Err(err) => eprintln!("sigwait failed: {err}"),
        })?;
    Ok(())
}

/// The common case for a rung with nothing in flight to finish: exit with
/// status 0 on SIGINT or SIGTERM.
pub fn exit_on_termination() -> io::Result<()> {
    on_termination(|signal| {
        crate::trace!("exit(0) on {signal}");
        std::process::exit(0);
    })
}
