//! One HTTP/1.1 connection on an event loop: where it is in the protocol,
//! and everything it does when its socket is ready.
//!
//! Introduced in lesson 05 (`lessons/05-epoll.md`), after [`crate::event_loop`],
//! which owns the connections and drives them.
//!
//! A thread per connection keeps "where am I?" on its stack: reading the
//! head is simply where the code is. One thread for thousands of
//! connections keeps it in a value instead, a `State`, and every readiness
//! event runs [`Connection::drive`], which does all the connection allows
//! (answer, write, read) until the socket says `WouldBlock`. Parsing and
//! framing are `ladder::http`'s (lesson 02); this module only moves bytes
//! and keeps the state.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::mem::{discriminant, replace};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::sendfile::sendfile;

use crate::http::{
    BodyDecoder, BodyFraming, Framing, LAST_CHUNK, Limits, Parsed, Rejection, Request, Response,
    ServerInfo, parse_request, write_chunk,
};
use crate::readiness::{Interest, Poll, Token};
use crate::{log, trace};

/// Answers to pipelined requests are queued until this much output waits;
/// past it we write first, and read no more from a client that does not
/// read us (backpressure). Also the most a body source is read ahead.
const OUT_LIMIT: usize = 64 * 1024;
/// How long we keep reading (and discarding) after a `Connection: close`
/// answer, so the client reads our answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// An idle connection keeps buffers up to this size for its next request;
/// bigger ones (a large upload, a streamed body) are given back.
const KEEP_BUFFER: usize = 4096;

/// What every connection of one server is allowed, and says about itself.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How big a request may be: 414, 431, 413 past these.
    pub limits: Limits,
    /// Time to send a whole request head, from its first byte. Not extended
    /// by a trickle of bytes (slowloris).
    pub header_timeout: Duration,
    /// Time a client may pause between two pieces of a request body; each
    /// piece restarts it (nginx's `client_body_timeout`), since an upload
    /// may rightly take longer than any fixed limit.
    pub body_timeout: Duration,
    /// Time a kept-alive connection may sit idle, and a client that stopped
    /// reading our answer may take between two writes.
    pub idle_timeout: Duration,
    /// The protocol and `Server` header of every response.
    pub server: ServerInfo,
    /// Time a handler that answered `Later` has to deliver its answer;
    /// past it the client gets a 504 and the connection closes (rung 6's
    /// `--timeout`). `None`: no limit.
    pub answer_timeout: Option<Duration>,
    /// Write the access-log line of an answer delivered later when it
    /// arrives (rung 5). Off when whoever answers writes its own, once the
    /// body has ended and its size is known (rung 6).
    pub log_later: bool,
}

// ANCHOR: state
/// Where a connection is in the protocol. Each state implies its timeout.
enum State {
    /// Between two requests on a kept-alive connection: `idle_timeout`.
    Idle,
    /// A request head is arriving (a new connection starts here):
    /// `header_timeout`, counted from the first byte.
    Head,
    /// The head is in and a body follows: decode it into memory, then the
    /// request is complete; `body_timeout` between two pieces. Boxed: rare,
    /// and every idle connection would otherwise carry room for it.
    Body(Box<Reading>),
    /// The request is with a handler that answers later (from another
    /// thread, through the event loop's `Remote`): `answer_timeout`, if any.
    Waiting(Box<Request>),
    /// The head is queued; the body follows from a file or a stream.
    Sending { body: Source, keep_alive: bool },
    /// The last answer is queued: close once it is written.
    Closing,
    /// Half-closed after the last answer; reading and discarding until the
    /// client closes too, for at most `LINGER`.
    Linger,
}
// ANCHOR_END: state

/// A request whose body is still arriving.
struct Reading {
    request: Request,
    decoder: BodyDecoder,
    body: Vec<u8>,
    /// Where the body goes past [`BodySpill::buffer`] bytes, and how much
    /// of it is there.
    file: Option<File>,
    spilled: u64,
    failed: Option<io::Error>,
}

