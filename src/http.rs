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
    /// The request target, split and checked once while the head was parsed.
    pub target: Target,
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

    /// The error page for this rejection. It ends the connection: after a
    /// framing error nobody knows where the next request would start.
    pub fn to_response(&self) -> Response {
        Response::error(self.status, self.detail)
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
        target: Target::parse(
            parsed.method.expect("complete parse has a method"),
            parsed.path.expect("complete parse has a target"),
        )?,
        version: match parsed.version.expect("complete parse has a version") {
            0 => Version::Http10,
            _ => Version::Http11,
        },
        headers: owned_headers(parsed.headers),
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

/// The request target (RFC 9112 §3.2), split once while the head is parsed,
/// so that no later code cuts the string at `?` again.
///
/// Four forms exist. Every server must accept two of them:
///
/// - origin-form `/path?query`, what browsers and curl send;
/// - absolute-form `http://host/path?query`, what clients send to a proxy,
///   and which §3.2.2 says every server MUST accept as well;
///
/// and two are for one method each: asterisk-form `*` for `OPTIONS *`, and
/// authority-form `host:port` for `CONNECT`, which no rung implements (the
/// method gets its 501 like any other it does not know).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The target exactly as sent, for the access log.
    raw: String,
    form: TargetForm,
    /// Where the path and the query sit in `raw` (the query without its `?`).
    path: std::ops::Range<usize>,
    query: Option<std::ops::Range<usize>>,
}

/// Which of RFC 9112's four forms a [`Target`] was sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    Origin,
    /// `http://authority/path?query`; the authority replaces `Host` (§3.2.2).
    Absolute {
        authority_end: usize,
    },
    Asterisk,
    Authority,
}

