//! Black-box tests of `lesson07_prefork`: the master and its workers, as
//! processes.
//!
//! Each test starts the real binary on port 0 (in a process group of its
//! own, which the harness kills at the end) and looks at it from outside:
//! HTTP over real sockets, signals with kill(2), and the process tree in
//! `/proc` (which workers exist, whose children they are, zombies). The test
//! process itself never forks. Time bounds here are generous ceilings for
//! "it happened", never speed claims: those are in `benches/lesson07.sh`.
#![cfg(feature = "python")]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Server, read_response, zombies_of};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_lesson07_prefork");

fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apps")
}

/// Serve `app` from `apps/` with `flags`.
fn start(app: &str, flags: &[&str]) -> Server {
    let apps = apps_dir().to_string_lossy().into_owned();
    let mut args = vec!["--chdir", &apps];
    args.extend_from_slice(flags);
    args.push(app);
    Server::start(BIN, &args).expect("lesson07_prefork starts")
}

/// The live children of `pid`, from /proc: (pid, name).
fn workers_of(pid: u32) -> Vec<(u32, String)> {
    (common::children_of(pid).into_iter())
        .filter(common::Proc::running)
        .map(|p| (p.pid, p.name))
        .collect()
}

/// Wait until `pid` has exactly `n` children, all named as workers (a
/// child just forked still has the master's name); they are returned.
fn wait_for_workers(pid: u32, n: usize, within: Duration) -> Vec<(u32, String)> {
    let deadline = Instant::now() + within;
    loop {
        let workers = workers_of(pid);
        let named = workers
            .iter()
            .all(|(_, name)| name.starts_with("l07-worker-"));
        if (workers.len() == n && named) || Instant::now() >= deadline {
            return workers;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn pids(workers: &[(u32, String)]) -> BTreeSet<u32> {
    workers.iter().map(|(pid, _)| *pid).collect()
}

/// GET `path` on a fresh connection: (status, body).
fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")?;
    let response = read_response(&mut stream, &mut Vec::new(), false)?;
    Ok((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}

/// The pid in `workers.py`'s answer: `worker pid 4712, request 3 ...`.
fn answering_pid(body: &str) -> u32 {
    let rest = body
        .strip_prefix("worker pid ")
        .expect("a workers.py answer");
    rest.split(',').next().unwrap().parse().unwrap()
}

/// Requests back to back from a thread, each on a new connection, until
/// told to stop: (answered, failed). What a user sees across a reload.
struct Load {
    stop: Arc<AtomicBool>,
    done: thread::JoinHandle<(u64, u64, Vec<String>)>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let done = thread::spawn(move || {
            let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                match get(addr, "/") {
                    Ok((200, _)) => ok += 1,
                    other => {
                        failed += 1;
                        errors.push(format!("{other:?}"));
                    }
                }
            }
            (ok, failed, errors)
        });
        Load { stop, done }
    }

    fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.done.join().unwrap()
    }
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).unwrap();
}

#[test]
fn the_master_forks_exactly_n_workers_and_only_they_serve() {
    let server = start("workers:app", &["-w", "3"]);
    let workers = wait_for_workers(server.pid(), 3, Duration::from_secs(10));
    let names: BTreeSet<&str> = workers.iter().map(|(_, name)| name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["l07-worker-1", "l07-worker-2", "l07-worker-3"]),
        "ps shows who is who"
    );
    let master = fs::read_to_string(format!("/proc/{}/comm", server.pid())).unwrap();
    assert_eq!(master.trim(), "l07-master");
    let mut answered = BTreeSet::new();
    for _ in 0..30 {
        let (status, body) = get(server.addr, "/").unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("multiprocess=True"), "{body}");
        answered.insert(answering_pid(&body));
    }
    assert!(
        answered.is_subset(&pids(&workers)),
        "answers came from {answered:?}, workers are {workers:?}"
    );
    assert!(
        !answered.contains(&server.pid()),
        "the master never runs the app"
    );
}

