//! The report writers: for people (a terminal, a CI log), JSON for scripts,
//! JUnit XML for CI systems that show test results. Hand-written, because
//! all three are small and the escaping rules are the whole difficulty.

use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use crate::fixtures;
use crate::runner::{Exercise, Outcome, shell_word, shown};

/// How many bytes of a transcript the human report shows.
const SHOW: usize = 600;

/// How to start the server by hand, as the report's `start:` lines and its
/// last line say: `cargo ex NAME --` (or the `--bin` given), the default
/// port, the exercise's flags (paths shown relative to the current
/// directory), then a stage's own.
pub struct Launch {
    pub prefix: String,
    pub port: u16,
    pub base_args: Vec<String>,
}

impl Launch {
    pub fn new(exercise: &Exercise, bin: Option<&str>) -> Launch {
        let prefix = match bin {
            Some(path) => shell_word(path),
            None => format!("cargo ex {} --", exercise.name),
        };
        Launch {
            prefix,
            port: exercise.port,
            base_args: (exercise.args)(),
        }
    }

    /// The command line, with `extra_args` after the exercise's flags.
    pub fn line(&self, extra_args: &[String]) -> String {
        let mut line = format!("{} --port {}", self.prefix, self.port);
        for arg in self.base_args.iter().chain(extra_args) {
            line.push(' ');
            line.push_str(&shell_word(&fixtures::shown(arg)));
        }
        line
    }
}

/// Where hole `anchor` of `exercise` is: `exercises/src/bin/ex01_echo.rs:108`,
/// the first `// TODO` line of its region (the line the exercise's README
/// names), else the line after its `// ANCHOR:` line; relative to the
/// current directory.
pub fn hole_at(exercise: &Exercise, anchor: &str) -> String {
    let bin = fixtures::repo().join("exercises/src/bin");
    let (start, end) = (
        format!("// ANCHOR: {anchor}"),
        format!("// ANCHOR_END: {anchor}"),
    );
    let find = |file: &std::path::Path| {
        let text = fs::read_to_string(file).ok()?;
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let at = lines.iter().position(|l| *l == start)?;
        let todo = lines[at..]
            .iter()
            .take_while(|l| **l != end)
            .position(|l| l.starts_with("// TODO"));
        Some(at + todo.unwrap_or(1) + 1)
    };
    // An exercise is one file, or a directory (ex06: the lesson's `main.rs`
    // and the student's copy of a library module, where the holes are).
    let single = bin.join(format!("{}.rs", exercise.name));
    let in_dir = fs::read_dir(bin.join(exercise.name))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| find(path).is_some());
    let file = in_dir.unwrap_or(single);
    let line = find(&file);
    let shown = fixtures::shown(&file.display().to_string());
    match line {
        Some(line) => format!("{shown}:{line}"),
        None => shown,
    }
}

/// How many holes are reached: the largest N such that every stage of holes
/// 1..=N passed. `None` unless every stage ran.
pub fn holes_reached(exercise: &Exercise, outcomes: &[Outcome]) -> Option<usize> {
    if exercise.holes.is_empty() || outcomes.len() != exercise.stages.len() {
        return None;
    }
    let mut reached = 0;
    for hole in 1..=exercise.holes.len() {
        let mut of_hole = outcomes.iter().filter(|o| o.hole == hole).peekable();
        if of_hole.peek().is_none() || !of_hole.all(|o| o.failure.is_none()) {
            break;
        }
        reached = hole;
    }
    Some(reached)
}

