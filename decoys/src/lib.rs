//! Deliberately wrong servers for the grader's self-tests
//! (`tests/grade_decoys.rs`). Each module is one small, correct server for
//! one exercise, with a `Flaws` value that switches on one specific mistake;
//! each binary in `src/bin/` picks one (`decoy_*`) or none (`control_*`).
//! Not lessons, and not for students: read the rungs in `src/bin/` instead.

pub mod cgi;
pub mod echo;
pub mod epoll;
pub mod hello;
pub mod http_server;
