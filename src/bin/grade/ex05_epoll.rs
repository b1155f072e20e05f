//! Exercise 05: one thread, many sockets (`lesson05_epoll`).
//!
//! The stages check what readiness I/O must get right: draining until
//! WouldBlock (a request bigger than one read, many clients at once),
//! writing what fits and waiting for WRITABLE (a slow reader), keeping
//! requests in order (keep-alive, pipelining), sleeping when there is
//! nothing to do (the server's CPU time over an idle second), and a body
//! produced on another thread: streamed, held back by a slow client, and
//! stopped when the client leaves.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use crate::checks;
use crate::fixtures;
use crate::runner::{Ctx, Exercise, Expect, Failure, Stage};
use ladder_harness::IO_TIMEOUT;

pub const EXERCISE: Exercise = Exercise {
    name: "ex05_epoll",
    lesson: "lesson05_epoll",
    port: 8005,
    args,
    holes: &["routes", "count"],
    listed: true,
    stages: &[
        Stage {
            name: "hello_keep_alive",
            title: "GET /hello three times on one HTTP/1.1 connection: three answers",
            hint: "lessons/05-epoll.md, \"Answers that come later\": `handle` answers \
                   /hello with Answer::Now(Response::with_bytes(200, \"text/plain\", HELLO))",
            hole: 1,
            run: hello_keep_alive,
        },
        Stage {
            name: "http10_closes",
            title: "an HTTP/1.0 request is answered, then the connection is closed",
            hint: "answer /hello with Answer::Now(Response::with_bytes(..)); \
                   `Response::plan` closes an HTTP/1.0 connection by itself",
            hole: 1,
            run: http10_closes,
        },
        Stage {
            name: "pipelining_in_order",
            title: "three requests in one write get three answers, in order",
            hint: "files are `file(&self.root, request)`, answered at once; every path but \
                   /hello, /slow and /count goes there",
            hole: 1,
            run: pipelining_in_order,
        },
        Stage {
            name: "dribbled_request",
            title: "a request sent one byte at a time is answered",
            hint: "the library keeps half a request until the rest arrives; if this fails, \
                   look for a panic in the server's stderr",
            hole: 1,
            run: dribbled_request,
        },
        Stage {
            name: "drains_until_wouldblock",
            title: "a request with a 1 MB body, then another: both answered",
            hint: "a request body is read by the library and handed to `handle`; answer \
                   /hello whatever the body",
            hole: 1,
            run: drains_until_wouldblock,
        },
        Stage {
            name: "slow_reader",
            title: "an 8 MiB file to a client that reads slowly, while others are answered",
            hint: "a file goes out as the client reads it: answer with `file(..)` (Body::File), \
                   never read the whole file into memory on the loop's thread",
            hole: 1,
            run: slow_reader,
        },
        Stage {
            name: "many_clients",
            title: "100 clients are answered while another holds half a request",
            hint: "`handle` runs on the loop's only thread: never wait there (no sleep, no \
                   blocking call); slow work goes to a thread and answers Later",
            hole: 1,
            run: many_clients,
        },
        Stage {
            name: "idle_without_spinning",
            title: "with one idle keep-alive client, the server uses little CPU for a second",
            hint: "nothing may run while nobody asks: no thread of yours may spin, and the \
                   loop only waits in poll/epoll_wait",
            hole: 1,
            run: idle_without_spinning,
        },
        Stage {
            name: "bad_request_400",
            title: "garbage gets 400 with Connection: close, and the server goes on",
            hint: "the library answers a bad head with 400 and Connection: close; if this \
                   fails, a hole panicked first (see the server's stderr)",
            hole: 1,
            run: bad_request_400,
        },
        Stage {
            name: "sigterm_exits_0",
            title: "SIGTERM ends it with exit status 0",
            hint: "`run` wires Ctrl-C and SIGTERM to `remote.stop()`, which makes the loop \
                   return Ok(()); main then returns SUCCESS",
            hole: 1,
            run: sigterm_exits_0,
        },
        Stage {
            name: "count_streamed",
            title: "GET /count?to=20000: the numbers 1 to 20000, one a line, chunked",
            hint: "lessons/05-epoll.md, \"Answers that come later\": `handle` starts `count` \
                   and answers Answer::Later; `count` streams through `remote.stream` and \
                   ends with `finish`",
            hole: 2,
            run: count_streamed,
        },
        Stage {
            name: "count_stops",
            title: "an endless /count to a slow client: memory stays small, and the \
                    producer stops once the client leaves",
            hint: "`BodySender::send` blocks while the client is behind, and fails once it \
                   has gone: on an error, return from the thread at once",
            hole: 2,
            run: count_stops,
        },
    ],
};

