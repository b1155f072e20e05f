//! Black-box tests of `lesson05_epoll`: one thread, many sockets.
//!
//! Each test starts the real binary on port 0 and talks to it over real
//! sockets. What they pin: partial reads and writes, keep-alive and
//! pipelining, the timers, the connection cap, running out of fds, hostile
//! input, absolute-form targets, `100 Continue`, a body streamed from a
//! thread (`/count`), a clean SIGTERM, many clients at once, and the
//! `--raw-epoll` loop. The library's "answer later" API is pinned on its own
//! in `tests/event_loop.rs`.
//! No test asserts a duration; CPU use is compared to wall time only with a
//! generous bound, as a "does it spin?" check.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Server, connect_small_window, escaped, read_response, read_to_close};

const BIN: &str = env!("CARGO_BIN_EXE_lesson05_epoll");

const HELLO_REQUEST: &[u8] = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";

/// A directory of its own for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("lesson05-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn arg(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Start the server serving `dir` with extra flags.
fn start(dir: &TempDir, flags: &[&str]) -> Server {
    let mut args = vec!["--quiet", "--directory"];
    let dir = dir.arg();
    args.push(&dir);
    args.extend_from_slice(flags);
    Server::start(BIN, &args).unwrap()
}

/// Replace the value of the Date header, the one volatile part of a response.
fn without_date(bytes: &[u8]) -> String {
    let text = escaped(bytes);
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("Date: ") {
        out.push_str(&rest[..i + 6]);
        out.push_str("[date]");
        rest = &rest[i..];
        rest = &rest[rest.find("\\r\\n").unwrap()..];
    }
    out.push_str(rest);
    out
}

/// The exact `/hello` response, Date aside.
fn hello_bytes(keep_alive: bool) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    escaped(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: [date]\r\n\
             Content-Length: 14\r\nConnection: {connection}\r\n\r\nHello, World!\n"
        )
        .as_bytes(),
    )
}

/// Send /hello on a connection and check the answer.
fn assert_hello(stream: &mut TcpStream) {
    stream.write_all(HELLO_REQUEST).unwrap();
    let response = read_response(stream, &mut Vec::new(), false).unwrap();
    assert_eq!(response.status, 200, "{}", response.head);
    assert_eq!(response.body, b"Hello, World!\n");
}

/// utime + stime of a process, in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) may hold spaces; count fields after its ')'.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Field 3 (state) is fields[0], so utime (14) and stime (15) are [11], [12].
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Is the connection closed by the server (EOF or reset) within IO_TIMEOUT?
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
        _ => false,
    }
}

#[test]
fn hello_keep_alive_and_http10_close() {
    let dir = TempDir::new("keepalive");
    let server = start(&dir, &[]);
    // HTTP/1.1 keeps the connection open by default: three requests, one socket.
    let mut stream = server.connect().unwrap();
    for _ in 0..3 {
        stream.write_all(HELLO_REQUEST).unwrap();
        let response = read_response(&mut stream, &mut Vec::new(), false).unwrap();
        assert_eq!(
            without_date(response.head.as_bytes()) + &escaped(&response.body),
            hello_bytes(true)
        );
    }
    // HTTP/1.0 without keep-alive: one answer, then the server closes.
    let mut stream = server.connect().unwrap();
    let bytes = common::exchange(&mut stream, b"GET /hello HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(without_date(&bytes), hello_bytes(false));
    // HTTP/1.1 with Connection: close closes too.
    let mut stream = server.connect().unwrap();
    let request = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let bytes = common::exchange(&mut stream, request).unwrap();
    assert_eq!(without_date(&bytes), hello_bytes(false));
    common::assert_no_panic(&server);
}

#[test]
fn partial_reads_a_request_dribbled_byte_by_byte() {
    let dir = TempDir::new("dribble");
    let server = start(&dir, &[]);
    let mut slow = server.connect().unwrap();
    for (i, byte) in HELLO_REQUEST.iter().enumerate() {
        slow.write_all(&[*byte]).unwrap();
        thread::sleep(Duration::from_millis(5));
        // Meanwhile another client is served: the half request blocks nobody.
        if i == 10 {
            assert_hello(&mut server.connect().unwrap());
        }
    }
    let response = read_response(&mut slow, &mut Vec::new(), false).unwrap();
    assert_eq!(response.body, b"Hello, World!\n");
    common::assert_no_panic(&server);
}

/// A request far bigger than one read(2): the server must keep reading
/// until WouldBlock, because edge-triggered readiness will not repeat itself.
#[test]
fn a_body_larger_than_one_read_is_drained() {
    let dir = TempDir::new("bigbody");
    let server = start(&dir, &[]);
    let mut stream = server.connect().unwrap();
    let body = vec![b'x'; 1_000_000];
    let mut request = b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".to_vec();
    request.extend_from_slice(&body);
    request.extend_from_slice(HELLO_REQUEST);
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        thread::spawn(move || stream.write_all(&request).unwrap())
    };
    let mut leftover = Vec::new();
    for _ in 0..2 {
        let response = read_response(&mut stream, &mut leftover, false).unwrap();
        assert_eq!(response.body, b"Hello, World!\n");
    }
    writer.join().unwrap();
}

