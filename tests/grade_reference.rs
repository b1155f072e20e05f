//! The graders and the reference rungs are one set of checks: every stage of
//! exercise NN passes on `lessonNN`, and the untouched skeleton fails (its
//! first stage included), built the way a student builds it (`cargo grade
//! exNN`, which runs a nested `cargo build -p exercises`).

mod grade_support;

use grade_support::{grade, xml_elements};

fn assert_all_pass(exercise: &str, bin: &str) {
    let graded = grade(&["--bin", bin, exercise]);
    assert!(
        graded.stages.len() >= 8,
        "{exercise}: too few stages: {:?}",
        graded.stages
    );
    assert_eq!(graded.failed(), Vec::<&str>::new(), "{}", graded.report);
    assert_eq!(graded.status, Some(0), "{}", graded.report);
    assert!(
        graded
            .report
            .ends_with(&format!("{} passed, 0 failed\n", graded.stages.len()))
    );
}

fn assert_skeleton_fails(exercise: &str) {
    // No --bin: grade builds exercises/src/bin/exNN_*.rs itself.
    let graded = grade(&[exercise]);
    assert_eq!(graded.status, Some(1), "{}", graded.report);
    let first = &graded.stages[0].0;
    assert!(
        graded.failed().contains(&first.as_str()),
        "the skeleton must fail the first stage:\n{}",
        graded.report
    );
    assert!(
        graded.report.contains("not yet implemented"),
        "{}",
        graded.report
    );
    // The way to start the server for the try: lines, and the progress line.
    let name = graded
        .report
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1);
    let name = name.expect("`grading exNN_name against …`");
    assert!(
        graded
            .report
            .contains(&format!("\n  cargo ex {name} -- --port 80")),
        "{}",
        graded.report
    );
    assert!(
        graded.report.contains("\nholes: 0 of "),
        "{}",
        graded.report
    );
}

#[test]
fn lesson01_passes_every_ex01_stage() {
    assert_all_pass("ex01", env!("CARGO_BIN_EXE_lesson01_echo"));
}

#[test]
fn lesson02_passes_every_ex02_stage() {
    assert_all_pass("ex02_hello", env!("CARGO_BIN_EXE_lesson02_hello"));
}

#[test]
fn lesson03_passes_every_ex03_stage() {
    assert_all_pass("ex03_cgi", env!("CARGO_BIN_EXE_lesson03_cgi"));
}

#[test]
fn lesson04_passes_every_ex04_stage() {
    assert_all_pass(
        "ex04_http_server",
        env!("CARGO_BIN_EXE_lesson04_http_server"),
    );
}

#[test]
fn the_ex04_skeleton_fails() {
    assert_skeleton_fails("ex04");
}

#[test]
fn the_ex01_skeleton_fails() {
    assert_skeleton_fails("ex01");
}

#[test]
fn the_ex02_skeleton_fails() {
    assert_skeleton_fails("ex02");
}

#[test]
fn the_ex03_skeleton_fails() {
    assert_skeleton_fails("ex03");
}

#[test]
fn a_failing_run_writes_well_formed_junit() {
    // The echo stages against the HTTP rung: it answers "ping" with a 400,
    // so most stages fail, with bytes and quotes in every failure message.
    let dir = std::env::temp_dir().join(format!("grade-junit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let xml_path = dir.join("report.xml");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_grade"))
        .args([
            "ex01",
            "--bin",
            env!("CARGO_BIN_EXE_lesson02_hello"),
            "--junit",
        ])
        .arg(&xml_path)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(1));
    let xml = std::fs::read_to_string(&xml_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let elements = xml_elements(&xml).unwrap_or_else(|e| panic!("{e}:\n{xml}"));
    let count = |name: &str| elements.iter().filter(|e| *e == name).count();
    assert_eq!(count("testsuite"), 1);
    assert_eq!(count("testcase"), 9);
    assert!(count("failure") >= 1, "{xml}");
}

#[test]
fn list_and_help_name_the_stages_and_examples() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_grade"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let list = run(&["--list"]);
    assert!(
        list.contains("ex01_echo") && list.contains("echo_large"),
        "{list}"
    );
    assert!(
        list.contains("ex02_hello") && list.contains("status_line_crlf"),
        "{list}"
    );
    assert!(
        list.contains("  hole 1 of 4: socket_setup (exercises/src/bin/ex01_echo.rs:"),
        "{list}"
    );
    // The grader's own self-check is for maintainers: reachable by name only.
    assert!(!list.contains("demo_concurrency"), "{list}");
    assert!(run(&["--list", "demo_concurrency"]).contains("serves_while_busy"));
    // One column for the titles, however long a stage's name.
    let titles: Vec<usize> = list
        .lines()
        .filter(|l| l.starts_with("    "))
        .map(|l| {
            let name_end = 4 + l[4..].find(' ').expect("a title");
            name_end + l[name_end..].find(|c: char| c != ' ').expect("a title")
        })
        .collect();
    assert!(titles.len() > 40, "{list}");
    assert!(titles.windows(2).all(|w| w[0] == w[1]), "{list}");
    assert!(
        list.contains("ex06_wsgi") && list.contains("close_on_client_gone"),
        "{list}"
    );
    let help = run(&["--help"]);
    assert!(
        help.contains("cargo grade ex01") && help.contains("--junit"),
        "{help}"
    );
}

#[test]
fn lesson05_passes_every_ex05_stage() {
    assert_all_pass("ex05", env!("CARGO_BIN_EXE_lesson05_epoll"));
}

#[test]
fn the_ex05_skeleton_fails() {
    assert_skeleton_fails("ex05");
}

// Rung 6 embeds CPython: its binary exists with the default feature `python`.
#[cfg(feature = "python")]
#[test]
fn lesson06_passes_every_ex06_stage() {
    assert_all_pass("ex06", env!("CARGO_BIN_EXE_lesson06_wsgi"));
}

#[cfg(feature = "python")]
#[test]
fn the_ex06_skeleton_fails() {
    assert_skeleton_fails("ex06");
}

// Rung 7 forks workers that embed CPython (the default feature `python`).
#[cfg(feature = "python")]
#[test]
fn lesson07_passes_every_ex07_stage() {
    assert_all_pass("ex07", env!("CARGO_BIN_EXE_lesson07_prefork"));
}

#[cfg(feature = "python")]
#[test]
fn the_ex07_skeleton_fails() {
    assert_skeleton_fails("ex07");
}

#[test]
fn lesson08_passes_every_ex08_stage() {
    assert_all_pass("ex08", env!("CARGO_BIN_EXE_lesson08_proxy"));
}

#[test]
fn the_ex08_skeleton_fails() {
    assert_skeleton_fails("ex08");
}
