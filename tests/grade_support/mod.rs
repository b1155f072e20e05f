//! Running `grade` from a test and reading its JSON and JUnit reports
//! (shared by tests/grade_reference.rs and tests/grade_decoys.rs).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// What one `grade` run reported.
pub struct Graded {
    pub status: Option<i32>,
    /// Stage names in order, with whether each passed.
    pub stages: Vec<(String, bool)>,
    /// The human report (on stderr with `--json -`).
    pub report: String,
}

impl Graded {
    pub fn failed(&self) -> Vec<&str> {
        self.stages
            .iter()
            .filter(|(_, passed)| !passed)
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

/// `grade ARGS --json -`, with the JSON on stdout read back.
pub fn grade(args: &[&str]) -> Graded {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_grade"))
        .args(args)
        .args(["--json", "-"])
        .output()
        .expect("grade runs");
    let json = String::from_utf8(output.stdout).expect("JSON is UTF-8");
    let report = String::from_utf8_lossy(&output.stderr).into_owned();
    if let Err(err) = parse_json(&json) {
        panic!("grade's JSON is not valid ({err}):\n{json}\nreport:\n{report}");
    }
    let stages = stages_in(&json)
        .unwrap_or_else(|| panic!("no stages in grade's JSON:\n{json}\nreport:\n{report}"));
    Graded {
        status: output.status.code(),
        stages,
        report,
    }
}

/// A minimal reader for grade's JSON: every stage object's `name` and
/// `passed`, in order. Checks that the string escapes it meets are valid.
pub fn stages_in(json: &str) -> Option<Vec<(String, bool)>> {
    let json = json.trim();
    if !(json.starts_with('{') && json.ends_with('}')) {
        return None;
    }
    let start = json.find("\"stages\":[")? + "\"stages\":[".len();
    let mut rest = &json[start..];
    let mut stages = Vec::new();
    while let Some(at) = rest.find("{\"name\":") {
        rest = &rest[at + "{\"name\":".len()..];
        let (name, after) = json_string(rest)?;
        let passed_at = after.find("\"passed\":")? + "\"passed\":".len();
        let passed = after[passed_at..].starts_with("true");
        if !passed && !after[passed_at..].starts_with("false") {
            return None;
        }
        stages.push((name, passed));
        rest = &after[passed_at..];
    }
    Some(stages)
}

/// Read one JSON string literal at the start of `text`; return it and the rest.
fn json_string(text: &str) -> Option<(String, &str)> {
    let mut chars = text.strip_prefix('"')?.char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 2..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                c @ ('"' | '\\' | '/') => out.push(c),
                'u' => {
                    let hex: String = (0..4)
                        .filter_map(|_| chars.next().map(|(_, c)| c))
                        .collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            },
            c if (c as u32) < 0x20 => return None, // must have been escaped
            c => out.push(c),
        }
    }
    None
}

/// A minimal XML well-formedness check: tags nest and close, attribute
/// values are quoted, text holds no raw `<` and only known entities.
/// Returns the element names in document order.
#[allow(dead_code)] // only tests/grade_reference.rs reads JUnit
pub fn xml_elements(xml: &str) -> Result<Vec<String>, String> {
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .ok_or("no XML declaration")?;
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open])?;
        let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
        let tag = &rest[open + 1..close];
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack.pop().ok_or("close without open")?;
            if top != name {
                return Err(format!("</{name}> closes <{top}>"));
            }
        } else {
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name = tag.split_whitespace().next().ok_or("empty tag")?;
            check_attributes(&tag[name.len()..])?;
            names.push(name.to_string());
            if !self_closing {
                stack.push(name.to_string());
            }
        }
        rest = &rest[close + 1..];
    }
    check_text(rest)?;
    if stack.is_empty() && names.first().is_some_and(|n| n == "testsuites") {
        Ok(names)
    } else {
        Err(format!("unclosed elements {stack:?}"))
    }
}

fn check_text(text: &str) -> Result<(), String> {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        let entity = &rest[amp..];
        if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
            .iter()
            .any(|e| entity.starts_with(e))
        {
            return Err(format!(
                "bad entity at {:?}",
                &entity[..entity.len().min(10)]
            ));
        }
        rest = &rest[amp + 1..];
    }
    if text
        .chars()
        .any(|c| (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err("a control character XML 1.0 forbids".into());
    }
    Ok(())
}

