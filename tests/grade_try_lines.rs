//! Every `try:` line the grader prints works when pasted: against the
//! reference rung, started exactly as the grader's `start:` line (or its
//! last line) says, each command shows what a correct server shows. A
//! `try:` line that names a file the server does not serve (a 404), a URL
//! curl rejects, a command that does not exist or a `?` the shell would
//! glob fails here.
//!
//! The grader lists every `try:` line of every stage, passed or failed, in
//! its JSON report (`tries`: the start command, the command, what it shows).

#[allow(dead_code)] // this file reads whole JSON reports, not `grade`'s summary
mod grade_support;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use grade_support::{Json, parse_json};
use ladder_harness::Server;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Commands a `try:` line may run: the tools README lists, and the shell's
/// own. Each must also be installed (the live check needs them anyway).
const TOOLS: &[&str] = &[
    "awk", "cmp", "curl", "grep", "head", "kill", "ls", "lsof", "nc", "od", "printf", "ps",
    "python3", "seq", "sleep", "tail", "timeout", "tr", "wc", "xargs",
];
const BUILTINS: &[&str] = &["echo", "wait", "kill", "printf"];
const KEYWORDS: &[&str] = &["for", "in", "do", "done", "if", "then", "fi", "while"];

struct Attempt {
    stage: String,
    start: String,
    command: String,
    expect: String,
}

/// `grade --bin BIN EXERCISE --json -`, run from the repository's root;
/// returns the report's start line and every stage's tries.
fn tries_of(exercise: &str, bin: &str) -> (String, Vec<Attempt>) {
    let output = Command::new(env!("CARGO_BIN_EXE_grade"))
        .args(["--bin", bin, exercise, "--json", "-"])
        .current_dir(ROOT)
        .output()
        .expect("grade runs");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let report = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{report}");
    let json = parse_json(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    let start = json
        .get("start")
        .and_then(Json::str)
        .expect("start")
        .to_string();
    let mut attempts = Vec::new();
    for stage in json.get("stages").expect("stages").array() {
        let name = stage.get("name").and_then(Json::str).expect("name");
        let tries = stage.get("tries").expect("tries").array();
        assert!(!tries.is_empty(), "{exercise} {name}: no try: line");
        for attempt in tries {
            let field = |key: &str| attempt.get(key).and_then(Json::str).expect(key).to_string();
            attempts.push(Attempt {
                stage: name.to_string(),
                start: field("start"),
                command: field("command"),
                expect: field("expect"),
            });
        }
    }
    (start, attempts)
}

/// `command` with quoted text blanked out (but `$(…)` inside double quotes
/// kept), and every operator that starts a new command turned into `;`.
fn plain_text(command: &str) -> String {
    let mut plain = String::new();
    let mut chars = command.chars().peekable();
    let mut in_double = false;
    let mut depth_in_double = Vec::new(); // paren depth at which a $( in "…" opened
    let mut depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
                plain.push('_');
            }
            '\'' if !in_double => {
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                }
                plain.push('_');
            }
            '"' => {
                in_double = !in_double;
                plain.push('_');
            }
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                if chars.peek() == Some(&'(') {
                    // $(( arithmetic )): no command inside.
                    let mut level = 1;
                    for q in chars.by_ref() {
                        match q {
                            '(' => level += 1,
                            ')' => level -= 1,
                            _ => {}
                        }
                        if level == 0 {
                            break;
                        }
                    }
                    chars.next();
                    plain.push('_');
                    continue;
                }
                depth += 1;
                if in_double {
                    depth_in_double.push(depth);
                    in_double = false;
                }
                plain.push(';');
            }
            '(' if !in_double => {
                depth += 1;
                plain.push(';');
            }
            ')' if !in_double => {
                if depth_in_double.last() == Some(&depth) {
                    depth_in_double.pop();
                    in_double = true;
                }
                depth = depth.saturating_sub(1);
                // What follows continues the word the `$(…)` stood in.
                plain.push_str(";\u{1}");
            }
            _ if in_double => plain.push('_'),
            '|' | '&' | ';' | '{' | '}' | '\n' => plain.push(';'),
            c => plain.push(c),
        }
    }
    plain
}

