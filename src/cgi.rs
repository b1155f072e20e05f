//! CGI/1.1 (RFC 3875): answer a request by running a program.
//!
//! Introduced in lesson 03 (`lessons/03-cgi.md`), used by 04.
//!
//! [`serve`] answers one request end to end, in the order it takes these steps:
//!
//! 1. [`resolve`]: the URL `/cgi-bin/NAME/extra?query` names a script file
//!    `NAME` in the CGI directory; the rest of the path becomes `PATH_INFO`.
//!    (The server says which paths are scripts; a path that is not one is
//!    answered by the server's own closure, static files say.)
//! 2. [`meta_variables`]: the request is written into environment variables
//!    (`REQUEST_METHOD`, `QUERY_STRING`, `HTTP_USER_AGENT`, …), RFC 3875 §4.1.
//! 3. spawn: a new process per request, started from an empty environment,
//!    with the request body on its stdin (§4.2).
//! 4. relay: the script's stdout is a small CGI header block (§6.3:
//!    `Status`, `Content-Type`, `Location`, others) and then the body, which
//!    the server frames as HTTP and streams to the client through
//!    `ladder::connection` (lesson 02).
//! 5. a local redirect (`Location: /other/path` and nothing else, §6.2.2)
//!    starts again from step 1 for that path, as a GET without the body.
//!
//! A script is untrusted in the sense that it may be buggy: it can crash,
//! print garbage, hang, or fork helpers that hang. Every one of those ends in
//! an HTTP answer (502, 504) and a reaped process; nothing is left behind.

use std::borrow::Cow;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::connection::Connection;
use crate::http::{Body, Rejection, Request, Response, Target};
use crate::trace;

/// Percent-decoding lives in `ladder::http`; re-exported for the callers of
/// lesson 03.
pub use crate::http::percent_decode;

/// The one variable a script gets beyond RFC 3875's: the environment starts
/// empty, and without a `PATH` a script's `#!/usr/bin/env python3` line could
/// not find `python3`.
pub const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The process groups of the scripts running now, so that a server being
/// shut down can kill them: each is in a group of its own, which a signal
/// to the server's group does not reach.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The largest CGI header block we accept from a script; more is a 502.
const MAX_SCRIPT_HEAD: usize = 64 * 1024;

/// A script may answer `Location: /other/path`; we serve that path instead.
/// Two scripts redirecting to each other must not loop for ever.
pub const MAX_LOCAL_REDIRECTS: usize = 5;

/// A script found on disk for a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptTarget {
    /// The URL path that names the script, e.g. `/cgi-bin/printenv.sh` (`SCRIPT_NAME`).
    pub script_name: String,
    /// The file to execute.
    pub path: PathBuf,
    /// What follows the script name in the path, percent-decoded (`PATH_INFO`).
    pub path_info: Vec<u8>,
}

/// What the server knows beyond the request itself.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// The client's address (`REMOTE_ADDR`).
    pub peer: SocketAddr,
    /// Our end of the connection (`SERVER_PORT`, and `SERVER_NAME` without a Host).
    pub local: SocketAddr,
    /// `SERVER_SOFTWARE`, e.g. `server-ladder/0.1.0`.
    pub server_software: String,
    /// Where `PATH_TRANSLATED` points into: the static-file directory.
    pub document_root: PathBuf,
    /// How long a script may run, all output included, before it is killed.
    pub timeout: Duration,
    /// Prefix for log lines, e.g. `lesson03`.
    pub log_tag: &'static str,
}

/// How [`serve`] answered, for the caller's access log and connection loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub status: u16,
    /// Body bytes sent, when there was a body and they could be counted.
    pub bytes: Option<u64>,
    /// May the connection carry another request?
    pub keep_alive: bool,
}

/// How one run of one script ended ([`run_script`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A response was written (the script's, or our 502/504).
    Responded {
        status: u16,
        /// Body bytes sent, when they could be counted.
        bytes: u64,
        /// May the connection carry another request?
        keep_alive: bool,
    },
    /// RFC 3875 §6.2.2: the script answered `Location: /local/path` and
    /// nothing else; the server must serve that path instead, as a GET.
    LocalRedirect(String),
}

