//! Stage bodies that every rung shares, parameterised by one round trip of
//! the rung's protocol: no descriptor leak, a clean exit on SIGTERM, and
//! serving a client while another one is busy (for the concurrent rungs);
//! and helpers for HTTP stages: [`ask`] and [`RawResponse`].

use std::fs;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use ladder::http::{self, ResponseHeadIn};

use crate::runner::{Ctx, Expect, Failure};

/// One complete exchange on a fresh connection, closed at the end.
pub type RoundTrip = fn(&mut Ctx) -> Result<(), Failure>;

/// How many open descriptors the server process has (`/proc/PID/fd`).
pub fn open_fds(ctx: &mut Ctx) -> Result<usize, Failure> {
    let pid = ctx.server().pid();
    match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(entries) => Ok(entries.count()),
        Err(err) => Err(ctx
            .fail("to read the server's /proc/PID/fd (Linux only)")
            .detail(err.to_string())),
    }
}

/// Start the server with `args`, do `rounds` round trips one after another,
/// and require that its descriptor count comes back to where it was: each
/// accepted connection must be closed once its client is done.
/// `by_hand` is one round trip as a shell command, quiet.
pub fn no_fd_leak(
    ctx: &mut Ctx,
    args: &[&str],
    rounds: usize,
    round_trip: RoundTrip,
    by_hand: &str,
) -> Result<(), Failure> {
    ctx.start(args)?;
    // One warm-up round first: a server may open something lazily.
    round_trip(ctx)?;
    let before = settled_fds(ctx, None)?;
    for _ in 0..rounds {
        round_trip(ctx)?;
        ctx.clear_transcript();
    }
    let command = format!(
        "for i in $(seq {rounds}); do {by_hand}; done; ls /proc/{}/fd | wc -l",
        ctx.pid_of_server()
    );
    ctx.reproduce_noting(
        command,
        "the number of open descriptors: run it twice, it must not grow by the number of connections",
        Expect::Runs,
    );
    // The server closes its side after our side; give it time to get there.
    let slack = 4;
    let after = settled_fds(ctx, Some(before + slack))?;
    ctx.ensure(
        after <= before + slack,
        format!("about {before} open descriptors after {rounds} connections, as before them"),
    )
    .map_err(|f| {
        f.detail(format!(
            "the server had {before} open descriptors before {rounds} connections and {after} after: \
             each connection's socket must be closed (dropped) when its client is done"
        ))
    })
}

/// The fd count once it stops changing (or reaches `target`), within ~5 s.
fn settled_fds(ctx: &mut Ctx, target: Option<usize>) -> Result<usize, Failure> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = open_fds(ctx)?;
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = open_fds(ctx)?;
        let reached = target.is_some_and(|t| now <= t);
        if reached || (target.is_none() && now == last) || Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Start the server, do one round trip, send SIGTERM, and require exit
/// status 0 within a few seconds with nothing of its process group left.
pub fn sigterm_exits_0(ctx: &mut Ctx, args: &[&str], round_trip: RoundTrip) -> Result<(), Failure> {
    ctx.start(args)?;
    round_trip(ctx)?;
    ctx.clear_transcript();
    let kill = format!("kill -TERM {}", ctx.pid_of_server());
    ctx.reproduce_noting(
        kill,
        "the server must end at once; then, in its terminal, `echo $?` must print 0",
        Expect::ServerExits0,
    );
    let limit = Duration::from_secs(5);
    let status = ctx.server().terminate(limit);
    match status {
        None => Err(ctx
            .fail(format!("exit within {limit:?} of SIGTERM"))
            .detail("the server was still running, and had to be killed with SIGKILL")),
        Some(status) if !status.success() => Err(ctx
            .fail("exit status 0 after SIGTERM")
            .detail(format!("the server ended with {status}"))),
        Some(_) => {
            let gone = ctx.server().wait_group_gone(limit);
            ctx.ensure(gone, "no process of the server's group left after it exits")
                .map_err(|f| f.detail("a child process outlived the server"))
        }
    }
}