const HELLO: &[u8] = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";

/// The served directory, `exercises/fixtures/ex05` (`a.txt`, and `big.bin`
/// once a stage made it).
fn dir() -> PathBuf {
    fixtures::repo().join("exercises/fixtures/ex05")
}

/// Every stage serves the shipped directory.
fn args() -> Vec<String> {
    vec!["-d".into(), dir().display().to_string()]
}

/// Send /hello on `stream` and require the exact body back.
fn hello(ctx: &mut Ctx, stream: &mut TcpStream, leftover: &mut Vec<u8>) -> Result<(), Failure> {
    ctx.send(stream, HELLO)?;
    let response = ctx.recv_response(stream, leftover, false)?;
    ctx.ensure(
        response.head.status == 200 && response.body == b"Hello, World!\n",
        "200 OK with the body \"Hello, World!\\n\"",
    )
}

fn hello_keep_alive(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let url = ctx.url("/hello");
    ctx.reproduce_noting(
        format!("curl -v {url} {url} {url}"),
        "three answers, the 2nd and 3rd on the connection of the 1st (curl says Re-using)",
        Expect::Shows("Re-using existing connection"),
    );
    let mut stream = ctx.connect()?;
    let mut leftover = Vec::new();
    for _ in 0..3 {
        hello(ctx, &mut stream, &mut leftover)?;
    }
    Ok(())
}

fn http10_closes(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let request = b"GET /hello HTTP/1.0\r\n\r\n";
    ctx.reproduce_noting(
        format!(
            "printf '{}' | timeout 3 nc 127.0.0.1 {} && echo 'closed by the server'",
            crate::runner::printf_escape(request),
            ctx.port_hint()
        ),
        "one answer; then the server closes (nc without -q waits for that)",
        Expect::Shows("closed by the server"),
    );
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, request)?;
    let bytes = ctx.recv_to_close(&mut stream)?;
    ctx.ensure(
        bytes.starts_with(b"HTTP/1.1 200 OK\r\n") && bytes.ends_with(b"\r\n\r\nHello, World!\n"),
        "one 200 answer with the body \"Hello, World!\\n\", then the connection closed",
    )
}

fn pipelining_in_order(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let requests: &[u8] = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n\
        GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n\
        GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ctx.reproduce_noting(
        ctx.nc(requests),
        "three answers in order: Hello, World!, file a, Hello, World!",
        Expect::Shows("file a"),
    );
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, requests)?;
    let mut leftover = Vec::new();
    let bodies: [&[u8]; 3] = [b"Hello, World!\n", b"file a\n", b"Hello, World!\n"];
    for (i, body) in bodies.iter().enumerate() {
        let response = ctx.recv_response(&mut stream, &mut leftover, false)?;
        ctx.ensure(
            response.head.status == 200 && response.body == *body,
            format!(
                "answer {} to be 200 with {:?}",
                i + 1,
                String::from_utf8_lossy(body)
            ),
        )?;
    }
    Ok(())
}

fn dribbled_request(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    ctx.reproduce_noting(
        format!(
            "(printf 'GET /hel'; sleep 1; printf 'lo HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n') | nc -q 2 127.0.0.1 {}",
            ctx.port_hint()
        ),
        "the request comes in two pieces a second apart, and is answered once whole",
        Expect::Status(200),
    );
    let mut stream = ctx.connect()?;
    for byte in HELLO {
        ctx.send(&mut stream, &[*byte])?;
        thread::sleep(Duration::from_millis(5));
    }
    let response = ctx.recv_response(&mut stream, &mut Vec::new(), false)?;
    ctx.ensure(
        response.head.status == 200,
        "200 OK once the last byte arrived",
    )
}