#[test]
fn ttin_adds_a_worker_and_ttou_removes_one_but_never_the_last() {
    let server = start("workers:app", &["-w", "2"]);
    assert_eq!(
        wait_for_workers(server.pid(), 2, Duration::from_secs(10)).len(),
        2
    );
    server.signal(Signal::SIGTTIN).unwrap();
    assert_eq!(
        wait_for_workers(server.pid(), 3, Duration::from_secs(10)).len(),
        3
    );
    // One at a time: two of the same signal sent at once may arrive as one
    // (signals are not queued), which is exactly why `reap` loops.
    server.signal(Signal::SIGTTOU).unwrap();
    assert_eq!(
        wait_for_workers(server.pid(), 2, Duration::from_secs(10)).len(),
        2
    );
    server.signal(Signal::SIGTTOU).unwrap();
    let one = wait_for_workers(server.pid(), 1, Duration::from_secs(10));
    assert_eq!(one.len(), 1, "{one:?}");
    server.signal(Signal::SIGTTOU).unwrap();
    assert!(server.wait_for_stderr("one worker is the minimum", Duration::from_secs(5)));
    thread::sleep(Duration::from_millis(700));
    assert_eq!(workers_of(server.pid()), one, "the last worker stays");
    assert_eq!(get(server.addr, "/").unwrap().0, 200);
}

#[test]
fn a_killed_worker_is_reaped_and_replaced() {
    let server = start("workers:app", &["-w", "2"]);
    let before = wait_for_workers(server.pid(), 2, Duration::from_secs(10));
    let victims = pids(&before);
    for &victim in &victims {
        signal(victim, Signal::SIGKILL); // both at once: SIGCHLDs merge
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let now = workers_of(server.pid());
        if now.len() == 2 && pids(&now).is_disjoint(&victims) {
            break now;
        }
        assert!(Instant::now() < deadline, "not replaced: {now:?}");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        zombies_of(server.pid(), Duration::from_secs(2)),
        0,
        "every child reaped"
    );
    assert!(server.wait_for_stderr("was killed by SIGKILL", Duration::from_secs(5)));
    let (_, body) = get(server.addr, "/").unwrap();
    assert!(pids(&after).contains(&answering_pid(&body)));
}

#[test]
fn hup_replaces_every_worker_without_failing_a_request() {
    let server = start("workers:app", &["-w", "2", "--quiet"]);
    let old = pids(&wait_for_workers(server.pid(), 2, Duration::from_secs(10)));
    let load = Load::start(server.addr);
    thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let new = loop {
        let now = pids(&workers_of(server.pid()));
        if now.len() == 2 && now.is_disjoint(&old) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "old workers still there: {now:?} vs {old:?}"
        );
        thread::sleep(Duration::from_millis(20));
    };
    thread::sleep(Duration::from_millis(300));
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "failed requests across HUP: {errors:?}");
    assert!(ok > 10, "the load ran ({ok} requests)");
    let (_, body) = get(server.addr, "/").unwrap();
    assert!(
        new.contains(&answering_pid(&body)),
        "the master stayed, new workers serve"
    );
}

#[test]
fn term_lets_a_request_in_flight_finish_then_exits_0() {
    for class in ["sync", "gthread"] {
        let mut server = start("workers:app", &["-w", "1", "-k", class]);
        wait_for_workers(server.pid(), 1, Duration::from_secs(10));
        let addr = server.addr;
        assert_eq!(get(addr, "/").unwrap().0, 200, "the worker has booted");
        let slow = thread::spawn(move || get(addr, "/sleep?s=2"));
        // The app's own log line: the request is in the app, not queued.
        assert!(server.wait_for_stderr(": sleeping 2 s", IO_TIMEOUT));
        server.signal(Signal::SIGTERM).unwrap();
        let (status, body) = slow.join().unwrap().expect("answered, not cut");
        assert_eq!(status, 200, "{class}: {body}");
        let exit = server
            .wait_exit(Duration::from_secs(20))
            .expect("the master exits");
        assert_eq!(exit.code(), Some(0), "{class}");
        assert!(
            server.wait_group_gone(Duration::from_secs(5)),
            "{class}: no worker left"
        );
    }
}

