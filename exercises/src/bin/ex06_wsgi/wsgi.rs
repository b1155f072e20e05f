//! WSGI (PEP 3333) from the server's side: call a Python app for a request.
//!
//! Introduced in lesson 06 (`lessons/06-wsgi.md`), used by 07.
//!
//! Rung 3 handed a request to a *program*: environment variables in, text
//! out. WSGI hands it to a *function* living in the server's own Python
//! interpreter ([`ladder::python`]), and the contract fits in two lines:
//!
//! ```python
//! body = app(environ, start_response)   # environ: the request, as a dict
//! for chunk in body: send(chunk)        # then body.close(), always
//! ```
//!
//! Read [`Gateway::call`] and follow it down, in this order:
//!
//! 1. [`Gateway::environ`]: the request as a dict. Its CGI keys come from
//!    the very code that made a CGI script's environment in lesson 03
//!    ([`cgi::meta_variables`]); the `wsgi.*` keys are PEP 3333's additions.
//! 2. `start_response(status, headers, exc_info=None)`: the app gives its
//!    status and headers. Nothing is sent yet: the head goes out with the
//!    first body bytes, so an app may still change its mind (`exc_info`).
//! 3. the body loop: iterate what the app returned, send each chunk, keep
//!    the app to its own `Content-Length`, and call `close()` on every path.
//!
//! The gateway knows nothing of sockets: it hands the response to a
//! [`ResponseSink`], which is the blocking [`Connection`] ([`ConnectionSink`],
//! for rung 7's sync workers) or rung 6's event loop. Call it from any thread
//! that may run Python (rung 6: one of `--threads` pool threads); it takes the
//! GIL itself, and lets go of it whenever the sink may block.
//!
//! 4. Last, the hand-off ([`Handoff`]): how rung 6 (and rung 7's gateway
//!    workers) get a request from the event loop's thread to a Python
//!    thread, and the answer back (`LoopSink`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use ladder::cgi::{self, Interface, ScriptTarget};
use ladder::connection::Connection;
use ladder::event_loop::{Answer, BodySender, Client, EventLoop, Handler, Remote, Ticket};
use ladder::http::{self, Body, Plan, Request};
use ladder::pool::ThreadPool;
use ladder::{log, python, trace};

// ANCHOR: sink
/// Where a WSGI response goes: the blocking [`Connection`] (rung 7's sync
/// worker, the tests) or rung 6's event loop. The gateway calls `start` once,
/// then `chunk` any number of times, then `end` once; after a sink returns
/// `Err`, it calls no more of its methods.
pub trait ResponseSink {
    /// The head, once the first non-empty body chunk exists (or the body
    /// ended empty). The body is `Body::Stream { len }`, `len` being the
    /// app's Content-Length if it gave one; `Body::File` for a
    /// `wsgi.file_wrapper` around a real file (send it yourself, sendfile);
    /// `Body::Bytes` for a body complete as it is (the gateway's own 500
    /// page, or an app's body whole in its first piece): no `chunk` follows.
    fn start(&mut self, response: http::Response) -> io::Result<()>;
    /// One body chunk; may block (backpressure). `Err`: the client is gone;
    /// the gateway stops iterating and calls `close()`.
    fn chunk(&mut self, data: &[u8]) -> io::Result<()>;
    /// The body is complete (`true`), or broken (`false`: the app failed
    /// mid-stream, or sent fewer bytes than its Content-Length): abort the
    /// connection, so the client cannot take a truncated body for a whole one.
    fn end(&mut self, complete: bool) -> io::Result<()>;
}
// ANCHOR_END: sink

/// What the server knows beyond the request, fixed at start-up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SCRIPT_NAME`: the URL prefix the app is mounted at (`--script-name
    /// /app`), or `""` for the root. A request for `/app/x` then has
    /// `PATH_INFO` `/x`.
    pub script_name: String,
    /// `wsgi.url_scheme`: `http` (`https` only behind a TLS proxy that says so).
    pub url_scheme: &'static str,
    /// `wsgi.multithread`: the app may be called from several threads at
    /// once (rung 6 with `--threads` > 1).
    pub multithread: bool,
    /// `wsgi.multiprocess`: other processes run the same app (rung 7 with
    /// more than one worker), so a global in the app is not shared by all.
    pub multiprocess: bool,
    /// `SERVER_SOFTWARE`.
    pub server_software: String,
    /// Prefix of log lines, e.g. `lesson06`.
    pub log_tag: &'static str,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            script_name: String::new(),
            url_scheme: "http",
            multithread: false,
            multiprocess: false,
            server_software: concat!("server-ladder/", env!("CARGO_PKG_VERSION")).into(),
            log_tag: "wsgi",
        }
    }
}

// ANCHOR: call
/// One request as the server read it: the head, the whole body (the
/// server buffers it before the app runs), and the connection's two ends.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub request: &'a Request,
    pub body: &'a [u8],
    pub peer: SocketAddr,
    pub local: SocketAddr,
}
// ANCHOR_END: call

/// How one call went, for the access log and the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The status sent: the app's, or 500 when the gateway answered for it.
    pub status: u16,
    /// Body bytes handed to the sink.
    pub bytes: u64,
    pub ending: Ending,
    /// How long the calling thread waited for the GIL before the app ran.
    pub gil_wait: Duration,
    /// What went wrong, in one line, as it was logged.
    pub problem: Option<String>,
}

/// How a response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client got a whole response (the app's, or our 500 page).
    Complete,
    /// The head was out when things went wrong: the connection was aborted.
    Aborted,
    /// The sink failed: the client went away.
    ClientGone,
}

