//! Lesson 02, HTTP on the wire, seen from outside: exact response bytes,
//! HEAD, Connection: close, the naive mode's bare-LF answer, every error
//! status with the server still serving afterwards, the header deadline, a
//! dribbled request, SIGTERM, and the transcripts the chapter quotes.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Server, assert_no_panic, escaped, exchange};

const BIN: &str = env!("CARGO_BIN_EXE_lesson02_hello");

fn start(args: &[&str]) -> Server {
    Server::start(BIN, args).expect("lesson02_hello starts")
}

/// The page for `GET /hello`, as the server renders it.
const HELLO_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Hello</title></head>\n\
    <body><h1>Hello, World!</h1>\n<p>You asked for GET /hello</p></body></html>\n";

/// The response bytes with the Date header's value replaced by `[date]`.
fn redact_date(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response).into_owned();
    let Some(start) = text.find("\r\nDate: ") else {
        return text;
    };
    let value = start + "\r\nDate: ".len();
    let end = value + text[value..].find("\r\n").expect("Date line ends");
    format!("{}[date]{}", &text[..value], &text[end..])
}

/// Bytes as text with CR and LF visible: one output line per line received,
/// so a bare LF (no `\r` before the `\n`) stands out.
fn visible_lines(bytes: &[u8]) -> String {
    let mut out = String::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        out.push_str(&escaped(line));
        out.push('\n');
    }
    out
}

/// stdout and stderr are read by separate threads of the harness: wait
/// until stdout holds `needle` rather than assume it already arrived.
fn wait_for_stdout(server: &Server, needle: &str) -> bool {
    let deadline = Instant::now() + IO_TIMEOUT;
    while Instant::now() < deadline {
        if server.stdout().contains(needle) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A GET that must be answered with 200: the server is still serving.
fn assert_still_serving(server: &Server) {
    let mut stream = server.connect().unwrap();
    let response = exchange(&mut stream, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        escaped(&response)
    );
    assert_no_panic(server);
}

/// Pins the whole response to a GET, byte for byte (Date aside): CRLF line
/// ends, Content-Length matching the body, Connection: close, then the page.
#[test]
fn get_response_bytes_are_exact() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    let response = exchange(&mut stream, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let expected = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nDate: [date]\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{HELLO_PAGE}",
        HELLO_PAGE.len()
    );
    assert_eq!(redact_date(&response), expected);
    let date = String::from_utf8_lossy(&response);
    assert!(date.contains(" GMT\r\n"), "Date must be an IMF-fixdate");
}

/// Pins HEAD: the same head as GET (Content-Length of the body it would
/// have sent), and not one byte of body.
#[test]
fn head_gets_the_head_only() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    let response = exchange(&mut stream, b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // The page would name HEAD, one letter longer than GET.
    let expected = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nDate: [date]\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        HELLO_PAGE.len() + 1
    );
    assert_eq!(redact_date(&response), expected);
}

/// Pins: one request per connection whatever the version says. HTTP/1.1
/// would keep the connection open by default, HTTP/1.0 would not; this rung
/// says Connection: close to both and closes (so read_to_close returns).
#[test]
fn every_version_gets_connection_close() {
    let server = start(&[]);
    for request in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let mut stream = server.connect().unwrap();
        let response = exchange(&mut stream, request).unwrap();
        let text = redact_date(&response);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
        assert!(text.contains("\r\nConnection: close\r\n\r\n"), "{text:?}");
    }
}

/// Pins `--naive`: exactly the lecture's answer shape, bare LF, no headers.
#[test]
fn naive_response_bytes_are_exact() {
    let server = start(&["--naive"]);
    let mut stream = server.connect().unwrap();
    let response = exchange(&mut stream, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&response),
        format!("HTTP/1.1 200 OK\n\n{HELLO_PAGE}")
    );
}

/// Pins every rejection: the status, Connection: close, and the server still
/// serving the next client.
#[test]
fn bad_requests_get_an_error_and_close() {
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200));
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-A: b\r\n".repeat(5)
    );
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(600)
    );
    let cases: [(&str, &[u8], u16); 8] = [
        ("garbage", b"garbage\r\n\r\n", 400),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n", 400),
        ("long request line", long_line.as_bytes(), 414),
        ("too many headers", many_headers.as_bytes(), 431),
        ("head too large", big_head.as_bytes(), 431),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (
            "unknown method",
            b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n",
            501,
        ),
        (
            "body too large",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
            413,
        ),
    ];
    let server = start(&[
        "--max-request-line",
        "100",
        "--max-headers",
        "4",
        "--max-header-bytes",
        "512",
        "--max-body",
        "10",
    ]);
    for (name, request, status) in cases {
        let mut stream = server.connect().unwrap();
        let response = exchange(&mut stream, request).unwrap();
        let text = redact_date(&response);
        let status_line = format!("HTTP/1.1 {status} ");
        assert!(text.starts_with(&status_line), "{name}: {text:?}");
        assert!(
            text.contains("\r\nConnection: close\r\n\r\n"),
            "{name}: {text:?}"
        );
        // Close our side, as curl does after `Connection: close`; otherwise the
        // server's lingering close would wait its full second for us.
        drop(stream);
        assert_still_serving(&server);
    }
}

