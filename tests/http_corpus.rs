//! The HTTP parser corpus (STYLE §10), in the style of gunicorn's
//! `tests/requests/{valid,invalid}`.
//!
//! Each `tests/fixtures/requests/*/NNN.http` holds raw bytes as a client sends
//! them (CRLFs kept by `.gitattributes`). The test replays each file through
//! `ladder::http` the way a server does: `parse_request` on a growing buffer,
//! then `body_framing`, then a `BodyDecoder`, then the next pipelined request
//! from the leftover bytes. It replays every file twice, all at once and one
//! byte at a time, since a rung reading from a socket can see either, and the
//! answers must agree. A compact summary of what happened is snapshotted per
//! file (`tests/snapshots/http_corpus__*.snap`); a reviewer checks it against
//! RFC 9112.

use std::fmt::Write;
use std::fs;

use ladder::http::{BodyDecoder, Limits, Parsed, parse_request};

/// Replay `input`, offering the parser `step` more bytes at a time, and say
/// what happened to each request in it, up to the first rejection.
fn replay(input: &[u8], step: usize) -> String {
    let limits = Limits::default();
    let mut out = String::new();
    let mut rest = input;
    while !rest.is_empty() {
        // The head: parse the bytes seen so far until it is complete.
        let mut seen = 0usize;
        let (request, consumed) = loop {
            seen = seen.saturating_add(step).min(rest.len());
            match parse_request(&rest[..seen], &limits) {
                Ok(Parsed::Complete { request, consumed }) => break (request, consumed),
                Ok(Parsed::Partial) if seen < rest.len() => {}
                Ok(Parsed::Partial) => {
                    let _ = writeln!(out, "incomplete head: {} bytes, more wanted", rest.len());
                    return out;
                }
                Err(rejection) => {
                    let _ = writeln!(out, "rejected: {rejection}");
                    return out;
                }
            }
        };
        rest = &rest[consumed..];
        let _ = writeln!(out, "{} ({consumed} bytes of head)", request.request_line());
        for header in &request.headers {
            let _ = writeln!(out, "  {}: {}", header.name, header.value.escape_ascii());
        }
        let framing = match request.body_framing(&limits) {
            Ok(framing) => framing,
            Err(rejection) => {
                let _ = writeln!(out, "rejected: {rejection}");
                return out;
            }
        };
        // The body: feed the decoder what is left, `step` bytes at a time.
        let mut decoder = BodyDecoder::new(framing, &limits);
        let mut body = Vec::new();
        let mut used = 0usize;
        while !decoder.is_done() && used < rest.len() {
            let piece = &rest[used..used.saturating_add(step).min(rest.len())];
            match decoder.feed(piece, &mut body) {
                Ok(n) => used += n,
                Err(rejection) => {
                    let _ = writeln!(out, "body {framing:?}, rejected: {rejection}");
                    return out;
                }
            }
        }
        if !decoder.is_done() {
            let _ = writeln!(out, "body {framing:?}: incomplete after {used} bytes");
            return out;
        }
        rest = &rest[used..];
        let _ = writeln!(
            out,
            "body {framing:?}: \"{}\" ({} bytes decoded from {used})",
            body.escape_ascii(),
            body.len()
        );
        let _ = writeln!(out, "leftover: {} bytes", rest.len());
    }
    out
}

/// Every corpus file gets the same answer whole and byte by byte; files in
/// `valid/` are accepted completely, files in `invalid/` are rejected; and
/// the answer is the reviewed snapshot.
#[test]
fn corpus() {
    insta::glob!("fixtures/requests/*/*.http", |path| {
        let input = fs::read(path).expect("read the fixture");
        let whole = replay(&input, usize::MAX);
        assert_eq!(replay(&input, 1), whole, "{path:?}: byte by byte differs");
        if path.parent().is_some_and(|dir| dir.ends_with("valid")) {
            let ok = !whole.contains("rejected") && !whole.contains("incomplete");
            assert!(ok, "{path:?} should be accepted:\n{whole}");
        } else {
            assert!(
                whole.contains("rejected: "),
                "{path:?} should be refused:\n{whole}"
            );
        }
        insta::assert_snapshot!(whole);
    });
}

/// The limits, whose fixtures would be unreadably large, built here instead.
#[test]
fn limits() {
    let long_line = [b"GET /".as_slice(), &[b'a'; 8200], b" HTTP/1.1\r\n\r\n"].concat();
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let long_chunk_line = format!("{chunked}5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(5000));
    let too_much_chunked = format!("{chunked}1000000\r\n");
    let table: [(&[u8], &str); 4] = [
        (
            &long_line,
            "rejected: 414 URI Too Long: the request line is too long",
        ),
        (
            big_head.as_bytes(),
            "rejected: 431 Request Header Fields Too Large: the request headers are too large",
        ),
        (
            long_chunk_line.as_bytes(),
            "body Chunked, rejected: 400 Bad Request: a chunk line is too long",
        ),
        (
            too_much_chunked.as_bytes(),
            "body Chunked, rejected: 413 Content Too Large: the request body is too large",
        ),
    ];
    for (input, want) in table {
        let whole = replay(input, usize::MAX);
        assert_eq!(replay(input, 997), whole, "in pieces differs for {want}");
        assert_eq!(whole.lines().last(), Some(want));
    }
    // The 414 boundary byte by byte: refused as soon as the line is too long,
    // without waiting for its end.
    assert_eq!(replay(&long_line[..8200], 1).trim_end(), table[0].1);
}