#[test]
fn pipelining_answers_in_request_order() {
    let dir = TempDir::new("pipeline");
    fs::write(dir.0.join("a.txt"), "file a\n").unwrap();
    let server = start(&dir, &[]);
    let mut stream = server.connect().unwrap();
    // Three requests in one write; the last one asks to close.
    stream
        .write_all(
            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n\
              HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let bytes = read_to_close(&mut stream).unwrap();
    let text = without_date(&bytes);
    let hello = hello_bytes(true);
    assert!(text.starts_with(&hello), "{text}");
    let rest = &text[hello.len()..];
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\\r\\nContent-Type: text/plain"),
        "{rest}"
    );
    assert!(
        rest.contains("Content-Length: 7\\r\\nConnection: keep-alive\\r\\n\\r\\nfile a\\n"),
        "{rest}"
    );
    let head_only = hello_bytes(false).replace("Hello, World!\\n", "");
    assert!(rest.ends_with(&head_only), "{rest}");
    common::assert_no_panic(&server);
}

#[test]
fn partial_writes_a_slow_reader_stalls_nobody() {
    let dir = TempDir::new("slowreader");
    let big: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    fs::write(dir.0.join("big.bin"), &big).unwrap();
    let server = Server::start(BIN, &["--trace", "--directory", &dir.arg()]).unwrap();
    let mut slow = connect_small_window(server.addr);
    slow.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1024];
    slow.read_exact(&mut first).unwrap();
    // The server must have hit a full send buffer by now and parked the rest.
    assert!(
        server.wait_for_stderr("send buffer full", IO_TIMEOUT),
        "no partial write seen:\n{}",
        server.stderr()
    );
    // While 8 MiB wait for the slow reader, others are answered at once.
    for _ in 0..3 {
        assert_hello(&mut server.connect().unwrap());
    }
    // The slow reader now gets the rest, complete and in order.
    let mut leftover = first.to_vec();
    let response = read_response(&mut slow, &mut leftover, false).unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response.body == big,
        "body differs from the file ({} bytes)",
        response.body.len()
    );
    // And the connection is still usable afterwards.
    slow.write_all(HELLO_REQUEST).unwrap();
    let again = read_response(&mut slow, &mut leftover, false).unwrap();
    assert_eq!(again.body, b"Hello, World!\n");
    // The file went by sendfile(2), a piece per writable socket, and the
    // send buffer filled up on the sendfile itself, not only on the head.
    // (The log may lag behind the socket: wait for it a little.)
    let stuck_in_sendfile = |log: &str| {
        log.lines()
            .any(|line| line.starts_with("[trace] sendfile(") && line.contains("-> EAGAIN"))
    };
    let deadline = Instant::now() + IO_TIMEOUT;
    while !stuck_in_sendfile(&server.stderr()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let stderr = server.stderr();
    assert!(
        stuck_in_sendfile(&stderr) && stderr.matches("] sendfile(").count() > 2,
        "the file did not go by sendfile(2), a piece at a time:\n{stderr}"
    );
    common::assert_no_panic(&server);
}

