//! The HTTP server behind the hello decoys: correct (lesson 02's contract:
//! CRLF, Content-Length, 400/431, a header deadline, a graceful close after
//! an error), unless told to make one specific mistake. Not a lesson: read
//! `src/bin/lesson02_hello.rs` for that.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ladder::http::{Limits, Parsed, Rejection, Request, Response, ServerInfo, parse_request};

/// A test double for the grader's self-tests (tests/grade_decoys.rs).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    listen: ladder::cli::ListenArgs<2>,

    /// Seconds a client may take to send its request head
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
}

/// The one mistake to make (all false: a correct server).
#[derive(Default, Clone, Copy)]
pub struct Flaws {
    /// End head lines with a bare LF instead of CRLF.
    pub bare_lf: bool,
    /// Leave out Content-Length (the body ends at the close).
    pub no_length: bool,
}

pub fn main(flaws: Flaws) -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    let listener = ladder::shutdown::exit_on_termination()
        .and_then(|()| TcpListener::bind(args.listen.addr()))
        .and_then(|listener| {
            ladder::cli::announce("http", listener.local_addr()?)?;
            Ok(listener)
        });
    let listener = match listener {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("hello decoy: {err}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_secs(args.header_timeout);
    for stream in listener.incoming() {
        let result = stream.and_then(|stream| serve(stream, timeout, flaws));
        if let Err(err) = result {
            eprintln!("hello decoy: {err}");
        }
    }
    ExitCode::SUCCESS
}

fn serve(mut stream: TcpStream, timeout: Duration, flaws: Flaws) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    loop {
        match parse_request(&buf, &Limits::default()) {
            Ok(Parsed::Complete { request, .. }) => return respond(stream, &request, flaws),
            Ok(Parsed::Partial) => {}
            Err(rejection) => return reject(stream, rejection),
        }
        match read_until(&mut stream, &mut buf, deadline)? {
            Some(0) => return Ok(()),
            Some(_) => {}
            None => return reject(stream, Rejection::new(408, "too slow")),
        }
    }
}

/// One read, bounded by `deadline`: `None` when it passed.
fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<Option<usize>> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Ok(None);
    }
    stream.set_read_timeout(Some(left))?;
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(Some(n))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn respond(mut stream: TcpStream, request: &Request, flaws: Flaws) -> io::Result<()> {
    let body = "Hello, World!\n";
    let (_, bytes) = Response::with_bytes(200, "text/plain; charset=utf-8", body).render(
        Some(request),
        &ServerInfo::PLAIN,
        false,
    );
    // The flaws are edits of the correct bytes.
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if flaws.no_length {
        text = text.replacen(&format!("Content-Length: {}\r\n", body.len()), "", 1);
    }
    if flaws.bare_lf {
        text = text.replace("\r\n", "\n");
    }
    stream.write_all(text.as_bytes())
}

fn reject(mut stream: TcpStream, rejection: Rejection) -> io::Result<()> {
    let (_, page) = rejection
        .to_response()
        .render(None, &ServerInfo::PLAIN, false);
    stream.write_all(&page)?;
    stream.shutdown(Shutdown::Write)?;
    // Read what the client still sends, briefly, so close() sends no RST.
    let until = Instant::now() + Duration::from_secs(1);
    let mut scratch = Vec::new();
    while let Ok(Some(1..)) = read_until(&mut stream, &mut scratch, until) {
        scratch.clear();
    }
    Ok(())
}
