//! Decoy: lesson 07 with workers that beat a heartbeat made after the fork, which the master never sees (rejected by ex07 heartbeat).
#![allow(unsafe_code)] // lesson 07 forks and installs signal handlers

include!(concat!(env!("OUT_DIR"), "/lesson07_heartbeat_unshared.rs"));
