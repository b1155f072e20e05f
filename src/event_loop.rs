//! An HTTP server on one thread: accept, dispatch readiness to connections,
//! keep their timers, and take answers that other threads finish later.
//!
//! Introduced in lesson 05 (`lessons/05-epoll.md`); rung 6 runs its WSGI
//! app on it. Read it after [`crate::readiness`], and before
//! [`crate::http_connection`], the state machine each connection is.
//!
//! A rung supplies a [`Handler`], called on the loop's thread for every
//! complete request (head and body). It answers at once with an
//! [`http::Response`](crate::http::Response) ([`Answer::Now`]), or says
//! [`Answer::Later`] and finishes the work elsewhere: another thread then
//! delivers the response through a [`Remote`], whole or as a stream of
//! pieces with backpressure ([`Remote::stream`]). The loop thread itself
//! never waits for anyone but `epoll_wait`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::{Duration, Instant};

use crate::http::{Request, Response};
use crate::http_connection::{BodySpill, Connection, Progress, RequestBody, Settings};
use crate::readiness::{Backend, Event, Interest, Poll, Token, Waker};
use crate::trace;

/// The listening socket's token. Tokens are how the kernel tells us *which*
/// socket is ready: we pick a number when we register an fd, and every
/// event for that fd comes back carrying it (epoll calls it `data`).
pub const LISTENER: Token = Token(0);
/// The waker's token: another thread has a message for the loop.
pub const WAKER: Token = Token(1);
/// Connection `slot` in the table gets token `slot + FIRST_CONNECTION`.
const FIRST_CONNECTION: usize = 2;
/// One `read(2)` takes at most this much, into one buffer shared by all.
const READ_CHUNK: usize = 64 * 1024;
/// After `accept` fails with EMFILE, wait this long before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Pieces of a streamed body that may wait between their producer and the
/// socket; past that, the producer's `send` blocks (backpressure).
pub const STREAM_DEPTH: usize = 4;

/// How the loop runs: the readiness back end, the connection cap, and what
/// each connection is allowed.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub backend: Backend,
    /// Over this many open connections, newcomers get a 503.
    pub max_connections: usize,
    pub http: Settings,
}

/// What a rung does with a complete request. A handler implements
/// [`handle`](Self::handle) (rungs 5 to 7) or
/// [`handle_with`](Self::handle_with) (rung 8); the loop calls
/// `handle_with`, whose default calls `handle`.
pub trait Handler {
    /// Called on the loop's thread, so it must be quick: while it runs, no
    /// other client is read, written or accepted. Slow work answers
    /// [`Answer::Later`] and finishes on another thread. The default, for
    /// a handler that implements `handle_with` instead, is never called.
    fn handle(&mut self, request: &Request, body: Vec<u8>, client: Client) -> Answer {
        let _ = (request, body, client);
        Answer::Now(Response::error(500, "this handler answers nothing"))
    }

    /// The same, with the loop's [`Context`] in hand, and the body as it
    /// is kept: in memory, or in a file if it spilled (only when the rung
    /// asked for it with [`EventLoop::spill_bodies`]). A handler that owns
    /// sockets of its own on this loop (rung 8's upstreams) implements this
    /// one; the default reads the body into memory and calls `handle`.
    fn handle_with(
        &mut self,
        request: &Request,
        body: RequestBody,
        client: Client,
        _cx: &mut Context<'_>,
    ) -> Answer {
        match body.into_bytes() {
            Ok(body) => self.handle(request, body, client),
            Err(err) => Answer::Now(Response::error(500, &format!("the body is lost: {err}"))),
        }
    }

