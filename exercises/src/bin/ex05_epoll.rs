//! # Lesson 05: one thread, many sockets
//!
//! Lecture: `lessons/05-epoll.md` · Exercise: `exercises/ex05_epoll/`
//!
//! New here: readiness I/O. Non-blocking sockets, one event loop (`mio::Poll`,
//! and with `--raw-epoll` the bare `epoll_create1`/`epoll_ctl`/`epoll_wait`
//! calls it wraps), tokens, edge-triggered draining until `WouldBlock`, one
//! small state machine per connection, keep-alive and pipelining, timeouts
//! from one timer heap, and what to do when the process runs out of fds.
//! From earlier lessons: request parsing and responses (`ladder::http`, 02),
//! the access log (`ladder::log`, 02), serving files (`ladder::static_files`, 04).
//! Crates used: mio, nix (epoll, eventfd, rlimit), clap, httparse through `ladder::http`.
//!
//! Run: `cargo run --bin lesson05_epoll` (serves `.` on <http://127.0.0.1:8005/>)
//! Try: `curl -v http://127.0.0.1:8005/hello`, then `nc 127.0.0.1 8005` and
//! type a request slowly while another terminal runs curl; add `--trace`.
//!
//! Reading order: `main` → `run` → `Server::serve` → `accept_all` → `drive`
//! (→ `answer_next` → `respond` → `flush` → `read_some`) → `arm` → `expire`;
//! then `Poller`, the thin layer over mio and raw epoll.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

use ladder::http::{
    Body, BodyDecoder, BodyFraming, Framing, Limits, Parsed, Request, ResponseHead, ServerInfo,
    error_response, parse_request,
};
use ladder::static_files::{self, Root};
use ladder::trace;

/// The listening socket's token. Tokens are how the kernel tells us *which*
/// socket is ready: we pick a number when we register an fd, and every event
/// for that fd comes back carrying it (epoll calls it `data`).
const LISTENER: Token = Token(0);
/// The token of the waker: the signal thread pokes it on Ctrl-C or SIGTERM.
const WAKER: Token = Token(1);
/// Connection `slot` in the connection table gets token `slot + 2`.
const FIRST_CONNECTION: usize = 2;

/// One `read(2)` takes at most this much; the buffer is shared by everyone.
const READ_CHUNK: usize = 64 * 1024;
/// A file body goes out in pieces of this size; no file is read whole.
const FILE_CHUNK: usize = 64 * 1024;
/// Pipelined requests are answered until this much output is queued; past
/// it we write first, and stop reading a client that does not read us.
const OUT_LIMIT: usize = 64 * 1024;
/// After `accept` fails with EMFILE, wait this long before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long we keep reading (and discarding) after a `Connection: close`
/// answer, so the client reads our answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// `/slow?ms=N` burns at most this much CPU.
const SLOW_CAP_MS: u64 = 10_000;
/// The benchmark route's body.
const HELLO: &[u8] = b"Hello, World!\n";

/// Lesson 05: one thread, many sockets: an HTTP server on an event loop (mio, or raw epoll).
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
        cargo run --bin lesson05_epoll\n  \
        curl -v http://127.0.0.1:8005/hello\n  \
        curl 'http://127.0.0.1:8005/slow?ms=2000'     (one core busy: everyone waits)\n  \
        cargo run --bin lesson05_epoll -- --trace --raw-epoll\n  \
        nc 127.0.0.1 8005                             (type a request slowly)"
)]
struct Args {
    #[command(flatten)]
    listen: ladder::cli::ListenArgs<5>,

    /// Directory to serve files from
    #[arg(long, short = 'd', value_name = "DIR", default_value = ".")]
    directory: PathBuf,

    /// Most connections open at once; more are answered 503 and closed
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,

    /// Seconds a client has to send a whole request head
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = seconds())]
    header_timeout: u64,

    /// Seconds an idle keep-alive connection, or a client that stopped reading, is kept
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = seconds())]
    idle_timeout: u64,

    /// Run the loop on the bare epoll system calls (through nix) instead of mio
    #[arg(long)]
    raw_epoll: bool,
}

/// One client connection: its socket and where it is in the protocol.
///
/// Kept small on purpose: an idle keep-alive connection holds no buffers at
/// all (they are lent by the server while there are bytes in flight), so ten
/// thousand idle clients cost about what ten thousand of these structs do.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    /// Unique for the life of the process, unlike the slot (and token), which
    /// a later connection reuses: a timer entry names both, so an entry left
    /// behind by a closed connection never fires on its successor.
    id: u64,
    /// Reading side of the state machine: a head, or the body after it.
    phase: Phase,
    /// Bytes read but not yet parsed: half a head, or pipelined requests.
    inbuf: Vec<u8>,
    /// Bytes of responses not yet written. Writing is not a separate phase:
    /// with pipelining we may answer request 2 while request 1's answer waits.
    out: Vec<u8>,
    /// The rest of a file body, sent after `out` empties, one chunk at a time.
    file: Option<FileBody>,
    /// Close once `out` and `file` are written (HTTP/1.0, `Connection: close`, errors).
    close_after: bool,
    /// We already half-closed our side and only wait for the client's EOF.
    lingering: bool,
    /// The client closed its sending side (`read` returned 0).
    peer_done: bool,
    /// Requests answered on this connection; 0 means it is still brand new.
    served: u64,
    /// Is WRITABLE in this socket's interest set right now?
    want_write: bool,
    /// What this connection is waiting for, and since when (timeouts).
    /// `None` restarts the clock at the next `arm` (progress was made).
    wait: Option<Wait>,
    /// The same, for `--trace` only: not reset by progress.
    state: Wait,
    since: Instant,
    /// When the timeout fires; and the time of our entry in the timer heap.
    deadline: Instant,
    armed: Option<Instant>,
}

