//! CPython inside the server: start the interpreter, load the app, stop it.
//!
//! Introduced in lesson 06 (`lessons/06-wsgi.md`), used by 07.
//!
//! Rung 3 started a new process for every request; from rung 6 on, ONE
//! Python interpreter lives inside the server process for its whole life,
//! and each request is a function call into it ([`crate::wsgi`]). This
//! module is the interpreter's life cycle, in the order a server goes
//! through it:
//!
//! 1. [`initialize`]: configure and start CPython (PEP 587's `PyConfig`):
//!    which Python installation or venv the app sees, no Python signal
//!    handlers (the server owns its signals), the app's directory first on
//!    `sys.path`.
//! 2. [`load_app`]: import `module:callable` the way gunicorn does, or
//!    explain in one line why not.
//! 3. requests: any thread may now call into Python with
//!    `pyo3::Python::attach`, one at a time: the GIL lets one thread run
//!    Python code at a time. A thread that calls often keeps its Python
//!    thread state from one call to the next ([`keep_thread_state`]).
//! 4. [`Interpreter::finalize`]: `atexit` handlers run, buffered output is
//!    flushed, the interpreter is gone.
//!
//! This is the only module of the crate allowed `unsafe`: starting and
//! stopping an interpreter goes through CPython's C API (pyo3's `ffi`), as
//! does the fork protocol rung 7 needs. The unsafe operations, each with a
//! `SAFETY` comment where it happens:
//!
//! - `PyConfig_*` and `Py_InitializeFromConfig`: fill in a `PyConfig` and
//!   start the interpreter with it;
//! - `PyEval_SaveThread` / `PyEval_RestoreThread`: the starting thread lets
//!   go of the GIL after start-up, and takes it back to finalize;
//! - `Py_FinalizeEx`;
//! - `PyOS_BeforeFork`, `PyOS_AfterFork_Parent`, `PyOS_AfterFork_Child`;
//! - `BorrowedFd::borrow_raw`, for a Python file object's descriptor.

#![allow(unsafe_code)]

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use pyo3::exceptions::PyModuleNotFoundError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::trace;

/// The interpreter this crate was linked with at build time (`PYO3_PYTHON`,
/// else `python3` on PATH), from `build.rs`.
pub const LINKED_PYTHON: Option<&str> = option_env!("LADDER_PYTHON");

/// Its `major.minor` version, e.g. `3.11`: a venv made by another version
/// keeps its packages where this interpreter will not look.
pub const LINKED_VERSION: &str = env!("LADDER_PYTHON_VERSION");

/// What [`initialize`] needs to know.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `--python PATH`: a Python executable, or a venv's directory. `None`:
    /// `$VIRTUAL_ENV` if set, else the interpreter linked at build time.
    pub python: Option<PathBuf>,
    /// The directory to put first on `sys.path`, where `import hello`
    /// finds `hello.py`: the working directory, or `--chdir`.
    pub app_dir: Option<PathBuf>,
    /// `sys.argv`, e.g. the server's own command line, as gunicorn leaves it.
    pub argv: Vec<OsString>,
}

/// The running interpreter. It belongs to the thread that started it:
/// [`finalize`](Interpreter::finalize) it there, after every other thread
/// has stopped calling into Python. Dropping it finalizes too.
pub struct Interpreter {
    /// The starting thread's Python thread state, parked while that thread
    /// does not run Python (`PyEval_SaveThread`). A raw pointer: it makes
    /// this type neither `Send` nor `Sync`, which is the point.
    main_thread: *mut ffi::PyThreadState,
    finalized: bool,
}

