//! HTTP from a proxy's side: what it removes, what it adds, how it writes a
//! request to the server behind it and reads the whole response back.
//!
//! Introduced in lesson 08 (`lessons/08-proxy.md`), used by rung 8's proxy:
//! its flags ([`Options`]), the request it writes ([`write_request`],
//! [`Outgoing`]), the response it reads back ([`ResponseReader`], into a
//! [`Spool`]), the choice of upstream ([`Group`]). The parsing is
//! [`crate::http`]'s; when to write or read, and to which socket, is the
//! rung's.
//!
//! A proxy speaks twice: as a server to its client, and as a client to its
//! upstream. Some headers describe one connection only (RFC 9110 §7.6.1,
//! "hop-by-hop"): they must not cross. Others say who the original client
//! was, which the upstream can no longer see for itself (RFC 7239).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use nix::sys::sendfile::sendfile;

use crate::event_loop::Config;
use crate::http::{
    Body, BodyDecoder, Header, Limits, Request, Response, ResponseHeadIn, ServerInfo, TargetForm,
    parse_response,
};
use crate::http_connection::{BodySpill, RequestBody, Settings, temporary_file};
use crate::readiness::Backend;
use crate::static_files::{self, Root};

/// The proxy's flags, with nginx's directive names and defaults.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// An app server to pass requests to (repeat for several); nginx's `server` in `upstream`
    #[arg(long = "upstream", value_name = "HOST:PORT", required = true, value_parser = parse_upstream)]
    pub upstreams: Vec<SocketAddr>,

    /// Serve URLs under PREFIX from DIR ourselves (nginx's `location PREFIX { alias DIR; }`)
    #[arg(long = "static", value_name = "PREFIX=DIR", value_parser = parse_static)]
    pub statics: Vec<(String, PathBuf)>,

    /// How to pick an upstream for each request
    #[arg(long, value_enum, default_value_t = Balance::RoundRobin)]
    pub balance: Balance,

    /// Seconds a client has to send a whole request head (nginx's client_header_timeout)
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    pub client_header_timeout: Duration,

    /// Seconds a client may pause between two pieces of a request body; each piece
    /// restarts the clock (nginx's client_body_timeout)
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    pub client_body_timeout: Duration,

    /// Seconds an idle client connection is kept (nginx's keepalive_timeout)
    #[arg(long, value_name = "SECS", default_value = "75", value_parser = seconds)]
    pub keepalive_timeout: Duration,

    /// Largest request body; larger is 413 (nginx's client_max_body_size)
    #[arg(long, value_name = "BYTES", default_value = "1m", value_parser = parse_size)]
    pub client_max_body_size: u64,

    /// Bytes of one request body held in memory; the rest waits in a temporary file
    /// (nginx's client_body_buffer_size)
    #[arg(long, value_name = "BYTES", default_value = "16k", value_parser = parse_size)]
    pub client_body_buffer_size: u64,

    /// Seconds to connect to an upstream (nginx's proxy_connect_timeout)
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    pub proxy_connect_timeout: Duration,

    /// Seconds an upstream may stay silent while we send or read (nginx's proxy_read_timeout)
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    pub proxy_read_timeout: Duration,

    /// Seconds an upstream that refused or timed out is left alone (nginx's fail_timeout)
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub fail_timeout: Duration,

    /// Idle keep-alive connections kept per upstream (nginx's keepalive in `upstream`)
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub keepalive: usize,

    /// Seconds an idle upstream connection is kept in the pool (nginx's keepalive_timeout
    /// in `upstream`)
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    pub upstream_keepalive_timeout: Duration,

    /// Bytes of one response held in memory; the rest waits in a temporary file
    /// (nginx's proxy_buffers)
    #[arg(long, value_name = "BYTES", default_value = "64k", value_parser = parse_size)]
    pub proxy_buffers: u64,

    /// Largest temporary file for one response; larger is 502 (nginx's proxy_max_temp_file_size)
    #[arg(long, value_name = "BYTES", default_value = "1g", value_parser = parse_size)]
    pub proxy_max_temp_file_size: u64,

    /// Directory for those temporary files, of requests and responses (nginx's
    /// client_body_temp_path and proxy_temp_path)
    #[arg(long, value_name = "DIR", default_value = "/tmp")]
    pub temp_dir: PathBuf,

    /// Most client connections open at once; more are answered 503
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Set SO_REUSEPORT, so that several proxy processes listen on one port and the
    /// kernel spreads new connections over them: one process per core (nginx's
    /// `listen ... reuseport` with a worker per core)
    #[arg(long)]
    pub reuse_port: bool,
}