/// The reading side of the per-connection state machine.
enum Phase {
    /// Waiting for a request head; `Parsed::Partial` keeps us here.
    Head,
    /// The head said a body follows: read past it, then answer `request`.
    /// Boxed: bodies are rare here, and every idle connection would
    /// otherwise carry room for them (about 100 bytes each).
    Body {
        decoder: Box<BodyDecoder>,
        request: Box<Request>,
    },
}

/// What a connection is waiting for decides which timeout applies.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wait {
    /// A request head (or body) to arrive: `--header-timeout`, counted from
    /// the first byte, never extended by a trickle of bytes (slowloris).
    Request,
    /// A keep-alive connection with nothing to do: `--idle-timeout`.
    Idle,
    /// The client to read what we wrote: `--idle-timeout`, extended whenever
    /// a write makes progress.
    Reader,
    /// The client's EOF after our `Connection: close` answer.
    Linger,
}

impl Wait {
    fn describe(self) -> &'static str {
        match self {
            Wait::Request => "reading a request",
            Wait::Idle => "idle keep-alive",
            Wait::Reader => "writing, the client reads slowly",
            Wait::Linger => "lingering close",
        }
    }
}

/// A file body being streamed: the open file and how much of it is left.
struct FileBody {
    /// Opened by `static_files::respond`, read from where the last chunk ended.
    file: File,
    /// Bytes still to send: the Content-Length promised minus what was read.
    left: u64,
}

/// What `drive` decided about a connection.
enum Next {
    /// Keep it: its socket is drained (or its output is stuck), and the
    /// next event will bring us back.
    Keep,
    /// Close it, for this reason (shown by `--trace`).
    Close(&'static str),
}

/// Settings from the command line.
struct Config {
    /// The served directory, opened once (`ladder::static_files`).
    root: Root,
    /// How big a request may be (lesson 02's defaults: 8 KiB request line,
    /// 64 KiB head, 10 MiB body).
    limits: Limits,
    /// `--max-connections`: over it, newcomers get a 503.
    max_connections: usize,
    /// `--header-timeout` and `--idle-timeout` (see [`Wait`]).
    header_timeout: Duration,
    idle_timeout: Duration,
}

/// The whole server: one thread owns all of it, so nothing here is locked.
struct Server {
    poller: Poller,
    listener: TcpListener,
    config: Config,
    /// The connection table, indexed by slot; `free` lists empty slots, so
    /// tokens stay small and are reused (a slab, without the crate).
    connections: Vec<Option<Connection>>,
    free: Vec<usize>,
    live: usize,
    next_id: u64,
    /// Every deadline in one min-heap: (when, token, connection id). Entries
    /// are never removed early; an entry that no longer matches its
    /// connection is skipped when it surfaces ("lazy invalidation").
    timers: BinaryHeap<Reverse<(Instant, Token, u64)>>,
    /// Accepting is paused after EMFILE until the LISTENER timer fires.
    accept_paused: bool,
    /// One read buffer for all connections: we handle one at a time.
    scratch: Box<[u8]>,
    /// Buffers lent to whichever connection is busy, taken back when it is done.
    spare_in: Vec<u8>,
    spare_out: Vec<u8>,
    /// The `/hello` response, rendered once per second (its Date changes).
    hello: HelloCache,
    /// Where a request body we do not use is decoded to, then dropped.
    discard: Vec<u8>,
    /// Our own handle on the waker. Without it, the signal thread would drop
    /// the last one right after waking us, closing the eventfd; and closing
    /// an fd takes its pending event off the ready list, so the wake-up
    /// could vanish before this thread saw it (it did, in testing).
    _waker: Arc<Waker>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lesson05_epoll: {err}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: setup
/// Set everything up, then hand over to the event loop until a signal ends it.
fn run(args: Args) -> io::Result<()> {
    raise_fd_limit()?;
    let root = Root::new(&args.directory)?;
    // A non-blocking listener: `accept` returns WouldBlock instead of waiting.
    let listener = TcpListener::bind(args.listen.addr())?;
    listener.set_nonblocking(true)?;
    let poller = Poller::new(args.raw_epoll)?;
    poller.add(listener.as_fd(), LISTENER, Want::Read)?;
    // Ctrl-C and SIGTERM arrive on the signal thread; it pokes the waker,
    // which makes the loop's next wait return with the WAKER token.
    let waker = poller.waker(WAKER)?;
    let signal_waker = Arc::clone(&waker);
    ladder::shutdown::on_termination(move |_| signal_waker.wake())?;
    ladder::cli::announce("http", listener.local_addr()?)?;
    let config = Config {
        root,
        limits: Limits::default(),
        max_connections: args.max_connections,
        header_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
    };
    Server::new(poller, listener, config, waker).serve()
}
// ANCHOR_END: setup

impl Server {
    fn new(poller: Poller, listener: TcpListener, config: Config, waker: Arc<Waker>) -> Server {
        Server {
            poller,
            _waker: waker,
            listener,
            config,
            connections: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_id: 0,
            timers: BinaryHeap::new(),
            accept_paused: false,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            spare_in: Vec::new(),
            spare_out: Vec::new(),
            hello: HelloCache::default(),
            discard: Vec::new(),
        }
    }