// ANCHOR: resolve
/// Map `/cgi-bin/NAME/extra` onto `cgi_dir/NAME`, `PATH_INFO` = `/extra`.
///
/// The script name is one path segment, decoded by us; a segment that is
/// `.` or `..`, or that decodes to something holding `/` or NUL, is refused,
/// so `%2e%2e` and `%2f` cannot walk out of `cgi_dir`.
pub fn resolve(url_path: &str, prefix: &str, cgi_dir: &Path) -> Result<ScriptTarget, Rejection> {
    let rest = url_path
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'));
    let rest = rest.ok_or(Rejection::new(404, "not a CGI path"))?;
    let (name, extra) = rest.split_once('/').map_or((rest, ""), |(n, e)| (n, e));
    for segment in rest.split('/') {
        let decoded = percent_decode(segment);
        if decoded == b"." || decoded == b".." || decoded.contains(&0) {
            return Err(Rejection::new(
                400,
                "dot segments are not allowed in the path",
            ));
        }
    }
    let name = String::from_utf8(percent_decode(name))
        .map_err(|_| Rejection::new(400, "the script name is not UTF-8"))?;
    if name.contains('/') {
        return Err(Rejection::new(400, "an encoded slash in the script name"));
    }
    if name.is_empty() {
        return Err(Rejection::new(404, "no script named in the path"));
    }
    // Absolute, because the script runs with its own directory as the
    // working directory (§7.2), where a relative path would mean another file.
    let path = std::path::absolute(cgi_dir.join(&name))
        .map_err(|_| Rejection::new(404, "no such script"))?;
    let meta = std::fs::metadata(&path).map_err(|_| Rejection::new(404, "no such script"))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(Rejection::new(403, "the script is not an executable file"));
    }
    let path_info = if extra.is_empty() && !rest.ends_with('/') {
        Vec::new()
    } else {
        [b"/".as_slice(), &percent_decode(extra)].concat()
    };
    Ok(ScriptTarget {
        script_name: format!("{prefix}/{name}"),
        path,
        path_info,
    })
}
// ANCHOR_END: resolve

// ANCHOR: meta_variables
/// The environment of the script: RFC 3875 §4.1, one variable per item.
/// `interface`: these same variables are a WSGI app's `environ` (lesson 06),
/// with the few differences [`Interface`] lists.
pub fn meta_variables(
    request: &Request,
    body_len: Option<u64>,
    script: &ScriptTarget,
    gateway: &Gateway,
    interface: Interface,
) -> Vec<(String, OsString)> {
    let mut env: Vec<(String, OsString)> = Vec::new();
    let mut set = |name: &str, value: OsString| env.push((name.to_string(), value));
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set("SERVER_SOFTWARE", gateway.server_software.clone().into());
    set("SERVER_PROTOCOL", request.version.to_string().into());
    set("SERVER_NAME", server_name(request, gateway).into());
    set("SERVER_PORT", gateway.local.port().to_string().into());
    set("REQUEST_METHOD", request.method.clone().into());
    set("SCRIPT_NAME", script.script_name.clone().into());
    set("PATH_INFO", OsString::from_vec(script.path_info.clone()));
    if !script.path_info.is_empty() && interface == Interface::Cgi {
        let mut translated = gateway.document_root.clone().into_os_string().into_vec();
        translated.extend_from_slice(&script.path_info);
        set("PATH_TRANSLATED", OsString::from_vec(translated));
    }
    set("QUERY_STRING", request.query().into()); // still percent-encoded (§4.1.7)
    set("REMOTE_ADDR", gateway.peer.ip().to_string().into());
    set("REMOTE_HOST", gateway.peer.ip().to_string().into()); // no DNS (§4.1.9)
    if let Some(scheme) = request.header("authorization") {
        set("AUTH_TYPE", scheme.split(' ').next().unwrap_or("").into());
    }
    if let Some(len) = body_len {
        set("CONTENT_LENGTH", len.to_string().into());
    }
    if let Some(kind) = request.values("content-type").next() {
        set("CONTENT_TYPE", OsString::from_vec(kind.to_vec()));
    }
    env.extend(http_variables(request, interface));
    env
}
// ANCHOR_END: meta_variables