/// The report for people. The last line is exactly `N passed, M failed`;
/// the one before it says how many holes are reached.
pub fn human(exercise: &Exercise, binary: &str, outcomes: &[Outcome], launch: &Launch) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "grading {} against {binary}", exercise.name);
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
    let holes = exercise.holes.len();
    let mut hole_shown = usize::MAX;
    if holes == 0 {
        let _ = writeln!(out);
    }
    for (i, outcome) in outcomes.iter().enumerate() {
        if holes > 0 && outcome.hole != hole_shown {
            hole_shown = outcome.hole;
            let anchor = exercise.holes.get(outcome.hole.wrapping_sub(1)).copied();
            let _ = writeln!(out);
            if let Some(anchor) = anchor {
                let at = hole_at(exercise, anchor);
                let _ = writeln!(out, "hole {} of {holes}: {anchor} ({at})", outcome.hole);
            }
        }
        let mark = if outcome.failure.is_none() {
            "PASS"
        } else {
            "FAIL"
        };
        let _ = writeln!(out, "{mark}  {:<width$}  {}", outcome.name, outcome.title);
        let Some(failure) = &outcome.failure else {
            continue;
        };
        // A server that does not start fails every stage the same way: say
        // it once.
        let same = outcomes[..i].iter().find(|o| {
            o.failure.as_ref().is_some_and(|f| {
                f.expected == failure.expected
                    && !f.detail.is_empty()
                    && without_digits(&f.detail) == without_digits(&failure.detail)
            })
        });
        if let Some(earlier) = same {
            let _ = writeln!(out, "      (the same failure as {})", earlier.name);
            let _ = writeln!(out);
            continue;
        }
        let field = |out: &mut String, label: &str, text: &str| {
            let mut lines = text.lines();
            let _ = writeln!(out, "      {label:<9} {}", lines.next().unwrap_or(""));
            for line in lines {
                let _ = writeln!(out, "      {:<9} {line}", "");
            }
        };
        field(&mut out, "expected:", &failure.expected);
        if !failure.detail.is_empty() {
            field(&mut out, "but:", &failure.detail);
        }
        match failure.clients.as_slice() {
            // One connection: its bytes, as `sent:` and `got:`.
            [(_, sent, got)] => {
                if !sent.is_empty() {
                    field(&mut out, "sent:", &quoted(&shown(sent, SHOW)));
                }
                field(&mut out, "got:", &quoted(&shown(got, SHOW)));
            }
            // Several: each apart, `sent #2:` for connection 2.
            clients => {
                for (label, sent, got) in clients {
                    if !sent.is_empty() {
                        let label = format!("sent {label}:");
                        field(&mut out, &label, &quoted(&shown(sent, SHOW)));
                    }
                    let label = format!("got {label}:");
                    field(&mut out, &label, &quoted(&shown(got, SHOW)));
                }
            }
        }
        field(&mut out, "hint:", outcome.hint);
        if !failure.reproduce.is_empty() {
            if !failure.extra_args.is_empty() {
                field(&mut out, "start:", &launch.line(&failure.extra_args));
            }
            field(&mut out, "try:", &failure.reproduce);
            if !failure.note.is_empty() {
                field(&mut out, "look:", &failure.note);
            }
        }
        if !failure.stderr.is_empty() {
            field(&mut out, "stderr:", &failure.stderr);
        }
        let _ = writeln!(out);
    }
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    let reproducible = outcomes
        .iter()
        .any(|o| o.failure.as_ref().is_some_and(|f| !f.reproduce.is_empty()));
    if reproducible {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "To paste a \"try:\" command, first start the server in another terminal \
             (a stage with a \"start:\" line: that one instead):"
        );
        let _ = writeln!(out, "  {}", launch.line(&[]));
    }
    let _ = writeln!(out);
    if let Some(reached) = holes_reached(exercise, outcomes) {
        let _ = write!(out, "holes: {reached} of {holes} reached");
        if reached > 0 {
            let _ = write!(out, " ({})", exercise.holes[..reached].join(", "));
        }
        if let Some(next) = exercise.holes.get(reached) {
            let _ = write!(out, "; next: {next} ({})", hole_at(exercise, next));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "{} passed, {failed} failed", outcomes.len() - failed);
    out
}

/// Text with pids and thread ids left out, to recognise a repeated failure.
fn without_digits(text: &str) -> String {
    text.chars().filter(|c| !c.is_ascii_digit()).collect()
}

fn quoted(text: &str) -> String {
    format!("\"{text}\"")
}

