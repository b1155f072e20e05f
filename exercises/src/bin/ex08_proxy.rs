//! # Lesson 08: the buffering reverse proxy (nginx's job)
//!
//! Lecture: `lessons/08-proxy.md`
//!
//! Rung 8, after rung 7's pre-fork app server, whose sync workers are tied
//! up by slow clients: a worker that reads a request at the client's pace,
//! or writes a response at the client's pace, serves nobody else meanwhile.
//! This proxy goes in front of it. One thread holds every client AND every
//! upstream socket on rung 5's event loop; a client gets to the app server
//! only once its whole request is in our hands (a large body in a
//! temporary file), and the app server's whole response is read as fast as
//! it comes, freeing the worker at once, then fed to the client at the
//! client's pace.
//!
//! New here: handler-owned sockets on the event loop (`Context`, tokens from
//! `HANDLER_TOKENS`), non-blocking `connect`, a keep-alive pool per upstream,
//! balancing, failover, and a proxy's headers and flags (`ladder::upstream`,
//! introduced here: read it next). From lesson 05: the event loop and the
//! client side of every connection (`ladder::event_loop`, `http_connection`).
//!
//! Run: `cargo run --bin lesson05_epoll -- --port 9001 &` then
//! `cargo run --bin lesson08_proxy -- --upstream 127.0.0.1:9001`
//! Try: `curl -v http://127.0.0.1:8008/hello`, and add `--trace`.
//!
//! Reading order: `main` → `run` → `handle_with` → `dispatch` → `on_socket`
//! → `step` → `advance` → `finish` / `fail` → `on_timer`.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use mio::net::TcpStream;

use ladder::event_loop::{Answer, Client, Context, EventLoop, HANDLER_TOKENS, Handler, Ticket};
use ladder::http::{Request, Response, TargetForm};
use ladder::http_connection::RequestBody;
use ladder::readiness::{Interest, Token};
use ladder::trace;
use ladder::upstream::{
    AccessLog, Forwarding, Group, Options, Outgoing, ResponseReader, SpoolLimits, Statics,
    is_idempotent,
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
        cargo run --bin lesson08_proxy -- --upstream 127.0.0.1:9001 --upstream 127.0.0.1:9002 --balance least-conn\n  \
        cargo run --bin lesson08_proxy -- --upstream 127.0.0.1:8007 --static /static/=apps   (files from disk)\n  \
        cargo run --release --bin loadgen -- --slow 100 -d 10s http://127.0.0.1:8008/hello   (slow clients, held here)"
)]
struct Args {
    #[command(flatten)]
    listen: ladder::cli::ListenArgs<8>,
    #[command(flatten)]
    options: Options,
}

/// Set up, then hand over to rung 5's event loop until a signal ends it.
fn run(args: Args) -> io::Result<()> {
    let options = args.options;
    let statics = options.statics()?;
    let mut server = EventLoop::new(options.listen(args.listen.addr())?, options.config())?;
    // A body past --client-body-buffer-size waits in a file, not in memory.
    server.spill_bodies(options.body_spill());
    let remote = server.remote();
    ladder::shutdown::on_termination(move |_| remote.stop())?;
    ladder::cli::announce("http", server.local_addr()?)?;
    let mut proxy = Proxy {
        group: Group::new(&options.upstreams, options.balance, options.fail_timeout),
        links: Vec::new(),
        free: Vec::new(),
        timer: None,
        scratch: vec![0; 64 * 1024].into_boxed_slice(),
        statics,
        spool: options.spool_limits(),
        options,
    };
    server.run(&mut proxy)
}

/// Everything the proxy knows. The event loop owns the client connections;
/// the proxy owns the upstream side, on the same poll, the same thread.
struct Proxy {
    /// The servers behind us, their idle pools, and the balancing.
    group: Group,
    /// Every upstream connection, by slot; slot `n` has token
    /// `HANDLER_TOKENS + n`, so its events come to `on_socket`.
    links: Vec<Option<Link>>,
    free: Vec<usize>,
    /// The wake-up asked of the loop, if any: one at a time is enough.
    timer: Option<Instant>,
    /// One read buffer for every upstream socket: read one at a time.
    scratch: Box<[u8]>,
    statics: Statics,
    spool: Arc<SpoolLimits>,
    options: Options,
}

/// A connection to an upstream: idle in its pool, or carrying one request.
struct Link {
    stream: TcpStream,
    upstream: usize,
    job: Option<Job>,
    /// It carried a request before: a close may be the pool's old race.
    reused: bool,
    /// Busy: given up on after this (connect, or silence). Idle: closed
    /// after this (the pool's keep-alive timeout).
    deadline: Instant,
}

