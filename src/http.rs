//! HTTP/1.x without I/O: parse a request head, frame a body, render a response.
//!
//! Introduced in lesson 02 (`lessons/02-hello.md`), used by every later rung.
//!
//! Nothing here touches a socket. Each rung reads bytes its own way (a
//! blocking loop, an event loop, a forked worker) and hands them to these
//! functions, which only ever say one of three things:
//!
//! - [`Parsed::Complete`]: here is the request, and this many bytes were its head;
//! - [`Parsed::Partial`]: not enough bytes yet, read more and call again;
//! - `Err(`[`Rejection`]`)`: the bytes are not acceptable; answer with this status.
//!
//! That three-way answer (httparse's `Status::Partial`) is what lets lesson 05
//! feed half a request back into its buffer and move on to another socket.
//!
//! The rules quoted below are from RFC 9112 (HTTP/1.1 message syntax and
//! framing) and RFC 9110 (HTTP semantics).

use std::fmt;
use std::time::SystemTime;

/// How much a client may send before it is refused. Every rung has defaults
/// and flags; in production, size these to your clients and your memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (`GET /path HTTP/1.1`), in bytes; longer is 414.
    pub max_request_line: usize,
    /// Most header fields; more is 431.
    pub max_header_count: usize,
    /// Largest whole head (request line + headers + blank line); larger is 431.
    pub max_head_bytes: usize,
    /// Largest request body after de-chunking; larger is 413.
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_count: 100,
            max_head_bytes: 64 * 1024,
            max_body: 10 * 1024 * 1024,
        }
    }
}

/// The protocol version of a request. httparse accepts only these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        })
    }
}

/// One header field. The value stays bytes: RFC 9110 §5.5 allows obsolete
/// non-ASCII octets, and a CGI script should see exactly what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

/// A parsed request head. Owned for readability: httparse itself borrows
/// from the buffer and copies nothing, at the price of lifetimes everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent: `/path?query` (origin form), or an
    /// absolute URL, or `*`. Not decoded.
    pub target: String,
    pub version: Version,
    pub headers: Vec<Header>,
}

/// The answer of [`parse_request`] when the bytes are acceptable so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole head; `consumed` bytes of the buffer belong to it, and anything
    /// after them is the body or the next pipelined request.
    Complete { request: Request, consumed: usize },
    /// The head is not complete: read more bytes and call again with all of them.
    Partial,
}

/// A request that must be refused, with the status to refuse it with.
/// Protocol failures are values, not `io::Error`s: the connection answers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    /// One short sentence for the error body and the log.
    pub detail: &'static str,
}

impl Rejection {
    pub const fn new(status: u16, detail: &'static str) -> Self {
        Rejection { status, detail }
    }

    /// The whole error response: a short text body and `Connection: close`,
    /// because after a framing error we cannot know where the next request
    /// would start.
    pub fn response(&self) -> Vec<u8> {
        error_response(self.status, self.detail)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            reason(self.status),
            self.detail
        )
    }
}