// ANCHOR: program
/// The program Python is told it is: it decides `sys.prefix`, and so the
/// site-packages an app can import from.
///
/// Python finds its installation from its own executable's path (`getpath`):
/// next to `bin/python3` it looks for `pyvenv.cfg` (then the executable is a
/// venv's and `sys.prefix` is the venv) or for `lib/python3.X/os.py` (an
/// installation). Our executable is the server, where neither is found, so
/// we name a Python executable instead: the one the user chose, or the one
/// we were built against.
pub fn program(chosen: Option<&Path>) -> io::Result<Option<PathBuf>> {
    let venv = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty());
    let Some(path) = chosen
        .map(Path::to_path_buf)
        .or_else(|| venv.map(PathBuf::from))
    else {
        return Ok(LINKED_PYTHON.map(PathBuf::from));
    };
    // A venv's directory stands for its `bin/python3`.
    let executable = if path.is_dir() {
        ["bin/python3", "bin/python"]
            .iter()
            .map(|name| path.join(name))
            .find(|candidate| candidate.exists())
            .ok_or_else(|| {
                let why = format!("{}: no bin/python3 in this directory", path.display());
                io::Error::new(io::ErrorKind::NotFound, why)
            })?
    } else if path.exists() {
        path
    } else {
        let why = format!("{}: no such Python executable", path.display());
        return Err(io::Error::new(io::ErrorKind::NotFound, why));
    };
    // Not canonicalized: a venv's python is a symlink to the real one, and
    // resolving it would lose the venv.
    Ok(Some(std::path::absolute(executable)?))
}
// ANCHOR_END: program

/// A venv made by another Python version keeps its packages in
/// `lib/python3.Y/site-packages`, where this interpreter never looks: say
/// so, since the app's imports will fail for a reason hard to guess.
fn check_venv_version(executable: &Path) {
    let Some(venv) = executable.parent().and_then(Path::parent) else {
        return;
    };
    let Ok(cfg) = std::fs::read_to_string(venv.join("pyvenv.cfg")) else {
        return; // not a venv: an installation's own python
    };
    let made_by = cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        matches!(key.trim(), "version" | "version_info").then(|| value.trim().to_string())
    });
    if let Some(made_by) = made_by {
        let same = made_by == LINKED_VERSION || made_by.starts_with(&format!("{LINKED_VERSION}."));
        if !same {
            eprintln!(
                "[python] warning: {} was made by Python {made_by}, this server embeds \
                 Python {LINKED_VERSION}: its packages will not be found",
                venv.display()
            );
        }
    }
}