    // ANCHOR: event_loop
    /// The event loop: wait until something is ready or a deadline passes,
    /// handle what is ready, expire what is late. Nothing in it ever blocks
    /// except the wait itself, which is the whole idea.
    fn serve(&mut self) -> io::Result<()> {
        // Reused on every turn: the loop allocates nothing to wait.
        let mut ready = Vec::with_capacity(1024);
        loop {
            let timeout = self.next_timeout();
            self.poller.wait(timeout, &mut ready)?;
            for event in &ready {
                match event.token {
                    LISTENER => self.accept_all(),
                    WAKER => return Ok(()),
                    token => self.on_ready(token),
                }
            }
            self.expire();
        }
    }
    // ANCHOR_END: event_loop

    // ANCHOR: accept_all
    /// The listener is readable: accept until WouldBlock. Edge-triggered
    /// readiness says "something changed", once; stop early and the clients
    /// still queued in the backlog would wait for the next newcomer.
    fn accept_all(&mut self) {
        // TODO(ex05): accept until WouldBlock, handing each new connection to `admit`.
        //   Skip ECONNABORTED and EINTR. On any other error (EMFILE above all) do
        //   not retry at once: set `accept_paused` and push a LISTENER deadline
        //   ACCEPT_PAUSE ahead into `self.timers` (`expire` resumes accepting).
        //   Read first: lessons/05-epoll.md, "Accepting, and running out of file descriptors".
        todo!("ex05: accept until WouldBlock")
    }
    // ANCHOR_END: accept_all

    /// Give an accepted socket a slot and a token, or refuse it politely.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let fd = stream.as_raw_fd();
        trace!(
            "accept({}) -> fd {fd} from {peer}",
            self.listener.as_raw_fd()
        );
        if self.live >= self.config.max_connections {
            trace!("fd {fd}: over --max-connections: 503, close");
            refuse(stream);
            return;
        }
        // std's accept hands back a blocking socket; one blocking read
        // would freeze every client, so switch it to non-blocking first.
        // TCP_NODELAY: send each response at once instead of letting
        // Nagle's algorithm wait for more bytes to batch with it.
        if let Err(err) = stream
            .set_nonblocking(true)
            .and_then(|()| stream.set_nodelay(true))
        {
            trace!("setup of fd {fd} failed: {err}");
            return;
        }
        // A free slot if there is one, so tokens stay dense and the table
        // stops growing once it has seen the busiest moment.
        let slot = self.free.pop().unwrap_or_else(|| {
            self.connections.push(None);
            self.connections.len() - 1
        });
        let token = Token(slot + FIRST_CONNECTION);
        // READABLE only: WRITABLE is added if and when a write cannot finish.
        // If the request already arrived, the registration itself reports
        // the socket readable at the next wait: no bytes are missed.
        if let Err(err) = self.poller.add(stream.as_fd(), token, Want::Read) {
            trace!("epoll_ctl(ADD, fd {fd}) -> {err}");
            self.free.push(slot);
            return;
        }
        self.next_id += 1;
        let mut connection = Connection::new(stream, peer, self.next_id);
        self.arm(token, &mut connection);
        self.connections[slot] = Some(connection);
        self.live += 1;
    }

    /// A connection's socket is ready (to read, to write, or it hung up: we
    /// do not care which; `drive` simply does all it can).
    fn on_ready(&mut self, token: Token) {
        let slot = token.0 - FIRST_CONNECTION;
        // Take the connection out of the table while we work on it, so the
        // rest of `self` (buffers, poller, config) can be borrowed freely.
        let Some(mut connection) = self.connections.get_mut(slot).and_then(Option::take) else {
            return; // closed earlier in this same batch of events
        };
        // The event may even be stale: its connection closed earlier in
        // this batch and a new one took the slot. That is harmless, because
        // `drive` never assumes anything is ready; it tries, and stops at
        // WouldBlock. (mio's docs warn of such spurious events too.)
        connection.borrow_buffers(&mut self.spare_in, &mut self.spare_out);
        let next = self.drive(token, &mut connection);
        connection.return_buffers(&mut self.spare_in, &mut self.spare_out);
        match next {
            Ok(Next::Keep) => {
                self.arm(token, &mut connection);
                self.connections[slot] = Some(connection);
            }
            Ok(Next::Close(why)) => self.close(slot, connection, why),
            Err(err) => self.close(slot, connection, &format!("{err}")),
        }
    }