/// Parse a request head from the start of `buf`.
///
/// Call it again with the grown buffer after [`Parsed::Partial`]; it keeps no
/// state between calls, so re-parsing from the start is the price of
/// simplicity (httparse is fast enough that servers like hyper do the same).
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed, Rejection> {
    // Check the limits first, on raw bytes, so a huge head is refused before
    // httparse is asked to look at it again.
    let line_end = buf.iter().position(|&b| b == b'\n');
    if line_end.unwrap_or(buf.len()) > limits.max_request_line {
        return Err(Rejection::new(414, "the request line is too long"));
    }

    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_header_count];
    let mut parsed = httparse::Request::new(&mut slots);
    let consumed = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Err(Rejection::new(431, "the request headers are too large"));
            }
            return Ok(Parsed::Partial);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Rejection::new(431, "too many request header fields"));
        }
        // Arriving byte by byte, `HTTP/2.0` fails in httparse at the `2`,
        // before the line is whole; wait for the line, so the answer is the
        // same 505 as when the whole request arrives at once.
        Err(httparse::Error::Version) if version_still_arriving(buf) => {
            return Ok(Parsed::Partial);
        }
        Err(httparse::Error::Version) if looks_like_other_version(buf) => {
            return Err(Rejection::new(
                505,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            ));
        }
        Err(_) => return Err(Rejection::new(400, "the request head is malformed")),
    };
    if consumed > limits.max_head_bytes {
        return Err(Rejection::new(431, "the request headers are too large"));
    }

    // A Complete parse always fills these three; `expect` documents it.
    let request = Request {
        method: parsed
            .method
            .expect("complete parse has a method")
            .to_string(),
        target: parsed
            .path
            .expect("complete parse has a target")
            .to_string(),
        version: match parsed.version.expect("complete parse has a version") {
            0 => Version::Http10,
            _ => Version::Http11,
        },
        headers: parsed
            .headers
            .iter()
            .map(|h| Header {
                name: h.name.to_string(),
                value: h.value.to_vec(),
            })
            .collect(),
    };
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
    // code to any HTTP/1.1 request message that lacks a Host header field and
    // to any request message that contains more than one Host header field".
    let hosts = request.values("host").count();
    if hosts > 1 || (hosts == 0 && request.version == Version::Http11) {
        return Err(Rejection::new(400, "exactly one Host header is required"));
    }
    // The same sentence goes on: "... or a Host header field with an invalid
    // field value". Host is `uri-host [ ":" port ]` (RFC 3986), written only
    // with the characters below; checking that alphabet refuses spaces,
    // slashes and `user@` in a Host without parsing IP literals by hand.
    let host_byte = |b: &u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(b);
    if request.values("host").any(|v| !v.iter().all(host_byte)) {
        return Err(Rejection::new(400, "the Host header is not a host"));
    }
    Ok(Parsed::Complete { request, consumed })
}