fn drains_until_wouldblock(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    ctx.reproduce_noting(
        format!(
            "echo \"answers: $( (printf 'GET /hello HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 1000000\\r\\n\\r\\n'; head -c 1000000 /dev/zero; printf 'GET /hello HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n') | nc -q 2 127.0.0.1 {} | grep -c 'HTTP/1.1 200')\"",
            ctx.port_hint()
        ),
        "both requests answered, the one with a 1 MB body and the one after it",
        Expect::Shows("answers: 2"),
    );
    let mut request = b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".to_vec();
    request.resize(request.len() + 1_000_000, b'x');
    request.extend_from_slice(HELLO);
    let mut stream = ctx.connect()?;
    // Another thread writes, so a server that stops reading cannot deadlock
    // the stage: the reads below then time out instead.
    let mut writer = stream.try_clone().map_err(|err| {
        ctx.fail("a second handle on the socket")
            .detail(err.to_string())
    })?;
    ctx.record_sent(&stream, &request[..100]);
    let sender = thread::spawn(move || std::io::Write::write_all(&mut writer, &request));
    let mut leftover = Vec::new();
    for _ in 0..2 {
        let response = ctx.recv_response(&mut stream, &mut leftover, false)?;
        ctx.ensure(response.head.status == 200, "200 OK for both requests")?;
    }
    let _ = sender.join();
    Ok(())
}

/// A client whose receive buffer is tiny, so the server's writes must block.
fn connect_small_window(ctx: &Ctx, addr: SocketAddr) -> Result<TcpStream, Failure> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, connect, setsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(v4) = addr else {
        return Err(ctx.fail("an IPv4 address"));
    };
    let made = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .and_then(|fd| {
        setsockopt(&fd, sockopt::RcvBuf, &4096)?;
        connect(fd.as_raw_fd(), &SockaddrIn::from(v4))?;
        Ok(fd)
    });
    let fd = made.map_err(|err| ctx.fail("a connection").detail(err.to_string()))?;
    let stream = TcpStream::from(fd);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    Ok(stream)
}

fn slow_reader(ctx: &mut Ctx) -> Result<(), Failure> {
    let size = 8 * 1024 * 1024;
    let file = dir().join("big.bin");
    fixtures::ensure_big(&file, size).map_err(|err| {
        ctx.fail(format!("to write {}", file.display()))
            .detail(err.to_string())
    })?;
    let big = fixtures::big_data(size);
    ctx.start(&[])?;
    let slow = ctx.curl("-s -m 10 --limit-rate 100K -o /dev/null", "/big.bin");
    let quick = ctx.curl("-v -m 2", "/hello");
    ctx.reproduce_noting(
        format!("{slow} & sleep 1; {quick}"),
        "a slow download of big.bin runs in the background; /hello is answered at once",
        Expect::Status(200),
    );
    let addr = ctx.server().addr;
    let mut slow = connect_small_window(ctx, addr)?;
    ctx.send(&mut slow, b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut first = vec![0u8; 1024];
    if let Err(err) = slow.read_exact(&mut first) {
        return Err(ctx.fail("the start of the file").detail(err.to_string()));
    }
    // The slow client now reads nothing for a while; others must not wait.
    thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        let mut other = ctx.connect()?;
        hello(ctx, &mut other, &mut Vec::new())
            .map_err(|f| f.expecting("/hello answered while a slow reader downloads a big file"))?;
    }
    ctx.clear_transcript();
    // Read without recording: 8 MiB in a failure report would bury it.
    let mut leftover = first;
    let response = ladder::http::read_response(&mut slow, &mut leftover, false)
        .map_err(|err| ctx.fail("the rest of the file").detail(err.to_string()))?;
    ctx.ensure(
        response.body == big,
        "the whole 8 MiB file, intact, once the slow client reads on",
    )
}

