//! # Lesson 01: an echo server, one system call at a time
//!
//! Lecture: `lessons/01-echo.md` · Exercise: `exercises/ex01_echo/`
//!
//! New here: the socket API by hand — `socket`, `setsockopt(SO_REUSEADDR)`,
//! `bind`, `listen`, `accept`, `recv`, `send`, `close` — with the three things
//! every caller must handle: 0 bytes means EOF, `send` may write less than
//! asked, and a call may fail with `EINTR` and just needs repeating.
//! From earlier lessons: nothing, this is the first rung. Used but not taught
//! here: the shared flags and the announce line (`ladder::cli`), the `--trace`
//! narrator (`ladder::trace`) and the clean exit on Ctrl-C (`ladder::shutdown`).
//! Crates used: nix (the socket calls), clap (the flags).
//!
//! Run: `cargo run --bin lesson01_echo -- --trace`
//! Try: `nc 127.0.0.1 8001`, type a line and see it come back; then start a
//! second `nc` while the first is still connected, and type there too.
//!
//! Reading order: `main` → `listen_socket` → `accept_loop` → `echo_loop` →
//! `send_all`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use clap::Parser;
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, SockaddrStorage, accept, bind,
    getpeername, getsockname, listen, recv, send, setsockopt, socket, sockopt,
};
use nix::unistd::close;

use ladder::cli::ListenArgs;
use ladder::trace;

/// How much one `recv` may return. Any size works: TCP is a byte stream, not
/// a sequence of messages, so a line typed in `nc` may arrive in one piece or
/// in several, and two lines may arrive together.
const BUF_SIZE: usize = 4096;

/// Lesson 01: an iterative TCP echo server, built from the raw socket calls.
///
/// Every byte a client sends comes straight back. One client at a time: a
/// second client waits in the kernel's queue until the first one leaves.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
        cargo run --bin lesson01_echo\n  \
        cargo run --bin lesson01_echo -- --trace --port 9001\n  \
        nc -N 127.0.0.1 8001         (type a line, see it echoed; Ctrl-D to leave)\n  \
        lsof -iTCP -sTCP:LISTEN -P   (see the listening socket)"
)]
struct Args {
    #[command(flatten)]
    listen: ListenArgs<1>,

    /// How many connections the kernel may complete and queue for us before
    /// `accept` takes them (the second argument of listen(2); Linux caps it at
    /// net.core.somaxconn)
    #[arg(long, default_value_t = 128, value_name = "N",
          value_parser = clap::value_parser!(i32).range(1..=4096))]
    backlog: i32,
}

// `main` returns an `ExitCode` rather than `io::Result<()>`: Rust would print
// a returned error with `{:?}` (`Error: Os { code: 98, kind: AddrInUse, .. }`),
// which is for programmers. We print the sentence ourselves and exit 1.
fn main() -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lesson01_echo: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Set up, announce, serve forever. Only set-up failures come back from here;
/// a misbehaving client is logged and forgotten inside the loop.
fn run(args: &Args) -> io::Result<()> {
    // Ctrl-C and SIGTERM end the process with status 0 (first thing, before
    // any thread exists: see `ladder::shutdown`).
    ladder::shutdown::exit_on_termination()?;
    let listener = listen_socket(args.listen.addr(), args.backlog)?;
    // Ask the kernel which address we really got: with `--port 0` it picked
    // the port, and the announce line must show the real one.
    // getsockname(2): int getsockname(int fd, struct sockaddr *addr, socklen_t *len);
    let local: SockaddrStorage = getsockname(listener.as_raw_fd())?;
    let local = std_addr(&local).ok_or_else(|| io::Error::other("not an IP socket"))?;
    ladder::cli::announce("tcp", local)?;
    accept_loop(&listener, args.listen.quiet)
}

// The four calls that turn "a program" into "a server". nix wraps each C call
// in a function that returns `Result<_, Errno>`; `?` turns an `Errno` into an
// `io::Error` that prints like `Address already in use (os error 98)`.
//
// `socket` hands back an `OwnedFd`: Rust's owned file descriptor, closed when
// dropped. `bind` wants a plain `RawFd` (an `i32`) instead, so we lend it the
// number with `.as_raw_fd()`. nix is midway through moving every call to
// borrowed fds (`listen` already takes `&fd`); until then, both styles appear.
// ANCHOR: socket_setup
fn listen_socket(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    // TODO(ex01): make the listening socket, one system call at a time:
    //   `socket` (for `family(addr)`, `SockType::Stream`, `SockFlag::SOCK_CLOEXEC`),
    //   `setsockopt` with `sockopt::ReuseAddr`, `bind` to `SockaddrStorage::from(addr)`
    //   (turn its error into a sentence with `ladder::cli::bind_error`), `listen`
    //   with `Backlog::new(backlog)`. The --trace lines (`trace!`) are yours to add.
    //   Read first: lessons/01-echo.md, "How it works".
    todo!("ex01: socket, setsockopt, bind, listen")
}
// ANCHOR_END: socket_setup