    // ANCHOR: drive
    /// Do everything this connection allows until the socket says
    /// WouldBlock: answer buffered requests, write, read. With
    /// edge-triggered readiness, stopping before WouldBlock would leave
    /// bytes waiting with no new event to remind us of them.
    fn drive(&mut self, token: Token, conn: &mut Connection) -> io::Result<Next> {
        // TODO(ex05): loop until WouldBlock: answer buffered requests (`answer_next`)
        //   while `out` is under OUT_LIMIT, no file is streaming and no close is due;
        //   if there is output, `flush` it: when it cannot finish, ask for WRITABLE
        //   (`self.poller.want_write(token, conn, true)`) and return Keep; when it
        //   does, go round again. With nothing to write: WRITABLE off, then
        //   `close_after` -> `self.linger(conn)`, `peer_done` -> Close, else
        //   `read_some`: Some(0) is EOF (set peer_done), None means drained: Keep.
        //   Read first: lessons/05-epoll.md, "One state machine per connection".
        todo!("ex05: drive the connection until WouldBlock")
    }
    // ANCHOR_END: drive

    // ANCHOR: answer_next
    /// Take the next step of the reading state machine with what `inbuf`
    /// holds. Returns false when more bytes are needed.
    fn answer_next(&mut self, conn: &mut Connection) -> io::Result<bool> {
        if conn.inbuf.is_empty() {
            return Ok(false);
        }
        let limits = &self.config.limits;
        match &mut conn.phase {
            Phase::Head => match parse_request(&conn.inbuf, limits) {
                Ok(Parsed::Partial) => Ok(false), // half a head: read more
                Ok(Parsed::Complete { request, consumed }) => {
                    trace!(
                        "fd {}: head complete, {consumed} of {} bytes: {}",
                        conn.fd(),
                        conn.inbuf.len(),
                        request.request_line()
                    );
                    conn.inbuf.drain(..consumed); // the rest is the next request
                    conn.wait = None; // a new request restarts the clock
                    match request.body_framing(limits) {
                        Ok(BodyFraming::Empty) => self.respond(conn, request),
                        Ok(framing) => {
                            trace!("fd {}: reading head -> reading body", conn.fd());
                            let decoder = Box::new(BodyDecoder::new(framing, limits));
                            let request = Box::new(request);
                            conn.phase = Phase::Body { decoder, request };
                        }
                        Err(rejection) => conn.reject(&rejection.response(), rejection.status),
                    }
                    Ok(true)
                }
                Err(rejection) => {
                    conn.reject(&rejection.response(), rejection.status);
                    Ok(true)
                }
            },
            Phase::Body { decoder, .. } => {
                let used = match decoder.feed(&conn.inbuf, &mut self.discard) {
                    Ok(used) => used,
                    Err(rejection) => {
                        conn.reject(&rejection.response(), rejection.status);
                        return Ok(true);
                    }
                };
                self.discard.clear(); // no route here uses a body
                conn.inbuf.drain(..used);
                conn.wait = None; // progress
                if decoder.is_done() {
                    // Back to reading heads; the request moves out of the phase.
                    if let Phase::Body { request, .. } =
                        std::mem::replace(&mut conn.phase, Phase::Head)
                    {
                        self.respond(conn, *request);
                    }
                }
                Ok(true)
            }
        }
    }
    // ANCHOR_END: answer_next

    /// Queue the response to one request: `/hello`, `/slow`, or a file.
    /// Everything here runs on the loop's only thread, so it must be quick:
    /// while it runs, no other client is read, written or accepted.
    fn respond(&mut self, conn: &mut Connection, request: Request) {
        // RFC 9112 §9.3: HTTP/1.1 keeps the connection by default, 1.0 closes.
        let keep_alive = request.keep_alive();
        let head_only = request.method == "HEAD";
        let (status, size) = match request.path() {
            "/hello" if request.check_method(&["GET", "HEAD"]).is_ok() => {
                self.hello.append(&mut conn.out, keep_alive, head_only);
                (200, HELLO.len() as u64)
            }
            "/slow" if request.check_method(&["GET", "HEAD"]).is_ok() => {
                let ms = burn_cpu(request.query());
                let body = format!("burned {ms} ms of CPU on the only thread\n");
                let head = ResponseHead::new(200).header("Content-Type", "text/plain");
                let framing = Framing::Length(body.len() as u64);
                conn.out.extend(head.render(framing, keep_alive));
                if !head_only {
                    conn.out.extend_from_slice(body.as_bytes());
                }
                (200, body.len() as u64)
            }
            _ => {
                // Rung 4's file serving, unchanged: it decides the head and
                // hands us an open file; how the bytes travel is our business.
                // (Opening a file blocks the loop for a moment too. In
                // production, nginx can move that to a thread pool: aio threads.)
                let mut response = static_files::respond(&self.config.root, &request);
                let (plan, head) = response.render(Some(&request), &ServerInfo::PLAIN, true);
                conn.out.extend(head);
                if !plan.keep_alive {
                    conn.close_after = true;
                }
                let logged = (response.status, response.body_len().unwrap_or(0));
                if let (Body::File { file, len }, true) = (response.body, plan.send_body) {
                    conn.file = Some(FileBody { file, left: len });
                }
                logged
            }
        };
        // The check first, so a `--quiet` benchmark does not even format it.
        if !ladder::log::quiet() {
            ladder::log::access(conn.peer, &request.request_line(), status, Some(size));
        }
        conn.served += 1;
        if !keep_alive {
            conn.close_after = true;
        }
    }

