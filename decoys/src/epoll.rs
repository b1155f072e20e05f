//! The HTTP server behind the ex05 decoys: keep-alive, pipelining, files,
//! `/hello`, `/count` (chunked, made as the client reads), 400 for garbage,
//! exit 0 on SIGTERM; but not an event loop.
//! It either polls every socket in turn (non-blocking, with a 1 ms nap
//! between rounds, or, as a flaw, without one: a busy loop), or, as the other
//! flaw, serves one connection at a time with blocking sockets. Not a
//! lesson: read `src/bin/lesson05_epoll.rs` for that.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use clap::Parser;
use ladder::http::{Body, Limits, Parsed, Response, ServerInfo, parse_request};
use ladder::static_files::{self, Root};

/// A test double for the grader's self-tests (tests/grade_decoys.rs).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    listen: ladder::cli::ListenArgs<5>,
    #[arg(long, short = 'd', default_value = ".")]
    directory: PathBuf,
    /// Accepted and ignored (the grader passes it).
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
}

/// The one mistake to make (all false: a polling server that naps).
#[derive(Default, Clone, Copy)]
pub struct Flaws {
    /// Poll without ever sleeping: 100% CPU when idle.
    pub busy_loop: bool,
    /// Blocking sockets, one connection at a time, until it closes.
    pub blocking: bool,
    /// A `/count` whose client left goes on counting, on a thread, to the end.
    pub count_never_stops: bool,
}

struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    close_after: bool,
    done: bool,
    /// A `/count` in progress: the next number and the last.
    count: Option<(u64, u64)>,
    count_never_stops: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let (true, Some((next, to))) = (self.count_never_stops, self.count) {
            thread::spawn(move || {
                let mut n = next;
                while n < to {
                    n = std::hint::black_box(n + 1);
                }
            });
        }
    }
}

pub fn main(flaws: Flaws) -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    match run(&args, flaws) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("decoy: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args, flaws: Flaws) -> io::Result<()> {
    ladder::shutdown::exit_on_termination()?;
    let root = Root::new(&args.directory)?;
    let listener = TcpListener::bind(args.listen.addr())?;
    ladder::cli::announce("http", listener.local_addr()?)?;
    if flaws.blocking {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut conn = Conn::new(stream, flaws);
            while !conn.done {
                let _ = conn.step(&root);
                if !conn.out.is_empty() {
                    let _ = conn.stream.write_all(&conn.out);
                    conn.out.clear();
                }
            }
        }
        return Ok(());
    }
    listener.set_nonblocking(true)?;
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        while let Ok((stream, _)) = listener.accept() {
            stream.set_nonblocking(true)?;
            conns.push(Conn::new(stream, flaws));
        }
        for conn in &mut conns {
            if conn.step(&root).is_err() {
                conn.done = true;
            }
        }
        conns.retain(|c| !c.done);
        if !flaws.busy_loop {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Conn {
    fn new(stream: TcpStream, flaws: Flaws) -> Conn {
        Conn {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            close_after: false,
            done: false,
            count: None,
            count_never_stops: flaws.count_never_stops,
        }
    }

    /// The next piece of a `/count` body, as one chunk (the last chunk after it).
    fn count_more(&mut self) {
        let Some((mut next, to)) = self.count else {
            return;
        };
        let mut piece = String::new();
        while next <= to && piece.len() < 16 * 1024 {
            piece.push_str(&format!("{next}\n"));
            next += 1;
        }
        ladder::http::write_chunk(&mut self.out, piece.as_bytes());
        if next > to {
            self.out.extend_from_slice(ladder::http::LAST_CHUNK);
            self.count = None;
        } else {
            self.count = Some((next, to));
        }
    }

    /// Write what is pending, answer what is buffered, read what is there.
    fn step(&mut self, root: &Root) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        if self.count.is_some() {
            self.count_more();
            return Ok(());
        }
        if self.close_after {
            let _ = self.stream.shutdown(Shutdown::Write);
            self.done = true;
            return Ok(());
        }
        loop {
            match parse_request(&self.inbuf, &Limits::default()) {
                Ok(Parsed::Complete { request, consumed }) => {
                    // Bodies are skipped by Content-Length only (enough here).
                    let body = request
                        .header("content-length")
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if self.inbuf.len() < consumed + body {
                        break;
                    }
                    self.inbuf.drain(..consumed + body);
                    self.answer(root, &request);
                    if self.close_after || self.count.is_some() {
                        return Ok(());
                    }
                }
                Ok(Parsed::Partial) => break,
                Err(rejection) => {
                    let (_, page) = rejection
                        .to_response()
                        .render(None, &ServerInfo::PLAIN, false);
                    self.out.extend(page);
                    self.close_after = true;
                    return Ok(());
                }
            }
        }
        if !self.out.is_empty() {
            return Ok(());
        }
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.done = true,
            Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn answer(&mut self, root: &Root, request: &ladder::http::Request) {
        let keep_alive = request.keep_alive();
        if request.path() == "/count" {
            let to = request
                .query()
                .strip_prefix("to=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(10);
            let mut head = Response::new(200)
                .header("Content-Type", "text/plain")
                .body(Body::Stream { len: None });
            let (_, bytes) = head.render(Some(request), &ServerInfo::PLAIN, keep_alive);
            self.out.extend(bytes);
            self.count = Some((1, to));
        } else if request.path() == "/hello" {
            let mut hello = Response::with_bytes(200, "text/plain", "Hello, World!\n");
            let (_, bytes) = hello.render(Some(request), &ServerInfo::PLAIN, keep_alive);
            self.out.extend(bytes);
        } else {
            let mut response = static_files::respond(root, request);
            let (plan, head) = response.render(Some(request), &ServerInfo::PLAIN, true);
            self.out.extend(head);
            self.close_after |= !plan.keep_alive;
            if let (Body::File { mut file, .. }, true) = (response.body, plan.send_body) {
                let _ = file.read_to_end(&mut self.out);
            }
        }
        self.close_after |= !keep_alive;
    }
}