/// httparse reports `HTTP/2.0` and garbage alike as a version error; tell a
/// well-formed but unsupported `HTTP/x.y` apart, which earns 505, not 400.
fn looks_like_other_version(buf: &[u8]) -> bool {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or(buf);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let tokens: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [_method, _target, version] = tokens.as_slice() else {
        return false;
    };
    matches!(version, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

/// Is the request line unfinished, with a version so far that could still
/// become a well-formed `HTTP/x.y`?
fn version_still_arriving(buf: &[u8]) -> bool {
    if buf.contains(&b'\n') {
        return false;
    }
    let line = buf.strip_suffix(b"\r").unwrap_or(buf);
    let tokens: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [_method, _target, version] = tokens.as_slice() else {
        return false;
    };
    let shape = b"HTTP/9.9";
    version.len() <= shape.len()
        && version.iter().zip(shape).all(|(&b, &s)| match s {
            b'9' => b.is_ascii_digit(),
            _ => b == s,
        })
}

impl Request {
    /// Every value of the header `name` (case-insensitive), in order.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// The first value of header `name` as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.values(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The path part of the target (before `?`), still percent-encoded.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query part of the target (after `?`), or `""`.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The request line as the access log prints it.
    pub fn request_line(&self) -> String {
        format!("{} {} {}", self.method, self.target, self.version)
    }

    /// Refuse a method this server does not implement, as `http.server` does
    /// with 501 (RFC 9110 §15.6.2).
    pub fn check_method(&self, implemented: &[&str]) -> Result<(), Rejection> {
        if implemented.contains(&self.method.as_str()) {
            Ok(())
        } else {
            Err(Rejection::new(501, "this method is not implemented here"))
        }
    }

    /// RFC 9112 §9.3: may the connection stay open after the response?
    ///
    /// `close` in `Connection` always ends it; otherwise HTTP/1.1 keeps the
    /// connection open by default, and HTTP/1.0 only if the client asked with
    /// `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.values("connection").any(|v| {
                v.split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
            })
        };
        if has("close") {
            return false;
        }
        match self.version {
            Version::Http11 => true,
            Version::Http10 => has("keep-alive"),
        }
    }

    /// RFC 9112 §6.3: how long is the body that follows the head?
    ///
    /// The checks here are the request-smuggling defences. Two servers that
    /// disagree about where a body ends (a proxy and the server behind it) can
    /// be made to see a second, hidden request, so anything ambiguous is
    /// refused rather than guessed.
    pub fn body_framing(&self, limits: &Limits) -> Result<BodyFraming, Rejection> {
        let te: Vec<&[u8]> = self.values("transfer-encoding").collect();
        let cl: Vec<&[u8]> = self.values("content-length").collect();
        if !te.is_empty() {
            // §6.1: a sender MUST NOT send Content-Length with Transfer-Encoding,
            // and a server MAY reject such a message; we do, since that
            // combination is the classic smuggling vector.
            if !cl.is_empty() {
                return Err(Rejection::new(
                    400,
                    "both Content-Length and Transfer-Encoding were sent",
                ));
            }
            // §6.1: Transfer-Encoding was added in HTTP/1.1; a 1.0 message
            // carrying it is faulty.
            if self.version == Version::Http10 {
                return Err(Rejection::new(
                    400,
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            // The codings apply in order; we implement only `chunked`, and it
            // must come exactly once, last (§6.3 rule 4, §7).
            let codings: Vec<Vec<u8>> = te
                .iter()
                .flat_map(|v| v.split(|&b| b == b','))
                .map(|t| t.trim_ascii().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect();
            return match codings.as_slice() {
                [only] if only == b"chunked" => Ok(BodyFraming::Chunked),
                _ if codings.iter().any(|c| c == b"chunked") => Err(Rejection::new(
                    400,
                    "chunked must be the last and only transfer coding",
                )),
                _ => Err(Rejection::new(501, "unknown transfer coding")),
            };
        }
        // §6.3 rule 5: several Content-Length values (in one field as a list,
        // or in several fields) are acceptable only if they are all the same
        // valid number.
        let mut length: Option<u64> = None;
        for item in cl.iter().flat_map(|v| v.split(|&b| b == b',')) {
            let n = parse_content_length(item.trim_ascii())
                .ok_or(Rejection::new(400, "invalid Content-Length"))?;
            if length.is_some_and(|m| m != n) {
                return Err(Rejection::new(400, "conflicting Content-Length values"));
            }
            length = Some(n);
        }
        match length {
            None | Some(0) => Ok(BodyFraming::Empty),
            Some(n) if n > limits.max_body => {
                Err(Rejection::new(413, "the request body is too large"))
            }
            Some(n) => Ok(BodyFraming::Length(n)),
        }
    }
}

/// `Content-Length = 1*DIGIT`: no sign, no spaces, no hex, no overflow.
/// (`str::parse::<u64>` would accept a leading `+`.)
fn parse_content_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// How a request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: requests without Content-Length or Transfer-Encoding have none.
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// Chunks follow, each prefixed by its size in hex, ended by a 0-size chunk.
    Chunked,
}

/// Decodes a request body incrementally: feed it whatever bytes arrived,
/// and it appends the body's payload to `out` and says how much it used.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: DecodeState,
    /// Payload bytes produced so far, checked against `max_body`.
    produced: u64,
    max_body: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DecodeState {
    /// Content-Length: this many bytes still to come.
    Length(u64),
    /// Chunked: collecting the `size[;ext]` line.
    ChunkSize(Vec<u8>),
    /// Chunked: this many data bytes of the current chunk still to come.
    ChunkData(u64),
    /// Chunked: the CRLF after a chunk's data; the Vec holds what came of it.
    ChunkEnd(Vec<u8>),
    /// Chunked: trailer lines after the last chunk, until an empty line.
    Trailer(Vec<u8>),
    Done,
}

/// The longest chunk-size line (size, extensions, CRLF) or trailer line we accept.
const MAX_CHUNK_LINE: usize = 4096;

impl BodyDecoder {
    pub fn new(framing: BodyFraming, limits: &Limits) -> Self {
        let state = match framing {
            BodyFraming::Empty => DecodeState::Done,
            BodyFraming::Length(n) => DecodeState::Length(n),
            BodyFraming::Chunked => DecodeState::ChunkSize(Vec::new()),
        };
        BodyDecoder {
            state,
            produced: 0,
            max_body: limits.max_body,
        }
    }

    /// Has the whole body been decoded? Bytes after it belong to the next request.
    pub fn is_done(&self) -> bool {
        self.state == DecodeState::Done
    }

    /// Decode from `input`, appending payload to `out`. Returns how many bytes
    /// of `input` were used; it uses all of them unless the body ends first.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, Rejection> {
        let mut used = 0;
        while used < input.len() && !self.is_done() {
            let rest = &input[used..];
            used += match &mut self.state {
                DecodeState::Length(remaining) | DecodeState::ChunkData(remaining) => {
                    let n = rest
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    out.extend_from_slice(&rest[..n]);
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.state = match self.state {
                            DecodeState::ChunkData(_) => DecodeState::ChunkEnd(Vec::new()),
                            _ => DecodeState::Done,
                        };
                    }
                    n
                }
                DecodeState::ChunkSize(line) => {
                    let (n, complete) = take_line(line, rest)?;
                    if complete {
                        let size = parse_chunk_size(line)?;
                        self.produced += size;
                        if self.produced > self.max_body {
                            return Err(Rejection::new(413, "the request body is too large"));
                        }
                        self.state = if size == 0 {
                            DecodeState::Trailer(Vec::new())
                        } else {
                            DecodeState::ChunkData(size)
                        };
                    }
                    n
                }
                DecodeState::ChunkEnd(seen) => {
                    let (n, complete) = take_line(seen, rest)?;
                    if complete {
                        if !(seen.is_empty() || seen == b"\r") {
                            return Err(Rejection::new(400, "chunk data is longer than its size"));
                        }
                        self.state = DecodeState::ChunkSize(Vec::new());
                    }
                    n
                }
                DecodeState::Trailer(line) => {
                    let (n, complete) = take_line(line, rest)?;
                    if complete {
                        // Trailer fields are read and dropped: none of our
                        // rungs uses them (RFC 9112 §7.1.2 allows that).
                        if line.is_empty() || line == b"\r" {
                            self.state = DecodeState::Done;
                        } else {
                            line.clear();
                        }
                    }
                    n
                }
                DecodeState::Done => unreachable!("the loop stops at Done"),
            };
        }
        Ok(used)
    }
}

