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
//!
//! `--bind` also takes gunicorn's `HOST:PORT` (`-b 0.0.0.0:8000`, `-b
//! [::1]:8000`), which sets the port too: as in gunicorn, where the bind
//! address is the whole address, its port wins over `--port`.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::str::FromStr;

/// The flags every server rung honours. `RUNG` picks the default port.
#[derive(clap::Args, Debug, Clone)]
pub struct ListenArgs<const RUNG: u16> {
    /// Address to listen on (0.0.0.0 accepts connections from other machines); gunicorn's
    /// `HOST:PORT` or `[V6]:PORT` sets the port too, over --port
    #[arg(long, short = 'b', value_name = "ADDR", default_value_t = Bind::LOCALHOST)]
    pub bind: Bind,

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
    /// The socket address to bind: `--bind`'s port if it names one, else `--port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind.ip, self.bind.port.unwrap_or(self.port))
    }

    /// Switch on `--trace` and `--quiet` for the whole process. Call once,
    /// first thing in `main`.
    pub fn apply(&self) {
        crate::trace::set_enabled(self.trace);
        crate::log::set_quiet(self.quiet);
    }
}

/// What `--bind` names: an address, and a port when it came as `HOST:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl Bind {
    pub const LOCALHOST: Bind = Bind {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: None,
    };
}

impl FromStr for Bind {
    type Err = String;

    /// `127.0.0.1`, `::1`, `[::1]`, `localhost`, or any of them with a
    /// port: `127.0.0.1:8000`, `[::1]:8000`, `localhost:8000`. No name
    /// lookups: `localhost` is the only name, as everywhere it means 127.0.0.1.
    fn from_str(text: &str) -> Result<Bind, String> {
        let ip = |host: &str| match host {
            "localhost" => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            _ => host.parse().ok(),
        };
        // A bare IPv6 address holds colons too: try the whole text first.
        if let Some(ip) = ip(text).or_else(|| ip(text.strip_prefix('[')?.strip_suffix(']')?)) {
            return Ok(Bind { ip, port: None });
        }
        let with_port = text.rsplit_once(':').and_then(|(host, port)| {
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            Some(Bind {
                ip: ip(host)?,
                port: Some(port.parse().ok()?),
            })
        });
        with_port.ok_or_else(|| {
            format!("'{text}' is not an IP address, HOST:PORT or [IPV6]:PORT (e.g. 0.0.0.0:8000)")
        })
    }
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}", SocketAddr::new(self.ip, port)),
            None => write!(f, "{}", self.ip),
        }
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

/// [`listen`] with SO_REUSEPORT set before the bind: other sockets with it
/// may then bind the same address, and the kernel spreads new connections
/// over them (rung 7's `--reuse-port`; nginx's `reuseport`, rung 8).
pub fn listen_reuse_port(addr: SocketAddr) -> io::Result<TcpListener> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrStorage, sockopt};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let bound = (|| {
        let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
        socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
        socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
        socket::listen(&fd, socket::Backlog::MAXCONN)?;
        Ok::<_, nix::Error>(TcpListener::from(fd))
    })();
    bound.map_err(|err| bind_error(addr, err.into()))
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
    fn bind_takes_an_address_or_gunicorns_host_port() {
        let cases: [(&[&str], &str); 9] = [
            (&[], "127.0.0.1:8005"),
            (&["--bind", "0.0.0.0"], "0.0.0.0:8005"),
            (&["--bind", "::1"], "[::1]:8005"),
            (&["--bind", "[::1]"], "[::1]:8005"),
            (&["-b", "0.0.0.0:9000"], "0.0.0.0:9000"),
            (&["-b", "[::1]:9000"], "[::1]:9000"),
            (&["-b", "localhost:9000"], "127.0.0.1:9000"),
            // The port in HOST:PORT wins over --port, in either order.
            (&["-b", "127.0.0.1:9000", "--port", "0"], "127.0.0.1:9000"),
            (&["--port", "7000", "-b", "127.0.0.1"], "127.0.0.1:7000"),
        ];
        for (args, want) in cases {
            let demo = Demo::try_parse_from(std::iter::once(&"demo").chain(args)).unwrap();
            assert_eq!(demo.listen.addr(), want.parse().unwrap(), "{args:?}");
        }
        for bad in ["example.com", "1.2.3.4:", "1.2.3.4:99999", "[::1:80", ""] {
            let parsed = Demo::try_parse_from(["demo", "--bind", bad]);
            assert!(parsed.is_err(), "{bad:?} was accepted");
        }
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
