//! Lesson 01, the echo server, seen from outside: bytes come back exactly,
//! EOF and resets end one client but never the server, clients are served one
//! at a time, SIGTERM exits 0, and `--trace` narrates the socket calls.

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;

use common::{IO_TIMEOUT, Server, assert_no_panic};

const BIN: &str = env!("CARGO_BIN_EXE_lesson01_echo");

fn start(args: &[&str]) -> Server {
    Server::start(BIN, args).expect("lesson01_echo starts")
}

/// Read exactly `n` bytes (every read bounded by the connection's timeout).
fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).expect("the echo arrives");
    buf
}

/// Pins: the announce line is the echo rung's `tcp://` URL.
#[test]
fn announces_a_tcp_url() {
    let server = start(&[]);
    assert!(
        server.announce.starts_with("listening on tcp://127.0.0.1:"),
        "{}",
        server.announce
    );
}

/// Pins: what goes in comes back, byte for byte, CR and NUL included.
#[test]
fn echoes_bytes_exactly() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    for message in [&b"hello\n"[..], b"\r\n\0\xff binary too\r\n", b"x"] {
        stream.write_all(message).unwrap();
        assert_eq!(read_n(&mut stream, message.len()), message);
    }
    assert_no_panic(&server);
}

/// Pins: a 1 MiB payload comes back intact. The test writes from one thread
/// and reads in another: the server echoes while we still send, and if we
/// only wrote, both sides' buffers would fill up and everyone would wait.
#[test]
fn echoes_a_large_payload_intact() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let mut writer = stream.try_clone().unwrap();
    let to_send = payload.clone();
    let sender = thread::spawn(move || writer.write_all(&to_send));
    let echoed = read_n(&mut stream, payload.len());
    sender.join().unwrap().unwrap();
    assert!(
        echoed == payload,
        "the echoed megabyte differs from what was sent"
    );
}

/// Pins the short-write loop. A blocking send() that has copied part of its
/// buffer and is then interrupted returns the part; stopping and continuing
/// the server (SIGSTOP, SIGCONT) while it is blocked in send() to a client
/// that does not read yet is a reliable way to cause that. A server that
/// ignores send()'s count loses bytes here; a correct one never does.
#[test]
fn short_writes_lose_nothing() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    let payload: Vec<u8> = (0..4 << 20).map(|i: u32| (i * 13 % 253) as u8).collect();
    let mut writer = stream.try_clone().unwrap();
    let to_send = payload.clone();
    let sender = thread::spawn(move || writer.write_all(&to_send));
    // Let both directions fill up (we are not reading), then poke the server.
    thread::sleep(Duration::from_millis(200));
    for _ in 0..20 {
        server.signal(Signal::SIGSTOP).unwrap();
        thread::sleep(Duration::from_millis(5));
        server.signal(Signal::SIGCONT).unwrap();
        thread::sleep(Duration::from_millis(5));
    }
    let echoed = read_n(&mut stream, payload.len());
    sender.join().unwrap().unwrap();
    assert!(echoed == payload, "bytes were lost or reordered");
}

/// Pins: when the client closes its side, the server sees EOF, closes its
/// side too (we read EOF) and logs the byte count.
#[test]
fn eof_ends_the_connection_cleanly() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    stream.write_all(b"bye\n").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(common::read_to_close(&mut stream).unwrap(), b"bye\n");
    assert!(
        server.wait_for_stderr("disconnected after 4 bytes", IO_TIMEOUT),
        "{}",
        server.stderr()
    );
}

/// Pins: a client that resets its connection (SO_LINGER 0, then close) is
/// logged and forgotten; the server goes on accepting.
#[test]
fn a_reset_does_not_kill_the_server() {
    let server = start(&[]);
    let mut stream = server.connect().unwrap();
    stream.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut stream, 4), b"ping");
    // SO_LINGER with a zero timeout turns close() into an abort: RST, not FIN.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger).unwrap();
    drop(stream);
    assert!(
        server.wait_for_stderr("Connection reset by peer", IO_TIMEOUT),
        "the reset should be logged:\n{}",
        server.stderr()
    );
    let mut next = server.connect().unwrap();
    next.write_all(b"still here").unwrap();
    assert_eq!(read_n(&mut next, 10), b"still here");
    assert_no_panic(&server);
}

