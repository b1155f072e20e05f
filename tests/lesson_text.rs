//! The docs checks (STYLE §12): lessons, slides and exercises agree with the code.
//!
//! Code and program output appear in `lessons/` and `slides/` only as checked
//! copies: a marker line, then a fenced block that must equal its source.
//!
//! ```text
//! <!-- code: src/bin/lesson01_echo.rs#accept_loop -->      the region between
//!                                      `// ANCHOR: accept_loop` and `// ANCHOR_END: accept_loop`
//! <!-- output: lessons/transcripts/01-echo-trace.snap -->  an insta snapshot, header removed
//! ```
//!
//! `BLESS=1 cargo test --test lesson_text` rewrites the blocks instead of
//! failing. Markers inside a fenced block are examples and are ignored.
//! Std only: the scanning is plain string matching, no regex crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

// ---------------------------------------------------------------- the files

fn read(rel: &str) -> Option<String> {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).ok()
}

/// Repository-relative paths of the files under `dir` ending in `suffix`, sorted.
fn files(dir: &str, suffix: &str, recursive: bool) -> Vec<String> {
    let mut out = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for entry in fs::read_dir(root.join(dir)).into_iter().flatten().flatten() {
        let rel = format!("{dir}/{}", entry.file_name().to_string_lossy());
        if entry.path().is_dir() && recursive {
            out.extend(files(&rel, suffix, true));
        } else if rel.ends_with(suffix) {
            out.push(rel);
        }
    }
    out.sort();
    out
}

/// The markdown files whose markers are checked.
fn docs() -> Vec<(String, String)> {
    let paths = [
        files("lessons", ".md", false),
        files("slides", ".md", false),
    ]
    .concat();
    paths
        .into_iter()
        .map(|p| (p.clone(), read(&p).unwrap_or_default()))
        .collect()
}

/// The stem of a file path: `src/bin/lesson01_echo.rs` -> `lesson01_echo`.
fn stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.strip_suffix(".rs").unwrap_or(name)
}

/// `lesson01_echo` -> 1, `ex05_epoll` -> 5.
fn rung(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.get(..2)?.parse().ok()
}

fn lesson_files() -> Vec<String> {
    files("src/bin", ".rs", false)
        .into_iter()
        .filter(|p| rung(stem(p), "lesson").is_some())
        .collect()
}

/// The exercise a skeleton file belongs to: `exNN_name` for
/// `exercises/src/bin/exNN_name.rs` and for every file of
/// `exercises/src/bin/exNN_name/`.
fn exercise_name(skeleton: &str) -> &str {
    let rest = skeleton
        .strip_prefix("exercises/src/bin/")
        .unwrap_or(skeleton);
    match rest.split_once('/') {
        Some((dir, _)) => dir,
        None => stem(rest),
    }
}

/// Each exercise skeleton with the file it is cut from:
///
/// - `exercises/src/bin/exNN_*.rs`, or `exercises/src/bin/exNN_*/main.rs`,
///   with the lesson file `src/bin/lessonNN_*.rs` (same NN);
/// - any other `exercises/src/bin/exNN_*/MODULE.rs` with the library module
///   `src/MODULE.rs`: an exercise whose holes are in a library module
///   compiles its own copy of the module (`mod MODULE;`) in place of
///   `ladder::MODULE` (see [`reference_as_skeleton`]).
fn exercises() -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for skeleton in files("exercises/src/bin", ".rs", true) {
        let name = exercise_name(&skeleton);
        let module = skeleton
            .strip_prefix(&format!("exercises/src/bin/{name}/"))
            .filter(|file| *file != "main.rs");
        if let Some(file) = module {
            pairs.push((skeleton.clone(), format!("src/{file}")));
            continue;
        }
        let nn = rung(name, "ex");
        let mut lessons = lesson_files().into_iter();
        if let Some(reference) = lessons.find(|l| nn.is_some() && rung(stem(l), "lesson") == nn) {
            pairs.push((skeleton, reference));
        }
    }
    pairs
}

/// The module copies an exercise's binary compiles beside its `main.rs`:
/// the other `.rs` files of its directory, by name (`wsgi`).
fn module_copies(skeleton: &str) -> Vec<String> {
    let Some(dir) = skeleton.strip_suffix("/main.rs") else {
        return Vec::new();
    };
    files(dir, ".rs", false)
        .iter()
        .map(|f| stem(f).to_string())
        .filter(|name| name != "main")
        .collect()
}

/// The reference as the skeleton must read outside its holes, or why it
/// cannot. The differences an exercise with its own module copy declares:
///
/// - its `main.rs` is the lesson file with the line `use ladder::MODULE;`
///   (exactly once) read as `mod MODULE;`, for each module copy beside it
///   (`modules`);
/// - a module copy is `src/MODULE.rs` with `crate::` read as `ladder::`,
///   since the copy lives in the exercise's binary, not in the library.
fn reference_as_skeleton(
    reference: &str,
    text: &str,
    modules: &[String],
) -> Result<String, String> {
    if !reference.starts_with("src/bin/") {
        return Ok(text.replace("crate::", "ladder::"));
    }
    let mut lines: Vec<&str> = text.lines().collect();
    let declared: Vec<String> = modules.iter().map(|m| format!("mod {m};")).collect();
    for (module, declaration) in modules.iter().zip(&declared) {
        let import = format!("use ladder::{module};");
        let at: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == import).collect();
        let [i] = at[..] else {
            return Err(format!(
                "the exercise compiles its own copy of `ladder::{module}`, so {reference} \
                 must import it on a line of its own, exactly once: `{import}` (found {} times)",
                at.len()
            ));
        };
        lines[i] = declaration;
    }
    Ok(lines.join("\n") + "\n")
}

fn assert_none(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s)\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------- anchors

/// `// ANCHOR: name` -> (true, name); `// ANCHOR_END: name` -> (false, name).
fn anchor_line(line: &str) -> Option<(bool, &str)> {
    let rest = line.trim().strip_prefix("//")?.trim_start();
    match rest.strip_prefix("ANCHOR:") {
        Some(name) => Some((true, name.trim())),
        None => Some((false, rest.strip_prefix("ANCHOR_END:")?.trim())),
    }
}

/// Names of all `ANCHOR:` lines in `source`, in order.
fn anchor_names(source: &str) -> Vec<&str> {
    source
        .lines()
        .filter_map(anchor_line)
        .filter(|a| a.0)
        .map(|a| a.1)
        .collect()
}