    /// A socket the handler registered with a token from [`HANDLER_TOKENS`]
    /// on is ready. Runs on the loop's thread, like `handle`.
    fn on_socket(&mut self, _token: Token, _cx: &mut Context<'_>) {}

    /// A time asked for with [`Context::wake_at`] has come (perhaps along
    /// with later ones: the handler checks its own deadlines).
    fn on_timer(&mut self, _now: Instant, _cx: &mut Context<'_>) {}

    /// Called once per turn of the loop, and at least every
    /// [`EventLoop::tick_every`] when that is set: a worker's heartbeat
    /// (lesson 07), which stops when the loop's thread is stuck.
    fn tick(&mut self) {}
}

/// Tokens from this one up belong to the handler: the loop passes their
/// events to [`Handler::on_socket`] instead of looking for a client.
pub const HANDLER_TOKENS: usize = usize::MAX / 2;

/// What a handler may do to the loop from the loop's own thread: register
/// sockets on the same poll, answer a waiting client, ask for a wake-up.
/// No mailbox and no waker: it is the loop's thread already.
pub struct Context<'a> {
    poll: &'a Poll,
    answers: &'a mut Vec<(Ticket, Response)>,
    wake_ups: &'a mut BinaryHeap<Reverse<Instant>>,
}

impl Context<'_> {
    /// The loop's poll, to register the handler's own sockets on (with
    /// tokens from [`HANDLER_TOKENS`] up) and to deregister them.
    pub fn poll(&self) -> &Poll {
        self.poll
    }

    /// Answer the request behind `ticket`, which the handler left for
    /// later. The loop writes it as soon as the handler returns; if that
    /// client has gone meanwhile, the answer is dropped.
    pub fn respond(&mut self, ticket: Ticket, response: Response) {
        self.answers.push((ticket, response));
    }

    /// Call [`Handler::on_timer`] once `when` has come.
    pub fn wake_at(&mut self, when: Instant) {
        self.wake_ups.push(Reverse(when));
    }
}

/// A handler's answer.
pub enum Answer {
    /// Here is the response: bytes, a file, or nothing.
    Now(Response),
    /// Someone answers later through [`Remote::respond`] or [`Remote::stream`]
    /// with the client's ticket; the connection waits, reading nothing more.
    Later,
}

/// Who sent a request, and the ticket to answer it with later.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub peer: SocketAddr,
    pub ticket: Ticket,
}

/// Names one request on one connection. An answer whose connection has
/// closed meanwhile finds a different id and is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    token: Token,
    id: u64,
}

/// `connection 3 (token 5)`, for `--trace`.
impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection {} (token {})", self.id, self.token.0)
    }
}

/// The whole server. One thread owns it, so nothing in it is locked;
/// other threads reach it only through a [`Remote`].
pub struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    config: Config,
    /// The connection table, indexed by slot; `free` lists empty slots, so
    /// tokens stay small and are reused (a slab, without the crate).
    connections: Vec<Option<Slot>>,
    free: Vec<usize>,
    live: usize,
    next_id: u64,
    /// Every deadline in one min-heap: (when, token, connection id).
    /// Entries are never removed early; one that no longer matches its
    /// connection is skipped when it surfaces ("lazy invalidation").
    timers: BinaryHeap<Reverse<(Instant, Token, u64)>>,
    /// Accepting is paused after EMFILE until the LISTENER timer fires.
    accept_paused: bool,
    /// One read buffer for all connections: they are driven one at a time.
    scratch: Box<[u8]>,
    /// Messages from other threads; each comes with a wake-up.
    mailbox: Receiver<Message>,
    /// Our own clone: the eventfd must outlive every wake-up (see [`Waker`]).
    remote: Remote,
    /// Answers a handler gave through its [`Context`], to deliver once it
    /// has returned.
    answers: Vec<(Ticket, Response)>,
    /// Times a handler asked to be called at ([`Context::wake_at`]).
    wake_ups: BinaryHeap<Reverse<Instant>>,
    /// Wake at least this often to call [`Handler::tick`].
    tick: Option<Duration>,
    /// [`Remote::drain`] came: accept no more, end when the last connection has.
    draining: bool,
    /// Where large request bodies go ([`EventLoop::spill_bodies`]).
    spill: Option<Arc<BodySpill>>,
}

/// A connection and the time of its entry in the timer heap.
struct Slot {
    connection: Connection,
    armed: Option<Instant>,
}