/// The two interfaces that hand a request to a program as meta-variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// RFC 3875: the variables are a script's environment, which it passes
    /// on to every program it runs and every library it calls.
    Cgi,
    /// PEP 3333 (lesson 06): the variables are a Python dict handed to one
    /// function call. So the app gets the credentials (`HTTP_AUTHORIZATION`:
    /// a WSGI app checks passwords itself, Flask's `request.authorization`
    /// reads it), there is no document root (no `PATH_TRANSLATED`), and
    /// repeated headers are joined with `,` as wsgiref and gunicorn do.
    Wsgi,
}

/// §4.1.14: the host part of the request's URL, so the Host header's name
/// (or an absolute-form target's host) without the port; our own address
/// when there is none (HTTP/1.0).
fn server_name(request: &Request, gateway: &Gateway) -> String {
    let host = request.host().unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || "-.[]:".contains(c);
    if name.is_empty() || !name.chars().all(valid) {
        gateway.local.ip().to_string()
    } else {
        name.to_string()
    }
}

// ANCHOR: http_variables
/// §4.1.18: each request header becomes `HTTP_` + its name, upper-cased,
/// `-` → `_`; repeated headers are joined with `", "` (WSGI: `","`).
fn http_variables(request: &Request, interface: Interface) -> Vec<(String, OsString)> {
    let mut vars: Vec<(String, Vec<u8>)> = Vec::new();
    let (join, credentials): (&[u8], &[&str]) = match interface {
        Interface::Cgi => (b", ", &["authorization", "proxy-authorization"]),
        Interface::Wsgi => (b",", &[]),
    };
    for header in &request.headers {
        // Content-Length/-Type already have variables of their own; the
        // credentials are withheld from CGI scripts, as §4.1.18 advises;
        // `Proxy:` would become HTTP_PROXY, which many HTTP libraries obey
        // as a proxy setting ("httpoxy", CVE-2016-5385). A name with `_`
        // could pose as another header's variable (`Content_Length`,
        // `X_Auth_User`), so only `-` is accepted.
        let name = header.name.to_ascii_lowercase();
        let withheld = ["content-length", "content-type", "proxy"];
        if withheld.contains(&name.as_str())
            || credentials.contains(&name.as_str())
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            continue;
        }
        let var = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        match vars.iter_mut().find(|(v, _)| *v == var) {
            Some((_, value)) => value.extend_from_slice(&[join, &header.value].concat()),
            None => vars.push((var, header.value.clone())),
        }
    }
    vars.into_iter()
        .map(|(n, v)| (n, OsString::from_vec(v)))
        .collect()
}
// ANCHOR_END: http_variables

/// A running script. Dropping it kills and reaps it if that has not happened,
/// so an early return (a client that hung up) never leaves a zombie.
struct Script {
    /// The process; its pid is also its process group id (`process_group(0)`).
    child: Child,
    /// Our end of the pipe the script writes its answer into.
    stdout: ChildStdout,
    /// When the script's time is up (`Gateway::timeout` after the spawn).
    deadline: Instant,
    /// The exit status, once waitpid(2) has collected it. From then on the
    /// pid belongs to the kernel again and must never be signalled.
    reaped: Option<ExitStatus>,
    /// SIGKILL has been sent to the group; once is enough.
    killed: bool,
}

// ANCHOR: spawn
/// fork+exec the script: empty environment plus the meta-variables, the
/// body on stdin (written by a helper thread), stderr to our log.
fn spawn(
    script: &ScriptTarget,
    env: Vec<(String, OsString)>,
    body: &[u8],
    gateway: &Gateway,
) -> io::Result<Script> {
    // Without a body the script reads end-of-file at once from /dev/null.
    let stdin = if body.is_empty() {
        Stdio::null()
    } else {
        Stdio::piped()
    };
    // ANCHOR: command
    let mut command = Command::new(&script.path); // execve(2) of the file: no shell
    command
        .env_clear() // nothing of the server's environment leaks in
        .env("PATH", CHILD_PATH)
        .envs(env) // the meta-variables
        .current_dir(script.path.parent().unwrap_or(Path::new("/"))) // §7.2
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0); // setpgid(0, 0): a timeout kills its helpers too
    // ANCHOR_END: command
    // Spawned under the lock of RUNNING, so a shutdown cannot fall between
    // the birth of the process and its entry on the list.
    let mut running = lock_running();
    let mut child = command.spawn()?;
    running.push(child.id());
    drop(running);
    trace!("fork+exec {} -> pid {}", script.path.display(), child.id());
    if let Some(mut stdin) = child.stdin.take() {
        // A thread, so a script that writes before it reads cannot deadlock us.
        let body = body.to_vec();
        std::thread::spawn(move || match stdin.write_all(&body) {
            Ok(()) => trace!("write stdin {} bytes, close", body.len()),
            Err(err) => trace!("write stdin -> {err}"),
        });
    }
    if let Some(stderr) = child.stderr.take() {
        let tag = gateway.log_tag;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n').map_while(Result::ok) {
                eprintln!(
                    "[{tag}] cgi stderr: {}",
                    String::from_utf8_lossy(&line).trim_end()
                );
            }
        });
    }
    let stdout = child.stdout.take().expect("stdout was piped");
    let deadline = Instant::now() + gateway.timeout;
    Ok(Script {
        child,
        stdout,
        deadline,
        reaped: None,
        killed: false,
    })
}
// ANCHOR_END: spawn

