//! What every integration test shares: the harness crate `ladder-harness`
//! (start a rung on port 0, connect with timeouts, stop it and everything it
//! forked), which the `grade` tool uses too, plus one way to read an HTTP
//! response: `ladder::http::read_response`, the library's own client side.

use std::io;
use std::net::TcpStream;

pub use ladder_harness::*;

/// One HTTP response read off a connection, in the shape the tests assert on.
#[derive(Debug, Clone)]
#[allow(dead_code)] // lesson 01's tests, which include this module too, speak no HTTP
pub struct Response {
    pub status: u16,
    /// The head exactly as received, status line to blank line.
    pub head: String,
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

#[allow(dead_code)] // as above: not every test file reads HTTP
impl Response {
    /// First value of a header, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Read exactly one response, framed by Content-Length, chunked, or close.
/// `head_only` is for HEAD requests, whose responses announce a body they
/// do not carry. Bytes after the response stay in `leftover` for the next call.
#[allow(dead_code)] // as above: not every test file reads HTTP
pub fn read_response(
    stream: &mut TcpStream,
    leftover: &mut Vec<u8>,
    head_only: bool,
) -> io::Result<Response> {
    let read = ladder::http::read_response(&mut ResetAsEof::new(stream), leftover, head_only)?;
    let headers = read
        .head
        .headers
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                String::from_utf8_lossy(&h.value).into_owned(),
            )
        })
        .collect();
    Ok(Response {
        status: read.head.status,
        head: String::from_utf8_lossy(&read.raw_head).into_owned(),
        headers,
        body: read.body,
    })
}