/// The region `name` of `source`, with other anchors' lines removed (as mdBook
/// does), or why there is none.
fn region(source: &str, name: &str) -> Result<String, String> {
    let lines: Vec<&str> = source.lines().collect();
    let is = |i: &usize, start: bool| anchor_line(lines[*i]) == Some((start, name));
    let starts: Vec<usize> = (0..lines.len()).filter(|i| is(i, true)).collect();
    let start = match starts.as_slice() {
        [] => return Err(format!("no `// ANCHOR: {name}`")),
        [one] => *one,
        many => return Err(format!("`// ANCHOR: {name}` occurs {} times", many.len())),
    };
    let end = (start + 1..lines.len())
        .find(|i| is(i, false))
        .ok_or(format!(
            "`// ANCHOR: {name}` is never closed by `// ANCHOR_END: {name}`"
        ))?;
    let body: Vec<&str> = lines[start + 1..end]
        .iter()
        .filter(|l| anchor_line(l).is_none())
        .copied()
        .collect();
    if body.iter().all(|l| l.trim().is_empty()) {
        return Err(format!("anchor `{name}` is empty"));
    }
    Ok(body.join("\n"))
}

// ---------------------------------------------------------------- markers

#[derive(Debug, PartialEq)]
struct Marker {
    /// Index of the marker line.
    line: usize,
    /// `code` or `output`.
    kind: &'static str,
    target: String,
    /// Indexes of the opening and closing fence lines, if a block follows.
    block: Option<(usize, usize)>,
}

/// A fence opener: ``` (or longer) with an optional info string.
fn fence_open(line: &str) -> Option<usize> {
    let n = line.trim_start().chars().take_while(|&c| c == '`').count();
    (n >= 3).then_some(n)
}

fn fence_close(line: &str, n: usize) -> bool {
    let t = line.trim();
    t.len() >= n && t.chars().all(|c| c == '`')
}

fn markers(text: &str) -> Vec<Marker> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut open_fence = None;
    for (i, line) in lines.iter().enumerate() {
        if let Some(n) = open_fence {
            open_fence = (!fence_close(line, n)).then_some(n);
            continue;
        }
        open_fence = fence_open(line);
        let comment = line
            .trim()
            .strip_prefix("<!--")
            .and_then(|l| l.strip_suffix("-->"));
        let Some(comment) = comment.map(str::trim) else {
            continue;
        };
        let (kind, target) = if let Some(t) = comment.strip_prefix("code:") {
            ("code", t)
        } else if let Some(t) = comment.strip_prefix("output:") {
            ("output", t)
        } else {
            continue;
        };
        let next = (i + 1..lines.len()).find(|&j| !lines[j].trim().is_empty());
        let block = next.and_then(|j| {
            let n = fence_open(lines[j])?;
            Some((j, (j + 1..lines.len()).find(|&k| fence_close(lines[k], n))?))
        });
        found.push(Marker {
            line: i,
            kind,
            target: target.trim().to_string(),
            block,
        });
    }
    found
}

/// An insta snapshot's value: the file minus its `---` header, as insta
/// compares it (trailing whitespace trimmed, CRLF read as LF).
fn snapshot_body(snap: &str) -> Result<String, String> {
    let mut lines = snap.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Err("is not an insta snapshot (no `---` header)".into());
    }
    lines
        .by_ref()
        .find(|l| l.trim_end() == "---")
        .ok_or("has an unclosed `---` header")?;
    Ok(lines.collect::<Vec<_>>().join("\n").trim_end().to_string())
}

/// Which test writes a missing transcript: the test file naming its snapshot.
fn producer_hint(snap_path: &str) -> String {
    let name = stem(snap_path).trim_end_matches(".snap");
    let quoted = format!("\"{name}\"");
    match files("tests", ".rs", true)
        .into_iter()
        .find(|f| read(f).is_some_and(|t| t.contains(&quoted)))
    {
        Some(test) => format!(
            "run `INSTA_UPDATE=always cargo test --test {}`",
            stem(&test)
        ),
        None => {
            format!("no test under tests/ snapshots {quoted} yet; add one to the rung's test file")
        }
    }
}

/// What the block after `marker` must hold.
fn expected(marker: &Marker, read: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if marker.kind == "output" {
        let path = &marker.target;
        let snap =
            read(path).ok_or_else(|| format!("{path} does not exist: {}", producer_hint(path)))?;
        return snapshot_body(&snap).map_err(|e| format!("{path} {e}"));
    }
    let (path, anchor) = marker
        .target
        .split_once('#')
        .ok_or("a code marker needs PATH#ANCHOR")?;
    let source = read(path).ok_or(format!("{path} does not exist"))?;
    region(&source, anchor).map_err(|e| format!("{path}: {e}"))
}

/// Where two texts first differ: (1-based line, expected line, found line).
fn first_difference(want: &str, got: &str) -> Option<(usize, String, String)> {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.split('\n').collect(), got.split('\n').collect());
    let end = "<end of block>";
    (0..w.len().max(g.len()))
        .find(|&i| w.get(i) != g.get(i))
        .map(|i| {
            (
                i + 1,
                w.get(i).unwrap_or(&end).to_string(),
                g.get(i).unwrap_or(&end).to_string(),
            )
        })
}

/// Check every marker of one markdown file. Returns the problems, each with
/// whether BLESS can fix it, and the text with the fixable blocks rewritten.
fn check_copies(
    md: &str,
    text: &str,
    read: &dyn Fn(&str) -> Option<String>,
) -> (Vec<(String, bool)>, String) {
    let lines: Vec<&str> = text.lines().collect();
    let mut problems = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let mut next = 0; // first line of `lines` not yet copied to `out`
    for marker in markers(text) {
        let at = format!(
            "{md}:{}: {} marker `{}`",
            marker.line + 1,
            marker.kind,
            marker.target
        );
        let want = match expected(&marker, read) {
            Ok(want) => want,
            Err(why) => {
                problems.push((format!("{at}: {why}"), false));
                continue;
            }
        };
        // Replace lines[from..to] with `insert`: a block's body, or a new block.
        let (from, to, insert) = match marker.block {
            Some((open, close)) => {
                let got = lines[open + 1..close].join("\n");
                let Some((n, w, g)) = first_difference(&want, &got) else {
                    continue;
                };
                let why = format!("block line {n} differs\n    expected: {w}\n    found:    {g}");
                let fix = "(BLESS=1 cargo test --test lesson_text rewrites it)";
                problems.push((format!("{at}: {why}\n    {fix}"), true));
                (open + 1, close, want)
            }
            None => {
                problems.push((format!("{at}: no fenced block follows the marker"), true));
                let lang = if marker.kind == "code" {
                    "rust"
                } else {
                    "text"
                };
                let at = marker.line + 1;
                (at, at, format!("```{lang}\n{want}\n```"))
            }
        };
        out.extend(lines[next..from].iter().map(|l| l.to_string()));
        out.extend(insert.split('\n').map(str::to_string));
        next = to;
    }
    out.extend(lines[next..].iter().map(|l| l.to_string()));
    let ending = if text.ends_with('\n') { "\n" } else { "" };
    (problems, out.join("\n") + ending)
}

