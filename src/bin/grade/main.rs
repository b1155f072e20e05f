//! # `grade`: run an exercise's stages against a server, and say what failed
//!
//! A tool, not a lesson. `cargo grade ex01` builds the skeleton
//! `exercises/src/bin/ex01_echo.rs`, starts it on port 0 once per stage, and
//! checks it over real sockets, the same way on a laptop and in CI. Each
//! failing stage shows what was sent, what came back (with `\r\n` visible),
//! what was expected, a hint, and a command to reproduce it by hand.
//!
//! The stages of exercise NN live in `exNN_name.rs` beside this file; the
//! reference rung's integration test runs the same stages
//! (`tests/grade_reference.rs`), so the lesson and the grader cannot disagree.
//! To add an exercise: write `exNN_name.rs` (see `runner.rs` for the API),
//! then add `mod exNN_name;` below and `exNN_name::EXERCISE` to `EXERCISES`.

// A stage's `Err(Failure)` carries the whole transcript, and failures are the
// rare path: a large error type costs nothing that matters here, and boxing
// it would make every stage author write `Box::new`.
#![allow(clippy::result_large_err)]

mod checks;
mod fixtures;
mod report;
mod runner;

mod demo_concurrency;
mod ex01_echo;
mod ex02_hello;
mod ex03_cgi;
mod ex04_http_server;
mod ex05_epoll;
mod ex06_wsgi;
mod ex07_prefork;
mod ex08_proxy;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::Parser;

use runner::{Exercise, Stage};

/// Every exercise `grade` knows, in ladder order.
const EXERCISES: &[Exercise] = &[
    ex01_echo::EXERCISE,
    ex02_hello::EXERCISE,
    ex03_cgi::EXERCISE,
    ex04_http_server::EXERCISE,
    ex05_epoll::EXERCISE,
    ex06_wsgi::EXERCISE,
    ex07_prefork::EXERCISE,
    ex08_proxy::EXERCISE,
    demo_concurrency::EXERCISE,
];

const EXAMPLES: &str = "\
Examples:
  cargo grade ex01                      build exercises/src/bin/ex01_echo.rs and grade it
  cargo grade ex01_echo --stage echo_large
                                        run one stage
  cargo grade ex01 --bin target/debug/lesson01_echo
                                        grade another binary (here: the reference)
  cargo grade ex02 --junit report.xml   also write JUnit XML (for CI)
  cargo grade ex02 --json -             JSON on stdout, the report on stderr
  cargo grade --list                    every exercise and its stages

Exit status: 0 if every stage passed, 1 if one failed, 2 on a usage or build error.";

/// Grade an exercise: start your server once per stage and check it over
/// real sockets. Prints PASS/FAIL per stage, with what was sent, what came
/// back, a hint and a command to reproduce each failure; the last line is
/// `N passed, M failed`.
#[derive(Parser)]
#[command(name = "grade", after_help = EXAMPLES)]
struct Args {
    /// The exercise: `ex01` or its full name `ex01_echo`
    #[arg(required_unless_present = "list")]
    exercise: Option<String>,

    /// Grade this executable instead of building the exercise
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,

    /// Run only this stage (see --list)
    #[arg(long, value_name = "NAME")]
    stage: Option<String>,

    /// List the exercises and their stages, and exit
    #[arg(long)]
    list: bool,

    /// Also write a JSON report to FILE (`-`: stdout; the report then goes to stderr)
    #[arg(long, value_name = "FILE")]
    json: Option<String>,