/// Pins: a body is read (and dropped) before the answer, with either framing.
#[test]
fn request_bodies_are_read_and_discarded() {
    let server = start(&[]);
    for request in [
        &b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\na=1&b=2"[..],
        b"POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na=1\r\n0\r\n\r\n",
    ] {
        let mut stream = server.connect().unwrap();
        let response = exchange(&mut stream, request).unwrap();
        let text = redact_date(&response);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
        assert!(text.contains("You asked for POST /form"), "{text:?}");
    }
}

/// Pins `Expect: 100-continue`: the go-ahead comes before the body is sent,
/// then the final answer.
#[test]
fn expect_100_continue_gets_a_go_ahead() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    stream
        .write_all(
            b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
    let go_ahead = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut buf = vec![0u8; go_ahead.len()];
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(escaped(&buf), escaped(go_ahead));
    let response = exchange(&mut stream, b"hello").unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        escaped(&response)
    );
}

/// Pins absolute-form (RFC 9112 §3.2.2: a server MUST accept it, though
/// only proxies are sent it): the page names the target as sent.
#[test]
fn absolute_form_is_answered() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    let response = exchange(
        &mut stream,
        b"GET http://example.com/hello HTTP/1.1\r\nHost: example.com\r\n\r\n",
    )
    .unwrap();
    let text = redact_date(&response);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    assert!(
        text.contains("You asked for GET http://example.com/hello"),
        "{text:?}"
    );
}

/// Pins RFC 9112 §6.1: a transfer coding we cannot undo (gzip, under the
/// chunking) is 501, and the connection closes, the body unread.
#[test]
fn a_coding_other_than_chunked_gets_501_and_close() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    let response = exchange(
        &mut stream,
        b"POST /form HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n",
    )
    .unwrap();
    let text = redact_date(&response);
    assert!(
        text.starts_with("HTTP/1.1 501 Not Implemented\r\n"),
        "{text:?}"
    );
    assert!(text.contains("\r\nConnection: close\r\n\r\n"), "{text:?}");
    drop(stream);
    assert_still_serving(&server);
}

/// Pins: the path is the client's text and is HTML-escaped in the page.
#[test]
fn the_path_is_escaped_in_the_page() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    let response = exchange(&mut stream, b"GET /<script>&' HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.contains("GET /&lt;script&gt;&amp;&#39;"), "{text}");
}

/// Pins the header deadline: a client that sends nothing gets 408 and is
/// closed, and the next client is served.
#[test]
fn a_silent_client_is_dropped() {
    let server = start(&["--header-timeout", "1"]);
    let mut silent = server.connect().unwrap();
    let response = common::read_to_close(&mut silent).expect("closed within IO_TIMEOUT");
    assert!(
        response.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"),
        "{}",
        escaped(&response)
    );
    assert_still_serving(&server);
}

/// Pins that the deadline is for the whole head, not per read: a client
/// that sends a header line every 200 ms forever is still cut off.
#[test]
fn a_dribbling_client_is_dropped() {
    let server = start(&["--header-timeout", "1"]);
    let mut stream = server.connect().unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let give_up = Instant::now() + IO_TIMEOUT;
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while Instant::now() < give_up {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(_) if response.is_empty() => {
                // No answer yet: send one more header line (the server may
                // have shut its side; ignore write errors).
                let _ = stream.write_all(b"X-Drip: 1\r\n");
            }
            Err(_) => break,
        }
    }
    assert!(
        response.starts_with(b"HTTP/1.1 408 "),
        "{}",
        escaped(&response)
    );
    assert_still_serving(&server);
}

/// Pins: a request that arrives one byte per write is still one request.
#[test]
fn a_request_sent_byte_by_byte_works() {
    let server = start(&["--trace"]);
    let mut stream = server.connect().unwrap();
    stream.set_nodelay(true).unwrap();
    for byte in b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" {
        stream.write_all(&[*byte]).unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    let response = common::read_to_close(&mut stream).unwrap();
    assert!(redact_date(&response).ends_with(HELLO_PAGE));
    // Several reads were needed (the exact number depends on timing).
    assert!(server.wait_for_stderr("200", IO_TIMEOUT));
    assert!(server.stderr().matches("read(").count() > 1);
}

