//! Exercise 01: the iterative TCP echo server (`lesson01_echo`).

use std::io::Write;
use std::thread;

use crate::checks;
use crate::runner::{Ctx, Exercise, Expect, Failure, Stage, no_args};

pub const EXERCISE: Exercise = Exercise {
    name: "ex01_echo",
    lesson: "lesson01_echo",
    port: 8001,
    args: no_args,
    holes: &["socket_setup", "accept_loop", "echo_loop", "send_all"],
    listed: true,
    stages: &[
        Stage {
            name: "starts_and_announces",
            title: "makes its listening socket and prints tcp://127.0.0.1:PORT first",
            hint: "lessons/01-echo.md, \"How it works\": socket, bind, listen (`listen_socket`); \
                   `run` then announces the address that getsockname() reports",
            hole: 1,
            run: starts_and_announces,
        },
        Stage {
            name: "stays_up_and_accepts",
            title: "keeps running after the announce line, and accepts a connection",
            hint: "`accept_loop`: loop for ever, accept(2) the next connection and `serve` it; \
                   retry EINTR and ECONNABORTED, log other errors and go on",
            hole: 2,
            run: checks::stays_up_and_accepts,
        },
        Stage {
            name: "eof_closes",
            title: "closes a connection when its client shuts down its side, then takes the next",
            hint: "`echo_loop`: recv returning 0 means the client sent FIN: return Ok(()), and \
                   `serve` closes the fd",
            hole: 3,
            run: eof_closes,
        },
        Stage {
            name: "echo_roundtrip",
            title: "sends back exactly the bytes it received",
            hint: "`echo_loop` hands `send_all` buf[..n], the n bytes read, not the whole buffer; \
                   `send_all` sends until all of them are gone",
            hole: 4,
            run: echo_roundtrip,
        },
        Stage {
            name: "echo_large",
            title: "echoes 1 MiB sent in uneven pieces",
            hint: "one read returns what has arrived so far, not the whole message: loop until \
                   read returns 0, and use write_all (a write may be short)",
            hole: 4,
            run: echo_large,
        },
        Stage {
            name: "reset_survives",
            title: "a client that resets its connection does not stop the server",
            hint: "an error on one connection (ECONNRESET, EPIPE) ends that connection, not the \
                   accept loop: report it and go on, never unwrap or `?` it out of main",
            hole: 4,
            run: reset_survives,
        },
        Stage {
            name: "sequential_clients",
            title: "serves three clients, one after another",
            hint: "after a client leaves, go back to accept(): the accept loop wraps the echo loop",
            hole: 4,
            run: sequential_clients,
        },
        Stage {
            name: "no_fd_leak",
            title: "200 connections later, no descriptor is left open",
            hint: "every accepted socket is a file descriptor: it must be closed (dropped) when \
                   its client is done; compare `ls /proc/PID/fd | wc -l` before and after",
            hole: 4,
            run: no_fd_leak,
        },
        Stage {
            name: "sigterm_exits_0",
            title: "SIGTERM ends it with exit status 0",
            hint: "call ladder::shutdown::exit_on_termination() first thing in main",
            hole: 4,
            run: sigterm_exits_0,
        },
    ],
};

/// Set the `try:` line to echoing `message` with nc.
fn try_echo(ctx: &mut Ctx, message: &[u8]) {
    let shown = String::from_utf8_lossy(message).trim_end().to_string();
    let command = format!(
        "printf '{}' | nc -N 127.0.0.1 {}",
        crate::runner::printf_escape(message),
        ctx.port_hint()
    );
    // What a person sees: the message back, as nc prints it.
    let expect = match message {
        b"hello, ladder\r\n" => Expect::Shows("hello, ladder"),
        b"ping\r\n" => Expect::Shows("ping"),
        _ => Expect::Runs,
    };
    ctx.reproduce_noting(
        command,
        format!("nc prints {shown:?} back, then ends"),
        expect,
    );
}

/// Connect, send `message`, read the same bytes back, close.
fn echo_once(ctx: &mut Ctx, message: &[u8]) -> Result<(), Failure> {
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, message)?;
    let back = ctx
        .recv_exact(&mut stream, message.len())
        .map_err(|f| f.expecting("the same bytes back"))?;
    ctx.ensure(back == message, "the same bytes back")
}

fn round_trip(ctx: &mut Ctx) -> Result<(), Failure> {
    try_echo(ctx, b"ping\r\n");
    echo_once(ctx, b"ping\r\n")
}

fn starts_and_announces(ctx: &mut Ctx) -> Result<(), Failure> {
    // Said first: a server that cannot start is the usual failure here.
    let command = format!("nc -vz 127.0.0.1 {}", ctx.port_hint());
    ctx.reproduce_noting(
        command,
        "the server's first line (in its terminal) is its URL; nc says the port is open",
        Expect::Shows("succeeded"),
    );
    let announce = ctx.start(&[])?.announce.clone();
    ctx.record_stdout(announce.as_bytes());
    ctx.ensure(
        announce.contains("tcp://127.0.0.1:"),
        "a first stdout line like `listening on tcp://127.0.0.1:8001`",
    )
}