    /// After a `Connection: close` answer: half-close, then read and drop
    /// whatever the client still sends until it closes too. Closing at once
    /// with unread bytes makes the kernel send a reset, which can destroy our
    /// answer before the client reads it. In production this is nginx's
    /// `lingering_close`.
    fn linger(&mut self, conn: &mut Connection) -> io::Result<Next> {
        if conn.peer_done {
            return Ok(Next::Close("answered, Connection: close"));
        }
        if !conn.lingering {
            conn.lingering = true;
            conn.wait = None;
            conn.inbuf.clear();
            let _ = conn.stream.shutdown(Shutdown::Write);
            trace!("shutdown(fd {}, SHUT_WR): lingering", conn.fd());
        }
        loop {
            match read_some(conn, &mut self.scratch)? {
                Some(0) => return Ok(Next::Close("answered, Connection: close")),
                Some(_) => conn.inbuf.clear(),
                None => return Ok(Next::Keep),
            }
        }
    }

    // ANCHOR: timers
    /// Set the connection's deadline from what it waits for, and make sure
    /// the heap holds an entry no later than it. Extending a deadline pushes
    /// nothing: the old entry fires early, sees the later deadline, re-arms.
    fn arm(&mut self, token: Token, conn: &mut Connection) {
        let wait = conn.waiting_for();
        if conn.state != wait {
            trace!("fd {}: state -> {}", conn.fd(), wait.describe());
            conn.state = wait;
        }
        if conn.wait != Some(wait) {
            conn.wait = Some(wait);
            conn.since = Instant::now();
        }
        conn.deadline = conn.since
            + match wait {
                Wait::Request => self.config.header_timeout,
                Wait::Idle | Wait::Reader => self.config.idle_timeout,
                Wait::Linger => LINGER,
            };
        if conn.armed.is_none_or(|armed| conn.deadline < armed) {
            self.timers.push(Reverse((conn.deadline, token, conn.id)));
            conn.armed = Some(conn.deadline);
        }
    }
    // ANCHOR_END: timers

    /// The poll timeout: time until the earliest deadline, or forever.
    /// The earliest entry may be stale; then we wake up for nothing once,
    /// which is the price of never removing entries early.
    fn next_timeout(&self) -> Option<Duration> {
        let Reverse((when, _, _)) = self.timers.peek()?;
        Some(when.saturating_duration_since(Instant::now()))
    }

    /// Pop every deadline that has passed and act on the ones still valid.
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((when, token, id))) = self.timers.peek() {
            if when > now {
                break;
            }
            self.timers.pop();
            if token == LISTENER {
                trace!("timer: accept pause over, accepting again");
                self.accept_paused = false;
                self.accept_all();
                continue;
            }
            let slot = token.0 - FIRST_CONNECTION;
            let Some(conn) = self.connections.get_mut(slot).and_then(Option::as_mut) else {
                continue; // slot empty: its connection is long gone
            };
            if conn.id != id || conn.armed != Some(when) {
                continue; // stale: another connection, or a superseded entry
            }
            conn.armed = None;
            if conn.deadline <= now {
                // Closed without a word, as http.server and nginx do. (A
                // 408 Request Timeout is allowed, but a client that sent
                // nothing is rarely listening.)
                let why = format!("timeout: {}", conn.state.describe());
                let conn = self.connections[slot].take().expect("checked above");
                self.close(slot, conn, &why);
            } else {
                // The deadline moved later since this entry was pushed:
                // push the real one now (see `arm`).
                conn.armed = Some(conn.deadline);
                self.timers.push(Reverse((conn.deadline, token, id)));
            }
        }
    }

    /// Close a connection and free its slot. close(2) also removes the fd
    /// from the epoll interest list, so no `epoll_ctl(DEL)` is needed.
    fn close(&mut self, slot: usize, conn: Connection, why: &str) {
        trace!(
            "close(fd {}) token {}: {why}",
            conn.fd(),
            slot + FIRST_CONNECTION
        );
        drop(conn);
        self.free.push(slot);
        self.live -= 1;
    }
}