/// A WSGI app and what is needed to call it. Share it between threads
/// (`Arc<Gateway>`): it holds only Python references and settings.
pub struct Gateway {
    app: Py<PyAny>,
    settings: Settings,
    /// `io.BytesIO`, which makes `wsgi.input` out of the buffered body.
    bytes_io: Py<PyAny>,
    /// The `wsgi.*` keys no request changes, made once; every environ
    /// starts as a copy of it (an app may change its environ, so each
    /// request needs a dict of its own).
    base: Py<PyDict>,
    /// The CGI variables' names as Python strings, made once, so a request
    /// does not make (and the dict hash) a new string for each name.
    names: HashMap<&'static str, Py<PyString>>,
}

/// The names [`cgi::meta_variables`] gives, and the request headers most
/// clients send; other names are made per request.
const NAMES: [&str; 24] = [
    "GATEWAY_INTERFACE",
    "SERVER_SOFTWARE",
    "SERVER_PROTOCOL",
    "SERVER_NAME",
    "SERVER_PORT",
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "AUTH_TYPE",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "HTTP_HOST",
    "HTTP_USER_AGENT",
    "HTTP_ACCEPT",
    "HTTP_ACCEPT_ENCODING",
    "HTTP_ACCEPT_LANGUAGE",
    "HTTP_CONNECTION",
    "HTTP_COOKIE",
    "HTTP_REFERER",
    "HTTP_CACHE_CONTROL",
    "HTTP_AUTHORIZATION",
];