fn echo_roundtrip(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    try_echo(ctx, b"hello, ladder\r\n");
    echo_once(ctx, b"hello, ladder\r\n")?;
    let binary = b"binary \x00\x01\xfe\xff too\n";
    try_echo(ctx, binary);
    echo_once(ctx, binary)
}

fn echo_large(ctx: &mut Ctx) -> Result<(), Failure> {
    const SIZE: usize = 1 << 20;
    ctx.start(&[])?;
    let command = format!(
        "head -c 1048576 /dev/urandom > /tmp/big; nc -N 127.0.0.1 {} < /tmp/big | cmp - /tmp/big && echo same",
        ctx.port_hint()
    );
    ctx.reproduce_noting(
        command,
        "cmp finds the 1 MiB back intact and `same` is printed",
        Expect::Shows("same"),
    );
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();
    let mut stream = ctx.connect()?;
    let mut writer = stream.try_clone().map_err(|e| {
        ctx.fail("a second handle on the socket")
            .detail(e.to_string())
    })?;
    // Write from another thread while this one reads, in uneven pieces, so
    // neither side's buffer fills up and stalls the other.
    let to_send = data.clone();
    let sender = thread::spawn(move || {
        let mut offset = 0;
        let mut piece = 1;
        while offset < to_send.len() {
            let end = (offset + piece).min(to_send.len());
            writer.write_all(&to_send[offset..end])?;
            offset = end;
            piece = piece * 3 % 65_521 + 1;
        }
        Ok::<(), std::io::Error>(())
    });
    let back = ctx.recv_exact(&mut stream, SIZE);
    let sent = sender.join().unwrap_or(Ok(()));
    let back = back.map_err(|f| {
        let detail = format!(
            "{} (the sending side saw: {})",
            f.detail,
            match &sent {
                Ok(()) => "all bytes written".to_string(),
                Err(e) => e.to_string(),
            }
        );
        f.expecting("all 1048576 bytes back").detail(detail)
    })?;
    match back.iter().zip(&data).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(at) => Err(ctx
            .fail("the 1 MiB back, byte for byte")
            .detail(format!("the bytes differ from offset {at} on"))),
    }
}

fn eof_closes(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let command = format!(
        "for i in 1 2; do timeout 3 nc -N 127.0.0.1 {} < /dev/null && echo \"client $i: closed by the server\"; done",
        ctx.port_hint()
    );
    ctx.reproduce_noting(
        command,
        "nc -N sends nothing and shuts down its side (FIN): the server must close, for both clients",
        Expect::Shows("client 2: closed by the server"),
    );
    // Two clients that send nothing: the first must be let go when it shuts
    // down its side, and the server must then take the second.
    for _ in 0..2 {
        let mut stream = ctx.connect()?;
        ctx.send_eof(&mut stream)?;
        let back = ctx
            .recv_to_close(&mut stream)
            .map_err(|f| f.expecting("the connection closed by the server, nothing sent back"))?;
        ctx.ensure(
            back.is_empty(),
            "the connection closed by the server, nothing sent back",
        )?;
    }
    thread::sleep(std::time::Duration::from_millis(100));
    match ctx.server().try_exit() {
        None => Ok(()),
        Some(status) => Err(ctx
            .fail("the server still running after two clients left")
            .detail(format!("it ended: {status}"))),
    }
}

fn reset_survives(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let command = format!(
        "python3 -c \"import socket,struct,time; s=socket.create_connection(('127.0.0.1',{port})); s.send(b'x\\n'); time.sleep(0.2); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii',1,0)); s.close()\"; printf 'still there?\\n' | nc -N 127.0.0.1 {port}",
        port = ctx.port_hint()
    );
    ctx.reproduce_noting(
        command,
        "python resets its connection (RST); the next client is still echoed",
        Expect::Shows("still there?"),
    );
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, b"x\n")?;
    // Wait for the echo, so the server is back in read() when the RST comes.
    ctx.recv_exact(&mut stream, 2)?;
    checks::close_with_reset(stream);
    ctx.clear_transcript();
    echo_once(ctx, b"still there?\n")
        .map_err(|f| f.expecting("the next client served after another one reset its connection"))
}

fn sequential_clients(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    let command = format!(
        "for i in 1 2 3; do printf \"client $i\\n\" | nc -N 127.0.0.1 {}; done",
        ctx.port_hint()
    );
    ctx.reproduce_noting(
        command,
        "each client's line comes back",
        Expect::Shows("client 3"),
    );
    for i in 1..=3 {
        echo_once(ctx, format!("client {i}\n").as_bytes())?;
    }
    Ok(())
}

fn no_fd_leak(ctx: &mut Ctx) -> Result<(), Failure> {
    let by_hand = format!(
        "printf 'ping\\r\\n' | nc -N 127.0.0.1 {} > /dev/null",
        ctx.port_hint()
    );
    checks::no_fd_leak(ctx, &[], 200, round_trip, &by_hand)
}

fn sigterm_exits_0(ctx: &mut Ctx) -> Result<(), Failure> {
    checks::sigterm_exits_0(ctx, &[], round_trip)
}