/// Resident memory of a process in KiB (VmRSS in /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Backpressure: a client that pipelines requests without ever reading the
/// answers is not read further once its answers back up, so the server's
/// memory stays bounded and its writes stall; others are still served.
#[test]
fn a_client_that_never_reads_is_held_back() {
    let dir = TempDir::new("backpressure");
    let server = start(&dir, &[]);
    let flood = server.connect().unwrap();
    flood
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // 32 MiB of requests: more than all the socket buffers between us hold.
    let chunk = HELLO_REQUEST.repeat(32 * 1024);
    let mut writer = flood.try_clone().unwrap();
    let sent = thread::spawn(move || {
        let mut total = 0usize;
        for _ in 0..32 {
            if writer.write_all(&chunk).is_err() {
                return (total, true);
            }
            total += chunk.len();
        }
        (total, false)
    });
    let (total, stalled) = sent.join().unwrap();
    assert!(
        stalled,
        "all {total} bytes were taken: the server read without bound"
    );
    assert_hello(&mut server.connect().unwrap());
    let rss = rss_kib(server.pid());
    assert!(
        rss < 32 * 1024,
        "the server holds {rss} KiB for one client that never reads"
    );
    drop(flood);
    common::assert_no_panic(&server);
}

#[test]
fn header_timeout_drops_a_silent_client() {
    let dir = TempDir::new("headertimeout");
    let server = start(&dir, &["--header-timeout", "1"]);
    let mut silent = server.connect().unwrap();
    assert!(closed_by_server(&mut silent), "a silent client was kept");
    // A slowloris that keeps sending a byte now and then is dropped too:
    // the header clock is not restarted by a trickle. (Once the server has
    // closed, the first write draws a reset and the next one fails.)
    let mut trickle = server.connect().unwrap();
    let started = Instant::now();
    let mut dropped = false;
    while started.elapsed() < Duration::from_secs(8) {
        if trickle.write_all(b"X").is_err() {
            dropped = true;
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        dropped,
        "a client trickling a byte every 100 ms was kept for 8 s"
    );
    assert_hello(&mut server.connect().unwrap());
}

#[test]
fn idle_timeout_closes_keep_alive_connections() {
    let dir = TempDir::new("idletimeout");
    let server = start(&dir, &["--idle-timeout", "1", "--header-timeout", "30"]);
    let mut stream = server.connect().unwrap();
    assert_hello(&mut stream);
    assert!(
        closed_by_server(&mut stream),
        "an idle keep-alive connection was kept"
    );
}

#[test]
fn connection_cap_refuses_cleanly_then_serves() {
    let dir = TempDir::new("cap");
    let server = start(&dir, &["--max-connections", "2"]);
    let mut first = server.connect().unwrap();
    let mut second = server.connect().unwrap();
    assert_hello(&mut first);
    assert_hello(&mut second);
    // The third is over the cap: a 503 with Connection: close, then EOF.
    let mut third = server.connect().unwrap();
    let refusal = read_to_close(&mut third).unwrap();
    let text = String::from_utf8_lossy(&refusal);
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("Connection: close\r\n"), "{text}");
    // Once one leaves, a newcomer is served. (The server learns of the
    // departure from its own event, so give it a few tries.)
    drop(first);
    let mut served = false;
    for _ in 0..50 {
        let mut stream = server.connect().unwrap();
        stream.write_all(HELLO_REQUEST).unwrap();
        if let Ok(response) = read_response(&mut stream, &mut Vec::new(), false) {
            if response.status == 200 {
                served = true;
                break;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert!(served, "no client was served after one left");
    assert_hello(&mut second);
    common::assert_no_panic(&server);
}

#[test]
fn out_of_fds_neither_dies_nor_spins() {
    let dir = TempDir::new("emfile");
    // `ulimit -n` in sh sets both soft and hard limits, so the server cannot
    // raise it back: 32 fds, minus stdio, listener, epoll and waker.
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!(
            "ulimit -n 32; exec {BIN} --port 0 --trace --quiet --directory {}",
            dir.arg()
        ),
    ]);
    let server = Server::spawn(command).unwrap();
    let limits = fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 32 ")),
        "{limits}"
    );
    // 40 clients, more than there are fds; each sends a request.
    let mut clients: Vec<TcpStream> = (0..40).map(|_| server.connect().unwrap()).collect();
    for client in &mut clients {
        client.write_all(HELLO_REQUEST).unwrap();
    }
    assert!(
        server.wait_for_stderr("pausing accept", IO_TIMEOUT),
        "accept never ran out of fds:\n{}",
        server.stderr()
    );
    // Over a second with fds exhausted, the server must mostly sleep.
    let before = cpu_ticks(server.pid());
    let wall = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(server.pid()) - before;
    let ticks_per_sec = 100; // USER_HZ, 100 on Linux
    let budget = wall.elapsed().as_secs_f64() * f64::from(ticks_per_sec) * 0.5;
    assert!(
        (used as f64) < budget,
        "the server spun: {used} ticks of CPU in about a second"
    );
    // The clients leave; a newcomer is then served.
    drop(clients);
    let mut stream = server.connect().unwrap();
    assert_hello(&mut stream);
    common::assert_no_panic(&server);
}