/// Start CPython. Call it once per process, from the thread that will
/// finalize it (`main`), before any thread calls into Python; in a rung that
/// blocks signals in a signal thread (`ladder::shutdown`), after that.
///
/// The configuration is PEP 587's `PyConfig`, in its "Python" flavour (the
/// one `python3` itself uses: it reads `PYTHONPATH` and the other `PYTHON*`
/// environment variables), with three changes:
///
/// - `install_signal_handlers = 0`: Python would take SIGINT for its
///   `KeyboardInterrupt`, but the server owns signals;
/// - `program_name` = a Python executable (see [`program`]), so `sys.prefix`
///   and site-packages are right even under `env -i` or from another
///   directory;
/// - `parse_argv = 0`: `sys.argv` is the server's command line, not options
///   for Python.
pub fn initialize(config: &Config) -> io::Result<Interpreter> {
    // SAFETY: Py_IsInitialized may be called at any time, even before start-up.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return Err(io::Error::other(
            "Python is already running in this process",
        ));
    }
    let program = program(config.python.as_deref())?;
    if let Some(program) = &program {
        check_venv_version(program);
    }
    let c_string = |text: &OsStr| {
        CString::new(text.as_bytes()).map_err(|_| io::Error::other("a NUL byte in an argument"))
    };
    let program_c = program
        .as_deref()
        .map(|p| c_string(p.as_os_str()))
        .transpose()?;
    let argv_c: Vec<CString> = config
        .argv
        .iter()
        .map(|a| c_string(a))
        .collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const std::ffi::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();

    // ANCHOR: py_config
    let mut py_config = MaybeUninit::<ffi::PyConfig>::uninit();
    let py_config = py_config.as_mut_ptr();
    // SAFETY: PyConfig_InitPythonConfig fills in every field of the struct
    // it is given (it may be uninitialised memory); afterwards the
    // configuration functions are called with that same pointer, each string
    // is a NUL-terminated CString that outlives the call (Python copies it),
    // and PyConfig_Clear frees what Python allocated, on every path.
    let status = unsafe {
        ffi::PyConfig_InitPythonConfig(py_config);
        (*py_config).install_signal_handlers = 0;
        (*py_config).parse_argv = 0;
        let mut status = ffi::PyStatus_Ok();
        if let Some(program) = &program_c {
            status = ffi::PyConfig_SetBytesString(
                py_config,
                &raw mut (*py_config).program_name,
                program.as_ptr(),
            );
        }
        if ffi::PyStatus_Exception(status) == 0 && !argv_ptrs.is_empty() {
            status = ffi::PyConfig_SetBytesArgv(
                py_config,
                argv_ptrs.len() as ffi::Py_ssize_t,
                argv_ptrs.as_mut_ptr(),
            );
        }
        if ffi::PyStatus_Exception(status) == 0 {
            // Reads the environment, computes the paths, imports `site`.
            status = ffi::Py_InitializeFromConfig(py_config);
        }
        ffi::PyConfig_Clear(py_config);
        status
    };
    // ANCHOR_END: py_config
    // SAFETY: PyStatus_Exception only reads the status struct returned above.
    if unsafe { ffi::PyStatus_Exception(status) } != 0 {
        return Err(io::Error::other(status_message(&status)));
    }
    // ANCHOR: release_gil
    // After start-up this thread holds the GIL. Let go of it, or no other
    // thread could ever run Python; `finalize` takes it back.
    // SAFETY: the interpreter was just initialised by this thread, which
    // holds the GIL; PyEval_SaveThread releases it and returns this
    // thread's state, which stays valid until PyEval_RestoreThread.
    let main_thread = unsafe { ffi::PyEval_SaveThread() };
    // ANCHOR_END: release_gil
    let interpreter = Interpreter {
        main_thread,
        finalized: false,
    };
    Python::attach(|py| prepare(py, config).map_err(|err| as_io(py, &err)))?;
    Ok(interpreter)
}

/// What a failed start-up said (`PyStatus.err_msg`, a C string or NULL).
fn status_message(status: &ffi::PyStatus) -> String {
    let function = if status.func.is_null() {
        String::new()
    } else {
        // SAFETY: a non-NULL `func` is a static NUL-terminated C string.
        let name = unsafe { std::ffi::CStr::from_ptr(status.func) };
        format!("{}: ", name.to_string_lossy())
    };
    if status.err_msg.is_null() {
        return format!(
            "{function}Python could not start (exit code {})",
            status.exitcode
        );
    }
    // SAFETY: a non-NULL `err_msg` is a static NUL-terminated C string.
    let message = unsafe { std::ffi::CStr::from_ptr(status.err_msg) };
    format!("{function}{}", message.to_string_lossy())
}

/// The last steps of start-up, in Python: `sys.path[0]` is the app's
/// directory (gunicorn inserts its `--chdir` there too), so `import hello`
/// finds `./hello.py` as `python3 hello.py` would.
fn prepare(py: Python<'_>, config: &Config) -> PyResult<()> {
    let sys = py.import("sys")?;
    if let Some(dir) = &config.app_dir {
        // A str, as every sys.path entry (a PathBuf would become a PosixPath).
        let dir = std::path::absolute(dir)?.into_os_string();
        sys.getattr("path")?.call_method1("insert", (0, dir))?;
    }
    // Importing `threading` here marks this thread as Python's main thread,
    // which `Py_FinalizeEx` expects to finalize from.
    py.import("threading")?;
    // ANCHOR: sigint
    // `install_signal_handlers = 0` is not the whole story: the first
    // `import signal` (by the app, by `subprocess`, ...) still catches SIGINT
    // for `KeyboardInterrupt` if its action is the default. So import it now,
    // once, and give SIGINT back its default action. (A handler the server
    // installed itself is left alone: Python reports it as `None`.)
    let signal = py.import("signal")?;
    let sigint = signal.getattr("SIGINT")?;
    let current = signal.call_method1("getsignal", (&sigint,))?;
    if current.is(&signal.getattr("default_int_handler")?) {
        signal.call_method1("signal", (&sigint, signal.getattr("SIG_DFL")?))?;
    }
    // ANCHOR_END: sigint
    trace!(
        "python: {} at {} (sys.prefix {})",
        sys.getattr("version")?
            .str()?
            .to_string()
            .replace('\n', " "),
        sys.getattr("executable")?,
        sys.getattr("prefix")?,
    );
    Ok(())
}