/// One client request on its way through the proxy.
struct Job {
    ticket: Ticket,
    log: AccessLog,
    is_head: bool,
    idempotent: bool,
    /// The whole request as the upstream gets it, kept for a retry.
    out: Outgoing,
    connected: bool,
    reader: ResponseReader,
    /// Upstreams tried already, one bit each, and why the last one failed.
    tried: u64,
    failure: Failure,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Failure {
    Refused,
    TimedOut,
    Broken,
}

impl Handler for Proxy {
    // ANCHOR: handle_with
    /// A whole request is in, body and all (`http_connection` read it at
    /// the client's pace, into a file past `--client-body-buffer-size`; no
    /// upstream knew it existed). Serve a file, or pass it on and answer
    /// later, when the upstream's whole answer is in.
    fn handle_with(
        &mut self,
        request: &Request,
        body: RequestBody,
        client: Client,
        cx: &mut Context<'_>,
    ) -> Answer {
        // TODO(ex08): a `--static` prefix is served at once (`self.statics.respond(request)`
        // gives the answer), and CONNECT (`request.target.form() == TargetForm::Authority`)
        // gets a 501. Anything else becomes a `Job`: its `out` is
        // `Outgoing::new(request, body, Forwarding::http(client.peer))` (the request for the
        // next hop: hop-by-hop headers out, X-Forwarded-For in, the body as it is held),
        // its reader `ResponseReader::new(request.is_head(), self.spool.clone())`, its log
        // `AccessLog::new(client.peer, request)`, `is_idempotent(request)`, nothing tried
        // yet. Then `self.dispatch(job, cx)`, and answer `Answer::Later`.
        todo!("ex08: pass the whole request on")
    }
    // ANCHOR_END: handle_with

    /// An upstream socket is ready: take the step its state allows.
    fn on_socket(&mut self, token: Token, cx: &mut Context<'_>) {
        self.step(token.0 - HANDLER_TOKENS, cx);
    }