/// Pins the rung's failure: one client at a time. A second client connects
/// (the kernel completes the handshake into the backlog) but gets no echo
/// until the first one leaves; then it gets all of it.
#[test]
fn serves_one_client_at_a_time() {
    let server = start(&[]);
    let mut first = server.connect().unwrap();
    first.write_all(b"one").unwrap();
    assert_eq!(read_n(&mut first, 3), b"one");

    let mut second = server.connect().unwrap();
    second.write_all(b"two").unwrap();
    // Absence of an answer: a short wait that can only pass early if the
    // server is wrong (on a slow machine it simply waits its full length).
    second
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 16];
    match second.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!("the second client was served while the first was connected: {other:?}"),
    }

    let (port_a, port_b) = (
        first.local_addr().unwrap().port(),
        second.local_addr().unwrap().port(),
    );
    drop(first);
    second.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(read_n(&mut second, 3), b"two");
    drop(second);
    assert!(server.wait_for_stderr(
        "disconnected after 3 bytes\n[lesson01] 127.0.0.1",
        IO_TIMEOUT
    ));
    assert!(server.wait_for_stderr(&format!("{port_b} disconnected"), IO_TIMEOUT));

    // The chapter's "what breaks" transcript: what each side saw, in order.
    let log = replace_port(&server.stderr(), port_a, "[port A]");
    let log = replace_port(&log, port_b, "[port B]");
    let text = format!(
        "client A: sent \"one\", got \"one\" back\n\
         client B: connected, sent \"two\", got nothing for 500 ms\n\
         client A: closed\n\
         client B: got \"two\" back, closed\n\
         server's stderr:\n{log}"
    );
    insta::with_settings!({snapshot_path => "../lessons/transcripts",
        prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!("01-echo-two-clients", text);
    });
}

/// Pins: SIGTERM ends the server with status 0 and leaves nothing behind.
#[test]
fn sigterm_exits_zero() {
    let mut server = start(&[]);
    let _idle = server.connect().unwrap(); // even with a client connected
    let status = server.terminate(IO_TIMEOUT).expect("exits on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(server.wait_group_gone(IO_TIMEOUT));
}

/// Pins: a second server on the same port fails with a sentence that says
/// what to do next, and exit status 1.
#[test]
fn port_in_use_is_explained() {
    let server = start(&[]);
    let port = server.addr.port().to_string();
    let output = std::process::Command::new(BIN)
        .args(["--port", &port])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Address already in use") && stderr.contains("try --port 0"),
        "{stderr}"
    );
}

/// Pins `--trace`: one line per socket call, in order, for one client, and
/// records it as the transcript the chapter quotes.
#[test]
fn trace_narrates_the_socket_calls() {
    let server = start(&["--trace"]);
    let mut stream = server.connect().unwrap();
    let client_port = stream.local_addr().unwrap().port();
    stream.write_all(b"hello\n").unwrap();
    assert_eq!(read_n(&mut stream, 6), b"hello\n");
    drop(stream);
    assert!(
        server.wait_for_stderr("close(4)", IO_TIMEOUT),
        "{}",
        server.stderr()
    );
    let port = server.addr.port();
    let text = format!("{}\n{}", server.announce, server.stderr());
    let text = replace_port(&text, port, "8001");
    let text =
        replace_port(&text, client_port, "[port]").replace("127.0.0.1:0)", "127.0.0.1:8001)");
    for line in [
        "[trace] socket() -> fd 3",
        "[trace] setsockopt(3, SO_REUSEADDR, 1)",
        "[trace] bind(3, 127.0.0.1:8001)",
        "[trace] listen(3, 128)",
        "[trace] accept(3) -> fd 4 from 127.0.0.1:[port]",
        "[trace] recv(4) -> 6 bytes",
        "[trace] send(4, 6 bytes) -> 6",
        "[trace] recv(4) -> 0 (EOF)",
        "[trace] close(4)",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    insta::with_settings!({snapshot_path => "../lessons/transcripts",
        prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!("01-echo-trace", text);
    });
}

/// Replace `:port` where it is a whole number (`:4000` must not touch `:40001`).
fn replace_port(text: &str, port: u16, with: &str) -> String {
    let needle = format!(":{port}");
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        let after = &rest[i + needle.len()..];
        out.push_str(&rest[..i]);
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            out.push_str(&needle);
        } else {
            out.push(':');
            out.push_str(with);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Pins `--quiet`: the echo still works, the connection log is silent.
#[test]
fn quiet_silences_the_connection_log() {
    let server = start(&["--quiet"]);
    let mut stream = server.connect().unwrap();
    stream.write_all(b"shh").unwrap();
    assert_eq!(read_n(&mut stream, 3), b"shh");
    drop(stream);
    // A second client proves the first one's disconnect was handled.
    let mut next = server.connect().unwrap();
    next.write_all(b"!").unwrap();
    assert_eq!(read_n(&mut next, 1), b"!");
    assert!(
        !server.stderr().contains("[lesson01]"),
        "{}",
        server.stderr()
    );
}
