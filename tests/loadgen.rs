//! `loadgen` against tiny in-test servers (std only): it counts what it
//! really got, names the errors, and opens the idle and slow connections it
//! promises, as the server side sees them. No assertion depends on speed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

/// How a test server treats each connection.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answer every request head with a small 200, keep-alive.
    Answer,
    /// Read one request head, then close without a word.
    CloseEarly,
    /// Answer nothing; report every byte received once the client leaves.
    Observe,
    /// Like `Answer`, but hold the answer to the 5th request for a second.
    StallOnce,
    /// Answer with a body of `BIG` bytes, written from a thread of its own
    /// so the server notices when a client stops reading.
    Big,
}

/// The body size of `Behaviour::Big`: far more than a slow reader takes.
const BIG: usize = 256 * 1024;

struct TestServer {
    url: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    /// For `Observe`: the bytes each connection sent, when it closes.
    received: mpsc::Receiver<Vec<u8>>,
}

fn server(behaviour: Behaviour) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (tx, received) = mpsc::channel();
    let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
    // The threads end with the test process; every read has a timeout.
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let (r, tx) = (Arc::clone(&r), tx.clone());
            thread::spawn(move || serve(stream, behaviour, &r, &tx));
        }
    });
    TestServer {
        url,
        connections,
        requests,
        received,
    }
}

fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    requests: &AtomicUsize,
    tx: &mpsc::Sender<Vec<u8>>,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen.extend_from_slice(&chunk[..n]);
        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            seen.drain(..end + 4);
            requests.fetch_add(1, Ordering::SeqCst);
            match behaviour {
                Behaviour::Answer => {
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
                    if stream.write_all(answer).is_err() {
                        return;
                    }
                }
                Behaviour::StallOnce => {
                    if requests.load(Ordering::SeqCst) == 5 {
                        thread::sleep(Duration::from_secs(1));
                    }
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
                    if stream.write_all(answer).is_err() {
                        return;
                    }
                }
                Behaviour::Big => {
                    let mut answer =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n").into_bytes();
                    answer.resize(answer.len() + BIG, b'x');
                    let mut out = stream.try_clone().unwrap();
                    thread::spawn(move || out.write_all(&answer));
                }
                Behaviour::CloseEarly => return,
                Behaviour::Observe => {}
            }
        }
    }
    let _ = tx.send(seen);
}

fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .unwrap()
}

