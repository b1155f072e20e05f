//! Decoy: lesson 07 with a TERM that stops the workers at once, cutting requests in flight (rejected by ex07 graceful_term).
#![allow(unsafe_code)] // lesson 07 forks and installs signal handlers

include!(concat!(env!("OUT_DIR"), "/lesson07_term_cuts_requests.rs"));