impl Target {
    /// Split `raw` into its parts, or refuse it with 400.
    pub fn parse(method: &str, raw: &str) -> Result<Target, Rejection> {
        let bad = |detail| Err(Rejection::new(400, detail));
        let split = |from: usize, form: TargetForm| {
            let (path_end, query) = match raw[from..].find('?') {
                Some(q) => (from + q, Some(from + q + 1..raw.len())),
                None => (raw.len(), None),
            };
            Target {
                raw: raw.to_string(),
                form,
                path: from..path_end,
                query,
            }
        };
        if raw.starts_with('/') {
            return Ok(split(0, TargetForm::Origin));
        }
        if raw == "*" {
            return match method {
                "OPTIONS" => Ok(split(0, TargetForm::Asterisk)),
                _ => bad("the target * is for OPTIONS only"),
            };
        }
        if method == "CONNECT" {
            return Ok(split(raw.len(), TargetForm::Authority));
        }
        // absolute-form: `http://` or `https://`, any case, then the authority.
        let scheme_end = raw.find("://").unwrap_or(0);
        let scheme = &raw[..scheme_end];
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return bad("the request target is neither a path nor an http URL");
        }
        let authority = scheme_end + 3;
        let authority_end = raw[authority..]
            .find(['/', '?'])
            .map_or(raw.len(), |i| authority + i);
        if authority_end == authority {
            return bad("the URL in the request target has no host");
        }
        Ok(split(authority_end, TargetForm::Absolute { authority_end }))
    }

    /// The target as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn form(&self) -> TargetForm {
        self.form
    }

    /// The path, still percent-encoded: `/a%20b` for `/a%20b?x=1`. An
    /// absolute-form target without a path (`http://host`) has the path `/`.
    pub fn path(&self) -> &str {
        match &self.raw[self.path.clone()] {
            "" if self.form != TargetForm::Authority => "/",
            path => path,
        }
    }

    /// The query after `?`, raw, or `""` when there is none.
    pub fn query(&self) -> &str {
        self.query.clone().map_or("", |q| &self.raw[q])
    }

    /// Did the target have a `?` at all (`/a?` has an empty query)?
    pub fn has_query(&self) -> bool {
        self.query.is_some()
    }

    /// The path percent-decoded, as bytes: nothing says it is UTF-8.
    pub fn decoded_path(&self) -> Vec<u8> {
        percent_decode(self.path())
    }

    /// The host (and port) an absolute-form target names.
    pub fn authority(&self) -> Option<&str> {
        match self.form {
            TargetForm::Absolute { authority_end } => {
                let start = self.raw.find("://").map_or(0, |i| i + 3);
                Some(&self.raw[start..authority_end])
            }
            TargetForm::Authority => Some(&self.raw),
            _ => None,
        }
    }

    /// Path and query as origin-form, `/path?query`: what a proxy sends on.
    pub fn origin_form(&self) -> String {
        match self.query {
            Some(_) => format!("{}?{}", self.path(), self.query()),
            None => self.path().to_string(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Request {
    /// Every value of the header `name` (case-insensitive), in order.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        header_values(&self.headers, name)
    }

    /// The first value of header `name` as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_text(&self.headers, name)
    }

    /// The path part of the target (before `?`), still percent-encoded.
    pub fn path(&self) -> &str {
        self.target.path()
    }

    /// The query part of the target (after `?`), or `""`.
    pub fn query(&self) -> &str {
        self.target.query()
    }

    /// A HEAD request: answered with the head a GET would get, and no body
    /// (RFC 9110 §9.3.2). [`Response::plan`] is the one place that acts on it.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// The host the request is for: an absolute-form target's authority,
    /// which RFC 9112 §3.2.2 says wins over `Host`, else the `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.target.authority().or_else(|| self.header("host"))
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
        keep_alive(&self.headers, self.version)
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
            // `gzip, chunked` is well framed, but we cannot undo the gzip:
            // §6.1 says to answer a coding we do not understand with 501.
            // `chunked` anywhere but last (or twice) leaves the body's end
            // unknowable, which is a malformed message: 400 (§6.3 rule 4).
            return match codings.as_slice() {
                [only] if only == b"chunked" => Ok(BodyFraming::Chunked),
                [first @ .., last]
                    if last == b"chunked" && !first.iter().any(|c| c == b"chunked") =>
                {
                    Err(Rejection::new(501, "a transfer coding other than chunked"))
                }
                _ if codings.iter().any(|c| c == b"chunked") => Err(Rejection::new(
                    400,
                    "chunked must be the last transfer coding, and only once",
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
    /// Responses only: the body ends when the server closes the connection.
    UntilClose,
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
    /// A response body without length: everything until EOF.
    UntilClose,
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
            BodyFraming::UntilClose => DecodeState::UntilClose,
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

    /// The peer closed the connection: was that the body's end (a
    /// close-delimited response), or did the body stop short?
    pub fn finish_at_eof(&mut self) -> Result<(), Rejection> {
        match self.state {
            DecodeState::Done => Ok(()),
            DecodeState::UntilClose => {
                self.state = DecodeState::Done;
                Ok(())
            }
            _ => Err(Rejection::new(
                400,
                "the connection closed before the body ended",
            )),
        }
    }

    /// A decoder for a response body a client reads (`loadgen`, the tests,
    /// the grader, rung 8's proxy): no size limit of ours applies.
    pub fn unlimited(framing: BodyFraming) -> Self {
        let mut decoder = BodyDecoder::new(framing, &Limits::default());
        decoder.max_body = u64::MAX;
        decoder
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
                DecodeState::UntilClose => {
                    self.produced += rest.len() as u64;
                    if self.produced > self.max_body {
                        return Err(Rejection::new(413, "the body is too large"));
                    }
                    out.extend_from_slice(rest);
                    rest.len()
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

/// `chunk-size [ chunk-ext ] CRLF`, where chunk-size is 1*HEXDIG (RFC 9112
/// §7.1); httparse parses it, extensions ignored as the RFC allows. `line`
/// came without its `\n`; a bare LF line end is tolerated (§2.2).
fn parse_chunk_size(line: &[u8]) -> Result<u64, Rejection> {
    let bad = Rejection::new(400, "invalid chunk size");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // httparse reads an empty size as 0; the grammar wants a digit.
    if !line.first().is_some_and(u8::is_ascii_hexdigit) {
        return Err(bad);
    }
    match httparse::parse_chunk_size(&[line, b"\r\n"].concat()) {
        Ok(httparse::Status::Complete((_, size))) => Ok(size),
        _ => Err(bad),
    }
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

/// A response before it is written: status, the headers its producer chose,
/// and the body. How it is framed on the wire (Content-Length, chunked, or
/// close; keep-alive or not; a body or none) is not the producer's business:
/// [`Response::plan`] settles it, in one place, for every rung.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// A reason phrase other than the standard one: RFC 3875 §6.3.3 lets a
    /// CGI script say `Status: 299 Custom Thing`, and that is what is sent.
    pub reason: Option<String>,
    /// The producer's headers. Never `Date`, `Content-Length`,
    /// `Transfer-Encoding` or `Connection`: [`write_head`](Self::write_head)
    /// adds those from the plan.
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// This response must end the connection, whatever the client asked:
    /// error pages do, since after a bad request nobody knows where the
    /// next one would start.
    pub close: bool,
}

/// What follows a response head.
#[derive(Debug)]
pub enum Body {
    /// No body: a redirect, a 304, an empty answer.
    Empty,
    /// A body already in memory: a page, a listing, an error page.
    Bytes(Vec<u8>),
    /// `len` bytes of this file from its start, which the rung copies its own
    /// way (`sendfile(2)`, or `read` + `write`). If the file turns out shorter
    /// (truncated meanwhile), the framing is broken: close the connection.
    File { file: std::fs::File, len: u64 },
    /// The body comes later, from something the rung drives: a CGI script's
    /// stdout, a WSGI app's iterable, an upstream server. `len` is its length
    /// when known in advance; without it the body is sent chunked (HTTP/1.1)
    /// or delimited by closing the connection (HTTP/1.0).
    Stream { len: Option<u64> },
}

/// How one response goes on the wire, decided by [`Response::plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub framing: Framing,
    /// Send the body? Not for HEAD, and never for 1xx, 204 and 304.
    pub send_body: bool,
    /// May the connection carry another request after this one?
    pub keep_alive: bool,
}

/// What a server says about itself in every response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerInfo {
    /// The version on the status line. A server that says `HTTP/1.0` (rung
    /// 4 under `-p HTTP/1.0`, Python's default) sends no chunked body and
    /// closes the connection after every response, as `http.server` does.
    pub protocol: Version,
    /// The `Server` header, if any.
    pub software: Option<&'static str>,
}

impl ServerInfo {
    /// HTTP/1.1 and no `Server` header: what most rungs say.
    pub const PLAIN: ServerInfo = ServerInfo {
        protocol: Version::Http11,
        software: None,
    };
}

impl Response {
    /// A response with this status, no headers and no body yet.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            reason: None,
            headers: Vec::new(),
            body: Body::Empty,
            close: false,
        }
    }

    /// Add a header. Names and values must not contain CR or LF; the caller
    /// controls them (a CGI script's headers are checked in `ladder::cgi`).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// A complete response with a body in memory.
    pub fn with_bytes(status: u16, content_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        Response::new(status)
            .header("Content-Type", content_type)
            .body(Body::Bytes(bytes.into()))
    }

    /// The error page for `status`, in the ladder's one style (see
    /// [`set_error_page`]); it always ends the connection.
    pub fn error(status: u16, detail: &str) -> Self {
        let page = ERROR_PAGE.get().copied().unwrap_or(plain_error_page);
        let (content_type, body) = page(status, detail);
        let mut response = Response::with_bytes(status, content_type, body);
        response.close = true;
        response
    }

    /// The body's length, when it is known before the body is sent.
    pub fn body_len(&self) -> Option<u64> {
        match &self.body {
            Body::Empty => Some(0),
            Body::Bytes(bytes) => Some(bytes.len() as u64),
            Body::File { len, .. } => Some(*len),
            Body::Stream { len } => *len,
        }
    }

    /// Settle how this response is framed, for this request (`None`: the
    /// head never parsed), on a server that speaks `server.protocol` and is
    /// willing to keep the connection (`may_keep_alive`: false while it shuts
    /// down, or for a rung that serves one request per connection).
    pub fn plan(
        &self,
        request: Option<&Request>,
        server: &ServerInfo,
        may_keep_alive: bool,
    ) -> Plan {
        let head = request.is_some_and(Request::is_head);
        // RFC 9110 §6.4.1: 1xx, 204 and 304 never have a body, nor a length.
        let no_body = matches!(self.status, 100..=199 | 204 | 304);
        let http11 = server.protocol == Version::Http11
            && request.is_some_and(|r| r.version == Version::Http11);
        let framing = match self.body_len() {
            _ if no_body => Framing::NoBody,
            // HEAD announces the length of the body it does not send.
            Some(len) => Framing::Length(len),
            None if head => Framing::NoBody,
            None if http11 => Framing::Chunked,
            None => Framing::UntilClose,
        };
        // RFC 9112 §9.3: the client decides with its version and its
        // `Connection` header, unless this response or the server says no.
        let keep_alive = may_keep_alive
            && !self.close
            && server.protocol == Version::Http11
            && framing != Framing::UntilClose
            && request.is_some_and(Request::keep_alive);
        Plan {
            framing,
            send_body: !head && !no_body,
            keep_alive,
        }
    }

    /// Write the head as `plan` says: status line, `Server`, the producer's
    /// headers, `Date`, the framing header, `Connection`, and the blank line.
    /// Every line ends in CRLF (RFC 9112 §2.1); a bare LF is what lesson
    /// 02's `--naive` mode shows going wrong.
    pub fn write_head(&self, plan: &Plan, server: &ServerInfo, out: &mut Vec<u8>) {
        use std::io::Write;
        let reason = self.reason.as_deref().unwrap_or(reason(self.status));
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{} {} {reason}\r\n", server.protocol, self.status);
        if let Some(software) = server.software {
            let _ = write!(out, "Server: {software}\r\n");
        }
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.extend_from_slice(b"Date: ");
        write_date(out);
        out.extend_from_slice(b"\r\n");
        match plan.framing {
            Framing::Length(n) => {
                let _ = write!(out, "Content-Length: {n}\r\n");
            }
            Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            Framing::UntilClose | Framing::NoBody => {}
        }
        out.extend_from_slice(if plan.keep_alive {
            b"Connection: keep-alive\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        });
    }

    /// Plan and render in one go: the plan, and the head followed by an
    /// in-memory body when one is to be sent. A `File` or `Stream` body is
    /// left in `self.body` for the rung to send.
    pub fn render(
        &mut self,
        request: Option<&Request>,
        server: &ServerInfo,
        may_keep_alive: bool,
    ) -> (Plan, Vec<u8>) {
        let plan = self.plan(request, server, may_keep_alive);
        let mut out = Vec::with_capacity(256);
        self.write_head(&plan, server, &mut out);
        if let Body::Bytes(bytes) = &self.body {
            if plan.send_body {
                out.extend_from_slice(bytes);
            }
        }
        (plan, out)
    }
}

/// A response head as a client reads it: `loadgen`, the tests, the grader,
/// and rung 8's proxy reading its upstream all parse responses here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHeadIn {
    pub version: Version,
    pub status: u16,
    /// The reason phrase as sent (it may differ from [`reason`]).
    pub reason: String,
    pub headers: Vec<Header>,
}

/// Parse a response head from the start of `buf`: `Ok(None)` means read
/// more; otherwise the head and how many bytes of `buf` it used. A
/// malformed head is `io::ErrorKind::InvalidData`: for a client, a broken
/// server is an I/O failure, not a status to answer with.
pub fn parse_response(buf: &[u8]) -> std::io::Result<Option<(ResponseHeadIn, usize)>> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut slots = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Response::new(&mut slots);
    let consumed = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(invalid(format!("malformed response head: {err}"))),
    };
    let head = ResponseHeadIn {
        version: match parsed.version.expect("complete parse has a version") {
            0 => Version::Http10,
            _ => Version::Http11,
        },
        status: parsed.code.expect("complete parse has a status"),
        reason: parsed.reason.unwrap_or_default().to_string(),
        headers: owned_headers(parsed.headers),
    };
    Ok(Some((head, consumed)))
}

impl ResponseHeadIn {
    /// Every value of the header `name` (case-insensitive), in order.
    pub fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        header_values(&self.headers, name)
    }

    /// The first value of header `name` as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_text(&self.headers, name)
    }

    /// RFC 9112 §6.3, from the client's side: how the body after this head
    /// is delimited, given that the request was (or was not) a HEAD.
    pub fn body_framing(&self, request_was_head: bool) -> std::io::Result<BodyFraming> {
        let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        if request_was_head || matches!(self.status, 100..=199 | 204 | 304) {
            return Ok(BodyFraming::Empty);
        }
        let chunked = self.values("transfer-encoding").any(|v| {
            v.split(|&b| b == b',')
                .next_back()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        });
        if chunked {
            return Ok(BodyFraming::Chunked);
        }
        let mut lengths = self
            .values("content-length")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|v| parse_content_length(v.trim_ascii()));
        match lengths.next() {
            None => Ok(BodyFraming::UntilClose),
            Some(None) => Err(invalid("invalid Content-Length in the response")),
            Some(Some(n)) if lengths.all(|m| m == Some(n)) => Ok(if n == 0 {
                BodyFraming::Empty
            } else {
                BodyFraming::Length(n)
            }),
            Some(Some(_)) => Err(invalid("conflicting Content-Length in the response")),
        }
    }

    /// Will the server keep the connection after this response (RFC 9112 §9.3)?
    pub fn keep_alive(&self) -> bool {
        keep_alive(&self.headers, self.version)
    }
}