impl Options {
    /// The listening socket, shared with other processes if `--reuse-port`.
    pub fn listen(&self, addr: SocketAddr) -> io::Result<std::net::TcpListener> {
        match self.reuse_port {
            true => crate::cli::listen_reuse_port(addr),
            false => crate::cli::listen(addr),
        }
    }

    /// The event loop's configuration: the client side of the proxy.
    pub fn config(&self) -> Config {
        Config {
            backend: Backend::Mio,
            max_connections: self.max_connections,
            http: Settings {
                limits: Limits {
                    max_body: self.client_max_body_size,
                    ..Limits::default()
                },
                header_timeout: self.client_header_timeout,
                body_timeout: self.client_body_timeout,
                idle_timeout: self.keepalive_timeout,
                server: ServerInfo::PLAIN,
                // Our own timeouts always answer (502/504), and we log
                // ourselves, naming the upstream.
                answer_timeout: None,
                log_later: false,
            },
        }
    }

    /// Where a request body past `--client-body-buffer-size` goes.
    pub fn body_spill(&self) -> BodySpill {
        BodySpill {
            buffer: usize::try_from(self.client_body_buffer_size).unwrap_or(usize::MAX),
            dir: self.temp_dir.clone(),
        }
    }

    /// Where a response body past `--proxy-buffers` goes: shared by all.
    pub fn spool_limits(&self) -> Arc<SpoolLimits> {
        Arc::new(SpoolLimits {
            memory: usize::try_from(self.proxy_buffers).unwrap_or(usize::MAX),
            max_file: self.proxy_max_temp_file_size,
            dir: self.temp_dir.clone(),
        })
    }

    /// What clap cannot check (at most 64 upstreams, `--static` directories
    /// that exist), checked now rather than at the first request; and the
    /// `--static` roots.
    pub fn statics(&self) -> io::Result<Statics> {
        let mut statics = Vec::new();
        if self.upstreams.len() > 64 {
            let why = "at most 64 --upstream (a request's tries are a u64)";
            return Err(io::Error::other(why));
        }
        for (prefix, dir) in &self.statics {
            let root = Root::new(dir).map_err(|err| {
                let hint = "--static takes PREFIX=DIR with an existing directory";
                io::Error::new(
                    err.kind(),
                    format!("--static {prefix}={}: {err} ({hint})", dir.display()),
                )
            })?;
            statics.push((prefix.clone(), root));
        }
        Ok(Statics(statics))
    }
}

/// `--static PREFIX=DIR`: the URL prefixes the proxy serves from disk.
pub struct Statics(Vec<(String, Root)>);

impl Statics {
    /// A URL under a `--static` prefix, served from its DIR by rung 4's
    /// code, as nginx serves static files and passes the rest on; `None`:
    /// pass it on.
    pub fn respond(&self, request: &Request) -> Option<Response> {
        let (prefix, root) =
            (self.0.iter()).find(|(p, _)| request.path().starts_with(p.as_str()))?;
        Some(static_files::respond_below(root, prefix, request))
    }
}

/// GET, HEAD, PUT, DELETE, OPTIONS, TRACE (RFC 9110 §9.2.2): a request
/// that may be sent twice, to another upstream after a failure.
pub fn is_idempotent(request: &Request) -> bool {
    let method = request.method.as_str();
    ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"].contains(&method)
}

/// Timeouts up to a day: a deadline is `Instant + timeout`, which must not overflow.
fn seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(n) if n <= 86_400 => Ok(Duration::from_secs(n)),
        _ => Err(format!(
            "'{text}' is not a number of seconds from 0 to 86400"
        )),
    }
}