impl EventLoop {
    /// Watch `listener` (made non-blocking: `accept` then says WouldBlock
    /// instead of waiting) on a new poll with its waker.
    pub fn new(listener: TcpListener, config: Config) -> io::Result<EventLoop> {
        listener.set_nonblocking(true)?;
        let poll = Poll::new(config.backend)?;
        poll.register(listener.as_fd(), LISTENER, Interest::READABLE)?;
        let (sender, mailbox) = mpsc::channel();
        let remote = Remote {
            mailbox: sender,
            waker: poll.waker(WAKER)?,
            woken: Arc::new(AtomicBool::new(false)),
        };
        Ok(EventLoop {
            poll,
            listener,
            config,
            connections: Vec::new(),
            free: Vec::new(),
            live: 0,
            next_id: 0,
            timers: BinaryHeap::new(),
            accept_paused: false,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            mailbox,
            remote,
            answers: Vec::new(),
            wake_ups: BinaryHeap::new(),
            tick: None,
            draining: false,
            spill: None,
        })
    }

    /// Keep a request body past `spill.buffer` bytes in an unlinked file,
    /// not in memory (lesson 08). Off by default: the body is a `Vec`.
    pub fn spill_bodies(&mut self, spill: BodySpill) {
        self.spill = Some(Arc::new(spill));
    }