/// httparse's borrowed headers, copied out of the read buffer.
fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<Header> {
    headers
        .iter()
        .map(|h| Header {
            name: h.name.to_string(),
            value: h.value.to_vec(),
        })
        .collect()
}

/// The first value of header `name` as text, if present and valid UTF-8.
fn header_text<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    header_values(headers, name)
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Every value of header `name` in `headers`, case-insensitively.
fn header_values<'a, 'n>(
    headers: &'a [Header],
    name: &'n str,
) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_slice())
}

/// RFC 9112 §9.3, the same for requests and responses: `close` in
/// `Connection` ends it; otherwise HTTP/1.1 keeps the connection open by
/// default, and HTTP/1.0 only with `Connection: keep-alive`.
fn keep_alive(headers: &[Header], version: Version) -> bool {
    let has = |token: &str| {
        header_values(headers, "connection").any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if has("close") {
        return false;
    }
    match version {
        Version::Http11 => true,
        Version::Http10 => has("keep-alive"),
    }
}

/// How an error page looks: its Content-Type and its body.
pub type ErrorPage = fn(status: u16, detail: &str) -> (&'static str, Vec<u8>);

static ERROR_PAGE: std::sync::OnceLock<ErrorPage> = std::sync::OnceLock::new();

/// The ladder's error page: one line of plain text, readable in curl and
/// telnet, `400 Bad Request: the request head is malformed`.
pub fn plain_error_page(status: u16, detail: &str) -> (&'static str, Vec<u8>) {
    let body = format!("{status} {}: {detail}\n", reason(status));
    ("text/plain; charset=utf-8", body.into_bytes())
}

/// Choose the error page for the whole process, once, at start-up. Every
/// rung shows [`plain_error_page`] except rung 4, which is a clone of
/// `python3 -m http.server` and shows Python's HTML page, bad heads included.
pub fn set_error_page(page: ErrorPage) {
    let _ = ERROR_PAGE.set(page);
}

/// Append the current time as an IMF-fixdate (RFC 9110 §5.6.7). Formatting a
/// date costs more than the rest of a small response head, so each thread
/// formats it once per second and copies it the rest of the time.
pub fn write_date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *text = httpdate::fmt_http_date(now);
            *cached = second;
        }
        out.extend_from_slice(text.as_bytes());
    });
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