impl Connection {
    fn new(stream: TcpStream, peer: SocketAddr, id: u64) -> Connection {
        let now = Instant::now();
        Connection {
            stream,
            peer,
            id,
            phase: Phase::Head,
            inbuf: Vec::new(),
            out: Vec::new(),
            file: None,
            close_after: false,
            lingering: false,
            peer_done: false,
            served: 0,
            want_write: false,
            wait: None,
            state: Wait::Request,
            since: now,
            deadline: now,
            armed: None,
        }
    }

    fn fd(&self) -> i32 {
        self.stream.as_raw_fd()
    }

    fn has_output(&self) -> bool {
        !self.out.is_empty() || self.file.is_some()
    }

    /// Which timeout applies now (see [`Wait`]).
    fn waiting_for(&self) -> Wait {
        if self.lingering {
            Wait::Linger
        } else if self.has_output() {
            Wait::Reader
        } else if self.served > 0 && self.inbuf.is_empty() && matches!(self.phase, Phase::Head) {
            Wait::Idle
        } else {
            Wait::Request
        }
    }

    /// Answer a bad request and end the connection: after a framing error
    /// we cannot know where the next request would start.
    fn reject(&mut self, response: &[u8], status: u16) {
        trace!("fd {}: rejected with {status}", self.fd());
        if !ladder::log::quiet() {
            let line =
                String::from_utf8_lossy(self.inbuf.split(|&b| b == b'\n').next().unwrap_or(&[]));
            ladder::log::access(self.peer, line.trim_end(), status, None);
        }
        self.out.extend_from_slice(response);
        self.inbuf.clear();
        self.close_after = true;
    }

    /// Use the server's spare buffers while working; an idle connection
    /// owns none. Moving a `Vec` moves three words, not its bytes.
    fn borrow_buffers(&mut self, spare_in: &mut Vec<u8>, spare_out: &mut Vec<u8>) {
        if self.inbuf.capacity() == 0 {
            std::mem::swap(&mut self.inbuf, spare_in);
        }
        if self.out.capacity() == 0 {
            std::mem::swap(&mut self.out, spare_out);
        }
    }

    /// Give empty buffers back; keep only those still holding bytes.
    fn return_buffers(&mut self, spare_in: &mut Vec<u8>, spare_out: &mut Vec<u8>) {
        for (mine, spare) in [(&mut self.inbuf, spare_in), (&mut self.out, spare_out)] {
            if mine.is_empty() && mine.capacity() > 0 {
                if spare.capacity() == 0 {
                    std::mem::swap(mine, spare);
                } else {
                    *mine = Vec::new();
                }
            }
        }
    }
}

// ANCHOR: flush
/// Write queued bytes, refilling from the file body, until everything is
/// out (true) or the socket's send buffer is full (false). A slow reader
/// costs us at most one chunk of memory and never blocks anyone else.
fn flush(conn: &mut Connection) -> io::Result<bool> {
    // TODO(ex05): top `conn.out` up from `conn.file` (up to FILE_CHUNK bytes; a file
    //   that ends early is an error), write until `out` is empty (true) or the
    //   socket says WouldBlock (false), draining what was written and setting
    //   `conn.wait = None` on progress. Read first: "Slow readers and partial writes".
    todo!("ex05: write until done or WouldBlock")
}
// ANCHOR_END: flush

// ANCHOR: read_some
/// One `read(2)` into the shared buffer, appended to the connection's own.
/// `Some(0)` is EOF, `None` is WouldBlock: the socket is drained.
fn read_some(conn: &mut Connection, scratch: &mut [u8]) -> io::Result<Option<usize>> {
    // TODO(ex05): one read(2) of the socket into `scratch`, appended to
    //   `conn.inbuf`: Some(n) (0 is EOF), None on WouldBlock; retry on EINTR.
    todo!("ex05: read once into the buffer")
}
// ANCHOR_END: read_some

/// Refuse a connection over the cap: one write of a 503 (a fresh socket's
/// send buffer is empty, so it fits), read what the client already sent so
/// closing does not turn into a reset, then close.
fn refuse(stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let response = error_response(503, "too many connections, try again later");
    let _ = (&stream).write(&response);
    let _ = stream.shutdown(Shutdown::Write);
    let _ = (&stream).read(&mut [0; 4096]);
}

/// `/slow?ms=N`: spin on the CPU for N ms (at most SLOW_CAP_MS). A busy
/// loop, not a sleep: it stands for real work (templates, JSON), and while
/// it runs, this thread serves nobody else.
fn burn_cpu(query: &str) -> u64 {
    let ms = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(100u64)
        .min(SLOW_CAP_MS);
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
    ms
}

/// The `/hello` responses, keep-alive and close, rendered once per second:
/// the benchmark route then costs a copy, not a formatting pass.
#[derive(Default)]
struct HelloCache {
    /// The Unix second the heads were rendered in (their Date header).
    second: u64,
    /// The head with `Connection: keep-alive`, and the one with `close`.
    keep_alive: Vec<u8>,
    close: Vec<u8>,
}