fn check_attributes(mut attrs: &str) -> Result<(), String> {
    loop {
        attrs = attrs.trim_start();
        if attrs.is_empty() {
            return Ok(());
        }
        let eq = attrs
            .find("=\"")
            .ok_or(format!("unquoted attribute {attrs:?}"))?;
        let value_end = attrs[eq + 2..].find('"').ok_or("unterminated value")? + eq + 2;
        check_text(&attrs[eq + 2..value_end])?;
        attrs = &attrs[value_end + 1..];
    }
}

/// Build every binary of the development-only `decoys` package (decoys and
/// controls) with a nested cargo, once per test process, and map names to
/// paths.
fn decoy_bins() -> &'static HashMap<String, PathBuf> {
    static BINS: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BINS.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .args(["build", "-q", "-p", "decoys", "--bins"])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .arg("--message-format=json-render-diagnostics")
            .output()
            .expect("cargo runs");
        assert!(
            output.status.success(),
            "building the decoys package failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut bins = HashMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if !line.contains("\"reason\":\"compiler-artifact\"") {
                continue;
            }
            let field = |key: &str| -> Option<String> {
                let at = line.find(key)? + key.len();
                json_string(&line[at..]).map(|(s, _)| s)
            };
            if let (Some(name), Some(exe)) = (
                field("\"target\":{\"kind\":[\"bin\"],\"crate_types\":[\"bin\"],\"name\":"),
                field("\"executable\":"),
            ) {
                bins.insert(name, PathBuf::from(exe));
            }
        }
        bins
    })
}

/// The path of one binary of the decoys package.
#[allow(dead_code)] // only tests/grade_decoys.rs grades decoys
pub fn decoy_bin(name: &str) -> String {
    let bins = decoy_bins();
    bins.get(name)
        .unwrap_or_else(|| panic!("no bin {name} among {:?}", bins.keys()))
        .display()
        .to_string()
}

/// A JSON value, as [`parse_json`] reads it.
#[allow(dead_code)] // only tests/grade_try_lines.rs reads whole reports
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

#[allow(dead_code)]
impl Json {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn array(&self) -> &[Json] {
        match self {
            Json::Array(items) => items,
            _ => &[],
        }
    }
}

/// A strict reader for one JSON document (RFC 8259): anything left over,
/// or malformed, is an error.
#[allow(dead_code)]
pub fn parse_json(text: &str) -> Result<Json, String> {
    fn ws(s: &str) -> &str {
        s.trim_start_matches([' ', '\t', '\n', '\r'])
    }
    fn value(s: &str) -> Result<(Json, &str), String> {
        let s = ws(s);
        if let Some(rest) = s.strip_prefix("null") {
            return Ok((Json::Null, rest));
        }
        if let Some(rest) = s.strip_prefix("true") {
            return Ok((Json::Bool(true), rest));
        }
        if let Some(rest) = s.strip_prefix("false") {
            return Ok((Json::Bool(false), rest));
        }
        if s.starts_with('"') {
            let (text, rest) = json_string(s).ok_or("bad string")?;
            return Ok((Json::String(text), rest));
        }
        if let Some(mut rest) = s.strip_prefix('[') {
            let mut items = Vec::new();
            if let Some(after) = ws(rest).strip_prefix(']') {
                return Ok((Json::Array(items), after));
            }
            loop {
                let (item, after) = value(rest)?;
                items.push(item);
                let after = ws(after);
                if let Some(after) = after.strip_prefix(',') {
                    rest = after;
                } else if let Some(after) = after.strip_prefix(']') {
                    return Ok((Json::Array(items), after));
                } else {
                    return Err(format!("expected , or ] at {:.20}", after));
                }
            }
        }
        if let Some(mut rest) = s.strip_prefix('{') {
            let mut members = Vec::new();
            if let Some(after) = ws(rest).strip_prefix('}') {
                return Ok((Json::Object(members), after));
            }
            loop {
                let (key, after) = json_string(ws(rest)).ok_or("bad key")?;
                let after = ws(after).strip_prefix(':').ok_or("expected :")?;
                let (item, after) = value(after)?;
                members.push((key, item));
                let after = ws(after);
                if let Some(after) = after.strip_prefix(',') {
                    rest = after;
                } else if let Some(after) = after.strip_prefix('}') {
                    return Ok((Json::Object(members), after));
                } else {
                    return Err(format!("expected , or }} at {:.20}", after));
                }
            }
        }
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
            .unwrap_or(s.len());
        let number = s[..end]
            .parse()
            .map_err(|_| format!("bad value at {:.20}", s))?;
        Ok((Json::Number(number), &s[end..]))
    }
    let (json, rest) = value(text)?;
    if ws(rest).is_empty() {
        Ok(json)
    } else {
        Err(format!("trailing text: {:.20}", rest))
    }
}
