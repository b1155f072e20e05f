//! The program output that `lessons/07-prefork.md` quotes, captured from the
//! real `lesson07_prefork` running `apps/workers.py`, and compared with
//! `lessons/transcripts/07-*.snap` on every run (re-capture with
//! `INSTA_UPDATE=always cargo test --test lesson07_transcripts`).
//!
//! What varies from run to run is masked: the port is shown as 8007, dates
//! as `[date]`, and pids are renumbered the way the chapter tells it: the
//! master is 4711 and worker N is 4711 + N. Lines that several processes
//! write at once (a worker's `Booting` line and the master's next one) come
//! in an order the kernel picks, so where order is not the point they are
//! sorted, and where it is (one SIGCHLD, two reaped) only the master's own
//! lines are shown: one process writes them, in order.
#![cfg(feature = "python")]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Server, read_response};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_lesson07_prefork");

/// The port the chapter's commands use, which every real port is shown as.
const SHOWN_PORT: u16 = 8007;
/// The master's pid as shown; worker N is shown as `MASTER + N`.
const MASTER: u32 = 4711;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `lesson07_prefork [flags] --chdir apps APP`, from the repository's root,
/// as the chapter runs it.
fn start(app: &str, flags: &[&str]) -> Server {
    let mut command = Command::new(BIN);
    command
        .args(flags)
        .args(["--chdir", "apps", app, "--port", "0"])
        .current_dir(root())
        .env_remove("VIRTUAL_ENV");
    Server::spawn(command).expect("start lesson07_prefork")
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({snapshot_path => "../lessons/transcripts",
        prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!(name, text);
    });
}

/// The live (not zombie) children of `pid`: (pid, name), from /proc.
fn children(pid: u32) -> Vec<(u32, String)> {
    (common::children_of(pid).into_iter())
        .filter(common::Proc::running)
        .map(|p| (p.pid, p.name))
        .collect()
}

/// Wait until the master's children are exactly the workers numbered
/// `numbers`, each already named `l07-worker-N` (a child just forked still
/// has the master's name). Returns worker number -> pid.
fn wait_for_workers(master: u32, numbers: &[u64]) -> BTreeMap<u64, u32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found: BTreeMap<u64, u32> = children(master)
            .into_iter()
            .filter_map(|(pid, name)| Some((name.strip_prefix("l07-worker-")?.parse().ok()?, pid)))
            .collect();
        let all_named = children(master).len() == found.len();
        if all_named && found.keys().copied().eq(numbers.iter().copied()) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "workers {numbers:?} expected, found {:?}",
            children(master)
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Real pid -> shown pid, from the log: the master, and every `Booting
/// worker N with pid: P` and `fork() -> worker N pid P` line.
fn pid_names(master: u32, log: &str) -> BTreeMap<u32, u32> {
    let mut names = BTreeMap::from([(master, MASTER)]);
    for line in log.lines() {
        let found = line
            .split_once("Booting worker ")
            .and_then(|(_, rest)| rest.split_once(" with pid: "))
            .or_else(|| {
                let (_, rest) = line.split_once("fork() -> worker ")?;
                rest.split_once(" pid ")
            });
        if let Some((number, pid)) = found
            && let (Ok(number), Ok(pid)) = (number.trim().parse::<u32>(), pid.trim().parse())
        {
            names.insert(pid, MASTER + number);
        }
    }
    names
}

/// Mask what varies: dates, the port, and every pid `names` knows.
fn normalise(text: &str, port: u16, names: &BTreeMap<u32, u32>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut line = common::mask_dates(line);
        // The access log's size: workers.py's answer holds a pid, whose
        // number of digits varies.
        if let Some(i) = line.find("\" 200 ") {
            line.replace_range(i + 6.., "[size]");
        }
        let line = line.replace(&format!(":{port}/"), &format!(":{SHOWN_PORT}/"));
        out.push_str(&renumber(&line, names));
        out.push('\n');
    }
    out
}

