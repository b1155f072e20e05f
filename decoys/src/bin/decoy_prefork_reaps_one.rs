//! Decoy: lesson 07 with a reaper that calls waitpid once per SIGCHLD (rejected by ex07 reap_burst).
#![allow(unsafe_code)] // lesson 07 forks and installs signal handlers

include!(concat!(env!("OUT_DIR"), "/lesson07_reaps_one.rs"));