#[test]
fn int_and_quit_stop_at_once_without_waiting_for_requests() {
    for sig in [Signal::SIGINT, Signal::SIGQUIT] {
        let mut server = start("workers:app", &["-w", "2"]);
        wait_for_workers(server.pid(), 2, Duration::from_secs(10));
        let addr = server.addr;
        let slow = thread::spawn(move || get(addr, "/sleep?s=60"));
        assert!(server.wait_for_stderr(": sleeping 60 s", IO_TIMEOUT));
        server.signal(sig).unwrap();
        // Well before the 60 s request could end: it is cut.
        let exit = server
            .wait_exit(Duration::from_secs(15))
            .expect("the master exits");
        assert_eq!(exit.code(), Some(0), "{sig}");
        assert!(
            slow.join().unwrap().is_err(),
            "{sig}: the request in flight was cut"
        );
        assert!(
            server.wait_group_gone(Duration::from_secs(5)),
            "{sig}: no worker left"
        );
    }
}

#[test]
fn a_hung_worker_is_killed_at_the_timeout_and_replaced() {
    let server = start("workers:app", &["-w", "1", "-t", "2"]);
    let old = pids(&wait_for_workers(server.pid(), 1, Duration::from_secs(10)));
    assert_eq!(
        get(server.addr, "/").unwrap().0,
        200,
        "booted: its boot is not timed"
    );
    let asked = Instant::now();
    // A sync worker in a 60 s app call sends no heartbeat.
    let cut = get(server.addr, "/sleep?s=60");
    let took = asked.elapsed();
    assert!(cut.is_err(), "the hung request was cut: {cut:?}");
    assert!(
        took < Duration::from_secs(2 + 3),
        "killed {took:?} after the request, --timeout is 2 s"
    );
    assert!(server.wait_for_stderr("WORKER TIMEOUT (pid:", Duration::from_secs(5)));
    let new = wait_for_workers(server.pid(), 1, Duration::from_secs(10));
    assert!(pids(&new).is_disjoint(&old), "replaced: {new:?}");
    assert_eq!(get(server.addr, "/").unwrap().0, 200);
}

#[test]
fn slow_clients_tie_up_sync_workers_until_the_master_kills_them() {
    // The rung's failure: two clients that send half a request hold both
    // sync workers; the heartbeat stops, and at --timeout the master
    // kills workers that were only waiting. A fresh client waits till then.
    let server = start("workers:app", &["-w", "2", "-t", "3"]);
    let old = pids(&wait_for_workers(server.pid(), 2, Duration::from_secs(10)));
    let mut slow: Vec<_> = (0..2).map(|_| server.connect().unwrap()).collect();
    for stream in &mut slow {
        stream.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    }
    thread::sleep(Duration::from_millis(500));
    // Not how long it waited (a busy machine stretches any figure), but who
    // answered: a worker born after the old ones were killed as "hung".
    let (status, body) = get(server.addr, "/").unwrap();
    assert_eq!(status, 200);
    assert!(
        !old.contains(&answering_pid(&body)),
        "answered by a worker that was not tied up: {body}"
    );
    assert!(server.wait_for_stderr("WORKER TIMEOUT", Duration::from_secs(5)));
}

#[test]
fn gthread_workers_keep_connections_alive_and_survive_idle_clients() {
    let server = start(
        "workers:app",
        &["-w", "1", "-k", "gthread", "--threads", "2", "-t", "3"],
    );
    wait_for_workers(server.pid(), 1, Duration::from_secs(10));
    let idle: Vec<_> = (0..4).map(|_| server.connect().unwrap()).collect();
    let mut stream = server.connect().unwrap();
    let mut leftover = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..3 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let response = read_response(&mut stream, &mut leftover, false).unwrap();
        assert_eq!(response.status, 200);
        assert_ne!(response.header("connection"), Some("close"), "kept alive");
        seen.insert(answering_pid(&String::from_utf8_lossy(&response.body)));
    }
    assert_eq!(seen.len(), 1, "one worker, one connection");
    thread::sleep(Duration::from_secs(4)); // past --timeout, with idle clients
    assert!(
        !server.stderr().contains("WORKER TIMEOUT"),
        "{}",
        server.stderr()
    );
    drop(idle);
}

