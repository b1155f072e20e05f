//! # `loadgen`: a small HTTP load generator for the live demos
//!
//! A tool, not a lesson: it is what each lesson's "What breaks" section runs
//! to put numbers on a rung's failure (a second client waiting, slowloris
//! starving a thread pool, ten thousand idle connections). Read it after
//! lesson 05, whose ideas it uses: one thread, non-blocking sockets and a
//! mio event loop drive every connection.
//!
//! Run: `cargo run --release --bin loadgen -- --connections 50 --duration 5s http://127.0.0.1:8002/`
//!
//! It only ever talks to the one address it is given (loopback unless
//! `--allow-remote`), and every run ends after `--duration` (at most 10 min).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ladder::http::{self, BodyDecoder};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// Drive HTTP load at one server from one thread and report requests/s,
/// latency percentiles and errors by kind.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  \
        loadgen http://127.0.0.1:8002/                       10 keep-alive connections for 10 s\n  \
        loadgen -c 100 -d 5s --new-connection-per-request http://127.0.0.1:8004/\n  \
        loadgen -c 10 --slow 200 -d 20s http://127.0.0.1:8004/   slowloris next to real clients\n  \
        loadgen -c 0 --idle 10000 -d 10s http://127.0.0.1:8005/  ten thousand idle clients\n  \
        loadgen -c 10 --slow-readers 100 --slow-interval 100ms http://127.0.0.1:8008/big\n                                              slow readers: 1 KiB per 100 ms each\n  \
        loadgen -c 50 -d 5s --timeline 100ms http://127.0.0.1:8005/hello   requests per 100 ms\n\n\
        Many connections need many descriptors: loadgen raises its soft limit to the hard\n\
        limit; if that is not enough, run `ulimit -n 20000` (or more) first."
)]
struct Args {
    /// The server, e.g. http://127.0.0.1:8002/
    url: String,

    /// Clients sending requests back to back
    #[arg(short, long, default_value_t = 10, value_name = "N")]
    connections: usize,

    /// How long to run (e.g. 500ms, 10s, 2m); at most 10m
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,

    /// Open a new connection for every request (default: keep-alive)
    #[arg(long)]
    new_connection_per_request: bool,

    /// Slowloris clients: send a request head one byte at a time, never finish
    #[arg(long, default_value_t = 0, value_name = "N")]
    slow: usize,

    /// Slow readers: send a request, then read its response 1 KiB per
    /// --slow-interval, holding the connection (and asking again after)
    #[arg(long, default_value_t = 0, value_name = "N")]
    slow_readers: usize,

    /// Time between two bytes of a slow client, or two reads of a slow reader
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    slow_interval: Duration,

    /// Idle clients: connect and send nothing
    #[arg(long, default_value_t = 0, value_name = "N")]
    idle: usize,

    /// Request method
    #[arg(long, default_value = "GET")]
    method: String,

    /// Request path (default: the URL's)
    #[arg(long)]
    path: Option<String>,

    /// A request (or connect) that takes longer counts as a timeout error
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,

    /// Also print how many requests completed in each interval of this
    /// length (e.g. 100ms): a server that stalls shows as a run of zeros
    #[arg(long, value_parser = parse_duration, value_name = "INTERVAL")]
    timeline: Option<Duration>,

    /// Print the results as one JSON object on stdout
    #[arg(long)]
    json: bool,

    /// Allow a target that is not a loopback address
    #[arg(long)]
    allow_remote: bool,
}

