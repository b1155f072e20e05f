//! The harness itself: finding the announce URL, and reading responses the
//! way every test and the grader do (`ladder::http::read_response` over a
//! real socket), framed every way a rung frames them.

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::{IO_TIMEOUT, read_response};

#[test]
fn announce_urls_are_found() {
    assert_eq!(
        common::addr_in("listening on http://127.0.0.1:8005/"),
        Some("127.0.0.1:8005".parse().unwrap())
    );
    assert_eq!(
        common::addr_in("Serving HTTP on 127.0.0.1 port 9 (http://127.0.0.1:9/) ..."),
        Some("127.0.0.1:9".parse().unwrap())
    );
    assert_eq!(
        common::addr_in("listening on tcp://[::1]:7"),
        Some("[::1]:7".parse().unwrap())
    );
    assert_eq!(common::addr_in("no url here"), None);
}

/// Transcripts mask what varies: dates (a `Date:` header, log dates in
/// brackets, and nothing else in brackets), times in ms, and runs after a
/// marker.
#[test]
fn transcript_masks_touch_only_what_varies() {
    assert_eq!(
        common::mask_dates("Date: Tue, 01 Dec 2026 08:00:00 GMT"),
        "Date: [date]"
    );
    assert_eq!(
        common::mask_dates(r#"127.0.0.1 - - [01/Dec/2026 08:00:00] "GET / HTTP/1.1" 200 13"#),
        r#"127.0.0.1 - - [date] "GET / HTTP/1.1" 200 13"#
    );
    assert_eq!(
        common::mask_dates("[01/Dec/2026 08:00:00] [4711] [INFO] Booting worker [1/2]"),
        "[date] [4711] [INFO] Booting worker [1/2]"
    );
    assert_eq!(
        common::mask_dates("[wsgi] x [01/Dec/20] y"),
        "[wsgi] x [01/Dec/20] y"
    );
    assert_eq!(
        common::mask_ms("in 1.3 ms, timeout 500 ms"),
        "in [ms] ms, timeout [ms] ms"
    );
    let mut line = String::from("(pid:4711) and (pid:42), (pid:)");
    common::mask_after(
        &mut line,
        "(pid:",
        |c| c.is_ascii_digit(),
        |_| "[pid]".into(),
    );
    assert_eq!(line, "(pid:[pid]) and (pid:[pid]), (pid:)");
}

/// `unread_bytes` sees bytes the peer has not read yet, and none once it has.
#[test]
fn unread_bytes_follows_what_the_peer_has_read() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut reader, _) = listener.accept().unwrap();
    let (from, to) = (writer.local_addr().unwrap(), writer.peer_addr().unwrap());
    assert_eq!(common::unread_bytes(from, to), Some(0));
    writer.write_all(&[7; 1000]).unwrap();
    // Until acknowledged, bytes count on both sides: at least 1000.
    assert!(common::unread_bytes(from, to).is_some_and(|n| n >= 1000));
    assert!(!common::wait_until_read(&writer, Duration::from_millis(50)));
    let mut got = [0u8; 1000];
    std::io::Read::read_exact(&mut reader, &mut got).unwrap();
    assert!(common::wait_until_read(&writer, IO_TIMEOUT));
    assert_eq!(
        common::unread_bytes(to, "127.0.0.1:9".parse().unwrap()),
        None
    );
}

/// A connection to an in-test peer that writes `bytes` one at a time (so
/// every read sees a piece), then closes.
fn dribbled(bytes: &'static [u8]) -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    thread::spawn(move || {
        for byte in bytes {
            if peer.write_all(&[*byte]).is_err() {
                return;
            }
        }
    });
    stream
}

#[test]
fn pipelined_responses_are_read_one_by_one_whatever_their_framing() {
    let mut stream = dribbled(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none\
          HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\ntwo\r\n2\r\n!!\r\n0\r\nT: v\r\n\r\n\
          HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n\
          HTTP/1.0 200 OK\r\n\r\nuntil the close",
    );
    let mut leftover = Vec::new();
    let first = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!((first.status, &first.body[..]), (200, &b"one"[..]));
    assert_eq!(first.head, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(first.header("content-length"), Some("3"));
    let second = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(second.body, b"two!!");
    let not_modified = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!((not_modified.status, not_modified.body.len()), (304, 0));
    let head = read_response(&mut stream, &mut leftover, true).unwrap();
    assert_eq!((head.status, head.body.len()), (200, 0));
    let last = read_response(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(last.body, b"until the close");
    assert!(leftover.is_empty());
}

#[test]
fn a_response_cut_short_is_an_error_not_a_short_body() {
    let mut stream = dribbled(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    let err = read_response(&mut stream, &mut Vec::new(), false).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    let mut stream = dribbled(b"HTTP/1.1 200 OK\r\nContent-");
    let err = read_response(&mut stream, &mut Vec::new(), false).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    let mut stream = dribbled(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    let err = read_response(&mut stream, &mut Vec::new(), false).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}