#[test]
fn hostile_input_gets_an_error_and_the_server_goes_on() {
    let dir = TempDir::new("hostile");
    let server = start(&dir, &[]);
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let cases: [(&[u8], &str); 5] = [
        (b"GARBAGE\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\n\r\n", "400"), // no Host
        (huge_header.as_bytes(), "431"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505"),
        (b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", "501"),
    ];
    common::assert_refusals(&server, &cases);
    // A body we do not need is read past, and the next request still parses.
    let mut stream = server.connect().unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let mut leftover = Vec::new();
    assert_eq!(
        read_response(&mut stream, &mut leftover, false)
            .unwrap()
            .status,
        200
    );
    stream.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").unwrap();
    assert_eq!(
        read_response(&mut stream, &mut leftover, false)
            .unwrap()
            .status,
        200
    );
    // Paths that climb out of the directory are refused.
    let mut stream = server.connect().unwrap();
    let bytes = common::exchange(
        &mut stream,
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains("root:"),
        "escaped the directory"
    );
    assert_hello(&mut server.connect().unwrap());
    common::assert_no_panic(&server);
}

/// An absolute-form target (RFC 9112 §3.2.2) is served like its path; a
/// body coding we cannot decode, chunked last (`gzip, chunked`), is 501.
#[test]
fn absolute_form_is_served_and_unknown_codings_are_501() {
    let dir = TempDir::new("forms");
    let server = start(&dir, &[]);
    let mut stream = server.connect().unwrap();
    stream
        .write_all(b"GET http://example.com/hello HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream, &mut Vec::new(), false).unwrap();
    assert_eq!(response.body, b"Hello, World!\n");
    let request = b"POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    let bytes = common::exchange(&mut server.connect().unwrap(), request).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 501 "), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
}

/// A client that says `Expect: 100-continue` hears `100 Continue` before it
/// sends its body; then the answer follows.
#[test]
fn expect_100_continue_is_answered() {
    let dir = TempDir::new("continue");
    let server = start(&dir, &[]);
    let mut stream = server.connect().unwrap();
    stream
        .write_all(
            b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let mut leftover = Vec::new();
    let interim = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(interim.status, 100, "{}", interim.head);
    stream.write_all(b"abc").unwrap();
    let response = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(response.body, b"Hello, World!\n");
}

/// `/count` is produced on a thread of its own and streamed chunked while
/// the loop serves others; when the client leaves, the thread stops.
#[test]
fn count_streams_from_a_thread_and_stops_when_the_client_leaves() {
    let dir = TempDir::new("count");
    let server = Server::start(BIN, &["--trace", "--quiet", "--directory", &dir.arg()]).unwrap();
    let mut stream = server.connect().unwrap();
    stream
        .write_all(b"GET /count?to=100000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream, &mut Vec::new(), false).unwrap();
    assert!(
        response.head.contains("Transfer-Encoding: chunked\r\n"),
        "{}",
        response.head
    );
    let expected: String = (1..=100_000).map(|n| format!("{n}\n")).collect();
    assert!(
        response.body == expected.as_bytes(),
        "the numbers arrived damaged"
    );
    // An endless count, read a little, then abandoned.
    let mut endless = connect_small_window(server.addr);
    endless
        .write_all(b"GET /count?to=100000000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut start = [0u8; 4096];
    endless.read_exact(&mut start).unwrap();
    assert_hello(&mut server.connect().unwrap());
    let rss = rss_kib(server.pid());
    assert!(
        rss < 32 * 1024,
        "the server holds {rss} KiB for one slow count"
    );
    drop(endless);
    assert!(
        server.wait_for_stderr("the client is gone", IO_TIMEOUT),
        "the counting thread did not stop:\n{}",
        server.stderr()
    );
    common::assert_no_panic(&server);
}

#[test]
fn sigterm_exits_zero() {
    let dir = TempDir::new("sigterm");
    let mut server = start(&dir, &[]);
    let mut idle = server.connect().unwrap();
    assert_hello(&mut idle);
    let status = server
        .terminate(IO_TIMEOUT)
        .expect("the server did not exit on SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(server.wait_group_gone(IO_TIMEOUT));
}

#[test]
fn fifty_concurrent_clients_are_all_answered() {
    let dir = TempDir::new("fifty");
    let server = start(&dir, &[]);
    let addr = server.addr;
    let clients: Vec<_> = (0..50)
        .map(|_| {
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut leftover = Vec::new();
                for _ in 0..5 {
                    stream.write_all(HELLO_REQUEST).unwrap();
                    let response = read_response(&mut stream, &mut leftover, false).unwrap();
                    assert_eq!(response.body, b"Hello, World!\n");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
    common::assert_no_panic(&server);
}

#[test]
fn raw_epoll_serves_with_keep_alive() {
    let dir = TempDir::new("raw");
    fs::write(dir.0.join("a.txt"), "file a\n").unwrap();
    let mut server = start(&dir, &["--raw-epoll"]);
    let mut stream = server.connect().unwrap();
    assert_hello(&mut stream);
    assert_hello(&mut stream);
    stream
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream, &mut Vec::new(), false).unwrap();
    assert_eq!(response.body, b"file a\n");
    let status = server.terminate(IO_TIMEOUT).expect("no exit on SIGTERM");
    assert_eq!(status.code(), Some(0));
}

/// Volatile parts of a transcript: ports, wait timeouts, dates, fd limits.
fn normalise(text: &str, port: u16) -> String {
    let text = text.replace(&format!(":{port}"), ":8005");
    let mut out = String::new();
    for line in text.lines() {
        let mut line = line.to_string();
        if line.contains("setrlimit") {
            line = "[trace] setrlimit(RLIMIT_NOFILE, [hard limit]) (soft limit was [soft limit])"
                .into();
        }
        if let Some(i) = line.find("127.0.0.1:") {
            let end = line[i + 10..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(line.len(), |e| i + 10 + e);
            if &line[i + 10..end] != "8005" {
                line.replace_range(i + 10..end, "[port]");
            }
        }
        if let Some(i) = line.find("(timeout ") {
            if let Some(j) = line[i..].find(" ms)") {
                line.replace_range(i + 9..i + j + 3, "[ms]");
            }
        }
        if let (Some(i), Some(j)) = (line.find(" - - ["), line.find("] \"")) {
            line.replace_range(i + 6..j, "date");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The `--trace` narration of one client sending two pipelined requests,
/// staying until the server has gone idle, then closing: what the lesson's
/// `(printf '…'; sleep 1) | nc -q 0 127.0.0.1 8005` does. The lesson quotes it.
#[test]
fn trace_transcript() {
    let dir = TempDir::new("trace");
    let mut server = Server::start(BIN, &["--trace", "--directory", &dir.arg()]).unwrap();
    let mut stream = server.connect().unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut leftover = Vec::new();
    read_response(&mut stream, &mut leftover, false).unwrap();
    read_response(&mut stream, &mut leftover, false).unwrap();
    // Leave only once the server has gone idle, so the narration does not
    // depend on who is faster.
    assert!(server.wait_for_stderr("EAGAIN: drained", IO_TIMEOUT));
    drop(stream);
    assert!(server.wait_for_stderr("close(fd", IO_TIMEOUT));
    server.terminate(IO_TIMEOUT);
    let text = normalise(&server.stderr(), server.addr.port());
    insta::with_settings!({snapshot_path => "../lessons/transcripts",
        prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!("05-epoll-trace", text);
    });
}

/// The same server on the bare epoll calls (`--raw-epoll`): one request, so
/// the narration shows epoll_create1 and each epoll_ctl. The lesson quotes it.
#[test]
fn raw_epoll_trace_transcript() {
    let dir = TempDir::new("rawtrace");
    let mut server =
        Server::start(BIN, &["--raw-epoll", "--trace", "--directory", &dir.arg()]).unwrap();
    let mut stream = server.connect().unwrap();
    assert_hello(&mut stream);
    assert!(server.wait_for_stderr("EAGAIN: drained", IO_TIMEOUT));
    drop(stream);
    assert!(server.wait_for_stderr("close(fd", IO_TIMEOUT));
    server.terminate(IO_TIMEOUT);
    let text = normalise(&server.stderr(), server.addr.port());
    insta::with_settings!({snapshot_path => "../lessons/transcripts",
        prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!("05-epoll-raw-trace", text);
    });
}