// Why SO_REUSEADDR: after a server with clients exits, its side of each
// connection lingers in TIME_WAIT for a minute. Without the option, bind()
// refuses the port for that minute, and restarting the lesson fails with
// "Address already in use". Python's socketserver sets it for the same reason.

// The server proper: take the next connection from the kernel's queue, echo
// until that client leaves, close, repeat. While `echo_loop` runs nobody
// calls accept(), so a second client's connection is completed by the kernel
// (the three-way handshake needs no help from us) and then waits in the
// backlog queue, its bytes piling up unanswered. That is this rung's failure.
// In production, accept4(fd, SOCK_CLOEXEC) as std does, so that a program
// started later cannot inherit the connection; this one never starts any.
// ANCHOR: accept_loop
fn accept_loop(listener: &OwnedFd, quiet: bool) -> io::Result<()> {
    // TODO(ex01): forever: `accept` the next connection on `listener.as_raw_fd()` and
    //   `serve` it. Retry on `Errno::EINTR` and `Errno::ECONNABORTED`; on any other
    //   error, log it, `thread::sleep` a little and carry on: one failed accept must
    //   not end the server.
    todo!("ex01: accept and serve, forever")
}
// ANCHOR_END: accept_loop

/// One client, from accept to close. Nothing that goes wrong with one client
/// may end the server, so this returns nothing: problems are logged.
fn serve(listen_fd: RawFd, fd: RawFd, quiet: bool) {
    // accept() could have told us the peer's address; nix's accept() leaves
    // that out, so we ask for it. If the client already reset, say so.
    let peer = getpeername::<SockaddrStorage>(fd)
        .ok()
        .and_then(|a| std_addr(&a))
        .map_or_else(|| "unknown peer".to_string(), |a| a.to_string());
    trace!("accept({listen_fd}) -> fd {fd} from {peer}");
    log(quiet, &format!("{peer} connected"));
    let mut echoed = 0;
    match echo_loop(fd, &mut echoed) {
        Ok(()) => log(quiet, &format!("{peer} disconnected after {echoed} bytes")),
        // ECONNRESET: the client's kernel sent a RST instead of a FIN (the
        // client crashed, or closed with unread data). EPIPE: we sent to a
        // client that had already gone. Either way: this client is over.
        Err(err) => log(quiet, &format!("{peer} lost after {echoed} bytes: {err}")),
    }
    // close(2): int close(int fd);
    // Without this the fd leaks: accept() gave it to us, nothing else closes it.
    match close(fd) {
        Ok(()) => trace!("close({fd})"),
        Err(err) => eprintln!("[lesson01] close({fd}) failed: {err}"),
    }
}

// Read what arrived, send it back, until recv() says 0: the client closed its
// side (a FIN arrived). 0 is not an error and not "no data yet" — a blocking
// recv waits for data; returning 0 means no more will ever come.
// ANCHOR: echo_loop
fn echo_loop(fd: RawFd, echoed: &mut u64) -> nix::Result<()> {
    // TODO(ex01): `recv` (flags `MsgFlags::empty()`) into a `BUF_SIZE` buffer until it
    //   returns 0 (EOF: return Ok); send back exactly the n bytes received
    //   (`send_all`) and add n to `echoed`. Retry on `Errno::EINTR`; return any other
    //   error. The --trace lines (`trace!`) are yours to add.
    todo!("ex01: recv until 0, send back what came")
}
// ANCHOR_END: echo_loop

// send() returns how many bytes the kernel took, which may be fewer than we
// offered: the socket's send buffer had room for only part of it, or a
// signal arrived midway. The rest is still ours to send, so loop. (Python's
// sock.sendall() and Rust's write_all() are exactly this loop.)
//
// MSG_NOSIGNAL: sending to a peer that has gone raises SIGPIPE, whose default
// action kills the process. Rust's runtime ignores SIGPIPE before main, so we
// would get EPIPE anyway; a C server must ask for it, and so we do too.
// ANCHOR: send_all
fn send_all(fd: RawFd, mut data: &[u8]) -> nix::Result<()> {
    // TODO(ex01): `send` (with `MsgFlags::MSG_NOSIGNAL`) until all of `data` is sent:
    //   send may take fewer bytes than offered. Retry on `Errno::EINTR`. The --trace
    //   line (`trace!`) is yours to add.
    todo!("ex01: send until everything is sent")
}
// ANCHOR_END: send_all

/// The connection log on stderr, silenced by `--quiet`.
fn log(quiet: bool, line: &str) {
    if !quiet {
        eprintln!("[lesson01] {line}");
    }
}

/// IPv4 or IPv6: the first argument of socket(2) must match the address.
fn family(addr: SocketAddr) -> AddressFamily {
    match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// nix's socket address (a C `sockaddr_storage`) as std's `SocketAddr`.
fn std_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        Some(SocketAddr::from(*v4))
    } else {
        addr.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
    }
}
