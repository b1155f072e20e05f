//! Exercise 01: the iterative TCP echo server (`lesson01_echo`).

use std::io::Write;
use std::thread;

use crate::checks;
use crate::runner::{Ctx, Exercise, Failure, Stage};

pub const EXERCISE: Exercise = Exercise {
    name: "ex01_echo",
    lesson: "lesson01_echo",
    port: 8001,
    stages: &[
        Stage {
            name: "starts_and_announces",
            title: "prints tcp://127.0.0.1:PORT first, then accepts a connection",
            hint: "lessons/01-echo.md, \"How it works\": socket, bind, listen, then announce the \
                   address that getsockname() reports (the port may be 0 = kernel's choice)",
            run: starts_and_announces,
        },
        Stage {
            name: "echo_roundtrip",
            title: "sends back exactly the bytes it received",
            hint: "the read/write loop: write back buf[..n], the n bytes read, not the whole buffer",
            run: echo_roundtrip,
        },
        Stage {
            name: "echo_large",
            title: "echoes 1 MiB sent in uneven pieces",
            hint: "one read returns what has arrived so far, not the whole message: loop until \
                   read returns 0, and use write_all (a write may be short)",
            run: echo_large,
        },
        Stage {
            name: "eof_closes",
            title: "closes the connection when the client shuts down its side",
            hint: "read returning Ok(0) means the client sent FIN: leave the loop and drop the stream",
            run: eof_closes,
        },
        Stage {
            name: "reset_survives",
            title: "a client that resets its connection does not stop the server",
            hint: "an error on one connection (ECONNRESET, EPIPE) ends that connection, not the \
                   accept loop: report it and go on, never unwrap or `?` it out of main",
            run: reset_survives,
        },
        Stage {
            name: "sequential_clients",
            title: "serves three clients, one after another",
            hint: "after a client leaves, go back to accept(): the accept loop wraps the echo loop",
            run: sequential_clients,
        },
        Stage {
            name: "no_fd_leak",
            title: "200 connections later, no descriptor is left open",
            hint: "every accepted socket is a file descriptor: it must be closed (dropped) when \
                   its client is done; compare `ls /proc/PID/fd | wc -l` before and after",
            run: no_fd_leak,
        },
        Stage {
            name: "sigterm_exits_0",
            title: "SIGTERM ends it with exit status 0",
            hint: "call ladder::shutdown::exit_on_termination() first thing in main",
            run: sigterm_exits_0,
        },
    ],
};

/// Connect, send `message`, read the same bytes back, close.
fn echo_once(ctx: &mut Ctx, message: &[u8]) -> Result<(), Failure> {
    let reproduce = ctx.nc(message);
    ctx.reproduce(reproduce);
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, message)?;
    let back = ctx
        .recv_exact(&mut stream, message.len())
        .map_err(|f| f.expecting("the same bytes back"))?;
    ctx.ensure(back == message, "the same bytes back")
}

fn round_trip(ctx: &mut Ctx) -> Result<(), Failure> {
    echo_once(ctx, b"ping\r\n")
}

fn starts_and_announces(ctx: &mut Ctx) -> Result<(), Failure> {
    let announce = ctx.start(&[])?.announce.clone();
    ctx.record_got(announce.as_bytes());
    ctx.ensure(
        announce.contains("tcp://127.0.0.1:"),
        "a first stdout line like `listening on tcp://127.0.0.1:8001`",
    )?;
    // The connection must be accepted, and then served: a server that
    // panics right after accept() closes it without a word.
    round_trip(ctx)
}

fn echo_roundtrip(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    echo_once(ctx, b"hello, ladder\r\n")?;
    echo_once(ctx, b"binary \x00\x01\xfe\xff too\n")
}

fn echo_large(ctx: &mut Ctx) -> Result<(), Failure> {
    const SIZE: usize = 1 << 20;
    ctx.start(&[])?;
    ctx.reproduce(
        "head -c 1048576 /dev/urandom > /tmp/big; nc -q 5 127.0.0.1 8001 < /tmp/big | cmp - /tmp/big",
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
    ctx.reproduce(
        "printf 'bye\\n' | nc -N 127.0.0.1 8001   (-N: shut down the sending side at EOF)",
    );
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, b"bye\n")?;
    ctx.send_eof(&mut stream)?;
    let back = ctx
        .recv_to_close(&mut stream)
        .map_err(|f| f.expecting("\"bye\\n\" back, then the connection closed"))?;
    ctx.ensure(
        back == b"bye\n",
        "\"bye\\n\" back, then the connection closed",
    )
}

fn reset_survives(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.start(&[])?;
    ctx.reproduce("a client killed mid-connection: python3 -c \"import socket,struct; s=socket.create_connection(('127.0.0.1',8001)); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii',1,0)); s.send(b'x'); s.close()\"; then nc 127.0.0.1 8001");
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
    for i in 1..=3 {
        echo_once(ctx, format!("client {i}\n").as_bytes())?;
    }
    Ok(())
}

fn no_fd_leak(ctx: &mut Ctx) -> Result<(), Failure> {
    checks::no_fd_leak(ctx, &[], 200, round_trip)
}

fn sigterm_exits_0(ctx: &mut Ctx) -> Result<(), Failure> {
    checks::sigterm_exits_0(ctx, &[], round_trip)
}