    /// Also write a JUnit XML report to FILE
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        list(args.exercise.as_deref());
        return ExitCode::SUCCESS;
    }
    let Some(name) = args.exercise.as_deref() else {
        eprintln!("grade: name an exercise (see --list)");
        return ExitCode::from(2);
    };
    let Some(exercise) = find(name) else {
        eprintln!("grade: no exercise {name:?}; these exist:");
        for exercise in EXERCISES.iter().filter(|e| e.listed) {
            eprintln!("  {}", exercise.name);
        }
        return ExitCode::from(2);
    };
    let stages: Vec<&'static Stage> = match &args.stage {
        None => exercise.stages.iter().collect(),
        Some(wanted) => match exercise.stages.iter().find(|s| s.name == wanted) {
            Some(stage) => vec![stage],
            None => {
                eprintln!("grade: {} has no stage {wanted:?}; it has:", exercise.name);
                for stage in exercise.stages {
                    eprintln!("  {}", stage.name);
                }
                return ExitCode::from(2);
            }
        },
    };

    let shown_bin = args
        .bin
        .as_ref()
        .map(|p| fixtures::shown(&p.display().to_string()));
    let launch = report::Launch::new(exercise, shown_bin.as_deref());
    let built = match &args.bin {
        Some(path) if path.is_file() => Ok(path.clone()),
        Some(path) => {
            eprintln!("grade: {} is not a file", path.display());
            return ExitCode::from(2);
        }
        None => build(exercise.name),
    };
    let (bin, outcomes) = match built {
        Ok(bin) => {
            let outcomes = runner::run_stages(&bin, exercise, &stages);
            (bin, outcomes)
        }
        Err(why) => {
            eprintln!("grade: could not build {}: {why}", exercise.name);
            eprintln!("Fix the compile errors above, then run `cargo grade {name}` again.");
            // Still report every stage (as failed), so that CI shows a score.
            let why = format!("{} did not build: {why}", exercise.name);
            (PathBuf::from(exercise.name), runner::not_run(&stages, &why))
        }
    };
    let binary = bin.display().to_string();
    let human = report::human(exercise, &binary, &outcomes, &launch);
    let json_to_stdout = args.json.as_deref() == Some("-");
    if json_to_stdout {
        eprint!("{human}");
    } else {
        print!("{human}");
    }
    let mut ok = true;
    if let Some(target) = &args.json {
        let text = report::json(exercise, &binary, &outcomes, &launch);
        ok &= write_report(target, &text);
    }
    if let Some(target) = &args.junit {
        let text = report::junit(exercise, &binary, &outcomes, &launch);
        ok &= write_report(&target.to_string_lossy(), &text);
    }
    if !ok {
        return ExitCode::from(2);
    }
    if outcomes.iter().all(|o| o.failure.is_none()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `ex01` or `ex01_echo` (or a unique prefix).
fn find(name: &str) -> Option<&'static Exercise> {
    if let Some(exact) = EXERCISES.iter().find(|e| e.name == name) {
        return Some(exact);
    }
    let mut matches = EXERCISES
        .iter()
        .filter(|e| e.name.starts_with(&format!("{name}_")));
    match (matches.next(), matches.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// The exercises (or the one named, even the grader's own self-check),
/// their holes and the stages of each, the names in one column.
fn list(only: Option<&str>) {
    let shown: Vec<&Exercise> = EXERCISES
        .iter()
        .filter(|e| match only {
            Some(name) => find(name).map(|f| f.name) == Some(e.name),
            None => e.listed,
        })
        .collect();
    let width = shown
        .iter()
        .flat_map(|e| e.stages.iter().map(|s| s.name.len()))
        .max()
        .unwrap_or(0);
    for (i, exercise) in shown.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}  (reference: {})", exercise.name, exercise.lesson);
        let mut hole_shown = usize::MAX;
        for stage in exercise.stages {
            if stage.hole != hole_shown && !exercise.holes.is_empty() {
                hole_shown = stage.hole;
                if let Some(anchor) = exercise.holes.get(stage.hole.wrapping_sub(1)) {
                    let at = report::hole_at(exercise, anchor);
                    let n = exercise.holes.len();
                    println!("  hole {} of {n}: {anchor} ({at})", stage.hole);
                }
            }
            println!("    {:<width$}  {}", stage.name, stage.title);
        }
    }
}

fn write_report(target: &str, text: &str) -> bool {
    let result = if target == "-" {
        std::io::stdout().lock().write_all(text.as_bytes())
    } else {
        fs::write(target, text)
    };
    match result {
        Ok(()) => true,
        Err(err) => {
            eprintln!("grade: cannot write {target}: {err}");
            false
        }
    }
}

/// Build the exercise binary with cargo and return its path. The compiler's
/// messages go to our stderr as usual; the path comes from cargo's JSON
/// artifact messages on stdout, so a custom target directory works too.
fn build(name: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(cargo)
        .args(["build", "-q", "-p", "exercises", "--bin", name])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo build failed ({})", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    executable_of(&stdout, name).ok_or_else(|| "cargo reported no executable".to_string())
}

/// Find `"executable":"…"` in the `compiler-artifact` message for bin `name`.
fn executable_of(messages: &str, name: &str) -> Option<PathBuf> {
    let target = format!("\"name\":\"{name}\"");
    messages
        .lines()
        .filter(|line| line.contains("\"reason\":\"compiler-artifact\"") && line.contains(&target))
        .find_map(|line| {
            let start = line.find("\"executable\":\"")? + "\"executable\":\"".len();
            let mut path = String::new();
            let mut chars = line[start..].chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => return Some(PathBuf::from(path)),
                    '\\' => path.push(chars.next()?),
                    c => path.push(c),
                }
            }
            None
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_full_names_find_the_exercise() {
        assert_eq!(find("ex01").map(|e| e.name), Some("ex01_echo"));
        assert_eq!(find("ex01_echo").map(|e| e.name), Some("ex01_echo"));
        assert!(find("ex9").is_none());
    }

    #[test]
    fn stage_names_are_unique_per_exercise() {
        for exercise in EXERCISES {
            let mut names: Vec<_> = exercise.stages.iter().map(|s| s.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), exercise.stages.len(), "{}", exercise.name);
        }
    }

    #[test]
    fn every_hole_has_stages_in_order_and_every_stage_a_hole() {
        for exercise in EXERCISES.iter().filter(|e| e.listed) {
            let holes: Vec<usize> = exercise.stages.iter().map(|s| s.hole).collect();
            // Stages run hole by hole, so that each hole filled passes the
            // next stages in the report.
            assert!(holes.windows(2).all(|w| w[0] <= w[1]), "{}", exercise.name);
            for hole in 1..=exercise.holes.len() {
                assert!(
                    holes.contains(&hole),
                    "{}: no stage for hole {hole}",
                    exercise.name
                );
            }
            assert!(
                holes.iter().all(|h| (1..=exercise.holes.len()).contains(h)),
                "{}",
                exercise.name
            );
        }
    }

    #[test]
    fn ordinals_read_as_english() {
        let words: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22].map(runner::ordinal).into();
        assert_eq!(
            words,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"
            ]
        );
    }

    #[test]
    fn the_executable_is_read_from_cargo_json() {
        let messages = "{\"reason\":\"compiler-artifact\",\"target\":{\"name\":\"ex01_echo\"},\"executable\":\"/t/a \\\"b\\\"/ex01_echo\",\"fresh\":true}\n{\"reason\":\"build-finished\",\"success\":true}";
        assert_eq!(
            executable_of(messages, "ex01_echo"),
            Some(PathBuf::from("/t/a \"b\"/ex01_echo"))
        );
        assert_eq!(executable_of(messages, "ex02_hello"), None);
    }
}