impl Script {
    /// Read some stdout, waiting no later than the deadline.
    /// `Ok(None)` means the deadline passed.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // Checked first: a script that always has output ready (`yes`)
            // would otherwise never give poll a chance to time out.
            if Instant::now() >= self.deadline {
                return Ok(None);
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            let ms =
                PollTimeout::try_from(left.as_millis().max(1) as u64).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.stdout.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) if Instant::now() >= self.deadline => return Ok(None),
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => return self.stdout.read(buf).map(Some),
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Kill the script's whole process group (the script and anything it
    /// started) with SIGKILL. Only before reaping: after that the pid may be reused.
    fn kill_group(&mut self) {
        if self.reaped.is_none() && !self.killed {
            self.killed = true;
            let pid = self.child.id();
            trace!("killpg({pid}, SIGKILL)");
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// waitpid(2) for the script, killing it if it is still alive at the deadline.
    ///
    /// A blocking waitpid cannot time out, so this polls with WNOHANG. The
    /// script has usually just closed stdout and is exiting, so the first
    /// naps are short (50 µs, doubling up to 5 ms).
    fn reap(&mut self) -> io::Result<ExitStatus> {
        let mut nap = Duration::from_micros(50);
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(status);
            }
            if Instant::now() >= self.deadline {
                self.kill_group();
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(5));
        }
    }

    /// waitpid(pid, WNOHANG), under the lock of [`RUNNING`]: a pid is taken
    /// off the list in the same moment it is reaped, so
    /// [`kill_running_scripts`] can never signal a pid the kernel reused.
    fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.reaped.is_some() {
            return Ok(self.reaped);
        }
        let mut running = lock_running();
        let Some(status) = self.child.try_wait()? else {
            return Ok(None);
        };
        let pid = self.child.id();
        running.retain(|&p| p != pid);
        trace!("waitpid({pid}) -> {}", describe(status));
        self.reaped = Some(status);
        Ok(Some(status))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.kill_group();
            let _ = self.reap();
        }
    }
}

fn lock_running() -> std::sync::MutexGuard<'static, Vec<u32>> {
    // A panic elsewhere cannot leave the list half-updated; keep using it.
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// SIGKILL every script still running, with anything it started: for a
/// server's shutdown path, just before it exits.
pub fn kill_running_scripts() {
    for &pid in lock_running().iter() {
        trace!("killpg({pid}, SIGKILL) on shutdown");
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// The header block of a CGI response (§6.3), checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScriptHead {
    /// `Status: 404 Not Found` → 404 (§6.3.3).
    pub status: Option<u16>,
    /// The reason phrase after the code, which §6.3.3 passes on to the
    /// client: `Status: 299 Custom Thing` is sent as `299 Custom Thing`.
    pub reason: Option<String>,
    /// `Location` (§6.3.2): a local path (`/…`) or a URL for the client.
    pub location: Option<String>,
    /// The script's own `Content-Length`, if it knows its body's size.
    pub content_length: Option<u64>,
    /// Every other header, in order, Content-Type included.
    pub headers: Vec<(String, String)>,
}

/// Parse the lines before the blank line. Lines may end in LF or CRLF
/// (§6.3: "NL"); anything that could smuggle a header (a stray CR, a
/// control character, a continuation line, a bad name) is refused.
pub fn parse_response_head(head: &[u8]) -> Result<ScriptHead, &'static str> {
    let mut parsed = ScriptHead::default();
    let text = std::str::from_utf8(head).map_err(|_| "header block is not UTF-8")?;
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or("a header line has no colon")?;
        let value = value.trim_matches([' ', '\t']);
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(token) {
            return Err("a header name is not a token");
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err("a header value holds a control character");
        }
        match name.to_ascii_lowercase().as_str() {
            "status" => {
                let (code, reason) = value.split_once(' ').unwrap_or((value, ""));
                let code = code.parse().ok().filter(|c| (200..=599).contains(c));
                parsed.status = Some(code.ok_or("bad Status")?);
                let reason = reason.trim_matches([' ', '\t']);
                parsed.reason = (!reason.is_empty()).then(|| reason.to_string());
            }
            "location" if !value.is_empty() => parsed.location = Some(value.to_string()),
            "content-length" => {
                parsed.content_length = Some(value.parse().map_err(|_| "bad Content-Length")?)
            }
            // We frame the message and date it ourselves, and the hop-by-hop
            // fields (RFC 9110 §7.6.1) describe our connection, not the script's.
            "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade"
            | "proxy-connection" | "date" | "location" => {}
            _ => parsed.headers.push((name.to_string(), value.to_string())),
        }
    }
    let has_type = parsed
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    if parsed.status.is_none() && parsed.location.is_none() && !has_type {
        return Err("no Content-Type, Location or Status");
    }
    Ok(parsed)
}