impl Interpreter {
    /// Stop Python: wait for the app's own non-daemon threads, run the
    /// `atexit` handlers, flush and close `sys.stdout` and `sys.stderr`,
    /// free the interpreter. Call it from the thread that started Python,
    /// once no other thread calls into Python (drop the thread pool first).
    /// `Err` when flushing buffered output failed.
    pub fn finalize(mut self) -> io::Result<()> {
        self.stop()
    }

    // ANCHOR: finalize
    fn stop(&mut self) -> io::Result<()> {
        if self.finalized {
            return Ok(());
        }
        self.finalized = true;
        // SAFETY: `main_thread` came from PyEval_SaveThread on this thread
        // (this type cannot leave it), and has not been restored since:
        // RestoreThread takes the GIL back for it. Py_FinalizeEx then runs
        // with the GIL held, as it requires; nothing calls Python afterwards
        // (`finalized`).
        let status = unsafe {
            ffi::PyEval_RestoreThread(self.main_thread);
            ffi::Py_FinalizeEx()
        };
        trace!("python: Py_FinalizeEx() -> {status}");
        if status < 0 {
            return Err(io::Error::other(
                "Python could not flush its buffered output at exit",
            ));
        }
        Ok(())
    }
    // ANCHOR_END: finalize
}

impl Drop for Interpreter {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("[python] {err}");
        }
    }
}

/// A Python exception as an `io::Error`, its message as Python prints it.
pub fn as_io(py: Python<'_>, err: &PyErr) -> io::Error {
    io::Error::other(one_line(py, err))
}

/// `ValueError: boom`: the last line of a traceback.
pub fn one_line(py: Python<'_>, err: &PyErr) -> String {
    let kind = err
        .get_type(py)
        .name()
        .map_or_else(|_| "Exception".to_string(), |n| n.to_string());
    match err.value(py).str() {
        Ok(text) if !text.to_string().is_empty() => format!("{kind}: {text}"),
        _ => kind,
    }
}

/// The traceback of `err` as Python prints it, when it says more than
/// [`one_line`]: a `TypeError` for a call with the wrong arguments has no
/// frame to show, a `SyntaxError` shows the file, the line and a caret.
pub fn traceback(py: Python<'_>, err: &PyErr) -> Option<String> {
    // All three parts: before Python 3.12, the traceback of an exception
    // caught by pyo3 is kept beside the exception, not in `__traceback__`.
    let parts = (err.get_type(py), err.value(py), err.traceback(py));
    let lines = py
        .import("traceback")
        .and_then(|tb| tb.call_method1("format_exception", parts))
        .and_then(|lines| lines.extract::<Vec<String>>())
        .ok()?;
    (lines.len() > 1).then(|| lines.concat())
}

/// Why an app could not be loaded: one line, in gunicorn's words where
/// gunicorn has some (`Failed to find attribute 'app' in 'hello'.`), and the
/// Python traceback when there is one worth reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub message: String,
    pub traceback: Option<String>,
}

/// The exit status of a server whose app could not be loaded (gunicorn's too).
pub const EXIT_LOAD_FAILED: i32 = 1;

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    fn new(message: impl Into<String>) -> Self {
        LoadError {
            message: message.into(),
            traceback: None,
        }
    }

    /// Print it on stderr: the line, prefixed with `[tag]`, then the
    /// traceback, if any. The binary then exits with [`EXIT_LOAD_FAILED`].
    pub fn report(&self, tag: &str) {
        let mut text = format!("[{tag}] {}\n", self.message);
        if let Some(traceback) = &self.traceback {
            text.push_str(traceback);
        }
        let _ = io::Write::write_all(&mut io::stderr().lock(), text.as_bytes());
    }
}

