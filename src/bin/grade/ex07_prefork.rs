//! Exercise 07: the pre-fork master (`lesson07_prefork`).
//!
//! The skeleton is lesson 07 with three holes: forking a worker (`spawn`),
//! the signal table (`dispatch`) and the reaper (`reap`). Every stage serves
//! `apps/workers.py`, whose answer names the worker that gave it, and looks
//! at the master from outside as the lesson's tests do: HTTP, signals sent
//! with kill(2), and the process tree in `/proc` (the master's children,
//! their names, their state: a `Z` is a zombie nobody reaped).
//!
//! The stages come in the order the holes are filled: `spawn` alone makes
//! workers that serve (no signal reaches the master until one of them
//! dies); `dispatch` then lets TTIN through; every stage after that kills
//! or stops workers, so it needs `reap` too.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use ladder_harness::{IO_TIMEOUT, Proc, children_of};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::checks::{self, RawResponse};
use crate::fixtures;
use crate::runner::{Ctx, Exercise, Expect, Failure, Stage};

/// The rung's default port, for the commands a student types.
const PORT: u16 = 8007;

/// The master's pid for a shell: the `l07-master` process listening on the
/// port (its workers listen on the same socket, under their own names).
const MASTER: &str = "$(lsof -t -a -c l07-master -iTCP:8007 -sTCP:LISTEN)";

/// How long workers may take to appear (each starts its own Python).
const BOOT: Duration = Duration::from_secs(15);

/// The flags every stage starts the server with: the app that says which
/// worker answered.
fn args() -> Vec<String> {
    vec![
        "--chdir".into(),
        fixtures::arg("apps"),
        "workers:app".into(),
    ]
}

pub const EXERCISE: Exercise = Exercise {
    name: "ex07_prefork",
    lesson: "lesson07_prefork",
    port: PORT,
    args,
    holes: &["spawn", "dispatch", "reap"],
    listed: true,
    stages: &[
        // ---- hole 1: spawn
        Stage {
            name: "serves",
            title: "-w 2: GET / is answered by a worker, not by the master",
            hint: "hole `spawn`: `manage` calls `spawn` for each missing worker; fork, and \
                   in the child call `prefork::run_worker(..)` then `std::process::exit`. \
                   The master never runs the app: the answer names the worker's pid",
            hole: 1,
            run: serves,
        },
        Stage {
            name: "workers",
            title: "-w 3: exactly 3 children, named l07-worker-1 to 3, each without \
                    children of its own, and only they answer",
            hint: "the child must end in `std::process::exit(status)`: a child that returns \
                   from `spawn` goes on as a second master and forks workers of its own. \
                   Number the workers from `self.spawned` (1, 2, 3: `run_worker` names the \
                   process after it) and keep each in `self.workers` under its pid",
            hole: 1,
            run: workers,
        },
        Stage {
            name: "heartbeat",
            title: "-w 1 -t 4: an idle worker beats, and is not killed as hung in 5 s",
            hint: "make the `Heartbeat` BEFORE the fork, so that the master and the worker \
                   hold the same file: the worker's beats (fchmod) are what the master \
                   reads (fstat). One made in the child is a file the master never sees",
            hole: 1,
            run: heartbeat,
        },
        // ---- hole 2: dispatch (and spawn)
        Stage {
            name: "ttin",
            title: "-w 1, then TTIN: a second worker, l07-worker-2",
            hint: "hole `dispatch`: SIGTTIN raises `self.target` by one; `manage`, after \
                   the signals, forks what is missing",
            hole: 2,
            run: ttin,
        },
        // ---- hole 3: reap (and the two before it)
        Stage {
            name: "respawn",
            title: "-w 2, one worker killed with SIGKILL: reaped, logged, and replaced \
                    within 5 s",
            hint: "hole `reap`: `waitpid(None, Some(WaitPidFlag::WNOHANG))` returns the \
                   dead child's status; remove it from `self.workers`, so that `manage` \
                   forks a new one, and log how it ended (`prefork::describe(status)`: \
                   `was killed by SIGKILL`) with its pid",
            hole: 3,
            run: respawn,
        },
        Stage {
            name: "reap_burst",
            title: "-w 3, master stopped (SIGSTOP), all workers killed, master continued: \
                    one SIGCHLD for three deaths, and no zombie left",
            hint: "signals are not queued: three children that die while the master cannot \
                   run leave ONE pending SIGCHLD. `reap` must call waitpid in a loop until \
                   it says StillAlive (or ECHILD), not once per signal",
            hole: 3,
            run: reap_burst,
        },
        Stage {
            name: "ttin_ttou",
            title: "-w 2, TTOU: one worker; TTOU again: still one, and it answers",
            hint: "SIGTTOU lowers `self.target` only while it is above 1 (gunicorn keeps the \
                   last worker); at 1, say so in the log and change nothing",
            hole: 3,
            run: ttin_ttou,
        },
        Stage {
            name: "graceful_term",
            title: "-w 1, TERM during GET /sleep?s=2: the request is answered, then the \
                    master exits 0 with no worker left",
            hint: "SIGTERM is the graceful stop: `self.stop(signal, SIGTERM)` sends the \
                   workers SIGTERM, which lets each finish its request; then `reap` \
                   collects them and the loop ends once `self.workers` is empty",
            hole: 3,
            run: graceful_term,
        },
        Stage {
            name: "quick_int",
            title: "-w 1, INT during GET /sleep?s=60: the master exits 0 within 10 s, the \
                    request is cut",
            hint: "SIGINT and SIGQUIT stop now: `self.stop(signal, SIGQUIT)` (a worker \
                   exits at once on QUIT); waiting for requests in flight is TERM's job",
            hole: 3,
            run: quick_int,
        },
        Stage {
            name: "boot_failure",
            title: "-w 2 --python /nonexistent/python3: every worker fails to boot (status \
                    3); the master stops with status 3, no respawn storm",
            hint: "a worker that exits with WORKER_BOOT_ERROR (3) or APP_LOAD_ERROR (4) would \
                   fail again if respawned, forever: `reap` returns Some(that status), and \
                   `run` stops the master with it",
            hole: 3,
            run: boot_failure,
        },
    ],
};