impl Gateway {
    /// A gateway for `app` (from [`python::load_app`]).
    pub fn new(app: Py<PyAny>, mut settings: Settings) -> io::Result<Gateway> {
        // `/app/` and `/app` mount the app at the same place.
        settings.script_name = settings.script_name.trim_end_matches('/').to_string();
        Python::attach(|py| {
            let bytes_io = py.import("io")?.getattr("BytesIO")?.unbind();
            let base = PyDict::new(py);
            base.set_item("wsgi.version", (1, 0))?;
            base.set_item("wsgi.url_scheme", settings.url_scheme)?;
            // An extension gunicorn and Werkzeug know: the input ends at EOF,
            // even for a chunked request that has no Content-Length.
            base.set_item("wsgi.input_terminated", true)?;
            base.set_item("wsgi.multithread", settings.multithread)?;
            base.set_item("wsgi.multiprocess", settings.multiprocess)?;
            base.set_item("wsgi.run_once", false)?;
            base.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
            let names = NAMES
                .iter()
                .map(|&name| (name, PyString::intern(py, name).unbind()))
                .collect();
            Ok(Gateway {
                app,
                settings,
                bytes_io,
                base: base.unbind(),
                names,
            })
        })
        .map_err(|err: PyErr| Python::attach(|py| python::as_io(py, &err)))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Answer `call` with the app, through `sink`. Never panics on what the
    /// app does: every failure becomes a 500 page or an aborted connection,
    /// and a line in the log.
    pub fn call<S: ResponseSink + Send>(&self, call: &Call<'_>, sink: &mut S) -> Served {
        // ANCHOR: gil_wait
        // Only one thread at a time runs Python: this waits for the GIL,
        // and the wait is what rung 6 measures when the app is CPU-bound.
        let asked = Instant::now();
        Python::attach(|py| {
            let gil_wait = asked.elapsed();
            trace!(
                "wsgi: call app on thread {} (waited {:.3} ms for the GIL)",
                thread_label(),
                gil_wait.as_secs_f64() * 1000.0
            );
            // ANCHOR_END: gil_wait
            let mut out = Outgoing {
                sink,
                head: Arc::new(Mutex::new(Head::default())),
                call,
                gateway: self,
                sent_head: false,
                served: Served {
                    status: 0,
                    bytes: 0,
                    ending: Ending::Complete,
                    gil_wait,
                    problem: None,
                },
                content_length: None,
            };
            self.respond(py, &mut out);
            out.served
        })
    }

    // ANCHOR: environ
    /// The request as a WSGI `environ` dict.
    ///
    /// PEP 3333: "The environ dictionary is required to contain these CGI
    /// environment variables, as defined by the Common Gateway Interface
    /// specification" — so they are made by lesson 03's code, as bytes,
    /// then each becomes a Python string. "Native strings" are `str` whose
    /// characters are the bytes one by one (latin-1): `/caf%E9` is the
    /// path `'/caf\xe9'`, and a framework that wants UTF-8 re-encodes it.
    pub fn environ<'py>(&self, py: Python<'py>, call: &Call<'_>) -> PyResult<Bound<'py, PyDict>> {
        // TODO(ex06): the request as a dict (`PyDict::new(py)`), as PEP 3333 says:
        //   - the CGI keys come from lesson 03's code: `cgi::meta_variables(request,
        //     body_len, &script, &gateway, Interface::Wsgi)`. `script` is a `ScriptTarget`
        //     whose `path_info` is the percent-DECODED path (`request.target.decoded_path()`)
        //     after the mount point `self.settings.script_name` (a path outside the mount
        //     point keeps all of itself), and whose `path` is empty; `gateway` is a
        //     `cgi::Gateway` made of `call.peer`, `call.local`, the settings' software and
        //     log tag (no document root, no timeout). `body_len`: the body's length
        //     (`call.body`) if the request has a body at all (a Content-Length or a
        //     Transfer-Encoding header), else `None`. Add no HTTP_ key yourself:
        //     `meta_variables` already joins repeated headers and drops names with `_`.
        //   - every value is a native string, one character per byte (latin-1):
        //     `latin1(py, value.as_encoded_bytes())`. Never decode it as UTF-8.
        //   - PEP 3333's own keys: wsgi.version `(1, 0)`, wsgi.url_scheme, wsgi.input (an
        //     `io.BytesIO` over the body: `self.bytes_io.call1(py, (PyBytes::new(py,
        //     call.body),))`), wsgi.input_terminated `true`, wsgi.errors
        //     (`Errors::new(self.settings.log_tag)`), wsgi.multithread and
        //     wsgi.multiprocess from the settings, wsgi.run_once `false`, and
        //     wsgi.file_wrapper (`py.get_type::<FileWrapper>()`).
        todo!("ex06: build the environ dict")
    }
    // ANCHOR_END: environ

    /// Call the app, then run the body loop; `close()` the app's iterable
    /// whatever happened in between.
    fn respond<S: ResponseSink + Send>(&self, py: Python<'_>, out: &mut Outgoing<'_, S>) {
        let environ = match self.environ(py, out.call) {
            Ok(environ) => environ,
            Err(err) => return out.fail(py, "the environ could not be built:", Some(&err)),
        };
        let start_response = StartResponse {
            head: Arc::clone(&out.head),
        };
        let body = match self.app.bind(py).call1((environ, start_response)) {
            Ok(body) => body,
            Err(err) => return out.fail(py, "the app raised", Some(&err)),
        };
        // ANCHOR: body_loop
        // TODO(ex06): send the body: `out.body_loop(py, &body)` iterates it, sends each
        //   chunk (the head with the first non-empty one), keeps the app to its
        //   Content-Length and ends the response; it returns whatever happened: the body
        //   ended, the app raised mid-stream, or the client went away. Then, on every one
        //   of those paths, call the iterable's `close()` if it has one (`body.hasattr`,
        //   `body.call_method0`): PEP 3333, "whether the request was completed normally,
        //   or terminated early due to an application error during iteration or an early
        //   disconnect of the browser". A close() that raises is logged, never fatal:
        //   `out.note(describe(py, "close() raised", Some(&err)), Some((py, &err)))`.
        //   Add the --trace line (`wsgi: close()`) yourself.
        todo!("ex06: the body loop, then close()")
        // ANCHOR_END: body_loop
    }

    fn log(&self, call: &Call<'_>, problem: &str, traceback: Option<String>) {
        let request = call.request;
        let mut line = format!(
            "[{}] wsgi: {} {}: {problem}\n",
            self.settings.log_tag, request.method, request.target
        );
        line.extend(traceback);
        // One write(2), so lines from several threads do not interleave.
        let _ = io::Write::write_all(&mut io::stderr().lock(), line.as_bytes());
    }
}

// ------------------------------------------------------- start_response

/// What `start_response` and `write` tell the body loop. Shared with the
/// Python objects the app holds; every access is under the GIL anyway.
#[derive(Default)]
struct Head {
    /// From the last `start_response` call.
    started: Option<Started>,
    /// PEP 3333's "headers sent": the head has gone to the sink, or
    /// `write()` was given bytes. From then on the status cannot change.
    committed: bool,
    /// Bytes given to `write()`, which the body loop sends first.
    written: Vec<u8>,
}

/// A status and headers that passed the checks.
#[derive(Clone)]
struct Started {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    content_length: Option<u64>,
}

fn lock(head: &Mutex<Head>) -> MutexGuard<'_, Head> {
    // A panic while the lock was held cannot leave `Head` half-updated in a
    // way that matters more than the request it belongs to.
    head.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `start_response` callable handed to the app, one per request.
#[pyclass(frozen, module = "ladder.wsgi")]
struct StartResponse {
    head: Arc<Mutex<Head>>,
}

#[pymethods]
impl StartResponse {
    // ANCHOR: start_response
    /// `start_response(status, response_headers, exc_info=None)`, which
    /// returns the `write(data)` callable.
    #[pyo3(signature = (status, response_headers, exc_info=None))]
    fn __call__(
        &self,
        status: &Bound<'_, PyAny>,
        response_headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        // TODO(ex06): PEP 3333's start_response. The request's state is `self.head`
        //   (`lock(&self.head)`): `head.started` holds the last call's status and
        //   headers, `head.committed` says the head has gone out (or write() had bytes).
        //   - exc_info given and the head committed: too late to change it. Raise the
        //     exception exc_info holds (the tuple `(type, value, traceback)`) with its
        //     traceback: `PyErr::from_value(value.call_method1("with_traceback", (traceback,))?)`;
        //   - exc_info given, not committed: go on; the new status and headers replace the old;
        //   - no exc_info, but `head.started` is already set: a second call is the app's bug:
        //     raise `PyAssertionError::new_err(..)`;
        //   then check the arguments with `check_start(status, response_headers)?`, keep the
        //   result in `head.started`, and return the `Write` callable over the same `head`.
        //   Nothing is sent here: the body loop sends the head with the first body bytes.
        //   Add the --trace line (`wsgi: start_response('200 OK', 3 headers)`) yourself.
        todo!("ex06: start_response, with exc_info")
    }
    // ANCHOR_END: start_response
}

/// The status and headers an app may give, checked. An error here is
/// raised inside the app, as wsgiref does, and ends as a 500 and a log line.
fn check_start(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<Started> {
    // PEP 3333: "The status argument is an HTTP 'status' string like
    // '200 OK' or '404 Not Found'. That is, it is a string consisting of a
    // Status-Code and a Reason-Phrase, in that order and separated by a
    // single space, with no surrounding whitespace or other characters."
    let text = status.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "start_response: the status must be a str like '200 OK', not {}",
            type_name(status)
        ))
    })?;
    let text = text.to_str()?;
    let (code, reason) = text.split_once(' ').unwrap_or((text, ""));
    let status = match code.parse::<u16>() {
        Ok(status) if code.len() == 3 && (200..=599).contains(&status) => status,
        _ => return Err(bad_status(text)),
    };
    if reason.is_empty() || reason.trim() != reason || !visible(reason) {
        return Err(bad_status(text));
    }
    // "response_headers is a list of (header_name, header_value) tuples.
    // It must be a Python list; i.e. type(response_headers) is ListType."
    let list = headers.cast_exact::<PyList>().map_err(|_| {
        PyTypeError::new_err(format!(
            "start_response: the headers must be a list of (name, value) tuples, not {}",
            type_name(headers)
        ))
    })?;
    let mut started = Started {
        status,
        reason: reason.to_string(),
        headers: Vec::with_capacity(list.len()),
        content_length: None,
    };
    for item in list {
        let pair = item.cast::<PyTuple>().ok().filter(|t| t.len() == 2);
        let pair = pair.and_then(|t| t.extract::<(String, String)>().ok());
        let Some((name, value)) = pair else {
            return Err(PyTypeError::new_err(format!(
                "start_response: a header must be a (str, str) tuple, not {}",
                item.repr()?
            )));
        };
        check_header(&name, &value).map_err(PyValueError::new_err)?;
        match name.to_ascii_lowercase().as_str() {
            // The plan writes Content-Length itself; we keep the number and
            // hold the app to it.
            "content-length" => match value.trim().parse::<u64>() {
                Ok(len) if started.content_length.is_none_or(|l| l == len) => {
                    started.content_length = Some(len)
                }
                _ => {
                    return Err(PyValueError::new_err(format!(
                        "start_response: bad Content-Length {value:?}"
                    )));
                }
            },
            // The server's clock writes the one Date header a response has.
            "date" => {}
            _ => started.headers.push((name, value)),
        }
    }
    Ok(started)
}

