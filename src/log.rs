//! The access log, in the format of Python's `http.server`.
//!
//! Introduced in lesson 02 (`lessons/02-hello.md`), used by every HTTP rung.
//!
//! `127.0.0.1 - - [21/Nov/2026 10:00:00] "GET / HTTP/1.1" 200 -` goes to stderr,
//! one line per response, unless `--quiet`. The two dashes are the identity
//! and user fields of the old Common Log Format, which nobody fills in; the
//! last field is the body size, or `-` as Python prints it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

static QUIET: AtomicBool = AtomicBool::new(false);

/// `--quiet`: silence the access log (errors are still printed).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Is the access log silenced?
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Log one answered request. `request_line` is the first line as received
/// (lossily decoded); `size` is the body length when known.
pub fn access(peer: SocketAddr, request_line: &str, status: u16, size: Option<u64>) {
    if quiet() {
        return;
    }
    // One write(2) per line: `eprintln!` may split a line into several
    // writes, and lines from worker threads would then interleave.
    let mut line = access_line(peer, request_line, status, size, SystemTime::now());
    line.push('\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
}

/// The access-log line itself, separated from the clock so it can be tested.
pub fn access_line(
    peer: SocketAddr,
    request_line: &str,
    status: u16,
    size: Option<u64>,
    now: SystemTime,
) -> String {
    let size = size.map_or_else(|| "-".to_string(), |n| n.to_string());
    // Python escapes control characters so a hostile request line cannot
    // forge extra log lines; we do the same.
    let request_line: String = request_line.escape_debug().collect();
    format!(
        "{} - - [{}] \"{request_line}\" {status} {size}",
        peer.ip(),
        log_date(now)
    )
}

/// `21/Nov/2026 10:00:00`, in UTC (Python prints local time; a server's log
/// in UTC is the production habit).
pub fn log_date(now: SystemTime) -> String {
    // httpdate gives "Sat, 21 Nov 2026 10:00:00 GMT"; rearrange its fields.
    let http = httpdate::fmt_http_date(now);
    let parts: Vec<&str> = http.split(' ').collect();
    match parts.as_slice() {
        [_, day, month, year, time, _] => format!("{day}/{month}/{year} {time}"),
        _ => http,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn line_matches_python_shape() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_255_200); // 2026-11-21 10:00:00 UTC
        let line = access_line(
            "127.0.0.1:5000".parse().unwrap(),
            "GET / HTTP/1.1",
            200,
            None,
            t,
        );
        assert_eq!(
            line,
            "127.0.0.1 - - [21/Nov/2026 10:00:00] \"GET / HTTP/1.1\" 200 -"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let t = UNIX_EPOCH;
        let line = access_line("[::1]:1".parse().unwrap(), "GET /\n\"x", 400, Some(5), t);
        assert!(line.contains(r#""GET /\n\"x" 400 5"#), "{line}");
    }
}