// ANCHOR: serve
/// Answer `request` end to end: run the script `script_for` names, or answer
/// with `other` a path that is no script (`Ok(None)`), or refuse what
/// `script_for` refuses; and follow a script's local redirects.
///
/// `body` is the request body, already read. `may_keep_alive`: the server
/// is willing to keep the connection. The result is `Err` only when the
/// client connection failed; a failing script is answered with 502 or 504.
pub fn serve(
    conn: &mut Connection,
    request: &Request,
    body: &[u8],
    gateway: &Gateway,
    may_keep_alive: bool,
    script_for: impl Fn(&Request) -> Result<Option<ScriptTarget>, Rejection>,
    other: impl FnOnce(&Request) -> Response,
) -> io::Result<Served> {
    let (mut request, mut body) = (Cow::Borrowed(request), body);
    for _ in 0..=MAX_LOCAL_REDIRECTS {
        let script = match script_for(&request) {
            Ok(Some(script)) => script,
            Ok(None) => return answer(conn, &request, other(&request), may_keep_alive),
            Err(rejection) => return answer(conn, &request, rejection.to_response(), false),
        };
        match run_script(conn, &request, body, &script, gateway, may_keep_alive)? {
            Outcome::Responded {
                status,
                bytes,
                keep_alive,
            } => {
                let bytes = Some(bytes);
                return Ok(Served {
                    status,
                    bytes,
                    keep_alive,
                });
            }
            // The script named another local URL: serve that instead. The
            // client sees only the final answer, the access log the request
            // line it sent.
            Outcome::LocalRedirect(location) => {
                trace!("local redirect -> GET {location}");
                request = Cow::Owned(redirected(&request, &location));
                body = &[];
            }
        }
    }
    let loop_error = Response::error(500, "too many local redirects");
    answer(conn, &request, loop_error, false)
}
// ANCHOR_END: serve

/// Send a response that is not a script's.
fn answer(
    conn: &mut Connection,
    request: &Request,
    response: Response,
    may_keep_alive: bool,
) -> io::Result<Served> {
    let (status, len) = (response.status, response.body_len());
    let plan = conn.respond(Some(request), response, may_keep_alive)?;
    let bytes = len.filter(|_| plan.send_body);
    let keep_alive = plan.keep_alive;
    Ok(Served {
        status,
        bytes,
        keep_alive,
    })
}

// ANCHOR: redirected
/// The request a local redirect turns into (RFC 3875 §6.2.2): a GET of
/// `location` with the client's headers, minus those that described the old
/// body, and without the body. A HEAD stays a HEAD: the client still wants
/// no body.
pub fn redirected(request: &Request, location: &str) -> Request {
    // The client's own headers (Host, Cookie, User-Agent) still describe
    // the client, so they stay: the next script sees them as HTTP_*.
    let mut next = request.clone();
    next.method = if request.is_head() { "HEAD" } else { "GET" }.into();
    next.target = Target::parse("GET", location).expect("a local redirect is a /path");
    let body_headers = [
        "content-length",
        "content-type",
        "transfer-encoding",
        "expect",
    ];
    next.headers
        .retain(|h| !body_headers.contains(&h.name.to_ascii_lowercase().as_str()));
    next
}
// ANCHOR_END: redirected

