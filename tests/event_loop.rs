//! `ladder::event_loop` from the side of a rung that answers later: rung 6
//! runs its app on other threads and hands each response back to the loop.
//!
//! Each test runs a loop on a thread of its own (port 0) with a handler
//! that passes requests to a worker thread, and talks to it over real
//! sockets. What they pin: an answer delivered later (bytes, a file),
//! other clients served meanwhile, a streamed body framed as chunks (or by
//! Content-Length, or by closing for HTTP/1.0), backpressure on the
//! producer, the producer told when the client leaves, an abandoned stream
//! cut short, and request bodies (100-continue, 413) given to the handler.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ladder::event_loop::{Answer, Client, Config, EventLoop, Handler, Remote, Ticket};
use ladder::http::{Body, Limits, Request, Response, ServerInfo, read_response};
use ladder::http_connection::Settings;
use ladder::readiness::Backend;
use ladder_harness::connect_small_window;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A request the handler passed on, for the worker to answer.
struct Job {
    path: String,
    body: Vec<u8>,
    ticket: Ticket,
}

/// Answers `/now` itself; everything else goes to the worker, `Later`.
struct PassOn(Sender<Job>);

impl Handler for PassOn {
    fn handle(&mut self, request: &Request, body: Vec<u8>, client: Client) -> Answer {
        if request.path() == "/now" {
            return Answer::Now(Response::with_bytes(200, "text/plain", "now\n"));
        }
        let job = Job {
            path: request.target.as_str().to_string(),
            body,
            ticket: client.ticket,
        };
        let _ = self.0.send(job);
        Answer::Later
    }
}

/// A loop on its own thread; stopped and joined when dropped.
struct Running {
    addr: SocketAddr,
    remote: Remote,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.remote.stop();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap().unwrap();
        }
    }
}

/// Start a loop whose jobs each run `work` on a thread of their own, so a
/// stream that blocks holds up nobody.
fn start<F>(backend: Backend, max_body: u64, work: F) -> Running
where
    F: Fn(Job, &Remote) + Send + Sync + 'static,
{
    start_with(backend, max_body, None, work)
}