#[test]
fn max_requests_recycles_workers_without_failing_a_request() {
    for class in ["sync", "gthread"] {
        let flags = [
            "-w",
            "2",
            "-k",
            class,
            "--max-requests",
            "20",
            "--max-requests-jitter",
            "5",
        ];
        let server = start("workers:app", &[&flags[..], &["--quiet"]].concat());
        let first = pids(&wait_for_workers(server.pid(), 2, Duration::from_secs(10)));
        let load = Load::start(server.addr);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pids(&workers_of(server.pid())).is_disjoint(&first) {
            assert!(Instant::now() < deadline, "{class}: no worker was recycled");
            thread::sleep(Duration::from_millis(50));
        }
        let (ok, failed, errors) = load.finish();
        assert_eq!(failed, 0, "{class}: failed across recycling: {errors:?}");
        assert!(ok >= 40, "{class}: {ok} requests");
        assert!(server.wait_for_stderr("--max-requests reached", Duration::from_secs(5)));
    }
}

#[test]
fn a_worker_that_cannot_import_the_app_stops_the_master_with_status_4() {
    for preload in [false, true] {
        let mut flags = vec!["-w", "3", "--port", "0", "--chdir"];
        let apps = apps_dir().to_string_lossy().into_owned();
        flags.push(&apps);
        if preload {
            flags.push("--preload");
        }
        flags.push("no_such_module:app");
        let output = std::process::Command::new(BIN)
            .args(&flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "preload={preload}: {stderr}");
        assert!(
            stderr.contains("No module named 'no_such_module'"),
            "{stderr}"
        );
        let boots = stderr.matches("Booting worker").count();
        assert!(boots <= 3, "a respawn storm: {boots} boots\n{stderr}");
    }
}

