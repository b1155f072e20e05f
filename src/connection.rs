//! One HTTP/1.1 connection driven with blocking calls: read a request head
//! before a deadline, read or discard its body, write the response, refuse
//! bad input, close without losing the last answer.
//!
//! Introduced in lesson 02 (`lessons/02-hello.md`), used by 03 and 04.
//!
//! `ladder::http` knows the protocol but never touches a socket; this is the
//! other half, for the servers that give a thread to each connection (rungs
//! 2–4, and the blocking workers of later rungs). The model is mini-redis's
//! `Connection::read_frame`: the connection owns the socket and the bytes
//! read but not yet used, parses what it has, reads more only when the
//! parser says `Partial`, and keeps whatever came after one request (the
//! start of its body, or the next pipelined request) for the next call.
//!
//! Every response goes out one way: [`Response::plan`] settles the framing,
//! [`Response::write_head`] renders the head, then the body follows as the
//! plan says: [`Connection::respond`], and for a body that comes later (a
//! CGI script's output, an application's) [`Connection::send_chunk`] and
//! [`Connection::end_body`].

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::http::{
    self, Body, BodyDecoder, Framing, LAST_CHUNK, Limits, Parsed, Plan, Rejection, Request,
    Response, ServerInfo, Version,
};
use crate::{log, trace};

/// The longest one read(2) waits before the deadline and the stop flag are
/// looked at again. Short enough that a shutdown is noticed at once by a
/// human, long enough that an idle connection costs a few wake-ups a second.
const SLICE: Duration = Duration::from_millis(250);

/// How long a lingering close reads what the client still sends.
const LINGER: Duration = Duration::from_secs(1);

/// How reading (a head or a body) ended, when it did not just work.
///
/// Only `io::Error` means "this connection is broken"; everything a client can
/// get wrong is a value here, and each value has an answer: a status code, or
/// silence for a client that already left (STYLE: protocol failures are
/// values, not errors).
#[derive(Debug)]
pub enum Got<T> {
    Done(T),
    /// The bytes are not acceptable: answer with this status and close.
    Rejected(Rejection),
    /// The deadline passed in the middle of a request: 408 is the honest answer.
    TimedOut,
    /// The deadline passed before a request began. A rung that waits between
    /// keep-alive requests closes quietly; one that insists on a request may
    /// still answer 408.
    Idle,
    /// Nobody is left to answer: the client closed the connection, or the
    /// stop flag was raised between requests. The reason is for `--trace`.
    Closed(&'static str),
}

/// What one wait for bytes came to.
enum Arrived {
    Bytes,
    Eof,
    /// The deadline passed.
    Late,
    /// The stop flag is up, and no request is under way.
    Stop,
}

/// A client connection and the bytes read from it but not yet used.
pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    /// Read but not yet used: a partial head, the start of a body, or the
    /// next pipelined request.
    buf: Vec<u8>,
    /// The raw head of the last request read, for a rung that prints it.
    head: Vec<u8>,
    limits: Limits,
    server: ServerInfo,
    /// Raised when the server shuts down; looked at between requests.
    stop: Option<&'static AtomicBool>,
    /// Send file bodies with sendfile(2) (else read + write).
    sendfile: bool,
    /// Narrate reads and writes under `--trace`.
    trace_io: bool,
    /// The read timeout set on the socket now: setsockopt(2) only on change.
    armed: Option<Duration>,
    /// Body bytes of the current response sent so far.
    sent: u64,
}

impl Connection {
    /// A connection speaking [`ServerInfo::PLAIN`], with sendfile(2), no stop
    /// flag, and reads and writes narrated under `--trace`. The connection
    /// owns the socket's read timeout from now on: set none of your own.
    pub fn new(stream: TcpStream, peer: SocketAddr, limits: Limits) -> Connection {
        Connection {
            stream,
            peer,
            buf: Vec::new(),
            head: Vec::new(),
            limits,
            server: ServerInfo::PLAIN,
            stop: None,
            sendfile: true,
            trace_io: true,
            armed: None,
            sent: 0,
        }
    }