/// A request body, whole: in memory, or in a temporary file when it was
/// larger than [`BodySpill::buffer`] (lesson 08).
#[derive(Debug)]
pub enum RequestBody {
    Memory(Vec<u8>),
    /// An unlinked file holding `len` bytes, its offset anywhere.
    File {
        file: File,
        len: u64,
    },
}

impl RequestBody {
    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Memory(bytes) => bytes.len() as u64,
            RequestBody::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body as bytes, read back from its file if it spilled: for a
    /// handler that wants it in memory anyway.
    pub fn into_bytes(self) -> io::Result<Vec<u8>> {
        match self {
            RequestBody::Memory(bytes) => Ok(bytes),
            RequestBody::File { mut file, .. } => {
                let mut bytes = Vec::new();
                io::Seek::rewind(&mut file)?;
                file.read_to_end(&mut bytes)?;
                Ok(bytes)
            }
        }
    }
}

/// Request bodies past `buffer` bytes go to an unlinked file in `dir`
/// instead of memory (nginx's `client_body_buffer_size` and
/// `client_body_temp_path`). Off unless a rung asks for it
/// ([`EventLoop::spill_bodies`](crate::event_loop::EventLoop::spill_bodies)).
#[derive(Debug, Clone)]
pub struct BodySpill {
    pub buffer: usize,
    pub dir: PathBuf,
}

impl Reading {
    /// Move the body from memory to its file once it is over the buffer.
    /// A failure is kept for [`into_parts`](Self::into_parts) to answer.
    fn spill(&mut self, spill: Option<&BodySpill>) {
        let Some(spill) = spill.filter(|s| self.body.len() > s.buffer) else {
            return;
        };
        if self.failed.is_some() {
            return self.body.clear(); // 500 at the end: keep nothing meanwhile
        }
        let file = match self.file.take() {
            Some(file) => Ok(file),
            None => temporary_file(&spill.dir, "client-body"),
        };
        // A blocking write on the loop's thread: the page cache takes it at
        // memory speed (nginx's way too, unless told to use threads).
        match file.and_then(|mut file| file.write_all(&self.body).map(|()| file)) {
            Ok(file) => self.file = Some(file),
            Err(err) => self.failed = Some(err),
        }
        self.spilled += self.body.len() as u64;
        self.body.clear();
    }

    /// The request and its whole body, from wherever it is; or the answer
    /// to give if it could not be kept, with the request line.
    fn into_parts(
        mut self,
        spill: Option<&BodySpill>,
    ) -> Result<(Request, RequestBody), (Rejection, String)> {
        self.spill(spill);
        let kept = match (self.failed.take(), self.file.take()) {
            (Some(err), _) => Err(err),
            (None, None) => Ok(RequestBody::Memory(std::mem::take(&mut self.body))),
            (None, Some(mut file)) => file.write_all(&self.body).map(|()| {
                let len = self.spilled + self.body.len() as u64;
                RequestBody::File { file, len }
            }),
        };
        match kept {
            Ok(body) => Ok((self.request, body)),
            Err(err) => {
                trace!(
                    "the body of {} could not be kept: {err}",
                    self.request.request_line()
                );
                let rejection = Rejection::new(500, "the request body could not be kept");
                Err((rejection, self.request.request_line()))
            }
        }
    }
}

/// A file nobody else can open: created in `dir`, then unlinked at once;
/// its blocks are freed when the last descriptor closes, even on a crash.
pub fn temporary_file(dir: &Path, what: &str) -> io::Result<File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{what}-{}-{n}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// Where the rest of a response body comes from.
enum Source {
    /// `left` more bytes of a file from `offset`, sent by sendfile(2): the
    /// kernel copies them to the socket, they never enter our memory.
    File {
        file: File,
        offset: libc::off_t,
        left: u64,
    },
    /// Pieces sent by another thread; an empty piece ends the body.
    Stream {
        chunks: Receiver<Vec<u8>>,
        chunked: bool,
        /// Bytes still allowed by the Content-Length, if one was announced.
        left: Option<u64>,
    },
}

