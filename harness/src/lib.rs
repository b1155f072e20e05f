//! The one harness for talking to a rung: start it on port 0 in its own
//! process group, learn the port from its announce line, hand out connected
//! sockets with timeouts, and leave nothing behind.
//!
//! Shared by every integration test (through `tests/common/mod.rs`, which
//! adds reading HTTP responses) and by the `grade` tool, so the reference
//! tests and the grader start and stop servers the same way. A development
//! crate: no lesson reads it, and a student never needs to.
//!
//! It depends on std and nix only. The main package depends on it (for
//! `grade`), so it cannot use the `ladder` library; its callers read HTTP
//! responses with `ladder::http::read_response`, over [`ResetAsEof`] when a
//! close-delimited answer may end in a reset.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How long any single read from a server may block in a test. Generous,
/// because a busy 2-core CI machine is slow, but a hung server still fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server may take to print its announce line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server. Dropping it stops the whole process group.
pub struct Server {
    child: Child,
    /// The address from the announce line, with the real port.
    pub addr: SocketAddr,
    /// The announce line itself.
    pub announce: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    exited: Option<ExitStatus>,
}

impl Server {
    /// Start `bin` with `args` plus `--port 0` (unless `args` name a port).
    pub fn start<S: AsRef<OsStr>>(bin: impl AsRef<OsStr>, args: &[S]) -> io::Result<Server> {
        let mut command = Command::new(bin);
        command.args(args);
        let has_port = args.iter().any(|a| {
            let a = a.as_ref().to_string_lossy();
            a == "--port" || a.starts_with("--port=")
        });
        if !has_port {
            command.args(["--port", "0"]);
        }
        Server::spawn(command)
    }

    /// Start a fully prepared command (its own args, cwd, env). It must print
    /// a line holding `scheme://host:port` first.
    pub fn spawn(mut command: Command) -> io::Result<Server> {
        // A process group of its own, so that stopping the server also stops
        // anything it forked (CGI scripts, workers), and Ctrl-C in the test's
        // terminal does not reach it twice.
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn()?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (first_line_tx, first_line_rx) = mpsc::channel();

        let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let out_buf = Arc::clone(&stdout);
        thread::spawn(move || {
            let mut line = String::new();
            let _ = out.read_line(&mut line);
            let _ = first_line_tx.send(line);
            let mut chunk = [0u8; 4096];
            while let Ok(n) = out.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                out_buf.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        let mut err = child.stderr.take().expect("stderr is piped");
        let err_buf = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                err_buf.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });

        let fail = |child: &mut Child, stderr: &Arc<Mutex<Vec<u8>>>, why: String| {
            let _ = child.kill();
            let _ = child.wait();
            thread::sleep(Duration::from_millis(50));
            let err = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
            io::Error::other(format!("{why}; its stderr was:\n{err}"))
        };
        let line = match first_line_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) if !line.is_empty() => line,
            Ok(_) => {
                return Err(fail(
                    &mut child,
                    &stderr,
                    "the server exited before printing its announce line".into(),
                ));
            }
            Err(_) => {
                return Err(fail(
                    &mut child,
                    &stderr,
                    format!("no announce line within {START_TIMEOUT:?}"),
                ));
            }
        };
        let Some(addr) = addr_in(&line) else {
            let why = format!("the first stdout line {line:?} holds no scheme://host:port URL");
            return Err(fail(&mut child, &stderr, why));
        };
        Ok(Server {
            child,
            addr,
            announce: line.trim_end().to_string(),
            stdout,
            stderr,
            exited: None,
        })
    }

    /// The server's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A fresh connection with read and write timeouts set.
    pub fn connect(&self) -> io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(stream)
    }

    /// Everything printed on stdout after the announce line, so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Everything printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Wait until stderr contains `needle` (logs are written after the
    /// response, so a test that just read a response may have to wait).
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.stderr().contains(needle)
    }

    /// Send a signal to the server process alone.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        nix::sys::signal::kill(Pid::from_raw(self.pid() as i32), signal)?;
        Ok(())
    }

    /// Has the server exited? Returns its status if so (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Wait up to `timeout` for the server to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM the server and wait for it: `Some(status)` if it exited within
    /// `timeout`, `None` if it had to be killed.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = self.signal(Signal::SIGTERM);
        let status = self.wait_exit(timeout);
        if status.is_none() {
            let _ = killpg(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
            let _ = self.child.wait();
        }
        status
    }

    /// Is any process of the server's group still alive (zombies included)?
    pub fn group_alive(&self) -> bool {
        killpg(Pid::from_raw(self.pid() as i32), None).is_ok()
    }

    /// Wait up to `timeout` for every process of the group to be gone.
    pub fn wait_group_gone(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.group_alive() {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.pid() as i32);
        if self.try_exit().is_none() {
            let _ = killpg(group, Signal::SIGTERM);
            if self.wait_exit(Duration::from_secs(3)).is_none() {
                let _ = killpg(group, Signal::SIGKILL);
                let _ = self.child.wait();
            }
        }
        // Whatever the server forked and left running goes too.
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// Send each request on a connection of its own and check that the answer
/// starts with `HTTP/1.1 STATUS ` and closes the connection: the ladder's
/// rules for bad input (400, 413, 414, 431, 501, 505), the same on every rung.
pub fn assert_refusals(server: &Server, cases: &[(&[u8], &str)]) {
    for (request, status) in cases {
        let mut stream = server.connect().expect("connect");
        let bytes = exchange(&mut stream, request).expect("an answer");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "for {}: {text}",
            escaped(&request[..20.min(request.len())])
        );
        assert!(text.contains("Connection: close\r\n"), "{text}");
    }
}

