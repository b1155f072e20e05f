//! Black-box tests of `lesson03_cgi`: the real binary, real sockets, real
//! scripts (the bundled `cgi-bin/` and the test-only `tests/fixtures/cgi-bin/`).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Response, Server, exchange, read_response, zombies_of};

const BIN: &str = env!("CARGO_BIN_EXE_lesson03_cgi");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/cgi-bin")
}

/// A server on the test scripts, with the test static directory.
fn fixture_server(extra: &[&str]) -> Server {
    let cgi = fixtures();
    let www = repo().join("tests/fixtures/lesson03-www");
    let mut args = vec![
        "--cgi-dir",
        cgi.to_str().unwrap(),
        "--directory",
        www.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(BIN, &args).unwrap()
}

/// Send one request on a fresh connection and read one response.
fn request(server: &Server, raw: &str) -> Response {
    let mut stream = server.connect().unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    read_response(&mut stream, &mut Vec::new(), raw.starts_with("HEAD")).unwrap()
}

fn get(server: &Server, target: &str) -> Response {
    request(
        server,
        &format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
}

fn text(response: &Response) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// `NAME=value` lines of a printenv.sh body.
fn env_of(response: &Response) -> BTreeMap<String, String> {
    text(response)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Every RFC 3875 meta-variable, with its exact value, and nothing else
/// from the server's own environment.
#[test]
fn every_meta_variable_reaches_the_script() {
    let server = fixture_server(&[]);
    let body = "a=1&b=2";
    let raw = format!(
        "POST /cgi-bin/printenv.sh/some/where%20else?x=1&y=%20z HTTP/1.1\r\n\
         Host: example.test:8003\r\nUser-Agent: test/1.0\r\nX-Dup: one\r\nx-dup: two\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Authorization: Basic c2VjcmV0OnNlY3JldA==\r\nProxy-Authorization: Basic eA==\r\n\
         Proxy: http://evil.example/\r\nX_Sneaky: underscore\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = request(&server, &raw);
    assert_eq!(response.status, 200, "{}", text(&response));
    let mut env = env_of(&response);
    // sh itself exports PWD: the script's working directory, which RFC 3875
    // §7.2 says should be the script's own directory.
    assert_eq!(env.remove("PWD").map(PathBuf::from), Some(fixtures()));
    let www = repo()
        .join("tests/fixtures/lesson03-www")
        .canonicalize()
        .unwrap();
    let port = server.addr.port().to_string();
    let translated = format!("{}/some/where else", www.display());
    let expected: BTreeMap<String, String> = [
        ("AUTH_TYPE", "Basic"),
        ("CONTENT_LENGTH", "7"),
        ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("HTTP_CONNECTION", "close"),
        ("HTTP_HOST", "example.test:8003"),
        ("HTTP_USER_AGENT", "test/1.0"),
        ("HTTP_X_DUP", "one, two"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("PATH_INFO", "/some/where else"),
        ("PATH_TRANSLATED", translated.as_str()),
        ("QUERY_STRING", "x=1&y=%20z"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_HOST", "127.0.0.1"),
        ("REQUEST_METHOD", "POST"),
        ("SCRIPT_NAME", "/cgi-bin/printenv.sh"),
        ("SERVER_NAME", "example.test"),
        ("SERVER_PORT", port.as_str()),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        (
            "SERVER_SOFTWARE",
            concat!("server-ladder/", env!("CARGO_PKG_VERSION")),
        ),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(env, expected);
}

/// Without a body, Host or Authorization, the optional variables are unset,
/// and SERVER_NAME falls back to the server's address (HTTP/1.0, no Host).
#[test]
fn optional_variables_are_absent_without_their_source() {
    let server = fixture_server(&[]);
    let response = request(&server, "GET /cgi-bin/printenv.sh HTTP/1.0\r\n\r\n");
    let env = env_of(&response);
    for absent in [
        "AUTH_TYPE",
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "PATH_TRANSLATED",
    ] {
        assert!(
            !env.contains_key(absent),
            "{absent} should be unset: {env:?}"
        );
    }
    assert_eq!(env["PATH_INFO"], "");
    assert_eq!(env["QUERY_STRING"], "");
    assert_eq!(env["SERVER_NAME"], "127.0.0.1");
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/1.0");
    // HTTP/1.0 and no length from the script: the body ends at close.
    assert!(
        response.header("transfer-encoding").is_none(),
        "{}",
        response.head
    );
    assert_eq!(response.header("connection"), Some("close"));
}

/// The body reaches stdin, framed by Content-Length or chunked; the script
/// sees the decoded length.
#[test]
fn post_bodies_reach_stdin() {
    let server = fixture_server(&[]);
    let plain = request(
        &server,
        "POST /cgi-bin/echo-body.sh HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
    );
    assert_eq!(plain.status, 200);
    assert_eq!(plain.body, b"hello world");
    assert_eq!(plain.header("x-content-length"), Some("11"));

    let chunked = request(
        &server,
        "POST /cgi-bin/echo-body.sh HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.body, b"hello world");
    assert_eq!(chunked.header("x-content-length"), Some("11"));
}

/// A script that writes more than a pipe holds before it reads its stdin
/// must not deadlock against a server writing a large body.
#[test]
fn stdin_and_stdout_are_served_concurrently() {
    let server = fixture_server(&[]);
    let body = "y".repeat(200 * 1024);
    let raw = format!(
        "POST /cgi-bin/write-first.sh HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = request(&server, &raw);
    assert_eq!(response.status, 200);
    assert!(
        text(&response).ends_with("read 204800 bytes\n"),
        "{}",
        &text(&response)[262_000..]
    );
}

/// The bundled examples: Status, the form, both kinds of redirect.
#[test]
fn bundled_scripts_status_form_and_redirects() {
    let server = Server::start(BIN, &["--directory", repo().to_str().unwrap()]).unwrap();
    let status = get(&server, "/cgi-bin/status.sh/w1");
    assert_eq!(status.status, 404);
    assert_eq!(text(&status), "There is no widget /w1 here.\n");

    let form = request(
        &server,
        "POST /cgi-bin/form.py HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 8\r\nConnection: close\r\n\r\nname=Ada",
    );
    assert!(
        text(&form).contains("Hello, Ada! (8 bytes"),
        "{}",
        text(&form)
    );

    // Local: the server follows it; the client sees hello.sh's answer.
    let local = get(&server, "/cgi-bin/redirect.sh");
    assert_eq!(local.status, 200);
    assert!(local.header("location").is_none());
    assert!(
        text(&local).starts_with("Hello from process "),
        "{}",
        text(&local)
    );

    let client = get(&server, "/cgi-bin/redirect.sh?away");
    assert_eq!(client.status, 302);
    assert_eq!(
        client.header("location"),
        Some("https://www.rfc-editor.org/rfc/rfc3875")
    );

    for script in ["printenv.sh", "printenv.py", "printenv.pl"] {
        let response = get(&server, &format!("/cgi-bin/{script}?k=v"));
        assert_eq!(response.status, 200, "{script}");
        assert!(
            text(&response).contains("QUERY_STRING"),
            "{script}: {}",
            text(&response)
        );
    }
    common::assert_no_panic(&server);
}

/// A script's own Content-Length is used (no chunking), its other headers
/// are passed on, and the connection stays open for the next request.
#[test]
fn script_content_length_and_keep_alive() {
    let server = fixture_server(&[]);
    let mut stream = server.connect().unwrap();
    let mut leftover = Vec::new();
    for _ in 0..2 {
        stream
            .write_all(b"GET /cgi-bin/with-length.sh HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap();
        let response = read_response(&mut stream, &mut leftover, false).unwrap();
        assert_eq!(response.body, b"exact\n");
        assert_eq!(response.header("content-length"), Some("6"));
        assert_eq!(response.header("x-custom"), Some("kept"));
        assert!(response.header("transfer-encoding").is_none());
    }
    let head = request(
        &server,
        "HEAD /cgi-bin/with-length.sh HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("6"));
}

/// Relative directories work: scripts run in their own directory, so the
/// server must not hand them a path relative to its own.
#[test]
fn relative_directories_work() {
    let mut command = Command::new(BIN);
    command.current_dir(repo()).args([
        "--port",
        "0",
        "--cgi-dir",
        "tests/fixtures/cgi-bin",
        "--directory",
        "tests/fixtures/lesson03-www",
    ]);
    let server = Server::spawn(command).unwrap();
    let response = get(&server, "/cgi-bin/with-length.sh");
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"exact\n"[..])
    );
    assert_eq!(get(&server, "/note.txt").status, 200);
    let missing = Command::new(BIN)
        .args(["--port", "0", "--cgi-dir", "/no/such/dir"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        missing.stdout.is_empty(),
        "no announce line before the check"
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--cgi-dir /no/such/dir"));
}

/// A local redirect from a test script: served in place, on a kept-alive
/// connection, and the connection goes on.
#[test]
fn local_redirect_on_a_kept_alive_connection() {
    let server = fixture_server(&[]);
    let mut stream = server.connect().unwrap();
    let mut leftover = Vec::new();
    for target in ["/cgi-bin/goto.sh", "/cgi-bin/with-length.sh"] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        stream.write_all(raw.as_bytes()).unwrap();
        let response = read_response(&mut stream, &mut leftover, false).unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"exact\n"[..])
        );
        assert!(response.header("location").is_none());
    }
}

/// Pins RFC 3875 §6.2.2: a local redirect in answer to a POST is served as
/// a GET without the body, and without the variables that described it.
#[test]
fn a_redirected_post_becomes_a_get_without_the_body() {
    let server = fixture_server(&[]);
    let response = request(
        &server,
        "POST /cgi-bin/redirect-post.sh HTTP/1.1\r\nHost: h\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: 8\r\nConnection: close\r\n\r\nname=Ada",
    );
    assert_eq!(response.status, 200);
    assert_eq!(text(&response), "GET CONTENT_LENGTH=unset stdin=\n");
    // The same script, asked directly, does see the POST and its body.
    let direct = request(
        &server,
        "POST /cgi-bin/show-method.sh HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\
         Connection: close\r\n\r\nname=Ada",
    );
    assert_eq!(text(&direct), "POST CONTENT_LENGTH=8 stdin=name=Ada\n");
}

/// Pins RFC 3875 §6.3.3: the script's reason phrase reaches the status
/// line; its hop-by-hop headers do not reach the client.
#[test]
fn a_custom_status_keeps_its_reason_phrase() {
    let server = fixture_server(&[]);
    let response = get(&server, "/cgi-bin/custom-status.sh");
    assert!(
        response.head.starts_with("HTTP/1.1 299 Custom Thing\r\n"),
        "{}",
        response.head
    );
    assert_eq!(response.header("x-kept"), Some("yes"));
    assert!(response.header("upgrade").is_none(), "{}", response.head);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(text(&response), "fine\n");
}

/// Pins HEAD on a script without Content-Length: the head of the GET, no
/// body and no chunk, and the connection carries the next request.
#[test]
fn head_on_a_script_sends_no_body() {
    let server = fixture_server(&[]);
    let mut stream = server.connect().unwrap();
    let mut leftover = Vec::new();
    stream
        .write_all(b"HEAD /cgi-bin/show-method.sh HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let head = read_response(&mut stream, &mut leftover, true).unwrap();
    assert_eq!(head.status, 200);
    assert!(head.header("transfer-encoding").is_none(), "{}", head.head);
    stream
        .write_all(b"GET /cgi-bin/with-length.sh HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let next = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!((next.status, next.body.as_slice()), (200, &b"exact\n"[..]));
}

/// Pins absolute-form (RFC 9112 §3.2.2) for a script and a static file.
#[test]
fn absolute_form_is_answered() {
    let server = fixture_server(&[]);
    let script = get(&server, "http://example.com/cgi-bin/with-length.sh");
    assert_eq!(
        (script.status, script.body.as_slice()),
        (200, &b"exact\n"[..])
    );
    assert_eq!(get(&server, "http://example.com/note.txt").status, 200);
}

/// nph- scripts write the whole response; it passes through byte for byte.
#[test]
fn nph_output_passes_through() {
    let server = fixture_server(&[]);
    let mut stream = server.connect().unwrap();
    let bytes = exchange(
        &mut stream,
        b"GET /cgi-bin/nph-raw.sh HTTP/1.1\r\nHost: h\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        bytes,
        b"HTTP/1.1 299 Custom\r\nX-Nph: yes\r\nConnection: close\r\n\r\nraw body\n"
    );
}

/// Each failure gets its status, and a failing script's stderr is logged.
#[test]
fn failures_are_answered() {
    let server = fixture_server(&[]);
    let cases = [
        ("/cgi-bin/no-such-script", 404),
        ("/cgi-bin/not-executable.sh", 403),
        ("/cgi-bin/fail.sh", 502),
        ("/cgi-bin/malformed.sh", 502),
        ("/cgi-bin/crlf-inject.sh", 502),
        ("/cgi-bin/loop.sh", 500),
    ];
    for (target, status) in cases {
        let response = get(&server, target);
        assert_eq!(response.status, status, "{target}: {}", response.head);
        assert!(!response.head.contains("stolen"), "{}", response.head);
    }
    assert!(
        server.wait_for_stderr(
            "[lesson03] cgi stderr: fail.sh: the database is on fire",
            Duration::from_secs(10)
        ),
        "{}",
        server.stderr()
    );
    let why = "cgi: /cgi-bin/malformed.sh: a header line has no colon (exited 0)";
    assert!(
        server.wait_for_stderr(why, Duration::from_secs(10)),
        "{}",
        server.stderr()
    );
    assert!(
        server.wait_for_stderr("exited 3", Duration::from_secs(10)),
        "{}",
        server.stderr()
    );
    common::assert_no_panic(&server);
}

/// Is any process of group `pgid` still running (zombies aside)?
fn group_running(pgid: u32) -> bool {
    common::processes()
        .iter()
        .any(|p| p.pgrp == pgid && p.running())
}

fn sleeper_pgid(server: &Server) -> u32 {
    assert!(
        server.wait_for_stderr("sleeper pgid ", Duration::from_secs(10)),
        "{}",
        server.stderr()
    );
    let stderr = server.stderr();
    let after = stderr.split("sleeper pgid ").nth(1).unwrap();
    after.lines().next().unwrap().trim().parse().unwrap()
}

/// A script past --timeout is killed with everything it started: 504.
#[test]
fn timeout_kills_the_whole_process_group() {
    let server = fixture_server(&["--timeout", "1"]);
    let response = get(&server, "/cgi-bin/sleeper.sh");
    assert_eq!(response.status, 504);
    let pgid = sleeper_pgid(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while group_running(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !group_running(pgid),
        "script group {pgid} survived the timeout"
    );
    assert_eq!(zombies_of(server.pid(), Duration::from_secs(10)), 0);
}

/// A script that never stops printing is cut off at --timeout as well, even
/// though its pipe always has data ready.
#[test]
fn endless_output_is_cut_off() {
    let server = fixture_server(&["--timeout", "1", "--quiet"]);
    let mut stream = server.connect().unwrap();
    stream
        .write_all(b"GET /cgi-bin/flood.sh HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut chunk = vec![0u8; 1 << 16];
    let cut_off = loop {
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(_) if started.elapsed() > Duration::from_secs(60) => break false,
            Ok(_) => {}
            Err(err) => panic!("reading the flood: {err}"),
        }
    };
    assert!(cut_off, "the flood was still flowing after 60 s");
    assert_eq!(zombies_of(server.pid(), Duration::from_secs(10)), 0);
}

/// Shell metacharacters in the query are data: no shell ever sees them,
/// and a query without `=` does not become command-line arguments.
#[test]
fn injection_looking_queries_reach_the_script_verbatim() {
    let server = fixture_server(&[]);
    for query in [";touch%20pwned", "$(touch%20pwned)", "`id`|cat", "pwned"] {
        let response = get(&server, &format!("/cgi-bin/args.sh?{query}"));
        assert_eq!(text(&response), format!("argc=0\nquery={query}\n"));
    }
    assert!(!fixtures().join("pwned").exists());
}

/// `..` in any spelling is refused, for scripts and static files alike.
#[test]
fn traversal_is_refused() {
    let server = fixture_server(&[]);
    let cases = [
        ("/cgi-bin/../printenv.sh", 400),
        ("/cgi-bin/%2e%2e/cgi-bin/printenv.sh", 400),
        ("/cgi-bin/%2E%2e%2fcgi-bin%2fprintenv.sh", 400),
        ("/cgi-bin/..%2f..%2fCargo.toml", 400),
        ("/cgi-bin/printenv.sh/../../etc/passwd", 400),
        ("/../../Cargo.toml", 404),
        ("/%2e%2e/%2e%2e/Cargo.toml", 404),
        ("/..%2f..%2fCargo.toml", 404),
    ];
    for (target, status) in cases {
        let response = get(&server, target);
        assert_eq!(response.status, status, "{target}");
    }
}

/// Minimal static serving beside the scripts.
#[test]
fn static_files_beside_the_scripts() {
    let server = fixture_server(&[]);
    let index = get(&server, "/");
    assert_eq!(
        (index.status, text(&index).as_str()),
        (200, "<h1>static</h1>\n")
    );
    let note = get(&server, "/note.txt");
    assert_eq!(
        note.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(get(&server, "/missing").status, 404);
    let post = request(
        &server,
        "POST /note.txt HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 501);
    let bad = request(&server, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(bad.status, 400, "no Host");
    let mut stream = server.connect().unwrap();
    let garbage = exchange(&mut stream, b"\x16\x03\x01 hello\r\n\r\n").unwrap();
    assert!(
        garbage.starts_with(b"HTTP/1.1 400 "),
        "{}",
        common::escaped(&garbage)
    );
    common::assert_no_panic(&server);
}

/// A process per request, always reaped: no zombie after 300 requests.
#[test]
fn no_zombies_after_many_requests() {
    let server = fixture_server(&["--quiet"]);
    let mut stream = server.connect().unwrap();
    let mut leftover = Vec::new();
    for _ in 0..300 {
        stream
            .write_all(b"GET /cgi-bin/with-length.sh HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap();
        let response = read_response(&mut stream, &mut leftover, false).unwrap();
        assert_eq!(response.status, 200);
    }
    drop(stream);
    // The last script is reaped just after its response went out.
    assert_eq!(
        zombies_of(server.pid(), Duration::from_secs(10)),
        0,
        "zombie children of the server remain"
    );
}

/// SIGTERM: exit 0, and a script still running is killed, not orphaned.
#[test]
fn sigterm_exits_zero_and_leaves_no_script_behind() {
    let mut server = fixture_server(&[]);
    let mut stream = server.connect().unwrap();
    stream
        .write_all(b"GET /cgi-bin/sleeper.sh HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let pgid = sleeper_pgid(&server);
    let status = server.terminate(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while group_running(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!group_running(pgid), "the script outlived the server");
}

// ---- Transcripts quoted by lessons/03-cgi.md --------------------------

/// Replace what changes from run to run with placeholders.
fn normalise(text: &str, port: u16, default_port: u16) -> String {
    let mut out = text.replace(&format!(":{port}"), &format!(":{default_port}"));
    out = out.replace(&format!("\"{port}\""), &format!("\"{default_port}\""));
    out = out.replace(&format!("={port}\n"), &format!("={default_port}\n"));
    out = out.replace(env!("CARGO_MANIFEST_DIR"), "/path/to/server-ladder");
    let mut lines = Vec::new();
    for line in out.lines() {
        let mut line = line.to_string();
        if let Some(i) = line.find("Date: ") {
            line.replace_range(i + 6.., "[date]");
        }
        if let (Some(a), Some(b)) = (line.find(" - - ["), line.find("] \"")) {
            line.replace_range(a + 6..b, "[date]");
        }
        for word in ["pid ", "waitpid(", "process ", "127.0.0.1:"] {
            line = replace_number_after(
                &line,
                word,
                if word == "127.0.0.1:" {
                    "[port]"
                } else {
                    "[pid]"
                },
                default_port,
            );
        }
        lines.push(line);
    }
    lines.join("\n") + "\n"
}

/// `pid 4711` → `pid [pid]` (the default port after `127.0.0.1:` is kept).
fn replace_number_after(line: &str, word: &str, with: &str, keep: u16) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(word) {
        out.push_str(&rest[..i + word.len()]);
        rest = &rest[i + word.len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 && rest[..digits] != keep.to_string() {
            out.push_str(with);
            rest = &rest[digits..];
        }
    }
    out + rest
}

/// What `curl -i` prints: the head, then the body with any chunking undone.
fn curl_i(server: &Server, raw: &str) -> String {
    let response = request(server, raw);
    format!("{}{}", response.head.replace('\r', ""), text(&response))
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({snapshot_path => "../lessons/transcripts",
        prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!(name, text);
    });
}

/// The request curl sends for the lesson's first command,
/// `curl -i -H 'Connection: close' 'http://127.0.0.1:8003/cgi-bin/printenv.sh/foo/bar?x=1'`
/// (the User-Agent is that of the curl the transcript was first taken with).
const CURL_PRINTENV: &str = "GET /cgi-bin/printenv.sh/foo/bar?x=1 HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n\
    User-Agent: curl/7.88.1\r\nAccept: */*\r\nConnection: close\r\n\r\n";

#[test]
fn transcript_printenv_with_trace() {
    let server = Server::start(BIN, &["--trace", "--directory", repo().to_str().unwrap()]).unwrap();
    let port = server.addr.port();
    let raw = CURL_PRINTENV.replace("PORT", &port.to_string());
    snapshot(
        "03-printenv",
        &normalise(&curl_i(&server, &raw), port, 8003),
    );
    assert!(server.wait_for_stderr("\" 200 ", Duration::from_secs(10)));
    // The body size depends on where the repository lives (PWD, PATH_TRANSLATED).
    let log = normalise(&server.stderr(), port, 8003);
    let log: Vec<String> = log
        .lines()
        .map(|l| match l.rsplit_once("\" 200 ") {
            Some((start, _)) => format!("{start}\" 200 [size]"),
            None => l.to_string(),
        })
        .collect();
    snapshot("03-printenv-trace", &(log.join("\n") + "\n"));
}

#[test]
fn transcript_redirects_and_failures() {
    let server = Server::start(BIN, &["--trace", "--directory", repo().to_str().unwrap()]).unwrap();
    let port = server.addr.port();
    let mut transcript = String::new();
    for target in [
        "/cgi-bin/redirect.sh",
        "/cgi-bin/redirect.sh?away",
        "/cgi-bin/status.sh/w1",
    ] {
        let response = get(&server, target);
        transcript.push_str(&format!(
            "$ curl -i -H 'Connection: close' 'http://127.0.0.1:{port}{target}'\n{}",
            response.head.replace('\r', "")
        ));
        transcript.push_str(&text(&response));
        transcript.push('\n');
    }
    snapshot("03-redirects", &normalise(&transcript, port, 8003));
}

/// Python's `http.server --cgi` and ours, on the same printenv.py.
#[test]
fn transcript_python_side_by_side() {
    if Command::new("python3").arg("--version").output().is_err() {
        common::skipped(
            "python3",
            "the side-by-side transcript with python3 -m http.server --cgi",
        );
        return;
    }
    let mut python = Command::new("python3");
    // -u: unbuffered stdout, so the "Serving HTTP on" line arrives at once.
    // A small fixed environment, because http.server hands its own
    // environment to every script, and the transcript must not depend on ours.
    python
        .args([
            "-u",
            "-m",
            "http.server",
            "--cgi",
            "--bind",
            "127.0.0.1",
            "0",
        ])
        .current_dir(repo())
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/home/student");
    let python = Server::spawn(python).unwrap();
    let ours = Server::start(BIN, &["--directory", repo().to_str().unwrap()]).unwrap();
    let mut transcript = String::new();
    for (who, server, default_port) in [
        ("python3 -m http.server --cgi 8000", &python, 8000),
        ("cargo run --bin lesson03_cgi", &ours, 8003),
    ] {
        let port = server.addr.port();
        let raw = format!(
            "GET /cgi-bin/printenv.py/foo?hello HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             User-Agent: curl/7.88.1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        // http.server's head mixes CRLF (its status line) and LF (the
        // script's lines, passed on as printed), so read it raw, to the close.
        let text = if default_port == 8000 {
            let mut stream = server.connect().unwrap();
            let bytes = exchange(&mut stream, raw.as_bytes()).unwrap();
            String::from_utf8_lossy(&bytes).replace('\r', "")
        } else {
            curl_i(server, &raw)
        };
        let text = text.replace(&python.addr.ip().to_string(), "127.0.0.1");
        transcript.push_str(&format!(
            "### {who}\n$ curl -i -H 'Connection: close' 'http://127.0.0.1:{default_port}/cgi-bin/printenv.py/foo?hello'\n"
        ));
        transcript.push_str(&normalise(&text, port, default_port));
        transcript.push('\n');
    }
    snapshot("03-python-side-by-side", &python_normalise(transcript));

    // What http.server does with a CGI head: it passes it on as is.
    let port = python.addr.port();
    let mut transcript = String::new();
    for target in ["/cgi-bin/status.sh", "/cgi-bin/redirect.sh"] {
        let raw =
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        let mut stream = python.connect().unwrap();
        let bytes = exchange(&mut stream, raw.as_bytes()).unwrap();
        let text = String::from_utf8_lossy(&bytes).replace('\r', "");
        transcript.push_str(&format!(
            "$ curl -i -H 'Connection: close' http://127.0.0.1:8000{target}\n"
        ));
        transcript.push_str(&normalise(&text, port, 8000));
        transcript.push('\n');
    }
    snapshot("03-python-status-redirect", &python_normalise(transcript));
}

/// Python's exact version and its host name are the machine's, not the lesson's.
fn python_normalise(mut transcript: String) -> String {
    // Python prints its own version in Server: and SERVER_SOFTWARE.
    let version = transcript
        .split("SimpleHTTP/0.6 Python/")
        .nth(1)
        .and_then(|r| r.split(|c: char| !(c.is_ascii_digit() || c == '.')).next())
        .unwrap_or("")
        .to_string();
    if !version.is_empty() {
        transcript = transcript.replace(&format!("Python/{version}"), "Python/3.11");
    }
    // http.server's SERVER_NAME is socket.getfqdn() of the bound address:
    // `localhost` on most machines, but not all.
    let fqdn = Command::new("python3")
        .args(["-c", "import socket; print(socket.getfqdn('127.0.0.1'))"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !fqdn.is_empty() {
        transcript = transcript.replace(
            &format!("SERVER_NAME=\"{fqdn}\""),
            "SERVER_NAME=\"localhost\"",
        );
    }
    transcript
}