/// What the shell would run as commands in `command`: the first word of
/// each simple command.
fn commands_in(command: &str) -> Vec<String> {
    let plain = plain_text(command);
    let mut names = Vec::new();
    for segment in plain.split(';') {
        let mut words = segment.split_whitespace();
        let Some(mut first) = words.next() else {
            continue;
        };
        if first.starts_with('\u{1}') {
            continue;
        }
        // `for i in …`: no command; `do X`: X is.
        if first == "for" {
            continue;
        }
        while KEYWORDS.contains(&first) {
            match words.next() {
                Some(next) => first = next,
                None => break,
            }
        }
        if KEYWORDS.contains(&first) || first.contains('=') || first == "_" {
            continue;
        }
        names.push(first.to_string());
    }
    names
}

/// The checks that need no server: URLs curl accepts, quoting, known tools.
fn lint(exercise: &str, attempt: &Attempt) {
    let command = &attempt.command;
    let at = format!("{exercise} {}: {command}", attempt.stage);
    assert!(!command.contains('\n'), "one line: {at}");
    let syntax = Command::new("bash")
        .args(["-n", "-c", command])
        .output()
        .unwrap();
    assert!(syntax.status.success(), "bash -n rejects {at}");
    let quotes = single_quotes(command);
    for (i, _) in command.match_indices("http://") {
        // A URL inside a quoted payload (`printf 'GET http://…'`) is bytes
        // for the server, not an argument for curl.
        if let Some(open) = quotes[i] {
            if open + 1 != i {
                continue;
            }
        }
        let url: String = command[i..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '\'' && *c != '"')
            .collect();
        let rest = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("a URL on 127.0.0.1: {url} in {at}"));
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        assert!(digits > 0, "a port in {url}: {at}");
        assert!(
            rest[digits..].starts_with('/'),
            "a `/` after the port in {url}: {at}"
        );
        if url.contains(['?', '&', '*', '[']) {
            assert!(
                command[..i].ends_with('\''),
                "{url} holds a character the shell reads: quote it: {at}"
            );
        }
    }
    // No comment: zsh (without interactive_comments) would run it as words.
    assert!(
        !plain_text(command)
            .split_whitespace()
            .any(|w| w.starts_with('#')),
        "a shell comment: {at}"
    );
    // Functions the line defines (`t() { … }`) are commands too.
    let defined: Vec<&str> = command
        .split_whitespace()
        .filter_map(|w| w.strip_suffix("()"))
        .collect();
    for name in commands_in(command) {
        assert!(
            TOOLS.contains(&name.as_str())
                || BUILTINS.contains(&name.as_str())
                || defined.contains(&name.as_str()),
            "unknown command {name:?} in {at}"
        );
    }
    // The start line names only paths that exist (from the root, where
    // grade ran).
    let words: Vec<&str> = attempt.start.split_whitespace().collect();
    for pair in words.windows(2) {
        if ["-d", "--directory", "--cgi-dir"].contains(&pair[0]) {
            let dir = Path::new(ROOT).join(pair[1]);
            assert!(dir.is_dir(), "{} in {}", pair[1], attempt.start);
        }
    }
}

/// For each byte of `command`: where the single-quoted string it is in
/// opened, if it is in one.
fn single_quotes(command: &str) -> Vec<Option<usize>> {
    let mut mask = vec![None; command.len()];
    let mut open = None;
    let mut in_double = false;
    let bytes = command.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], open) {
            (b'\'', Some(_)) => open = None,
            (_, Some(at)) => mask[i] = Some(at),
            (b'\\', None) => i += 1,
            (b'"', None) => in_double = !in_double,
            (b'\'', None) if !in_double => open = Some(i),
            _ => {}
        }
        i += 1;
    }
    mask
}