/// Times in a transcript (`in 1.3 ms`, `timeout 59999 ms`): every number
/// just before ` ms` becomes `[ms]`, so a captured trace is stable.
pub fn mask_ms(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(" ms") {
        let number = rest[..i]
            .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map_or(0, |j| j + 1);
        out.push_str(&rest[..number]);
        out.push_str(if number < i { "[ms]" } else { "" });
        out.push_str(" ms");
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    out
}

/// The dates in a transcript line: a whole `Date:` header becomes
/// `Date: [date]`, and every log date in brackets, `[01/Dec/2026 10:00:00]`
/// (the access log's and lesson 07's own lines), becomes `[date]`.
pub fn mask_dates(line: &str) -> String {
    if line.starts_with("Date: ") {
        return "Date: [date]".into();
    }
    // `dd/Mon/yyyy hh:mm:ss`: where a pattern has `d` a digit must be.
    const SHAPE: &[u8] = b"dd/Mmm/dddd dd:dd:dd]";
    let fits = |text: &[u8]| {
        text.len() >= SHAPE.len()
            && SHAPE.iter().zip(text).all(|(want, got)| match want {
                b'd' => got.is_ascii_digit(),
                b'M' | b'm' => got.is_ascii_alphabetic(),
                _ => want == got,
            })
    };
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        if fits(rest.as_bytes()) {
            out.push_str("date");
            rest = &rest[SHAPE.len() - 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Replace the run of `keep` characters after each `marker` in `line` with
/// `mask(run)`: `mask_after(&mut line, "(pid:", |c| c.is_ascii_digit(),
/// |_| "[pid]".into())`.
pub fn mask_after(
    line: &mut String,
    marker: &str,
    keep: impl Fn(char) -> bool,
    mask: impl Fn(&str) -> String,
) {
    let mut from = 0;
    while let Some(at) = line[from..].find(marker) {
        let start = from + at + marker.len();
        let end = line[start..]
            .find(|c: char| !keep(c))
            .map_or(line.len(), |e| start + e);
        let masked = if end > start {
            mask(&line[start..end])
        } else {
            String::new()
        };
        line.replace_range(start..end, &masked);
        from = start + masked.len();
    }
}

/// Bytes written on the IPv4 TCP connection `from` → `to` that `to`'s owner
/// has not read yet: the sender's unacknowledged queue plus the receiver's
/// unread one, from /proc/net/tcp. `write` returning says only that the
/// kernel took the bytes; `Some(0)` says the other side has read them all.
/// `None`: no such connection (or not IPv4).
pub fn unread_bytes(from: SocketAddr, to: SocketAddr) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    // `0100007F:1F45`: the address as the kernel's u32 in host order, the port in hex.
    let parse = |field: &str| -> Option<SocketAddr> {
        let (ip, port) = field.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(SocketAddr::from((ip.to_ne_bytes(), port)))
    };
    let queues = |local: SocketAddr, remote: SocketAddr| -> Option<(u64, u64)> {
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if parse(fields.get(1)?)? != local || parse(fields.get(2)?)? != remote {
                return None;
            }
            let (tx, rx) = fields.get(4)?.split_once(':')?;
            Some((
                u64::from_str_radix(tx, 16).ok()?,
                u64::from_str_radix(rx, 16).ok()?,
            ))
        })
    };
    let (unsent, _) = queues(from, to)?;
    let (_, unread) = queues(to, from)?;
    Some(unsent + unread)
}

/// Wait (up to `within`) until the other end of `stream` has read all we
/// wrote on it; false if it has not by then.
pub fn wait_until_read(stream: &TcpStream, within: Duration) -> bool {
    let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) else {
        return false;
    };
    let deadline = Instant::now() + within;
    loop {
        if unread_bytes(local, peer) == Some(0) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A local address that refuses connections for as long as the returned
/// fd lives: bound, so no other test can take its port meanwhile, but never
/// listening. (A port bound and released at once may be anyone's next.)
pub fn refusing_port() -> (std::os::fd::OwnedFd, SocketAddr) {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind");
    let addr: SockaddrIn = getsockname(fd.as_raw_fd()).expect("getsockname");
    (fd, SocketAddr::from(std::net::SocketAddrV4::from(addr)))
}

/// Find `scheme://host:port` in a line and resolve it.
pub fn addr_in(line: &str) -> Option<SocketAddr> {
    let start = line.find("://")? + 3;
    let rest = &line[start..];
    let end = rest
        .find(|c: char| c == '/' || c == ')' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].to_socket_addrs().ok()?.next()
}

/// Write `bytes`, then read until the server closes the connection (or the
/// read times out, which is an error: a test must not hang).
pub fn exchange(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(bytes)?;
    read_to_close(stream)
}

/// Read until EOF. A reset after some data counts as the end too, since a
/// server that closes with unread input in its buffer sends RST.
pub fn read_to_close(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    ResetAsEof::new(stream).read_to_end(&mut out)?;
    Ok(out)
}

/// A client with a tiny receive buffer (SO_RCVBUF 4 KiB, set before
/// connect, so the window is small from the handshake on): the server's
/// writes fill it at once and must wait for the client to read.
pub fn connect_small_window(addr: SocketAddr) -> TcpStream {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, connect, setsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket(2)");
    setsockopt(&fd, sockopt::RcvBuf, &4096).expect("SO_RCVBUF");
    let SocketAddr::V4(v4) = addr else {
        panic!("connect_small_window: IPv4 expected, got {addr}")
    };
    connect(fd.as_raw_fd(), &SockaddrIn::from(v4)).expect("connect(2)");
    let stream = TcpStream::from(fd);
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    stream
}

/// A connection read so that a reset (ECONNRESET) after some bytes ends it
/// as EOF would: a server that closes with unread input in its receive
/// buffer makes its kernel send RST instead of FIN, and the answer it wrote
/// before is still the answer. A reset before any byte stays an error.
pub struct ResetAsEof<'a> {
    stream: &'a mut TcpStream,
    read_any: bool,
}

impl<'a> ResetAsEof<'a> {
    pub fn new(stream: &'a mut TcpStream) -> ResetAsEof<'a> {
        ResetAsEof {
            stream,
            read_any: false,
        }
    }
}

impl Read for ResetAsEof<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stream.read(buf) {
            Ok(n) => {
                self.read_any |= n > 0;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && self.read_any => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// Bytes as text with `\r` and `\n` visible, for assertion messages.
pub fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Assert that the server's stderr never reported a panic.
pub fn assert_no_panic(server: &Server) {
    let stderr = server.stderr();
    assert!(
        !stderr.contains("panicked"),
        "the server panicked:\n{stderr}"
    );
}

/// Say plainly that a test was skipped because `tool` is missing, and what
/// went unchecked. Written to the process's stderr directly, past the test
/// harness's capture (which only intercepts `print!`/`eprint!`), so the line
/// shows in a plain `cargo test` run. README.md lists the tests allowed to skip.
pub fn skipped(tool: &str, unchecked: &str) {
    let line = format!("skipped: {tool} not found; {unchecked} was not checked\n");
    let _ = io::Write::write_all(&mut io::stderr().lock(), line.as_bytes());
}

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    /// The process name (`comm`, 15 bytes at most): `l07-worker-3`.
    pub name: String,
    /// `S` sleeping, `R` running, `T` stopped, `Z` zombie, ...
    pub state: char,
    pub ppid: u32,
    /// Its process group.
    pub pgrp: u32,
}

impl Proc {
    /// Alive, and not a zombie waiting to be reaped.
    pub fn running(&self) -> bool {
        self.state != 'Z'
    }
}

/// Process `pid`, if it exists (zombies included).
pub fn proc_stat(pid: u32) -> Option<Proc> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`: the name may hold spaces and
    // parentheses, so split after the LAST ')'.
    let (open, close) = (text.find('(')?, text.rfind(')')?);
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some(Proc {
        pid: text[..open].trim().parse().ok()?,
        name: text[open + 1..close].to_string(),
        state,
        ppid,
        pgrp,
    })
}

/// Every process this test can see in `/proc`, in pid order.
pub fn processes() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<Proc> = (entries.flatten())
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter_map(proc_stat)
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

/// The children of `pid`, zombies included, in pid order.
pub fn children_of(pid: u32) -> Vec<Proc> {
    processes().into_iter().filter(|p| p.ppid == pid).collect()
}

/// Children of `pid` in state Z (zombies), counted every 50 ms until
/// there are none or `wait` has passed: a child reaped just after its
/// response went out is not a leak.
pub fn zombies_of(pid: u32, wait: Duration) -> usize {
    let count = || children_of(pid).iter().filter(|p| !p.running()).count();
    let deadline = Instant::now() + wait;
    loop {
        let zombies = count();
        if zombies == 0 || Instant::now() >= deadline {
            return zombies;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
