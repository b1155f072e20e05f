//! The echo server behind the echo decoys: correct, unless told to make one
//! specific mistake. Not a lesson (read `src/bin/lesson01_echo.rs` for that):
//! std's `TcpListener` keeps it short.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;

use clap::Parser;

/// A test double for the grader's self-tests (tests/grade_decoys.rs).
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    listen: ladder::cli::ListenArgs<1>,
}

/// The one mistake to make (all false: a correct iterative echo server).
#[derive(Default, Clone, Copy)]
pub struct Flaws {
    /// Echo what the first read returned, then close.
    pub reads_once: bool,
    /// Shut each connection down (the client sees the close) but never
    /// close its descriptor.
    pub leaks_fd: bool,
    /// Swallow SIGTERM and SIGINT instead of exiting.
    pub ignores_sigterm: bool,
    /// Not a flaw: a thread per connection, so clients are served at once.
    pub threaded: bool,
}

pub fn main(flaws: Flaws) -> ExitCode {
    let args = Args::parse();
    args.listen.apply();
    let signals = if flaws.ignores_sigterm {
        ladder::shutdown::on_termination(|_| {})
    } else {
        ladder::shutdown::exit_on_termination()
    };
    let listener = signals
        .and_then(|()| TcpListener::bind(args.listen.addr()))
        .and_then(|listener| {
            ladder::cli::announce("tcp", listener.local_addr()?)?;
            Ok(listener)
        });
    let listener = match listener {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("echo decoy: {err}");
            return ExitCode::FAILURE;
        }
    };
    for stream in listener.incoming() {
        match stream {
            Ok(stream) if flaws.threaded => {
                thread::spawn(move || serve(stream, flaws));
            }
            Ok(stream) => serve(stream, flaws),
            Err(err) => eprintln!("echo decoy: accept: {err}"),
        }
    }
    ExitCode::SUCCESS
}

fn serve(mut stream: TcpStream, flaws: Flaws) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() || flaws.reads_once {
                    break;
                }
            }
        }
    }
    if flaws.leaks_fd {
        // The mistake: FIN is sent, but the descriptor is never closed.
        let _ = stream.shutdown(std::net::Shutdown::Both);
        std::mem::forget(stream);
    }
}