fn bad_status(status: &str) -> PyErr {
    PyValueError::new_err(format!(
        "start_response: bad status '{}': it must be three digits, a space and a reason, like '200 OK'",
        status.escape_debug()
    ))
}

/// Printable ASCII and spaces: what a status line or a header value may
/// hold here. PEP 3333 allows latin-1; this server sends ASCII only (no
/// CR or LF, above all: they would let the app's data forge headers).
fn visible(text: &str) -> bool {
    text.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// One response header from the app: a token for a name, no control
/// characters in the value, and none of HTTP/1.1's hop-by-hop headers.
fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("start_response: bad header name {name:?}"));
    }
    if !visible(value) {
        return Err(format!(
            "start_response: the value of {name} holds a control or non-ASCII character: {value:?}"
        ));
    }
    // PEP 3333: "Applications and middleware are forbidden from using
    // HTTP/1.1 'hop-by-hop' features or headers": they describe one
    // connection, which is the server's business (the list is wsgiref's).
    const HOP_BY_HOP: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    ];
    if HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "start_response: {name} is a hop-by-hop header, which only the server may send"
        ));
    }
    Ok(())
}

/// The `write(data)` callable `start_response` returns: the old, imperative
/// way to send a body (PEP 3333 keeps it for frameworks older than WSGI).
#[pyclass(frozen, module = "ladder.wsgi")]
struct Write {
    head: Arc<Mutex<Head>>,
}

#[pymethods]
impl Write {
    /// PEP 3333 lets write() buffer the data "for transmission while the
    /// application proceeds onward"; the body loop sends it first. In
    /// production, a server sends it at once, for an app that write()s a
    /// large body; here the sink is out of reach until the app returns.
    fn __call__(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!("write() takes bytes, not {}", type_name(data)))
        })?;
        let mut head = lock(&self.head);
        if head.started.is_none() {
            return Err(PyAssertionError::new_err("write() before start_response()"));
        }
        if !bytes.as_bytes().is_empty() {
            head.committed = true;
            head.written.extend_from_slice(bytes.as_bytes());
        }
        Ok(())
    }
}

// ------------------------------------------------------------ the body

/// One response on its way to the sink.
struct Outgoing<'a, S> {
    sink: &'a mut S,
    head: Arc<Mutex<Head>>,
    call: &'a Call<'a>,
    gateway: &'a Gateway,
    /// `sink.start` has been called.
    sent_head: bool,
    served: Served,
    /// The Content-Length the head announced, which the app is held to.
    content_length: Option<u64>,
}