// ANCHOR: run
/// Run `script` once for `request` and write the HTTP response to `conn`,
/// unless the script answers with a local redirect.
pub fn run_script(
    conn: &mut Connection,
    request: &Request,
    body: &[u8],
    script: &ScriptTarget,
    gateway: &Gateway,
    may_keep_alive: bool,
) -> io::Result<Outcome> {
    let body_len = (!body.is_empty()).then_some(body.len() as u64);
    let env = meta_variables(request, body_len, script, gateway, Interface::Cgi);
    let mut child = match spawn(script, env, body, gateway) {
        Ok(child) => child,
        Err(err) => {
            eprintln!(
                "[{}] cgi: cannot run {}: {err}",
                gateway.log_tag,
                script.path.display()
            );
            return respond_error(conn, request, 502, "the script could not be started");
        }
    };
    let nph = script
        .script_name
        .rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("nph-"));
    if nph {
        return pass_through(&mut child, request, conn);
    }
    let (head, rest) = match read_head(&mut child)? {
        Ok(parts) => parts,
        Err(failure) => {
            // Nothing has been sent yet, so the client can still get an
            // honest status. The details go to our log, not to the client.
            let (status, why, detail) = match failure {
                Failure::TimedOut => (504, "timed out", "the script timed out"),
                Failure::Malformed(why) => (502, why, "the script failed"),
            };
            let exit = describe(child.reap()?);
            let (tag, name) = (gateway.log_tag, &script.script_name);
            eprintln!("[{tag}] cgi: {name}: {why} ({exit})");
            return respond_error(conn, request, status, detail);
        }
    };
    if let (Some(location), None) = (&head.location, head.status) {
        if location.starts_with('/') {
            // §6.2.2: a local redirect has no body; discard whatever came.
            while let Some(n) = child.read(&mut [0u8; 4096])? {
                if n == 0 {
                    break;
                }
            }
            child.reap()?;
            return Ok(Outcome::LocalRedirect(location.clone()));
        }
    }
    relay(&mut child, head, rest, request, conn, may_keep_alive)
}
// ANCHOR_END: run