// ------------------------------------------------------------- /proc

/// The state of process `pid` (`None`: gone).
fn state_of(pid: u32) -> Option<char> {
    ladder_harness::proc_stat(pid).map(|p| p.state)
}

fn live(children: &[Proc]) -> Vec<Proc> {
    children
        .iter()
        .filter(|p| p.state != 'Z')
        .cloned()
        .collect()
}

fn zombies(children: &[Proc]) -> Vec<u32> {
    children
        .iter()
        .filter(|p| p.state == 'Z')
        .map(|p| p.pid)
        .collect()
}

/// `4711 l07-worker-1 (S), 4712 l07-worker-2 (Z)`, for a failure.
fn listing(children: &[Proc]) -> String {
    if children.is_empty() {
        return "none".to_string();
    }
    let shown: Vec<String> = children
        .iter()
        .map(|p| format!("{} {} ({})", p.pid, p.name, p.state))
        .collect();
    shown.join(", ")
}

fn is_worker(p: &Proc) -> bool {
    p.name.starts_with("l07-worker-")
}

/// Fail at once if the master has ended (a hole's `todo!()`, a panic).
fn master_running(ctx: &mut Ctx, expected: &str) -> Result<(), Failure> {
    match ctx.server().try_exit() {
        None => Ok(()),
        Some(status) => Err(ctx
            .fail(expected.to_string())
            .detail(format!("the master ended ({status}): see its stderr below"))),
    }
}

