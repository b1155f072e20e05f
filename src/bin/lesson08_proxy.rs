//! # Lesson 08: the buffering reverse proxy (nginx's job)
//!
//! Lecture: `lessons/08-proxy.md`
//!
//! Rung 8, after rung 7's pre-fork app server, whose sync workers are tied
//! up by slow clients: a worker that reads a request at the client's pace,
//! or writes a response at the client's pace, serves nobody else meanwhile.
//! This proxy goes in front of it. One thread holds every client AND every
//! upstream socket on rung 5's event loop; a client gets to the app server
//! only once its whole request is in our memory, and the app server's whole
//! response is read as fast as it comes, freeing the worker at once, then
//! fed to the client at the client's pace.
//!
//! New here: handler-owned sockets on the event loop (`Context`, tokens from
//! `HANDLER_TOKENS`), non-blocking `connect`, a keep-alive pool per upstream,
//! round robin and least-connections, failover with `fail_timeout`, and a
//! proxy's headers (`ladder::upstream`, introduced here: read it next).
//! From earlier lessons: the event loop and the client side of every
//! connection (`ladder::event_loop`, `ladder::http_connection`, 05), parsing
//! (`ladder::http`, 02), files (`ladder::static_files`, 04).
//!
//! Run: `cargo run --bin lesson05_epoll -- --port 9001 &` then
//! `cargo run --bin lesson08_proxy -- --upstream 127.0.0.1:9001`
//! Try: `curl -v http://127.0.0.1:8008/hello`, and add `--trace`.
//!
//! Reading order: `main` → `run` → `handle_with` → `dispatch` → `on_socket`
//! → `step` → `finish` / `fail` → `on_timer`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use mio::net::TcpStream;

use ladder::event_loop::{
    Answer, Client, Config, Context, EventLoop, HANDLER_TOKENS, Handler, Ticket,
};
use ladder::http::{Limits, Request, Response, ServerInfo, Target, TargetForm};
use ladder::http_connection::Settings;
use ladder::readiness::{Backend, Interest, Token};
use ladder::static_files::{self, Root};
use ladder::trace;
use ladder::upstream::{
    Balance, Forwarding, Group, ResponseReader, SpoolLimits, access_log, parse_size, parse_static,
    parse_upstream, write_request,
};

fn main() -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lesson08_proxy: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Lesson 08: a buffering reverse proxy on one thread (nginx's job in front of an app server).
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
        cargo run --bin lesson05_epoll -- --port 9001 &\n  \
        cargo run --bin lesson08_proxy -- --upstream 127.0.0.1:9001\n  \
        curl -v http://127.0.0.1:8008/hello\n  \
        lesson08_proxy --upstream 127.0.0.1:9001 --upstream 127.0.0.1:9002 --balance least-conn\n  \
        lesson08_proxy --upstream 127.0.0.1:8007 --static /static/=./www   (files from disk)\n  \
        loadgen --slow 100 -d 10s http://127.0.0.1:8008/hello            (slow clients, held here)"
)]
struct Args {
    #[command(flatten)]
    listen: ladder::cli::ListenArgs<8>,

    /// An app server to pass requests to (repeat for several); nginx's `server` in `upstream`
    #[arg(long = "upstream", value_name = "HOST:PORT", required = true, value_parser = parse_upstream)]
    upstreams: Vec<SocketAddr>,

    /// Serve URLs under PREFIX from DIR ourselves (nginx's `location PREFIX { alias DIR; }`)
    #[arg(long = "static", value_name = "PREFIX=DIR", value_parser = parse_static)]
    statics: Vec<(String, PathBuf)>,

    /// How to pick an upstream for each request
    #[arg(long, value_enum, default_value_t = Balance::RoundRobin)]
    balance: Balance,