/// Why a script's answer could not be used.
enum Failure {
    /// The deadline passed before the header block was complete (504).
    TimedOut,
    /// No output, or not a valid CGI header block (502); the reason is logged.
    Malformed(&'static str),
}

/// Read stdout until the blank line that ends the CGI header block; return
/// the parsed head and the body bytes that came with it.
fn read_head(child: &mut Script) -> io::Result<Result<(ScriptHead, Vec<u8>), Failure>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Every header line ends in `\n`; the blank line after the last one
        // is `\n` or `\r\n`. So the block ends at the first `\n\n` or `\n\r\n`.
        let end = (1..buf.len()).find_map(|i| match &buf[i - 1..] {
            [b'\n', b'\n', ..] => Some(i + 1),
            [b'\n', b'\r', b'\n', ..] => Some(i + 2),
            _ => None,
        });
        if let Some(end) = end {
            let rest = buf.split_off(end);
            return Ok(parse_response_head(&buf)
                .map(|head| (head, rest))
                .map_err(Failure::Malformed));
        }
        if buf.len() > MAX_SCRIPT_HEAD {
            return Ok(Err(Failure::Malformed("the header block is too large")));
        }
        match child.read(&mut chunk)? {
            None => {
                child.kill_group();
                return Ok(Err(Failure::TimedOut));
            }
            Some(0) if buf.is_empty() => return Ok(Err(Failure::Malformed("no output"))),
            Some(0) => {
                return Ok(Err(Failure::Malformed(
                    "output ended inside the header block",
                )));
            }
            Some(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

// ANCHOR: relay
/// Send our status line and the script's headers, then stream its body as
/// it comes, framed as `Response::plan` says: with the script's
/// Content-Length if it gave one, else chunked (HTTP/1.1) or until close
/// (HTTP/1.0). Never the whole body in memory.
fn relay(
    child: &mut Script,
    head: ScriptHead,
    first: Vec<u8>,
    request: &Request,
    conn: &mut Connection,
    may_keep_alive: bool,
) -> io::Result<Outcome> {
    let status = head
        .status
        .unwrap_or(if head.location.is_some() { 302 } else { 200 });
    let mut response = Response::new(status).body(Body::Stream {
        len: head.content_length,
    });
    response.reason = head.reason; // §6.3.3: the script's phrase, if it gave one
    response.headers = head.headers;
    if let Some(location) = head.location {
        response.headers.push(("Location".into(), location));
    }
    let plan = conn.respond(Some(request), response, may_keep_alive)?;
    conn.send_chunk(&plan, &first)?;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match child.read(&mut chunk)? {
            Some(0) => break,
            Some(n) => conn.send_chunk(&plan, &chunk[..n])?,
            None => {
                // Too late for a 504: the head is out. Cut the connection, so
                // the client sees a truncated body rather than a complete one.
                child.kill_group();
                child.reap()?;
                let bytes = conn.sent();
                return Ok(Outcome::Responded {
                    status,
                    bytes,
                    keep_alive: false,
                });
            }
        }
    }
    let keep_alive = conn.end_body(&plan)?;
    child.reap()?;
    let bytes = conn.sent();
    Ok(Outcome::Responded {
        status,
        bytes,
        keep_alive,
    })
}
// ANCHOR_END: relay

/// `nph-` ("non-parsed headers", §5) scripts write the whole HTTP response
/// themselves; the server copies it untouched and closes the connection.
fn pass_through(
    child: &mut Script,
    request: &Request,
    conn: &mut Connection,
) -> io::Result<Outcome> {
    let mut chunk = [0u8; 16 * 1024];
    let (mut sent, mut status) = (0u64, 200);
    loop {
        let n = match child.read(&mut chunk)? {
            Some(0) => break,
            Some(n) => n,
            None if sent == 0 => {
                child.kill_group();
                return respond_error(conn, request, 504, "the script timed out");
            }
            None => break, // the reap below kills it; the client sees the close
        };
        if sent == 0 {
            // For the access log only: the code after `HTTP/1.x `.
            let line = String::from_utf8_lossy(&chunk[..n.min(16)]).into_owned();
            status = line.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(200);
        }
        conn.write_raw(&chunk[..n])?;
        sent += n as u64;
    }
    child.reap()?;
    Ok(Outcome::Responded {
        status,
        bytes: sent,
        keep_alive: false,
    })
}

/// Our own error page, sent before the script's head went out.
fn respond_error(
    conn: &mut Connection,
    request: &Request,
    status: u16,
    detail: &str,
) -> io::Result<Outcome> {
    let response = Response::error(status, detail);
    let bytes = response.body_len().unwrap_or(0);
    conn.respond(Some(request), response, false)?;
    Ok(Outcome::Responded {
        status,
        bytes,
        keep_alive: false,
    })
}

/// `exited 0`, `killed by SIGKILL`: a `WaitStatus` in words.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited {code}"),
        (_, Some(sig)) => match Signal::try_from(sig) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => format!("{status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        let cases: &[(&str, &[u8])] = &[
            ("plain", b"plain"),
            ("a%20b", b"a b"),
            ("%2e%2E", b".."),
            ("%2f", b"/"),
            ("%", b"%"),
            ("%zz%4", b"%zz%4"),
            ("%00", b"\0"),
            ("%ff", b"\xff"),
        ];
        for (input, expected) in cases {
            assert_eq!(percent_decode(input), *expected, "{input}");
        }
    }