/// Replace each run of digits that is a known pid with its shown pid.
fn renumber(text: &str, names: &BTreeMap<u32, u32>) -> String {
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        let shown = digits.parse().ok().and_then(|pid| names.get(&pid));
        match shown {
            Some(shown) => out.push_str(&shown.to_string()),
            None => out.push_str(digits),
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

/// GET `path` on a fresh connection, as curl does: the body.
fn curl(server: &Server, path: &str) -> String {
    let mut stream = server.connect().expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: curl/[version]\r\nAccept: */*\r\n\r\n",
        server.addr.port()
    )
    .expect("send");
    let response = read_response(&mut stream, &mut Vec::new(), false).expect("a response");
    assert_eq!(response.status, 200, "{}", response.head);
    String::from_utf8_lossy(&response.body).into_owned()
}

/// The pid in `workers.py`'s answer: `worker pid 4712, request 3 ...`.
fn answering_pid(body: &str) -> u32 {
    let rest = body
        .strip_prefix("worker pid ")
        .expect("a workers.py answer");
    rest.split(',').next().unwrap().parse().unwrap()
}

/// `ps -o pid,ppid,comm --pid M --ppid M`, its rows renumbered and sorted
/// by shown pid (real pids may wrap around; shown ones follow the worker
/// numbers), in ps's own layout.
fn ps_tree(master: u32, names: &BTreeMap<u32, u32>) -> String {
    let pid = master.to_string();
    let output = Command::new("ps")
        .args(["-o", "pid,ppid,comm", "--pid", &pid, "--ppid", &pid])
        .output()
        .expect("run ps (procps)");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut rows: Vec<(u32, u32, String)> = text
        .lines()
        .skip(1)
        .map(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let shown = |s: &str| {
                let real: u32 = s.parse().unwrap();
                *names
                    .get(&real)
                    .unwrap_or_else(|| panic!("unknown pid {real}: {text}"))
            };
            (shown(fields[0]), shown(fields[1]), fields[2].to_string())
        })
        .collect();
    rows.sort();
    let mut out = String::from("  PID  PPID COMMAND\n");
    for (pid, ppid, comm) in rows {
        // ps prints the master's parent (the shell) too: not renumbered.
        out.push_str(&format!("{pid:>5} {ppid:>5} {comm}\n"));
    }
    out
}

/// The master's parent is the test here and a shell in the chapter: it is
/// shown as the shell's pid, 4700.
fn with_parent(master: u32, names: &BTreeMap<u32, u32>) -> BTreeMap<u32, u32> {
    let stat = fs::read_to_string(format!("/proc/{master}/stat")).unwrap();
    let close = stat.rfind(')').unwrap();
    let ppid: u32 = stat[close + 1..]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut names = names.clone();
    names.insert(ppid, 4700);
    names
}

/// "Run it": the start-up log; then curl until two different workers have
/// answered (each one's first answer is its request 1), their answers.
#[test]
fn startup_transcript() {
    let server = start("workers:app", &["-w", "2"]);
    let master = server.pid();
    let workers = wait_for_workers(master, &[1, 2]);
    let mut answers: BTreeMap<u32, String> = BTreeMap::new();
    for _ in 0..200 {
        let body = curl(&server, "/");
        answers.entry(answering_pid(&body)).or_insert(body);
        if answers.len() == 2 {
            break;
        }
    }
    assert_eq!(answers.len(), 2, "two workers answered: {answers:?}");
    assert!(server.wait_for_stderr("\"GET / HTTP/1.1\" 200", IO_TIMEOUT));
    let names = pid_names(master, &server.stderr());
    assert_eq!(names.len(), 3, "{names:?} {workers:?}");
    // The start-up lines: the master's first, then each worker's, sorted
    // (they boot at the same time).
    let stderr = server.stderr();
    let port = server.addr.port();
    let listening = stderr.lines().find(|l| l.contains("Listening at")).unwrap();
    let mut boots: Vec<String> = (stderr.lines())
        .filter(|l| l.contains("Booting worker"))
        .map(|l| normalise(l, port, &names))
        .collect();
    boots.sort();
    let mut text = normalise(&server.announce, port, &names);
    text.push_str(&normalise(listening, port, &names));
    text.extend(boots);
    snapshot("07-startup", &text);
    let mut bodies: Vec<String> = answers.values().map(|b| renumber(b, &names)).collect();
    bodies.sort();
    snapshot("07-curl", &bodies.concat());
}

/// The tree before and after TTIN, TTOU and HUP.
#[test]
fn signals_tree_transcript() {
    let server = start("workers:app", &["-w", "2", "--quiet"]);
    let master = server.pid();
    let mut text = String::new();
    let mut step = |command: &str, numbers: &[u64]| {
        let workers = wait_for_workers(master, numbers);
        let mut names = with_parent(master, &pid_names(master, &server.stderr()));
        for (&n, &pid) in &workers {
            names.insert(pid, MASTER + n as u32);
        }
        if !command.is_empty() {
            text.push_str(&format!("$ {command}\n"));
        }
        text.push_str("$ ps -o pid,ppid,comm --pid $M --ppid $M\n");
        text.push_str(&ps_tree(master, &names));
    };
    step("", &[1, 2]);
    server.signal(Signal::SIGTTIN).unwrap();
    step("kill -TTIN $M", &[1, 2, 3]);
    server.signal(Signal::SIGTTOU).unwrap();
    step("kill -TTOU $M", &[2, 3]);
    server.signal(Signal::SIGHUP).unwrap();
    step("kill -HUP $M", &[4, 5]);
    snapshot("07-signals-tree", &text);
}

/// Is `pid` a zombie yet (dead, waiting for its parent's waitpid)?
fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let close = stat.rfind(')').unwrap_or(0);
        stat[close + 1..].split_whitespace().next() == Some("Z")
    })
}

/// Two workers killed with SIGKILL while the master is stopped: when it
/// goes on, it gets ONE SIGCHLD for two dead children, and its reap loop
/// collects both, then replaces them. The master's own lines only.
#[test]
fn sigkill_two_workers_transcript() {
    let server = start("workers:app", &["-w", "2", "--trace", "--quiet"]);
    let master = server.pid();
    let workers = wait_for_workers(master, &[1, 2]);
    assert!(server.wait_for_stderr("loaded workers:app", IO_TIMEOUT));
    let before = server.stderr().len();
    server.signal(Signal::SIGSTOP).unwrap();
    for &pid in workers.values() {
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    }
    // Both dead (zombies) before the master runs again: their two SIGCHLDs
    // are both pending by then, and a pending signal is one bit.
    let deadline = Instant::now() + IO_TIMEOUT;
    while !workers.values().all(|&pid| is_zombie(pid)) {
        assert!(Instant::now() < deadline, "the workers did not die");
        thread::sleep(Duration::from_millis(10));
    }
    server.signal(Signal::SIGCONT).unwrap();
    wait_for_workers(master, &[3, 4]);
    let log = server.stderr();
    let names = pid_names(master, &log);
    let masters_lines: String = log[before..]
        .lines()
        .filter(|l| {
            l.starts_with("[trace] master: ")
                || l.starts_with("[trace] SIGCHLD")
                || l.starts_with("[trace] fork()")
                || l.contains(&format!("] [{master}] ["))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(masters_lines.matches("master: SIGCHLD").count(), 1, "{log}");
    let mut text =
        String::from("$ kill -STOP $M; kill -9 $(pgrep -P $M); sleep 1; kill -CONT $M\n");
    text.push_str(&normalise(&masters_lines, server.addr.port(), &names));
    snapshot("07-sigkill-two", &text);
}

/// "What breaks": a client that sends half a request holds a sync worker;
/// its heartbeat stops, and at --timeout the master kills it. A fresh
/// request waits until then and is answered by the replacement.
#[test]
fn worker_timeout_transcript() {
    let server = start("workers:app", &["-w", "1", "-t", "3"]);
    let master = server.pid();
    wait_for_workers(master, &[1]);
    let mut slow = server.connect().unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    thread::sleep(Duration::from_millis(300)); // the worker has taken it
    let body = curl(&server, "/");
    assert!(server.wait_for_stderr("\"GET / HTTP/1.1\" 200", IO_TIMEOUT));
    assert!(
        server.stderr().contains("WORKER TIMEOUT"),
        "{}",
        server.stderr()
    );
    let log = server.stderr();
    let names = pid_names(master, &log);
    let mut text = String::from("[... the worker takes the slow client; 3 s later:]\n");
    text.push_str(&normalise(
        &log.lines()
            .skip(2)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        server.addr.port(),
        &names,
    ));
    text.push_str("$ curl http://127.0.0.1:8007/  (sent while the worker was held)\n");
    text.push_str(&renumber(&body, &names));
    drop(slow);
    snapshot("07-worker-timeout", &text);
}

/// An app that cannot be imported: the master stops with status 4 and
/// does not respawn.
#[test]
fn boot_failure_transcript() {
    let output = Command::new(BIN)
        .args([
            "-w",
            "1",
            "--port",
            "0",
            "--chdir",
            "apps",
            "no_such_module:app",
        ])
        .current_dir(root())
        .env_remove("VIRTUAL_ENV")
        .output()
        .expect("run lesson07_prefork");
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let port: u16 = common::addr_in(&stdout).expect("an announce line").port();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let master = stderr
        .split_once("] [")
        .and_then(|(_, rest)| rest.split(']').next())
        .and_then(|pid| pid.parse().ok())
        .expect("the master's pid");
    let names = pid_names(master, &stderr);
    let mut text = normalise(&stdout, port, &names);
    text.push_str(&normalise(&stderr, port, &names));
    text.push_str("$ echo $?\n4\n");
    snapshot("07-boot-failure", &text);
}

/// `python3 apps/fork_threads.py`: what fork() copies (an unflushed
/// buffer, a lock held by a thread that does not come along), and what
/// fork hooks change. Run with the system's python3, as the chapter does.
#[test]
fn fork_threads_transcript() {
    let output = Command::new("python3")
        .arg("apps/fork_threads.py")
        .current_dir(root())
        .env_remove("PYTHONUNBUFFERED")
        .output()
        .expect("run python3 apps/fork_threads.py");
    assert!(output.status.success(), "{output:?}");
    snapshot("07-fork-threads", &String::from_utf8_lossy(&output.stdout));
}