impl<S: ResponseSink + Send> Outgoing<'_, S> {
    /// Send what the app returned, chunk by chunk, then end the response.
    fn body_loop(&mut self, py: Python<'_>, body: &Bound<'_, PyAny>) {
        // PEP 3333: "the application must return an iterable yielding zero
        // or more bytestrings". A str or a bytes object is iterable too, by
        // characters or by integers, which is never what the app meant.
        if body.is_instance_of::<PyString>() || body.is_instance_of::<PyBytes>() {
            let what = type_name(body);
            let problem = format!("the app returned {what}, not an iterable of bytes");
            return self.fail(py, &problem, None);
        }
        if let Some((file, len)) = self.real_file(body) {
            // wsgi.file_wrapper: "the server or gateway may ... use a more
            // efficient transmission mechanism": the sink sends the file
            // with sendfile(2), and the bytes never enter Python.
            trace!("wsgi: file_wrapper around a file: {len} bytes by sendfile");
            if self.start(py, Body::File { file, len }).is_continue() {
                self.served.bytes = len;
                self.end(py, true);
            }
            return;
        }
        let Ok(iterator) = body.try_iter() else {
            let problem = format!(
                "the app returned {}, which is not iterable",
                type_name(body)
            );
            return self.fail(py, &problem, None);
        };
        // A list of bytes is a body whose length is known before the head
        // goes out: announce it (gunicorn does, for a list of one), and the
        // client keeps its connection without chunked encoding.
        let known = known_length(body);
        for item in iterator {
            let item = match item {
                Ok(item) => item,
                Err(err) => return self.fail(py, "the app's iterable raised", Some(&err)),
            };
            let Ok(chunk) = item.cast::<PyBytes>() else {
                let problem = format!("the app yielded {}, not bytes", type_name(&item));
                return self.fail(py, &problem, None);
            };
            if self.send(py, chunk.as_bytes(), known).is_break() {
                return;
            }
        }
        // Bytes left from write(), then the head, if no chunk carried it:
        // an empty body is 0 bytes long, but HEAD's answer must not claim
        // that the GET's body would be empty.
        if self.send(py, &[], known).is_break() {
            return;
        }
        let empty = (!self.call.request.is_head()).then_some(0);
        if !self.sent_head && self.start(py, Body::Stream { len: empty }).is_break() {
            return;
        }
        // Fewer bytes than announced: the client would wait for the rest,
        // or take what came for the whole. Abort instead.
        let expected = self.content_length.filter(|_| self.body_expected());
        if let Some(len) = expected.filter(|&len| self.served.bytes < len) {
            let bytes = self.served.bytes;
            let problem = format!(
                "the app sent {bytes} bytes of its Content-Length {len}; connection aborted"
            );
            self.note(problem, None);
            return self.end(py, false);
        }
        self.end(py, true)
    }

    // ANCHOR: send
    /// Send `data` (after any bytes the app gave `write()`), starting the
    /// response with the first of them: PEP 3333, "the server or gateway
    /// must not transmit the HTTP headers until there is an actual body
    /// byte (or the application's returned iterable is exhausted)". The
    /// GIL is released while the sink works, so other Python threads run.
    /// `Break`: the response is finished (cut off, or the client is gone).
    fn send(&mut self, py: Python<'_>, data: &[u8], known: Option<u64>) -> ControlFlow<()> {
        let written = std::mem::take(&mut lock(&self.head).written);
        for piece in [written.as_slice(), data] {
            if piece.is_empty() {
                continue;
            }
            if !self.sent_head {
                let len = known.map(|n| n + written.len() as u64);
                // The whole body in its first piece (a list of one bytes, a
                // chunk as long as the Content-Length): the head and the body
                // go to the sink as one response, written in one go.
                if self.is_whole(piece, len) {
                    self.start(py, Body::Bytes(piece.to_vec()))?;
                    self.served.bytes = piece.len() as u64;
                    continue;
                }
                self.start(py, Body::Stream { len })?;
            }
            // Never more than the Content-Length the head announced.
            let room = self
                .content_length
                .map_or(u64::MAX, |len| len - self.served.bytes);
            let fits = &piece[..piece.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
            if !fits.is_empty() {
                let sink = &mut *self.sink;
                if let Err(err) = py.detach(|| sink.chunk(fits)) {
                    return self.client_gone(err);
                }
                self.served.bytes += fits.len() as u64;
            }
            if fits.len() < piece.len() {
                let len = self.served.bytes;
                let problem = format!("the app sent more than its Content-Length {len}; cut off");
                self.note(problem, None);
                self.end(py, true);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
    // ANCHOR_END: send

    /// Hand the head to the sink, with the status and headers of the last
    /// `start_response`, and the app's Content-Length if it gave one.
    fn start(&mut self, py: Python<'_>, mut body: Body) -> ControlFlow<()> {
        let started = {
            let mut head = lock(&self.head);
            head.committed = true;
            head.started.clone()
        };
        let Some(started) = started else {
            self.fail(
                py,
                "the app sent a body without calling start_response()",
                None,
            );
            return ControlFlow::Break(());
        };
        if let Body::Stream { len } = &mut body {
            *len = started.content_length.or(*len);
        }
        self.content_length = match &body {
            Body::Stream { len } => *len,
            Body::File { len, .. } => Some(*len),
            Body::Bytes(bytes) => Some(bytes.len() as u64),
            Body::Empty => None,
        };
        let mut response = http::Response::new(started.status).body(body);
        response.reason = Some(started.reason);
        response.headers = started.headers;
        self.served.status = started.status;
        trace!(
            "wsgi: the head goes out: {} {}",
            started.status,
            response.reason.as_deref().unwrap_or("")
        );
        let sink = &mut *self.sink;
        if let Err(err) = py.detach(|| sink.start(response)) {
            return self.client_gone(err);
        }
        self.sent_head = true;
        ControlFlow::Continue(())
    }

    fn end(&mut self, py: Python<'_>, complete: bool) {
        let sink = &mut *self.sink;
        match py.detach(|| sink.end(complete)) {
            Ok(()) if !complete => self.served.ending = Ending::Aborted,
            Ok(()) => {}
            Err(err) => {
                let _ = self.client_gone(err);
            }
        }
    }

    // ANCHOR: fail
    /// Something went wrong: log it; answer 500 if nothing was sent yet
    /// (the traceback stays in the log: it is no business of the client's),
    /// else abort the response already under way.
    fn fail(&mut self, py: Python<'_>, what: &str, err: Option<&PyErr>) {
        let mut line = describe(py, what, err);
        if self.sent_head {
            line.push_str(", after the head was sent; connection aborted");
            self.note(line, err.map(|err| (py, err)));
            return self.end(py, false);
        }
        self.note(line, err.map(|err| (py, err)));
        let page = http::Response::error(500, "the application failed; see the server's log");
        self.served.bytes = page.body_len().unwrap_or(0);
        self.served.status = 500;
        let sink = &mut *self.sink;
        if let Err(err) = py.detach(|| sink.start(page).and_then(|()| sink.end(true))) {
            let _ = self.client_gone(err);
        }
    }
    // ANCHOR_END: fail

    /// Log a problem, then the traceback of the exception behind it if
    /// any, and remember the first problem for [`Served::problem`].
    fn note(&mut self, line: String, err: Option<(Python<'_>, &PyErr)>) {
        let traceback = err.and_then(|(py, err)| python::traceback(py, err));
        self.gateway.log(self.call, &line, traceback);
        self.served.problem.get_or_insert(line);
    }

    fn client_gone(&mut self, err: io::Error) -> ControlFlow<()> {
        trace!("wsgi: the client is gone: {err}");
        self.served.ending = Ending::ClientGone;
        self.served
            .problem
            .get_or_insert(format!("the client is gone: {err}"));
        ControlFlow::Break(())
    }

    /// Is `piece`, the first of the body, all of it? When the length is
    /// known (the app's Content-Length, or else `known`) and matches, for a
    /// response that carries a body at all.
    fn is_whole(&self, piece: &[u8], known: Option<u64>) -> bool {
        let head = lock(&self.head);
        let Some(started) = &head.started else {
            return false; // no start_response: `start` says so
        };
        let len = started.content_length.or(known);
        let bodiless = self.call.request.is_head() || matches!(started.status, 204 | 304);
        len == Some(piece.len() as u64) && !bodiless
    }

    /// Does this response carry a body at all? Not for HEAD, 204 and 304.
    fn body_expected(&self) -> bool {
        !self.call.request.is_head() && !matches!(self.served.status, 204 | 304)
    }

    // ANCHOR: real_file
    /// The file inside a `wsgi.file_wrapper`, if it is a real file read
    /// from its start, and how much of it to send.
    fn real_file(&self, body: &Bound<'_, PyAny>) -> Option<(std::fs::File, u64)> {
        let wrapper = body.cast::<FileWrapper>().ok()?;
        let filelike = wrapper.get().filelike.bind(body.py());
        // `Body::File` sends from byte 0; a file the app has read from or
        // seeked in is iterated instead.
        let position: u64 = filelike.call_method0("tell").ok()?.extract().ok()?;
        let file = python::dup_fileno(filelike)
            .ok()
            .filter(|_| position == 0)?;
        let size = file.metadata().ok().filter(|m| m.is_file())?.len();
        let announced = lock(&self.head).started.as_ref()?.content_length;
        match announced {
            None => Some((file, size)),
            Some(len) if len <= size => Some((file, len)),
            Some(_) => None, // longer than the file: the loop will abort
        }
    }
    // ANCHOR_END: real_file
}

/// The total length of a body that is a list or tuple of bytes.
fn known_length(body: &Bound<'_, PyAny>) -> Option<u64> {
    let items = if let Ok(list) = body.cast_exact::<PyList>() {
        list.iter().collect::<Vec<_>>()
    } else {
        body.cast_exact::<PyTuple>().ok()?.iter().collect()
    };
    items
        .iter()
        .map(|item| {
            item.cast::<PyBytes>()
                .ok()
                .map(|b| b.as_bytes().len() as u64)
        })
        .sum()
}

// ------------------------------------------- wsgi.errors, wsgi.file_wrapper

/// `wsgi.errors`: "An output stream (file-like object) to which error
/// output can be written": here the server's log, one prefixed line per
/// line the app writes.
#[pyclass(frozen, module = "ladder.wsgi")]
struct Errors {
    tag: &'static str,
    /// The start of a line not yet ended by `\n` (`print` writes the text
    /// and the newline in two calls).
    partial: Mutex<String>,
}

impl Errors {
    fn new(tag: &'static str) -> Errors {
        Errors {
            tag,
            partial: Mutex::new(String::new()),
        }
    }

    fn emit(&self, lines: &str) {
        let mut out = String::new();
        for line in lines.lines() {
            let _ = writeln!(out, "[{}] wsgi.errors: {line}", self.tag);
        }
        let _ = io::Write::write_all(&mut io::stderr().lock(), out.as_bytes());
    }
}

#[pymethods]
impl Errors {
    fn write(&self, text: &str) -> usize {
        let mut partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
        partial.push_str(text);
        if let Some(end) = partial.rfind('\n') {
            let complete: String = partial.drain(..=end).collect();
            self.emit(&complete);
        }
        text.chars().count()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(line?.extract()?);
        }
        Ok(())
    }

    fn flush(&self) {
        let mut partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
        let rest = std::mem::take(&mut *partial);
        if !rest.is_empty() {
            self.emit(&rest);
        }
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        self.flush();
    }
}

/// `wsgi.file_wrapper(filelike, block_size=8192)`: PEP 3333's optional
/// "high-performance file transmission". An app returns one around an
/// open file; for a real file the body loop sends it by `sendfile(2)`, and
/// anything else is iterated, a block at a time.
#[pyclass(frozen, module = "ladder.wsgi", name = "FileWrapper")]
struct FileWrapper {
    filelike: Py<PyAny>,
    block_size: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size=8192))]
    fn new(filelike: Py<PyAny>, block_size: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            block_size,
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.block_size,))?;
        Ok((data.len()? > 0).then_some(data))
    }

    /// "the returned object must have a close() method that calls the
    /// original file-like object's close() method, if present".
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }
}