// ---------------------------------------------------------------- other scans

/// The lines of a file's `//!` header.
fn header(source: &str) -> String {
    source
        .lines()
        .take_while(|l| l.trim_start().starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Problems with a lesson binary's back-link to its chapter.
fn back_link_problems(
    bin: &str,
    source: &str,
    read: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let head = header(source);
    if head.starts_with("//! Placeholder:") {
        return vec![]; // not written yet: the rung's issue replaces the whole file
    }
    let want = format!("lessons/{:02}-", rung(bin, "lesson").unwrap_or(0));
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_-./".contains(c);
    let chapter = head
        .match_indices(&want)
        .map(|(i, _)| &head[i..])
        .find_map(|rest| {
            let path = &rest[..rest.find(|c| !is_path_char(c)).unwrap_or(rest.len())];
            path.ends_with(".md").then_some(path)
        });
    let Some(chapter) = chapter else {
        return vec![format!(
            "{bin}: its `//!` header names no `{want}*.md` chapter"
        )];
    };
    match read(chapter) {
        None => vec![format!(
            "{bin}: its header names {chapter}, which does not exist"
        )],
        Some(text) if !text.contains(bin) => vec![format!("{bin}: {chapter} never names `{bin}`")],
        Some(_) => vec![],
    }
}

/// The leading identifier characters of `s` (after spaces).
fn ident(s: &str) -> String {
    let s = s.trim_start();
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Binaries a text names: `--bin X`, `--bin=X`, `cargo ex X`, `cargo grade X`.
/// Returns (1-based line, form, name).
fn named_binaries(text: &str) -> Vec<(usize, &'static str, String)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for form in ["--bin ", "--bin=", "cargo ex ", "cargo grade "] {
            for (at, _) in line.match_indices(form) {
                let name = ident(&line[at + form.len()..]);
                if !name.is_empty() {
                    found.push((i + 1, form, name));
                }
            }
        }
    }
    found
}

fn binary_exists(form: &str, name: &str) -> bool {
    let file = |p: String| read(&p).is_some();
    let plain = file(format!("src/bin/{name}.rs"))
        || file(format!("src/bin/{name}/main.rs"))
        || file(format!("exercises/src/bin/{name}.rs"))
        || file(format!("exercises/src/bin/{name}/main.rs"));
    // `cargo grade ex01` names an exercise by number or by full name.
    let graded = form == "cargo grade "
        && exercises()
            .iter()
            .any(|(skeleton, _)| exercise_name(skeleton).starts_with(&format!("{name}_")));
    plain || graded
}

/// Library modules a lesson uses through `ladder::MODULE` (also `ladder::{a, b}`),
/// ignoring comments.
fn ladder_modules(source: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("ladder::") {
            let rest = &code[at + "ladder::".len()..];
            let items = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                None => vec![rest],
            };
            for item in items {
                let name = ident(item);
                if !name.is_empty() {
                    used.insert(name);
                }
            }
        }
    }
    used
}

/// "Introduced in lesson MM" (any case) in a module's header.
fn introduced_in(source: &str) -> Option<u32> {
    let head = header(source).to_lowercase();
    let (_, rest) = head.split_once("introduced in lesson ")?;
    ident(rest).parse().ok()
}

/// Anchors of `source` (at `path`) that are malformed or that no marker or
/// exercise hole in `used` (`path#name`) quotes.
fn orphans(path: &str, source: &str, used: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for name in anchor_names(source) {
        if let Err(why) = region(source, name) {
            problems.push(format!("{path}: {why}"));
        } else if !used.contains(&format!("{path}#{name}")) {
            problems.push(format!(
                "{path}: anchor `{name}` is quoted by no lesson or slide"
            ));
        }
    }
    problems
}

/// The modules lesson `nn` uses that `intro` says come later (or never).
fn forward_refs(nn: u32, source: &str, intro: &dyn Fn(&str) -> Option<u32>) -> Vec<String> {
    let mut problems = Vec::new();
    for module in ladder_modules(source) {
        match intro(&module) {
            Some(mm) if mm <= nn => {}
            Some(mm) => problems.push(format!("uses ladder::{module}, introduced in lesson {mm}")),
            None => problems.push(format!("uses ladder::{module}, which has no module header")),
        }
    }
    problems
}

/// Skeleton holes: anchored regions whose skeleton body contains `todo!(`.
fn holes(skeleton: &str) -> Vec<&str> {
    anchor_names(skeleton)
        .into_iter()
        .filter(|n| region(skeleton, n).is_ok_and(|b| b.contains("todo!(")))
        .collect()
}

/// The lines of `source`, 1-based numbers kept, with each hole's body blanked.
/// A hole's signature (see [`split_signature`]) is kept, so a skeleton cannot
/// silently keep an old signature.
fn blank_holes<'a>(source: &'a str, holes: &[&str]) -> Vec<(usize, &'a str)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        out.push((i + 1, lines[i]));
        i += 1;
        let Some((true, name)) = anchor_line(lines[i - 1]) else {
            continue;
        };
        if !holes.contains(&name) {
            continue;
        }
        let end = (i..lines.len())
            .find(|&j| anchor_line(lines[j]) == Some((false, name)))
            .unwrap_or(lines.len());
        let (signature, _) = split_signature(&lines[i..end]);
        out.extend((i..i + signature.len()).map(|j| (j + 1, lines[j])));
        i = end;
    }
    out
}

/// Split a hole's region into its signature (up to the first line ending in
/// `{`, inclusive) and the rest.
///
/// A hole that is a whole function keeps its doc comments and `fn` line(s):
/// the student fills the body, never the signature. A hole inside a body has
/// no signature.
fn split_signature<'a>(region: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let end = region
        .iter()
        .position(|l| l.trim_end().ends_with('{'))
        .map_or(0, |i| i + 1);
    let declares_fn = region[..end].iter().any(|l| {
        let l = l.trim_start();
        l.starts_with("fn ") || l.starts_with("pub fn ") || l.starts_with("pub(crate) fn ")
    });
    let end = if declares_fn { end } else { 0 };
    (region[..end].to_vec(), region[end..].to_vec())
}