    /// What the server says about itself: its protocol version (an
    /// `HTTP/1.0` server never sends `100 Continue` nor a chunked body) and
    /// its `Server` header.
    pub fn server(mut self, server: ServerInfo) -> Self {
        self.server = server;
        self
    }

    /// Stop waiting for another request once `flag` is raised (a graceful
    /// shutdown): looked at between reads, only while no request is under way.
    pub fn stop_when(mut self, flag: &'static AtomicBool) -> Self {
        self.stop = Some(flag);
        self
    }

    /// `false`: copy file bodies through a buffer (read + write) instead of
    /// sendfile(2), to show the difference.
    pub fn sendfile(mut self, on: bool) -> Self {
        self.sendfile = on;
        self
    }

    /// `false`: keep reads and writes out of `--trace`, for a rung whose
    /// story is elsewhere (rung 3 narrates its fork, exec and waitpid).
    pub fn trace_io(mut self, on: bool) -> Self {
        self.trace_io = on;
        self
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The socket, for its addresses and for options other than the read
    /// timeout (`set_nodelay`, `set_write_timeout`).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The bytes of the last request head read, exactly as they arrived.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The request line for the access log: the request's own, or for a head
    /// that did not parse, its first line as far as it arrived. Capped and
    /// lossily decoded: a 414 line is 8 KiB of junk nobody wants in a log.
    pub fn log_line(&self, request: Option<&Request>) -> String {
        if let Some(request) = request {
            return request.request_line();
        }
        let line = self.buf.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
        line.chars().take(200).collect()
    }

    // A request head ends at the first empty line, and nothing says how many
    // read() calls it takes to get there: a browser sends it in one packet,
    // `nc` one line per Enter, a hostile client one byte per second. So:
    // parse what we have; if the parser says Partial, read more and parse
    // again. The deadline is for the whole head, not per read, or a dribbling
    // client could keep us busy forever by sending a byte before each read
    // times out. `None` waits for ever.
    // ANCHOR: read_request
    /// Read the next request head, before `deadline`.
    pub fn read_request(&mut self, deadline: Option<Instant>) -> io::Result<Got<Request>> {
        loop {
            // Parse before reading: a pipelined request may be here already.
            match http::parse_request(&self.buf, &self.limits) {
                Ok(Parsed::Complete { request, consumed }) => {
                    self.head.clear();
                    self.head.extend(self.buf.drain(..consumed));
                    return Ok(Got::Done(request));
                }
                Ok(Parsed::Partial) => {} // not yet: read more below
                Err(rejection) => return Ok(Got::Rejected(rejection)),
            }
            let idle = self.buf.is_empty(); // no request under way yet
            match self.read_more(deadline, idle)? {
                Arrived::Bytes => {}
                Arrived::Eof => return Ok(Got::Closed("client closed the connection")),
                Arrived::Stop => return Ok(Got::Closed("shutting down between requests")),
                Arrived::Late if idle => return Ok(Got::Idle),
                Arrived::Late => return Ok(Got::TimedOut),
            }
        }
    }
    // ANCHOR_END: read_request

    // ANCHOR: read_more
    /// One read(2) into the buffer, waiting until `deadline` at the most.
    /// `idle`: no request is under way, so a raised stop flag ends the wait.
    fn read_more(&mut self, deadline: Option<Instant>, idle: bool) -> io::Result<Arrived> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if idle && self.stop.is_some_and(|flag| flag.load(Ordering::SeqCst)) {
                return Ok(Arrived::Stop);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(Arrived::Late);
            }
            // SO_RCVTIMEO: a blocked read gives up after a slice with EAGAIN,
            // and we look at the deadline and the stop flag again. A fixed
            // timeout per read would restart with every byte a client dribbles.
            self.arm(left.unwrap_or(SLICE).min(SLICE))?;
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    if self.trace_io {
                        trace!("read({}) -> {n} bytes", self.stream.as_raw_fd());
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(if n == 0 { Arrived::Eof } else { Arrived::Bytes });
                }
                Err(err) if timed_out(&err) => {} // a slice passed: look again
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }
    // ANCHOR_END: read_more

