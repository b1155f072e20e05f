//! The stage API and the runner: what an exercise's checks look like, the
//! context each check gets (a freshly started server and recording I/O
//! helpers), and the loop that runs them in order.
//!
//! Adding an exercise: write `src/bin/grade/exNN_name.rs` with a
//! `pub const EXERCISE: Exercise` and its stage functions, then register it
//! with two lines in `main.rs` (`mod exNN_name;` and an entry in `EXERCISES`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ladder::http::{self, ResponseIn};
use ladder_harness::{self as harness, ResetAsEof, Server};

/// One exercise: its stages, in the order they run.
pub struct Exercise {
    /// `ex01_echo`: the skeleton binary in the exercises package.
    pub name: &'static str,
    /// `lesson01_echo`: the reference rung that passes every stage.
    pub lesson: &'static str,
    /// The rung's default port, used in the commands printed to reproduce a
    /// failure by hand (the graded server itself always runs on port 0).
    pub port: u16,
    pub stages: &'static [Stage],
}

/// One check. `run` gets a context whose server is not started yet (so a
/// stage can pass its own flags); it returns `Err` with what went wrong.
pub struct Stage {
    /// `echo_roundtrip`: snake_case, stable (CI reports and `--stage` use it).
    pub name: &'static str,
    /// One line saying what is checked, for the report.
    pub title: &'static str,
    /// Where to look when it fails: the lesson section, the usual mistake.
    pub hint: &'static str,
    pub run: fn(&mut Ctx) -> Result<(), Failure>,
}

/// Why a stage failed. The runner adds the hint and the server's stderr.
#[derive(Debug, Clone, Default)]
pub struct Failure {
    /// Bytes the stage sent (the runner prints them escaped).
    pub sent: Vec<u8>,
    /// Bytes that came back.
    pub got: Vec<u8>,
    /// What a correct server would have done.
    pub expected: String,
    /// What happened instead, when the bytes alone do not say it (an I/O
    /// error, a timeout, an exit status).
    pub detail: String,
    /// An equivalent command to try by hand (`printf … | nc …`, `curl -v …`).
    pub reproduce: String,
    /// The last lines the server wrote on stderr (filled in by the runner).
    pub stderr: String,
}

impl Failure {
    /// Replace what was expected (for a helper's generic failure).
    pub fn expecting(mut self, expected: impl Into<String>) -> Failure {
        self.expected = expected.into();
        self
    }

    /// Add what happened instead.
    pub fn detail(mut self, detail: impl Into<String>) -> Failure {
        self.detail = detail.into();
        self
    }
}

/// The result of one stage.
pub struct Outcome {
    pub name: &'static str,
    pub title: &'static str,
    pub hint: &'static str,
    pub elapsed: Duration,
    pub failure: Option<Failure>,
}

/// What a stage works with: the binary under test, the server once started,
/// and a transcript of the bytes sent and received, which every failure made
/// with [`Ctx::fail`] carries.
pub struct Ctx {
    bin: PathBuf,
    server: Option<Server>,
    port_hint: u16,
    sent: Vec<u8>,
    got: Vec<u8>,
    reproduce: String,
}

impl Ctx {
    pub fn new(bin: &Path, port_hint: u16) -> Ctx {
        Ctx {
            bin: bin.to_path_buf(),
            server: None,
            port_hint,
            sent: Vec::new(),
            got: Vec::new(),
            reproduce: String::new(),
        }
    }

    /// Start the server with `args` plus `--port 0` and wait for its
    /// announce line. A server that cannot start fails the stage, with its
    /// stderr in the report.
    pub fn start(&mut self, args: &[&str]) -> Result<&mut Server, Failure> {
        self.server = None;
        let mut command = Command::new(&self.bin);
        command.args(args).args(["--port", "0"]);
        // A panic's message and location say enough; a backtrace (if the
        // caller's environment asks for one) would bury the report.
        command.env("RUST_BACKTRACE", "0");
        match Server::spawn(command) {
            Ok(server) => Ok(self.server.insert(server)),
            Err(err) => Err(self
                .fail("the server to start and print its URL as the first line on stdout")
                .detail(err.to_string())),
        }
    }

    /// The running server. Panics if the stage did not call [`Ctx::start`]
    /// (a bug in the stage, reported as such by the runner).
    pub fn server(&mut self) -> &mut Server {
        self.server
            .as_mut()
            .expect("the stage must call ctx.start() first")
    }