/// Where a skeleton departs from its reference outside the holes.
fn skeleton_drift(reference: &str, skeleton: &str) -> Option<String> {
    let holes = holes(skeleton);
    if let Some(h) = holes.iter().find(|h| region(reference, h).is_err()) {
        return Some(format!(
            "hole `{h}` is not an anchored region of the reference"
        ));
    }
    let (r, s) = (
        blank_holes(reference, &holes),
        blank_holes(skeleton, &holes),
    );
    let i = (0..r.len().max(s.len())).find(|&i| r.get(i).map(|l| l.1) != s.get(i).map(|l| l.1))?;
    let show = |l: Option<&(usize, &str)>| {
        l.map_or("<end of file>".to_string(), |(n, t)| {
            format!("line {n}: {t}")
        })
    };
    Some(format!(
        "outside the holes\n    reference {}\n    skeleton  {}",
        show(r.get(i)),
        show(s.get(i))
    ))
}

// ---------------------------------------------------------------- the checks

/// Every `<!-- code: -->` / `<!-- output: -->` block in lessons/ and slides/
/// equals its anchored region or its insta snapshot; `BLESS=1` rewrites them.
#[test]
fn checked_copies_match_their_sources() {
    let bless = std::env::var_os("BLESS").is_some_and(|v| v != "0");
    let mut problems = Vec::new();
    for (md, text) in docs() {
        let (found, fixed) = check_copies(&md, &text, &read);
        if bless && fixed != text {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            fs::write(root.join(&md), fixed).expect("write a blessed file");
            // Straight to stderr: the test harness hides `eprintln!` of a
            // passing test, and this note must be seen.
            let n = found.iter().filter(|p| p.1).count();
            let note = format!("BLESS: rewrote {n} block(s) in {md}\n");
            let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
        }
        problems.extend(found.into_iter().filter(|p| !(bless && p.1)).map(|p| p.0));
    }
    assert_none("checked copies", problems);
}

/// Every anchor in `src/**/*.rs` is well formed and quoted by a code marker in
/// lessons/ or slides/, or is a hole in the matching exercise skeleton.
#[test]
fn no_orphan_anchors() {
    let mut used: BTreeSet<String> = docs()
        .iter()
        .flat_map(|(_, t)| markers(t))
        .map(|m| m.target)
        .collect();
    for (skeleton, reference) in exercises() {
        let text = read(&skeleton).unwrap_or_default();
        used.extend(holes(&text).iter().map(|h| format!("{reference}#{h}")));
    }
    let problems = files("src", ".rs", true)
        .into_iter()
        .flat_map(|p| orphans(&p, &read(&p).unwrap_or_default(), &used));
    assert_none("orphan anchors", problems.collect());
}

/// Each lesson binary's header names its chapter `lessons/NN-*.md`, which
/// exists and names the binary back.
#[test]
fn lessons_and_binaries_link_both_ways() {
    let problems = lesson_files()
        .into_iter()
        .flat_map(|p| back_link_problems(stem(&p), &read(&p).unwrap_or_default(), &read));
    assert_none("back-links", problems.collect());
}

/// Every binary a command names in README.md, lessons/, slides/ or exercises/
/// exists (`src/bin/X.rs`, `src/bin/X/main.rs`, `exercises/src/bin/X.rs` or
/// `exercises/src/bin/X/main.rs`).
#[test]
fn commands_name_existing_binaries() {
    let mut texts = vec!["README.md".to_string()];
    texts.extend(
        [
            files("lessons", ".md", false),
            files("slides", ".md", false),
        ]
        .concat(),
    );
    texts.extend(files("exercises", ".md", true));
    let mut problems = Vec::new();
    for path in texts {
        for (line, form, name) in named_binaries(&read(&path).unwrap_or_default()) {
            if !binary_exists(form, &name) {
                problems.push(format!("{path}:{line}: `{form}{name}` names no binary"));
            }
        }
    }
    assert_none("binary names", problems);
}

/// Lesson NN uses only library modules introduced in lesson NN or earlier, and
/// every library module says where it is introduced.
#[test]
fn no_forward_references() {
    let module_lesson =
        |m: &str| read(&format!("src/{m}.rs")).or_else(|| read(&format!("src/{m}/mod.rs")));
    let mut problems = Vec::new();
    for path in files("src", ".rs", false)
        .iter()
        .filter(|p| !p.ends_with("lib.rs"))
    {
        if introduced_in(&read(path).unwrap_or_default()).is_none() {
            problems.push(format!("{path}: header lacks \"Introduced in lesson NN\""));
        }
    }
    for path in lesson_files() {
        let nn = rung(stem(&path), "lesson").unwrap_or(0);
        let used = forward_refs(nn, &read(&path).unwrap_or_default(), &|m| {
            module_lesson(m).as_deref().and_then(introduced_in)
        });
        problems.extend(used.into_iter().map(|p| format!("{path}: {p}")));
    }
    assert_none("forward references", problems);
}

/// The skeleton rebuilt from its reference: every line outside the holes is
/// the reference's, every hole keeps the skeleton's own body. This is what
/// `BLESS=1` writes after a lesson changed.
fn rebuild_skeleton(reference: &str, skeleton: &str) -> String {
    let holes = holes(skeleton);
    let raw_region = |source: &'static str, name: &str| -> Vec<&'static str> {
        let mut lines = source
            .lines()
            .skip_while(|l| anchor_line(l) != Some((true, name)));
        lines.next();
        lines
            .take_while(|l| anchor_line(l) != Some((false, name)))
            .collect()
    };
    // Leaked once per BLESS run: keeps the borrow story of this helper simple.
    let reference: &'static str = Box::leak(reference.to_string().into_boxed_str());
    let skeleton: &'static str = Box::leak(skeleton.to_string().into_boxed_str());
    let mut out = Vec::new();
    let mut inside: Option<&str> = None;
    for line in reference.lines() {
        match (inside, anchor_line(line)) {
            (Some(h), Some((false, name))) if name == h => inside = None,
            (Some(_), _) => continue,
            (None, Some((true, name))) if holes.contains(&name) => {
                // The reference's signature, then the skeleton's TODO body.
                out.push(line);
                out.extend(split_signature(&raw_region(reference, name)).0);
                out.extend(split_signature(&raw_region(skeleton, name)).1);
                inside = Some(name);
                continue;
            }
            _ => {}
        }
        out.push(line);
    }
    out.join("\n") + "\n"
}