    // ANCHOR: on_timer
    /// Give up on every upstream past its deadline (connect, or silence),
    /// close every pooled connection idle for too long, then ask to be
    /// woken for the next deadline.
    fn on_timer(&mut self, now: Instant, cx: &mut Context<'_>) {
        self.timer = None;
        let mut next: Option<Instant> = None;
        for slot in 0..self.links.len() {
            let Some(link) = &self.links[slot] else {
                continue;
            };
            if link.deadline > now {
                next = Some(next.map_or(link.deadline, |n| n.min(link.deadline)));
            } else if link.job.is_some() {
                self.fail(slot, Failure::TimedOut, "timed out", cx);
            } else {
                self.close(slot, "idle past --upstream-keepalive-timeout");
            }
        }
        if let Some(when) = next {
            self.wake_at(when, cx);
        }
    }
    // ANCHOR_END: on_timer
}

impl Proxy {
    // ANCHOR: dispatch
    /// Put a request on an upstream: an idle kept-alive connection from the
    /// pool if there is one (no handshake), else a new connection. When no
    /// upstream is left to try, answer 502, or 504 if the last one timed out.
    fn dispatch(&mut self, mut job: Job, cx: &mut Context<'_>) {
        let Some(up) = self.group.choose(job.tried) else {
            let (status, why) = match job.failure {
                Failure::TimedOut => (504, "the upstream did not answer in time"),
                _ => (502, "no upstream could be reached"),
            };
            job.log.write(status, None, None);
            return cx.respond(job.ticket, Response::error(status, why));
        };
        job.tried |= 1 << up;
        self.group.servers[up].active += 1;
        let addr = self.group.servers[up].addr;
        if let Some(slot) = self.group.servers[up].idle.pop() {
            trace!("upstream {addr}: reusing the idle connection in slot {slot}");
            let link = self.links[slot].as_mut().expect("pooled slots hold a link");
            job.connected = true;
            link.deadline = Instant::now() + self.options.proxy_read_timeout;
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
        let (token, both) = (
            Token(HANDLER_TOKENS + slot),
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(err) = cx.poll().register(stream.as_fd(), token, both) {
            self.free.push(slot);
            return self.refused(up, job, &err.to_string(), cx);
        }
        let deadline = Instant::now() + self.options.proxy_connect_timeout;
        self.wake_at(deadline, cx);
        let (job, reused) = (Some(job), false);
        self.links[slot] = Some(Link {
            stream,
            upstream: up,
            job,
            reused,
            deadline,
        });
    }
    // ANCHOR_END: dispatch

    /// Do all an upstream connection allows until WouldBlock, then make
    /// sure a wake-up comes by its deadline.
    fn step(&mut self, slot: usize, cx: &mut Context<'_>) {
        self.advance(slot, cx);
        if let Some(Some(link)) = self.links.get(slot) {
            let deadline = link.deadline;
            self.wake_at(deadline, cx);
        }
    }

    // ANCHOR: advance
    /// Finish the handshake, write the request, read the response as fast
    /// as it comes: each as far as the socket allows.
    fn advance(&mut self, slot: usize, cx: &mut Context<'_>) {
        // TODO(ex08): the link in `self.links[slot]` (none: it closed already, return).
        // Idle in the pool (no `link.job`): one read into `self.scratch`; WouldBlock is
        // fine, anything else (EOF, bytes nobody asked for, an error) makes it unusable:
        // `self.close(slot, ..)`. Still connecting (`!job.connected`): `take_error()`, then
        // `peer_addr()`; NotConnected means wait, another error `self.fail(slot,
        // Failure::Refused, ..)`. Then write with `job.out.write_to(&link.stream)` until
        // `job.out.sent()` is `job.out.len()`, and read into `self.scratch` until WouldBlock,
        // feeding `job.reader.feed(..)` (`feed_eof()` at EOF): `Ok(true)` is the whole
        // response, `self.finish(slot, cx)`; an error is `self.fail(slot, Failure::Broken,
        // ..)`. Each write or read moves `link.deadline` to now +
        // `self.options.proxy_read_timeout`. Never wait for the client.
        todo!("ex08: write the request, read the whole response")
    }
    // ANCHOR_END: advance

    // ANCHOR: finish
    /// The whole response is in: hand it to the client's connection (the
    /// loop writes it at the client's pace), and free the upstream at once:
    /// back to the pool if it keeps the connection, else closed.
    fn finish(&mut self, slot: usize, cx: &mut Context<'_>) {
        // TODO(ex08): take the job off the link (`link.job.take()`); one request fewer in
        // flight (`self.group.servers[up].active -= 1`). The client's answer is
        // `job.reader.into_response()` (an error: a 502), logged by `job.log.write(..)`
        // and handed over by `cx.respond(job.ticket, ..)`. Then free the upstream at once:
        // if `job.reader.keep_alive()` and its pool has room (`self.options.keepalive`),
        // `self.group.servers[up].idle.push(slot)` with `link.deadline` at now +
        // `self.options.upstream_keepalive_timeout` (`self.wake_at(..)` for it); else
        // `self.close(slot, ..)`.
        todo!("ex08: answer the client, free the upstream")
    }
    // ANCHOR_END: finish

    // ANCHOR: fail
    /// This upstream failed the request. A refusal or a timeout marks it
    /// down for `--fail-timeout` (nginx's max_fails=1). The request goes
    /// to another upstream if sending it twice is harmless: it never
    /// reached the first, or its method is idempotent.
    fn fail(&mut self, slot: usize, failure: Failure, why: &str, cx: &mut Context<'_>) {
        let link = self.links[slot].as_mut().expect("a live link");
        let mut job = link.job.take().expect("a busy link");
        let (up, reused) = (link.upstream, link.reused);
        self.close(slot, why);
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
        job.out.rewind(); // the body too: from its file again, if it spilled
        job.connected = false;
        job.reader = ResponseReader::new(job.is_head, self.spool.clone());
        if job.idempotent || failure == Failure::Refused {
            return self.dispatch(job, cx);
        }
        job.log.write(502, None, Some(self.group.servers[up].addr));
        let response = Response::error(502, "the upstream failed mid-request");
        cx.respond(job.ticket, response);
    }
    // ANCHOR_END: fail

    fn refused(&mut self, up: usize, job: Job, why: &str, cx: &mut Context<'_>) {
        self.group.servers[up].active -= 1;
        self.group.mark_down(up, why);
        self.dispatch(job, cx);
    }

    /// Close an upstream connection and free its slot. Dropping the stream
    /// closes the fd, which also takes it out of the epoll set.
    fn close(&mut self, slot: usize, why: &str) {
        if let Some(link) = self.links[slot].take() {
            trace!("close(upstream slot {slot}): {why}");
            let idle = &mut self.group.servers[link.upstream].idle;
            idle.retain(|&s| s != slot);
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