// ------------------------------------------------- the blocking connection

/// A [`ResponseSink`] over the blocking [`Connection`] of lesson 02: rung
/// 7's sync workers, and the tests. The head and the framing are the
/// connection's ([`Connection::respond`] plans them for `request`).
pub struct ConnectionSink<'a> {
    conn: &'a mut Connection,
    request: &'a Request,
    may_keep_alive: bool,
    plan: Option<Plan>,
    keep_alive: bool,
}

impl<'a> ConnectionSink<'a> {
    /// `may_keep_alive`: false while the server shuts down.
    pub fn new(conn: &'a mut Connection, request: &'a Request, may_keep_alive: bool) -> Self {
        ConnectionSink {
            conn,
            request,
            may_keep_alive,
            plan: None,
            keep_alive: false,
        }
    }

    /// May the connection carry another request? Known once the response
    /// has ended; false after an aborted one.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }
}

impl ResponseSink for ConnectionSink<'_> {
    fn start(&mut self, response: http::Response) -> io::Result<()> {
        let plan = self
            .conn
            .respond(Some(self.request), response, self.may_keep_alive)?;
        self.plan = Some(plan);
        Ok(())
    }

    fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        let plan = self
            .plan
            .ok_or_else(|| io::Error::other("a body chunk before the head"))?;
        self.conn.send_chunk(&plan, data)
    }

    fn end(&mut self, complete: bool) -> io::Result<()> {
        let plan = self
            .plan
            .ok_or_else(|| io::Error::other("the end before the head"))?;
        if complete {
            self.keep_alive = self.conn.end_body(&plan)?;
        } else {
            // No last chunk, no more bytes: the client sees the connection
            // close before the body's end, and knows the body is broken.
            self.keep_alive = false;
            let _ = self.conn.stream().shutdown(Shutdown::Both);
        }
        Ok(())
    }
}