/// Each skeleton `exercises/src/bin/exNN_*.rs` equals its `src/bin/lessonNN_*.rs`
/// once the holes are blanked in both. `BLESS=1` rebuilds a drifted skeleton
/// from its reference, keeping the skeleton's hole bodies.
#[test]
fn skeletons_match_their_reference() {
    let bless = std::env::var_os("BLESS").is_some_and(|v| v != "0");
    let mut problems = Vec::new();
    for (skeleton, reference) in exercises() {
        let s = read(&skeleton).unwrap_or_default();
        let text = read(&reference).unwrap_or_default();
        let r = match reference_as_skeleton(&reference, &text, &module_copies(&skeleton)) {
            Ok(r) => r,
            Err(why) => {
                problems.push(format!("{skeleton} vs {reference}: {why}"));
                continue;
            }
        };
        if let Some(why) = skeleton_drift(&r, &s) {
            if bless {
                std::fs::write(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join(&skeleton),
                    rebuild_skeleton(&r, &s),
                )
                .expect("skeleton is writable");
                eprintln!("BLESS: rebuilt {skeleton} from {reference}");
            } else {
                problems.push(format!(
                    "{skeleton} vs {reference}: {why}\n    (BLESS=1 cargo test --test lesson_text rebuilds it)"
                ));
            }
        }
    }
    assert_none("skeleton fidelity", problems);
}

// ---------------------------------------------------------------- exercise holes
//
// An exercise is work the student does: no chapter or slide prints the
// reference body of a hole (or a region around one), so the sections an
// exercise README sends the student to explain each hole's idea in prose,
// pseudo-code, or the library code it calls. Each exercise README opens
// with its holes, `file:line` one a line, and the helpers each may call.

/// Names of the anchors opened inside region `name` of `source` (nested).
fn nested_anchors<'a>(source: &'a str, name: &str) -> Vec<&'a str> {
    source
        .lines()
        .skip_while(|l| anchor_line(l) != Some((true, name)))
        .skip(1)
        .take_while(|l| anchor_line(l) != Some((false, name)))
        .filter_map(anchor_line)
        .filter(|a| a.0)
        .map(|a| a.1)
        .collect()
}

/// Code markers of `text` that quote an exercise hole, or a region holding
/// one. `holes` maps a reference file to the names of its holes.
fn quoted_holes(
    md: &str,
    text: &str,
    holes: &BTreeMap<String, Vec<String>>,
    read: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for marker in markers(text).into_iter().filter(|m| m.kind == "code") {
        let Some((path, anchor)) = marker.target.split_once('#') else {
            continue;
        };
        let Some(names) = holes.get(path) else {
            continue;
        };
        let source = read(path).unwrap_or_default();
        let inside = nested_anchors(&source, anchor);
        let hit = std::iter::once(anchor)
            .chain(inside)
            .find(|a| names.iter().any(|n| n == a));
        if let Some(hole) = hit {
            problems.push(format!(
                "{md}:{}: `{}` prints the body of exercise hole `{hole}`: explain it \
                 without its code (prose, pseudo-code, the library it calls)",
                marker.line + 1,
                marker.target
            ));
        }
    }
    problems
}

/// The holes the student fills: holes (see [`holes`]) that hold no other
/// hole. (A region around a hole is blanked too, but is not one more task.)
fn innermost_holes(skeleton: &str) -> Vec<&str> {
    let all = holes(skeleton);
    all.iter()
        .copied()
        .filter(|h| !nested_anchors(skeleton, h).iter().any(|n| all.contains(n)))
        .collect()
}

/// Reference file -> its holes, for every exercise.
fn all_holes() -> BTreeMap<String, Vec<String>> {
    exercises()
        .into_iter()
        .map(|(skeleton, reference)| {
            let text = read(&skeleton).unwrap_or_default();
            let names = innermost_holes(&text)
                .into_iter()
                .map(str::to_string)
                .collect();
            (reference, names)
        })
        .collect()
}

/// No chapter or slide quotes an exercise hole's reference body.
#[test]
fn chapters_do_not_print_exercise_holes() {
    let holes = all_holes();
    let problems = docs()
        .iter()
        .flat_map(|(md, text)| quoted_holes(md, text, &holes, &read))
        .collect();
    assert_none("exercise holes printed by the text", problems);
}

/// One hole as the exercise README lists it: `- `FILE:LINE` `NAME` …`.
#[derive(Debug, PartialEq)]
struct ListedHole {
    file: String,
    line: usize,
    name: String,
    /// The rest of the README line, after the name.
    rest: String,
}

/// The hole lines of an exercise README: the list under its first `##`
/// heading, which must be `## The holes`.
fn listed_holes(readme: &str) -> Result<Vec<ListedHole>, String> {
    let mut sections = readme.lines().skip_while(|l| !l.starts_with("## "));
    match sections.next() {
        Some("## The holes") => {}
        other => {
            return Err(format!(
                "its first section is {other:?}, not \"## The holes\""
            ));
        }
    }
    let mut listed = Vec::new();
    for line in sections.take_while(|l| !l.starts_with("## ")) {
        let Some(rest) = line.strip_prefix("- `") else {
            continue;
        };
        let (place, rest) = rest.split_once('`').ok_or(format!("unclosed `: {line}"))?;
        let (file, number) = place
            .rsplit_once(':')
            .ok_or(format!("no FILE:LINE in {line}"))?;
        let rest = rest.trim_start().strip_prefix('`').unwrap_or("");
        let (name, rest) = rest.split_once('`').unwrap_or(("", rest));
        listed.push(ListedHole {
            file: file.to_string(),
            line: number
                .parse()
                .map_err(|_| format!("bad line number in {line}"))?,
            name: name.to_string(),
            rest: rest.to_string(),
        });
    }
    Ok(listed)
}

/// Where the student starts: the 1-based line of the first `// TODO` inside
/// hole `name` of the skeleton.
fn todo_line(skeleton: &str, name: &str) -> Option<usize> {
    let lines: Vec<&str> = skeleton.lines().collect();
    let start = lines
        .iter()
        .position(|l| anchor_line(l) == Some((true, name)))?;
    (start + 1..lines.len())
        .take_while(|&i| anchor_line(lines[i]) != Some((false, name)))
        .find(|&i| lines[i].trim_start().starts_with("// TODO"))
        .map(|i| i + 1)
}