/// Wait until the master has `ok` children (zombies included, so a check
/// can ask about them), within `within`; the failure lists what it had.
fn wait_for(
    ctx: &mut Ctx,
    within: Duration,
    expected: &str,
    ok: &dyn Fn(&[Proc]) -> bool,
) -> Result<Vec<Proc>, Failure> {
    let master = ctx.server().pid();
    let deadline = Instant::now() + within;
    loop {
        master_running(ctx, expected)?;
        let children = children_of(master);
        if ok(&children) {
            return Ok(children);
        }
        if Instant::now() >= deadline {
            return Err(ctx.fail(expected.to_string()).detail(format!(
                "after {within:?}, the master's children were: {}",
                listing(&children)
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for exactly `n` live workers, all named `l07-worker-*` (a child
/// just forked still has the master's name for a moment), no zombie.
fn wait_for_workers(ctx: &mut Ctx, n: usize) -> Result<Vec<Proc>, Failure> {
    let children = if n == 1 { "child" } else { "children" };
    let expected = format!("exactly {n} live {children} named l07-worker-N, and no zombie");
    let children = wait_for(ctx, BOOT, &expected, &|children| {
        let live = live(children);
        live.len() == n && live.iter().all(is_worker) && zombies(children).is_empty()
    })?;
    Ok(live(&children))
}

/// The same processes (their state aside).
fn same(a: &[Proc], b: &[Proc]) -> bool {
    let key = |p: &Proc| (p.pid, p.name.clone());
    a.iter().map(key).eq(b.iter().map(key))
}

fn pids(procs: &[Proc]) -> Vec<u32> {
    procs.iter().map(|p| p.pid).collect()
}

fn signal(pid: u32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

// ------------------------------------------------------------- HTTP

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").into_bytes()
}

/// The pid in `workers.py`'s answer: `worker pid 4712, request 3 ...`.
fn answered_by(response: &RawResponse) -> Option<u32> {
    let body = String::from_utf8_lossy(response.body()).into_owned();
    let rest = body.strip_prefix("worker pid ")?;
    rest.split(',').next()?.parse().ok()
}

/// GET / and require a 200 from `workers.py`: the pid of the worker.
fn get_worker(ctx: &mut Ctx) -> Result<u32, Failure> {
    let response = checks::ask(ctx, &request("/"))?;
    let by = answered_by(&response).filter(|_| response.status() == Some(200));
    match by {
        Some(pid) => Ok(pid),
        None => Err(ctx.fail("200 and `worker pid N, request M in this process, ...`")),
    }
}

fn start(ctx: &mut Ctx, flags: &[&str]) -> Result<(), Failure> {
    ctx.start(flags).map(drop)
}

// ------------------------------------------------------------- hole 1

fn serves(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["-w", "2"])?;
    ctx.reproduce(
        format!("sleep 2; {}", ctx.curl("-i", "/")),
        Expect::Status(200),
    );
    let master = ctx.server().pid();
    let response = checks::ask(ctx, &request("/"))?;
    let by = answered_by(&response);
    ctx.ensure(
        response.status() == Some(200) && by.is_some(),
        "200 and the body `worker pid N, request M in this process, multiprocess=True`",
    )?;
    ctx.ensure(
        by != Some(master),
        "an answer from a worker: the master never runs the app",
    )
    .map_err(|f| f.detail(format!("pid {master}, the master, answered")))?;
    let body = String::from_utf8_lossy(response.body()).into_owned();
    ctx.ensure(
        body.contains("multiprocess=True"),
        "wsgi.multiprocess is True with two workers (`multiprocess=True` in the body)",
    )
}

fn workers(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["-w", "3"])?;
    ctx.reproduce_noting(
        format!("sleep 2; ps --ppid {MASTER} -o pid,stat,comm"),
        "three children: l07-worker-1, l07-worker-2, l07-worker-3",
        Expect::Shows("l07-worker-3"),
    );
    let workers = wait_for_workers(ctx, 3)?;
    let mut names: Vec<&str> = workers.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    ctx.ensure(
        names == ["l07-worker-1", "l07-worker-2", "l07-worker-3"],
        "the workers named l07-worker-1, l07-worker-2 and l07-worker-3 (numbered from 1)",
    )
    .map_err(|f| f.detail(format!("they are: {}", listing(&workers))))?;
    for worker in &workers {
        let grandchildren = children_of(worker.pid);
        ctx.ensure(
            grandchildren.is_empty(),
            "workers without children: only the master forks",
        )
        .map_err(|f| {
            f.detail(format!(
                "worker {} ({}) has children: {}; a child that returns from `spawn` \
                 runs the master's loop",
                worker.pid,
                worker.name,
                listing(&grandchildren)
            ))
        })?;
    }
    let master = ctx.server().pid();
    for _ in 0..12 {
        ctx.clear_transcript();
        let by = get_worker(ctx)?;
        ctx.ensure(
            pids(&workers).contains(&by),
            "every answer from one of the three workers",
        )
        .map_err(|f| {
            let who = if by == master { " (the master)" } else { "" };
            f.detail(format!(
                "pid {by}{who} answered; the workers are {}",
                listing(&workers)
            ))
        })?;
    }
    Ok(())
}

fn heartbeat(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["-w", "1", "-t", "4"])?;
    ctx.reproduce_noting(
        format!("sleep 6; ps --ppid {MASTER} -o pid,comm"),
        "still l07-worker-1, and no `WORKER TIMEOUT` in the server's log",
        Expect::Shows("l07-worker-1"),
    );
    wait_for_workers(ctx, 1)?;
    // Answered: the worker has booted, and beats from now on. (Booting has
    // an allowance of its own: the beat before the fork.)
    let serving = get_worker(ctx)?;
    let mark = ctx.server().stderr().len();
    thread::sleep(Duration::from_secs(5));
    let stderr = ctx.server().stderr();
    let timeout = stderr.get(mark..).unwrap_or("").contains("WORKER TIMEOUT");
    let now = wait_for_workers(ctx, 1)?;
    ctx.ensure(
        !timeout && pids(&now) == [serving],
        "the same worker 5 s later: its heartbeat reached the master (-t 4)",
    )
    .map_err(|f| {
        f.detail(format!(
            "worker {serving} answered; 5 s later the worker was {}, and the log \
             said WORKER TIMEOUT meanwhile: {timeout}",
            listing(&now)
        ))
    })
}

// ------------------------------------------------------------- hole 2

fn ttin(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["-w", "1"])?;
    ctx.reproduce_noting(
        format!("sleep 2; M={MASTER}; kill -TTIN $M; sleep 2; ps --ppid $M -o pid,comm"),
        "two workers now: l07-worker-1 and l07-worker-2",
        Expect::Shows("l07-worker-2"),
    );
    wait_for_workers(ctx, 1)?;
    let _ = ctx.server().signal(Signal::SIGTTIN);
    let workers = wait_for_workers(ctx, 2)?;
    ctx.ensure(
        workers.iter().any(|p| p.name == "l07-worker-2"),
        "the new worker named l07-worker-2",
    )
    .map_err(|f| f.detail(format!("the workers: {}", listing(&workers))))
}

// ------------------------------------------------------------- hole 3

fn respawn(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["-w", "2"])?;
    ctx.reproduce_noting(
        format!(
            "sleep 2; M={MASTER}; kill -KILL $(ps --ppid $M -o pid= | head -1); sleep 2; \
             ps --ppid $M -o pid,stat,comm"
        ),
        "two workers again, one of them l07-worker-3; no Z (zombie) in STAT; the server's \
         log says the killed one `was killed by SIGKILL`",
        Expect::Shows("l07-worker-3"),
    );
    let before = wait_for_workers(ctx, 2)?;
    let victim = before[0].pid;
    signal(victim, Signal::SIGKILL);
    let expected = format!(
        "worker {victim}, killed, reaped (gone from /proc, no zombie) and a new worker in its \
         place within 5 s"
    );
    let old = pids(&before);
    wait_for(ctx, Duration::from_secs(5), &expected, &|children| {
        let live = live(children);
        zombies(children).is_empty()
            && live.len() == 2
            && live.iter().all(is_worker)
            && !pids(&live).contains(&victim)
            && live.iter().any(|p| !old.contains(&p.pid))
    })?;
    // The log names the dead worker and how it ended.
    let deadline = Instant::now() + Duration::from_secs(2);
    let pid = victim.to_string();
    loop {
        let stderr = ctx.server().stderr();
        let logged = stderr
            .lines()
            .any(|line| line.contains(&pid) && line.contains("SIGKILL"));
        if logged {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ctx.fail(format!(
                "a line in the master's log naming pid {victim} and SIGKILL \
                 (`prefork::describe(status)`: `was killed by SIGKILL`)"
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn reap_burst(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["-w", "3"])?;
    ctx.reproduce_noting(
        format!(
            "sleep 2; M={MASTER}; kill -STOP $M; kill -KILL $(ps --ppid $M -o pid=); sleep 1; \
             kill -CONT $M; sleep 2; ps --ppid $M -o pid,stat,comm"
        ),
        "three new workers (l07-worker-4 to 6), and no Z (zombie) in STAT",
        Expect::Shows("l07-worker-6"),
    );
    let workers = wait_for_workers(ctx, 3)?;
    let master = ctx.server().pid();
    signal(master, Signal::SIGSTOP);
    let stopped = wait_state(master, 'T', Duration::from_secs(5));
    if !stopped {
        signal(master, Signal::SIGCONT);
        return Err(ctx
            .fail("the master to stop on SIGSTOP")
            .detail("it did not show state T within 5 s"));
    }
    for worker in &workers {
        signal(worker.pid, Signal::SIGKILL);
    }
    // All three dead while the master cannot run: their SIGCHLDs merge.
    let all_dead = workers
        .iter()
        .all(|w| wait_state(w.pid, 'Z', Duration::from_secs(5)));
    signal(master, Signal::SIGCONT);
    if !all_dead {
        return Err(ctx
            .fail("the three workers killed with SIGKILL to die")
            .detail("a worker was not a zombie within 5 s of SIGKILL"));
    }
    let expected = "no zombie 5 s after SIGCONT: the three dead workers all reaped, \
                    though ONE SIGCHLD stood for their three deaths";
    wait_for(ctx, Duration::from_secs(5), expected, &|children| {
        zombies(children).is_empty()
    })
    .map(drop)
}

/// Wait until process `pid` is in `state` (`T` stopped, `Z` zombie).
fn wait_state(pid: u32, state: char, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if state_of(pid) == Some(state) {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

fn ttin_ttou(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["-w", "2"])?;
    ctx.reproduce_noting(
        format!(
            "sleep 2; M={MASTER}; kill -TTOU $M; sleep 2; kill -TTOU $M; sleep 2; \
             ps --ppid $M -o pid,comm; {}",
            ctx.curl("-s", "/")
        ),
        "one worker is left (l07-worker-2), and it answers; the log says the last one stays",
        Expect::Shows("worker pid"),
    );
    wait_for_workers(ctx, 2)?;
    let _ = ctx.server().signal(Signal::SIGTTOU);
    let one = wait_for_workers(ctx, 1)?;
    // Signals are not queued: send the second only once the first is done.
    let _ = ctx.server().signal(Signal::SIGTTOU);
    let expected = "still one worker after the second TTOU: the last one stays";
    // A master that removes the last worker retires it (SIGTERM), which
    // exits within a second or so; give it three.
    let gone = wait_for(ctx, Duration::from_secs(3), expected, &|children| {
        live(children).is_empty()
    });
    if gone.is_ok() {
        return Err(ctx.fail(expected).detail(format!(
            "the master's children: none; before the second TTOU: {}",
            listing(&one)
        )));
    }
    ctx.clear_transcript();
    let now = wait_for_workers(ctx, 1)?;
    ctx.ensure(same(&now, &one), expected)
        .map_err(|f| f.detail(format!("{} became {}", listing(&one), listing(&now))))?;
    let mut stream = ctx.connect()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    ctx.send(&mut stream, &request("/"))?;
    let bytes = ctx.recv_to_close(&mut stream)?;
    ctx.ensure(
        RawResponse::new(bytes).status() == Some(200),
        "GET / answered 200 by the last worker",
    )
}

/// GET `path` without reading the answer yet: the request is in flight.
fn send_slow(ctx: &mut Ctx, path: &str) -> Result<TcpStream, Failure> {
    // Answered first: the worker (-w 1) has booted, and waits in accept.
    get_worker(ctx)?;
    ctx.clear_transcript();
    let mut stream = ctx.connect()?;
    ctx.send(&mut stream, &request(path))?;
    // workers.py logs `worker pid N: sleeping S s` once the request is in the app.
    if !ctx.server().wait_for_stderr(": sleeping ", IO_TIMEOUT) {
        return Err(ctx
            .fail(format!("GET {path} to reach the app"))
            .detail(format!(
                "no `sleeping` line from workers.py in {IO_TIMEOUT:?}"
            )));
    }
    Ok(stream)
}

fn graceful_term(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["-w", "1"])?;
    ctx.reproduce_noting(
        format!(
            "sleep 2; {} & sleep 1; kill -TERM {MASTER}; wait",
            ctx.curl("-s", "/sleep?s=2")
        ),
        "curl shows the whole answer (`worker pid ...`) after 2 s; then the server exits, \
         and `echo $?` in its terminal prints 0",
        Expect::ShowsAndServerExits0("worker pid"),
    );
    let mut stream = send_slow(ctx, "/sleep?s=2")?;
    let _ = ctx.server().signal(Signal::SIGTERM);
    let bytes = ctx.recv_to_close(&mut stream)?;
    let response = RawResponse::new(bytes);
    ctx.ensure(
        response.status() == Some(200) && answered_by(&response).is_some(),
        "the request in flight answered (200, `worker pid ...`): TERM lets it finish",
    )?;
    exits_0(ctx, Duration::from_secs(15), "TERM")
}

/// The master exits with status 0 within `within`, leaving no process.
fn exits_0(ctx: &mut Ctx, within: Duration, signal: &str) -> Result<(), Failure> {
    match ctx.server().wait_exit(within) {
        None => Err(ctx
            .fail(format!("the master to exit within {within:?} of {signal}"))
            .detail(format!(
                "it was still running; its children: {}",
                listing(&children_of(ctx.server().pid()))
            ))),
        Some(status) if !status.success() => Err(ctx
            .fail(format!("exit status 0 after {signal}"))
            .detail(format!("the master ended with {status}"))),
        Some(_) => {
            let gone = ctx.server().wait_group_gone(Duration::from_secs(5));
            ctx.ensure(gone, "no worker left once the master has exited")
                .map_err(|f| f.detail("a process of the server's group outlived the master"))
        }
    }
}

fn quick_int(ctx: &mut Ctx) -> Result<(), Failure> {
    start(ctx, &["-w", "1"])?;
    ctx.reproduce_noting(
        format!(
            "sleep 2; {} & sleep 1; kill -INT {MASTER}; wait",
            ctx.curl("-sS", "/sleep?s=60")
        ),
        "curl fails at once (the request was cut); the server exits, and `echo $?` in its \
         terminal prints 0",
        Expect::ShowsAndServerExits0("curl: ("),
    );
    let mut stream = send_slow(ctx, "/sleep?s=60")?;
    let _ = ctx.server().signal(Signal::SIGINT);
    exits_0(ctx, Duration::from_secs(10), "INT")?;
    // The worker is gone, so is its end of the connection.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut got = Vec::new();
    let cut = match stream.read_to_end(&mut got) {
        Ok(_) => RawResponse::new(got.clone()).status() != Some(200),
        Err(err) => err.kind() != ErrorKind::WouldBlock && err.kind() != ErrorKind::TimedOut,
    };
    ctx.ensure(
        cut,
        "the request in flight cut, not answered: INT does not wait",
    )
    .map_err(|f| f.detail(format!("it got {} bytes", got.len())))
}

fn boot_failure(ctx: &mut Ctx) -> Result<(), Failure> {
    let workers = 2;
    start(ctx, &["-w", "2", "--python", "/nonexistent/python3"])?;
    ctx.reproduce_noting(
        format!("sleep 3; {}", ctx.curl("-sS", "/")),
        "curl cannot connect: the master has stopped. In its terminal: each worker booted \
         once (`Booting worker`), and `echo $?` prints 3",
        Expect::Shows("curl: (7)"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let storm = 3 * workers;
    loop {
        let boots = ctx.server().stderr().matches("Booting worker").count();
        if boots > storm {
            return Err(ctx
                .fail(format!(
                    "at most {workers} `Booting worker` lines: a worker that cannot boot is \
                     not respawned"
                ))
                .detail(format!("{boots} boots so far: a respawn storm")));
        }
        if let Some(status) = ctx.server().try_exit() {
            return ctx
                .ensure(
                    status.code() == Some(3) && boots <= workers,
                    format!(
                        "exit status 3 (WORKER_BOOT_ERROR, the workers' own), after at \
                         most {workers} boots"
                    ),
                )
                .map_err(|f| {
                    f.detail(format!(
                        "the master ended with {status} after {boots} boots"
                    ))
                });
        }
        if Instant::now() >= deadline {
            return Err(ctx
                .fail("the master to stop with status 3 within 15 s")
                .detail(format!("it was still running, after {boots} boots")));
        }
        thread::sleep(Duration::from_millis(20));
    }
}