    #[test]
    fn resolving_script_paths() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cgi-bin");
        // (url path, Ok((script name, path info)) or Err(status))
        type Expect = Result<(&'static str, &'static [u8]), u16>;
        let cases: &[(&str, Expect)] = &[
            ("/cgi-bin/printenv.sh", Ok(("/cgi-bin/printenv.sh", b""))),
            ("/cgi-bin/printenv.sh/", Ok(("/cgi-bin/printenv.sh", b"/"))),
            (
                "/cgi-bin/printenv.sh/a/b%20c",
                Ok(("/cgi-bin/printenv.sh", b"/a/b c")),
            ),
            ("/cgi-bin/print%65nv.sh", Ok(("/cgi-bin/printenv.sh", b""))),
            ("/cgi-bin/nothing-here", Err(404)),
            ("/cgi-bin/", Err(404)),
            ("/cgi-bin/../Cargo.toml", Err(400)),
            ("/cgi-bin/%2e%2e/Cargo.toml", Err(400)),
            ("/cgi-bin/%2E%2e%2fCargo.toml", Err(400)),
            ("/cgi-bin/..%2fCargo.toml", Err(400)),
            ("/cgi-bin/printenv.sh/../../x", Err(400)),
            ("/cgi-bin/printenv.sh/%00", Err(400)),
            ("/cgi-bin/.", Err(400)),
            ("/other/printenv.sh", Err(404)),
        ];
        for (path, expected) in cases {
            let got = resolve(path, "/cgi-bin", &dir)
                .map(|t| (t.script_name, t.path_info))
                .map_err(|r| r.status);
            let expected = expected.map(|(n, i)| (n.to_string(), i.to_vec()));
            assert_eq!(got, expected, "{path}");
        }
    }

    #[test]
    fn parsing_script_heads() {
        type Expect = Result<(Option<u16>, Option<&'static str>, usize), &'static str>;
        let cases: &[(&str, Expect)] = &[
            ("Content-Type: text/plain\n\n", Ok((None, None, 1))),
            (
                "Content-Type: text/plain\r\nX-A: 1\r\n\r\n",
                Ok((None, None, 2)),
            ),
            (
                "Status: 404 Not Found\nContent-Type: text/html\n\n",
                Ok((Some(404), None, 1)),
            ),
            (
                "Location: /cgi-bin/hello.sh\n\n",
                Ok((None, Some("/cgi-bin/hello.sh"), 0)),
            ),
            ("Status: 99 Low\n\n", Err("bad Status")),
            ("Status: abc\n\n", Err("bad Status")),
            ("X-Only: 1\n\n", Err("no Content-Type, Location or Status")),
            ("hello world\n\n", Err("a header line has no colon")),
            ("Bad Name: x\n\n", Err("a header name is not a token")),
            (
                "Content-Type: a\rSet-Cookie: x\n\n",
                Err("a header value holds a control character"),
            ),
            (
                "Content-Type: a\n folded\n\n",
                Err("a header line has no colon"),
            ),
            (
                "Content-Type: a\nContent-Length: -1\n\n",
                Err("bad Content-Length"),
            ),
        ];
        for (head, expected) in cases {
            let got = parse_response_head(head.as_bytes())
                .map(|h| (h.status, h.location.clone(), h.headers.len()));
            let expected = expected.map(|(s, l, n)| (s, l.map(String::from), n));
            assert_eq!(got, expected, "{head:?}");
        }
    }

    #[test]
    fn a_status_keeps_its_reason_phrase() {
        let cases = [
            ("Status: 299 Custom Thing\n\n", 299, Some("Custom Thing")),
            ("Status: 404\n\n", 404, None),
            ("Status: 502 \n\n", 502, None),
        ];
        for (head, status, reason) in cases {
            let parsed = parse_response_head(head.as_bytes()).unwrap();
            assert_eq!(parsed.status, Some(status), "{head:?}");
            assert_eq!(parsed.reason.as_deref(), reason, "{head:?}");
        }
    }

    #[test]
    fn header_variables() {
        let raw = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: a\r\nx-forwarded-for: b\r\n\
            Content-Type: t\r\nAuthorization: Basic Zm9v\r\nProxy: http://evil\r\nX_Sneaky: 1\r\n\r\n";
        let crate::http::Parsed::Complete { request, .. } =
            crate::http::parse_request(raw, &Default::default()).unwrap()
        else {
            panic!("incomplete")
        };
        let cases: [(Interface, &[(&str, &str)]); 2] = [
            (
                Interface::Cgi,
                &[("HTTP_HOST", "h"), ("HTTP_X_FORWARDED_FOR", "a, b")],
            ),
            (
                Interface::Wsgi,
                &[
                    ("HTTP_HOST", "h"),
                    ("HTTP_X_FORWARDED_FOR", "a,b"),
                    ("HTTP_AUTHORIZATION", "Basic Zm9v"),
                ],
            ),
        ];
        for (interface, expected) in cases {
            let vars = http_variables(&request, interface);
            let got: Vec<(&str, &str)> = vars
                .iter()
                .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
                .collect();
            assert_eq!(got, expected, "{interface:?}");
        }
    }
}
