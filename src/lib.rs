//! # `ladder`: the common crate of Server Ladder
//!
//! Every rung of the ladder is a binary in `src/bin/`; what an earlier rung
//! taught lives here, so a later rung's file shows only its own new idea.
//! Each module names the lesson that introduces it; read it with that lesson.
//!
//! | module | introduced in | what it is |
//! |---|---|---|
//! | [`cli`] | 01 (not taught) | the flags every rung shares, the announce line |
//! | [`trace`](mod@trace) | 01 (not taught) | the `--trace` narrator |
//! | [`shutdown`] | 01 (not taught) | clean exit on Ctrl-C and SIGTERM |
//! | [`http`] | 02 | HTTP/1.1 without I/O: parse, frame, render |
//! | [`log`] | 02 | the access log in `http.server`'s format |
//! | [`connection`] | 02 | one connection driven with blocking calls: read, respond, refuse, close |
//! | [`cgi`] | 03 | CGI/1.1: a request as a program's environment and stdin |
//! | [`static_files`] | 04 | serving a directory as `python3 -m http.server` does |
//! | [`pool`] | 04 | a fixed pool of worker threads for any job |
//! | [`readiness`] | 05 | which sockets are ready: mio, or the raw epoll calls |
//! | [`event_loop`] | 05 | one thread, many connections; answers that come later |
//! | [`http_connection`] | 05 | one connection's state machine on the event loop |
//! | `python` | 06 | CPython inside the server: start it, load the app, stop it (feature `python`) |
//! | `wsgi` | 06 | the WSGI gateway (PEP 3333) from the server's side (feature `python`) |
//! | `prefork` | 07 | a pre-fork server's workers: sync and gthread, the heartbeat (feature `python`) |
//! | [`upstream`] | 08 | a proxy's HTTP: hop-by-hop headers, forwarding, whole responses |

// Only `python` (CPython's C API) may use `unsafe`; it says so itself.
#![deny(unsafe_code)]

pub mod cgi;
pub mod cli;
pub mod connection;
pub mod event_loop;
pub mod http;
pub mod http_connection;
pub mod log;
pub mod pool;
#[cfg(feature = "python")]
pub mod prefork;
#[cfg(feature = "python")]
pub mod python;
pub mod readiness;
pub mod shutdown;
pub mod static_files;
pub mod trace;
pub mod upstream;
#[cfg(feature = "python")]
pub mod wsgi;