    /// Call [`Handler::tick`] at least this often, even with nothing to do.
    pub fn tick_every(&mut self, every: Duration) {
        self.tick = Some(every);
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle for other threads: answer later, stream, stop.
    pub fn remote(&self) -> Remote {
        self.remote.clone()
    }

    // ANCHOR: event_loop
    /// The event loop: wait until something is ready or a deadline passes,
    /// handle what is ready, expire what is late, until [`Remote::stop`].
    /// Nothing in it ever blocks except the wait itself: the whole idea.
    pub fn run<H: Handler>(&mut self, handler: &mut H) -> io::Result<()> {
        // Reused on every turn: the loop allocates nothing to wait.
        let mut events = Vec::with_capacity(1024);
        loop {
            let timeout = self.next_timeout();
            self.poll.poll(&mut events, timeout)?;
            trace_events(timeout, &events);
            for event in &events {
                match event.token {
                    LISTENER => self.accept_all(),
                    WAKER => {
                        if !self.read_mailbox(handler) {
                            return Ok(());
                        }
                    }
                    token if token.0 >= HANDLER_TOKENS => self.on_handler_socket(token, handler),
                    token => self.on_ready(token, handler),
                }
            }
            self.expire();
            self.handler_timers(handler);
            handler.tick();
            if self.draining && self.live == 0 {
                return Ok(());
            }
        }
    }
    // ANCHOR_END: event_loop

    // ANCHOR: accept_all
    /// The listener is readable: accept until WouldBlock. Edge-triggered
    /// readiness says "something changed", once; stop early and the clients
    /// still queued in the backlog would wait for the next newcomer.
    fn accept_all(&mut self) {
        while !self.accept_paused {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                // ECONNABORTED: that client gave up while queued; EINTR: a
                // signal. Neither says anything about the next one.
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) => {}
                Err(err) => {
                    // EMFILE/ENFILE: the connection stays queued in the kernel
                    // and the listener stays readable. Retrying now would spin
                    // at 100% CPU; so stop accepting, and look again later.
                    // Any other failure is treated the same way: a pause
                    // costs little, a spin costs a core.
                    if !out_of_fds(&err) {
                        eprintln!("accept: {err}");
                    }
                    trace!("accept -> {err}: pausing accept for {ACCEPT_PAUSE:?}");
                    self.accept_paused = true;
                    let when = Instant::now() + ACCEPT_PAUSE;
                    self.timers.push(Reverse((when, LISTENER, 0)));
                }
            }
        }
    }
    // ANCHOR_END: accept_all

    /// Give an accepted socket a slot and a token, or refuse it politely.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let fd = stream.as_raw_fd();
        let listener = self.listener.as_raw_fd();
        trace!("accept({listener}) -> fd {fd} from {peer}");
        if self.live >= self.config.max_connections {
            trace!("fd {fd}: over --max-connections: 503, close");
            return refuse(stream, &self.config.http);
        }
        // std's accept hands back a blocking socket; one blocking read
        // would freeze every client, so switch it to non-blocking first.
        // TCP_NODELAY: send each response at once instead of letting
        // Nagle's algorithm wait for more bytes to batch with it.
        if let Err(err) = stream
            .set_nonblocking(true)
            .and_then(|()| stream.set_nodelay(true))
        {
            return trace!("setup of fd {fd} failed: {err}");
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.connections.push(None);
            self.connections.len() - 1
        });
        let token = Token(slot + FIRST_CONNECTION);
        // READABLE only: WRITABLE is added if and when a write cannot finish.
        // If the request already arrived, the registration itself reports
        // the socket readable at the next wait: no bytes are missed.
        if let Err(err) = self
            .poll
            .register(stream.as_fd(), token, Interest::READABLE)
        {
            self.free.push(slot);
            return trace!("epoll_ctl(ADD, fd {fd}) -> {err}");
        }
        self.next_id += 1;
        let mut connection = Connection::new(stream, peer, self.next_id, &self.config.http);
        if let Some(spill) = &self.spill {
            connection.spill_bodies(spill.clone());
        }
        let armed = None;
        self.connections[slot] = Some(Slot { connection, armed });
        self.live += 1;
        self.arm(token);
    }

    // ANCHOR: on_ready
    /// A connection's socket is ready (to read, to write, or it hung up: we
    /// do not care which; `drive` simply does all it can). The event may
    /// even be stale, its connection closed earlier in this batch and the
    /// slot taken by a new one: harmless, since `drive` assumes nothing is
    /// ready; it tries, and stops at WouldBlock.
    fn on_ready<H: Handler>(&mut self, token: Token, handler: &mut H) {
        let slot = token.0 - FIRST_CONNECTION;
        let Some(Some(Slot { connection, .. })) = self.connections.get_mut(slot) else {
            return; // closed earlier in this same batch of events
        };
        let settings = &self.config.http;
        let outcome = loop {
            match connection.drive(token, &self.poll, &mut self.scratch, settings) {
                Ok(Progress::Wait) => break None,
                Ok(Progress::Close(why)) => break Some(why.to_string()),
                Err(err) => break Some(err.to_string()),
                Ok(Progress::Request { request, body }) => {
                    let ticket = Ticket {
                        token,
                        id: connection.id(),
                    };
                    let client = Client {
                        peer: connection.peer(),
                        ticket,
                    };
                    let mut cx = Context {
                        poll: &self.poll,
                        answers: &mut self.answers,
                        wake_ups: &mut self.wake_ups,
                    };
                    match handler.handle_with(&request, body, client, &mut cx) {
                        Answer::Now(response) => connection.respond(&request, response, settings),
                        Answer::Later => connection.wait_for(request, settings),
                    }
                }
            }
        };
        match outcome {
            None => self.arm(token),
            Some(why) => self.close(slot, &why),
        }
    }
    // ANCHOR_END: on_ready

    /// One of the handler's own sockets is ready: its business. Then deliver
    /// the answers it gave meanwhile.
    fn on_handler_socket<H: Handler>(&mut self, token: Token, handler: &mut H) {
        let mut cx = Context {
            poll: &self.poll,
            answers: &mut self.answers,
            wake_ups: &mut self.wake_ups,
        };
        handler.on_socket(token, &mut cx);
        self.deliver_answers(handler);
    }

    /// Call the handler for its wake-ups that are due (once, however many).
    fn handler_timers<H: Handler>(&mut self, handler: &mut H) {
        let now = Instant::now();
        let mut due = false;
        while self
            .wake_ups
            .peek()
            .is_some_and(|Reverse(when)| *when <= now)
        {
            self.wake_ups.pop();
            due = true;
        }
        if due {
            let mut cx = Context {
                poll: &self.poll,
                answers: &mut self.answers,
                wake_ups: &mut self.wake_ups,
            };
            handler.on_timer(now, &mut cx);
        }
        self.deliver_answers(handler);
    }

    /// Hand each answer a handler gave through its [`Context`] to its
    /// connection, and write it at once, as the mailbox does for answers
    /// from other threads. Driving a connection may run the handler again
    /// (a pipelined request), which may answer more: hence the loop.
    fn deliver_answers<H: Handler>(&mut self, handler: &mut H) {
        while let Some((ticket, response)) = self.answers.pop() {
            let Some(connection) = find(&mut self.connections, ticket) else {
                continue; // its client left meanwhile
            };
            if connection.deliver(response, None, &self.config.http) {
                self.on_ready(ticket.token, handler);
            }
        }
    }

    // ANCHOR: mailbox
    /// The waker fired: act on every message waiting. False means stop.
    fn read_mailbox<H: Handler>(&mut self, handler: &mut H) -> bool {
        // From here on, a new message needs a new wake-up (see `Remote::send`).
        self.remote.woken.swap(false, Ordering::AcqRel);
        while let Ok(message) = self.mailbox.try_recv() {
            let ticket = match message {
                Message::Stop => return false,
                Message::Drain => {
                    self.drain();
                    continue;
                }
                Message::More(ticket) => ticket,
                Message::Respond(ticket, response, chunks) => {
                    let Some(connection) = find(&mut self.connections, ticket) else {
                        continue; // its client left; dropping `chunks` tells the producer
                    };
                    if !connection.deliver(response, chunks, &self.config.http) {
                        continue;
                    }
                    ticket
                }
            };
            if find(&mut self.connections, ticket).is_some() {
                self.on_ready(ticket.token, handler); // write what came
            }
        }
        true
    }
    // ANCHOR_END: mailbox

    // ANCHOR: timers
    /// Make sure the heap holds an entry no later than the connection's
    /// deadline. A deadline that moved later pushes nothing: the old entry
    /// fires early, sees the later deadline, and re-arms (see `expire`).
    fn arm(&mut self, token: Token) {
        let Some(Some(slot)) = self.connections.get_mut(token.0 - FIRST_CONNECTION) else {
            return;
        };
        let Some(deadline) = slot.connection.deadline() else {
            return; // no timeout applies now
        };
        if slot.armed.is_none_or(|armed| deadline < armed) {
            let id = slot.connection.id();
            self.timers.push(Reverse((deadline, token, id)));
            slot.armed = Some(deadline);
        }
    }

    /// Pop every deadline that has passed and act on the ones still valid.
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((when, token, id))) = self.timers.peek() {
            if when > now {
                break;
            }
            self.timers.pop();
            if token == LISTENER && self.draining {
                continue; // a pause that ends after a drain began: stay closed
            }
            if token == LISTENER {
                trace!("timer: accept pause over, accepting again");
                self.accept_paused = false;
                self.accept_all();
                continue;
            }
            let index = token.0 - FIRST_CONNECTION;
            let Some(Some(slot)) = self.connections.get_mut(index) else {
                continue; // slot empty: its connection is long gone
            };
            if slot.connection.id() != id || slot.armed != Some(when) {
                continue; // stale: another connection, or a superseded entry
            }
            slot.armed = None;
            match slot.connection.deadline() {
                // Closed without a word, as http.server and nginx do. (A
                // 408 is allowed, but a client that sent nothing is rarely
                // listening.) A late handler's client does listen: 504.
                Some(deadline) if deadline <= now => {
                    let why = format!("timeout: {}", slot.connection.describe());
                    self.time_out(index, &why);
                }
                Some(_) => self.arm(token), // moved later: push the real one
                None => {}
            }
        }
    }
    // ANCHOR_END: timers

    /// A connection's deadline has passed: close it, unless a handler owes
    /// its client an answer (`answer_timeout`); then answer 504 for the
    /// handler, and write it now, as far as the socket takes it.
    fn time_out(&mut self, index: usize, why: &str) {
        let token = Token(index + FIRST_CONNECTION);
        let Some(Some(Slot { connection, .. })) = self.connections.get_mut(index) else {
            return;
        };
        let settings = &self.config.http;
        if !connection.answer_late(settings) {
            return self.close(index, why);
        }
        trace!("fd {}: {why}: 504", connection.fd());
        // Closing now, the connection reads no more requests: no handler.
        match connection.drive(token, &self.poll, &mut self.scratch, settings) {
            Ok(Progress::Wait) => self.arm(token),
            Ok(Progress::Close(why)) => self.close(index, why),
            Ok(Progress::Request { .. }) => self.close(index, "a request after a 504"),
            Err(err) => self.close(index, &err.to_string()),
        }
    }

    /// The poll timeout: time until the earliest deadline, or forever
    /// (capped by the tick). The earliest entry may be stale; then we wake
    /// up for nothing once, which is the price of never removing entries
    /// early.
    fn next_timeout(&self) -> Option<Duration> {
        let ours = self.timers.peek().map(|Reverse((when, _, _))| *when);
        let handlers = self.wake_ups.peek().map(|Reverse(when)| *when);
        let until = match (ours, handlers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|when| when.saturating_duration_since(Instant::now()));
        match (until, self.tick) {
            (Some(until), Some(tick)) => Some(until.min(tick)),
            (until, tick) => until.or(tick),
        }
    }

    /// A graceful stop: stop accepting (the listening socket stays open,
    /// for other processes sharing it), answer what is in progress with
    /// `Connection: close`, and let `run` return once no connection is left.
    fn drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        let _ = self.poll.deregister(self.listener.as_fd());
        self.accept_paused = true;
        trace!(
            "drain: no more accepts; {} connections to finish",
            self.live
        );
        for slot in self.connections.iter_mut().flatten() {
            slot.connection.last_call();
        }
    }

    /// Close a connection and free its slot. close(2) also removes the fd
    /// from the epoll interest list, so no `epoll_ctl(DEL)` is needed.
    fn close(&mut self, slot: usize, why: &str) {
        if let Some(Slot { connection, .. }) = self.connections[slot].take() {
            let token = slot + FIRST_CONNECTION;
            trace!("close(fd {}) token {token}: {why}", connection.fd());
            self.free.push(slot);
            self.live -= 1;
        }
    }
}