    /// A new connection, with read and write timeouts of `harness::IO_TIMEOUT`.
    pub fn connect(&mut self) -> Result<TcpStream, Failure> {
        let result = self.server().connect();
        result.map_err(|err| {
            self.fail("the server to accept a TCP connection")
                .detail(format!("connect: {err}"))
        })
    }

    /// Set the command shown to reproduce a failure by hand (see [`Ctx::nc`]
    /// and [`Ctx::curl`]).
    pub fn reproduce(&mut self, command: impl Into<String>) {
        self.reproduce = command.into();
    }

    /// Forget the bytes recorded so far (for a stage with several phases,
    /// so a failure shows only the phase that failed).
    pub fn clear_transcript(&mut self) {
        self.sent.clear();
        self.got.clear();
    }

    /// Note bytes as sent without sending them (when another thread sends).
    pub fn record_sent(&mut self, bytes: &[u8]) {
        self.sent.extend_from_slice(bytes);
    }

    /// Note bytes as received (when the stage read them some other way).
    pub fn record_got(&mut self, bytes: &[u8]) {
        self.got.extend_from_slice(bytes);
    }

    /// A failure carrying the transcript and the reproduce command.
    pub fn fail(&self, expected: impl Into<String>) -> Failure {
        Failure {
            sent: self.sent.clone(),
            got: self.got.clone(),
            expected: expected.into(),
            detail: String::new(),
            reproduce: self.reproduce.clone(),
            stderr: String::new(),
        }
    }

    /// `Ok` if `condition` holds, else a failure saying what was `expected`.
    pub fn ensure(&self, condition: bool, expected: impl Into<String>) -> Result<(), Failure> {
        if condition {
            Ok(())
        } else {
            Err(self.fail(expected))
        }
    }

    /// Write all of `bytes`, recording them.
    pub fn send(&mut self, stream: &mut TcpStream, bytes: &[u8]) -> Result<(), Failure> {
        self.sent.extend_from_slice(bytes);
        stream.write_all(bytes).map_err(|err| {
            self.fail("the server to read what was sent")
                .detail(format!("write: {err}"))
        })
    }

    /// Close our sending side (the server's read then returns 0: EOF).
    pub fn send_eof(&mut self, stream: &mut TcpStream) -> Result<(), Failure> {
        stream.shutdown(Shutdown::Write).map_err(|err| {
            self.fail("the connection to stay open until we close it")
                .detail(format!("shutdown(SHUT_WR): {err}"))
        })
    }

    /// Read exactly `n` bytes (the server may send them in any pieces).
    pub fn recv_exact(&mut self, stream: &mut TcpStream, n: usize) -> Result<Vec<u8>, Failure> {
        let mut out = vec![0u8; n];
        let mut have = 0;
        while have < n {
            match stream.read(&mut out[have..]) {
                Ok(0) => {
                    return Err(self.fail(format!("{n} bytes back")).detail(format!(
                        "the server closed the connection after {have} bytes"
                    )));
                }
                Ok(k) => {
                    self.got.extend_from_slice(&out[have..have + k]);
                    have += k;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(self
                        .fail(format!("{n} bytes back"))
                        .detail(describe_read_error(&err, have, stream)));
                }
            }
        }
        Ok(out)
    }

    /// Read until the server closes the connection. A reset after some data
    /// also ends it (a server closing with unread input sends RST).
    pub fn recv_to_close(&mut self, stream: &mut TcpStream) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(out),
                Ok(k) => {
                    self.got.extend_from_slice(&chunk[..k]);
                    out.extend_from_slice(&chunk[..k]);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset && !out.is_empty() => {
                    return Ok(out);
                }
                Err(err) => {
                    return Err(self
                        .fail("the server to answer and then close the connection")
                        .detail(describe_read_error(&err, out.len(), stream)));
                }
            }
        }
    }

    /// Read one HTTP response (Content-Length, chunked or close framing)
    /// with `ladder::http::read_response`; `head_only` for the answer to a
    /// HEAD request.
    pub fn recv_response(
        &mut self,
        stream: &mut TcpStream,
        leftover: &mut Vec<u8>,
        head_only: bool,
    ) -> Result<ResponseIn, Failure> {
        match http::read_response(&mut ResetAsEof::new(stream), leftover, head_only) {
            Ok(response) => {
                self.got.extend_from_slice(&response.raw_head);
                self.got.extend_from_slice(&response.body);
                Ok(response)
            }
            Err(err) => {
                self.got.extend_from_slice(leftover);
                Err(self
                    .fail("a complete HTTP response")
                    .detail(describe_read_error(&err, leftover.len(), stream)))
            }
        }
    }

    /// `printf '…' | nc -q 2 127.0.0.1 PORT`: send `bytes` by hand to the
    /// server started with its default port.
    pub fn nc(&self, bytes: &[u8]) -> String {
        format!(
            "printf '{}' | nc -q 2 127.0.0.1 {}",
            printf_escape(bytes),
            self.port_hint
        )
    }

    /// `curl ARGS http://127.0.0.1:PORT/PATH` for the server on its default port.
    pub fn curl(&self, args: &str, path: &str) -> String {
        let args = if args.is_empty() {
            String::new()
        } else {
            format!("{args} ")
        };
        format!("curl {args}http://127.0.0.1:{}{path}", self.port_hint)
    }

    fn take_stderr_tail(&self) -> String {
        match &self.server {
            Some(server) => tail(&server.stderr(), 15),
            None => String::new(),
        }
    }
}