    /// Set the socket's read timeout, unless it is set to that already.
    fn arm(&mut self, timeout: Duration) -> io::Result<()> {
        if self.armed != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.armed = Some(timeout);
        }
        Ok(())
    }

    /// Read the whole body of `request` into memory, before `deadline`: a
    /// CGI script is told its length up front (RFC 3875 §4.2), so a chunked
    /// body must be decoded to its end first.
    pub fn read_body(
        &mut self,
        request: &Request,
        deadline: Option<Instant>,
    ) -> io::Result<Got<Vec<u8>>> {
        self.body(request, deadline, true)
    }

    /// Read the body of `request` and throw it away as it arrives. A server
    /// that does not want a body still reads it: closing a socket with unread
    /// bytes in its receive buffer makes the kernel send RST, which can
    /// destroy the response before the client has read it.
    pub fn discard_body(
        &mut self,
        request: &Request,
        deadline: Option<Instant>,
    ) -> io::Result<Got<()>> {
        Ok(match self.body(request, deadline, false)? {
            Got::Done(_) => Got::Done(()),
            Got::Rejected(rejection) => Got::Rejected(rejection),
            Got::TimedOut => Got::TimedOut,
            Got::Idle => Got::Idle,
            Got::Closed(why) => Got::Closed(why),
        })
    }

    // ANCHOR: body
    fn body(
        &mut self,
        request: &Request,
        deadline: Option<Instant>,
        keep: bool,
    ) -> io::Result<Got<Vec<u8>>> {
        let framing = match request.body_framing(&self.limits) {
            Ok(framing) => framing,
            Err(rejection) => return Ok(Got::Rejected(rejection)),
        };
        // The decoder is sans I/O like the parser: it is fed whatever bytes
        // arrived (first the ones that came in with the head), says how many
        // it used, and knows by itself when a Content-Length or chunked body
        // ends. What follows the body stays in `buf`: the next request.
        let mut decoder = BodyDecoder::new(framing, &self.limits);
        if !decoder.is_done() && self.buf.is_empty() && self.may_continue(request) {
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let mut body = Vec::new();
        loop {
            match decoder.feed(&self.buf, &mut body) {
                Ok(used) => drop(self.buf.drain(..used)),
                Err(rejection) => return Ok(Got::Rejected(rejection)),
            }
            if !keep {
                body.clear(); // thrown away as it arrives: memory stays flat
            }
            if decoder.is_done() {
                return Ok(Got::Done(body));
            }
            match self.read_more(deadline, false)? {
                Arrived::Bytes => {}
                Arrived::Late => return Ok(Got::TimedOut),
                Arrived::Eof | Arrived::Stop => {
                    return Ok(Got::Closed("client closed in the body"));
                }
            }
        }
    }
    // ANCHOR_END: body

    // ANCHOR: continue
    /// `Expect: 100-continue` (RFC 9110 §10.1.1): the client holds back its
    /// body until the server says go ahead; curl does this above 1 MiB and,
    /// with no answer, waits a second before sending anyway. The interim
    /// response is HTTP/1.1's: an HTTP/1.0 server (rung 4 under `-p
    /// HTTP/1.0`, as Python) never sends it, and an HTTP/1.0 client's
    /// expectation is ignored (§10.1.1).
    fn may_continue(&self, request: &Request) -> bool {
        let expects = request
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        expects && request.version == Version::Http11 && self.server.protocol == Version::Http11
    }
    // ANCHOR_END: continue

    // ANCHOR: respond
    /// Write `response` to `request` (`None`: the head never parsed) as
    /// [`Response::plan`] says, and return the plan. A body in memory leaves
    /// in the same write(2) as the head; a file with sendfile(2); a `Stream`
    /// body is the caller's to send next with [`send_chunk`](Self::send_chunk)
    /// and [`end_body`](Self::end_body).
    pub fn respond(
        &mut self,
        request: Option<&Request>,
        response: Response,
        may_keep_alive: bool,
    ) -> io::Result<Plan> {
        let plan = response.plan(request, &self.server, may_keep_alive);
        let mut out = Vec::with_capacity(256);
        response.write_head(&plan, &self.server, &mut out);
        self.sent = 0;
        match response.body {
            Body::Bytes(bytes) if plan.send_body => {
                out.extend_from_slice(&bytes);
                self.write(&out)?;
                self.sent = bytes.len() as u64;
            }
            Body::File { file, len } if plan.send_body && len > 0 => {
                self.send_more(&out)?;
                self.send_file(file, len)?;
                self.sent = len;
            }
            _ => self.write(&out)?,
        }
        Ok(plan)
    }
    // ANCHOR_END: respond

    // ANCHOR: send_chunk
    /// Send the next piece of a `Stream` body as `plan` frames it: a chunk
    /// (`size CRLF data CRLF`), or the bytes as they are. Nothing for a HEAD
    /// request, and never more than a `Content-Length` announced.
    pub fn send_chunk(&mut self, plan: &Plan, data: &[u8]) -> io::Result<()> {
        if !plan.send_body || data.is_empty() {
            return Ok(());
        }
        let data = match plan.framing {
            Framing::Length(len) => {
                let room = len.saturating_sub(self.sent).min(data.len() as u64);
                &data[..room as usize]
            }
            _ => data,
        };
        self.sent += data.len() as u64;
        match plan.framing {
            Framing::Chunked => {
                let mut out = Vec::with_capacity(data.len() + 16);
                http::write_chunk(&mut out, data);
                self.write(&out)
            }
            _ => self.write(data),
        }
    }

    /// End a `Stream` body: the last chunk when chunked. Returns whether the
    /// connection may carry another request: not if the plan says close, nor
    /// after a body shorter than its `Content-Length` (the client would wait
    /// for the rest).
    pub fn end_body(&mut self, plan: &Plan) -> io::Result<bool> {
        if plan.send_body && plan.framing == Framing::Chunked {
            self.write(LAST_CHUNK)?;
        }
        let complete = match plan.framing {
            Framing::Length(len) => !plan.send_body || self.sent == len,
            _ => true,
        };
        Ok(plan.keep_alive && complete)
    }
    // ANCHOR_END: send_chunk

    /// Body bytes of the last response sent so far, for the access log.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Write bytes no [`Response`] describes: an `nph-` CGI script's whole
    /// answer (RFC 3875 §5), which frames itself, or lesson 02's `--naive`
    /// mistake.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write(bytes)
    }

    // ANCHOR: refuse
    /// Answer what went wrong reading a request: the status the parser or
    /// the body decoder chose, or 408 for a request that stopped half-way;
    /// log it, and close. Nothing to answer when the client left, or went
    /// quiet before a request began.
    pub fn refuse<T>(self, request: Option<&Request>, got: Got<T>) -> io::Result<()> {
        let rejection = match got {
            Got::Rejected(rejection) => rejection,
            Got::TimedOut => Rejection::new(408, "no complete request in time"),
            Got::Done(_) | Got::Idle | Got::Closed(_) => return Ok(()),
        };
        log::access(self.peer, &self.log_line(request), rejection.status, None);
        self.reject(request, &rejection)
    }
    // ANCHOR_END: refuse

    // ANCHOR: reject
    /// Refuse: the ladder's error page for `rejection`, then a lingering
    /// close. After an error we cannot trust where the next request would
    /// start, so the connection ends here.
    pub fn reject(mut self, request: Option<&Request>, rejection: &Rejection) -> io::Result<()> {
        self.respond(request, rejection.to_response(), false)?;
        self.lingering_close();
        Ok(())
    }
    // ANCHOR_END: reject

    // ANCHOR: lingering_close
    /// Close without losing the last response. If unread bytes sit in our
    /// receive buffer, close(2) sends RST, and a reset can wipe out the
    /// response still in flight. So: shut our sending side first (FIN), read
    /// and throw away what the client still sends, for a second at most,
    /// then close (Apache's "lingering close").
    pub fn lingering_close(mut self) {
        let _ = self.stream.shutdown(Shutdown::Write); // fails only if the client is gone
        let until = Some(Instant::now() + LINGER);
        self.buf.clear();
        while let Ok(Arrived::Bytes) = self.read_more(until, false) {
            self.buf.clear();
        }
    } // dropping `self` closes the socket
    // ANCHOR_END: lingering_close

    /// write(2) all of `bytes`, narrated.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        if self.trace_io {
            trace!("write({}, {} bytes)", self.stream.as_raw_fd(), bytes.len());
        }
        Ok(())
    }

    /// send(2) with MSG_MORE until all of `bytes` is queued: the head waits
    /// for the file's first bytes, so a small response leaves in one packet.
    fn send_more(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        use nix::sys::socket::{MsgFlags, send};
        // nix names no MSG_MORE (Linux-only), so build the flag from libc's value.
        let more = MsgFlags::from_bits_retain(nix::libc::MSG_MORE);
        while !bytes.is_empty() {
            match send(self.stream.as_raw_fd(), bytes, more) {
                Ok(n) => bytes = &bytes[n..],
                Err(nix::errno::Errno::EINTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    // ANCHOR: send_file
    /// `len` bytes of `file` from its start: sendfile(2), or read + write.
    ///
    /// sendfile copies from the page cache to the socket inside the kernel;
    /// the bytes never enter this process. We pass our own `offset`, which
    /// the kernel advances; one call may send less than asked (the socket
    /// buffer filled up), so we loop, like lesson 01's short writes. A write
    /// timeout (SO_SNDTIMEO) makes a call that cannot progress fail with
    /// EAGAIN: a client that stopped reading is dropped.
    fn send_file(&mut self, file: File, len: u64) -> io::Result<()> {
        if !self.sendfile {
            return self.copy_file(file, len);
        }
        let shrank =
            || io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent");
        let (mut offset, mut left): (nix::libc::off_t, u64) = (0, len);
        while left > 0 {
            let count = usize::try_from(left).unwrap_or(usize::MAX).min(1 << 30);
            // ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
            match nix::sys::sendfile::sendfile(&self.stream, &file, Some(&mut offset), count) {
                Ok(0) => return Err(shrank()),
                Ok(n) => {
                    if self.trace_io {
                        let (out, fd) = (self.stream.as_raw_fd(), file.as_raw_fd());
                        trace!("sendfile({out}, {fd}) -> {n} bytes");
                    }
                    left -= n as u64;
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client stopped reading",
                    ));
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }
    // ANCHOR_END: send_file

    /// The user-space way: read(2) a block of the file, write(2) it to the
    /// socket, repeat. Every byte crosses into this process and back out.
    /// (`io::copy` would not show this: on Linux, std quietly uses sendfile
    /// or splice itself when it can.)
    fn copy_file(&mut self, mut file: File, len: u64) -> io::Result<()> {
        let mut block = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let want = block.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut block[..want]) {
                Ok(0) => {
                    let why = "file shrank while being sent";
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, why));
                }
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            self.stream.write_all(&block[..n])?;
            left -= n as u64;
        }
        Ok(())
    }
}

/// SO_RCVTIMEO expired. Linux reports it as EAGAIN (`WouldBlock`), other
/// systems as ETIMEDOUT; std passes either through as it came.
fn timed_out(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