/// Headers that describe one connection and never cross a proxy, besides
/// the ones the `Connection` header names. RFC 9110 §7.6.1: "a proxy or
/// gateway MUST parse a received Connection header field before a message is
/// forwarded and, for each connection-option in this field, remove any header
/// or trailer field(s) from the message with the same name as the
/// connection-option, and then remove the Connection header field itself";
/// and Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade are
/// named there as fields to drop too. `Proxy-*` (Proxy-Authorization...)
/// is for this proxy alone. Content-Length and Transfer-Encoding go as well:
/// the body is re-framed for the next hop (it is whole in hand).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

// ANCHOR: hop_by_hop
/// Should this header stay on this side of the proxy? `connection` is
/// every value of the message's `Connection` header.
pub fn is_hop_by_hop(name: &str, connection: &[&[u8]]) -> bool {
    let listed = connection
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(name.as_bytes()));
    listed
        || HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || name.len() >= 6 && name[..6].eq_ignore_ascii_case("proxy-")
}
// ANCHOR_END: hop_by_hop

/// The headers that cross the proxy: all but the hop-by-hop ones.
pub fn end_to_end(headers: &[Header]) -> impl Iterator<Item = &Header> {
    let connection: Vec<&[u8]> = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .map(|h| h.value.as_slice())
        .collect();
    headers
        .iter()
        .filter(move |h| !is_hop_by_hop(&h.name, &connection))
}

/// Who the original client was, for the upstream: the peer address we
/// accepted, and the scheme it spoke to us.
#[derive(Debug, Clone, Copy)]
pub struct Forwarding {
    pub client: std::net::IpAddr,
    pub proto: &'static str,
}

impl Forwarding {
    /// A client that reached us over plain HTTP.
    pub fn http(peer: SocketAddr) -> Forwarding {
        Forwarding {
            client: peer.ip(),
            proto: "http",
        }
    }
}

