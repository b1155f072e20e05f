//! `ladder::python`: starting, configuring and stopping the embedded CPython.
//!
//! Python starts once per process and cannot start again, so every check
//! here runs in a process of its own: the test re-runs this very test binary
//! with `--ignored --exact child_…`, which selects one of the `child_…`
//! functions below (ignored in a normal run; they do nothing but report).
//! That is spawning a program, not forking the test process.
#![cfg(feature = "python")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ladder::python;
use pyo3::prelude::*;

// ---------------------------------------------------------------- children

/// Report what the interpreter sees, as `key=value` lines on stdout,
/// then finalize (the parent checks that `atexit` ran and output was flushed).
#[test]
#[ignore = "a child process of the tests below"]
fn child_report() {
    let config = python::Config {
        python: std::env::var_os("CHILD_PYTHON").map(PathBuf::from),
        app_dir: std::env::var_os("CHILD_APP_DIR").map(PathBuf::from),
        argv: vec!["server".into(), "app:app".into()],
    };
    let interpreter = python::initialize(&config).expect("initialize");
    Python::attach(|py| {
        let code = c"
import sys
import atexit, signal, site
print()  # after the test harness's own `test child_report ... `
print('version=' + sys.version.split()[0])
print('executable=' + sys.executable)
print('prefix=' + sys.prefix)
print('base_prefix=' + sys.base_prefix)
print('path0=' + sys.path[0])
print('argv=' + ' '.join(sys.argv))
caught = int([l for l in open('/proc/self/status') if l.startswith('SigCgt')][0].split()[1], 16)
print('sigint_caught=' + str(bool(caught & (1 << (signal.SIGINT - 1)))))
print('sigint_default=' + str(signal.getsignal(signal.SIGINT) == signal.SIG_DFL))
try:
    import ladder_marker
    print('marker=' + ladder_marker.WHERE)
except ImportError as e:
    print('marker=missing ' + str(e))
atexit.register(lambda: print('atexit=ran'))
sys.stdout.write('unflushed=yes\\n')
";
        py.run(code, None, None).expect("report");
    });
    // Nothing above flushed sys.stdout, and stdout is a pipe (block
    // buffered): without Py_FinalizeEx the last lines would be lost.
    interpreter.finalize().expect("finalize");
}

/// Load `CHILD_SPEC` and exit as the binary would: status 1 and the report.
#[test]
#[ignore = "a child process of the tests below"]
fn child_load() {
    let config = python::Config {
        app_dir: std::env::var_os("CHILD_APP_DIR").map(PathBuf::from),
        ..Default::default()
    };
    let interpreter = python::initialize(&config).expect("initialize");
    let spec = std::env::var("CHILD_SPEC").expect("CHILD_SPEC");
    match python::load_app(&spec) {
        Ok(app) => {
            let repr = Python::attach(|py| app.bind(py).repr().unwrap().to_string());
            println!("loaded={repr}");
            drop(app);
            interpreter.finalize().expect("finalize");
        }
        Err(err) => {
            err.report("test");
            drop(interpreter);
            std::process::exit(python::EXIT_LOAD_FAILED);
        }
    }
}

// ---------------------------------------------------------------- parents

/// How to run one child.
struct Child<'a> {
    name: &'a str,
    env: Vec<(&'a str, String)>,
    /// Start from an empty environment, as `env -i` does.
    clear_env: bool,
    cwd: Option<&'a Path>,
}

fn run(child: Child<'_>) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        "--ignored",
        "--exact",
        child.name,
        "--nocapture",
        "--test-threads=1",
    ]);
    if child.clear_env {
        command.env_clear();
    } else {
        // The parent's own choice must not leak into a child that tests the default.
        command.env_remove("VIRTUAL_ENV").env_remove("PYTHONPATH");
    }
    command.envs(child.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = child.cwd {
        command.current_dir(cwd);
    }
    command.output().unwrap()
}

