//! The program output that `lessons/06-wsgi.md` quotes, captured from the
//! real `lesson06_wsgi` running the real apps in `apps/`, and compared with
//! `lessons/transcripts/06-*.snap` on every run (re-capture with
//! `INSTA_UPDATE=always cargo test --test lesson06_transcripts`).
//!
//! Each test sends the bytes the chapter's `curl` command sends (its
//! User-Agent written as `curl/[version]`), and masks what varies from run
//! to run: ports, dates, times, addresses, cookie values. The transcripts of
//! the framework apps (Werkzeug, WebOb, Flask) need the venv that
//! `scripts/python-env.sh` makes, `target/venv`, or `$VIRTUAL_ENV`; without
//! the framework they say what they did not check and pass.
#![cfg(feature = "python")]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{IO_TIMEOUT, Server, read_response};

const BIN: &str = env!("CARGO_BIN_EXE_lesson06_wsgi");

/// The port the chapter's commands use, which every real port is shown as.
const SHOWN_PORT: u16 = 8006;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv with the frameworks, if it has `module`: `$VIRTUAL_ENV`, else
/// `target/venv` (made by `scripts/python-env.sh`).
fn venv_with(module: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("VIRTUAL_ENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/venv"));
    let ok = Command::new(venv.join("bin/python"))
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|out| out.status.success());
    ok.then_some(venv)
}

/// `lesson06_wsgi [flags] --chdir apps APP`, from the repository's root, as
/// the chapter runs it.
fn start(app: &str, flags: &[&str]) -> Server {
    let mut args: Vec<&str> = flags.to_vec();
    args.extend(["--chdir", "apps", app]);
    let mut command = Command::new(BIN);
    command
        .args(&args)
        .args(["--port", "0"])
        .current_dir(root())
        .env_remove("VIRTUAL_ENV");
    Server::spawn(command).expect("start lesson06_wsgi")
}