/// `start`, with a time limit on answers that come later.
fn start_with<F>(
    backend: Backend,
    max_body: u64,
    answer_timeout: Option<Duration>,
    work: F,
) -> Running
where
    F: Fn(Job, &Remote) + Send + Sync + 'static,
{
    ladder::log::set_quiet(true);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let limits = Limits {
        max_body,
        ..Limits::default()
    };
    let config = Config {
        backend,
        max_connections: 100,
        http: Settings {
            limits,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            server: ServerInfo::PLAIN,
            answer_timeout,
            log_later: true,
        },
    };
    let mut server = EventLoop::new(listener, config).unwrap();
    let addr = server.local_addr().unwrap();
    let remote = server.remote();
    let (jobs, inbox) = mpsc::channel::<Job>();
    let work = Arc::new(work);
    let worker_remote = remote.clone();
    thread::spawn(move || {
        for job in inbox {
            let (work, remote) = (Arc::clone(&work), worker_remote.clone());
            thread::spawn(move || work(job, &remote));
        }
    });
    let thread = thread::spawn(move || server.run(&mut PassOn(jobs)));
    Running {
        addr,
        remote,
        thread: Some(thread),
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// A response as the client saw it.
struct Got {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Read one response with the library's client side
/// (`ladder::http::read_response`); bytes after it stay in `leftover`.
fn read_one(stream: &mut TcpStream, leftover: &mut Vec<u8>, head_request: bool) -> io::Result<Got> {
    let read = read_response(stream, leftover, head_request)?;
    Ok(Got {
        status: read.head.status,
        head: String::from_utf8_lossy(&read.raw_head).into_owned(),
        body: read.body,
    })
}

/// The pieces of a counting stream: `pieces` of `size` bytes each.
fn counting(pieces: usize, size: usize) -> impl Iterator<Item = Vec<u8>> {
    (0..pieces).map(move |i| vec![b'a' + (i % 26) as u8; size])
}

/// Poll `done` until it holds or IO_TIMEOUT passes.
fn eventually(done: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < IO_TIMEOUT {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

/// An answer that comes from another thread later, once another client
/// has been served meanwhile; the connection then carries its next request.
#[test]
fn an_answer_delivered_later_while_others_are_served() {
    let (go, wait) = mpsc::channel::<()>();
    let wait = Mutex::new(wait);
    let server = start(Backend::Mio, 1024, move |job, remote| {
        // The worker answers only once the test says the other client is done.
        wait.lock().unwrap().recv().unwrap();
        let text = format!("later: {}\n", job.path);
        remote.respond(job.ticket, Response::with_bytes(200, "text/plain", text));
    });
    let mut slow = connect(server.addr);
    // Two requests in one write: the second waits for the first's answer.
    slow.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /now HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut other = connect(server.addr);
    other
        .write_all(b"GET /now HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_one(&mut other, &mut Vec::new(), false).unwrap();
    assert_eq!(got.body, b"now\n", "another client waited for the worker");
    go.send(()).unwrap();
    let mut leftover = Vec::new();
    let first = read_one(&mut slow, &mut leftover, false).unwrap();
    assert_eq!(first.body, b"later: /a\n", "{}", first.head);
    assert!(
        first.head.contains("Connection: keep-alive"),
        "{}",
        first.head
    );
    let second = read_one(&mut slow, &mut leftover, false).unwrap();
    assert_eq!(second.body, b"now\n");
}

/// A file answered later is sent as the socket takes it (sendfile(2), a
/// piece per writable edge), on raw epoll too, to a reader with a small
/// receive window.
#[test]
fn a_file_delivered_later() {
    let path = std::env::temp_dir().join(format!("event-loop-file-{}", std::process::id()));
    let content: Vec<u8> = (0..3_000_000).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let file_path = path.clone();
    let server = start(Backend::RawEpoll, 1024, move |job, remote| {
        let file = std::fs::File::open(&file_path).unwrap();
        let len = file.metadata().unwrap().len();
        let response = Response::new(200).body(Body::File { file, len });
        remote.respond(job.ticket, response);
    });
    let mut stream = connect_small_window(server.addr);
    stream
        .write_all(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\nGET /now HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut leftover = Vec::new();
    let got = read_one(&mut stream, &mut leftover, false).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        got.head.contains("Content-Length: 3000000\r\n"),
        "{}",
        got.head
    );
    assert!(got.body == content, "the file arrived damaged");
    // The pipelined request behind it is answered after the whole file.
    let next = read_one(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(next.body, b"now\n");
}

/// A file shorter than the length its response announced (it shrank
/// after the head was made): the client gets what there is, then the
/// connection closes, so it cannot take the short body for a whole one.
#[test]
fn a_file_that_shrank_closes_the_connection() {
    let path = std::env::temp_dir().join(format!("event-loop-shrank-{}", std::process::id()));
    let content: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let file_path = path.clone();
    let server = start(Backend::Mio, 1024, move |job, remote| {
        let file = std::fs::File::open(&file_path).unwrap();
        let response = Response::new(200).body(Body::File { file, len: 150_000 });
        remote.respond(job.ticket, response);
    });
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let _ = std::fs::remove_file(&path);
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&all[..end]);
    assert!(head.contains("Content-Length: 150000\r\n"), "{head}");
    assert!(
        all[end..] == content[..],
        "the file's bytes arrived damaged"
    );
}

/// A body of unknown length from another thread goes out chunked, and its
/// producer cannot run ahead of a client that does not read: `send` blocks.
#[test]
fn a_streamed_body_is_chunked_and_holds_its_producer_back() {
    const PIECES: usize = 2000;
    const SIZE: usize = 16 * 1024; // 32 MB in all
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let server = start(Backend::Mio, 1024, move |job, remote| {
        let head = Response::new(200).body(Body::Stream { len: None });
        let body = remote.stream(job.ticket, head);
        for piece in counting(PIECES, SIZE) {
            body.send(piece).unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
        }
        body.finish().unwrap();
    });
    let mut stream = connect_small_window(server.addr);
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Read nothing for a while: the producer must stall far short of the end.
    thread::sleep(Duration::from_millis(500));
    let stalled_at = sent.load(Ordering::SeqCst);
    assert!(
        stalled_at < PIECES / 4,
        "the producer ran ahead of the client: {stalled_at} of {PIECES} pieces taken"
    );
    let got = read_one(&mut stream, &mut Vec::new(), false).unwrap();
    assert!(
        got.head.contains("Transfer-Encoding: chunked\r\n"),
        "{}",
        got.head
    );
    assert_eq!(got.body.len(), PIECES * SIZE);
    assert!(
        got.body.chunks(SIZE).eq(counting(PIECES, SIZE)),
        "pieces out of order"
    );
    assert_eq!(sent.load(Ordering::SeqCst), PIECES);
}

/// A stream with a Content-Length keeps it; for HTTP/1.0 a stream without
/// one is delimited by closing the connection.
#[test]
fn a_streamed_body_with_a_length_or_for_http10() {
    let server = start(Backend::Mio, 1024, |job, remote| {
        let len = (job.path == "/length").then_some(10);
        let body = remote.stream(job.ticket, Response::new(200).body(Body::Stream { len }));
        body.send(b"01234".to_vec()).unwrap();
        body.send(b"56789".to_vec()).unwrap();
        body.finish().unwrap();
    });
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /length HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_one(&mut stream, &mut Vec::new(), false).unwrap();
    assert!(got.head.contains("Content-Length: 10\r\n"), "{}", got.head);
    assert_eq!(got.body, b"0123456789");
    let mut old = connect(server.addr);
    old.write_all(b"GET /close HTTP/1.0\r\n\r\n").unwrap();
    let got = read_one(&mut old, &mut Vec::new(), false).unwrap();
    assert!(got.head.contains("Connection: close\r\n"), "{}", got.head);
    assert!(!got.head.contains("chunked"), "{}", got.head);
    assert_eq!(got.body, b"0123456789");
}

/// The client leaves in the middle of an endless stream: the producer's
/// next `send` fails, so it can stop (and a WSGI app be closed).
#[test]
fn a_client_that_leaves_stops_the_producer() {
    let stopped = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&stopped);
    let server = start(Backend::RawEpoll, 1024, move |job, remote| {
        let head = Response::new(200).body(Body::Stream { len: None });
        let body = remote.stream(job.ticket, head);
        let mut n = 0u64;
        while body.send(vec![b'x'; 4096]).is_ok() {
            n += 1;
        }
        *seen.lock().unwrap() = Some(n);
    });
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut start_of_body = [0u8; 64 * 1024];
    stream.read_exact(&mut start_of_body).unwrap();
    drop(stream);
    assert!(
        eventually(|| stopped.lock().unwrap().is_some()),
        "the producer never heard that the client left"
    );
}

/// A producer that drops its sender without `finish` (an app that failed
/// mid-stream): the body is cut short, never ended as if complete.
#[test]
fn an_abandoned_stream_closes_the_connection() {
    let server = start(Backend::Mio, 1024, |job, remote| {
        let head = Response::new(200).body(Body::Stream { len: None });
        let body = remote.stream(job.ticket, head);
        body.send(b"partial".to_vec()).unwrap();
        drop(body);
    });
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /fails HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let error = read_one(&mut stream, &mut Vec::new(), false)
        .err()
        .expect("a body cut short must not read as complete");
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
}

/// A handler that does not answer within `answer_timeout` (rung 6's
/// `--timeout`): its client gets a 504 and the connection closes. The
/// answer that comes afterwards finds no request waiting: it is dropped,
/// and a producer streaming it is told, as if the client had left.
#[test]
fn a_late_answer_gets_a_504_and_is_dropped() {
    let (answer, answer_now) = mpsc::channel::<()>();
    let answer_now = Mutex::new(answer_now);
    let (report, reported) = mpsc::channel::<u64>();
    let report = Mutex::new(report);
    // Long enough that /quick, two thread hops away, never misses it on a
    // busy machine; the slow answer waits for the test, so it always does.
    let limit = Some(Duration::from_secs(2));
    let server = start_with(Backend::Mio, 1024, limit, move |job, remote| {
        if job.path == "/quick" {
            let response = Response::with_bytes(200, "text/plain", "quick\n");
            return remote.respond(job.ticket, response);
        }
        // Answer only once the test has seen the 504.
        answer_now.lock().unwrap().recv().unwrap();
        let body = remote.stream(
            job.ticket,
            Response::new(200).body(Body::Stream { len: None }),
        );
        let mut sent = 0u64;
        while sent < 1000 && body.send(b"too late".to_vec()).is_ok() {
            sent += 1;
        }
        report.lock().unwrap().send(sent).unwrap();
    });
    // In time: answered, and the connection stays open.
    let mut stream = connect(server.addr);
    stream
        .write_all(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_one(&mut stream, &mut Vec::new(), false).unwrap();
    assert_eq!((got.status, got.body.as_slice()), (200, &b"quick\n"[..]));
    // Late: a 504 from the loop, then the end of the connection.
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut leftover = Vec::new();
    let got = read_one(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(got.status, 504, "{}", got.head);
    assert!(got.head.contains("Connection: close\r\n"), "{}", got.head);
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(
        leftover.is_empty() && rest.is_empty(),
        "bytes after the 504"
    );
    answer.send(()).unwrap();
    let sent = reported.recv_timeout(IO_TIMEOUT).unwrap();
    assert!(
        sent < 1000,
        "the late producer was never told that nobody reads its answer"
    );
}

/// The handler gets the whole body, sent after `100 Continue` when the
/// client asks for it; a body over the limit is refused with 413.
#[test]
fn request_bodies_reach_the_handler() {
    let server = start(Backend::Mio, 1024, |job, remote| {
        let text = format!(
            "{} bytes: {}",
            job.body.len(),
            String::from_utf8_lossy(&job.body)
        );
        remote.respond(job.ticket, Response::with_bytes(200, "text/plain", text));
    });
    let mut stream = connect(server.addr);
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let mut leftover = Vec::new();
    let interim = read_one(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(interim.status, 100, "{}", interim.head);
    stream.write_all(b"hello").unwrap();
    let got = read_one(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(got.body, b"5 bytes: hello");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        .unwrap();
    let got = read_one(&mut stream, &mut leftover, false).unwrap();
    assert_eq!(got.body, b"5 bytes: abcde");
    let mut big = connect(server.addr);
    big.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
        .unwrap();
    let got = read_one(&mut big, &mut Vec::new(), false).unwrap();
    assert_eq!(got.status, 413, "{}", got.head);
    assert!(got.head.contains("Connection: close\r\n"), "{}", got.head);
}