/// The child's `key=value` lines.
fn report(output: &Output) -> BTreeMap<String, String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the linked interpreter says about itself, asked directly.
fn linked(expression: &str) -> String {
    let python = python::LINKED_PYTHON.expect("build.rs names the linked interpreter");
    let out = Command::new(python)
        .args(["-c", &format!("import sys; print({expression})")])
        .env_remove("VIRTUAL_ENV")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A directory of this test's own, removed when dropped.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("ladder-embed-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// A venv made by the linked interpreter (no pip: fast), with a module only
/// it can import.
fn make_venv(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    let python = python::LINKED_PYTHON.unwrap();
    let status = Command::new(python)
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(status.success(), "python -m venv failed");
    let version = python::LINKED_VERSION;
    let site = venv.join(format!("lib/python{version}/site-packages"));
    std::fs::write(site.join("ladder_marker.py"), "WHERE = 'venv'\n").unwrap();
    venv
}

#[test]
fn the_linked_interpreter_runs_not_another_one() {
    // Without the rpath, the loader would pick whichever libpython3.X.so it
    // finds first (on a Debian machine with pyenv: /usr's, another patch
    // release, with sys.prefix /usr). The version and prefix must be the
    // linked interpreter's, also under `env -i` and from another directory.
    let elsewhere = temp_dir("elsewhere");
    for clear_env in [false, true] {
        let seen = report(&run(Child {
            name: "child_report",
            env: vec![],
            clear_env,
            cwd: Some(&elsewhere),
        }));
        assert_eq!(
            seen["version"],
            linked("sys.version.split()[0]"),
            "env -i: {clear_env}"
        );
        assert_eq!(seen["prefix"], linked("sys.prefix"), "env -i: {clear_env}");
        assert_eq!(seen["executable"], python::LINKED_PYTHON.unwrap());
        assert_eq!(seen["argv"], "server app:app");
        assert!(seen["marker"].starts_with("missing"), "{seen:?}");
    }
}

#[test]
fn atexit_runs_and_buffered_output_is_flushed_at_finalize() {
    let seen = report(&run(Child {
        name: "child_report",
        env: vec![],
        clear_env: false,
        cwd: None,
    }));
    assert_eq!(seen.get("unflushed").map(String::as_str), Some("yes"));
    assert_eq!(seen.get("atexit").map(String::as_str), Some("ran"));
}

#[test]
fn python_installs_no_signal_handler() {
    // With Python's handlers, SIGINT would be caught in C and handed to
    // `default_int_handler` (KeyboardInterrupt), even after
    // `install_signal_handlers = 0` once the app imports `signal`; the server
    // owns its signals. The child imports `signal` and then reads the
    // kernel's view (/proc/self/status) and Python's.
    let seen = report(&run(Child {
        name: "child_report",
        env: vec![],
        clear_env: false,
        cwd: None,
    }));
    assert_eq!(seen["sigint_caught"], "False", "{seen:?}");
    assert_eq!(seen["sigint_default"], "True", "{seen:?}");
}

#[test]
fn a_venv_is_chosen_by_flag_or_by_virtual_env_even_under_env_i() {
    let dir = temp_dir("venv");
    let venv = make_venv(&dir);
    let elsewhere = temp_dir("venv-elsewhere");
    let by_flag_dir = ("CHILD_PYTHON", venv.display().to_string());
    let by_flag_exe = (
        "CHILD_PYTHON",
        venv.join("bin/python").display().to_string(),
    );
    let by_env = ("VIRTUAL_ENV", venv.display().to_string());
    for (how, var, clear_env) in [
        ("--python DIR", by_flag_dir, true),
        ("--python DIR/bin/python", by_flag_exe, false),
        ("$VIRTUAL_ENV", by_env.clone(), false),
        ("$VIRTUAL_ENV under env -i", by_env, true),
    ] {
        let seen = report(&run(Child {
            name: "child_report",
            env: vec![var],
            clear_env,
            cwd: Some(&elsewhere),
        }));
        assert_eq!(Path::new(&seen["prefix"]), venv, "{how}");
        assert_eq!(seen["base_prefix"], linked("sys.base_prefix"), "{how}");
        assert_eq!(
            seen["marker"], "venv",
            "{how}: site-packages not importable"
        );
    }
}

#[test]
fn app_dir_is_first_on_sys_path_and_pythonpath_is_honoured() {
    let dir = temp_dir("path");
    let app_dir = dir.join("app");
    let extra = dir.join("extra");
    std::fs::create_dir_all(&app_dir).unwrap();
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("ladder_marker.py"), "WHERE = 'pythonpath'\n").unwrap();
    let seen = report(&run(Child {
        name: "child_report",
        env: vec![
            ("CHILD_APP_DIR", app_dir.display().to_string()),
            ("PYTHONPATH", extra.display().to_string()),
        ],
        clear_env: true,
        cwd: Some(&dir),
    }));
    assert_eq!(Path::new(&seen["path0"]), app_dir);
    assert_eq!(seen["marker"], "pythonpath");
}