/// Run `work`, a thread's whole life of calls into Python (a
/// [`pool::Setup`](crate::pool::Setup)), with ONE Python thread state.
///
/// CPython keeps a thread state (its frames, its exception) for each
/// thread that runs Python. `Python::attach` on a thread that has none
/// makes one, and destroys it when it returns: per request, an allocation
/// of its frame stack (an `mmap`) and its undoing. Here the thread attaches
/// once, then detaches (lets go of the GIL, keeps its state) to run `work`;
/// every `Python::attach` inside then only has to take the GIL.
pub fn keep_thread_state(work: &mut (dyn FnMut() + Send)) {
    Python::attach(|py| py.detach(work));
}

/// Import the app named `spec`, as gunicorn's `import_app` does:
/// `module:name` (a dotted module path, then an attribute), `module` alone
/// meaning `module:application`, or `module:factory(args)` (the attribute is
/// called with literal arguments and returns the app).
///
/// The expression after the colon is parsed with Python's own `ast` module,
/// as gunicorn does, so that `create_app(debug=True)` means what it means in
/// Python; nothing in it is evaluated except the literals.
pub fn load_app(spec: &str) -> Result<Py<PyAny>, LoadError> {
    Python::attach(|py| {
        let (module_name, expression) = spec.split_once(':').unwrap_or((spec, "application"));
        let module = py.import(module_name).map_err(|err| {
            if module_name.ends_with(".py") {
                let stem = module_name.trim_end_matches(".py");
                return LoadError::new(format!(
                    "Failed to find application, did you mean '{stem}:{expression}'?"
                ));
            }
            let mut error = LoadError::new(format!(
                "Failed to import '{module_name}': {}",
                one_line(py, &err)
            ));
            // "No module named 'hello'" says it all; a module that raised
            // while importing (a syntax error, a missing dependency) needs
            // its traceback.
            let itself = err.is_instance_of::<PyModuleNotFoundError>(py)
                && err
                    .value(py)
                    .getattr("name")
                    .and_then(|n| n.extract::<String>())
                    .is_ok_and(|n| n == module_name);
            if !itself {
                error.traceback = traceback(py, &err);
            }
            error
        })?;
        let (name, arguments) = parse_expression(py, expression).map_err(LoadError::new)?;
        let object = module.getattr(name.as_str()).map_err(|_| {
            LoadError::new(format!(
                "Failed to find attribute '{name}' in '{module_name}'."
            ))
        })?;
        let app = match arguments {
            None => object,
            Some((args, kwargs)) => object.call(args, Some(&kwargs)).map_err(|err| LoadError {
                message: format!(
                    "Failed to call '{expression}' in '{module_name}': {}",
                    one_line(py, &err)
                ),
                traceback: traceback(py, &err),
            })?,
        };
        if app.is_none() {
            return Err(LoadError::new(format!(
                "Failed to find application object: '{expression}'"
            )));
        }
        if !app.is_callable() {
            return Err(LoadError::new("Application object must be callable."));
        }
        trace!(
            "python: loaded {spec} -> {}",
            app.repr().map_or_else(|_| "?".into(), |r| r.to_string())
        );
        Ok(app.unbind())
    })
}

/// Positional and keyword arguments for a factory call.
type Arguments<'py> = (Bound<'py, PyTuple>, Bound<'py, PyDict>);