    /// Seconds a client has for a request head, and between two reads of its body
    /// (nginx's client_header_timeout and client_body_timeout)
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = seconds())]
    client_header_timeout: u64,

    /// Seconds an idle client connection is kept (nginx's keepalive_timeout)
    #[arg(long, value_name = "SECS", default_value_t = 75, value_parser = seconds())]
    keepalive_timeout: u64,

    /// Largest request body; larger is 413 (nginx's client_max_body_size)
    #[arg(long, value_name = "BYTES", default_value = "1m", value_parser = parse_size)]
    client_max_body_size: u64,

    /// Seconds to connect to an upstream (nginx's proxy_connect_timeout)
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = seconds())]
    proxy_connect_timeout: u64,

    /// Seconds an upstream may stay silent while we send or read (nginx's proxy_read_timeout)
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = seconds())]
    proxy_read_timeout: u64,

    /// Seconds an upstream that refused or timed out is left alone (nginx's fail_timeout)
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = seconds())]
    fail_timeout: u64,

    /// Idle keep-alive connections kept per upstream (nginx's keepalive in `upstream`)
    #[arg(long, value_name = "N", default_value_t = 32)]
    keepalive: usize,

    /// Bytes of one response held in memory; the rest waits in a temporary file
    /// (nginx's proxy_buffers)
    #[arg(long, value_name = "BYTES", default_value = "64k", value_parser = parse_size)]
    proxy_buffers: u64,

    /// Largest temporary file for one response; larger is 502 (nginx's proxy_max_temp_file_size)
    #[arg(long, value_name = "BYTES", default_value = "1g", value_parser = parse_size)]
    proxy_max_temp_file_size: u64,

    /// Directory for those temporary files (nginx's proxy_temp_path)
    #[arg(long, value_name = "DIR", default_value = "/tmp")]
    temp_dir: PathBuf,

    /// Most client connections open at once; more are answered 503
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,
}

/// Set up, then hand over to rung 5's event loop until a signal ends it.
fn run(args: Args) -> io::Result<()> {
    let mut statics = Vec::new();
    for (prefix, dir) in &args.statics {
        let root = Root::new(dir).map_err(|err| {
            let hint = "--static takes PREFIX=DIR with an existing directory";
            io::Error::new(err.kind(), format!("{}: {err} ({hint})", dir.display()))
        })?;
        statics.push((prefix.clone(), root));
    }
    if args.upstreams.len() > 64 {
        return Err(io::Error::other(
            "at most 64 --upstream (a request's tries are a u64)",
        ));
    }
    let secs = Duration::from_secs;
    let config = Config {
        backend: Backend::Mio,
        max_connections: args.max_connections,
        http: Settings {
            limits: Limits {
                max_body: args.client_max_body_size,
                ..Limits::default()
            },
            header_timeout: secs(args.client_header_timeout),
            idle_timeout: secs(args.keepalive_timeout),
            server: ServerInfo::PLAIN,
            // Our own timeouts always answer (502/504), and we log ourselves,
            // naming the upstream.
            answer_timeout: None,
            log_later: false,
        },
    };
    let mut server = EventLoop::new(ladder::cli::listen(args.listen.addr())?, config)?;
    let remote = server.remote();
    ladder::shutdown::on_termination(move |_| remote.stop())?;
    ladder::cli::announce("http", server.local_addr()?)?;
    let fail_timeout = Duration::from_secs(args.fail_timeout);
    let mut proxy = Proxy {
        group: Group::new(&args.upstreams, args.balance, fail_timeout),
        links: Vec::new(),
        free: Vec::new(),
        timer: None,
        scratch: vec![0; 64 * 1024].into_boxed_slice(),
        statics,
        spool: SpoolLimits {
            memory: usize::try_from(args.proxy_buffers).unwrap_or(usize::MAX),
            max_file: args.proxy_max_temp_file_size,
            dir: args.temp_dir.clone(),
        },
        args,
    };
    server.run(&mut proxy)
}

/// Everything the proxy knows. The event loop owns the client connections;
/// the proxy owns the upstream side, on the same poll, the same thread.
struct Proxy {
    /// The servers behind us, their idle pools, and the balancing
    /// (`ladder::upstream::Group`).
    group: Group,
    /// Every upstream connection, by slot; slot `n` has token
    /// `HANDLER_TOKENS + n`, so its events come to `on_socket`.
    links: Vec<Option<Link>>,
    free: Vec<usize>,
    /// The wake-up asked of the loop, if any: one at a time is enough.
    timer: Option<Instant>,
    /// One read buffer for every upstream socket: read one at a time.
    scratch: Box<[u8]>,
    statics: Vec<(String, Root)>,
    spool: SpoolLimits,
    args: Args,
}

/// A connection to an upstream: idle in its pool, or carrying one request.
struct Link {
    stream: TcpStream,
    upstream: usize,
    job: Option<Job>,
    /// It carried a request before: a close may be the pool's old race.
    reused: bool,
}