#[test]
fn a_missing_python_is_an_error_not_a_crash() {
    let err = python::program(Some(Path::new("/nonexistent/python3"))).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/python3"), "{err}");
    let dir = temp_dir("not-a-venv");
    let err = python::program(Some(&dir)).unwrap_err();
    assert!(err.to_string().contains("no bin/python3"), "{err}");
}

/// Apps for the loading tests, in a directory of their own.
fn load_dir(name: &str) -> TempDir {
    let dir = temp_dir(name);
    let files = [
        (
            "hello.py",
            "def app(environ, start_response):\n    return []\n",
        ),
        (
            "factory.py",
            "def create_app(name='x', *, debug=False):\n    def app(e, s):\n        return []\n    app.label = (name, debug)\n    return app\n\ndef failing():\n    raise RuntimeError('bad config')\n\ndef nothing():\n    return None\n\nnot_callable = 42\n",
        ),
        (
            "broken.py",
            "import json\nraise RuntimeError('no database')\n",
        ),
        ("needs_missing.py", "import ladder_no_such_dependency\n"),
        ("syntax.py", "def app(:\n"),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn load(dir: &Path, spec: &str) -> (Option<i32>, String, String) {
    let out = run(Child {
        name: "child_load",
        env: vec![
            ("CHILD_SPEC", spec.to_string()),
            ("CHILD_APP_DIR", dir.display().to_string()),
        ],
        clear_env: false,
        cwd: Some(dir),
    });
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn apps_load_as_gunicorn_loads_them() {
    let dir = load_dir("load-ok");
    for spec in [
        "hello:app",
        "factory:create_app()",
        "factory:create_app('y', debug=True)",
    ] {
        let (code, stdout, stderr) = load(&dir, spec);
        assert_eq!(code, Some(0), "{spec}: {stderr}");
        assert!(stdout.contains("loaded=<function"), "{spec}: {stdout}");
    }
}

#[test]
fn a_failed_load_is_one_line_and_exit_status_1() {
    let dir = load_dir("load-failed");
    // (spec, the line, what the details after it show; None: no details)
    let cases = [
        (
            "hello:nope",
            "[test] Failed to find attribute 'nope' in 'hello'.",
            None,
        ),
        (
            "hello",
            "[test] Failed to find attribute 'application' in 'hello'.",
            None,
        ),
        (
            "nosuchmodule:app",
            "[test] Failed to import 'nosuchmodule': ModuleNotFoundError: No module named 'nosuchmodule'",
            None,
        ),
        (
            "hello.py:app",
            "[test] Failed to find application, did you mean 'hello:app'?",
            None,
        ),
        (
            "broken:app",
            "[test] Failed to import 'broken': RuntimeError: no database",
            Some("raise RuntimeError('no database')"),
        ),
        (
            "needs_missing:app",
            "[test] Failed to import 'needs_missing': ModuleNotFoundError: No module named 'ladder_no_such_dependency'",
            Some("import ladder_no_such_dependency"),
        ),
        (
            "syntax:app",
            "[test] Failed to import 'syntax': SyntaxError:",
            Some("def app(:"),
        ),
        (
            "factory:nothing()",
            "[test] Failed to find application object: 'nothing()'",
            None,
        ),
        (
            "factory:not_callable",
            "[test] Application object must be callable.",
            None,
        ),
        (
            "factory:create_app(1, 2, 3)",
            "[test] Failed to call 'create_app(1, 2, 3)' in 'factory': TypeError:",
            None,
        ),
        (
            "factory:failing()",
            "[test] Failed to call 'failing()' in 'factory': RuntimeError: bad config",
            Some("raise RuntimeError('bad config')"),
        ),
        (
            "factory:create_app(open('x'))",
            "[test] Failed to parse arguments as literal values: 'create_app(open('x'))'",
            None,
        ),
        (
            "factory:a.b",
            "[test] Failed to parse 'a.b' as an attribute name or function call.",
            None,
        ),
    ];
    for (spec, line, details) in cases {
        let (code, _, stderr) = load(&dir, spec);
        assert_eq!(code, Some(python::EXIT_LOAD_FAILED), "{spec}: {stderr}");
        assert!(!stderr.contains("panicked"), "{spec}:\n{stderr}");
        // The line comes first; the details, if any, after it.
        let (first, rest) = stderr.split_once('\n').unwrap_or((&stderr, ""));
        assert!(first.starts_with(line), "{spec}: {first:?}\n{stderr}");
        match details {
            Some(shown) => assert!(rest.contains(shown), "{spec}:\n{stderr}"),
            None => assert_eq!(rest, "", "{spec}: only one line expected"),
        }
    }
}