/// What [`Connection::drive`] stopped for.
pub enum Progress {
    /// Nothing more to do until the next event (or a delivery).
    Wait,
    /// A whole request, body included. The caller answers it with
    /// [`Connection::respond`] or hands it on with [`Connection::wait_for`],
    /// then drives again.
    Request { request: Request, body: RequestBody },
    /// Done with this connection, for this reason (`--trace` says it).
    Close(&'static str),
}

/// One client connection: its socket, its buffers, its state, its deadline.
pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    /// Unique for the life of the process, unlike the token, which a later
    /// connection reuses: so a late answer or timer never hits a successor.
    id: u64,
    state: State,
    /// Bytes read but not yet parsed: half a head, a body, pipelined requests.
    inbuf: Vec<u8>,
    /// Bytes of answers not yet written, in request order.
    out: Vec<u8>,
    /// When this connection times out; `None` while no timeout of ours applies.
    deadline: Option<Instant>,
    /// WRITABLE is in the interest set (only while output is stuck).
    writable: bool,
    /// The client closed its side (`read` returned 0).
    peer_closed: bool,
    /// The server is draining: answer what comes, then close.
    last_call: bool,
    /// Where a large request body goes, if anywhere but memory.
    spill: Option<Arc<BodySpill>>,
}

impl Connection {
    /// A connection just accepted, waiting for its first request head.
    pub fn new(stream: TcpStream, peer: SocketAddr, id: u64, settings: &Settings) -> Connection {
        Connection {
            stream,
            peer,
            id,
            state: State::Head,
            inbuf: Vec::new(),
            out: Vec::new(),
            deadline: Some(Instant::now() + settings.header_timeout),
            writable: false,
            peer_closed: false,
            last_call: false,
            spill: None,
        }
    }

    /// Keep request bodies past `spill.buffer` bytes in a file, not memory.
    pub fn spill_bodies(&mut self, spill: Arc<BodySpill>) {
        self.spill = Some(spill);
    }

    /// The server is shutting down gracefully: the request in progress, or
    /// the next one on a kept-alive connection, is answered with
    /// `Connection: close`, so the client knows not to send another. (An
    /// idle connection is not cut at once: its client may be sending a
    /// request right now. It gets its answer, or its idle timeout.)
    pub fn last_call(&mut self) {
        self.last_call = true;
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn fd(&self) -> i32 {
        self.stream.as_raw_fd()
    }

    /// The state in words, for `--trace` and timeouts.
    pub fn describe(&self) -> &'static str {
        match self.state {
            State::Idle => "idle keep-alive",
            State::Head => "reading a request",
            State::Body(_) => "reading a body",
            State::Waiting(_) => "waiting for the handler",
            State::Sending { .. } => "sending a body",
            State::Closing => "closing after the answer",
            State::Linger => "lingering close",
        }
    }

    // ANCHOR: drive
    /// Do everything this connection allows until the socket says
    /// WouldBlock: parse buffered requests, write, read. With edge-triggered
    /// readiness, stopping before WouldBlock would leave bytes waiting with
    /// no new event to remind us of them.
    pub fn drive(
        &mut self,
        token: Token,
        poll: &Poll,
        scratch: &mut [u8],
        settings: &Settings,
    ) -> io::Result<Progress> {
        loop {
            if self.out.len() < OUT_LIMIT {
                if let Some((request, body)) = self.next_request(settings) {
                    return Ok(Progress::Request { request, body });
                }
            }
            self.fill(settings)?;
            if self.has_output() {
                if self.flush(settings)? {
                    continue; // written: the next request may be in `inbuf`
                }
                // The client is not reading fast enough: keep the rest, ask
                // to hear when there is room, and read no more from it.
                self.want_write(true, token, poll)?;
                return Ok(Progress::Wait);
            }
            self.want_write(false, token, poll)?;
            match self.state {
                State::Closing => self.linger(settings),
                // The next move is the handler's or the producer's.
                State::Waiting(_) | State::Sending { .. } => return Ok(Progress::Wait),
                _ => {}
            }
            if self.peer_closed {
                return Ok(Progress::Close(match self.state {
                    State::Linger => "answered, Connection: close",
                    _ => "client closed",
                }));
            }
            match self.read_some(scratch)? {
                // EOF: the client sends nothing more, but it may still read
                // (a half-close, as `nc -N` does): answer, then close.
                Some(0) => self.peer_closed = true,
                Some(_) if matches!(self.state, State::Linger) => self.inbuf.clear(),
                Some(_) => {}
                None => {
                    self.release_buffers();
                    return Ok(Progress::Wait); // drained: wait for the next edge
                }
            }
        }
    }
    // ANCHOR_END: drive