/// The problems with one exercise README's list of holes.
fn hole_list_problems(
    readme_path: &str,
    readme: &str,
    skeleton_path: &str,
    skeleton: &str,
    reference: &str,
) -> Vec<String> {
    let listed = match listed_holes(readme) {
        Ok(listed) => listed,
        Err(why) => return vec![format!("{readme_path}: {why}")],
    };
    let mut problems = Vec::new();
    let want = innermost_holes(skeleton);
    let got: Vec<&str> = listed.iter().map(|h| h.name.as_str()).collect();
    if got != want {
        problems.push(format!(
            "{readme_path}: lists holes {got:?}, the skeleton has {want:?} (in this order)"
        ));
    }
    for hole in &listed {
        let Some(line) = todo_line(skeleton, &hole.name) else {
            continue;
        };
        if hole.file != skeleton_path || hole.line != line {
            problems.push(format!(
                "{readme_path}: hole `{}` is at `{skeleton_path}:{line}` (its first TODO), not `{}:{}`",
                hole.name, hole.file, hole.line
            ));
        }
        let body = region(skeleton, &hole.name).unwrap_or_default();
        // The helpers: the backticked names after "may call", up to the sentence's end.
        let helpers = hole.rest.split_once("may call").map_or("", |h| h.1);
        let helpers = helpers.split(". ").next().unwrap_or("");
        if helpers.is_empty() {
            problems.push(format!(
                "{readme_path}: hole `{}` names no helper (\"may call `x`\")",
                hole.name
            ));
        }
        for helper in helpers.split('`').skip(1).step_by(2) {
            if !body.contains(helper) {
                problems.push(format!(
                    "{readme_path}: hole `{}` may call `{helper}`, which its TODO in {skeleton_path} never names",
                    hole.name
                ));
            }
        }
        let traces = region(reference, &hole.name).is_ok_and(|r| r.contains("trace!("));
        if traces && !hole.rest.contains("yourself") {
            problems.push(format!(
                "{readme_path}: the reference's `{}` has --trace lines: say \"add them yourself\"",
                hole.name
            ));
        }
    }
    problems
}

/// Each exercise README opens with `## The holes`: one line per hole of its
/// skeleton, in order, `file:line` of the hole's first TODO, and the helpers
/// it may call, each named by that TODO.
#[test]
fn exercise_readmes_list_their_holes() {
    let mut problems = Vec::new();
    for (skeleton, reference) in exercises() {
        let skeleton_text = read(&skeleton).unwrap_or_default();
        // A directory exercise (ex06) has its holes in one of its files:
        // the README lists those; a file without holes has nothing to list.
        if skeleton.ends_with("/main.rs") && !skeleton_text.contains("TODO(ex") {
            continue;
        }
        let readme_path = format!("exercises/{}/README.md", exercise_name(&skeleton));
        let Some(readme) = read(&readme_path) else {
            problems.push(format!("{readme_path} does not exist"));
            continue;
        };
        problems.extend(hole_list_problems(
            &readme_path,
            &readme,
            &skeleton,
            &skeleton_text,
            &read(&reference).unwrap_or_default(),
        ));
    }
    assert_none("exercise hole lists", problems);
}

/// Relative link targets of a Markdown text, outside fenced blocks:
/// (1-based line, target). Links to a scheme (`https:`) or an anchor skip.
fn relative_links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut open_fence = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(n) = open_fence {
            open_fence = (!fence_close(line, n)).then_some(n);
            continue;
        }
        open_fence = fence_open(line);
        if open_fence.is_some() {
            continue;
        }
        for part in line.split("](").skip(1) {
            let target = part.split(')').next().unwrap_or("").trim();
            if !target.contains(':') && !target.starts_with('#') && !target.is_empty() {
                found.push((i + 1, target.to_string()));
            }
        }
    }
    found
}

/// mdBook builds `lessons/` alone: a relative link out of it (`../x.md`)
/// works on GitHub and breaks in the built book. Name such files in code
/// font (`exercises/ex01_echo/README.md`) instead.
#[test]
fn chapter_links_stay_inside_the_book() {
    let mut problems = Vec::new();
    for path in files("lessons", ".md", false) {
        for (line, target) in relative_links(&read(&path).unwrap_or_default()) {
            let file = target.split('#').next().unwrap_or("");
            if file.starts_with("../") || file.starts_with('/') {
                problems.push(format!(
                    "{path}:{line}: links {target}, outside the book: name it in code font"
                ));
            } else if read(&format!("lessons/{file}")).is_none() {
                problems.push(format!(
                    "{path}:{line}: links {target}, which does not exist"
                ));
            }
        }
    }
    assert_none("links in lessons/", problems);
}

/// lessons/SUMMARY.md links only files that exist, and lists every chapter.
#[test]
fn summary_lists_every_chapter() {
    let summary = read("lessons/SUMMARY.md").expect("lessons/SUMMARY.md exists");
    let links: Vec<&str> = summary
        .split("](")
        .skip(1)
        .filter_map(|s| s.split(')').next())
        .collect();
    let mut problems: Vec<String> = links
        .iter()
        .filter(|l| read(&format!("lessons/{l}")).is_none())
        .map(|l| format!("SUMMARY.md links {l}, which does not exist"))
        .collect();
    for chapter in files("lessons", ".md", false) {
        let name = &chapter["lessons/".len()..];
        if rung(&format!("x{name}"), "x").is_some() && !links.contains(&name) {
            problems.push(format!("{chapter} is missing from lessons/SUMMARY.md"));
        }
    }
    assert_none("SUMMARY.md", problems);
}

// ---------------------------------------------------------------- the checks bite
//
// The checker functions on small in-memory examples, so we know each check
// fails when it should.

const SOURCE: &str = "fn main() {\n    // ANCHOR: greet\n    hello();\n    // ANCHOR: inner\n    world();\n    // ANCHOR_END: inner\n    // ANCHOR_END: greet\n}\n// ANCHOR: empty\n// ANCHOR_END: empty\n// ANCHOR: open\n";

fn fake_read(path: &str) -> Option<String> {
    match path {
        "src/a.rs" => Some(SOURCE.into()),
        "t.snap" => Some("---\nsource: tests/x.rs\n---\nline 1\r\nline 2\n\n".into()),
        _ => None,
    }
}