/// On the server the stage started: connection 1 is made busy by `occupy` and stays open; then `probes`
/// more connections are opened, `request` is sent on every one of them, and
/// only then is each answer read and judged by `check` (waiting at most
/// `patience` per read), last connection first, while all stay open.
///
/// A server that serves one client at a time is stuck with connection 1, and
/// the kernel's listen backlog does not save it: the kernel completes and
/// queues the other connections, and even buffers their requests, but nobody
/// answers them. `occupy` must leave the server waiting on connection 1 (a
/// finished echo round trip on a kept-open connection, or half an HTTP
/// request head). Once the others are answered, connection 1 must still be
/// open and unanswered: a one-at-a-time server with a short read timeout
/// could otherwise drop it (or answer it 408) and then serve the rest.
pub fn serves_while_busy(
    ctx: &mut Ctx,
    occupy: fn(&mut Ctx, &mut TcpStream) -> Result<(), Failure>,
    probes: usize,
    request: &[u8],
    check: fn(&mut Ctx, &mut TcpStream) -> Result<(), Failure>,
    patience: Duration,
) -> Result<(), Failure> {
    let mut first = ctx.connect()?;
    occupy(ctx, &mut first)?;
    let mut others = Vec::with_capacity(probes);
    for _ in 0..probes {
        let mut stream = ctx.connect()?;
        let _ = stream.set_read_timeout(Some(patience));
        ctx.send(&mut stream, request)?;
        others.push(stream);
    }
    for (i, stream) in others.iter_mut().enumerate().rev() {
        check(ctx, stream).map_err(|f| {
            f.expecting(format!(
                "an answer on connection {} while connection 1 is still open",
                i + 2
            ))
        })?;
    }
    still_waiting(ctx, &mut first)
}

/// The stage for an accept loop: after its announce line the server is
/// still running a moment later (a missing accept loop ends the program
/// there), and a client can connect. What happens on the connection is the
/// business of the next holes.
pub fn stays_up_and_accepts(ctx: &mut Ctx) -> Result<(), Failure> {
    let command = format!("nc -vz 127.0.0.1 {}", ctx.port_hint());
    ctx.reproduce_noting(
        command,
        "nc says the connection succeeded; the server's terminal shows no panic before it",
        Expect::Shows("succeeded"),
    );
    ctx.start(&[])?;
    thread::sleep(Duration::from_millis(300));
    if let Some(status) = ctx.server().try_exit() {
        return Err(ctx
            .fail("the server to keep running after it printed its URL")
            .detail(format!(
                "it ended ({status}) right after announcing: the accept loop must run for ever"
            )));
    }
    ctx.connect()?;
    Ok(())
}

/// `Ok` if the server has neither closed `stream` nor written to it: a
/// short read finds nothing to read yet.
fn still_waiting(ctx: &mut Ctx, stream: &mut TcpStream) -> Result<(), Failure> {
    let expected = "connection 1 still open and waiting, after the others were answered";
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte) {
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(()),
        Ok(0) => Err(ctx.fail(expected).detail(
            "the server had closed connection 1: it served the others only after dropping it",
        )),
        Ok(_) => {
            // Read what it said, so the report shows it (recv_to_close records it).
            let _ = ctx.recv_to_close(stream);
            Err(ctx.fail(expected).detail(
                "the server had answered connection 1's unfinished request, then served the others",
            ))
        }
        Err(err) => Err(ctx.fail(expected).detail(format!("read: {err}"))),
    }
}

/// Close `stream` with a reset (RST) instead of a FIN: SO_LINGER with a zero
/// timeout makes close() throw the connection away, as a crashed client's
/// kernel does. The server's next read or write on it fails with ECONNRESET.
pub fn close_with_reset(stream: TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = setsockopt(&stream, sockopt::Linger, &linger);
    drop(stream);
}

/// An HTTP response read to the close, its head parsed once by
/// `ladder::http::parse_response`. Like most clients, that parser also takes
/// bare `\n` line ends, so a stage checking one thing (say, the status) does
/// not also fail on another (say, the line ends, which `status_line_crlf`
/// checks on the raw bytes).
pub struct RawResponse {
    pub bytes: Vec<u8>,
    /// The head, if `bytes` start with a whole, well-formed one.
    parsed: Option<ResponseHeadIn>,
    /// Where that head ends (after its blank line).
    pub head_end: Option<usize>,
}

impl RawResponse {
    pub fn new(bytes: Vec<u8>) -> RawResponse {
        let (parsed, head_end) = match http::parse_response(&bytes) {
            Ok(Some((head, end))) => (Some(head), Some(end)),
            Ok(None) | Err(_) => (None, None),
        };
        RawResponse {
            bytes,
            parsed,
            head_end,
        }
    }

    /// The head's bytes; all of them when no whole head was found.
    pub fn head(&self) -> &[u8] {
        &self.bytes[..self.head_end.unwrap_or(self.bytes.len())]
    }

    /// Everything after the head, as sent (chunked framing left in place).
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.head_end.unwrap_or(self.bytes.len())..]
    }

    /// The status code, if the head parsed.
    pub fn status(&self) -> Option<u16> {
        self.parsed.as_ref().map(|head| head.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.parsed.as_ref()?.header(name).map(str::to_string)
    }
}

/// Send `request` on a new connection and read the answer until the server
/// closes the connection (send `Connection: close` in `request`).
pub fn ask(ctx: &mut Ctx, request: &[u8]) -> Result<RawResponse, Failure> {
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, request)?;
    let bytes = ctx.recv_to_close(&mut stream)?;
    Ok(RawResponse::new(bytes))
}