// ------------------------------------ rung 6: the hand-off to the loop

/// Rung 6's [`Handler`]: the event loop's side of the hand-off between its
/// thread and the Python threads. Its `handle` runs on the loop's thread,
/// which must never wait, and never touches Python: it only queues. (Rung
/// 7's gateway workers run this same hand-off, one per process.)
pub struct Handoff {
    gateway: Arc<Gateway>,
    pool: ThreadPool,
    remote: Remote,
    local: SocketAddr,
    timeout: Option<Duration>,
}

impl Handoff {
    /// `threads` Python threads for the loop `server`, each attached to the
    /// interpreter once, for its life; `timeout`: the loop's
    /// `answer_timeout` (an answer later than it is not worth computing).
    pub fn new(
        gateway: Gateway,
        threads: usize,
        server: &EventLoop,
        timeout: Option<Duration>,
    ) -> io::Result<Handoff> {
        Ok(Handoff {
            gateway: Arc::new(gateway),
            pool: ThreadPool::with_setup(threads, python::keep_thread_state)?,
            remote: server.remote(),
            local: server.local_addr()?,
            timeout,
        })
    }

    /// After the loop has stopped and been dropped (so an app still
    /// streaming hears "client gone"): let the pool finish what it holds,
    /// then drop the app, under the GIL as every Python object must be.
    pub fn finish(self) {
        trace!("shutdown: waiting for the python threads");
        let Handoff { gateway, pool, .. } = self;
        drop(pool);
        Python::attach(|_| drop(gateway));
    }
}

/// One request on its way to a Python thread: everything `answer` needs,
/// owned, since it outlives the loop's turn.
struct Job {
    request: Request,
    body: Vec<u8>,
    client: Client,
    local: SocketAddr,
    gateway: Arc<Gateway>,
    remote: Remote,
    queued: Instant,
    timeout: Option<Duration>,
}

impl Handler for Handoff {
    // ANCHOR: handle
    /// A complete request (its body read whole by the loop, so a slow upload
    /// never holds a Python thread): queue it for the pool, answer `Later`.
    /// The connection waits, reading nothing more, until `answer` delivers.
    fn handle(&mut self, request: &Request, body: Vec<u8>, client: Client) -> Answer {
        trace!(
            "loop: {} on {} -> python thread",
            request.request_line(),
            client.ticket
        );
        let job = Job {
            request: request.clone(),
            body,
            client,
            local: self.local,
            gateway: Arc::clone(&self.gateway),
            remote: self.remote.clone(),
            queued: Instant::now(),
            timeout: self.timeout,
        };
        match self.pool.execute(move || answer(job)) {
            Ok(()) => Answer::Later,
            Err(err) => Answer::Now(http::Response::error(503, &err.to_string())),
        }
    }
    // ANCHOR_END: handle
}