/// One client request on its way through the proxy.
struct Job {
    ticket: Ticket,
    peer: SocketAddr,
    request_line: String,
    is_head: bool,
    /// GET, HEAD, PUT, DELETE, OPTIONS, TRACE (RFC 9110 §9.2.2): may be sent twice.
    idempotent: bool,
    /// The whole request as the upstream gets it, kept for a retry.
    bytes: Vec<u8>,
    written: usize,
    connected: bool,
    reader: ResponseReader,
    /// Upstreams tried already, one bit each, and why the last one failed.
    tried: u64,
    failure: Failure,
    /// Given up on this upstream after this (connect, or silence).
    deadline: Instant,
    started: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Failure {
    Refused,
    TimedOut,
    Broken,
}

impl Handler for Proxy {
    fn handle(&mut self, _: &Request, _: Vec<u8>, _: Client) -> Answer {
        unreachable!("the loop calls handle_with")
    }

    /// A whole request is in, body and all (`http_connection` read it at
    /// the client's pace; no upstream knew it existed). Serve a file, or
    /// pass it on and answer later, when the upstream's whole answer is in.
    fn handle_with(
        &mut self,
        request: &Request,
        body: Vec<u8>,
        client: Client,
        cx: &mut Context<'_>,
    ) -> Answer {
        if let Some(response) = self.static_file(request) {
            return Answer::Now(response);
        }
        if request.target.form() == TargetForm::Authority {
            let detail = "CONNECT tunnels are not implemented here";
            return Answer::Now(Response::error(501, detail));
        }
        let mut bytes = Vec::with_capacity(512 + body.len());
        let from = Forwarding {
            client: client.peer.ip(),
            proto: "http",
        };
        write_request(&mut bytes, request, &body, from);
        let method = request.method.as_str();
        let job = Job {
            ticket: client.ticket,
            peer: client.peer,
            request_line: request.request_line(),
            is_head: request.is_head(),
            idempotent: ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"].contains(&method),
            bytes,
            written: 0,
            connected: false,
            reader: ResponseReader::new(request.is_head(), self.spool.clone()),
            tried: 0,
            failure: Failure::Refused,
            deadline: Instant::now(),
            started: Instant::now(),
        };
        self.dispatch(job, cx);
        Answer::Later
    }

    /// An upstream socket is ready: take the step its state allows.
    fn on_socket(&mut self, token: Token, cx: &mut Context<'_>) {
        self.step(token.0 - HANDLER_TOKENS, cx);
    }

    /// Give up on every upstream past its deadline (connect, or silence),
    /// then ask to be woken for the next one.
    fn on_timer(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.timer = None;
        let late: Vec<usize> = (self.links.iter().enumerate())
            .filter(|(_, l)| {
                l.as_ref()
                    .and_then(|l| l.job.as_ref())
                    .is_some_and(|j| j.deadline <= now)
            })
            .map(|(slot, _)| slot)
            .collect();
        for slot in late {
            self.fail(slot, Failure::TimedOut, "timed out", cx);
        }
        let next = self
            .links
            .iter()
            .flatten()
            .filter_map(|l| Some(l.job.as_ref()?.deadline))
            .min();
        if let Some(when) = next {
            self.wake_at(when, cx);
        }
    }
}

impl Proxy {
    /// `--static PREFIX=DIR`: the URL without its prefix, served from DIR
    /// by rung 4's code, as nginx serves static files and passes the rest on.
    fn static_file(&self, request: &Request) -> Option<Response> {
        let (prefix, root) = self
            .statics
            .iter()
            .find(|(p, _)| request.path().starts_with(p.as_str()))?;
        let rest = request.path()[prefix.len()..].trim_start_matches('/');
        let query = if request.target.has_query() { "?" } else { "" };
        let raw = format!("/{rest}{query}{}", request.query());
        let target = Target::parse(&request.method, &raw).ok()?;
        let local = Request {
            target,
            ..request.clone()
        };
        Some(static_files::respond(root, &local))
    }