/// `text` with the default port `from` replaced by `to` where it stands as a
/// number of its own.
fn with_port(text: &str, from: u16, to: u16) -> String {
    let from = from.to_string();
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(&from) {
        let before = rest[..i].chars().last();
        let after = rest[i + from.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(|c| c.is_ascii_digit()) || after.is_some_and(|c| c.is_ascii_digit()) {
            out.push_str(&from);
        } else {
            out.push_str(&to.to_string());
        }
        rest = &rest[i + from.len()..];
    }
    out.push_str(rest);
    out
}

/// Does `output` hold a status line with `code` (`HTTP/1.1 200 OK`, or
/// curl -v's `< HTTP/1.1 200 OK`)?
fn shows_status(output: &str, code: &str) -> bool {
    output.lines().any(|line| {
        let line = line.trim_start_matches("< ");
        let mut words = line.split_whitespace();
        words.next().is_some_and(|w| w.starts_with("HTTP/1.")) && words.next() == Some(code)
    })
}

/// Start the reference as `start` says (its first word is the binary, since
/// grade ran with --bin), on a free port, from the repository's root; run
/// the command in bash against it, and check what it shows.
///
/// `others`: default ports the start line or the command name besides the
/// server's own (ex08's upstreams), each put on a free port of this run.
fn run_live(exercise: &str, port: u16, attempt: &Attempt, others: &[u16]) {
    // A `try:` line waits with `sleep`s, as a student's terminal would; on a
    // crowded CI machine one of them can come up short. So a line that fails
    // is run once more before it counts, and its first failure is printed.
    if let Err(first) = try_live(exercise, port, attempt, others) {
        eprintln!("a try: line failed once; running it again. It said:\n{first}");
        if let Err(second) = try_live(exercise, port, attempt, others) {
            panic!("{second}\n(and the same line failed before: see above)");
        }
    }
}

/// One run of [`run_live`]: what went wrong, if anything did.
fn try_live(exercise: &str, port: u16, attempt: &Attempt, others: &[u16]) -> Result<(), String> {
    let at = format!(
        "{exercise} {}:\n  start: {}\n  try:   {}",
        attempt.stage, attempt.start, attempt.command
    );
    let moved: Vec<(u16, u16)> = others.iter().map(|&p| (p, free_port())).collect();
    let elsewhere = |text: &str| {
        moved.iter().fold(text.to_string(), |text, &(from, to)| {
            with_port(&text, from, to)
        })
    };
    let start = elsewhere(&attempt.start);
    let mut words = start.split_whitespace();
    let program = words.next().expect("a program");
    let args: Vec<&str> = words.collect();
    let port_at = args.iter().position(|a| *a == "--port").expect("--port");
    assert_eq!(args[port_at + 1], port.to_string(), "{at}");
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args[port_at + 1] = "0".into();
    let mut command = Command::new(Path::new(ROOT).join(program));
    command.args(&args).current_dir(ROOT);
    let mut server = Server::spawn(command).unwrap_or_else(|e| panic!("{e}\n{at}"));
    let real = server.addr.port();
    let shell = with_port(&elsewhere(&attempt.command), port, real);

    let out_file = std::env::temp_dir().join(format!(
        "grade-try-{}-{exercise}-{real}.out",
        std::process::id()
    ));
    let out = fs::File::create(&out_file).unwrap();
    let mut child = Command::new("bash")
        .args(["-c", &shell])
        .current_dir(ROOT)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // The command's background jobs (a client holding a connection) go too.
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    let output = String::from_utf8_lossy(&fs::read(&out_file).unwrap()).into_owned();
    let _ = fs::remove_file(&out_file);
    let at = format!(
        "{at}\n  ran:   {shell}\n  exit:  {status:?}\n  output:\n{output}\n  server stderr:\n{}",
        server.stderr()
    );
    let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
    check(
        status.is_some(),
        format!("the command did not end within 40 s: {at}"),
    )?;
    let expect = attempt.expect.as_str();
    if let Some(code) = expect.strip_prefix("status ") {
        check(
            shows_status(&output, code),
            format!("no status {code} shown: {at}"),
        )
    } else if let Some(text) = expect.strip_prefix("shows ") {
        check(output.contains(text), format!("{text:?} not shown: {at}"))
    } else if expect == "exit 0" {
        check(
            status.is_some_and(|s| s.success()),
            format!("exit status: {at}"),
        )
    } else if let Some(rest) = expect.strip_prefix("server exits 0") {
        if let Some(text) = rest.strip_prefix(" and shows ") {
            check(output.contains(text), format!("{text:?} not shown: {at}"))?;
        }
        let exit = server.wait_exit(Duration::from_secs(10));
        check(
            exit.is_some_and(|s| s.success()),
            format!("server exit {exit:?}: {at}"),
        )
    } else {
        panic!("unknown expectation {expect:?}: {at}");
    }
}

/// The tools the live check runs; missing ones skip it (README, "Optional tools").
fn tools_missing() -> Option<String> {
    let missing: Vec<&str> = ["curl", "nc", "lsof", "python3", "bash"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// A port nothing listens on now (the kernel's pick, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn check_exercise(exercise: &str, port: u16, bin: &str) {
    check_exercise_beside(exercise, port, bin, &[]);
}

/// [`check_exercise`] for an exercise whose start lines and `try:` lines
/// also name the default ports `others` (ex08: the upstreams, which each
/// `try:` line runs itself), moved to free ports here.
fn check_exercise_beside(exercise: &str, port: u16, bin: &str, others: &[u16]) {
    let (start, attempts) = tries_of(exercise, bin);
    // The last line's command: the reference binary, the default port, then
    // the exercise's fixtures; each stage's start line begins the same way.
    // (grade shows a path inside the repository relative to where it ran.)
    let shown = bin.strip_prefix(&format!("{ROOT}/")).unwrap_or(bin);
    assert!(
        start.starts_with(&format!("{shown} --port {port}")),
        "{start}"
    );
    for attempt in &attempts {
        assert!(
            attempt.start.starts_with(&start),
            "{} vs {start}",
            attempt.start
        );
        lint(exercise, attempt);
    }
    if let Some(missing) = tools_missing() {
        ladder_harness::skipped(&missing, "running the grader's try: lines");
        return;
    }
    for attempt in &attempts {
        run_live(exercise, port, attempt, others);
    }
}

#[test]
fn ex01_try_lines_work_against_lesson01() {
    check_exercise("ex01_echo", 8001, env!("CARGO_BIN_EXE_lesson01_echo"));
}

#[test]
fn ex02_try_lines_work_against_lesson02() {
    check_exercise("ex02_hello", 8002, env!("CARGO_BIN_EXE_lesson02_hello"));
}

#[test]
fn ex03_try_lines_work_against_lesson03() {
    check_exercise("ex03_cgi", 8003, env!("CARGO_BIN_EXE_lesson03_cgi"));
}

#[test]
fn ex04_try_lines_work_against_lesson04() {
    check_exercise(
        "ex04_http_server",
        8004,
        env!("CARGO_BIN_EXE_lesson04_http_server"),
    );
}

#[test]
fn ex05_try_lines_work_against_lesson05() {
    check_exercise("ex05_epoll", 8005, env!("CARGO_BIN_EXE_lesson05_epoll"));
}

#[test]
fn ex06_try_lines_work_against_lesson06() {
    check_exercise("ex06_wsgi", 8006, env!("CARGO_BIN_EXE_lesson06_wsgi"));
}

#[cfg(feature = "python")]
#[test]
fn ex07_try_lines_work_against_lesson07() {
    check_exercise("ex07_prefork", 8007, env!("CARGO_BIN_EXE_lesson07_prefork"));
}

#[test]
fn ex08_try_lines_work_against_lesson08() {
    // Its try: lines bring their own upstream (`nc -l`) on 8005 or 8105.
    check_exercise_beside(
        "ex08_proxy",
        8008,
        env!("CARGO_BIN_EXE_lesson08_proxy"),
        &[8005, 8105],
    );
}

#[test]
fn the_lint_catches_what_the_issue_found() {
    let attempt = |command: &str| Attempt {
        stage: "s".into(),
        start: "x --port 8005".into(),
        command: command.into(),
        expect: "status 200".into(),
    };
    let fails = |command: &str| std::panic::catch_unwind(|| lint("ex", &attempt(command))).is_err();
    assert!(fails("curl -v http://127.0.0.1:8005hello"), "no slash");
    assert!(
        fails("curl -v http://127.0.0.1:8003/a?x=1&y=2"),
        "unquoted & and ?"
    );
    assert!(fails("kill -TERM <pid>"), "a placeholder is no command");
    assert!(
        fails("frobnicate http://127.0.0.1:8005/"),
        "unknown command"
    );
    assert!(
        fails("curl -v http://127.0.0.1:8005/ # look"),
        "a comment zsh would run"
    );
    assert!(!fails(
        "curl -v 'http://127.0.0.1:8005/count?to=3' | tail -2"
    ));
    assert!(!fails(
        "echo \"answers: $( (printf 'a'; head -c 1 /dev/zero) | nc -q 2 127.0.0.1 8005 | grep -c x)\""
    ));
}