// ANCHOR: answer
/// On a Python thread: call the app through the gateway, which takes the
/// GIL, and hand what it answers to the loop through `LoopSink`. Then the
/// access line, written now that the body has ended and its size is known.
fn answer(job: Job) {
    let Job {
        request, client, ..
    } = &job;
    if job
        .timeout
        .is_some_and(|limit| job.queued.elapsed() >= limit)
    {
        // Every thread was busy for longer than --timeout: the client has
        // had its 504 already. Calling the app now would be wasted work.
        return trace!(
            "python thread {}: {} was too late, skipped",
            python_thread(),
            client.ticket
        );
    }
    let call = Call {
        request,
        body: &job.body,
        peer: client.peer,
        local: job.local,
    };
    let mut sink = LoopSink {
        remote: job.remote.clone(),
        ticket: client.ticket,
        body: None,
        started: false,
    };
    let served = job.gateway.call(&call, &mut sink);
    trace!(
        "python thread {}: answered {}: {} with {} bytes, {:?} ({:.3} ms waiting for the GIL)",
        python_thread(),
        client.ticket,
        served.status,
        served.bytes,
        served.ending,
        served.gil_wait.as_secs_f64() * 1000.0
    );
    log_served(&job, &served);
}
// ANCHOR_END: answer

// ANCHOR: loop_sink
/// Rung 6's `ResponseSink`: the gateway calls it on a Python thread (without
/// the GIL), and it hands each part of the response to the loop's thread,
/// which alone writes to sockets.
struct LoopSink {
    remote: Remote,
    ticket: Ticket,
    /// The producing end of a streamed body, once the head has gone.
    body: Option<BodySender>,
    /// Has a head gone to the loop? (See `Drop` below.)
    started: bool,
}

impl ResponseSink for LoopSink {
    /// The head. A streamed body (the app's iterable) gets a channel to the
    /// loop; a body complete in memory (a list of bytes, the 500 page) or a
    /// file (`wsgi.file_wrapper`) goes whole, in one message, and the loop
    /// sends it as the socket takes it.
    fn start(&mut self, response: http::Response) -> io::Result<()> {
        self.started = true;
        if matches!(response.body, Body::Stream { .. }) {
            self.body = Some(self.remote.stream(self.ticket, response));
        } else {
            self.remote.respond(self.ticket, response);
        }
        Ok(())
    }

    // ANCHOR: backpressure
    /// One chunk of the app's iterable. `send` blocks while the loop holds
    /// enough unsent pieces (backpressure: a 1 GB generator never sits in
    /// memory); `Err` means the client is gone, and the gateway then stops
    /// iterating and calls the app's `close()`.
    fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        match &self.body {
            Some(body) => body.send(data.to_vec()),
            None => Err(io::Error::other("a body chunk before a streamed head")),
        }
    }
    // ANCHOR_END: backpressure

    /// Complete: the last piece goes. Broken (the app failed mid-stream, or
    /// sent less than its Content-Length): the sender is dropped unfinished,
    /// and the loop aborts the connection, so the client cannot mistake a
    /// truncated body for a whole one.
    fn end(&mut self, complete: bool) -> io::Result<()> {
        match self.body.take() {
            Some(body) if complete => body.finish(),
            _ => Ok(()),
        }
    }
}
// ANCHOR_END: loop_sink

/// A sink dropped before any head went out means the gateway never got as
/// far as an answer: a panic on the Python thread (a bug; in exercise 06, a
/// hole still `todo!()`), which the pool survives. Answer 500 at once
/// rather than leave the client waiting for `--timeout`. (A ticket whose
/// client has gone meanwhile is simply dropped by the loop.)
impl Drop for LoopSink {
    fn drop(&mut self) {
        if !self.started {
            let page =
                http::Response::error(500, "the server failed before answering; see its log");
            self.remote.respond(self.ticket, page);
        }
    }
}

/// The access line, in `http.server`'s format, from what the gateway says
/// it sent; for an answer the loop had given up on (`--timeout`), a line
/// saying so instead: the loop logged its 504 already.
fn log_served(job: &Job, served: &Served) {
    let took = job.queued.elapsed();
    if job.timeout.is_some_and(|limit| took >= limit) {
        eprintln!(
            "[{}] {} {}: the app took {:.1} s, over --timeout; the client got a 504 \
             (a Python thread cannot be stopped, only waited for)",
            job.gateway.settings().log_tag,
            job.request.method,
            job.request.target,
            took.as_secs_f64()
        );
    } else if !log::quiet() {
        let line = job.request.request_line();
        log::access(job.client.peer, &line, served.status, Some(served.bytes));
    }
}

/// `2` for the pool's `worker 2`: the names `--trace` and `ps -L` show.
fn python_thread() -> String {
    let me = std::thread::current();
    let name = me.name().unwrap_or("?");
    name.rsplit(' ').next().unwrap_or(name).to_string()
}

// ------------------------------------------------------------- helpers

/// `what`, then the exception's own line: `the app raised ValueError: boom`.
fn describe(py: Python<'_>, what: &str, err: Option<&PyErr>) -> String {
    match err {
        Some(err) => format!("{what} {}", python::one_line(py, err)),
        None => what.to_string(),
    }
}

/// A native string (PEP 3333): one character per byte, U+0000 to U+00FF.
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(ascii) if bytes.is_ascii() => PyString::new(py, ascii), // the usual case
        _ => {
            let text: String = bytes.iter().map(|&b| char::from(b)).collect();
            PyString::new(py, &text)
        }
    }
}

/// `a str`, `an int`: the type of a Python value, for error messages.
fn type_name(value: &Bound<'_, PyAny>) -> String {
    let name = value
        .get_type()
        .name()
        .map_or_else(|_| "object".to_string(), |n| n.to_string());
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// `2` for the pool's `worker 2`, else the thread's name or id.
fn thread_label() -> String {
    let me = std::thread::current();
    match me.name() {
        Some(name) => name.rsplit(' ').next().unwrap_or(name).to_string(),
        None => format!("{:?}", me.id()),
    }
}