    /// Put a request on an upstream: an idle kept-alive connection from the
    /// pool if there is one (no handshake), else a new connection. When no
    /// upstream is left to try, answer 502, or 504 if the last one timed out.
    fn dispatch(&mut self, mut job: Job, cx: &mut Context<'_>) {
        let Some(up) = self.group.choose(job.tried) else {
            let (status, why) = match job.failure {
                Failure::TimedOut => (504, "the upstream did not answer in time"),
                _ => (502, "no upstream could be reached"),
            };
            access_log(
                job.peer,
                &job.request_line,
                status,
                None,
                None,
                job.started.elapsed(),
            );
            return cx.respond(job.ticket, Response::error(status, why));
        };
        job.tried |= 1 << up;
        self.group.servers[up].active += 1;
        let addr = self.group.servers[up].addr;
        if let Some(slot) = self.group.servers[up].idle.pop() {
            trace!("upstream {addr}: reusing the idle connection in slot {slot}");
            let link = self.links[slot].as_mut().expect("pooled slots hold a link");
            job.connected = true;
            job.deadline = Instant::now() + Duration::from_secs(self.args.proxy_read_timeout);
            (link.job, link.reused) = (Some(job), true);
            return self.step(slot, cx);
        }
        // connect(2) on a non-blocking socket returns at once (EINPROGRESS);
        // WRITABLE says when the handshake is over, one way or the other.
        let stream = match TcpStream::connect(addr) {
            Ok(stream) => stream,
            Err(err) => return self.refused(up, job, &err.to_string(), cx),
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.links.push(None);
            self.links.len() - 1
        });
        trace!("connect({addr}) -> in progress, slot {slot}");
        let token = Token(HANDLER_TOKENS + slot);
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = cx
            .poll()
            .register(std::os::fd::AsFd::as_fd(&stream), token, interest)
        {
            self.free.push(slot);
            return self.refused(up, job, &err.to_string(), cx);
        }
        job.deadline = Instant::now() + Duration::from_secs(self.args.proxy_connect_timeout);
        self.wake_at(job.deadline, cx);
        let (job, reused) = (Some(job), false);
        self.links[slot] = Some(Link {
            stream,
            upstream: up,
            job,
            reused,
        });
    }

    /// Do all an upstream connection allows until WouldBlock: finish the
    /// handshake, write the request, read the response as fast as it comes.
    /// Then make sure a wake-up comes by the request's deadline.
    fn step(&mut self, slot: usize, cx: &mut Context<'_>) {
        self.advance(slot, cx);
        let job = self.links.get(slot).and_then(|l| l.as_ref()?.job.as_ref());
        if let Some(deadline) = job.map(|job| job.deadline) {
            self.wake_at(deadline, cx);
        }
    }

