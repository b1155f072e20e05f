//! Not an exercise of the course: the concurrency check of
//! [`checks::serves_while_busy`], shown on an echo server, so that `cargo
//! test` proves it rejects a one-client-at-a-time server before a rung that
//! needs it (04, 05) uses it. `lesson01_echo` is such a server and fails it.

use std::net::TcpStream;
use std::time::Duration;

use crate::checks;
use crate::runner::{Ctx, Exercise, Expect, Failure, Stage, no_args};

pub const EXERCISE: Exercise = Exercise {
    name: "demo_concurrency",
    lesson: "(none: a self-check of the grader, run on an echo server)",
    port: 8001,
    args: no_args,
    holes: &[],
    // Not shown to students by `--list`; `grade demo_concurrency` runs it.
    listed: false,
    stages: &[Stage {
        name: "serves_while_busy",
        title: "echoes on 8 new connections while connection 1 stays open",
        hint: "a server that handles one client at a time is still inside connection 1's \
               read loop; the kernel queues the others (the listen backlog) but nobody \
               answers them: use a thread per connection, a pool, or readiness I/O",
        hole: 0,
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
    let port = ctx.port_hint();
    ctx.reproduce_noting(
        format!(
            "{{ printf 'are you there?\\n'; sleep 5; }} | nc -q 0 127.0.0.1 {port} & sleep 0.5; printf 'second client\\n' | timeout 3 nc -N 127.0.0.1 {port}"
        ),
        "the first nc stays connected for 5 s; the second must be echoed meanwhile",
        Expect::Shows("second client"),
    );
    ctx.start(&[])?;
    checks::serves_while_busy(ctx, occupy, 8, PROBE, check, Duration::from_secs(5))
}