// ANCHOR: write_request
/// Write the head of `request` for the upstream, whose whole body has
/// `body_len` bytes: the request line in origin-form (an absolute-form
/// target's authority becomes `Host`, RFC 9112 §3.2.2), the end-to-end
/// headers, the forwarding headers, and a `Content-Length` of our own.
/// HTTP/1.1 and no `Connection: close`: the connection may go back to the
/// pool afterwards.
pub fn write_request(out: &mut Vec<u8>, request: &Request, body_len: u64, from: Forwarding) {
    let _ = write!(out, "{} ", request.method);
    match request.target.form() {
        TargetForm::Absolute { .. } => {
            out.extend_from_slice(request.target.origin_form().as_bytes())
        }
        _ => out.extend_from_slice(request.target.as_str().as_bytes()),
    }
    let host = request.host().unwrap_or("");
    let _ = write!(out, " HTTP/1.1\r\nHost: {host}\r\n");
    let (mut xff, mut forwarded) = (None, None);
    for header in end_to_end(&request.headers) {
        let name = header.name.as_str();
        // Host is written above; the body is whole, nobody waits for a 100.
        if ["host", "expect"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            xff = Some(header.value.as_slice());
        } else if name.eq_ignore_ascii_case("forwarded") {
            forwarded = Some(header.value.as_slice());
        } else {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&header.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    from.write(out, xff, forwarded, host);
    // A body, or a method whose request has one by its nature: say its size.
    let had_body =
        request.header("content-length").is_some() || request.header("transfer-encoding").is_some();
    if body_len > 0 || had_body {
        let _ = write!(out, "Content-Length: {body_len}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
// ANCHOR_END: write_request

impl Forwarding {
    /// `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded`, each after
    /// what earlier proxies wrote (`xff`, `forwarded`).
    fn write(self, out: &mut Vec<u8>, xff: Option<&[u8]>, forwarded: Option<&[u8]>, host: &str) {
        // The de facto X-Forwarded-For: a list, each proxy appends its client.
        out.extend_from_slice(b"X-Forwarded-For: ");
        if let Some(earlier) = xff {
            out.extend_from_slice(earlier);
            out.extend_from_slice(b", ");
        }
        let _ = write!(
            out,
            "{}\r\nX-Forwarded-Proto: {}\r\n",
            self.client, self.proto
        );
        // RFC 7239 §4: `for` is a node; an IPv6 one is quoted and bracketed
        // (§6); a new element is appended after a comma (§7.1).
        out.extend_from_slice(b"Forwarded: ");
        if let Some(earlier) = forwarded {
            out.extend_from_slice(earlier);
            out.extend_from_slice(b", ");
        }
        match self.client {
            std::net::IpAddr::V4(ip) => _ = write!(out, "for={ip}"),
            std::net::IpAddr::V6(ip) => _ = write!(out, "for=\"[{ip}]\""),
        }
        let _ = write!(out, ";proto={}", self.proto);
        if !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic() && b != b'"') {
            let _ = write!(out, ";host=\"{host}\"");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// A request on its way to an upstream, kept whole for a retry: the head
/// (and a body held in memory) as bytes, then a body that spilled to a
/// file, sent by sendfile(2): from the page cache to the socket, never
/// through our memory.
pub struct Outgoing {
    bytes: Vec<u8>,
    file: Option<(File, u64)>,
    sent: u64,
}

impl Outgoing {
    pub fn new(request: &Request, body: RequestBody, from: Forwarding) -> Outgoing {
        let mut bytes = Vec::with_capacity(512);
        write_request(&mut bytes, request, body.len(), from);
        let file = match body {
            RequestBody::Memory(body) => {
                bytes.extend_from_slice(&body);
                None
            }
            RequestBody::File { file, len } => Some((file, len)),
        };
        Outgoing {
            bytes,
            file,
            sent: 0,
        }
    }

    /// Bytes in all, and bytes sent so far.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64 + self.file.as_ref().map_or(0, |(_, len)| *len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// From the start again, for another upstream.
    pub fn rewind(&mut self) {
        self.sent = 0;
    }

    /// One write(2) or sendfile(2) of what is left: the bytes written, or
    /// the socket's error (WouldBlock: its send buffer is full).
    pub fn write_to(&mut self, mut stream: &TcpStream) -> io::Result<usize> {
        let head = self.bytes.len() as u64;
        let n = match &self.file {
            _ if self.sent < head => stream.write(&self.bytes[self.sent as usize..])?,
            Some((file, len)) => {
                let mut offset = (self.sent - head) as libc::off_t;
                let count = usize::try_from(len + head - self.sent).unwrap_or(1 << 30);
                match sendfile(stream, file, Some(&mut offset), count.min(1 << 30)) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => n,
                    Err(errno) => return Err(errno.into()),
                }
            }
            None => 0,
        };
        self.sent += n as u64;
        Ok(n)
    }
}

/// Where a response body goes while it arrives: memory up to a limit, then
/// a temporary file (nginx's `proxy_buffers`, then `proxy_temp_path`).
pub struct Spool {
    memory: Vec<u8>,
    file: Option<File>,
    file_len: u64,
    limits: Arc<SpoolLimits>,
}

/// How much a [`Spool`] keeps in memory, where it spills, and how far.
#[derive(Debug, Clone)]
pub struct SpoolLimits {
    /// Bytes held in memory; past them, the body goes to a file.
    pub memory: usize,
    /// Bytes a file may take; past them the response is refused (nginx's
    /// `proxy_max_temp_file_size`; nginx then relays the rest unbuffered).
    pub max_file: u64,
    /// The directory for the files (unlinked at once: nobody sees them).
    pub dir: PathBuf,
}

// ANCHOR: spool
impl Spool {
    pub fn new(limits: Arc<SpoolLimits>) -> Spool {
        Spool {
            memory: Vec::new(),
            file: None,
            file_len: 0,
            limits,
        }
    }

    /// Bytes held so far, in memory and on disk.
    pub fn len(&self) -> u64 {
        self.file_len + self.memory.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Move what memory holds to the file once it is over the limit.
    fn spill(&mut self) -> io::Result<()> {
        if self.memory.len() <= self.limits.memory {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self
                .file
                .insert(temporary_file(&self.limits.dir, "proxy-temp")?),
        };
        self.file_len += self.memory.len() as u64;
        if self.file_len > self.limits.max_file {
            let why = "the response is larger than the temporary file may grow";
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, why));
        }
        // A blocking write on the loop's thread: the page cache takes it at
        // memory speed. In production, nginx can hand it to threads (`aio`).
        file.write_all(&self.memory)?;
        self.memory.clear();
        Ok(())
    }

    /// The body to answer with: the bytes, or the file (sent by sendfile).
    pub fn into_body(mut self) -> io::Result<Body> {
        let Some(mut file) = self.file.take() else {
            return Ok(Body::Bytes(self.memory));
        };
        file.write_all(&self.memory)?;
        let len = self.file_len + self.memory.len() as u64;
        Ok(Body::File { file, len })
    }
}
// ANCHOR_END: spool

/// Reads one whole response from an upstream, fed as bytes arrive: the head
/// with [`parse_response`], then the body decoded into a [`Spool`].
pub struct ResponseReader {
    head: Option<(ResponseHeadIn, BodyDecoder)>,
    /// Head bytes not yet parsed.
    pending: Vec<u8>,
    body: Spool,
    request_was_head: bool,
}

impl ResponseReader {
    pub fn new(request_was_head: bool, limits: Arc<SpoolLimits>) -> ResponseReader {
        ResponseReader {
            head: None,
            pending: Vec::new(),
            body: Spool::new(limits),
            request_was_head,
        }
    }

    /// Has anything of the response come yet?
    pub fn started(&self) -> bool {
        self.head.is_some() || !self.pending.is_empty()
    }

    /// Take `input`; true once the whole response is in. Bytes after its
    /// end would be a response to nothing: an error (`InvalidData`).
    pub fn feed(&mut self, mut input: &[u8]) -> io::Result<bool> {
        while self.head.is_none() {
            self.pending.extend_from_slice(input);
            input = &[];
            let Some((head, used)) = parse_response(&self.pending)? else {
                return Ok(false); // half a head: read more
            };
            // RFC 9110 §15.2: a 1xx is interim, the real answer follows.
            let rest = self.pending.split_off(used);
            self.pending = rest;
            if (100..200).contains(&head.status) && head.status != 101 {
                continue;
            }
            let decoder = BodyDecoder::unlimited(head.body_framing(self.request_was_head)?);
            self.head = Some((head, decoder));
            let body = std::mem::take(&mut self.pending);
            return self.feed_body(&body);
        }
        self.feed_body(input)
    }

    fn feed_body(&mut self, input: &[u8]) -> io::Result<bool> {
        let (_, decoder) = self.head.as_mut().expect("called with a head");
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let used = decoder
            .feed(input, &mut self.body.memory)
            .map_err(|rejection| invalid(rejection.detail))?;
        self.body.spill()?;
        if used < input.len() {
            return Err(invalid("the upstream sent more than its response"));
        }
        Ok(decoder.is_done())
    }

    /// The upstream closed: the end of a body delimited by closing, or a
    /// response cut short (`UnexpectedEof`).
    pub fn feed_eof(&mut self) -> io::Result<()> {
        let short = || io::Error::new(io::ErrorKind::UnexpectedEof, "the upstream closed early");
        let (_, decoder) = self.head.as_mut().ok_or_else(short)?;
        decoder.finish_at_eof().map_err(|_| short())
    }

    /// Did the upstream say the connection stays open for another request?
    /// Only meaningful once the response is whole.
    pub fn keep_alive(&self) -> bool {
        self.head.as_ref().is_some_and(|(head, _)| {
            head.keep_alive()
                && head
                    .body_framing(self.request_was_head)
                    .is_ok_and(|f| f != crate::http::BodyFraming::UntilClose)
        })
    }

    /// The response for our client: the upstream's status and end-to-end
    /// headers, and the body, whose framing [`Response::plan`] settles anew.
    /// nginx passes neither `Date` nor `Server` on (`proxy_pass_header`):
    /// the head we write has our own `Date`.
    pub fn into_response(self) -> io::Result<Response> {
        let (head, _) = self.head.expect("called once the response is whole");
        let mut response = Response::new(head.status);
        response.reason = Some(head.reason.clone());
        for header in end_to_end(&head.headers) {
            let name = header.name.as_str();
            if name.eq_ignore_ascii_case("date") || name.eq_ignore_ascii_case("server") {
                continue;
            }
            let value = String::from_utf8_lossy(&header.value).into_owned();
            response.headers.push((header.name.clone(), value));
        }
        response.body = if self.request_was_head {
            // The length of the body a GET would get, and no body (the
            // plan sends none for HEAD).
            let len = head.header("content-length").and_then(|n| n.parse().ok());
            Body::Stream { len }
        } else {
            self.body.into_body()?
        };
        Ok(response)
    }
}

/// How a proxy picks the upstream for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Balance {
    /// Each upstream in turn
    RoundRobin,
    /// The upstream with the fewest requests in flight
    LeastConn,
}

/// One server behind the proxy, as the proxy sees it.
#[derive(Debug)]
pub struct Server {
    pub addr: SocketAddr,
    /// The proxy's idle, kept-alive connections to it (its own ids for them).
    pub idle: Vec<usize>,
    /// Requests in flight to it: least-conn's measure.
    pub active: usize,
    /// Refused or timed out lately: left alone until then (nginx's
    /// `fail_timeout`, with `max_fails=1`).
    pub down_until: Option<Instant>,
}

/// The servers behind a proxy (nginx's `upstream` block) and the choice
/// among them.
#[derive(Debug)]
pub struct Group {
    pub servers: Vec<Server>,
    balance: Balance,
    fail_timeout: Duration,
    /// Round robin's position: the next server to try first.
    next: usize,
}

// ANCHOR: choose
impl Group {
    pub fn new(addrs: &[SocketAddr], balance: Balance, fail_timeout: Duration) -> Group {
        let server = |&addr| Server {
            addr,
            idle: Vec::new(),
            active: 0,
            down_until: None,
        };
        let servers = addrs.iter().map(server).collect();
        Group {
            servers,
            balance,
            fail_timeout,
            next: 0,
        }
    }

    /// The server for the next request, among those not `tried` (one bit
    /// each) and not down: the next in turn, or the least busy.
    pub fn choose(&mut self, tried: u64) -> Option<usize> {
        let now = Instant::now();
        let n = self.servers.len();
        let usable = |i: &usize| {
            tried & (1 << i) == 0 && self.servers[*i].down_until.is_none_or(|t| t <= now)
        };
        let order = (0..n).map(|k| (self.next + k) % n).filter(usable);
        let chosen = match self.balance {
            Balance::RoundRobin => order.take(1).next(),
            Balance::LeastConn => order.min_by_key(|&i| self.servers[i].active),
        }?;
        self.next = (chosen + 1) % n;
        Some(chosen)
    }

    /// Leave server `i` alone for a while: it refused, or timed out.
    pub fn mark_down(&mut self, i: usize, why: &str) {
        let server = &mut self.servers[i];
        server.down_until = Some(Instant::now() + self.fail_timeout);
        let secs = self.fail_timeout.as_secs();
        eprintln!("upstream {} marked down for {secs} s: {why}", server.addr);
    }
}
// ANCHOR_END: choose

/// `--upstream HOST:PORT`, looked up once at start-up.
pub fn parse_upstream(text: &str) -> Result<SocketAddr, String> {
    let hint = format!("'{text}' is not HOST:PORT (e.g. 127.0.0.1:8007)");
    let mut addrs = text.to_socket_addrs().map_err(|e| format!("{hint}: {e}"))?;
    addrs.next().ok_or(hint)
}

/// `--static PREFIX=DIR`, the prefix a URL path: `/static/=./www`.
pub fn parse_static(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((prefix, dir)) if prefix.starts_with('/') && !dir.is_empty() => {
            Ok((prefix.to_string(), dir.into()))
        }
        _ => Err(format!(
            "'{text}' is not PREFIX=DIR with PREFIX a path (e.g. /static/=./www)"
        )),
    }
}

/// A size as nginx writes it: `8192`, `64k`, `1m`, `1g`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not a size (e.g. 65536, 64k, 1m)");
    let (digits, shift) = match text.to_ascii_lowercase().chars().last() {
        Some('k') => (&text[..text.len() - 1], 10),
        Some('m') => (&text[..text.len() - 1], 20),
        Some('g') => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

/// What one request's access-log line needs, kept from its start.
#[derive(Debug)]
pub struct AccessLog {
    peer: SocketAddr,
    line: String,
    is_head: bool,
    started: Instant,
}

impl AccessLog {
    pub fn new(peer: SocketAddr, request: &Request) -> AccessLog {
        AccessLog {
            peer,
            line: request.request_line(),
            is_head: request.is_head(),
            started: Instant::now(),
        }
    }

    /// The client's line, then the upstream (`-`: none was reached) and the
    /// time since the request came (nginx's `$upstream_addr` and
    /// `$upstream_response_time`). A HEAD's body size is 0.
    pub fn write(&self, status: u16, size: Option<u64>, upstream: Option<SocketAddr>) {
        if crate::log::quiet() {
            return;
        }
        let size = if self.is_head { Some(0) } else { size };
        let now = std::time::SystemTime::now();
        let mut text = crate::log::access_line(self.peer, &self.line, status, size, now);
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let upstream = upstream.map_or("-".to_string(), |addr| addr.to_string());
        let _ = writeln!(text, " upstream {upstream} in {ms:.1} ms");
        // One write(2): one whole line, even among other writers.
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Limits, Parsed, parse_request};

    fn request(raw: &str) -> Request {
        match parse_request(raw.as_bytes(), &Limits::default()) {
            Ok(Parsed::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    fn limits() -> Arc<SpoolLimits> {
        Arc::new(SpoolLimits {
            memory: 8,
            max_file: 1 << 20,
            dir: std::env::temp_dir(),
        })
    }

    #[test]
    fn hop_by_hop_headers_stay_and_forwarding_headers_are_added() {
        let request = request(
            "GET http://example.com/a?b HTTP/1.1\r\nHost: other\r\nConnection: close, X-Secret\r\n\
             X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: x\r\n\
             X-Forwarded-For: 10.0.0.1\r\nAccept: */*\r\n\r\n",
        );
        let mut out = Vec::new();
        let from = Forwarding {
            client: "127.0.0.1".parse().unwrap(),
            proto: "http",
        };
        write_request(&mut out, &request, 0, from);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "GET /a?b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\
             X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\
             Forwarded: for=127.0.0.1;proto=http;host=\"example.com\"\r\n\r\n"
        );
    }

    #[test]
    fn a_chunked_response_is_read_whole_and_spills_past_the_limit() {
        let mut reader = ResponseReader::new(false, limits());
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
                    Connection: keep-alive\r\nX-App: 1\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
        let mut done = false;
        for byte in raw.chunks(3) {
            assert!(!done);
            done = reader.feed(byte).unwrap();
        }
        assert!(done && reader.keep_alive());
        let response = reader.into_response().unwrap();
        assert_eq!(response.headers, vec![("X-App".into(), "1".into())]);
        let Body::File { mut file, len } = response.body else {
            panic!("12 bytes over an 8-byte limit should be in a file");
        };
        use std::io::{Read, Seek};
        file.rewind().unwrap();
        let mut body = String::new();
        file.read_to_string(&mut body).unwrap();
        assert_eq!((len, body.as_str()), (12, "hello, world"));
    }

    #[test]
    fn sizes_read_as_nginx_writes_them() {
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("12"), Ok(12));
        assert!(parse_size("x").is_err() && parse_size("k").is_err());
    }

    #[test]
    fn a_response_cut_short_is_an_error_and_close_delimited_is_not() {
        let mut reader = ResponseReader::new(false, limits());
        assert!(
            !reader
                .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc")
                .unwrap()
        );
        assert!(reader.feed_eof().is_err());
        let mut reader = ResponseReader::new(false, limits());
        assert!(!reader.feed(b"HTTP/1.0 200 OK\r\n\r\nabc").unwrap());
        assert!(reader.feed_eof().is_ok() && !reader.keep_alive());
    }
}