impl HelloCache {
    fn append(&mut self, out: &mut Vec<u8>, keep_alive: bool, head_only: bool) {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.close.is_empty() {
            let head = ResponseHead::new(200).header("Content-Type", "text/plain");
            let framing = Framing::Length(HELLO.len() as u64);
            self.keep_alive.clear();
            head.render_into(&mut self.keep_alive, framing, true, now);
            self.close.clear();
            head.render_into(&mut self.close, framing, false, now);
            self.second = second;
        }
        out.extend_from_slice(if keep_alive {
            &self.keep_alive
        } else {
            &self.close
        });
        if !head_only {
            out.extend_from_slice(HELLO);
        }
    }
}

/// Timeouts up to a day: a deadline is `Instant + timeout`, which must not
/// overflow (with `u64::MAX` seconds it would, and panic).
fn seconds() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(0..=86_400)
}

/// Raise the soft limit on open files to the hard limit: every connection
/// is an fd, and the usual soft limit (1024) is far below C10k.
fn raise_fd_limit() -> io::Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    trace!("setrlimit(RLIMIT_NOFILE, {hard}) (soft limit was {soft})");
    Ok(())
}

// ANCHOR: poller
/// The readiness API, two ways: mio's `Poll` (what the lesson uses), or the
/// three epoll calls it wraps on Linux, made through nix (`--raw-epoll`).
/// Both are registered edge-triggered, which is all mio offers.
enum Poller {
    Mio {
        poll: mio::Poll,
        events: mio::Events,
    },
    Raw {
        epoll: Epoll,
        events: Vec<EpollEvent>,
    },
}
// ANCHOR_END: poller

/// What we ask to be told about a socket.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The usual state: tell us about new bytes (and about hang-ups).
    Read,
    /// Also tell us when the send buffer has room: only while output is stuck.
    ReadWrite,
}

/// One readiness event, in our own words.
struct Ready {
    /// Which socket: the number we chose when we registered it.
    token: Token,
    /// Bytes (or EOF, or an error) wait to be read. Only `--trace` looks at
    /// these two flags: `drive` tries everything anyway.
    readable: bool,
    /// The send buffer has room again.
    writable: bool,
}

impl Poller {
    fn new(raw: bool) -> io::Result<Poller> {
        Ok(if raw {
            // epoll_create1(2): int epoll_create1(int flags); a new, empty interest list.
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            trace!("epoll_create1(EPOLL_CLOEXEC) -> fd {}", epoll.0.as_raw_fd());
            let events = vec![EpollEvent::empty(); 1024];
            Poller::Raw { epoll, events }
        } else {
            Poller::Mio {
                poll: mio::Poll::new()?,
                events: mio::Events::with_capacity(1024),
            }
        })
    }

    // ANCHOR: raw_flags
    /// The epoll flags for `want`. EPOLLET makes it edge-triggered: report
    /// a socket when it *becomes* ready, not for as long as it *is* ready.
    /// Without it (level-triggered), every wait reports the socket again
    /// until it is drained: simpler, but one more wake-up per event.
    fn raw_flags(want: Want) -> EpollFlags {
        let read = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        match want {
            Want::Read => read,
            Want::ReadWrite => read | EpollFlags::EPOLLOUT,
        }
    }
    // ANCHOR_END: raw_flags

    /// Start watching `fd` (epoll_ctl(EPOLL_CTL_ADD)).
    fn add(&self, fd: BorrowedFd<'_>, token: Token, want: Want) -> io::Result<()> {
        trace!("epoll_ctl(ADD, fd {}, token {})", fd.as_raw_fd(), token.0);
        match self {
            Poller::Mio { poll, .. } => {
                // mio usually wraps its own socket types; `SourceFd` lets it
                // watch any fd, so both back ends share std's sockets (made
                // non-blocking by hand, which mio's types would do for us).
                let interest = mio_interest(want);
                poll.registry()
                    .register(&mut SourceFd(&fd.as_raw_fd()), token, interest)
            }
            Poller::Raw { epoll, .. } => {
                // epoll_ctl(2): int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
                let event = EpollEvent::new(Poller::raw_flags(want), token.0 as u64);
                Ok(epoll.add(fd, event)?)
            }
        }
    }

    /// Add or drop WRITABLE interest (epoll_ctl(EPOLL_CTL_MOD)), only when it
    /// changes. Asking for WRITABLE all the time would wake us for every
    /// connection whose send buffer has room, which is nearly all of them.
    fn want_write(&self, token: Token, conn: &mut Connection, on: bool) -> io::Result<()> {
        if conn.want_write == on {
            return Ok(());
        }
        conn.want_write = on;
        let want = if on { Want::ReadWrite } else { Want::Read };
        trace!("epoll_ctl(MOD, fd {}, writable {})", conn.fd(), on);
        match self {
            Poller::Mio { poll, .. } => {
                let fd = conn.stream.as_raw_fd();
                poll.registry()
                    .reregister(&mut SourceFd(&fd), token, mio_interest(want))
            }
            Poller::Raw { epoll, .. } => {
                let mut event = EpollEvent::new(Poller::raw_flags(want), token.0 as u64);
                Ok(epoll.modify(conn.stream.as_fd(), &mut event)?)
            }
        }
    }