fn many_clients(ctx: &mut Ctx) -> Result<(), Failure> {
    fn half_a_request(ctx: &mut Ctx, stream: &mut TcpStream) -> Result<(), Failure> {
        ctx.send(stream, b"GET /hello HTTP/1.1\r\nHo")
    }
    fn answered(ctx: &mut Ctx, stream: &mut TcpStream) -> Result<(), Failure> {
        let response = ctx.recv_response(stream, &mut Vec::new(), false)?;
        ctx.ensure(response.head.status == 200, "200 OK")
    }
    ctx.start(&["--header-timeout", "60"])?;
    let port = ctx.port_hint();
    let quick = ctx.curl("-s -m 3", "/hello");
    ctx.reproduce_noting(
        format!(
            "{{ printf 'GET /hello HTTP/1.1\\r\\nHo'; sleep 5; }} | nc -q 0 127.0.0.1 {port} & sleep 0.5; echo \"answered: $(seq 20 | xargs -P 20 -I{{}} {quick} | grep -c Hello)\""
        ),
        "nc holds half a request; 20 clients at once must all be answered meanwhile",
        Expect::Shows("answered: 20"),
    );
    checks::serves_while_busy(
        ctx,
        half_a_request,
        100,
        HELLO,
        answered,
        Duration::from_secs(10),
    )
}

/// Nanoseconds the threads of `pid` have spent running or ready to run
/// (waiting for a CPU): the first two fields of each
/// /proc/PID/task/TID/schedstat. A spinning loop wants the CPU all the
/// time, so this grows by about a second per second however busy the
/// machine is; CPU time alone shrinks when others share the cores.
fn wanted_cpu_ns(ctx: &Ctx, pid: u32) -> Result<u64, Failure> {
    let fail = |err: std::io::Error| {
        ctx.fail("to read /proc/PID/task/TID/schedstat (Linux only)")
            .detail(err.to_string())
    };
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).map_err(fail)? {
        let path = task.map_err(fail)?.path().join("schedstat");
        // A thread that ended meanwhile has nothing to add.
        let Ok(stat) = fs::read_to_string(path) else {
            continue;
        };
        let fields = stat
            .split_whitespace()
            .take(2)
            .filter_map(|f| f.parse::<u64>().ok());
        total += fields.sum::<u64>();
    }
    Ok(total)
}

fn idle_without_spinning(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    ctx.reproduce_noting(
        format!(
            "pid={}; t() {{ awk '{{print $14+$15}}' /proc/$pid/stat; }}; a=$(t); sleep 1; echo \"CPU ticks in 1 s: $(( $(t) - a ))\"",
            ctx.pid_of_server()
        ),
        "the server's CPU time over an idle second, in 1/100 s: about 0; a spinning loop shows about 100",
        Expect::Shows("CPU ticks in 1 s: "),
    );
    let mut stream = ctx.connect()?;
    hello(ctx, &mut stream, &mut Vec::new())?;
    let pid = ctx.server().pid();
    let before = wanted_cpu_ns(ctx, pid)?;
    let started = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let wanted = wanted_cpu_ns(ctx, pid)? - before;
    // A sleeping loop wants about 0 of the second; a spinning one all of
    // it, running or waiting its turn. A sixth is far above the one and
    // far below the other, however many servers a CI run has going.
    let share = wanted as f64 / started.elapsed().as_nanos() as f64;
    ctx.ensure(
        share < 0.15,
        "well under a sixth of a CPU while nothing happens",
    )
    .map_err(|f| {
        f.detail(format!(
            "the server ran or waited to run {:.0}% of an idle second",
            share * 100.0
        ))
    })
}

fn bad_request_400(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let garbage = b"GARBAGE\r\n\r\n";
    ctx.reproduce(ctx.nc(garbage), Expect::Status(400));
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, garbage)?;
    let bytes = ctx.recv_to_close(&mut stream)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    ctx.ensure(
        text.starts_with("HTTP/1.1 400 ") && text.contains("Connection: close\r\n"),
        "400 Bad Request with Connection: close, then the close",
    )?;
    let mut stream = ctx.connect()?;
    hello(ctx, &mut stream, &mut Vec::new())
}

