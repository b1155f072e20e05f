//! The narrator behind `--trace`: one line per system call or event, on stderr.
//!
//! Not taught by any lesson; introduced in lesson 01, used by every rung.
//!
//! `strace -f` shows what a process asks of the kernel; `--trace` shows the
//! same calls with the meaning added (`accept(3) -> fd 5 from 127.0.0.1:52144`).
//! When tracing is off, [`trace!`](crate::trace!) costs one relaxed atomic load
//! and a branch: the message is never formatted.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);
static ROLE: OnceLock<String> = OnceLock::new();

/// Turn tracing on or off for the whole process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Is `--trace` on?
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Name this process's role (`master`, `worker 2`) for multi-process rungs;
/// trace lines then carry the role and pid. Single-process rungs never call it.
pub fn set_role(role: &str) {
    let _ = ROLE.set(role.to_string());
}

/// Write one trace line. Use the [`trace!`](crate::trace!) macro instead, which
/// skips the formatting when tracing is off.
pub fn emit(args: std::fmt::Arguments<'_>) {
    // Format the whole line first and hand it to write(2) in one call:
    // `eprintln!` may issue one write per formatted piece, and lines from
    // several threads (or processes sharing the terminal) would interleave.
    let line = match ROLE.get() {
        Some(role) => format!("[trace {role} {}] {args}\n", std::process::id()),
        None => format!("[trace] {args}\n"),
    };
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
}

/// `trace!("accept({}) -> fd {}", listener, fd)`: print when `--trace` is on.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::trace::enabled() {
            $crate::trace::emit(format_args!($($arg)*));
        }
    };
}
