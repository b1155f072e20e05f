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
    /// The flags every stage starts the server with (the fixtures it
    /// serves), before the stage's own; the report's last line starts the
    /// server with them too, so that every `try:` line works against it.
    pub args: fn() -> Vec<String>,
    /// The skeleton's holes (their `// ANCHOR:` names), in the order a
    /// student fills them; each stage names the one it needs last.
    pub holes: &'static [&'static str],
    /// Shown by `--list`: false for the grader's own self-check, which
    /// stays reachable by its name.
    pub listed: bool,
    pub stages: &'static [Stage],
}

/// No flags beyond `--port`.
pub fn no_args() -> Vec<String> {
    Vec::new()
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
    /// The last hole (1-based index into [`Exercise::holes`]) this stage
    /// needs filled: once holes 1..=N are done, every stage of hole N passes.
    pub hole: usize,
    pub run: fn(&mut Ctx) -> Result<(), Failure>,
}

/// A command to reproduce a stage by hand, pasted in a shell while the
/// server runs as the report says, and what a correct server makes it show.
#[derive(Debug, Clone)]
pub struct Try {
    /// One line for a shell; uses the exercise's default port.
    pub command: String,
    /// What to look at, said on its own line (never a shell comment, which
    /// zsh would run as words).
    pub note: String,
    /// What the command shows when the server is right.
    pub expect: Expect,
    /// The flags the server was started with for it, beyond the exercise's.
    pub extra_args: Vec<String>,
}