/// What `curl` sends for `curl [-d FORM] [-b cookie] http://127.0.0.1:8006TARGET`.
fn curl_request(server: &Server, method: &str, target: &str, extra: &str, form: &str) -> Vec<u8> {
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: curl/[version]\r\nAccept: */*\r\n{extra}",
        server.addr.port()
    );
    if !form.is_empty() {
        head.push_str(&format!(
            "Content-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n",
            form.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(form);
    head.into_bytes()
}

/// One exchange on a fresh connection: the head as received, and the body.
fn fetch(server: &Server, request: &[u8]) -> common::Response {
    let mut stream: TcpStream = server.connect().expect("connect");
    stream.write_all(request).expect("send the request");
    read_response(&mut stream, &mut Vec::new(), false).expect("read the response")
}

/// `curl -i`'s output: the head (CRLF shown as line ends) and the body.
fn as_curl_i(response: &common::Response) -> String {
    let head = response.head.replace("\r\n", "\n");
    format!("{head}{}", String::from_utf8_lossy(&response.body))
}

/// Mask what varies between runs.
fn normalise(text: &str, port: u16) -> String {
    let mut out = String::new();
    let text = text
        .replace(&format!(":{port}"), &format!(":{SHOWN_PORT}"))
        .replace(&format!("'{port}'"), &format!("'{SHOWN_PORT}'"));
    for line in text.lines() {
        let mut line = common::mask_dates(line);
        // Python object addresses: `<_io.BytesIO object at 0x7f3c2d1e4a40>`.
        while let Some(i) = line.find(" at 0x") {
            let end = line[i + 6..]
                .find(|c: char| !c.is_ascii_hexdigit())
                .map_or(line.len(), |e| i + 6 + e);
            line.replace_range(i + 4..end, "[address]");
        }
        // Client ports: `127.0.0.1:52144`.
        common::mask_after(
            &mut line,
            "127.0.0.1:",
            |c| c.is_ascii_digit(),
            |p| {
                // The server's own port is shown as the chapter's.
                if p == SHOWN_PORT.to_string() {
                    p.into()
                } else {
                    "[port]".into()
                }
            },
        );
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({snapshot_path => "../lessons/transcripts",
        prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!(name, text);
    });
}

/// `curl -i http://127.0.0.1:8006/` against `hello:app`: "Run it".
#[test]
fn hello_transcript() {
    let server = start("hello:app", &["--quiet"]);
    let response = fetch(&server, &curl_request(&server, "GET", "/", "", ""));
    assert_eq!(response.status, 200);
    snapshot(
        "06-hello",
        &normalise(&as_curl_i(&response), server.addr.port()),
    );
}

/// An app that cannot be loaded: one line, exit status 1.
#[test]
fn load_error_transcript() {
    let output = Command::new(BIN)
        .args(["--port", "0", "--chdir", "apps", "hello:application"])
        .current_dir(root())
        .env_remove("VIRTUAL_ENV")
        .output()
        .expect("run lesson06_wsgi");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "no announce line: {output:?}");
    snapshot("06-load-error", &String::from_utf8_lossy(&output.stderr));
}

/// The environ printer, for the chapter's first request.
#[test]
fn environ_transcript() {
    let server = start("environ:app", &["--quiet"]);
    let request = curl_request(&server, "GET", "/a/b%20c?x=1&y=2", "", "");
    let response = fetch(&server, &request);
    assert_eq!(response.status, 200);
    let body = String::from_utf8_lossy(&response.body);
    snapshot("06-environ", &normalise(&body, server.addr.port()));
}

/// `grep PATH_INFO` of a UTF-8 path, and `grep AUTH` of two headers that
/// map to the same variable.
#[test]
fn environ_edges_transcript() {
    let server = start("environ:app", &["--quiet"]);
    let grep = |request: Vec<u8>, needle: &str| -> String {
        let response = fetch(&server, &request);
        String::from_utf8_lossy(&response.body)
            .lines()
            .filter(|l| l.contains(needle))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let path = grep(
        curl_request(&server, "GET", "/caf%C3%A9", "", ""),
        "PATH_INFO",
    );
    let two = "X-Auth-User: ada\r\nX_Auth_User: eve\r\n";
    let auth = grep(curl_request(&server, "GET", "/", two, ""), "AUTH");
    assert_eq!(
        auth, "HTTP_X_AUTH_USER = 'ada'\n",
        "the underscore header is dropped"
    );
    snapshot("06-environ-edges", &format!("{path}{auth}"));
}

/// The time app three ways, `?name=Ada` and a posted form each: the same
/// answers but for the time.
#[test]
fn time_three_ways_transcript() {
    let Some(venv) = venv_with("werkzeug, webob") else {
        common::skipped(
            "Werkzeug or WebOb (scripts/python-env.sh)",
            "the time app under Werkzeug and WebOb",
        );
        return;
    };
    let venv = venv.to_string_lossy().into_owned();
    let mut text = String::new();
    for app in ["time_raw:app", "time_werkzeug:app", "time_webob:app"] {
        let server = start(app, &["--quiet", "--python", &venv]);
        for request in [
            curl_request(&server, "GET", "/?name=Ada", "", ""),
            curl_request(&server, "POST", "/", "", "name=Ada"),
        ] {
            let response = fetch(&server, &request);
            assert_eq!(response.status, 200, "{app}");
            let body = String::from_utf8_lossy(&response.body);
            // `Hello, Ada: it is 10:00:00 UTC on Saturday 21 November 2026.`
            let masked = match body.split_once(": it is ") {
                Some((hello, _)) => format!("{hello}: it is [time].\n"),
                None => body.into_owned(),
            };
            text.push_str(&masked);
        }
    }
    snapshot("06-time-three-ways", &text);
}

/// `--trace` of one streamed response: the hand-off to the Python thread
/// and everything that thread does. The loop's own lines (`epoll_wait`,
/// `write`) interleave with them in an order that varies from run to run,
/// so they are left out; each thread's lines are in order.
#[test]
fn stream_trace_transcript() {
    let mut server = start("stream:app", &["--trace"]);
    let request = curl_request(&server, "GET", "/?chunks=3&ms=100", "", "");
    let mut stream = server.connect().expect("connect");
    stream.write_all(&request).expect("send");
    let response = read_response(&mut stream, &mut Vec::new(), false).expect("response");
    assert_eq!(response.body.iter().filter(|&&b| b == b'\n').count(), 3);
    drop(stream);
    assert!(server.wait_for_stderr("\"GET /?chunks=3", IO_TIMEOUT));
    server.terminate(IO_TIMEOUT);
    let stderr = server.stderr();
    let python_side: String = stderr
        .lines()
        .filter(|l| {
            ["] loop: ", "] wsgi", "] python thread", " - - ["]
                .iter()
                .any(|part| l.contains(part))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    snapshot(
        "06-stream-trace",
        &common::mask_ms(&normalise(&python_side, server.addr.port())),
    );
}

/// The value of the `session` cookie a response sets.
fn session_cookie(response: &common::Response) -> String {
    let set = response
        .headers
        .iter()
        .find(|(n, v)| n.eq_ignore_ascii_case("set-cookie") && v.starts_with("session="))
        .map(|(_, v)| v.clone())
        .expect("a session cookie");
    let value = &set["session=".len()..];
    value.split(';').next().unwrap_or(value).to_string()
}

/// The Flask login: the two curl commands, then decode_session.py on the
/// cookie. The cookie's timestamp and signature differ on every run.
#[test]
fn flask_login_transcript() {
    let Some(venv) = venv_with("flask") else {
        common::skipped(
            "Flask (scripts/python-env.sh)",
            "the Flask login and its session cookie",
        );
        return;
    };
    let venv = venv.to_string_lossy().into_owned();
    let server = start("flask_login:app", &["--quiet", "--python", &venv]);
    let login = fetch(
        &server,
        &curl_request(
            &server,
            "POST",
            "/login",
            "",
            "username=ada&password=lovelace",
        ),
    );
    assert_eq!(login.status, 302, "{}", login.head);
    let cookie = session_cookie(&login);
    let cookie_line = format!("Cookie: session={cookie}\r\n");
    let page = fetch(
        &server,
        &curl_request(&server, "GET", "/", &cookie_line, ""),
    );
    assert_eq!(page.status, 200);
    let page = String::from_utf8_lossy(&page.body).into_owned();
    assert!(page.contains("Hello, ada!"), "{page}");
    // curl prints each body, and nothing after a body without a final newline.
    let mut text = String::from_utf8_lossy(&login.body).into_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&page);
    snapshot("06-flask-login", &normalise(&text, server.addr.port()));

    // The chapter runs the decoder with the system's python3, as a student
    // would: it needs the standard library only.
    let decoded = Command::new("python3")
        .arg("apps/decode_session.py")
        .arg(&cookie)
        .current_dir(root())
        .output()
        .expect("run python3 apps/decode_session.py");
    assert!(decoded.status.success(), "{decoded:?}");
    let decoded = String::from_utf8_lossy(&decoded.stdout);
    assert!(decoded.contains("\"user\": \"ada\""), "{decoded}");
    let masked: String = decoded
        .lines()
        .map(|l| {
            if l.starts_with("signed at:") {
                "signed at: [when the cookie was made]".to_string()
            } else if let Some(rest) = l.strip_prefix("signature: ") {
                let hex = rest.split(' ').next().unwrap_or("");
                format!("signature: {}", rest.replacen(hex, "[20 bytes]", 1))
            } else {
                l.to_string()
            }
        })
        .map(|l| l + "\n")
        .collect();
    snapshot("06-flask-session", &masked);
}