/// The JSON report: one object, every string escaped per RFC 8259.
pub fn json(exercise: &Exercise, binary: &str, outcomes: &[Outcome], launch: &Launch) -> String {
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    let mut out = String::new();
    let reached = match holes_reached(exercise, outcomes) {
        Some(n) => n.to_string(),
        None => "null".to_string(),
    };
    let _ = write!(
        out,
        "{{\"exercise\":{},\"lesson\":{},\"binary\":{},\"passed\":{},\"failed\":{},\
         \"start\":{},\"holes\":{},\"holes_reached\":{reached},\"stages\":[",
        json_string(exercise.name),
        json_string(exercise.lesson),
        json_string(binary),
        outcomes.len() - failed,
        failed,
        json_string(&launch.line(&[])),
        exercise.holes.len(),
    );
    for (i, outcome) in outcomes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let hole = match exercise.holes.get(outcome.hole.wrapping_sub(1)) {
            Some(anchor) => json_string(anchor),
            None => "null".to_string(),
        };
        let _ = write!(
            out,
            "{{\"name\":{},\"title\":{},\"passed\":{},\"seconds\":{:.3},\"hole\":{hole}",
            json_string(outcome.name),
            json_string(outcome.title),
            outcome.failure.is_none(),
            outcome.elapsed.as_secs_f64()
        );
        // Every command the stage offers to reproduce it, with the server
        // command it needs and what a correct server makes it show.
        out.push_str(",\"tries\":[");
        for (i, attempt) in outcome.tries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"start\":{},\"command\":{},\"note\":{},\"expect\":{}}}",
                json_string(&launch.line(&attempt.extra_args)),
                json_string(&attempt.command),
                json_string(&attempt.note),
                json_string(&attempt.expect.describe()),
            );
        }
        out.push(']');
        if let Some(failure) = &outcome.failure {
            let _ = write!(
                out,
                ",\"failure\":{{\"expected\":{},\"detail\":{},\"sent\":{},\"got\":{},\"hint\":{},\"start\":{},\"reproduce\":{},\"note\":{},\"stderr\":{},\"connections\":[",
                json_string(&failure.expected),
                json_string(&failure.detail),
                json_string(&shown(&failure.sent, 4096)),
                json_string(&shown(&failure.got, 4096)),
                json_string(outcome.hint),
                json_string(&launch.line(&failure.extra_args)),
                json_string(&failure.reproduce),
                json_string(&failure.note),
                json_string(&failure.stderr),
            );
            for (i, (label, sent, got)) in failure.clients.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{{\"connection\":{},\"sent\":{},\"got\":{}}}",
                    json_string(label),
                    json_string(&shown(sent, 4096)),
                    json_string(&shown(got, 4096)),
                );
            }
            out.push_str("]}");
        }
        out.push('}');
    }
    out.push_str("]}\n");
    out
}

/// A JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The JUnit XML report: one testsuite, one testcase per stage, a
/// `<failure>` inside each failed one.
pub fn junit(exercise: &Exercise, binary: &str, outcomes: &[Outcome], launch: &Launch) -> String {
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    let total: Duration = outcomes.iter().map(|o| o.elapsed).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"grade\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{:.3}\">",
        outcomes.len(),
        total.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\">",
        xml_escape(exercise.name),
        outcomes.len(),
        total.as_secs_f64()
    );
    let _ = writeln!(out, "    <properties>");
    let _ = writeln!(
        out,
        "      <property name=\"binary\" value=\"{}\"/>",
        xml_escape(binary)
    );
    let _ = writeln!(out, "    </properties>");
    for outcome in outcomes {
        let open = format!(
            "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            xml_escape(exercise.name),
            xml_escape(outcome.name),
            outcome.elapsed.as_secs_f64()
        );
        match &outcome.failure {
            None => {
                let _ = writeln!(out, "{open}/>");
            }
            Some(failure) => {
                let mut text = String::new();
                let _ = writeln!(text, "{}", outcome.title);
                let _ = writeln!(text, "expected: {}", failure.expected);
                if !failure.detail.is_empty() {
                    let _ = writeln!(text, "but: {}", failure.detail);
                }
                if let [(_, sent, got)] = failure.clients.as_slice() {
                    let _ = writeln!(text, "sent: \"{}\"", shown(sent, 4096));
                    let _ = writeln!(text, "got: \"{}\"", shown(got, 4096));
                } else {
                    for (label, sent, got) in &failure.clients {
                        let _ = writeln!(text, "sent {label}: \"{}\"", shown(sent, 4096));
                        let _ = writeln!(text, "got {label}: \"{}\"", shown(got, 4096));
                    }
                }
                let _ = writeln!(text, "hint: {}", outcome.hint);
                if !failure.reproduce.is_empty() {
                    let _ = writeln!(text, "start: {}", launch.line(&failure.extra_args));
                    let _ = writeln!(text, "try: {}", failure.reproduce);
                    if !failure.note.is_empty() {
                        let _ = writeln!(text, "look: {}", failure.note);
                    }
                }
                if !failure.stderr.is_empty() {
                    let _ = writeln!(text, "server stderr:\n{}", failure.stderr);
                }
                let _ = writeln!(out, "{open}>");
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\" type=\"StageFailed\">{}</failure>",
                    xml_escape(&format!("expected {}", failure.expected)),
                    xml_escape(&text)
                );
                let _ = writeln!(out, "    </testcase>");
            }
        }
    }
    let _ = writeln!(out, "  </testsuite>");
    let _ = writeln!(out, "</testsuites>");
    out
}

/// Escape text for an XML attribute or element. Characters XML 1.0 forbids
/// outright (most C0 controls) cannot be escaped, so they are written as
/// visible `\xNN` text instead.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\r' | '\t' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn xml_escapes_markup_and_forbidden_controls() {
        assert_eq!(
            xml_escape("<a href='x'>&\"\u{1b}"),
            "&lt;a href=&apos;x&apos;&gt;&amp;&quot;\\x1b"
        );
    }
}
