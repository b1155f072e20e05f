//! The command line every rung shares, and the announce line.
//!
//! Not taught by any lesson: this is infrastructure, introduced in lesson 01
//! so that no lesson file is cluttered with flag parsing.
//!
//! Every server rung flattens [`ListenArgs`] into its own clap struct, so
//! `--bind`, `--port`, `--trace` and `--quiet` mean the same thing on every
//! rung. The default port is 8000 + the rung's number (`ListenArgs<5>` listens
//! on 8005), so several rungs can run side by side; `--port 0` lets the kernel
//! pick one, which is what the tests and the grader do.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

/// The flags every server rung honours. `RUNG` picks the default port.
#[derive(clap::Args, Debug, Clone)]
pub struct ListenArgs<const RUNG: u16> {
    /// Address to listen on (use 0.0.0.0 to accept connections from other machines)
    #[arg(long, short = 'b', value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,

    /// Port to listen on; 0 lets the kernel pick a free one
    #[arg(long, value_name = "PORT", default_value_t = 8000 + RUNG)]
    pub port: u16,

    /// Narrate every system call and event on stderr, like an annotated `strace -f`
    #[arg(long)]
    pub trace: bool,

    /// Do not print the access log
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl<const RUNG: u16> ListenArgs<RUNG> {
    /// The socket address to bind.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// Switch on `--trace` and `--quiet` for the whole process. Call once,
    /// first thing in `main`.
    pub fn apply(&self) {
        crate::trace::set_enabled(self.trace);
        crate::log::set_quiet(self.quiet);
    }
}

/// Print the announce line: the first line on stdout, holding the URL that is
/// really served (with the port the kernel picked, if `--port 0`).
///
/// Tests and the grader read this line to find the port, so it is flushed at
/// once: Rust's stdout is line-buffered today, but a pipe reader must never
/// depend on that.
pub fn announce(scheme: &str, addr: SocketAddr) -> io::Result<()> {
    announce_line(&format!("listening on {}", url(scheme, addr)))
}

/// Print a rung-specific announce line (it must contain the URL) and flush.
pub fn announce_line(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Bind and listen on `addr`: std's `TcpListener::bind` does lesson 01's
/// socket, setsockopt(SO_REUSEADDR), bind and listen in one call, with
/// close-on-exec set. A failure says what to try next ([`bind_error`]).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|err| bind_error(addr, err))
}

/// Turn a failed bind into a sentence that says what to do next, the same
/// on every rung: `binding 127.0.0.1:8003: Address already in use (os error
/// 98) — is another lesson03_cgi running? try --port 0`.
pub fn bind_error(addr: SocketAddr, err: io::Error) -> io::Error {
    let program = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "the server".into());
    let hint = match err.kind() {
        io::ErrorKind::AddrInUse => {
            format!(" — is another {program} running? try --port 0")
        }
        io::ErrorKind::PermissionDenied => {
            " — ports below 1024 need root; try --port 0 or a port above 1023".into()
        }
        io::ErrorKind::AddrNotAvailable => {
            " — this machine has no such address; try --bind 127.0.0.1".into()
        }
        _ => String::new(),
    };
    io::Error::new(err.kind(), format!("binding {addr}: {err}{hint}"))
}

/// `http://127.0.0.1:8000/`, with IPv6 addresses in brackets.
pub fn url(scheme: &str, addr: SocketAddr) -> String {
    let path = if scheme == "tcp" { "" } else { "/" };
    match addr {
        SocketAddr::V4(a) => format!("{scheme}://{}:{}{path}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("{scheme}://[{}]:{}{path}", a.ip(), a.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Demo {
        #[command(flatten)]
        listen: ListenArgs<5>,
    }

    #[test]
    fn default_port_is_8000_plus_rung() {
        let demo = Demo::parse_from(["demo"]);
        assert_eq!(demo.listen.addr(), "127.0.0.1:8005".parse().unwrap());
    }

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(url("http", "[::1]:80".parse().unwrap()), "http://[::1]:80/");
        assert_eq!(
            url("tcp", "127.0.0.1:1".parse().unwrap()),
            "tcp://127.0.0.1:1"
        );
    }
}
