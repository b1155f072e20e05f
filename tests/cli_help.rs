//! Every binary's `--help`, snapshotted with insta (STYLE §10, §11).
//!
//! `--help` is text for humans, and the lessons tell students to read it, so
//! a change to a flag shows up here as a snapshot diff to review
//! (`tests/snapshots/cli_help__NAME.snap`).
//!
//! Cargo only tells a test where a binary is through `CARGO_BIN_EXE_<name>`,
//! which `env!` reads at compile time, so the binaries are listed by hand.
//! When a binary lands, add its line to `BINARIES` and run
//! `INSTA_UPDATE=always cargo test --test cli_help` once; the coverage test
//! below fails until every binary in `src/bin/` is listed or excused.

use std::path::Path;
use std::process::Command;

/// `(name, path)` of every binary whose `--help` is snapshotted. One line each:
/// `("lesson01_echo", env!("CARGO_BIN_EXE_lesson01_echo")),`
const BINARIES: &[(&str, &str)] = &[
    ("lesson01_echo", env!("CARGO_BIN_EXE_lesson01_echo")),
    ("lesson02_hello", env!("CARGO_BIN_EXE_lesson02_hello")),
    ("lesson03_cgi", env!("CARGO_BIN_EXE_lesson03_cgi")),
    (
        "lesson04_http_server",
        env!("CARGO_BIN_EXE_lesson04_http_server"),
    ),
    ("lesson05_epoll", env!("CARGO_BIN_EXE_lesson05_epoll")),
    #[cfg(feature = "python")]
    ("lesson06_wsgi", env!("CARGO_BIN_EXE_lesson06_wsgi")),
    #[cfg(feature = "python")]
    ("lesson07_prefork", env!("CARGO_BIN_EXE_lesson07_prefork")),
    ("lesson08_proxy", env!("CARGO_BIN_EXE_lesson08_proxy")),
    ("grade", env!("CARGO_BIN_EXE_grade")),
    ("loadgen", env!("CARGO_BIN_EXE_loadgen")),
];

/// Binaries that do not take `--help` (yet), with the reason. Keep it short.
#[cfg(feature = "python")]
const NO_HELP: &[(&str, &str)] = &[];
#[cfg(not(feature = "python"))]
const NO_HELP: &[(&str, &str)] = &[
    ("lesson06_wsgi", "needs the python feature"),
    ("lesson07_prefork", "needs the python feature"),
];

/// What a rung needs on its command line besides the port: rungs 6 and 7
/// serve an app, and without one they would stop at the missing argument.
fn required_args(name: &str) -> &'static [&'static str] {
    match name {
        "lesson06_wsgi" | "lesson07_prefork" => &[
            "--chdir",
            concat!(env!("CARGO_MANIFEST_DIR"), "/apps"),
            "hello:app",
        ],
        "lesson08_proxy" => &["--upstream", "127.0.0.1:1"],
        _ => &[],
    }
}

/// `--help` exits 0 and prints a usage line; the text is snapshotted.
#[test]
fn help_texts() {
    for (name, path) in BINARIES {
        let output = Command::new(path)
            .arg("--help")
            // clap wraps help to the terminal width; fix it so the snapshot
            // is the same in a terminal, in CI, and on any machine.
            .env("COLUMNS", "100")
            .output()
            .expect("run the binary");
        assert!(
            output.status.success(),
            "{name} --help: {:?}",
            output.status
        );
        let text = String::from_utf8(output.stdout).expect("--help is UTF-8");
        assert!(text.contains("Usage:"), "{name} --help has no usage line");
        insta::assert_snapshot!(*name, text);
    }
}

/// Every binary in `src/bin/` (a file or a directory with `main.rs`) is in
/// `BINARIES` or excused in `NO_HELP`, and neither list names a missing one.
#[test]
fn every_binary_is_listed() {
    let bin_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin");
    let mut on_disk: Vec<String> = std::fs::read_dir(&bin_dir)
        .expect("src/bin exists")
        .map(|entry| entry.expect("read src/bin").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs") || p.join("main.rs").is_file())
        .filter_map(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = BINARIES
        .iter()
        .map(|b| b.0)
        .chain(NO_HELP.iter().map(|b| b.0))
        .map(String::from)
        .collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "src/bin/ (left) and the BINARIES + NO_HELP lists in tests/cli_help.rs (right) differ"
    );
}

/// Every server rung refuses a port that is taken with the same sentence,
/// from `ladder::cli::bind_error`: the address, the error, what to try next;
/// and exit status 1. (The port is held by a listener of this test itself.)
#[test]
fn a_taken_port_gets_the_same_advice_on_every_rung() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for (name, path) in BINARIES.iter().filter(|(n, _)| n.starts_with("lesson")) {
        let output = Command::new(path)
            .args(["--port", &port])
            .args(required_args(name))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        let want = format!("binding 127.0.0.1:{port}: Address already in use");
        let hint = format!("is another {name} running? try --port 0");
        assert!(
            stderr.contains(&want) && stderr.contains(&hint),
            "{name}: {stderr}"
        );
    }
}