#[test]
fn workers_leave_when_their_master_is_killed() {
    let server = start("workers:app", &["-w", "2"]);
    let workers = pids(&wait_for_workers(server.pid(), 2, Duration::from_secs(10)));
    server.signal(Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while workers.iter().any(|&pid| alive(pid)) {
        assert!(
            Instant::now() < deadline,
            "orphaned workers still alive: {workers:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    common::proc_stat(pid).is_some_and(|p| p.running())
}

#[test]
fn usr2_starts_a_new_master_on_the_same_socket_refusing_nobody() {
    let pidfile = std::env::temp_dir().join(format!("l07-usr2-{}.pid", std::process::id()));
    let pidfile_arg = pidfile.to_string_lossy().into_owned();
    let mut server = start(
        "workers:app",
        &["-w", "1", "--quiet", "--pid", &pidfile_arg],
    );
    wait_for_workers(server.pid(), 1, Duration::from_secs(10));
    let load = Load::start(server.addr);
    thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGUSR2).unwrap();
    // The new master announces the same URL on the same stdout.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server.stdout().contains(&server.announce) {
        assert!(
            Instant::now() < deadline,
            "no new master: {}",
            server.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let new_master = loop {
        let masters: Vec<u32> = workers_of(server.pid())
            .into_iter()
            .filter(|(_, name)| name == "l07-master")
            .map(|(pid, _)| pid)
            .collect();
        if let [pid] = masters[..] {
            if wait_for_workers(pid, 1, Duration::from_secs(10)).len() == 1 {
                break pid;
            }
        }
        assert!(Instant::now() < deadline, "the new master has no worker");
        thread::sleep(Duration::from_millis(20));
    };
    let oldbin = fs::read_to_string(format!("{pidfile_arg}.oldbin")).unwrap();
    assert_eq!(oldbin.trim(), server.pid().to_string());
    // Now the old master leaves; the new one serves alone.
    server.signal(Signal::SIGTERM).unwrap();
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(20))
            .and_then(|s| s.code()),
        Some(0)
    );
    thread::sleep(Duration::from_millis(300));
    let (ok, failed, errors) = load.finish();
    assert_eq!(
        failed, 0,
        "refused or failed during the upgrade: {errors:?}"
    );
    assert!(ok > 10);
    let (_, body) = get(server.addr, "/").unwrap();
    assert!(pids(&workers_of(new_master)).contains(&answering_pid(&body)));
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        new_master.to_string()
    );
    signal(new_master, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(new_master) {
        assert!(Instant::now() < deadline, "the new master did not stop");
        thread::sleep(Duration::from_millis(50));
    }
    let _ = fs::remove_file(&pidfile);
}

#[test]
fn preload_imports_the_app_once_in_the_master() {
    let dir = std::env::temp_dir().join(format!("l07-preload-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("where.py"),
        "import os\nIMPORTED_IN = os.getpid()\n\
         def app(environ, start_response):\n    \
             body = f'{IMPORTED_IN} {os.getpid()}'.encode()\n    \
             start_response('200 OK', [('Content-Length', str(len(body)))])\n    \
             return [body]\n",
    )
    .unwrap();
    let dir_arg = dir.to_string_lossy().into_owned();
    for preload in [true, false] {
        let mut flags = vec!["--chdir", dir_arg.as_str(), "-w", "2"];
        if preload {
            flags.push("--preload");
        }
        flags.push("where:app");
        let server = Server::start(BIN, &flags).unwrap();
        wait_for_workers(server.pid(), 2, Duration::from_secs(10));
        let (_, body) = get(server.addr, "/").unwrap();
        let (imported, serving) = body.split_once(' ').unwrap();
        assert_ne!(serving, server.pid().to_string());
        if preload {
            assert_eq!(imported, server.pid().to_string(), "imported by the master");
        } else {
            assert_eq!(imported, serving, "imported by the worker itself");
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn usr1_reopens_the_log_file_after_a_rotation() {
    let log = std::env::temp_dir().join(format!("l07-usr1-{}.log", std::process::id()));
    let rotated = log.with_extension("log.1");
    let log_arg = log.to_string_lossy().into_owned();
    let server = start("workers:app", &["-w", "1", "--log-file", &log_arg]);
    let worker = *pids(&wait_for_workers(server.pid(), 1, Duration::from_secs(10)))
        .iter()
        .next()
        .unwrap();
    get(server.addr, "/before").unwrap();
    let logged = |path: &Path, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if fs::read_to_string(path).is_ok_and(|text| text.contains(needle)) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    };
    assert!(logged(&log, "GET /before"));
    fs::rename(&log, &rotated).unwrap();
    server.signal(Signal::SIGUSR1).unwrap();
    // The worker's stderr follows the rename until it reopens the path.
    let deadline = Instant::now() + IO_TIMEOUT;
    while fs::read_link(format!("/proc/{worker}/fd/2"))
        .ok()
        .as_deref()
        != Some(log.as_path())
    {
        assert!(
            Instant::now() < deadline,
            "the worker never reopened its log"
        );
        thread::sleep(Duration::from_millis(20));
    }
    get(server.addr, "/after").unwrap();
    assert!(
        logged(&log, "GET /after"),
        "the worker writes to the new file"
    );
    assert!(!fs::read_to_string(&rotated).unwrap().contains("GET /after"));
    let _ = (fs::remove_file(&log), fs::remove_file(&rotated));
}

#[test]
fn the_example_apps_run_unchanged() {
    let server = start("hello:app", &["-w", "2"]);
    let (status, body) = get(server.addr, "/").unwrap();
    assert_eq!((status, body.as_str()), (200, "Hello, World!\n"));
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv");
    if !venv.join("bin/python").exists() {
        return common::skipped("target/venv (scripts/python-env.sh)", "Flask under rung 7");
    }
    let venv_arg = venv.to_string_lossy().into_owned();
    let server = start("flask_hello:app", &["-w", "2", "--python", &venv_arg]);
    let (status, body) = get(server.addr, "/").unwrap();
    assert_eq!(status, 200, "{body}\n{}", server.stderr());
    for _ in 0..4 {
        // Both workers imported Flask themselves, after the fork.
        assert_eq!(get(server.addr, "/").unwrap().0, 200);
    }
}
