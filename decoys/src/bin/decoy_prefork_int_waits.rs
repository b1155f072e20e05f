//! Decoy: lesson 07 with an INT that waits for requests in flight, as TERM does (rejected by ex07 quick_int).
#![allow(unsafe_code)] // lesson 07 forks and installs signal handlers

include!(concat!(env!("OUT_DIR"), "/lesson07_int_waits.rs"));