/// Pins: SIGTERM ends the server with status 0, even while a client is connected.
#[test]
fn sigterm_exits_zero() {
    let mut server = start(&[]);
    let _idle = server.connect().unwrap();
    let status = server.terminate(IO_TIMEOUT).expect("exits on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(server.wait_group_gone(IO_TIMEOUT));
}

/// Pins: a second server on the same port explains itself and exits 1.
#[test]
fn port_in_use_is_explained() {
    let server = start(&[]);
    let port = server.addr.port().to_string();
    let output = Command::new(BIN).args(["--port", &port]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("lesson02_hello: binding 127.0.0.1:")
            && stderr.contains("Address already in use")
            && stderr.contains("try --port 0"),
        "{stderr}"
    );
}

// ---- transcripts for lessons/02-hello.md ----

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({snapshot_path => "../lessons/transcripts",
        prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!(name, text);
    });
}

/// Replace `:port` where it is a whole number, and the access log's time.
fn normalise(text: &str, port: u16) -> String {
    let text = text.replace(&format!(":{port}"), ":8002");
    text.lines()
        .map(|line| match (line.find(" - - ["), line.find("] \"")) {
            (Some(a), Some(b)) if a < b => format!("{} - - [date{}", &line[..a], &line[b..]),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the server prints for a request like curl's: the announce line, the
/// head on stdout, the access log line on stderr.
#[test]
fn transcript_of_a_request() {
    let server = start(&[]);
    let port = server.addr.port();
    let request = format!(
        "GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
    );
    let mut stream = server.connect().unwrap();
    exchange(&mut stream, request.as_bytes()).unwrap();
    assert!(server.wait_for_stderr("\" 200 ", IO_TIMEOUT));
    assert!(wait_for_stdout(&server, "-----\n"));
    let text = format!(
        "{}\n{}{}",
        server.announce,
        server.stdout(),
        server.stderr()
    );
    snapshot("02-hello-request", &normalise(&text, port));
}

/// The raw response, one received line per line, CR and LF made visible.
#[test]
fn transcript_of_the_response() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    let response = exchange(&mut stream, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    snapshot(
        "02-hello-response",
        &visible_lines(redact_date(&response).as_bytes()),
    );
}

/// The naive answer the same way: no `\r` anywhere, no length.
#[test]
fn transcript_of_the_naive_response() {
    let server = start(&["--naive"]);
    let mut stream = server.connect().unwrap();
    let response = exchange(&mut stream, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    snapshot("02-hello-naive", &visible_lines(&response));
}

/// Real `curl -v` against both modes, reduced to the lines that do not vary
/// between curl versions: what was sent (`>`), received (`<`), curl's remark
/// about framing, and the body.
#[test]
fn transcript_of_curl_verbose() {
    if Command::new("curl").arg("--version").output().is_err() {
        common::skipped("curl", "the curl -v transcripts");
        return;
    }
    for (args, name) in [
        (&[][..], "02-hello-curl"),
        (&["--naive"][..], "02-hello-curl-naive"),
    ] {
        let server = start(args);
        let port = server.addr.port();
        let output = Command::new("curl")
            .args(["-sv", "--noproxy", "*", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{port}/hello"))
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .output()
            .unwrap();
        assert!(output.status.success(), "curl failed: {output:?}");
        let verbose = String::from_utf8_lossy(&output.stderr);
        let mut text: Vec<String> = verbose
            .lines()
            .filter(|l| l.starts_with("> ") || l.starts_with("< ") || l.contains("Assume close"))
            .map(|l| match l.split_once("User-Agent: curl/") {
                Some((before, _)) => format!("{before}User-Agent: curl/[version]"),
                None if l.starts_with("< Date: ") => "< Date: [date]".to_string(),
                None => l.trim_end().to_string(),
            })
            .collect();
        text.push(
            String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_string(),
        );
        snapshot(name, &normalise(&text.join("\n"), port));
    }
}

/// Pins `--quiet`: no access log, but the request head is still printed.
#[test]
fn quiet_silences_the_access_log() {
    let server = start(&["--quiet"]);
    let mut stream = server.connect().unwrap();
    let response = exchange(&mut stream, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_still_serving(&server);
    assert!(!server.stderr().contains("\" 200 "), "{}", server.stderr());
    assert!(wait_for_stdout(&server, "GET /hello HTTP/1.1\n"));
}