/// `500ms`, `10s`, `1.5s`, `2m`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit in {text:?} (use ms, s or m)")),
    };
    if !(0.0..=600.0).contains(&seconds) {
        return Err("durations go from 0 to 10m".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// What a connection is for.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Worker,
    Slow,
    Idle,
    SlowReader,
}

/// What a slow reader takes from its socket at each --slow-interval.
const SLOW_READ: usize = 1024;

/// What went wrong with a request or a connection.
#[derive(Clone, Copy)]
enum Error {
    /// Nobody listens there (ECONNREFUSED).
    Refused,
    /// The server reset the connection (ECONNRESET, EPIPE).
    Reset,
    /// No connection or no whole response within --timeout.
    Timeout,
    /// Not an HTTP response.
    BadResponse,
    /// The server closed the connection before a whole response.
    Closed,
    Other,
}

const ERROR_NAMES: [&str; 6] = [
    "refused",
    "reset",
    "timeout",
    "bad_response",
    "closed",
    "other",
];

/// The slow clients' never-ending head, after the request line and Host.
const SLOW_FILLER: &[u8] = b"X-Slow: x\r\n";

/// One connection slot: a role, and a socket while connected.
struct Slot {
    role: Role,
    conn: Option<Conn>,
    /// When to (re)connect, if not connected.
    reconnect_at: Instant,
}

struct Conn {
    stream: TcpStream,
    connected: bool,
    /// Bytes still to write (a request, or a slow client's whole head).
    out: Vec<u8>,
    written: usize,
    /// Bytes read and not yet consumed.
    input: Vec<u8>,
    /// The response being read: its body's decoder, and whether the server
    /// keeps the connection after it.
    response: Option<(BodyDecoder, bool)>,
    /// When the current request (or the connect) started.
    started: Instant,
    next_drip: Instant,
}

/// How one pass over a connection ended.
enum Step {
    Again,
    Close(Option<Error>),
}

struct Load {
    args: Args,
    addr: SocketAddr,
    request: Vec<u8>,
    poll: Poll,
    slots: Vec<Slot>,
    latencies: Vec<Duration>,
    /// When the run started, and for `--timeline` the requests completed
    /// in each interval since then (empty without `--timeline`).
    start: Instant,
    timeline: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    /// Counts by `Error` (as index).
    errors: [u64; 6],
    /// Slow and idle clients the server closed, by `Role` (as index).
    dropped: [u64; 4],
    /// Slow readers: responses read to their end, and bytes read in all.
    slow_read: (u64, u64),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("loadgen: {err}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> io::Result<()> {
    let (addr, host, url_path) = parse_url(&args.url)?;
    if !addr.ip().is_loopback() && !args.allow_remote {
        return Err(io::Error::other(format!(
            "{addr} is not a loopback address; load another machine only if it is yours: --allow-remote"
        )));
    }
    let total = args.connections + args.slow + args.idle + args.slow_readers;
    if total == 0 {
        return Err(io::Error::other(
            "nothing to do: --connections, --slow, --idle and --slow-readers are all 0",
        ));
    }
    if args.timeline.is_some_and(|t| t.is_zero()) {
        return Err(io::Error::other(
            "--timeline needs an interval above 0, e.g. 100ms",
        ));
    }
    raise_fd_limit(total as u64 + 32)?;
    let path = args.path.clone().unwrap_or(url_path);
    let close = if args.new_connection_per_request {
        "Connection: close\r\n"
    } else {
        ""
    };
    let request = format!(
        "{} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: loadgen\r\n{close}\r\n",
        args.method
    )
    .into_bytes();
    let now = Instant::now();
    let roles = [
        (Role::Worker, args.connections),
        (Role::Slow, args.slow),
        (Role::Idle, args.idle),
        (Role::SlowReader, args.slow_readers),
    ];
    let slots = roles
        .iter()
        .flat_map(|&(role, n)| (0..n).map(move |_| role))
        .map(|role| Slot {
            role,
            conn: None,
            reconnect_at: now,
        })
        .collect();
    let mut load = Load {
        args,
        addr,
        request,
        poll: Poll::new()?,
        slots,
        latencies: Vec::new(),
        start: now,
        timeline: Vec::new(),
        statuses: BTreeMap::new(),
        errors: [0; 6],
        dropped: [0; 4],
        slow_read: (0, 0),
    };
    if let Some(interval) = load.args.timeline {
        let n = load.args.duration.as_nanos().div_ceil(interval.as_nanos());
        load.timeline = vec![0; (n as usize).max(1)];
    }
    let elapsed = load.drive()?;
    let open = load.open_counts();
    if load.args.json {
        println!("{}", load.json(elapsed, open));
    } else {
        print!("{}", load.summary(elapsed, open));
    }
    Ok(())
}

/// `http://HOST:PORT/PATH` → the address, the Host header, the path.
fn parse_url(url: &str) -> io::Result<(SocketAddr, String, String)> {
    let bad = || {
        io::Error::other(format!(
            "expected a URL like http://127.0.0.1:8002/, got {url:?}"
        ))
    };
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = with_port.to_socket_addrs()?.next().ok_or_else(bad)?;
    Ok((addr, host.to_string(), path))
}

/// One thread can hold ten thousand sockets only if the process may open
/// that many descriptors: raise the soft limit up to the hard one.
fn raise_fd_limit(needed: u64) -> io::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        return Err(io::Error::other(format!(
            "{needed} descriptors needed, the hard limit is {hard}: run `ulimit -n {}` (as root, or raise it in /etc/security/limits.conf) and try again",
            needed.max(20_000)
        )));
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(())
}

impl Load {
    /// The event loop: connect, write, read, until the duration is over.
    fn drive(&mut self) -> io::Result<Duration> {
        let start = Instant::now();
        self.start = start;
        let end = start + self.args.duration;
        let live = io::stderr().is_terminal() && !self.args.json;
        let mut next_progress = start + Duration::from_secs(1);
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            self.tick(now);
            let wait = (end - now).min(Duration::from_millis(50));
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            for event in events.iter() {
                self.advance(event.token().0);
            }
            if live && Instant::now() >= next_progress {
                next_progress += Duration::from_secs(1);
                let secs = start.elapsed().as_secs_f64();
                let open = self.open_counts();
                eprint!(
                    "\r{secs:5.1}s  {} requests  {:.0}/s  {} errors  {} open   ",
                    self.latencies.len(),
                    self.latencies.len() as f64 / secs,
                    self.error_total(),
                    open.iter().sum::<usize>()
                );
            }
        }
        if live {
            eprintln!();
        }
        Ok(start.elapsed())
    }

    /// Timers: connect who is due, time out slow requests, drip slow clients.
    fn tick(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            let role = slot.role;
            match &slot.conn {
                None if now >= slot.reconnect_at => self.connect(i),
                None => {}
                // Connecting, or a worker waiting for its response, too long.
                Some(conn)
                    if (!conn.connected || role == Role::Worker)
                        && now - conn.started > self.args.timeout =>
                {
                    self.errors[Error::Timeout as usize] += 1;
                    self.close(i, Duration::ZERO);
                }
                Some(conn)
                    if matches!(role, Role::Slow | Role::SlowReader)
                        && conn.connected
                        && now >= conn.next_drip =>
                {
                    self.advance(i);
                }
                Some(_) => {}
            }
        }
    }

    fn connect(&mut self, i: usize) {
        match TcpStream::connect(self.addr) {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(err) = self
                    .poll
                    .registry()
                    .register(&mut stream, Token(i), interest)
                {
                    eprintln!("loadgen: register: {err}");
                    self.slots[i].reconnect_at = Instant::now() + Duration::from_millis(100);
                    return;
                }
                let now = Instant::now();
                self.slots[i].conn = Some(Conn {
                    stream,
                    connected: false,
                    out: Vec::new(),
                    written: 0,
                    input: Vec::new(),
                    response: None,
                    started: now,
                    next_drip: now,
                });
            }
            Err(err) => {
                self.count_io_error(&err);
                self.slots[i].reconnect_at = Instant::now() + Duration::from_millis(100);
            }
        }
    }

    /// Drop slot `i`'s connection and schedule a new one after `pause`.
    fn close(&mut self, i: usize, pause: Duration) {
        if let Some(mut conn) = self.slots[i].conn.take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        self.slots[i].reconnect_at = Instant::now() + pause;
        if pause.is_zero() {
            self.connect(i); // at once, not at the next tick
        }
    }

    fn count_io_error(&mut self, err: &io::Error) {
        let error = match err.kind() {
            io::ErrorKind::ConnectionRefused => Error::Refused,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Error::Reset,
            io::ErrorKind::TimedOut => Error::Timeout,
            _ => Error::Other,
        };
        self.errors[error as usize] += 1;
    }

    /// Do everything connection `i` can do now. mio is edge-triggered: each
    /// pass reads and writes until the kernel says WouldBlock.
    fn advance(&mut self, i: usize) {
        loop {
            let step = match self.step(i) {
                Ok(step) => step,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) => {
                    let role = self.slots[i].role;
                    if role == Role::Worker
                        || !self.slots[i].conn.as_ref().is_some_and(|c| c.connected)
                    {
                        self.count_io_error(&err);
                    } else {
                        self.dropped[role as usize] += 1;
                    }
                    let pause = if err.kind() == io::ErrorKind::ConnectionRefused {
                        100
                    } else {
                        0
                    };
                    self.close(i, Duration::from_millis(pause));
                    return;
                }
            };
            match step {
                Step::Again => {}
                Step::Close(error) => {
                    if let Some(error) = error {
                        self.errors[error as usize] += 1;
                    }
                    self.close(i, Duration::ZERO);
                    return;
                }
            }
        }
    }

    /// One step of connection `i`; `Err(WouldBlock)` when there is nothing to do.
    fn step(&mut self, i: usize) -> io::Result<Step> {
        let role = self.slots[i].role;
        let would_block = || Err(io::ErrorKind::WouldBlock.into());
        let Some(conn) = self.slots[i].conn.as_mut() else {
            return would_block();
        };
        if !conn.connected {
            // A non-blocking connect is done when the socket is writable;
            // peer_addr says whether it worked, take_error says why not.
            if let Some(err) = conn.stream.take_error()? {
                return Err(err);
            }
            match conn.stream.peer_addr() {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::NotConnected => return would_block(),
                Err(err) => return Err(err),
            }
            conn.connected = true;
            // With a connection per request, the latency includes the connect.
            if !(role == Role::Worker && self.args.new_connection_per_request) {
                conn.started = Instant::now();
            }
            conn.next_drip = Instant::now();
            conn.out = match role {
                Role::Worker | Role::SlowReader => self.request.clone(),
                // Then SLOW_FILLER forever: a head that never ends.
                Role::Slow => {
                    format!("{} / HTTP/1.1\r\nHost: x\r\n", self.args.method).into_bytes()
                }
                Role::Idle => Vec::new(),
            };
            return Ok(Step::Again);
        }
        // Write: a worker its request, a slow client one byte when it is due.
        if role == Role::Slow && Instant::now() >= conn.next_drip {
            let k = conn.written;
            let byte = match conn.out.get(k) {
                Some(&b) => b,
                None => SLOW_FILLER[(k - conn.out.len()) % SLOW_FILLER.len()],
            };
            conn.written += conn.stream.write(&[byte])?;
            conn.next_drip = Instant::now() + self.args.slow_interval;
            return Ok(Step::Again);
        }
        if matches!(role, Role::Worker | Role::SlowReader) && conn.written < conn.out.len() {
            conn.written += conn.stream.write(&conn.out[conn.written..])?;
            return Ok(Step::Again);
        }
        // Read: a slow reader only SLOW_READ bytes, and only when it is due.
        let mut chunk = [0u8; 16 * 1024];
        let n = match role {
            Role::SlowReader if Instant::now() < conn.next_drip => return would_block(),
            Role::SlowReader => {
                conn.next_drip = Instant::now() + self.args.slow_interval;
                conn.stream.read(&mut chunk[..SLOW_READ])?
            }
            _ => conn.stream.read(&mut chunk)?,
        };
        if n == 0 {
            // A close-delimited body ends here; any other is cut short.
            let body_ended = conn
                .response
                .as_mut()
                .is_some_and(|(decoder, _)| decoder.finish_at_eof().is_ok());
            return Ok(match role {
                Role::Worker if body_ended => self.finish_response(i, false),
                Role::Worker => Step::Close(Some(Error::Closed)),
                _ => {
                    self.dropped[role as usize] += 1;
                    Step::Close(None)
                }
            });
        }
        if role == Role::SlowReader {
            self.slow_read.1 += n as u64;
            conn.input.extend_from_slice(&chunk[..n]);
            return self.parse(i);
        }
        if role != Role::Worker {
            return Ok(Step::Again); // e.g. a 408 for a slow client: ignored
        }
        conn.input.extend_from_slice(&chunk[..n]);
        self.parse(i)
    }

    /// Make progress on the response in connection `i`'s input.
    fn parse(&mut self, i: usize) -> io::Result<Step> {
        let head_only = self.args.method == "HEAD";
        let role = self.slots[i].role;
        let conn = self.slots[i].conn.as_mut().expect("connected");
        let (decoder, keep_alive) = match &mut conn.response {
            Some(reading) => reading,
            None => {
                let (head, consumed) = match http::parse_response(&conn.input) {
                    Ok(Some(parsed)) => parsed,
                    Ok(None) => return Ok(Step::Again),
                    Err(_) => return Ok(Step::Close(Some(Error::BadResponse))),
                };
                if role == Role::Worker {
                    *self.statuses.entry(head.status).or_default() += 1;
                }
                let Ok(framing) = head.body_framing(head_only) else {
                    return Ok(Step::Close(Some(Error::BadResponse)));
                };
                conn.input.drain(..consumed);
                let decoder = BodyDecoder::unlimited(framing);
                conn.response.insert((decoder, head.keep_alive()))
            }
        };
        // The body itself is dropped: only where it ends matters here.
        let mut scratch = Vec::new();
        match decoder.feed(&conn.input, &mut scratch) {
            Ok(used) => drop(conn.input.drain(..used)),
            Err(_) => return Ok(Step::Close(Some(Error::BadResponse))),
        }
        if !decoder.is_done() {
            return Ok(Step::Again);
        }
        let keep_alive = *keep_alive;
        if role == Role::SlowReader {
            // Read to its end, slowly: ask again (not a worker's request).
            self.slow_read.0 += 1;
            conn.response = None;
            conn.written = 0;
            return Ok(if keep_alive {
                Step::Again
            } else {
                Step::Close(None)
            });
        }
        Ok(self.finish_response(i, keep_alive))
    }

    /// A whole response arrived: record it, then the next request.
    fn finish_response(&mut self, i: usize, keep_alive: bool) -> Step {
        let conn = self.slots[i].conn.as_mut().expect("connected");
        self.latencies.push(conn.started.elapsed());
        conn.response = None;
        if !self.timeline.is_empty() {
            let interval = self.args.timeline.expect("a timeline has an interval");
            let at = (self.start.elapsed().as_nanos() / interval.as_nanos()) as usize;
            // The last pass may end a hair after --duration: count it last.
            let last = self.timeline.len() - 1;
            self.timeline[at.min(last)] += 1;
        }
        if !keep_alive || self.args.new_connection_per_request {
            return Step::Close(None);
        }
        conn.started = Instant::now();
        conn.written = 0;
        Step::Again
    }

    /// The timeline as text: one row per ten intervals, each row starting
    /// with the time of its first interval.
    fn timeline_text(&self, interval: Duration) -> String {
        let mut out = format!(
            "timeline:  requests completed per {} (a row is {})\n",
            show_duration(interval),
            show_duration(interval * 10)
        );
        for (row, counts) in self.timeline.chunks(10).enumerate() {
            let at = interval.as_secs_f64() * (row * 10) as f64;
            let _ = write!(out, "  {at:7.1}s ");
            for n in counts {
                let _ = write!(out, " {n:5}");
            }
            out.push('\n');
        }
        out
    }

    /// Open connections per role: workers, slow, idle, slow readers.
    fn open_counts(&self) -> [usize; 4] {
        let mut open = [0; 4];
        for slot in &self.slots {
            if slot.conn.as_ref().is_some_and(|c| c.connected) {
                open[slot.role as usize] += 1;
            }
        }
        open
    }

    fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// p50, p90, p99 and max latency, in milliseconds.
    fn percentiles(&mut self) -> [f64; 4] {
        self.latencies.sort_unstable();
        let at = |q: f64| -> f64 {
            if self.latencies.is_empty() {
                return 0.0;
            }
            let i =
                ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
            self.latencies[i - 1].as_secs_f64() * 1000.0
        };
        [at(0.50), at(0.90), at(0.99), at(1.0)]
    }

    fn summary(&mut self, elapsed: Duration, open: [usize; 4]) -> String {
        let secs = elapsed.as_secs_f64();
        let [p50, p90, p99, max] = self.percentiles();
        let (n, args) = (self.latencies.len(), &self.args);
        let mode = match args.new_connection_per_request {
            true => "a new connection per request",
            false => "keep-alive",
        };
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let errors: Vec<String> = ERROR_NAMES
            .iter()
            .zip(self.errors)
            .map(|(e, n)| format!("{} {n}", e.replace('_', " ")))
            .collect();
        let mut out = format!(
            "target:    {} ({})\n\
             clients:   {} ({mode}), {} slow, {} idle, for {secs:.1} s\n\
             requests:  {n} completed, {:.1}/s\n\
             latency:   p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms, max {max:.2} ms\n\
             statuses:  {}\n\
             errors:    {} ({})\n",
            args.url,
            self.addr,
            args.connections,
            args.slow,
            args.idle,
            n as f64 / secs,
            if statuses.is_empty() {
                "none".to_string()
            } else {
                statuses.join(", ")
            },
            self.error_total(),
            errors.join(", "),
        );
        if args.slow + args.idle > 0 {
            let _ = writeln!(
                out,
                "slow/idle: {} slow open at the end ({} dropped by the server), {} idle open ({} dropped)",
                open[1], self.dropped[1], open[2], self.dropped[2]
            );
        }
        if args.slow_readers > 0 {
            let _ = writeln!(
                out,
                "slow readers: {} open at the end ({} dropped by the server), {} responses read whole, {} bytes read",
                open[3], self.dropped[3], self.slow_read.0, self.slow_read.1
            );
        }
        if let Some(interval) = args.timeline {
            out.push_str(&self.timeline_text(interval));
        }
        out
    }

    fn json(&mut self, elapsed: Duration, open: [usize; 4]) -> String {
        let secs = elapsed.as_secs_f64();
        let [p50, p90, p99, max] = self.percentiles();
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("\"{s}\":{n}"))
            .collect();
        let errors: Vec<String> = ERROR_NAMES
            .iter()
            .zip(self.errors)
            .map(|(name, n)| format!("\"{name}\":{n}"))
            .collect();
        let url: String = self
            .args
            .url
            .chars()
            .filter(|c| !matches!(c, '"' | '\\') && !c.is_control())
            .collect();
        format!(
            "{{\"url\":\"{url}\",\"seconds\":{secs:.3},\"connections\":{},\"keep_alive\":{},\"requests\":{},\"requests_per_second\":{:.1},\
             \"latency_ms\":{{\"p50\":{p50:.3},\"p90\":{p90:.3},\"p99\":{p99:.3},\"max\":{max:.3}}},\"statuses\":{{{}}},\
             \"errors\":{{\"total\":{},{}}},\
             \"slow\":{{\"clients\":{},\"open\":{},\"dropped\":{}}},\"idle\":{{\"clients\":{},\"open\":{},\"dropped\":{}}},\
             \"slow_readers\":{{\"clients\":{},\"open\":{},\"dropped\":{},\"responses\":{},\"bytes\":{}}}{}}}",
            self.args.connections,
            !self.args.new_connection_per_request,
            self.latencies.len(),
            self.latencies.len() as f64 / secs,
            statuses.join(","),
            self.error_total(),
            errors.join(","),
            self.args.slow,
            open[1],
            self.dropped[1],
            self.args.idle,
            open[2],
            self.dropped[2],
            self.args.slow_readers,
            open[3],
            self.dropped[3],
            self.slow_read.0,
            self.slow_read.1,
            self.timeline_json(),
        )
    }

    /// `,"timeline":{"interval_ms":100.000,"counts":[…]}`, or nothing.
    fn timeline_json(&self) -> String {
        let Some(interval) = self.args.timeline else {
            return String::new();
        };
        let counts: Vec<String> = self.timeline.iter().map(u64::to_string).collect();
        format!(
            ",\"timeline\":{{\"interval_ms\":{:.3},\"counts\":[{}]}}",
            interval.as_secs_f64() * 1000.0,
            counts.join(",")
        )
    }
}

/// `100ms`, `1s`, `1.5s`: a duration as the flags spell it.
fn show_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}
