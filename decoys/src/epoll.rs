//! The HTTP server behind the ex05 decoys: keep-alive, pipelining, files,
//! `/hello`, 400 for garbage, exit 0 on SIGTERM; but not an event loop.
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
}

struct Conn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    close_after: bool,
    done: bool,
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
            let mut conn = Conn::new(stream);
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
            conns.push(Conn::new(stream));
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
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            close_after: false,
            done: false,
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
                    if self.close_after {
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
        if request.path() == "/hello" {
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