/// Run loadgen with `--json` and return its one line of JSON.
fn loadgen_json(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--json");
    let output = loadgen(&all);
    assert!(
        output.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json = String::from_utf8(output.stdout).unwrap();
    assert!(
        json.trim().starts_with('{') && json.trim().ends_with('}'),
        "{json}"
    );
    json
}

/// The number after `"key":` (the first one, searching from `within`).
fn number(json: &str, within: &str, key: &str) -> u64 {
    let from = json
        .find(within)
        .unwrap_or_else(|| panic!("no {within} in {json}"));
    let json = &json[from..];
    let at = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + key.len()
        + 3;
    let digits: String = json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

#[test]
fn keep_alive_requests_are_counted_as_the_server_saw_them() {
    let server = server(Behaviour::Answer);
    let json = loadgen_json(&["-c", "2", "-d", "1s", &server.url]);
    for key in [
        "\"requests\":",
        "\"requests_per_second\":",
        "\"latency_ms\":{\"p50\":",
        "\"p90\":",
        "\"p99\":",
        "\"max\":",
        "\"statuses\":",
        "\"errors\":{\"total\":",
        "\"slow\":",
        "\"idle\":",
    ] {
        assert!(json.contains(key), "{key} missing in {json}");
    }
    let got = number(&json, "{", "requests");
    let served = server.requests.load(Ordering::SeqCst) as u64;
    assert!(got >= 1, "{json}");
    // Every counted request was served; at most one per connection was
    // still in flight when the run ended.
    assert!(
        got <= served && served <= got + 2,
        "{got} counted, {served} served"
    );
    assert_eq!(number(&json, "\"statuses\"", "200"), got);
    assert_eq!(number(&json, "\"errors\"", "total"), 0, "{json}");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn a_new_connection_per_request_opens_one_per_request() {
    let server = server(Behaviour::Answer);
    let json = loadgen_json(&[
        "-c",
        "1",
        "-d",
        "1s",
        "--new-connection-per-request",
        &server.url,
    ]);
    let got = number(&json, "{", "requests") as usize;
    assert!(got >= 1, "{json}");
    assert!(server.connections.load(Ordering::SeqCst) >= got);
    assert!(json.contains("\"keep_alive\":false"), "{json}");
}

#[test]
fn a_server_that_closes_early_counts_as_closed_errors() {
    let server = server(Behaviour::CloseEarly);
    let json = loadgen_json(&["-c", "1", "-d", "1s", &server.url]);
    assert_eq!(number(&json, "{", "requests"), 0, "{json}");
    let closed = number(&json, "\"errors\"", "closed");
    assert!(closed >= 1, "{json}");
    assert_eq!(number(&json, "\"errors\"", "total"), closed, "{json}");
}

#[test]
fn nobody_listening_counts_as_refused() {
    let (_held, nowhere) = ladder_harness::refusing_port();
    let port = nowhere.port();
    let json = loadgen_json(&[
        "-c",
        "1",
        "-d",
        "500ms",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert!(number(&json, "\"errors\"", "refused") >= 1, "{json}");
}

#[test]
fn idle_and_slow_clients_connect_and_never_finish_a_request() {
    let server = server(Behaviour::Observe);
    let json = loadgen_json(&[
        "-c",
        "0",
        "--idle",
        "3",
        "--slow",
        "2",
        "--slow-interval",
        "100ms",
        "-d",
        "1500ms",
        &server.url,
    ]);
    assert_eq!(number(&json, "\"slow\"", "clients"), 2);
    assert_eq!(number(&json, "\"idle\"", "clients"), 3);
    // The server's side: five connections, each reported when loadgen leaves.
    let mut sent: Vec<Vec<u8>> = (0..5)
        .map(|_| {
            server
                .received
                .recv_timeout(Duration::from_secs(30))
                .unwrap()
        })
        .collect();
    sent.sort_by_key(Vec::len);
    assert_eq!(server.connections.load(Ordering::SeqCst), 5);
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        0,
        "a head was finished"
    );
    assert!(
        sent[..3].iter().all(Vec::is_empty),
        "idle clients sent {sent:?}"
    );
    let slow_head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: x\r\n";
    for bytes in &sent[3..] {
        assert!(!bytes.is_empty(), "a slow client sent nothing");
        let n = bytes.len().min(slow_head.len());
        assert_eq!(
            &bytes[..n],
            &slow_head[..n],
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// The numbers of `"counts":[…]` in loadgen's JSON.
fn timeline_counts(json: &str) -> Vec<u64> {
    let at = json
        .find("\"counts\":[")
        .unwrap_or_else(|| panic!("no counts in {json}"));
    let rest = &json[at + "\"counts\":[".len()..];
    let list = &rest[..rest.find(']').unwrap()];
    list.split(',').map(|n| n.parse().unwrap()).collect()
}

/// `--timeline 100ms` counts the completed requests per 100 ms, one bucket
/// for each interval of the run; a server that holds its answer for a
/// second shows as a run of zeros (the demo of lesson 05's `/slow`).
#[test]
fn the_timeline_shows_a_stall_as_a_run_of_zeros() {
    let server = server(Behaviour::StallOnce);
    let json = loadgen_json(&["-c", "1", "-d", "2s", "--timeline", "100ms", &server.url]);
    assert!(
        json.contains("\"timeline\":{\"interval_ms\":100.000,"),
        "{json}"
    );
    let counts = timeline_counts(&json);
    assert_eq!(counts.len(), 20, "2 s in 100 ms buckets: {json}");
    assert_eq!(counts.iter().sum::<u64>(), number(&json, "{", "requests"));
    // One client, and its 5th answer held for 1 s: whatever the machine's
    // speed, at least 9 whole intervals in a row complete nothing.
    let longest_gap = counts
        .split(|&n| n > 0)
        .map(<[u64]>::len)
        .max()
        .unwrap_or(0);
    assert!(longest_gap >= 9, "no stall visible in {counts:?}");

    // As text: a header, then rows of ten intervals.
    let output = loadgen(&["-c", "1", "-d", "300ms", "--timeline", "100ms", &server.url]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("timeline:  requests completed per 100ms (a row is 1s)\n      0.0s "),
        "{text}"
    );
}

#[test]
fn a_remote_target_needs_allow_remote() {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737); loadgen refuses before connecting.
    let output = loadgen(&["-d", "1s", "http://192.0.2.1:80/"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-remote"), "{stderr}");
}

#[test]
fn durations_are_bounded() {
    let output = loadgen(&["-d", "11m", "http://127.0.0.1:9/"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("10m"));
}

/// Slow readers send a whole request, then read 1 KiB per --slow-interval:
/// after a second at 100 ms, about 10 KiB of a 256 KiB answer, and they are
/// still connected. (A server sees them as clients that do not read.)
#[test]
fn slow_readers_read_a_little_at_a_time_and_hold_on() {
    let server = server(Behaviour::Big);
    let json = loadgen_json(&[
        "-c",
        "0",
        "--slow-readers",
        "2",
        "--slow-interval",
        "100ms",
        "-d",
        "1s",
        &server.url,
    ]);
    assert_eq!(number(&json, "\"slow_readers\"", "clients"), 2);
    assert_eq!(number(&json, "\"slow_readers\"", "open"), 2, "{json}");
    assert_eq!(number(&json, "\"slow_readers\"", "responses"), 0, "{json}");
    let bytes = number(&json, "\"slow_readers\"", "bytes");
    // At least one read each; at most one per interval (plus one) each.
    assert!(
        (2 * 1024..=2 * 12 * 1024).contains(&bytes),
        "{bytes} bytes read: {json}"
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}