// ---------------------------------------------------------------------------
// A client reading one whole response with blocking reads: the integration
// tests (`tests/common`) and the `grade` tool. It only drives the sans-I/O
// parts above (`loadgen`, which reads without blocking, drives them itself).

/// One whole response, as a blocking client read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseIn {
    pub head: ResponseHeadIn,
    /// The head's bytes as received, status line through the empty line.
    pub raw_head: Vec<u8>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Read one response from `reader`: the head with [`parse_response`], then
/// the body as [`ResponseHeadIn::body_framing`] delimits it, decoded by
/// [`BodyDecoder::unlimited`]. `buf` holds bytes read before (the start of a
/// pipelined answer); bytes after this response stay in it for the next
/// call. A close before the end is `UnexpectedEof`, a malformed response
/// `InvalidData`.
pub fn read_response(
    reader: &mut impl std::io::Read,
    buf: &mut Vec<u8>,
    request_was_head: bool,
) -> std::io::Result<ResponseIn> {
    use std::io::{Error, ErrorKind};
    let mut chunk = [0u8; 16 * 1024];
    // Read more into `buf`; false at EOF.
    let mut more = |buf: &mut Vec<u8>| -> std::io::Result<bool> {
        loop {
            match reader.read(&mut chunk) {
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    return Ok(n > 0);
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    };
    let (head, head_len) = loop {
        if let Some(parsed) = parse_response(buf)? {
            break parsed;
        }
        if !more(buf)? {
            let got = String::from_utf8_lossy(buf);
            let why = format!("the connection closed before a whole response head; got {got:?}");
            return Err(Error::new(ErrorKind::UnexpectedEof, why));
        }
    };
    let raw_head = buf.drain(..head_len).collect();
    let mut decoder = BodyDecoder::unlimited(head.body_framing(request_was_head)?);
    let mut body = Vec::new();
    loop {
        let used = decoder
            .feed(buf, &mut body)
            .map_err(|rejection| Error::new(ErrorKind::InvalidData, rejection.detail))?;
        buf.drain(..used);
        if decoder.is_done() {
            break;
        }
        if !more(buf)? {
            decoder.finish_at_eof().map_err(|_| {
                let why = "the connection closed in the middle of a response body";
                Error::new(ErrorKind::UnexpectedEof, why)
            })?;
            break;
        }
    }
    Ok(ResponseIn {
        head,
        raw_head,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("Transfer-Encoding: gzip, chunked\r\n", Err(501)),
            (
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                Err(501),
            ),
            ("Transfer-Encoding: chunked, chunked\r\n", Err(400)),
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
        let (request, _) = complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let (_, out) = Response::with_bytes(200, "text/plain", "hello").render(
            Some(&request),
            &ServerInfo::PLAIN,
            true,
        );
        let text = String::from_utf8(out).unwrap();
        let date = text
            .split("Date: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
        assert_eq!(
            text.replace(date, "<date>"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: <date>\r\n\
             Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"
        );
    }

    #[test]
    fn chunks_and_errors() {
        let mut out = Vec::new();
        write_chunk(&mut out, b"hello, world");
        write_chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        assert_eq!(out, b"c\r\nhello, world\r\n0\r\n\r\n");
        let (plan, error) =
            Rejection::new(431, "too big")
                .to_response()
                .render(None, &ServerInfo::PLAIN, true);
        assert!(!plan.keep_alive);
        let error = String::from_utf8(error).unwrap();
        assert!(error.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(error.contains("Connection: close\r\n"));
        assert!(error.ends_with("\r\n\r\n431 Request Header Fields Too Large: too big\n"));
    }

    /// RFC 9112 §3.2: the four target forms, split once.
    #[test]
    fn target_forms() {
        /// (path, query, authority) when accepted, the status when refused.
        type Split<'a> = Result<(&'a str, &'a str, Option<&'a str>), u16>;
        let table: &[(&str, &str, Split)] = &[
            ("GET", "/a/b?x=1&y", Ok(("/a/b", "x=1&y", None))),
            ("GET", "/a?", Ok(("/a", "", None))),
            (
                "GET",
                "http://example.com/foo?q",
                Ok(("/foo", "q", Some("example.com"))),
            ),
            (
                "GET",
                "HTTP://example.com:81",
                Ok(("/", "", Some("example.com:81"))),
            ),
            ("GET", "https://h?q=1", Ok(("/", "q=1", Some("h")))),
            ("OPTIONS", "*", Ok(("*", "", None))),
            ("GET", "*", Err(400)),
            ("GET", "example.com:443", Err(400)),
            ("GET", "ftp://example.com/", Err(400)),
            ("GET", "http:///nohost", Err(400)),
            (
                "CONNECT",
                "example.com:443",
                Ok(("", "", Some("example.com:443"))),
            ),
        ];
        for (method, raw, want) in table {
            let got = Target::parse(method, raw)
                .map(|t| {
                    (
                        t.path().to_string(),
                        t.query().to_string(),
                        t.authority().map(String::from),
                    )
                })
                .map_err(|r| r.status);
            let want = want.map(|(p, q, a)| (p.to_string(), q.to_string(), a.map(String::from)));
            assert_eq!(got, want, "{method} {raw}");
        }
        let (request, _) = complete(b"GET http://other/x%20y HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(request.host(), Some("other"));
        assert_eq!(request.target.decoded_path(), b"/x y");
        assert_eq!(request.target.origin_form(), "/x%20y");
        assert_eq!(request.request_line(), "GET http://other/x%20y HTTP/1.1");
    }

    fn plan_for(head: &[u8], response: &Response, server: ServerInfo) -> Plan {
        let request = head
            .is_empty()
            .then_some(())
            .map_or_else(|| Some(complete(head).0), |()| None);
        response.plan(request.as_ref(), &server, true)
    }

    /// One function frames every response: HEAD, 1xx/204/304, length vs
    /// chunked vs close, and keep-alive per RFC 9112 §9.3.
    #[test]
    fn plan_settles_framing() {
        const GET11: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        const HEAD11: &[u8] = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n";
        const GET10: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
        const CLOSE11: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let bytes = || Response::new(200).body(Body::Bytes(b"hello".to_vec()));
        let stream = || Response::new(200).body(Body::Stream { len: None });
        let http10 = ServerInfo {
            protocol: Version::Http10,
            software: None,
        };
        let table: Vec<(&str, &[u8], Response, ServerInfo, Plan)> = vec![
            (
                "bytes",
                GET11,
                bytes(),
                ServerInfo::PLAIN,
                Plan {
                    framing: Framing::Length(5),
                    send_body: true,
                    keep_alive: true,
                },
            ),
            (
                "HEAD announces",
                HEAD11,
                bytes(),
                ServerInfo::PLAIN,
                Plan {
                    framing: Framing::Length(5),
                    send_body: false,
                    keep_alive: true,
                },
            ),
            (
                "stream on 1.1",
                GET11,
                stream(),
                ServerInfo::PLAIN,
                Plan {
                    framing: Framing::Chunked,
                    send_body: true,
                    keep_alive: true,
                },
            ),
            (
                "stream on 1.0",
                GET10,
                stream(),
                ServerInfo::PLAIN,
                Plan {
                    framing: Framing::UntilClose,
                    send_body: true,
                    keep_alive: false,
                },
            ),
            (
                "stream, server 1.0",
                GET11,
                stream(),
                http10,
                Plan {
                    framing: Framing::UntilClose,
                    send_body: true,
                    keep_alive: false,
                },
            ),
            (
                "HEAD of a stream",
                HEAD11,
                stream(),
                ServerInfo::PLAIN,
                Plan {
                    framing: Framing::NoBody,
                    send_body: false,
                    keep_alive: true,
                },
            ),
            (
                "304",
                GET11,
                Response::new(304),
                ServerInfo::PLAIN,
                Plan {
                    framing: Framing::NoBody,
                    send_body: false,
                    keep_alive: true,
                },
            ),
            (
                "204 with bytes",
                GET11,
                bytes().tap_status(204),
                ServerInfo::PLAIN,
                Plan {
                    framing: Framing::NoBody,
                    send_body: false,
                    keep_alive: true,
                },
            ),
            (
                "client closes",
                CLOSE11,
                bytes(),
                ServerInfo::PLAIN,
                Plan {
                    framing: Framing::Length(5),
                    send_body: true,
                    keep_alive: false,
                },
            ),
            (
                "error page",
                GET11,
                Response::error(404, "no"),
                ServerInfo::PLAIN,
                Plan {
                    framing: Framing::Length(18),
                    send_body: true,
                    keep_alive: false,
                },
            ),
            (
                "no request",
                b"",
                Response::error(400, "bad"),
                ServerInfo::PLAIN,
                Plan {
                    framing: Framing::Length(21),
                    send_body: true,
                    keep_alive: false,
                },
            ),
        ];
        for (name, head, response, server, want) in table {
            assert_eq!(plan_for(head, &response, server), want, "{name}");
        }
    }

    impl Response {
        fn tap_status(mut self, status: u16) -> Self {
            self.status = status;
            self
        }
    }

    #[test]
    fn write_head_has_reason_server_and_framing() {
        let (request, _) = complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut response = Response::new(299)
            .header("X-A", "1")
            .body(Body::Bytes(b"ok".to_vec()));
        response.reason = Some("Custom Thing".into());
        let server = ServerInfo {
            protocol: Version::Http11,
            software: Some("Test/1"),
        };
        let (plan, out) = response.render(Some(&request), &server, true);
        assert!(plan.keep_alive);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 299 Custom Thing\r\nServer: Test/1\r\nX-A: 1\r\nDate: "),
            "{text}"
        );
        assert!(
            text.ends_with(" GMT\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"),
            "{text}"
        );
    }

    #[test]
    fn responses_parse_and_frame() {
        let raw = b"HTTP/1.1 200 Fine\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let (head, consumed) = parse_response(raw).unwrap().unwrap();
        assert_eq!(
            (head.status, head.reason.as_str(), head.version),
            (200, "Fine", Version::Http11)
        );
        let framing = head.body_framing(false).unwrap();
        assert_eq!(framing, BodyFraming::Chunked);
        let mut decoder = BodyDecoder::unlimited(framing);
        let mut body = Vec::new();
        assert_eq!(
            decoder.feed(&raw[consumed..], &mut body),
            Ok(raw.len() - consumed)
        );
        assert!(decoder.is_done());
        assert_eq!(body, b"hello");
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nX: y").unwrap(), None);
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        let until_close = parse_response(b"HTTP/1.0 200 OK\r\n\r\n")
            .unwrap()
            .unwrap()
            .0;
        assert!(!until_close.keep_alive());
        let framing = until_close.body_framing(false).unwrap();
        assert_eq!(framing, BodyFraming::UntilClose);
        let mut decoder = BodyDecoder::unlimited(framing);
        decoder.feed(b"all of it", &mut body).unwrap();
        assert!(!decoder.is_done());
        assert_eq!(decoder.finish_at_eof(), Ok(()));
        let head = parse_response(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n")
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(head.body_framing(false).unwrap(), BodyFraming::Empty);
        let short = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")
            .unwrap()
            .unwrap()
            .0;
        let mut decoder = BodyDecoder::unlimited(short.body_framing(false).unwrap());
        decoder.feed(b"abc", &mut body).unwrap();
        assert_eq!(decoder.finish_at_eof().map_err(|r| r.status), Err(400));
    }
}