fn sigterm_exits_0(ctx: &mut Ctx) -> Result<(), Failure> {
    fn round_trip(ctx: &mut Ctx) -> Result<(), Failure> {
        let curl = ctx.curl("-v", "/hello");
        ctx.reproduce(curl, Expect::Status(200));
        let mut stream = ctx.connect()?;
        hello(ctx, &mut stream, &mut Vec::new())
    }
    checks::sigterm_exits_0(ctx, &[], round_trip)
}

/// The body `/count?to=N` must send.
fn numbers(to: u64) -> Vec<u8> {
    (1..=to)
        .map(|n| format!("{n}\n"))
        .collect::<String>()
        .into_bytes()
}

fn count_streamed(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    ctx.reproduce_noting(
        format!("{} | tail -2", ctx.curl("-v", "/count?to=20000")),
        "Transfer-Encoding: chunked, and the last lines 19999 and 20000",
        Expect::Shows("Transfer-Encoding: chunked"),
    );
    let mut stream = ctx.connect()?;
    ctx.send(
        &mut stream,
        b"GET /count?to=20000 HTTP/1.1\r\nHost: x\r\n\r\n",
    )?;
    let response = ctx.recv_response(&mut stream, &mut Vec::new(), false)?;
    ctx.ensure(
        response.head.status == 200
            && response
                .head
                .header("transfer-encoding")
                .is_some_and(|te| te.eq_ignore_ascii_case("chunked")),
        "200 OK with Transfer-Encoding: chunked (the length is not known in advance)",
    )?;
    ctx.ensure(
        response.body == numbers(20_000),
        "the lines \"1\" to \"20000\", in order, each ending in \\n",
    )
}

/// Resident memory of `pid` in KiB (VmRSS in /proc/PID/status).
fn rss_kib(ctx: &Ctx, pid: u32) -> Result<u64, Failure> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).map_err(|err| {
        ctx.fail("to read /proc/PID/status (Linux only)")
            .detail(err.to_string())
    })?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok());
    kib.ok_or_else(|| ctx.fail("a VmRSS line in /proc/PID/status"))
}

/// How many threads `pid` has (entries of /proc/PID/task).
fn threads(ctx: &Ctx, pid: u32) -> Result<usize, Failure> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).map_err(|err| {
        ctx.fail("to read /proc/PID/task (Linux only)")
            .detail(err.to_string())
    })?;
    Ok(tasks.count())
}

fn count_stops(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let curl = ctx.curl("-sN", "/count?to=100000000000");
    ctx.reproduce_noting(
        format!(
            "{curl} | head -3; sleep 1; ps -L -o tid,comm -p {}",
            ctx.pid_of_server()
        ),
        "once head has its 3 lines, curl leaves: the counting thread must be gone from the list",
        Expect::Runs,
    );
    let addr = ctx.server().addr;
    let pid = ctx.server().pid();
    let before = threads(ctx, pid)?;
    let mut slow = connect_small_window(ctx, addr)?;
    ctx.send(
        &mut slow,
        b"GET /count?to=100000000000 HTTP/1.1\r\nHost: x\r\n\r\n",
    )?;
    let mut first = vec![0u8; 4096];
    if let Err(err) = slow.read_exact(&mut first) {
        return Err(ctx.fail("the start of the count").detail(err.to_string()));
    }
    // The client now reads nothing: the producer must wait for it.
    thread::sleep(Duration::from_secs(1));
    let rss = rss_kib(ctx, pid)?;
    ctx.ensure(
        rss < 64 * 1024,
        "under 64 MiB of memory while a client reads an endless count slowly",
    )
    .map_err(|f| f.detail(format!("the server holds {rss} KiB")))?;
    let mut other = ctx.connect()?;
    hello(ctx, &mut other, &mut Vec::new())
        .map_err(|f| f.expecting("/hello answered while an endless count streams"))?;
    drop(slow);
    // The counting thread must notice (its next `send` fails) and end. A
    // server may also start work only once the client has gone: give it a
    // second to show it, then count.
    thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let mut now = threads(ctx, pid)?;
    while now > before && started.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(50));
        now = threads(ctx, pid)?;
    }
    ctx.ensure(
        now <= before,
        "the counting thread ends within 5 s of its client leaving",
    )
    .map_err(|f| {
        f.detail(format!(
            "the server had {before} threads before /count and still has {now}"
        ))
    })
}