    // ANCHOR: next_request
    /// Take the next step of reading a request with what `inbuf` holds:
    /// a whole request (its body decoded) when there is one; `None` when
    /// more bytes are needed, or when this state reads no requests.
    fn next_request(&mut self, settings: &Settings) -> Option<(Request, RequestBody)> {
        let limits = &settings.limits;
        while !self.inbuf.is_empty() {
            if let State::Body(reading) = &mut self.state {
                let used = match reading.decoder.feed(&self.inbuf, &mut reading.body) {
                    Ok(used) => used,
                    Err(rejection) => {
                        let line = reading.request.request_line();
                        return self.reject(&rejection, Some(line), settings);
                    }
                };
                let done = reading.decoder.is_done();
                self.inbuf.drain(..used);
                self.deadline = Some(Instant::now() + settings.body_timeout); // progress
                if !done {
                    reading.spill(self.spill.as_deref()); // lesson 08: past a buffer, to a file
                    return None;
                }
                let State::Body(reading) = replace(&mut self.state, State::Head) else {
                    unreachable!("matched above")
                };
                match reading.into_parts(self.spill.as_deref()) {
                    Ok(whole) => return Some(whole),
                    Err((rejection, line)) => return self.reject(&rejection, Some(line), settings),
                }
            }
            match self.state {
                State::Idle => self.enter(State::Head, settings), // the clock starts now
                State::Head => {}
                _ => return None, // answering: the next request waits its turn
            }
            let (request, consumed) = match parse_request(&self.inbuf, limits) {
                Ok(Parsed::Complete { request, consumed }) => (request, consumed),
                Ok(Parsed::Partial) => return None, // half a head: read more
                Err(rejection) => return self.reject(&rejection, None, settings),
            };
            trace!(
                "fd {}: head complete, {consumed} of {} bytes: {}",
                self.fd(),
                self.inbuf.len(),
                request.request_line()
            );
            self.inbuf.drain(..consumed); // the rest is the body or the next request
            let framing = match request.body_framing(limits) {
                Ok(BodyFraming::Empty) => return Some((request, RequestBody::Memory(Vec::new()))),
                Ok(framing) => framing,
                Err(rejection) => {
                    let line = request.request_line();
                    return self.reject(&rejection, Some(line), settings);
                }
            };
            // RFC 9110 §10.1.1: a client that sent `Expect: 100-continue`
            // waits for this before sending the body (an HTTP/1.0 one must
            // not be told). A client that sent the body anyway needs no nudge.
            if request.version == crate::http::Version::Http11
                && request
                    .header("expect")
                    .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
                && self.inbuf.is_empty()
            {
                self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            let decoder = BodyDecoder::new(framing, limits);
            let reading = Reading {
                request,
                decoder,
                body: Vec::new(),
                file: None,
                spilled: 0,
                failed: None,
            };
            self.enter(State::Body(Box::new(reading)), settings);
        }
        None
    }
    // ANCHOR_END: next_request

    // ANCHOR: respond
    /// Queue the answer to `request`: its head as [`Response::plan`] frames
    /// it, then its body (in memory: at once; a file: as the socket takes it).
    pub fn respond(&mut self, request: &Request, response: Response, settings: &Settings) {
        if !log::quiet() {
            let size = response.body_len();
            log::access(self.peer, &request.request_line(), response.status, size);
        }
        self.queue(Some(request), response, None, settings);
    }

    /// Hand the request to someone who answers later: the connection waits,
    /// reading nothing more, until [`deliver`](Self::deliver).
    pub fn wait_for(&mut self, request: Request, settings: &Settings) {
        self.enter(State::Waiting(Box::new(request)), settings);
    }

    /// The answer to the request this connection waits for, with the
    /// receiving end of its body's pieces when the body is a stream. False
    /// if it waits for nothing (then the answer is dropped).
    pub fn deliver(
        &mut self,
        response: Response,
        chunks: Option<Receiver<Vec<u8>>>,
        settings: &Settings,
    ) -> bool {
        let State::Waiting(request) = replace(&mut self.state, State::Head) else {
            return false;
        };
        if settings.log_later && !log::quiet() {
            let size = response.body_len();
            log::access(self.peer, &request.request_line(), response.status, size);
        }
        self.queue(Some(&request), response, chunks, settings);
        true
    }

    fn queue(
        &mut self,
        request: Option<&Request>,
        response: Response,
        chunks: Option<Receiver<Vec<u8>>>,
        settings: &Settings,
    ) {
        let plan = response.plan(request, &settings.server, !self.last_call);
        response.write_head(&plan, &settings.server, &mut self.out);
        let body = match response.body {
            _ if !plan.send_body => None, // HEAD, 204, 304: dropping a stream stops its producer
            crate::http::Body::Empty => None,
            crate::http::Body::Bytes(bytes) => {
                self.out.extend_from_slice(&bytes);
                None
            }
            crate::http::Body::File { file, len } => Some(Source::File {
                file,
                offset: 0,
                left: len,
            }),
            crate::http::Body::Stream { len } => match chunks {
                Some(chunks) => Some(Source::Stream {
                    chunks,
                    chunked: plan.framing == Framing::Chunked,
                    left: len,
                }),
                None => {
                    // A stream nobody produces: the framing cannot be kept.
                    trace!("fd {}: a stream body without a producer", self.fd());
                    return self.enter(State::Closing, settings);
                }
            },
        };
        match body {
            Some(body) => {
                let keep_alive = plan.keep_alive;
                self.enter(State::Sending { body, keep_alive }, settings);
            }
            None => self.finished(plan.keep_alive, settings),
        }
    }
    // ANCHOR_END: respond

    /// The handler did not answer within `answer_timeout`: answer 504 for
    /// it, and close once that is written. Its answer, if it ever comes,
    /// finds no request waiting and is dropped (see [`deliver`](Self::deliver)).
    /// False if the connection waits for no answer.
    pub fn answer_late(&mut self, settings: &Settings) -> bool {
        if !matches!(self.state, State::Waiting(_)) {
            return false;
        }
        let State::Waiting(request) = replace(&mut self.state, State::Head) else {
            unreachable!("matched above")
        };
        let response = Response::error(504, "the application did not answer in time");
        self.respond(&request, response, settings);
        true
    }

    /// The response is all queued: on to the next request, or to closing.
    fn finished(&mut self, keep_alive: bool, settings: &Settings) {
        let next = match () {
            _ if !keep_alive => State::Closing,
            _ if self.inbuf.is_empty() => State::Idle,
            _ => State::Head, // a pipelined request is already here
        };
        self.enter(next, settings);
    }

    /// Answer a bad request and end the connection: after a framing error
    /// we cannot know where the next request would start.
    /// `line`: the request line, when the head parsed.
    fn reject<T>(
        &mut self,
        rejection: &Rejection,
        line: Option<String>,
        settings: &Settings,
    ) -> Option<T> {
        trace!("fd {}: rejected with {}", self.fd(), rejection.status);
        if !log::quiet() {
            let first_line = self.inbuf.split(|&b| b == b'\n').next().unwrap_or(&[]);
            let line = line.unwrap_or_else(|| String::from_utf8_lossy(first_line).into_owned());
            log::access(self.peer, line.trim_end(), rejection.status, None);
        }
        self.inbuf.clear();
        self.queue(None, rejection.to_response(), None, settings);
        None
    }

    // ANCHOR: fill
    /// Top `out` up from a streamed body: the pieces another thread has
    /// produced so far (framed as chunks when the length is unknown). Reads
    /// ahead at most `OUT_LIMIT`: a body of any size costs at most that much
    /// memory, however slow the reader. (A file goes by [`send_file`](Self::send_file).)
    fn fill(&mut self, settings: &Settings) -> io::Result<()> {
        let State::Sending { body, keep_alive } = &mut self.state else {
            return Ok(());
        };
        let Source::Stream {
            chunks,
            chunked,
            left,
        } = body
        else {
            return Ok(()); // a file: `send_file`'s, once `out` is empty
        };
        let out = &mut self.out;
        let done = loop {
            if out.len() >= OUT_LIMIT {
                break false; // enough read ahead: the producer waits
            }
            let mut piece = match chunks.try_recv() {
                Ok(piece) => piece,
                Err(TryRecvError::Empty) => break false, // its next wake brings us back
                Err(TryRecvError::Disconnected) => {
                    return Err(io::Error::other("the body's producer gave up"));
                }
            };
            if piece.is_empty() {
                if left.is_some_and(|n| n > 0) {
                    return Err(io::Error::other("the body ended before its Content-Length"));
                }
                if *chunked {
                    out.extend_from_slice(LAST_CHUNK);
                }
                break true;
            }
            if let Some(n) = left {
                // More than the Content-Length promised: cut it off there.
                piece.truncate(usize::try_from(*n).unwrap_or(usize::MAX));
                *n -= piece.len() as u64;
            }
            if *chunked {
                write_chunk(out, &piece);
            } else {
                out.extend_from_slice(&piece);
            }
            if *left == Some(0) {
                break true;
            }
        };
        if done {
            let keep_alive = *keep_alive;
            self.finished(keep_alive, settings);
        }
        Ok(())
    }
    // ANCHOR_END: fill

    // ANCHOR: flush
    /// Write what `out` holds, then the file being sent if any, until all
    /// is out (true) or the socket's send buffer is full (false). A slow
    /// reader costs us the bytes in `out` and never blocks anyone else.
    fn flush(&mut self, settings: &Settings) -> io::Result<bool> {
        let mut wrote = false;
        while !self.out.is_empty() {
            match (&self.stream).write(&self.out) {
                Ok(n) => {
                    trace!("write(fd {}, {} bytes) -> {n}", self.fd(), self.out.len());
                    self.out.drain(..n);
                    wrote = true;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    trace!("write(fd {}) -> EAGAIN: send buffer full", self.fd());
                    return Ok(self.stuck(wrote, settings));
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        if !self.send_file(&mut wrote, settings)? {
            return Ok(self.stuck(wrote, settings));
        }
        if self.writable {
            // Unstuck: the state's own timeout applies again.
            self.deadline = timeout(&self.state, settings).map(|t| Instant::now() + t);
        }
        Ok(true)
    }

    /// The send buffer is full. The reader's clock: `idle_timeout` from its
    /// last progress. Always false, for `flush` to return.
    fn stuck(&mut self, wrote: bool, settings: &Settings) -> bool {
        if wrote || !self.writable {
            self.deadline = Some(Instant::now() + settings.idle_timeout);
        }
        false
    }
    // ANCHOR_END: flush

    // ANCHOR: send_file
    /// The file body, once the head is out: sendfile(2) copies it from the
    /// page cache to the socket inside the kernel, as rung 4 does. We keep
    /// the `offset`, which the kernel advances; each call sends what fits in
    /// the socket's buffer, and EAGAIN means wait for WRITABLE (false). A
    /// body of any size costs us no memory, however slow the reader.
    fn send_file(&mut self, wrote: &mut bool, settings: &Settings) -> io::Result<bool> {
        let State::Sending {
            body: Source::File { file, offset, left },
            keep_alive,
        } = &mut self.state
        else {
            return Ok(true); // no file to send
        };
        let (out, fd) = (self.stream.as_raw_fd(), file.as_raw_fd());
        while *left > 0 {
            let count = usize::try_from(*left).unwrap_or(usize::MAX).min(1 << 30);
            // ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
            match sendfile(&self.stream, &*file, Some(offset), count) {
                Ok(0) => {
                    // The file shrank under us: the announced length is a lie now.
                    let why = "file shrank while being sent";
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, why));
                }
                Ok(n) => {
                    trace!("sendfile({out}, {fd}) -> {n} bytes");
                    *left -= n as u64;
                    *wrote = true;
                }
                Err(Errno::EAGAIN) => {
                    trace!("sendfile({out}, {fd}) -> EAGAIN: send buffer full");
                    return Ok(false);
                }
                Err(Errno::EINTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
        let keep_alive = *keep_alive;
        self.finished(keep_alive, settings);
        Ok(true)
    }
    // ANCHOR_END: send_file

    // ANCHOR: read_some
    /// One `read(2)` into the loop's scratch buffer, appended to `inbuf`.
    /// `Some(0)` is EOF, `None` is WouldBlock: the socket is drained.
    fn read_some(&mut self, scratch: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            return match (&self.stream).read(scratch) {
                Ok(n) => {
                    trace!("read(fd {}) -> {n} bytes", self.fd());
                    self.inbuf.extend_from_slice(&scratch[..n]);
                    Ok(Some(n))
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    trace!("read(fd {}) -> EAGAIN: drained", self.fd());
                    Ok(None)
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => Err(err),
            };
        }
    }
    // ANCHOR_END: read_some

    /// Something waits to be written: bytes in `out`, or a file being sent.
    fn has_output(&self) -> bool {
        let file = matches!(
            self.state,
            State::Sending {
                body: Source::File { .. },
                ..
            }
        );
        !self.out.is_empty() || file
    }

    /// Add or drop WRITABLE interest, only when it changes. Asking for it
    /// all the time would wake us for every connection whose send buffer
    /// has room, which is nearly all of them.
    fn want_write(&mut self, on: bool, token: Token, poll: &Poll) -> io::Result<()> {
        if self.writable == on {
            return Ok(());
        }
        self.writable = on;
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        poll.reregister(self.stream.as_fd(), token, interest)
    }

    /// After a `Connection: close` answer: half-close, then read and drop
    /// what the client still sends until it closes too. Closing at once with
    /// unread bytes makes the kernel send a reset, which can destroy our
    /// answer before the client reads it. In production this is nginx's
    /// `lingering_close`.
    fn linger(&mut self, settings: &Settings) {
        let _ = self.stream.shutdown(Shutdown::Write);
        trace!("shutdown(fd {}, SHUT_WR): lingering", self.fd());
        self.inbuf.clear();
        self.enter(State::Linger, settings);
    }

    /// Move to `state` and start its clock.
    fn enter(&mut self, state: State, settings: &Settings) {
        let changed = discriminant(&self.state) != discriminant(&state);
        self.state = state;
        self.deadline = timeout(&self.state, settings).map(|t| Instant::now() + t);
        if changed {
            trace!("fd {}: state -> {}", self.fd(), self.describe());
        }
    }

    /// An idle connection gives back big buffers; small ones stay for the
    /// next request, so a keep-alive request allocates no buffer.
    fn release_buffers(&mut self) {
        for buffer in [&mut self.inbuf, &mut self.out] {
            if buffer.is_empty() && buffer.capacity() > KEEP_BUFFER {
                *buffer = Vec::new();
            }
        }
    }
}

/// The timeout each state implies (see [`State`]).
fn timeout(state: &State, settings: &Settings) -> Option<Duration> {
    match state {
        State::Idle => Some(settings.idle_timeout),
        State::Head => Some(settings.header_timeout),
        State::Body(_) => Some(settings.body_timeout),
        State::Linger => Some(LINGER),
        State::Waiting(_) => settings.answer_timeout,
        // Nothing we wait for from the client: the producer has the next
        // move (a slow reader gets its own clock in `flush`).
        State::Sending { .. } | State::Closing => None,
    }
}