/// The connection a ticket names, if it is still the same one.
fn find(connections: &mut [Option<Slot>], ticket: Ticket) -> Option<&mut Connection> {
    let slot = ticket.token.0.checked_sub(FIRST_CONNECTION)?;
    let Slot { connection, .. } = connections.get_mut(slot)?.as_mut()?;
    (connection.id() == ticket.id).then_some(connection)
}

/// Refuse a connection over the cap: one write of a 503 (a fresh socket's
/// send buffer is empty, so it fits), read what the client already sent so
/// closing does not turn into a reset, then close.
fn refuse(stream: TcpStream, settings: &Settings) {
    let _ = stream.set_nonblocking(true);
    let mut response = Response::error(503, "too many connections, try again later");
    let (_, bytes) = response.render(None, &settings.server, false);
    let _ = (&stream).write(&bytes);
    let _ = stream.shutdown(Shutdown::Write);
    let _ = (&stream).read(&mut [0; 4096]);
}

/// EMFILE: this process has used up its fd limit; ENFILE: the whole
/// system has; ENOBUFS/ENOMEM: the kernel is short of socket memory.
fn out_of_fds(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// `epoll_wait(timeout 4999 ms) -> 2 ready: listener readable, token 4 writable`
fn trace_events(timeout: Option<Duration>, events: &[Event]) {
    if !crate::trace::enabled() {
        return;
    }
    let timeout = timeout.map_or("none".to_string(), |t| format!("{} ms", t.as_millis()));
    let what: Vec<String> = events
        .iter()
        .map(|event| {
            let name = match event.token {
                LISTENER => "listener".to_string(),
                WAKER => "waker".to_string(),
                Token(n) if n >= HANDLER_TOKENS => {
                    format!("handler's token {}", n - HANDLER_TOKENS)
                }
                Token(n) => format!("token {n}"),
            };
            match (event.readable, event.writable) {
                (true, true) => format!("{name} readable+writable"),
                (false, true) => format!("{name} writable"),
                _ => format!("{name} readable"),
            }
        })
        .collect();
    let n = events.len();
    trace!(
        "epoll_wait(timeout {timeout}) -> {n} ready: {}",
        what.join(", ")
    );
}

/// What another thread tells the loop.
enum Message {
    /// The answer to a request the handler left for later; with the
    /// receiving end of its body's pieces when the body is a stream.
    Respond(Ticket, Response, Option<Receiver<Vec<u8>>>),
    /// A streamed body has a new piece (or its producer has gone).
    More(Ticket),
    Stop,
    Drain,
}

// ANCHOR: remote
/// A handle on the loop for other threads (it is `Send + Clone`): every
/// message goes into the loop's mailbox, then the waker makes the loop's
/// `epoll_wait` return so it reads the mailbox at once.
#[derive(Clone)]
pub struct Remote {
    mailbox: Sender<Message>,
    waker: Waker,
    /// A wake-up is on its way, and the loop has not started reading the
    /// mailbox yet: it will find this message too, no need to wake it again.
    woken: Arc<AtomicBool>,
}

impl Remote {
    /// Answer the request behind `ticket` with a whole response: bytes, a
    /// file (sent as the socket takes it), or nothing.
    pub fn respond(&self, ticket: Ticket, response: Response) {
        self.send(Message::Respond(ticket, response, None));
    }

    /// Answer with `response` (its body `Body::Stream`) and produce the body
    /// through the returned sender, from a thread other than the loop's.
    pub fn stream(&self, ticket: Ticket, response: Response) -> BodySender {
        // A bounded queue: the producer blocks once STREAM_DEPTH pieces wait.
        let (chunks, receiver) = mpsc::sync_channel(STREAM_DEPTH);
        self.send(Message::Respond(ticket, response, Some(receiver)));
        BodySender {
            chunks: Some(chunks),
            ticket,
            remote: self.clone(),
        }
    }

    /// Make `run` return (Ctrl-C, SIGTERM).
    pub fn stop(&self) {
        self.send(Message::Stop);
    }

    /// Make `run` return once every connection has finished, accepting no
    /// new ones meanwhile (a graceful stop: lesson 07's SIGTERM).
    pub fn drain(&self) {
        self.send(Message::Drain);
    }

    fn send(&self, message: Message) {
        // The loop gone means nobody is left to tell. One wake-up (a write(2)
        // to the eventfd) serves every message sent before the loop reads.
        if self.mailbox.send(message).is_ok() && !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

/// The producing end of a streamed body. Dropping it without
/// [`finish`](Self::finish) aborts the response: the loop closes the
/// connection, so the client sees the body cut short.
pub struct BodySender {
    chunks: Option<SyncSender<Vec<u8>>>,
    ticket: Ticket,
    remote: Remote,
}

impl BodySender {
    /// Send one piece of the body. Blocks while `STREAM_DEPTH` pieces wait
    /// for the socket, so a producer never runs ahead of a slow client. An
    /// error means nobody will read the rest (the client left, or the
    /// request was a HEAD): stop producing, and clean up.
    pub fn send(&self, piece: Vec<u8>) -> io::Result<()> {
        if piece.is_empty() {
            return Ok(()); // an empty piece would end the body
        }
        self.push(piece)
    }

    /// The body is complete.
    pub fn finish(self) -> io::Result<()> {
        self.push(Vec::new())
    }

    fn push(&self, piece: Vec<u8>) -> io::Result<()> {
        let chunks = self.chunks.as_ref().expect("only Drop takes it");
        let gone = |_| io::Error::new(io::ErrorKind::BrokenPipe, "the client is gone");
        chunks.send(piece).map_err(gone)?;
        self.remote.send(Message::More(self.ticket));
        Ok(())
    }
}

impl Drop for BodySender {
    fn drop(&mut self) {
        // Close our end first, then wake the loop, so it sees the end (or
        // the abort) instead of an empty queue that never fills again.
        drop(self.chunks.take());
        self.remote.send(Message::More(self.ticket));
    }
}
// ANCHOR_END: remote