    fn advance(&mut self, slot: usize, cx: &mut Context<'_>) {
        let Some(Some(link)) = self.links.get_mut(slot) else {
            return; // closed earlier in this batch of events
        };
        let Some(job) = &mut link.job else {
            // Idle in the pool. The event is mostly WRITABLE (the upstream's
            // ACKs freed send buffer); a read tells if it closed meanwhile
            // (or sent what nobody asked for): then it is no longer usable.
            let why = match (&link.stream).read(&mut self.scratch) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Ok(0) => "the upstream closed an idle connection".to_string(),
                Ok(n) => format!("{n} bytes from an idle upstream connection"),
                Err(err) => err.to_string(),
            };
            return self.close(slot, &why, cx);
        };
        if !job.connected {
            // mio's recipe: an error, or no peer yet (still connecting).
            match link
                .stream
                .take_error()
                .and_then(|e| e.map_or(Ok(()), Err))
                .and_then(|()| link.stream.peer_addr())
            {
                Err(err) if err.kind() == io::ErrorKind::NotConnected => return,
                Err(err) => return self.fail(slot, Failure::Refused, &err.to_string(), cx),
                Ok(_) => job.connected = true,
            }
        }
        let read_timeout = Duration::from_secs(self.args.proxy_read_timeout);
        while job.written < job.bytes.len() {
            match (&link.stream).write(&job.bytes[job.written..]) {
                Ok(n) => job.written += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return self.fail(slot, Failure::Broken, &err.to_string(), cx),
            }
            job.deadline = Instant::now() + read_timeout;
            trace!(
                "write(upstream slot {slot}) -> {} of {} bytes",
                job.written,
                job.bytes.len()
            );
        }
        loop {
            let got = (&link.stream).read(&mut self.scratch);
            if let Ok(n) = got {
                trace!("read(upstream slot {slot}) -> {n} bytes");
            }
            let done = match got {
                Ok(0) => match job.reader.feed_eof() {
                    Ok(()) => true,
                    Err(err) => return self.fail(slot, Failure::Broken, &err.to_string(), cx),
                },
                Ok(n) => match job.reader.feed(&self.scratch[..n]) {
                    Ok(done) => done,
                    Err(err) => return self.fail(slot, Failure::Broken, &err.to_string(), cx),
                },
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return self.fail(slot, Failure::Broken, &err.to_string(), cx),
            };
            if done {
                return self.finish(slot, cx);
            }
            job.deadline = Instant::now() + read_timeout; // progress: nginx's proxy_read_timeout
        }
    }

    /// The whole response is in: hand it to the client's connection (the
    /// loop writes it at the client's pace), and free the upstream at once:
    /// back to the pool if it keeps the connection, else closed.
    fn finish(&mut self, slot: usize, cx: &mut Context<'_>) {
        let link = self.links[slot]
            .as_mut()
            .expect("finish is called on a live link");
        let job = link.job.take().expect("finish is called on a busy link");
        let up = link.upstream;
        let keep = job.reader.keep_alive();
        let elapsed = job.started.elapsed();
        self.group.servers[up].active -= 1;
        let addr = self.group.servers[up].addr;
        let response = match job.reader.into_response() {
            Ok(response) => response,
            Err(err) => Response::error(
                502,
                &format!("the upstream's answer could not be kept: {err}"),
            ),
        };
        let size = if job.is_head {
            Some(0)
        } else {
            response.body_len()
        };
        access_log(
            job.peer,
            &job.request_line,
            response.status,
            size,
            Some(addr),
            elapsed,
        );
        let ticket = job.ticket;
        cx.respond(ticket, response);
        if keep && self.group.servers[up].idle.len() < self.args.keepalive {
            trace!("upstream {addr}: response complete, slot {slot} back to the idle pool");
            self.group.servers[up].idle.push(slot);
        } else {
            self.close(slot, "the upstream does not keep the connection", cx);
        }
    }

    /// This upstream failed the request. A refusal or a timeout marks it
    /// down for `--fail-timeout` (nginx's max_fails=1). The request goes
    /// to another upstream if sending it twice is harmless: it never
    /// reached the first, or its method is idempotent.
    fn fail(&mut self, slot: usize, failure: Failure, why: &str, cx: &mut Context<'_>) {
        let link = self.links[slot]
            .as_mut()
            .expect("fail is called on a live link");
        let mut job = link.job.take().expect("fail is called on a busy link");
        let (up, reused) = (link.upstream, link.reused);
        self.close(slot, why, cx);
        self.group.servers[up].active -= 1;
        // A pooled connection the upstream closed just as we sent: its old
        // race, not a failure. Try again, this upstream included.
        if reused && failure == Failure::Broken && !job.reader.started() && job.idempotent {
            trace!("stale pooled connection ({why}): retrying");
            job.tried &= !(1 << up);
        } else if failure != Failure::Broken {
            self.group.mark_down(up, why);
        }
        job.failure = failure;
        (job.written, job.connected) = (0, false);
        job.reader = ResponseReader::new(job.is_head, self.spool.clone());
        if job.idempotent || failure == Failure::Refused {
            return self.dispatch(job, cx);
        }
        let addr = self.group.servers[up].addr;
        access_log(
            job.peer,
            &job.request_line,
            502,
            None,
            Some(addr),
            job.started.elapsed(),
        );
        cx.respond(
            job.ticket,
            Response::error(502, "the upstream failed mid-request"),
        );
    }

    fn refused(&mut self, up: usize, job: Job, why: &str, cx: &mut Context<'_>) {
        self.group.servers[up].active -= 1;
        self.group.mark_down(up, why);
        self.dispatch(job, cx);
    }

    /// Close an upstream connection and free its slot. Dropping the stream
    /// closes the fd, which also takes it out of the epoll set.
    fn close(&mut self, slot: usize, why: &str, _cx: &mut Context<'_>) {
        if let Some(link) = self.links[slot].take() {
            trace!("close(upstream slot {slot}): {why}");
            self.group.servers[link.upstream]
                .idle
                .retain(|&s| s != slot);
            self.free.push(slot);
        }
    }

    /// Ask the loop for a wake-up at `when`, unless an earlier one is asked.
    fn wake_at(&mut self, when: Instant, cx: &mut Context<'_>) {
        if self.timer.is_none_or(|armed| when < armed) {
            self.timer = Some(when);
            cx.wake_at(when);
        }
    }
}

/// Timeouts up to a day: a deadline is `Instant + timeout`, which must not overflow.
fn seconds() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(0..=86_400)
}