/// `name` → the attribute's name; `name(1, debug=True)` → its name and the
/// call's literal arguments. The error is gunicorn's sentence for it.
fn parse_expression<'py>(
    py: Python<'py>,
    expression: &str,
) -> Result<(String, Option<Arguments<'py>>), String> {
    let unparsable =
        || format!("Failed to parse '{expression}' as an attribute name or function call.");
    let ast = py.import("ast").map_err(|err| one_line(py, &err))?;
    let node = ast
        .call_method1("parse", (expression.trim(), "<app>", "eval"))
        .and_then(|tree| tree.getattr("body"))
        .map_err(|_| unparsable())?;
    let kind = node
        .get_type()
        .name()
        .map_err(|_| unparsable())?
        .to_string();
    let identifier = |node: &Bound<'py, PyAny>| node.getattr("id")?.extract::<String>();
    match kind.as_str() {
        "Name" => Ok((identifier(&node).map_err(|_| unparsable())?, None)),
        "Call" => {
            let name = identifier(&node.getattr("func").map_err(|_| unparsable())?)
                .map_err(|_| format!("Function reference must be a simple name: '{expression}'"))?;
            let literal = |value: Bound<'py, PyAny>| ast.call_method1("literal_eval", (value,));
            let bad_literals =
                |_| format!("Failed to parse arguments as literal values: '{expression}'");
            let args = PyList::empty(py);
            for arg in node
                .getattr("args")
                .and_then(|a| a.try_iter())
                .map_err(bad_literals)?
            {
                let value = arg.and_then(literal).map_err(bad_literals)?;
                args.append(value).map_err(bad_literals)?;
            }
            let kwargs = PyDict::new(py);
            for keyword in node
                .getattr("keywords")
                .and_then(|k| k.try_iter())
                .map_err(bad_literals)?
            {
                let keyword = keyword.map_err(bad_literals)?;
                let value = keyword
                    .getattr("value")
                    .and_then(literal)
                    .map_err(bad_literals)?;
                let name = keyword.getattr("arg").map_err(bad_literals)?;
                kwargs.set_item(name, value).map_err(bad_literals)?;
            }
            let args = PyTuple::new(py, args).map_err(bad_literals)?;
            Ok((name, Some((args, kwargs))))
        }
        _ => Err(unparsable()),
    }
}

/// A `File` of our own on the descriptor of a Python file object (its
/// `fileno()`), for `sendfile(2)`: a duplicate (`fcntl(F_DUPFD_CLOEXEC)`),
/// so it stays open whatever the app does with its file object.
pub fn dup_fileno(file: &Bound<'_, PyAny>) -> PyResult<File> {
    let fd: RawFd = file.call_method0("fileno")?.extract()?;
    if fd < 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput).into());
    }
    // SAFETY: `fileno()` returned a descriptor that `file` keeps open; we
    // hold a reference to `file` and the GIL, so no Python code can close
    // it before the duplicate below is made, and the borrow ends there.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    Ok(File::from(borrowed.try_clone_to_owned()?))
}

// ANCHOR: fork
/// fork(2) in a process running Python (rung 7's `--preload`), the way
/// CPython asks. A bare fork copies the interpreter's locks (the import
/// lock, the GIL's internals) in whatever state other threads left them,
/// and the child has none of those threads to release them.
/// `PyOS_BeforeFork` takes the locks and runs `os.register_at_fork`'s
/// `before` hooks; `PyOS_AfterFork_Child` re-makes the locks in the child
/// and forgets every thread but this one; `PyOS_AfterFork_Parent` lets go
/// in the parent. The `Python` token proves we hold the GIL, which all
/// three require. Call it from the thread that started Python.
pub fn fork(_py: Python<'_>) -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: attached to the interpreter (the token), as PyOS_BeforeFork
    // requires.
    unsafe { ffi::PyOS_BeforeFork() };
    // SAFETY: the caller starts no thread of its own (the contract above);
    // the locks Python's threads could hold are ours now (before_fork).
    let forked = unsafe { nix::unistd::fork() };
    match forked {
        // SAFETY: attached, in the child of a fork made after
        // PyOS_BeforeFork, as PyOS_AfterFork_Child requires.
        Ok(nix::unistd::ForkResult::Child) => unsafe { ffi::PyOS_AfterFork_Child() },
        // SAFETY: attached, after PyOS_BeforeFork (the fork may have failed).
        _ => unsafe { ffi::PyOS_AfterFork_Parent() },
    }
    forked
}
// ANCHOR_END: fork