/// Assert that `text` contains `part`.
#[track_caller]
fn has(text: &str, part: &str) {
    assert!(text.contains(part), "expected {part:?} in:\n{text}");
}

#[test]
fn regions_follow_mdbook_rules_and_refuse_bad_anchors() {
    assert_eq!(
        region(SOURCE, "greet").unwrap(),
        "    hello();\n    world();"
    );
    assert_eq!(region(SOURCE, "inner").unwrap(), "    world();");
    has(
        &region(SOURCE, "missing").unwrap_err(),
        "no `// ANCHOR: missing`",
    );
    has(&region(SOURCE, "empty").unwrap_err(), "is empty");
    has(&region(SOURCE, "open").unwrap_err(), "never closed");
    let twice = "// ANCHOR: x\nx\n// ANCHOR: x\n// ANCHOR_END: x";
    has(&region(twice, "x").unwrap_err(), "occurs 2 times");
}

#[test]
fn a_differing_block_fails_and_bless_rewrites_it() {
    let md =
        "# T\n<!-- code: src/a.rs#greet -->\n```rust\n    hello();\n    wrold();\n```\nafter\n";
    let (problems, fixed) = check_copies("x.md", md, &fake_read);
    assert_eq!(problems.len(), 1);
    has(
        &problems[0].0,
        "x.md:2: code marker `src/a.rs#greet`: block line 2 differs",
    );
    has(
        &problems[0].0,
        "expected:     world();\n    found:        wrold();",
    );
    assert!(problems[0].1, "BLESS can fix it");
    assert_eq!(fixed, md.replace("wrold", "world"));
    assert!(check_copies("x.md", &fixed, &fake_read).0.is_empty());
}

#[test]
fn missing_blocks_files_and_anchors_fail() {
    let md = "<!-- code: src/a.rs#greet -->\n\n<!-- code: src/a.rs#nope -->\n```rust\n```\n<!-- code: src/gone.rs#x -->\n```rust\n```\n````md\n<!-- code: src/gone.rs#example -->\n````\n";
    let (problems, fixed) = check_copies("x.md", md, &fake_read);
    let fixable: Vec<bool> = problems.iter().map(|p| p.1).collect();
    assert_eq!(
        fixable,
        [true, false, false],
        "the marker in ````md is an example"
    );
    has(&problems[0].0, "no fenced block follows");
    has(&problems[1].0, "src/a.rs: no `// ANCHOR: nope`");
    has(&problems[2].0, "src/gone.rs does not exist");
    has(
        &fixed,
        "greet -->\n```rust\n    hello();\n    world();\n```\n\n<!--",
    );
}

#[test]
fn output_blocks_compare_with_the_snapshot_body() {
    let good = "<!-- output: t.snap -->\n```text\nline 1\nline 2\n```\n";
    assert!(check_copies("x.md", good, &fake_read).0.is_empty());
    let (problems, _) = check_copies("x.md", &good.replace("line 2", "line 3"), &fake_read);
    has(&problems[0].0, "block line 2 differs");
    let missing = "<!-- output: lessons/transcripts/99-none.snap -->\n";
    let (problems, _) = check_copies("x.md", missing, &fake_read);
    has(
        &problems[0].0,
        "does not exist: no test under tests/ snapshots \"99-none\"",
    );
}

#[test]
fn orphans_and_back_links_are_found() {
    let used: BTreeSet<String> = ["src/a.rs#greet".to_string()].into();
    let found = orphans("src/a.rs", SOURCE, &used).join("\n");
    has(
        &found,
        "src/a.rs: anchor `inner` is quoted by no lesson or slide",
    );
    has(&found, "anchor `empty` is empty");
    has(&found, "`// ANCHOR: open` is never closed");
    assert!(
        orphans(
            "src/a.rs",
            "// ANCHOR: greet\nx\n// ANCHOR_END: greet",
            &used
        )
        .is_empty()
    );

    let chapter = |p: &str| (p == "lessons/01-echo.md").then(|| "run lesson01_echo".to_string());
    let good = "//! # Lesson 01: echo\n//! Lecture: `lessons/01-echo.md`\nfn main() {}";
    let problems = |bin: &str, source: &str| back_link_problems(bin, source, &chapter).join("");
    assert_eq!(problems("lesson01_echo", good), "");
    has(
        &problems("lesson01_echo", "//! # Lesson 01\n"),
        "names no `lessons/01-*.md`",
    );
    has(
        &problems("lesson01_xyz", good),
        "never names `lesson01_xyz`",
    );
    has(
        &problems("lesson01_echo", &good.replace("01-echo", "01-ech")),
        "does not exist",
    );
}

#[test]
fn binary_names_are_found() {
    let text = "cargo run --bin lesson01_echo -- --port 1\n`cargo ex ex01_echo`, cargo grade ex01, --bin=x-y, --bin <name>";
    let names: Vec<String> = named_binaries(text).into_iter().map(|n| n.2).collect();
    assert_eq!(names, ["lesson01_echo", "x", "ex01_echo", "ex01"]);
    assert!(!binary_exists("--bin ", "lesson99_nothing"));
    assert!(!binary_exists("cargo grade ", "ex99"));
}

#[test]
fn forward_references_are_found() {
    let lesson = "use std::io;\nuse ladder::{cli, http::Request};\n// ladder::wsgi comes later\nladder::trace!(\"x\");\nlet x = ladder::log::access;";
    let used: Vec<String> = ladder_modules(lesson).into_iter().collect();
    assert_eq!(used, ["cli", "http", "log", "trace"]);
    let order = ["cli", "trace", "http", "log"];
    let intro = |m: &str| order.iter().position(|&n| n == m).map(|i| i as u32);
    assert!(forward_refs(3, lesson, &intro).is_empty());
    let found = forward_refs(2, &format!("{lesson}\nuse ladder::cgi;"), &intro).join("\n");
    assert_eq!(
        found,
        "uses ladder::cgi, which has no module header\nuses ladder::log, introduced in lesson 3"
    );
    let header = "//! HTTP.\n//!\n//! Introduced in lesson 02 (`lessons/02-hello.md`).\nuse x;";
    assert_eq!(introduced_in(header), Some(2));
    assert_eq!(
        introduced_in("//! Nothing.\n// Introduced in lesson 01, below the header"),
        None
    );
}