/// A read error in words a student can act on.
fn describe_read_error(err: &io::Error, have: usize, stream: &TcpStream) -> String {
    let waited = stream
        .read_timeout()
        .ok()
        .flatten()
        .unwrap_or(harness::IO_TIMEOUT);
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
            "no answer within {waited:?} (after {have} bytes); is the server stuck in a read, \
             or busy with another client?"
        ),
        io::ErrorKind::ConnectionReset => {
            format!("connection reset by the server after {have} bytes")
        }
        _ => format!("read: {err} (after {have} bytes)"),
    }
}

/// Escape bytes for a single-quoted `printf` format string.
pub fn printf_escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            b'%' => out.push_str("%%"),
            b'\'' => out.push_str("'\\''"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Run `stages` in order against `bin`, each with a fresh server.
pub fn run_stages(bin: &Path, exercise: &Exercise, stages: &[&'static Stage]) -> Vec<Outcome> {
    // A stage that panics is a bug in the grader, not in the student's code;
    // report it as a failure of that stage and go on, without the default
    // hook's noise in the middle of the report.
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let outcomes = stages
        .iter()
        .map(|stage| run_one(bin, exercise, stage))
        .collect();
    panic::set_hook(default_hook);
    outcomes
}

/// Every stage failed, because there is nothing to run them against.
pub fn not_run(stages: &[&'static Stage], why: &str) -> Vec<Outcome> {
    stages
        .iter()
        .map(|stage| Outcome {
            name: stage.name,
            title: stage.title,
            hint: stage.hint,
            elapsed: Duration::ZERO,
            failure: Some(Failure {
                expected: "the exercise to build".into(),
                detail: why.to_string(),
                ..Failure::default()
            }),
        })
        .collect()
}

fn run_one(bin: &Path, exercise: &Exercise, stage: &'static Stage) -> Outcome {
    let started = Instant::now();
    let mut ctx = Ctx::new(bin, exercise.port);
    let result = panic::catch_unwind(AssertUnwindSafe(|| (stage.run)(&mut ctx)));
    let mut result = match result {
        Ok(result) => result,
        Err(payload) => {
            let why = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(ctx.fail("the stage to run to the end").detail(format!(
                "the grader itself panicked (please report it): {why}"
            )))
        }
    };
    // A server that panicked on some thread but still answered is not a
    // passing server: "never a panic" is part of every rung's contract.
    if result.is_ok() {
        if let Some(server) = &ctx.server {
            if server.stderr().contains("panicked") {
                result = Err(ctx
                    .fail("no panic in the server")
                    .detail("the server printed a panic message on stderr"));
            }
        }
    }
    let failure = result.err().map(|mut failure| {
        failure.stderr = ctx.take_stderr_tail();
        failure
    });
    // The stage is over: end the server's whole process group at once. (The
    // harness's own drop would send SIGTERM and wait up to 3 s, which a
    // server that ignores SIGTERM would make every stage pay.)
    if let Some(server) = ctx.server.as_mut() {
        if server.try_exit().is_none() {
            let group = nix::unistd::Pid::from_raw(server.pid() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
    drop(ctx); // reaps it, and kills anything left in its group
    Outcome {
        name: stage.name,
        title: stage.title,
        hint: stage.hint,
        elapsed: started.elapsed(),
        failure,
    }
}

/// For stages and tests: every `Failure` field that holds bytes, shown with
/// `\r` and `\n` visible and cut to `limit` bytes.
pub fn shown(bytes: &[u8], limit: usize) -> String {
    if bytes.len() <= limit {
        harness::escaped(bytes)
    } else {
        format!(
            "{}... ({} more bytes)",
            harness::escaped(&bytes[..limit]),
            bytes.len() - limit
        )
    }
}
