//! The files the stages serve, shipped in the repository so that the
//! server started the way the report's last line says serves them too:
//! `tests/fixtures/` (ex03's scripts and pages, shared with lesson 03's
//! tests) and `exercises/fixtures/exNN/` (ex04's site, ex05's files). The
//! one large file, `big.bin`, is made by the grader (and ignored by git).

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The repository's root (the grader is built from it).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path of the repository, absolute, as a flag's value.
pub fn arg(relative: &str) -> String {
    repo().join(relative).display().to_string()
}

/// The bytes of every `big.bin`: `size` bytes of a pattern that a shifted
/// or truncated copy cannot match.
pub fn big_data(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// Make `file` hold [`big_data`]`(size)`, unless it already does. Written
/// to a temporary name first, then renamed: graders running side by side
/// never see half a file.
pub fn ensure_big(file: &Path, size: usize) -> io::Result<()> {
    let data = big_data(size);
    if fs::read(file).is_ok_and(|have| have == data) {
        return Ok(());
    }
    let temp = file.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&temp, &data)?;
    fs::rename(&temp, file)
}

/// `arg` for a person to type: a path inside the repository relative to
/// the current directory (`exercises/fixtures/ex04/www` from the root,
/// `fixtures/ex04/www` from `exercises/`); anything else unchanged.
pub fn shown(arg: &str) -> String {
    let path = Path::new(arg);
    let Ok(cwd) = std::env::current_dir() else {
        return arg.to_string();
    };
    if !path.is_absolute() || !path.starts_with(repo()) || !cwd.starts_with(repo()) {
        return arg.to_string();
    }
    match relative_to(path, &cwd) {
        Some(rel) if rel.as_os_str().is_empty() => ".".to_string(),
        Some(rel) => rel.display().to_string(),
        None => arg.to_string(),
    }
}

/// `path` seen from `base` (both absolute, without `..`).
fn relative_to(path: &Path, base: &Path) -> Option<PathBuf> {
    let path: Vec<Component> = path.components().collect();
    let base: Vec<Component> = base.components().collect();
    if path.contains(&Component::ParentDir) || base.contains(&Component::ParentDir) {
        return None;
    }
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for part in &path[common..] {
        out.push(part);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_shown_relative_to_where_one_stands() {
        let rel = |p: &str, b: &str| relative_to(Path::new(p), Path::new(b)).unwrap();
        assert_eq!(
            rel("/r/exercises/fixtures/ex04", "/r"),
            Path::new("exercises/fixtures/ex04")
        );
        assert_eq!(
            rel("/r/exercises/fixtures/ex04", "/r/exercises"),
            Path::new("fixtures/ex04")
        );
        assert_eq!(
            rel("/r/tests/fixtures", "/r/exercises/src"),
            Path::new("../../tests/fixtures")
        );
    }
}