#[test]
fn skeleton_drift_is_found_outside_holes_only() {
    let reference = "fn a() {\n    // ANCHOR: read\n    real();\n    // ANCHOR_END: read\n}\n// ANCHOR: kept\nkept();\n// ANCHOR_END: kept\n";
    let hole = "    // TODO(ex01): read\n    todo!(\"ex01: read\")";
    let skeleton = reference.replace("    real();", hole);
    assert_eq!(skeleton_drift(reference, &skeleton), None);
    let drift = skeleton_drift(reference, &skeleton.replace("kept();", "changed();"));
    has(
        &drift.unwrap(),
        "reference line 7: kept();\n    skeleton  line 8: changed();",
    );
    let renamed = reference.replace("ANCHOR: read", "ANCHOR: other");
    has(
        &skeleton_drift(&renamed, &skeleton).unwrap(),
        "hole `read` is not an anchored region",
    );
}

#[test]
/// A rebuilt skeleton has the reference outside the holes and its own
/// hole bodies inside, and so no longer drifts.
fn rebuilt_skeleton_keeps_holes_and_takes_the_rest() {
    let reference =
        "// new header\n// ANCHOR: h\nfn h() { real() }\n// ANCHOR_END: h\nfn tail() {}\n";
    let skeleton =
        "// old header\n// ANCHOR: h\nfn h() { todo!(\"ex\") }\n// ANCHOR_END: h\nfn tail() {}\n";
    assert!(skeleton_drift(reference, skeleton).is_some());
    let rebuilt = rebuild_skeleton(reference, skeleton);
    assert_eq!(
        rebuilt,
        "// new header\n// ANCHOR: h\nfn h() { todo!(\"ex\") }\n// ANCHOR_END: h\nfn tail() {}\n"
    );
    assert_eq!(skeleton_drift(reference, &rebuilt), None);
}

#[test]
fn printing_a_hole_or_a_region_around_one_is_found() {
    let source = "// ANCHOR: outer\nfn run() {\n    // ANCHOR: hole\n    work();\n    // ANCHOR_END: hole\n}\n// ANCHOR_END: outer\n// ANCHOR: lib\nlib();\n// ANCHOR_END: lib\n";
    let read = |p: &str| (p == "src/bin/l.rs").then(|| source.to_string());
    let holes: BTreeMap<String, Vec<String>> =
        [("src/bin/l.rs".to_string(), vec!["hole".to_string()])].into();
    let md = "<!-- code: src/bin/l.rs#hole -->\n```rust\n```\n<!-- code: src/bin/l.rs#outer -->\n```rust\n```\n<!-- code: src/bin/l.rs#lib -->\n```rust\n```\n";
    let found = quoted_holes("x.md", md, &holes, &read);
    assert_eq!(found.len(), 2, "{found:?}");
    has(
        &found[0],
        "x.md:1: `src/bin/l.rs#hole` prints the body of exercise hole `hole`",
    );
    has(
        &found[1],
        "x.md:4: `src/bin/l.rs#outer` prints the body of exercise hole `hole`",
    );
}

#[test]
fn a_hole_list_must_match_the_skeleton() {
    let reference = "fn a() {\n    // ANCHOR: read\n    trace!(\"x\");\n    real();\n    // ANCHOR_END: read\n}\n";
    let skeleton = "fn a() {\n    // ANCHOR: read\n    // TODO(ex01): call `helper`\n    todo!(\"ex01\")\n    // ANCHOR_END: read\n}\n";
    let good = "# Ex\n\nIntro.\n\n## The holes\n\n- `s.rs:3` `read`: may call `helper`; the --trace lines: add them yourself\n\n## Run it\n";
    assert!(hole_list_problems("R.md", good, "s.rs", skeleton, reference).is_empty());
    let problems =
        |readme: &str| hole_list_problems("R.md", readme, "s.rs", skeleton, reference).join("\n");
    has(
        &problems(&good.replace("s.rs:3", "s.rs:2")),
        "is at `s.rs:3` (its first TODO), not `s.rs:2`",
    );
    has(
        &problems(&good.replace("`helper`", "`other`")),
        "may call `other`, which its TODO in s.rs never names",
    );
    has(
        &problems(&good.replace("`read`", "`write`")),
        "lists holes [\"write\"], the skeleton has [\"read\"]",
    );
    has(
        &problems(&good.replace(": add them yourself", "")),
        "say \"add them yourself\"",
    );
    has(
        &problems(&good.replace("## The holes", "## Read first")),
        "not \"## The holes\"",
    );
    has(
        &problems(&good.replace(": may call `helper`", "")),
        "names no helper",
    );
}

#[test]
fn links_out_of_the_book_are_found() {
    let md = "See [ex](../exercises/ex01/README.md) and [c](02-hello.md#x), [w](https://x.org/a).\n```md\n[no](../in/a/block.md)\n```\n";
    assert_eq!(
        relative_links(md),
        [
            (1, "../exercises/ex01/README.md".to_string()),
            (1, "02-hello.md#x".to_string())
        ]
    );
}

#[test]
fn a_module_exercise_declares_its_two_differences() {
    // main.rs: the lesson with its import of the module read as `mod`.
    let lesson = "//! Lesson\nuse ladder::cli;\nuse ladder::wsgi;\nfn main() {}\n";
    let modules = ["wsgi".to_string()];
    assert_eq!(
        reference_as_skeleton("src/bin/lesson06_wsgi.rs", lesson, &modules).unwrap(),
        "//! Lesson\nuse ladder::cli;\nmod wsgi;\nfn main() {}\n"
    );
    // Nothing else may differ, and the import must be there, once.
    let grouped = lesson.replace(
        "use ladder::cli;\nuse ladder::wsgi;",
        "use ladder::{cli, wsgi};",
    );
    has(
        &reference_as_skeleton("src/bin/lesson06_wsgi.rs", &grouped, &modules).unwrap_err(),
        "exactly once: `use ladder::wsgi;` (found 0 times)",
    );
    assert_eq!(
        reference_as_skeleton("src/bin/lesson05_epoll.rs", lesson, &[]).unwrap(),
        lesson
    );
    // The module copy: the library's own paths, as the binary names them.
    let module = "use crate::cgi;\n// ANCHOR: h\nfn h() {\n    crate::x()\n}\n// ANCHOR_END: h\n";
    let copy = reference_as_skeleton("src/wsgi.rs", module, &[]).unwrap();
    assert_eq!(copy, module.replace("crate::", "ladder::"));
    let skeleton = copy.replace("ladder::x()", "todo!(\"ex\")");
    assert_eq!(skeleton_drift(&copy, &skeleton), None);
    assert!(
        skeleton_drift(module, &skeleton).is_some(),
        "crate:: is not ladder::"
    );
}