    /// Block until something is ready or `timeout` passes; fill `ready`.
    /// At most 1024 events come back per call; if more sockets are ready,
    /// the next call returns the rest, so nothing is lost.
    fn wait(&mut self, timeout: Option<Duration>, ready: &mut Vec<Ready>) -> io::Result<()> {
        ready.clear();
        let result = match self {
            // A hang-up or an error counts as readable: the next read
            // reports it (as 0 bytes, or as the error), so `drive` sees it.
            Poller::Mio { poll, events } => poll.poll(events, timeout).map(|()| {
                ready.extend(events.iter().map(|event| Ready {
                    token: event.token(),
                    readable: event.is_readable() || event.is_read_closed() || event.is_error(),
                    writable: event.is_writable() || event.is_write_closed(),
                }));
            }),
            Poller::Raw { epoll, events } => {
                // epoll_wait(2): int epoll_wait(int epfd, struct epoll_event *evs, int max, int ms);
                // Round up: a 0.4 ms wait rounded down to 0 would spin.
                let ms = timeout.map_or(-1, |t| {
                    t.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
                });
                match epoll.wait(
                    events,
                    EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE),
                ) {
                    Ok(n) => {
                        ready.extend(events[..n].iter().map(|event| {
                            let flags = event.events();
                            // EPOLLHUP and EPOLLERR are reported even unasked.
                            let hangup = EpollFlags::EPOLLHUP
                                | EpollFlags::EPOLLERR
                                | EpollFlags::EPOLLRDHUP;
                            Ready {
                                token: Token(event.data() as usize),
                                readable: flags.intersects(EpollFlags::EPOLLIN | hangup),
                                writable: flags.contains(EpollFlags::EPOLLOUT),
                            }
                        }));
                        Ok(())
                    }
                    Err(errno) => Err(errno.into()),
                }
            }
        };
        // EINTR: a signal arrived during the wait (only a debugger or
        // strace attaching does that here; ours wait on their own thread).
        match result {
            Err(err) if interrupted(&err) => {} // just look again
            other => other?,
        }
        if ladder::trace::enabled() {
            trace_ready(timeout, ready);
        }
        Ok(())
    }

    /// A handle another thread can use to wake the loop.
    fn waker(&self, token: Token) -> io::Result<Arc<Waker>> {
        Ok(Arc::new(match self {
            Poller::Mio { poll, .. } => Waker::Mio(mio::Waker::new(poll.registry(), token)?),
            Poller::Raw { epoll, .. } => {
                // What mio::Waker is on Linux: an eventfd, a counter the
                // kernel reports readable once someone adds to it.
                let eventfd = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
                let fd = eventfd.as_fd().as_raw_fd();
                trace!("eventfd(0, EFD_NONBLOCK|EFD_CLOEXEC) -> fd {fd}");
                trace!("epoll_ctl(ADD, fd {fd}, token {})", token.0);
                let event =
                    EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, token.0 as u64);
                epoll.add(eventfd.as_fd(), event)?;
                Waker::Raw(eventfd)
            }
        }))
    }
}

fn mio_interest(want: Want) -> Interest {
    match want {
        Want::Read => Interest::READABLE,
        Want::ReadWrite => Interest::READABLE | Interest::WRITABLE,
    }
}

/// The waker handed to the signal thread.
enum Waker {
    Mio(mio::Waker),
    Raw(EventFd),
}

impl Waker {
    fn wake(&self) {
        let _ = match self {
            Waker::Mio(waker) => waker.wake(),
            Waker::Raw(eventfd) => eventfd.write(1).map(drop).map_err(io::Error::from),
        };
    }
}

/// `epoll_wait(timeout 4999 ms) -> 2 ready: listener readable, token 4 writable`
fn trace_ready(timeout: Option<Duration>, ready: &[Ready]) {
    let timeout = timeout.map_or("none".to_string(), |t| format!("{} ms", t.as_millis()));
    let what: Vec<String> = ready
        .iter()
        .map(|r| {
            let name = match r.token {
                LISTENER => "listener".to_string(),
                WAKER => "waker".to_string(),
                Token(n) => format!("token {n}"),
            };
            match (r.readable, r.writable) {
                (true, true) => format!("{name} readable+writable"),
                (false, true) => format!("{name} writable"),
                _ => format!("{name} readable"),
            }
        })
        .collect();
    trace!(
        "epoll_wait(timeout {timeout}) -> {} ready: {}",
        ready.len(),
        what.join(", ")
    );
}

fn would_block(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::WouldBlock
}

fn interrupted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::Interrupted
}

fn aborted(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::ConnectionAborted
}

/// EMFILE: this process has used up its fd limit; ENFILE: the whole
/// system has; ENOBUFS/ENOMEM: the kernel is short of socket memory.
fn out_of_fds(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
