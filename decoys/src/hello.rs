//! The HTTP server behind the hello decoys: correct (lesson 02's contract:
//! CRLF, Content-Length, 400/431, a header deadline, a graceful close after
//! an error), unless told to make one specific mistake. Not a lesson: read
//! `src/bin/lesson02_hello.rs` for that.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ladder::connection::{Connection, Got};
use ladder::http::{Framing, Limits, Request, Response, ServerInfo};

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
    loop {
        let result = listener
            .accept()
            .and_then(|(stream, peer)| serve(stream, peer, timeout, flaws));
        if let Err(err) = result {
            eprintln!("hello decoy: {err}");
        }
    }
}

fn serve(stream: TcpStream, peer: SocketAddr, timeout: Duration, flaws: Flaws) -> io::Result<()> {
    let mut conn = Connection::new(stream, peer, Limits::default());
    match conn.read_request(Some(Instant::now() + timeout))? {
        Got::Done(request) => respond(conn, &request, flaws),
        Got::Idle => conn.refuse::<()>(None, Got::TimedOut),
        other => conn.refuse(None, other),
    }
}

fn respond(mut conn: Connection, request: &Request, flaws: Flaws) -> io::Result<()> {
    let body = "Hello, World!\n";
    let response = Response::with_bytes(200, "text/plain; charset=utf-8", body);
    if !flaws.bare_lf && !flaws.no_length {
        return conn.respond(Some(request), response, false).map(drop);
    }
    // The flaws are mistakes no `Response` makes: write these bytes by hand.
    let mut plan = response.plan(Some(request), &ServerInfo::PLAIN, false);
    if flaws.no_length {
        plan.framing = Framing::UntilClose;
    }
    let mut bytes = Vec::new();
    response.write_head(&plan, &ServerInfo::PLAIN, &mut bytes);
    if flaws.bare_lf {
        bytes = String::from_utf8_lossy(&bytes)
            .replace("\r\n", "\n")
            .into_bytes();
    }
    if plan.send_body {
        bytes.extend_from_slice(body.as_bytes());
    }
    conn.write_raw(&bytes)
}