/// What a `try:` command shows against a correct server (the self-test in
/// tests/grade_try_lines.rs checks each one against the reference rung).
#[derive(Debug, Clone)]
pub enum Expect {
    /// A status line with this code (`HTTP/1.1 200 OK`, or `< HTTP/1.1 200 OK` from curl -v).
    Status(u16),
    /// This text, somewhere in the output.
    Shows(&'static str),
    /// The command signals the server, which then exits with status 0.
    ServerExits0,
    /// Both: this text in the output, and the server exits with status 0.
    ShowsAndServerExits0(&'static str),
    /// The command ends with exit status 0 (what it prints is for a person
    /// to judge: a count, a list of threads).
    Runs,
}

impl Expect {
    /// For the JSON report: `status 200`, `shows TEXT`, `server exits 0`.
    pub fn describe(&self) -> String {
        match self {
            Expect::Status(code) => format!("status {code}"),
            Expect::Shows(text) => format!("shows {text}"),
            Expect::ServerExits0 => "server exits 0".to_string(),
            Expect::ShowsAndServerExits0(text) => format!("server exits 0 and shows {text}"),
            Expect::Runs => "exit 0".to_string(),
        }
    }
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
    /// What to look at in its output.
    pub note: String,
    /// The flags, beyond the exercise's, the server must be started with
    /// for `reproduce` (the stage started it with them).
    pub extra_args: Vec<String>,
    /// The bytes of each connection (or of the server's stdout), apart:
    /// (label, sent, got), for the clients that sent or got anything.
    pub clients: Vec<(String, Vec<u8>, Vec<u8>)>,
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
    pub hole: usize,
    pub elapsed: Duration,
    pub failure: Option<Failure>,
    /// Every `try:` command the stage set, in order (the report shows the
    /// last one of a failed stage; the JSON report lists them all).
    pub tries: Vec<Try>,
}

/// What a stage works with: the binary under test, the server once started,
/// and a transcript of the bytes sent and received on each connection,
/// which every failure made with [`Ctx::fail`] carries.
pub struct Ctx {
    bin: PathBuf,
    /// The exercise's flags, given to every start.
    base_args: Vec<String>,
    /// The stage's own flags for the running server.
    extra_args: Vec<String>,
    server: Option<Server>,
    port_hint: u16,
    /// One transcript per connection, in the order they were opened (and
    /// one for the server's stdout, keyed `None`).
    clients: Vec<ClientLog>,
    /// The `try:` command a failure now would show.
    current_try: Option<Try>,
    /// Every different `try:` command the stage set.
    tries: Vec<Try>,
    /// Arguments the report shows, each with the one the server really
    /// gets (see [`Ctx::run_instead`]).
    instead: Vec<(String, String)>,
}

/// The bytes of one connection, and how many whole responses it got.
struct ClientLog {
    /// The connection's local port; `None` for the server's stdout.
    port: Option<u16>,
    sent: Vec<u8>,
    got: Vec<u8>,
    responses: usize,
}

impl Ctx {
    pub fn new(bin: &Path, base_args: Vec<String>, port_hint: u16) -> Ctx {
        Ctx {
            bin: bin.to_path_buf(),
            base_args,
            extra_args: Vec::new(),
            server: None,
            port_hint,
            clients: Vec::new(),
            current_try: None,
            tries: Vec::new(),
            instead: Vec::new(),
        }
    }

    /// Start the server with `real` wherever its flags say `shown`, while
    /// the report (`start:` lines) keeps `shown`. For an address a person
    /// types (ex08's `--upstream 127.0.0.1:8005`, where they run their own
    /// upstream) that the stage replaces with one it runs itself.
    pub fn run_instead(&mut self, shown: &str, real: &str) {
        self.instead.retain(|(s, _)| s != shown);
        self.instead.push((shown.to_string(), real.to_string()));
    }

    /// Start the server with the exercise's flags, then `args`, then
    /// `--port 0`, and wait for its announce line. A server that cannot
    /// start fails the stage, with its stderr in the report.
    pub fn start(&mut self, args: &[&str]) -> Result<&mut Server, Failure> {
        self.server = None;
        self.extra_args = args.iter().map(|a| a.to_string()).collect();
        let real = |arg: &String| -> String {
            let found = self.instead.iter().find(|(shown, _)| shown == arg);
            found.map_or_else(|| arg.clone(), |(_, real)| real.clone())
        };
        let mut command = Command::new(&self.bin);
        command
            .args(self.base_args.iter().map(real))
            .args(self.extra_args.iter().map(real))
            .args(["--port", "0"]);
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
        match result {
            Ok(stream) => {
                self.client(&stream);
                Ok(stream)
            }
            Err(err) => Err(self
                .fail("the server to accept a TCP connection")
                .detail(format!("connect: {err}"))),
        }
    }

    /// Set the command shown to reproduce a failure by hand (see
    /// [`Ctx::nc`] and [`Ctx::curl`]), and what it shows when the server is
    /// right. It runs against the server started with the exercise's flags
    /// and this stage's.
    pub fn reproduce(&mut self, command: impl Into<String>, expect: Expect) {
        self.reproduce_noting(command, "", expect);
    }

    /// [`Ctx::reproduce`], with a line saying what to look at.
    pub fn reproduce_noting(
        &mut self,
        command: impl Into<String>,
        note: impl Into<String>,
        expect: Expect,
    ) {
        let attempt = Try {
            command: command.into(),
            note: note.into(),
            expect,
            extra_args: self.extra_args.clone(),
        };
        let known = self
            .tries
            .iter()
            .any(|t| t.command == attempt.command && t.extra_args == attempt.extra_args);
        if !known {
            self.tries.push(attempt.clone());
        }
        self.current_try = Some(attempt);
    }

    /// The pid of the server listening on the default port, for a shell:
    /// `$(lsof -t -iTCP:8001 -sTCP:LISTEN)`.
    pub fn pid_of_server(&self) -> String {
        format!("$(lsof -t -iTCP:{} -sTCP:LISTEN)", self.port_hint)
    }

    /// Forget the bytes recorded so far (for a stage with several phases,
    /// so a failure shows only the phase that failed).
    pub fn clear_transcript(&mut self) {
        for client in &mut self.clients {
            client.sent.clear();
            client.got.clear();
        }
    }

    /// The log of `stream`'s connection, made on first sight.
    fn client(&mut self, stream: &TcpStream) -> &mut ClientLog {
        let port = stream.local_addr().ok().map(|a| a.port());
        self.log(port)
    }

    fn log(&mut self, port: Option<u16>) -> &mut ClientLog {
        let at = match self.clients.iter().position(|c| c.port == port) {
            Some(at) => at,
            None => {
                self.clients.push(ClientLog {
                    port,
                    sent: Vec::new(),
                    got: Vec::new(),
                    responses: 0,
                });
                self.clients.len() - 1
            }
        };
        &mut self.clients[at]
    }

    /// `connection N` for the Nth connection of the stage; `the connection`
    /// when there is only one.
    fn who(&self, stream: &TcpStream) -> String {
        let port = stream.local_addr().ok().map(|a| a.port());
        let connections: Vec<_> = self.clients.iter().filter(|c| c.port.is_some()).collect();
        match connections.iter().position(|c| c.port == port) {
            Some(_) if connections.len() == 1 => "the connection".to_string(),
            Some(i) => format!("connection {}", i + 1),
            None => "the connection".to_string(),
        }
    }

    /// Note bytes as sent on `stream` without sending them (when another
    /// thread sends on a clone of it).
    pub fn record_sent(&mut self, stream: &TcpStream, bytes: &[u8]) {
        self.client(stream).sent.extend_from_slice(bytes);
    }

    /// Note what the server printed on stdout (its announce line).
    pub fn record_stdout(&mut self, bytes: &[u8]) {
        self.log(None).got.extend_from_slice(bytes);
    }

    /// A failure carrying the transcript and the reproduce command.
    pub fn fail(&self, expected: impl Into<String>) -> Failure {
        let label = |i: usize, port: Option<u16>| match port {
            None => "stdout".to_string(),
            Some(_) => format!("#{}", i + 1),
        };
        let mut sockets = 0;
        let mut clients: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
        for client in &self.clients {
            let n = sockets;
            if client.port.is_some() {
                sockets += 1;
            }
            if client.sent.is_empty() && client.got.is_empty() {
                continue;
            }
            // Connections that sent and got the same bytes, one after
            // another, are shown once: `#2-#101`.
            let label = label(n, client.port);
            match clients.last_mut() {
                Some((last, sent, got))
                    if client.port.is_some()
                        && last.starts_with('#')
                        && *sent == client.sent
                        && *got == client.got =>
                {
                    let first = last.split('-').next().unwrap_or("").to_string();
                    *last = format!("{first}-{label}");
                }
                _ => clients.push((label, client.sent.clone(), client.got.clone())),
            }
        }
        let last = self.current_try.as_ref();
        Failure {
            sent: clients.iter().flat_map(|c| c.1.iter().copied()).collect(),
            got: clients.iter().flat_map(|c| c.2.iter().copied()).collect(),
            expected: expected.into(),
            detail: String::new(),
            reproduce: last.map(|t| t.command.clone()).unwrap_or_default(),
            note: last.map(|t| t.note.clone()).unwrap_or_default(),
            extra_args: last.map(|t| t.extra_args.clone()).unwrap_or_default(),
            clients,
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
        self.client(stream).sent.extend_from_slice(bytes);
        stream.write_all(bytes).map_err(|err| {
            let who = self.who(stream);
            self.fail("the server to read what was sent")
                .detail(format!("{who}: write: {err}"))
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
                    let who = self.who(stream);
                    return Err(self.fail(format!("{n} bytes back")).detail(format!(
                        "{who}: the server closed it after {have} of the {n} bytes"
                    )));
                }
                Ok(k) => {
                    self.client(stream)
                        .got
                        .extend_from_slice(&out[have..have + k]);
                    have += k;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    let why = describe_read_error(&err, stream);
                    let who = self.who(stream);
                    return Err(self
                        .fail(format!("{n} bytes back"))
                        .detail(format!("{who}: {why}, after {have} of the {n} bytes")));
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
                    self.client(stream).got.extend_from_slice(&chunk[..k]);
                    out.extend_from_slice(&chunk[..k]);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::ConnectionReset && !out.is_empty() => {
                    return Ok(out);
                }
                Err(err) => {
                    let why = describe_read_error(&err, stream);
                    let who = self.who(stream);
                    return Err(self
                        .fail("the server to answer and then close the connection")
                        .detail(format!("{who}: {why}, after {} bytes", out.len())));
                }
            }
        }
    }

    /// Read one HTTP response (Content-Length, chunked or close framing)
    /// with `ladder::http::read_response`; `head_only` for the answer to a
    /// HEAD request. A failure says which response of the connection it was.
    pub fn recv_response(
        &mut self,
        stream: &mut TcpStream,
        leftover: &mut Vec<u8>,
        head_only: bool,
    ) -> Result<ResponseIn, Failure> {
        match http::read_response(&mut ResetAsEof::new(stream), leftover, head_only) {
            Ok(response) => {
                let client = self.client(stream);
                client.got.extend_from_slice(&response.raw_head);
                client.got.extend_from_slice(&response.body);
                client.responses += 1;
                Ok(response)
            }
            Err(err) => {
                let client = self.client(stream);
                client.got.extend_from_slice(leftover);
                let before = client.responses;
                let who = self.who(stream);
                let nth = ordinal(before + 1);
                let had = match before {
                    0 => String::new(),
                    1 => " (after 1 whole response)".to_string(),
                    n => format!(" (after {n} whole responses)"),
                };
                let part = match leftover.len() {
                    0 => String::new(),
                    n => format!("; {n} bytes of it came"),
                };
                let what = match err.kind() {
                    io::ErrorKind::UnexpectedEof => {
                        format!("{who}: the server closed it before the {nth} response{had}{part}")
                    }
                    io::ErrorKind::InvalidData => {
                        format!("{who}: the {nth} response is not valid HTTP{had}: {err}")
                    }
                    _ => format!(
                        "{who}: {} while waiting for the {nth} response{had}{part}",
                        describe_read_error(&err, stream)
                    ),
                };
                Err(self.fail("a complete HTTP response").detail(what))
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

    /// `curl ARGS 'http://127.0.0.1:PORT/PATH'` for the server on its default
    /// port (the URL single-quoted when the shell would read `?`, `&` or `*`).
    pub fn curl(&self, args: &str, path: &str) -> String {
        assert!(path.starts_with('/'), "a path starts with /: {path:?}");
        let args = if args.is_empty() {
            String::new()
        } else {
            format!("{args} ")
        };
        format!("curl {args}{}", shell_word(&self.url(path)))
    }

    /// `http://127.0.0.1:PORT/PATH` on the default port.
    pub fn url(&self, path: &str) -> String {
        assert!(path.starts_with('/'), "a path starts with /: {path:?}");
        format!("http://127.0.0.1:{}{path}", self.port_hint)
    }

    /// The default port, for commands written by hand.
    pub fn port_hint(&self) -> u16 {
        self.port_hint
    }

    fn take_stderr_tail(&self) -> String {
        match &self.server {
            Some(server) => tail(&server.stderr(), 15),
            None => String::new(),
        }
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, …
pub fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `text` as one shell word: as is when it holds nothing the shell would
/// read, else in single quotes.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// A read error in words a student can act on.
fn describe_read_error(err: &io::Error, stream: &TcpStream) -> String {
    let waited = stream
        .read_timeout()
        .ok()
        .flatten()
        .unwrap_or(harness::IO_TIMEOUT);
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
            "no answer within {waited:?} (is the server stuck in a read, or busy with another client?)"
        ),
        io::ErrorKind::ConnectionReset => "reset by the server".to_string(),
        _ => format!("read: {err}"),
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
            hole: stage.hole,
            elapsed: Duration::ZERO,
            failure: Some(Failure {
                expected: "the exercise to build".into(),
                detail: why.to_string(),
                ..Failure::default()
            }),
            tries: Vec::new(),
        })
        .collect()
}

fn run_one(bin: &Path, exercise: &Exercise, stage: &'static Stage) -> Outcome {
    let started = Instant::now();
    let mut ctx = Ctx::new(bin, (exercise.args)(), exercise.port);
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
    // passing server: "never a panic" is part of every rung's contract. A
    // hole not filled yet (`todo!()`: "not yet implemented") is the one
    // panic a stage may see and still pass: it belongs to a later hole,
    // since the stage got everything it asked for.
    if result.is_ok() {
        if let Some(server) = &ctx.server {
            if real_panics(&server.stderr()) > 0 {
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
    let tries = std::mem::take(&mut ctx.tries);
    drop(ctx); // reaps it, and kills anything left in its group
    Outcome {
        name: stage.name,
        title: stage.title,
        hint: stage.hint,
        hole: stage.hole,
        elapsed: started.elapsed(),
        failure,
        tries,
    }
}

/// How many panics in `stderr` are not a `todo!()` ("not yet implemented").
fn real_panics(stderr: &str) -> usize {
    let panics = stderr.matches("panicked at").count();
    let todos = stderr.matches("not yet implemented").count();
    panics.saturating_sub(todos)
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
