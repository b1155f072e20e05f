//! Not an exercise of the course: the concurrency check of
//! [`checks::serves_while_busy`], shown on an echo server, so that `cargo
//! test` proves it rejects a one-client-at-a-time server before a rung that
//! needs it (04, 05) uses it. `lesson01_echo` is such a server and fails it.

use std::net::TcpStream;
use std::time::Duration;

use crate::checks;
use crate::runner::{Ctx, Exercise, Failure, Stage};

pub const EXERCISE: Exercise = Exercise {
    name: "demo_concurrency",
    lesson: "(none: a self-check of the grader, run on an echo server)",
    port: 8001,
    stages: &[Stage {
        name: "serves_while_busy",
        title: "echoes on 8 new connections while connection 1 stays open",
        hint: "a server that handles one client at a time is still inside connection 1's \
               read loop; the kernel queues the others (the listen backlog) but nobody \
               answers them: use a thread per connection, a pool, or readiness I/O",
        run: serves_while_busy,
    }],
};

const PROBE: &[u8] = b"are you there?\n";

/// Connection 1: one echo round trip, then the connection stays open and idle.
fn occupy(ctx: &mut Ctx, stream: &mut TcpStream) -> Result<(), Failure> {
    ctx.send(stream, PROBE)?;
    check(ctx, stream)
}

fn check(ctx: &mut Ctx, stream: &mut TcpStream) -> Result<(), Failure> {
    let back = ctx.recv_exact(stream, PROBE.len())?;
    ctx.ensure(back == PROBE, "the same bytes back")
}

fn serves_while_busy(ctx: &mut Ctx) -> Result<(), Failure> {
    ctx.reproduce(
        "nc 127.0.0.1 8001 in one terminal (type a line, leave it open), then nc 127.0.0.1 8001 in another",
    );
    checks::serves_while_busy(ctx, &[], occupy, 8, PROBE, check, Duration::from_secs(5))
}