/// Move bytes of one line from `input` into `line` (without the `\n`).
/// Returns the bytes used and whether the line is complete.
fn take_line(line: &mut Vec<u8>, input: &[u8]) -> Result<(usize, bool), Rejection> {
    let (n, complete) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => {
            line.extend_from_slice(&input[..i]);
            (i + 1, true)
        }
        None => {
            line.extend_from_slice(input);
            (input.len(), false)
        }
    };
    if line.len() > MAX_CHUNK_LINE {
        return Err(Rejection::new(400, "a chunk line is too long"));
    }
    Ok((n, complete))
}

/// `chunk-size [ chunk-ext ] CRLF`, where chunk-size is 1*HEXDIG (RFC 9112 §7.1).
/// Extensions are ignored, as the RFC allows.
fn parse_chunk_size(line: &[u8]) -> Result<u64, Rejection> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or(line)
        .trim_ascii_end();
    let bad = Rejection::new(400, "invalid chunk size");
    if digits.is_empty() || digits.len() > 15 {
        return Err(bad);
    }
    let mut size = 0u64;
    for &d in digits {
        let v = (d as char).to_digit(16).ok_or(bad.clone())?;
        size = size * 16 + u64::from(v);
    }
    Ok(size)
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n`. Also right for HEAD, which announces the length
    /// of the body it does not send.
    Length(u64),
    /// `Transfer-Encoding: chunked`: HTTP/1.1 only; see [`write_chunk`].
    Chunked,
    /// No length at all: the body ends when the server closes the connection.
    /// HTTP/1.0's way, and the reason a keep-alive connection cannot use it.
    UntilClose,
    /// No body and no length header: 1xx, 204 and 304 (RFC 9110 §6.4.1).
    NoBody,
}

/// A response's status line and headers, built up and then rendered into
/// bytes. The rung decides framing and keep-alive; this only writes them down.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub protocol: &'static str,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// An `HTTP/1.1` response with this status and no headers yet.
    pub fn new(status: u16) -> Self {
        ResponseHead {
            protocol: "HTTP/1.1",
            status,
            headers: Vec::new(),
        }
    }

    /// Add a header. Names and values must not contain CR or LF; the caller
    /// controls them (a CGI script's headers are checked in `ladder::cgi`).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Render the head: status line, the headers added, then `Date`, the
    /// framing header and `Connection`, then the blank line that ends a head.
    /// Every line ends in CRLF (RFC 9112 §2.1); a bare LF is what lesson 02's
    /// `--naive` mode shows going wrong.
    pub fn render(&self, framing: Framing, keep_alive: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.render_into(&mut out, framing, keep_alive, SystemTime::now());
        out
    }

    /// [`render`](Self::render) into an existing buffer, with the clock given.
    pub fn render_into(
        &self,
        out: &mut Vec<u8>,
        framing: Framing,
        keep_alive: bool,
        now: SystemTime,
    ) {
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "{} {} {}\r\n",
            self.protocol,
            self.status,
            reason(self.status)
        );
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let _ = write!(out, "Date: {}\r\n", httpdate::fmt_http_date(now));
        match framing {
            Framing::Length(n) => {
                let _ = write!(out, "Content-Length: {n}\r\n");
            }
            Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            Framing::UntilClose | Framing::NoBody => {}
        }
        let keep_alive = keep_alive && framing != Framing::UntilClose;
        out.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        });
    }
}

/// Append one chunk of a chunked body: size in hex, CRLF, data, CRLF.
/// An empty `data` would end the body, so it is skipped; use [`LAST_CHUNK`].
pub fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The zero-size chunk and the empty trailer that end a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A complete error response: status, a one-line text body, `Connection: close`.
pub fn error_response(status: u16, detail: &str) -> Vec<u8> {
    let body = format!("{status} {}: {detail}\n", reason(status));
    let mut out = ResponseHead::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .render(Framing::Length(body.len() as u64), false);
    out.extend_from_slice(body.as_bytes());
    out
}

/// Percent-decoding of a request target (RFC 3986 §2.1), as Python's
/// `urllib.parse.unquote` does it: `%XX` becomes the byte 0xXX; a `%` not
/// followed by two hex digits (`%zz`, a trailing `%`) stays as it is. The
/// result is bytes, since nothing says the decoded target is UTF-8.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let hex = |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// The reason phrase for a status code (RFC 9110 §15).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn parse(bytes: &[u8]) -> Result<Parsed, Rejection> {
        parse_request(bytes, &Limits::default())
    }

    fn complete(bytes: &[u8]) -> (Request, usize) {
        match parse(bytes) {
            Ok(Parsed::Complete { request, consumed }) => (request, consumed),
            other => panic!("expected a complete head for {bytes:?}, got {other:?}"),
        }
    }

    fn status_of(bytes: &[u8]) -> u16 {
        match parse(bytes) {
            Err(rejection) => rejection.status,
            Ok(parsed) => panic!("expected a rejection for {bytes:?}, got {parsed:?}"),
        }
    }

    #[test]
    fn complete_partial_and_consumed() {
        let (request, consumed) = complete(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nNEXT");
        assert_eq!(consumed, 32);
        assert_eq!(request.method, "GET");
        assert_eq!((request.path(), request.query()), ("/a", "b=1"));
        assert_eq!(request.version, Version::Http11);
        assert_eq!(request.header("HOST"), Some("x"));
        for cut in 0..32 {
            let head = &b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"[..cut];
            assert_eq!(parse(head), Ok(Parsed::Partial), "cut at {cut}");
        }
    }

    #[test]
    fn rejections_by_status() {
        let long_line = [b"GET /".as_slice(), &[b'a'; 9000], b" HTTP/1.1\r\n"].concat();
        let huge_header = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 100_000]].concat();
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        let table: &[(&str, &[u8], u16)] = &[
            ("garbage", b"garbage\r\n\r\n", 400),
            (
                "space in target",
                b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
                400,
            ),
            ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            ("HTTP/3.1", b"GET / HTTP/3.1\r\n\r\n", 505),
            ("no Host on 1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
            (
                "two Hosts",
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                400,
            ),
            ("long request line, unfinished", &long_line[..8500], 414),
            ("long request line", &long_line, 414),
            ("100 KB header", &huge_header, 431),
            ("101 headers", many.as_bytes(), 431),
        ];
        for (name, input, want) in table {
            assert_eq!(status_of(input), *want, "{name}");
        }
    }

    /// A rung reading byte by byte must get the same answer as one that got
    /// the whole request at once: 505 for HTTP/2.0, never a 400 on the way.
    #[test]
    fn other_versions_get_505_in_any_split() {
        let input = b"GET / HTTP/2.0\r\nHost: x\r\n\r\n";
        for cut in 0..input.len() {
            match parse(&input[..cut]) {
                Ok(Parsed::Partial) => {}
                Err(rejection) => assert_eq!(rejection.status, 505, "cut at {cut}"),
                Ok(parsed) => panic!("cut at {cut}: {parsed:?}"),
            }
        }
        assert_eq!(status_of(input), 505);
        assert_eq!(status_of(b"GET / HTTP/x.1\r\n"), 400);
        assert_eq!(status_of(b"GET / HTTP/x"), 400);
    }

    /// RFC 9112 §3.2: a Host value that is not `uri-host [":" port]` is a 400.
    #[test]
    fn host_value_must_be_a_host() {
        for (host, ok) in [
            ("localhost:8001", true),
            ("[::1]:8080", true),
            ("", true),
            ("a b", false),
            ("user@example.com", false),
            ("example.com/path", false),
        ] {
            let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let got = parse(request.as_bytes()).map_err(|r| r.status);
            assert_eq!(got.is_ok(), ok, "Host: {host} -> {got:?}");
        }
    }

    #[test]
    fn http10_needs_no_host() {
        let (request, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(request.version, Version::Http10);
    }

    #[test]
    fn keep_alive_follows_rfc9112() {
        let table: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        ];
        for (input, want) in table {
            assert_eq!(complete(input).0.keep_alive(), *want, "{input:?}");
        }
    }

    fn framing_of(headers: &str) -> Result<BodyFraming, Rejection> {
        let head = format!("POST / HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
        complete(head.as_bytes()).0.body_framing(&Limits::default())
    }

    #[test]
    fn body_framing_and_smuggling_defences() {
        use BodyFraming::*;
        let table: &[(&str, Result<BodyFraming, u16>)] = &[
            ("", Ok(Empty)),
            ("Content-Length: 5\r\n", Ok(Length(5))),
            ("Content-Length: 5\r\nContent-Length: 5\r\n", Ok(Length(5))),
            ("Content-Length: 5, 5\r\n", Ok(Length(5))),
            ("Transfer-Encoding: chunked\r\n", Ok(Chunked)),
            ("Transfer-Encoding: Chunked\r\n", Ok(Chunked)),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                Err(400),
            ),
            ("Content-Length: -1\r\n", Err(400)),
            ("Content-Length: +5\r\n", Err(400)),
            ("Content-Length: 0x5\r\n", Err(400)),
            ("Content-Length: 5\r\nContent-Length: 6\r\n", Err(400)),
            ("Content-Length: 5, 6\r\n", Err(400)),
            ("Content-Length: 99999999999999999999\r\n", Err(400)),
            ("Content-Length: 20000000\r\n", Err(413)),
            ("Transfer-Encoding: gzip\r\n", Err(501)),
            ("Transfer-Encoding: chunked, gzip\r\n", Err(400)),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                Err(400),
            ),
        ];
        for (headers, want) in table {
            let got = framing_of(headers).map_err(|r| r.status);
            assert_eq!(&got, want, "{headers:?}");
        }
        let te10 = complete(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").0;
        assert_eq!(
            te10.body_framing(&Limits::default()).map_err(|r| r.status),
            Err(400)
        );
    }

    /// Feed `input` in pieces of `step` bytes; return (payload, bytes used).
    fn decode(framing: BodyFraming, input: &[u8], step: usize) -> Result<(Vec<u8>, usize), u16> {
        let mut decoder = BodyDecoder::new(framing, &Limits::default());
        let mut out = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step) {
            let n = decoder.feed(piece, &mut out).map_err(|r| r.status)?;
            used += n;
            if n < piece.len() {
                break;
            }
        }
        assert!(decoder.is_done(), "decoder not done after {input:?}");
        Ok((out, used))
    }

    #[test]
    fn chunked_decodes_in_any_split() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\nGET /next";
        for step in [1, 2, 3, 7, 100] {
            let (out, used) = decode(BodyFraming::Chunked, body, step).unwrap();
            assert_eq!(out, b"hello, world", "step {step}");
            assert_eq!(&body[used..], b"GET /next", "step {step}");
        }
    }

    #[test]
    fn length_decoder_stops_at_the_length() {
        let (out, used) = decode(BodyFraming::Length(3), b"abcdef", 2).unwrap();
        assert_eq!((out.as_slice(), used), (b"abc".as_slice(), 3));
    }

    #[test]
    fn chunked_rejections() {
        let table: &[(&[u8], u16)] = &[
            (b"zz\r\n", 400),
            (b"\r\n", 400),
            (b"3\r\nabcdef\r\n", 400),
            (b"fffffffffffffffff\r\n", 400),
            (b"1000000\r\n", 413),
        ];
        for (input, want) in table {
            let mut decoder = BodyDecoder::new(BodyFraming::Chunked, &Limits::default());
            let got = decoder.feed(input, &mut Vec::new()).map_err(|r| r.status);
            assert_eq!(got, Err(*want), "{input:?}");
        }
    }

    #[test]
    fn response_head_renders_crlf() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_255_200);
        let mut out = Vec::new();
        ResponseHead::new(200)
            .header("Content-Type", "text/plain")
            .render_into(&mut out, Framing::Length(5), true, at);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
             Date: Sat, 21 Nov 2026 10:00:00 GMT\r\nContent-Length: 5\r\n\
             Connection: keep-alive\r\n\r\n"
        );
        let mut out = Vec::new();
        ResponseHead::new(200).render_into(&mut out, Framing::UntilClose, true, at);
        assert!(out.ends_with(b"Connection: close\r\n\r\n"));
    }

    #[test]
    fn chunks_and_errors() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"hello, world");
        write_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        assert_eq!(out, b"c\r\nhello, world\r\n0\r\n\r\n");
        let error = String::from_utf8(Rejection::new(431, "too big").response()).unwrap();
        assert!(error.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(error.contains("Connection: close\r\n"));
        assert!(error.ends_with("\r\n\r\n431 Request Header Fields Too Large: too big\n"));
    }
}
