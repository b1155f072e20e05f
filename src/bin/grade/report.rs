//! The report writers: for people (a terminal, a CI log), JSON for scripts,
//! JUnit XML for CI systems that show test results. Hand-written, because
//! all three are small and the escaping rules are the whole difficulty.

use std::fmt::Write as _;
use std::time::Duration;

use crate::runner::{Exercise, Outcome, shown};

/// How many bytes of a transcript the human report shows.
const SHOW: usize = 600;

/// The report for people. The last line is exactly `N passed, M failed`.
pub fn human(exercise: &Exercise, binary: &str, outcomes: &[Outcome], start_hint: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "grading {} against {binary}", exercise.name);
    let _ = writeln!(out);
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
    for (i, outcome) in outcomes.iter().enumerate() {
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
        if !failure.sent.is_empty() {
            field(&mut out, "sent:", &quoted(&shown(&failure.sent, SHOW)));
        }
        if !failure.sent.is_empty() || !failure.got.is_empty() {
            field(&mut out, "got:", &quoted(&shown(&failure.got, SHOW)));
        }
        field(&mut out, "hint:", outcome.hint);
        if !failure.reproduce.is_empty() {
            field(&mut out, "try:", &failure.reproduce);
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
            "To try a \"try:\" command, first start the server in another terminal: {start_hint}"
        );
    }
    let _ = writeln!(out);
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
pub fn json(exercise: &Exercise, binary: &str, outcomes: &[Outcome]) -> String {
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"exercise\":{},\"lesson\":{},\"binary\":{},\"passed\":{},\"failed\":{},\"stages\":[",
        json_string(exercise.name),
        json_string(exercise.lesson),
        json_string(binary),
        outcomes.len() - failed,
        failed
    );
    for (i, outcome) in outcomes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"name\":{},\"title\":{},\"passed\":{},\"seconds\":{:.3}",
            json_string(outcome.name),
            json_string(outcome.title),
            outcome.failure.is_none(),
            outcome.elapsed.as_secs_f64()
        );
        if let Some(failure) = &outcome.failure {
            let _ = write!(
                out,
                ",\"failure\":{{\"expected\":{},\"detail\":{},\"sent\":{},\"got\":{},\"hint\":{},\"reproduce\":{},\"stderr\":{}}}",
                json_string(&failure.expected),
                json_string(&failure.detail),
                json_string(&shown(&failure.sent, 4096)),
                json_string(&shown(&failure.got, 4096)),
                json_string(outcome.hint),
                json_string(&failure.reproduce),
                json_string(&failure.stderr),
            );
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
pub fn junit(exercise: &Exercise, binary: &str, outcomes: &[Outcome]) -> String {
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
                let _ = writeln!(text, "sent: \"{}\"", shown(&failure.sent, 4096));
                let _ = writeln!(text, "got: \"{}\"", shown(&failure.got, 4096));
                let _ = writeln!(text, "hint: {}", outcome.hint);
                if !failure.reproduce.is_empty() {
                    let _ = writeln!(text, "try: {}", failure.reproduce);
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
